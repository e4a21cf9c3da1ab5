// The recorded seccomp profile (docs/recording.md): recorded syscalls plus the OCI runtime's
// start-up set, default ERRNO, x86 family, canonical bytes. Pure; shared by the node recorder
// (`spoke record`, `spoke recorder`) and the controller's ProfileRecording reconciler.

import { SpokeError } from '../../core/errors.js';
import { encodeCanonical } from './canonical.js';
import { decodeSeccomp } from './decode.js';
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
 * Every x86_64 and i386 syscall name (the kernel's syscall_64.tbl and syscall_32.tbl, the same
 * tables src/recorder/syscalls.ts maps numbers with; a unit test keeps the two equal). Held
 * here as names only, so that the controller, which may not import the recorder, refuses the
 * same names `spoke record` refuses.
 */
export const X86_SYSCALL_NAMES: ReadonlySet<string> = new Set(
  `
_llseek _newselect _sysctl accept accept4 access acct add_key adjtimex afs_syscall alarm arch_prctl
bdflush bind bpf break brk cachestat capget capset chdir chmod chown chown32 chroot clock_adjtime
clock_adjtime64 clock_getres clock_getres_time64 clock_gettime clock_gettime64 clock_nanosleep
clock_nanosleep_time64 clock_settime clock_settime64 clone clone3 close close_range connect
copy_file_range creat create_module delete_module dup dup2 dup3 epoll_create epoll_create1 epoll_ctl
epoll_ctl_old epoll_pwait epoll_pwait2 epoll_wait epoll_wait_old eventfd eventfd2 execve execveat
exit exit_group faccessat faccessat2 fadvise64 fadvise64_64 fallocate fanotify_init fanotify_mark
fchdir fchmod fchmodat fchmodat2 fchown fchown32 fchownat fcntl fcntl64 fdatasync fgetxattr
file_getattr file_setattr finit_module flistxattr flock fork fremovexattr fsconfig fsetxattr fsmount
fsopen fspick fstat fstat64 fstatat64 fstatfs fstatfs64 fsync ftime ftruncate ftruncate64 futex
futex_requeue futex_time64 futex_wait futex_waitv futex_wake futimesat get_kernel_syms get_mempolicy
get_robust_list get_thread_area getcpu getcwd getdents getdents64 getegid getegid32 geteuid
geteuid32 getgid getgid32 getgroups getgroups32 getitimer getpeername getpgid getpgrp getpid getpmsg
getppid getpriority getrandom getresgid getresgid32 getresuid getresuid32 getrlimit getrusage getsid
getsockname getsockopt gettid gettimeofday getuid getuid32 getxattr getxattrat gtty idle init_module
inotify_add_watch inotify_init inotify_init1 inotify_rm_watch io_cancel io_destroy io_getevents
io_pgetevents io_pgetevents_time64 io_setup io_submit io_uring_enter io_uring_register
io_uring_setup ioctl ioperm iopl ioprio_get ioprio_set ipc kcmp kexec_file_load kexec_load keyctl
kill landlock_add_rule landlock_create_ruleset landlock_restrict_self lchown lchown32 lgetxattr link
linkat listen listmount listxattr listxattrat llistxattr lock lookup_dcookie lremovexattr lseek
lsetxattr lsm_get_self_attr lsm_list_modules lsm_set_self_attr lstat lstat64 madvise
map_shadow_stack mbind membarrier memfd_create memfd_secret migrate_pages mincore mkdir mkdirat
mknod mknodat mlock mlock2 mlockall mmap mmap2 modify_ldt mount mount_setattr move_mount move_pages
mprotect mpx mq_getsetattr mq_notify mq_open mq_timedreceive mq_timedreceive_time64 mq_timedsend
mq_timedsend_time64 mq_unlink mremap mseal msgctl msgget msgrcv msgsnd msync munlock munlockall
munmap name_to_handle_at nanosleep newfstatat nfsservctl nice oldfstat oldlstat oldolduname oldstat
olduname open open_by_handle_at open_tree open_tree_attr openat openat2 pause perf_event_open
personality pidfd_getfd pidfd_open pidfd_send_signal pipe pipe2 pivot_root pkey_alloc pkey_free
pkey_mprotect poll ppoll ppoll_time64 prctl pread64 preadv preadv2 prlimit64 process_madvise
process_mrelease process_vm_readv process_vm_writev prof profil pselect6 pselect6_time64 ptrace
putpmsg pwrite64 pwritev pwritev2 query_module quotactl quotactl_fd read readahead readdir readlink
readlinkat readv reboot recvfrom recvmmsg recvmmsg_time64 recvmsg remap_file_pages removexattr
removexattrat rename renameat renameat2 request_key restart_syscall rmdir rseq rt_sigaction
rt_sigpending rt_sigprocmask rt_sigqueueinfo rt_sigreturn rt_sigsuspend rt_sigtimedwait
rt_sigtimedwait_time64 rt_tgsigqueueinfo sched_get_priority_max sched_get_priority_min
sched_getaffinity sched_getattr sched_getparam sched_getscheduler sched_rr_get_interval
sched_rr_get_interval_time64 sched_setaffinity sched_setattr sched_setparam sched_setscheduler
sched_yield seccomp security select semctl semget semop semtimedop semtimedop_time64 sendfile
sendfile64 sendmmsg sendmsg sendto set_mempolicy set_mempolicy_home_node set_robust_list
set_thread_area set_tid_address setdomainname setfsgid setfsgid32 setfsuid setfsuid32 setgid
setgid32 setgroups setgroups32 sethostname setitimer setns setpgid setpriority setregid setregid32
setresgid setresgid32 setresuid setresuid32 setreuid setreuid32 setrlimit setsid setsockopt
settimeofday setuid setuid32 setxattr setxattrat sgetmask shmat shmctl shmdt shmget shutdown
sigaction sigaltstack signal signalfd signalfd4 sigpending sigprocmask sigreturn sigsuspend socket
socketcall socketpair splice ssetmask stat stat64 statfs statfs64 statmount statx stime stty swapoff
swapon symlink symlinkat sync sync_file_range syncfs sysfs sysinfo syslog tee tgkill time
timer_create timer_delete timer_getoverrun timer_gettime timer_gettime64 timer_settime
timer_settime64 timerfd_create timerfd_gettime timerfd_gettime64 timerfd_settime timerfd_settime64
times tkill truncate truncate64 tuxcall ugetrlimit ulimit umask umount umount2 uname unlink unlinkat
unshare uselib userfaultfd ustat utime utimensat utimensat_time64 utimes vfork vhangup vm86 vm86old
vmsplice vserver wait4 waitid waitpid write writev
`
    .split(/\s+/)
    .filter(Boolean),
);

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
