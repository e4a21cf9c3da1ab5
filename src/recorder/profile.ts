// The recorded profile and the logging profile (KEP-6061 §4 format, runtime-spec LinuxSeccomp).

import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SpokeError } from '../core/errors.js';
import { decodeSeccomp, encodeCanonical, validateArtifact, type SeccompArchitecture, type SeccompProfile } from '../profiles/seccomp/index.js';
import { I386_SYSCALLS, X86_64_SYSCALLS } from './syscalls.js';

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

/** The x86 family, as the runtime-default profiles name it. */
export const RECORDED_ARCHITECTURES: readonly SeccompArchitecture[] = ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32'];

const KNOWN = new Set<string>([...X86_64_SYSCALLS.values(), ...I386_SYSCALLS.values()]);

/**
 * Deterministic: default ERRNO (EPERM), one ALLOW entry with the recorded calls plus the
 * runtime's start-up set, sorted; x86 family architectures; no flags. Validated as an artifact.
 * An empty recording is an error, never an allow-nothing profile.
 */
export function buildRecordedProfile(syscalls: ReadonlySet<string>, runtime: OciRuntime): { profile: SeccompProfile; bytes: Buffer } {
  if (syscalls.size === 0) throw new SpokeError('FailedPrecondition', 'no syscalls were recorded: refusing to write an empty profile', { rule: 'empty-recording' });
  const startup = RUNTIME_STARTUP_SYSCALLS[runtime];
  if (!startup) throw new SpokeError('InvalidArgument', `unknown OCI runtime ${JSON.stringify(runtime)} (runc or crun)`);
  for (const s of syscalls) {
    if (!KNOWN.has(s)) throw new SpokeError('InvalidArgument', `not an x86 syscall name: ${JSON.stringify(s.slice(0, 64))}`);
  }
  const names = [...new Set([...syscalls, ...startup])].sort();
  const profile: SeccompProfile = {
    defaultAction: 'SCMP_ACT_ERRNO',
    architectures: [...RECORDED_ARCHITECTURES],
    syscalls: [{ names, action: 'SCMP_ACT_ALLOW' }],
  };
  validateArtifact(profile);
  const bytes = encodeCanonical(profile);
  // The bytes must read back as the same profile (what nodes will decode).
  validateArtifact(decodeSeccomp(bytes));
  return { profile, bytes };
}

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
