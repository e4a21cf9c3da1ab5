// Where the node daemon installs the logging profile recorded workloads run under. The profile
// itself (LOGGING_PROFILE, its bytes and file name) lives in profiles/seccomp/recorded.ts, pure,
// so that the CRI shim (`spoke shim --recording`, src/cri/recording.ts) writes the same file;
// the recorded profile is built there too (the controller builds it as well). Both are
// re-exported here for the recorder's callers.

import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { LOGGING_PROFILE_NAME, loggingProfileBytes } from '../profiles/seccomp/recorded.js';

export { buildRecordedProfile, RECORDED_ARCHITECTURES, RUNTIME_STARTUP_SYSCALLS, X86_SYSCALL_NAMES, type OciRuntime } from '../profiles/seccomp/index.js';
export { LOGGING_PROFILE, LOGGING_PROFILE_NAME } from '../profiles/seccomp/recorded.js';

/**
 * Installs the logging profile under `seccompRoot` (e.g. /var/lib/kubelet/seccomp) and returns
 * its absolute path. Written by the node daemon itself before any pod asks for it, so there is
 * no "profile not found" race; unchanged bytes are not rewritten; the write is atomic.
 */
export function writeLoggingProfile(seccompRoot: string): string {
  const dir = join(seccompRoot, 'spoke');
  const path = join(dir, LOGGING_PROFILE_NAME);
  const bytes = loggingProfileBytes();
  try {
    if (readFileSync(path).equals(bytes)) return path;
  } catch {
    /* absent */
  }
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, bytes, { mode: 0o644 });
  renameSync(tmp, path);
  return path;
}
