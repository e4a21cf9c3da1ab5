// Which spoke this is: the package version and the commit the build came from
// (bin/build-info.mjs), for `spoke --version` and for the content verdicts a store keeps
// (docs/security-model.md#verdicts-outlive-only-their-reasons).

import { readFileSync } from 'node:fs';

/** `spoke --version`: the package version, the Node running it, and the commit the build came from. */
export function versionInfo(): { version: string; node: string; commit: string } {
  const read = (rel: string): Record<string, unknown> => {
    try {
      return JSON.parse(readFileSync(new URL(rel, import.meta.url), 'utf8')) as Record<string, unknown>;
    } catch {
      return {};
    }
  };
  // dist/src/cli/version.js → the package root and dist/
  const pkg = read('../../../package.json');
  const build = read('../../build-info.json');
  return { version: String(pkg.version ?? 'unknown'), node: process.versions.node, commit: String(build.commit ?? 'unknown') };
}

/**
 * The artifact rules this build judges content by, as a store records them with a content
 * verdict: a verdict another build made counts as none, and the digest is judged again.
 */
export function contentRules(): string {
  const v = versionInfo();
  return `spoke ${v.version} ${v.commit}`;
}
