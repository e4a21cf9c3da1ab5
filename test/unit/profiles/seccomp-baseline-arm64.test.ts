// The shipped arm64 baseline (policy/seccomp-baseline-arm64.json, policy/seccomp-baseline.md):
// the amd64 baseline's rules for AArch64 and 32-bit ARM. It must stay that: same rules, only the
// architectures and the ARM-only calls the runtime default also allows differ.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { decodeSeccomp, intersect, validateBaseline } from '../../../src/profiles/seccomp/index.js';

const read = (name: string) => JSON.parse(readFileSync(new URL(`../../../../policy/${name}`, import.meta.url), 'utf8')) as { architectures: string[]; syscalls: { names: string[]; action: string; args?: unknown }[] };
const ARM_ONLY = ['arm_fadvise64_64', 'arm_sync_file_range', 'breakpoint', 'cacheflush', 'set_tls', 'sync_file_range2'];

test('the arm64 baseline passes validateBaseline and lists AArch64 and ARM only', () => {
  const bytes = readFileSync(new URL('../../../../policy/seccomp-baseline-arm64.json', import.meta.url));
  const p = decodeSeccomp(bytes);
  validateBaseline(p);
  assert.deepEqual(p.architectures, ['SCMP_ARCH_AARCH64', 'SCMP_ARCH_ARM']);
  assert.equal(p.flags, undefined);
});

test('the arm64 baseline has the amd64 baseline rules, plus the ARM-only calls', () => {
  const amd64 = read('seccomp-baseline.json');
  const arm64 = read('seccomp-baseline-arm64.json');
  assert.deepEqual(amd64.architectures, ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32']);
  const expected = structuredClone(amd64);
  expected.architectures = ['SCMP_ARCH_AARCH64', 'SCMP_ARCH_ARM'];
  expected.syscalls[0]!.names = [...expected.syscalls[0]!.names, ...ARM_ONLY].sort();
  assert.deepEqual(arm64, expected);
});

test('the calls an arm64 process makes where amd64 has older forms are allowed', () => {
  // The generic syscall table (asm-generic/unistd.h) that arm64 uses has only the *at and newer
  // forms; a baseline written for x86 names alone would leave them out.
  const allowed = new Set(read('seccomp-baseline-arm64.json').syscalls.filter((s) => s.action === 'SCMP_ACT_ALLOW' && s.args === undefined).flatMap((s) => s.names));
  for (const name of ['openat', 'newfstatat', 'fstat', 'statx', 'faccessat', 'faccessat2', 'readlinkat', 'mkdirat', 'unlinkat', 'renameat', 'renameat2', 'linkat', 'symlinkat', 'fchmodat', 'fchownat', 'mknodat', 'utimensat', 'dup3', 'pipe2', 'ppoll', 'pselect6', 'epoll_pwait', 'epoll_create1', 'eventfd2', 'signalfd4', 'inotify_init1', 'getdents64', 'wait4', 'execve', 'rt_sigreturn', 'set_tid_address', 'set_robust_list', 'rseq', 'prlimit64', 'getrandom', 'mmap', 'mprotect', 'brk', 'futex', 'clock_nanosleep', 'getppid', 'sched_getaffinity']) {
    assert.ok(allowed.has(name), name);
  }
});

test('an arm64 artifact keeps its architectures when merged with the arm64 baseline', () => {
  const baseline = decodeSeccomp(readFileSync(new URL('../../../../policy/seccomp-baseline-arm64.json', import.meta.url)));
  const artifact = decodeSeccomp(Buffer.from(JSON.stringify({ defaultAction: 'SCMP_ACT_ALLOW', architectures: ['SCMP_ARCH_AARCH64', 'SCMP_ARCH_ARM'], syscalls: [{ names: ['mkdirat'], action: 'SCMP_ACT_ERRNO' }] })));
  const merged = JSON.parse(intersect(baseline, undefined, artifact).bytes.toString('utf8')) as { architectures: string[] };
  assert.deepEqual(merged.architectures, ['SCMP_ARCH_AARCH64', 'SCMP_ARCH_ARM']);
});
