// The logging profile recorded workloads run under, and where the node daemon installs it.
// The recorded profile itself is built in profiles/seccomp/recorded.ts (pure; the controller
// builds it too); it is re-exported here for the recorder's callers.

import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { encodeCanonical, RECORDED_ARCHITECTURES, type SeccompProfile } from '../profiles/seccomp/index.js';

export { buildRecordedProfile, RECORDED_ARCHITECTURES, RUNTIME_STARTUP_SYSCALLS, X86_SYSCALL_NAMES, type OciRuntime } from '../profiles/seccomp/index.js';

/** The profile recorded workloads run under: every call allowed and logged. */
export const LOGGING_PROFILE: SeccompProfile = { defaultAction: 'SCMP_ACT_LOG', architectures: [...RECORDED_ARCHITECTURES] };
export const LOGGING_PROFILE_NAME = 'spoke-record-log.json';

/**
 * Installs the logging profile under `seccompRoot` (e.g. /var/lib/kubelet/seccomp) and returns
 * its absolute path. Written by the node daemon itself before any pod asks for it, so there is
 * no "profile not found" race; unchanged bytes are not rewritten; the write is atomic.
 */
export function writeLoggingProfile(seccompRoot: string): string {
  const dir = join(seccompRoot, 'spoke');
  const path = join(dir, LOGGING_PROFILE_NAME);
  const bytes = encodeCanonical(LOGGING_PROFILE);
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
