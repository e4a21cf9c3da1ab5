// Generated profiles for benchmarks: a 4 KiB profile and a ~1 MiB artifact that stays within the
// KEP artifact limits (≤ 128 entries per syscall, ≤ 16384 rules in all).

const ARCHES = ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32'];

/** About `bytes` bytes of valid profile; `salt` makes each one (and its digest) unique. */
export function smallProfile(salt: number, bytes = 4096): Buffer {
  const conditional = ['ioctl', 'fcntl', 'prctl', 'setsockopt', 'socket'];
  const base = ['mkdir', 'mkdirat', 'chmod', 'fchmod', 'fchmodat', 'unshare', 'mount', 'umount2', 'bpf', 'ptrace', 'kexec_load', 'init_module'];
  const profile = { defaultAction: 'SCMP_ACT_ALLOW', architectures: ARCHES, syscalls: [{ names: base, action: 'SCMP_ACT_ERRNO' }] as object[] };
  let i = 0;
  while (JSON.stringify(profile).length < bytes - 120) {
    i++;
    // Distinct 31-bit values per profile: single-EQ clauses on one index are a safe shape (KEP §4).
    const value = (salt * 1009 + i) % 2 ** 31;
    profile.syscalls.push({ names: [conditional[i % conditional.length]!], action: 'SCMP_ACT_ERRNO', args: [{ index: 0, value, op: 'SCMP_CMP_EQ' }] });
  }
  return Buffer.from(JSON.stringify(profile));
}

export function largeArtifact(targetBytes = 1024 * 1024): Buffer {
  const syscalls: object[] = [];
  const names = SYSCALLS;
  let size = 0;
  let value = 1;
  outer: for (let round = 0; round < 128; round++) {
    for (const name of names) {
      const entry = { names: [name], action: 'SCMP_ACT_ERRNO', errnoRet: 13, args: [{ index: 1, value: value++, op: 'SCMP_CMP_EQ' }] };
      syscalls.push(entry);
      size += JSON.stringify(entry).length + 1;
      if (size >= targetBytes - 200 || syscalls.length >= 16000) break outer;
    }
  }
  return Buffer.from(JSON.stringify({ defaultAction: 'SCMP_ACT_ALLOW', architectures: ARCHES, syscalls }));
}

const SYSCALLS = (
  'read write open close stat fstat lstat poll lseek mmap mprotect munmap brk ioctl pread64 pwrite64 readv writev access pipe select ' +
  'sched_yield mremap msync mincore madvise dup dup2 pause nanosleep getitimer alarm setitimer getpid sendfile socket connect accept ' +
  'sendto recvfrom sendmsg recvmsg shutdown bind listen getsockname getpeername socketpair setsockopt getsockopt fork vfork execve ' +
  'exit wait4 kill uname fcntl flock fsync fdatasync truncate ftruncate getdents getcwd chdir fchdir rename mkdir rmdir creat link ' +
  'unlink symlink readlink chmod fchmod chown fchown lchown umask gettimeofday getrlimit getrusage sysinfo times getuid syslog getgid ' +
  'setuid setgid geteuid getegid setpgid getppid getpgrp setsid setreuid setregid getgroups setgroups setresuid getresuid setresgid ' +
  'getresgid getpgid setfsuid setfsgid getsid capget capset utime mknod personality statfs fstatfs getpriority setpriority ' +
  'sched_setparam sched_getparam sched_setscheduler sched_getscheduler mlock munlock mlockall munlockall prctl arch_prctl setrlimit ' +
  'chroot sync acct settimeofday sethostname setdomainname gettid readahead setxattr lsetxattr fsetxattr getxattr lgetxattr ' +
  'fgetxattr listxattr llistxattr flistxattr removexattr lremovexattr fremovexattr tkill time futex epoll_create getdents64 ' +
  'set_tid_address fadvise64 timer_create timer_settime timer_gettime timer_getoverrun timer_delete clock_settime clock_gettime ' +
  'clock_getres clock_nanosleep exit_group epoll_wait epoll_ctl tgkill utimes mbind set_mempolicy get_mempolicy mq_open mq_unlink ' +
  'waitid inotify_init inotify_add_watch inotify_rm_watch openat mkdirat mknodat fchownat futimesat newfstatat unlinkat renameat ' +
  'linkat symlinkat readlinkat fchmodat faccessat pselect6 ppoll splice tee sync_file_range vmsplice utimensat epoll_pwait ' +
  'signalfd timerfd_create eventfd fallocate timerfd_settime timerfd_gettime accept4 signalfd4 eventfd2 epoll_create1 dup3 pipe2 ' +
  'preadv pwritev recvmmsg fanotify_init prlimit64 name_to_handle_at syncfs sendmmsg getcpu renameat2 getrandom memfd_create ' +
  'execveat membarrier copy_file_range preadv2 pwritev2 statx rseq'
).split(' ');
