import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AUDIT_ARCH_I386, AUDIT_ARCH_X86_64, syscallName } from '../../../src/recorder/syscalls.js';
import { I386_SYSCALLS, X86_64_SYSCALLS } from '../../../src/profiles/seccomp/syscall-numbers.js';

test('x86_64 spot checks against syscall_64.tbl', () => {
  const want: [number, string][] = [
    [0, 'read'], [1, 'write'], [2, 'open'], [3, 'close'], [9, 'mmap'], [15, 'rt_sigreturn'], [35, 'nanosleep'], [39, 'getpid'],
    [56, 'clone'], [59, 'execve'], [60, 'exit'], [83, 'mkdir'], [90, 'chmod'], [157, 'prctl'], [202, 'futex'], [217, 'getdents64'],
    [231, 'exit_group'], [257, 'openat'], [258, 'mkdirat'], [262, 'newfstatat'], [272, 'unshare'], [302, 'prlimit64'], [317, 'seccomp'],
    [321, 'bpf'], [334, 'rseq'], [335, 'uretprobe'], [424, 'pidfd_send_signal'], [435, 'clone3'], [439, 'faccessat2'], [443, 'quotactl_fd'],
    [452, 'fchmodat2'], [462, 'mseal'], [469, 'file_setattr'], [336, 'uprobe'], [470, 'listns'], [471, 'rseq_slice_yield'],
  ];
  for (const [nr, name] of want) assert.equal(syscallName(AUDIT_ARCH_X86_64, nr), name, `x86_64 ${nr}`);
  for (const nr of [337, 386, 423, 472, 512, 547]) assert.equal(syscallName(AUDIT_ARCH_X86_64, nr), undefined, `x86_64 ${nr} unassigned`);
  assert.equal(X86_64_SYSCALLS.size, 337 + 48);
});

test('i386 spot checks against syscall_32.tbl', () => {
  const want: [number, string][] = [
    [1, 'exit'], [3, 'read'], [4, 'write'], [11, 'execve'], [39, 'mkdir'], [102, 'socketcall'], [117, 'ipc'], [173, 'rt_sigreturn'],
    [192, 'mmap2'], [240, 'futex'], [252, 'exit_group'], [295, 'openat'], [359, 'socket'], [384, 'arch_prctl'], [403, 'clock_gettime64'],
    [422, 'futex_time64'], [428, 'open_tree'], [435, 'clone3'], [469, 'file_setattr'],
  ];
  for (const [nr, name] of want) assert.equal(syscallName(AUDIT_ARCH_I386, nr), name, `i386 ${nr}`);
  for (const nr of [222, 223, 251, 285, 387, 392, 415, 453]) assert.equal(I386_SYSCALLS.get(nr), undefined, `i386 ${nr} unassigned`);
});

test('names are unique within each table', () => {
  for (const t of [X86_64_SYSCALLS, I386_SYSCALLS]) assert.equal(new Set(t.values()).size, t.size);
});
