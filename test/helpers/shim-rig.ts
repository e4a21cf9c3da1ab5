// The files of one shim under test: a fresh directory holding its socket, store, seccomp root and
// policy, and the `spoke shim` arguments naming them. Shared by the shim integration tests
// (teardown: tearDownShimRig in shim.ts).

import { mkdtempSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface ShimFiles {
  work: string;
  sock: string;
  storeDir: string;
  seccompRoot: string;
  policy: string;
  /** `spoke shim` arguments: these files, `upstream`, then `extra`. */
  args(upstream: string, ...extra: string[]): string[];
}

/** A fresh /tmp/<prefix>… directory; `policyText`, when given, is written to its policy.yaml. */
export function shimFiles(prefix: string, policyText?: string): ShimFiles {
  const work = mkdtempSync(`/tmp/${prefix}`);
  const files = { work, sock: join(work, 'shim.sock'), storeDir: join(work, 'store'), seccompRoot: join(work, 'seccomp'), policy: join(work, 'policy.yaml') };
  if (policyText !== undefined) writeFileSync(files.policy, policyText);
  return {
    ...files,
    args: (upstream, ...extra) => ['--listen', files.sock, '--upstream', upstream, '--store', files.storeDir, '--seccomp-root', files.seccompRoot, '--policy', files.policy, ...extra],
  };
}
