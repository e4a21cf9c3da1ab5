// The recorded seccomp profile (docs/recording.md): recorded syscalls plus the OCI runtime's
// start-up set, default ERRNO, x86 family, canonical bytes. Pure; shared by the node recorder
// (`spoke record`, `spoke recorder`) and the controller's ProfileRecording reconciler.

import { SpokeError } from '../../core/errors.js';
import { encodeCanonical } from './canonical.js';
import { decodeSeccomp } from './decode.js';
import { X86_SYSCALL_NAMES } from './syscall-numbers.js';
import type { SeccompArchitecture, SeccompProfile } from './types.js';
import { validateArtifact } from './validate.js';

export type OciRuntime = 'runc' | 'crun';

/**
 * Calls the OCI runtime's init makes after it installed the filter, up to and including the
 * execve of the workload. Under SCMP_ACT_LOG they are recorded too, but not every time: runc's
 * init is a Go program whose other threads share the filter (TSYNC), so signal returns, futex
 * waits and scheduler sleeps land in some runs and not others — without them a recorded profile
 * fails one start in several. Where the filter goes in also depends on the container: without
 * no_new_privs (the CRI default) runc installs it before switching user and capabilities.
 *
 * Measured here (Linux 6.18; runc 1.1.5 and crun 1.8.1; busybox `true`, 6 runs each, calls of
 * `true` itself removed):
 * - runc via containerd 1.6 CRI (no_new_privs off): capget capset chdir close epoll_ctl execve
 *   faccessat2 fcntl fstat fstatfs futex getcwd getdents64 getpid getppid newfstatat openat
 *   read setgid setgroups setuid write every run; rt_sigreturn in 1 of 6.
 * - runc run directly (`runc spec`, no_new_privs on): close openat write getpid epoll_ctl
 *   fstatfs getdents64 execve every run; rt_sigreturn in 2 of 6.
 * - crun via containerd: capset close execve pselect6 read rt_sigaction rt_sigprocmask
 *   setresgid setresuid write; crun run directly: close execve.
 * prctl is in both sets (the inits use it for capabilities and no_new_privs; `true` makes it
 * too, so it could not be told apart). runc also gets the Go runtime's background calls that
 * can fall into that window (nanosleep sched_yield rt_sigprocmask sigaltstack tgkill gettid
 * madvise mmap munmap epoll_pwait clock_gettime exit), crun setgroups (made when the container
 * has supplementary groups).
 */
export const RUNTIME_STARTUP_SYSCALLS: Readonly<Record<OciRuntime, readonly string[]>> = {
  runc: [
    'capget', 'capset', 'chdir', 'close', 'epoll_ctl', 'execve', 'faccessat2', 'fcntl', 'fstat', 'fstatfs', 'futex',
    'getcwd', 'getdents64', 'getpid', 'getppid', 'newfstatat', 'openat', 'prctl', 'read', 'rt_sigreturn', 'setgid',
    'setgroups', 'setuid', 'write',
    // Go runtime background activity
    'clock_gettime', 'epoll_pwait', 'exit', 'gettid', 'madvise', 'mmap', 'munmap', 'nanosleep', 'rt_sigprocmask',
    'sched_yield', 'sigaltstack', 'tgkill',
  ],
  crun: ['capset', 'close', 'execve', 'prctl', 'pselect6', 'read', 'rt_sigaction', 'rt_sigprocmask', 'setgroups', 'setresgid', 'setresuid', 'write'],
};

/**
 * x86_64, and i386 only for a recording that saw 32-bit (ia32) calls: both recorders name them
 * (the i386 table) and know their ABI. Never x32: its calls have no names here, so a recording
 * that saw one fails, and one that did not never needs the ABI. A 64-bit workload's profile that
 * opened the compat ABIs would hand it their whole syscall surface for every recorded name.
 */
function recordedArchitectures(abi: { ia32: boolean }): SeccompArchitecture[] {
  return abi.ia32 ? ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86'] : ['SCMP_ARCH_X86_64'];
}

/**
 * Deterministic: default ERRNO (EPERM), one ALLOW entry with the recorded calls plus the
 * runtime's start-up set, sorted; the architectures the recording saw (recordedArchitectures);
 * no flags. Validated as an artifact. An empty recording is an error, never an allow-nothing profile.
 */
export function buildRecordedProfile(syscalls: ReadonlySet<string>, runtime: OciRuntime, abi: { ia32: boolean }): { profile: SeccompProfile; bytes: Buffer } {
  if (syscalls.size === 0) throw new SpokeError('FailedPrecondition', 'no syscalls were recorded: refusing to write an empty profile', { rule: 'empty-recording' }, { reason: 'RECORDING_EMPTY' });
  const startup = RUNTIME_STARTUP_SYSCALLS[runtime];
  if (!startup) throw new SpokeError('InvalidArgument', `unknown OCI runtime ${JSON.stringify(runtime)} (runc or crun)`, {}, { reason: 'OPTION_INVALID' });
  for (const s of syscalls) {
    if (!X86_SYSCALL_NAMES.has(s)) throw new SpokeError('InvalidArgument', `not an x86 syscall name: ${JSON.stringify(s.slice(0, 64))}`, {}, { reason: 'SYSCALL_UNKNOWN' });
  }
  const names = [...new Set([...syscalls, ...startup])].sort();
  const profile: SeccompProfile = {
    defaultAction: 'SCMP_ACT_ERRNO',
    architectures: recordedArchitectures(abi),
    syscalls: [{ names, action: 'SCMP_ACT_ALLOW' }],
  };
  validateArtifact(profile);
  const bytes = encodeCanonical(profile);
  // The bytes must read back as the same profile (what nodes will decode).
  validateArtifact(decodeSeccomp(bytes));
  return { profile, bytes };
}

/**
 * The logging profile: every call allowed and logged (SCMP_ACT_LOG, kernel audit type 1326).
 * `spoke record` runs its command under it as is; `spoke shim --recording` runs recorded pods
 * under it merged with the node baseline (src/cri/logging-profile.ts). Looser than RuntimeDefault:
 * only ever applied on request. Every x86 ABI, so that a call of any is logged (an x32 one then
 * fails the recording as unnamed) rather than killed.
 */
export const LOGGING_PROFILE: SeccompProfile = { defaultAction: 'SCMP_ACT_LOG', architectures: ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32'] };
/** Its file name in the directory it is written to. */
export const LOGGING_PROFILE_NAME = 'spoke-record-log.json';

/** The logging profile's canonical bytes (what the node daemons write). */
export function loggingProfileBytes(): Buffer {
  return encodeCanonical(LOGGING_PROFILE);
}
