import assert from 'node:assert/strict';
import { test } from 'node:test';
import { buildRecordedProfile, decodeSeccomp, RUNTIME_STARTUP_SYSCALLS, validateArtifact } from '../../../src/profiles/seccomp/index.js';
import { spokeError } from '../../helpers/assert.js';

test('recorded profile: deterministic bytes whatever the insertion order', () => {
  const a = buildRecordedProfile(new Set(['write', 'read', 'openat', 'exit_group']), 'runc', { ia32: true });
  const b = buildRecordedProfile(new Set(['exit_group', 'openat', 'read', 'write']), 'runc', { ia32: true });
  assert.ok(a.bytes.equals(b.bytes));
  const p = decodeSeccomp(a.bytes);
  validateArtifact(p);
  assert.equal(p.defaultAction, 'SCMP_ACT_ERRNO');
  // x32 calls can never be recorded (they have no names here): the ABI is not opened.
  assert.deepEqual(p.architectures, ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86']);
  assert.equal(p.flags, undefined);
  assert.equal(p.syscalls?.length, 1);
  const names = p.syscalls![0]!.names;
  assert.deepEqual(names, [...names].sort());
  for (const s of ['read', 'write', 'openat', 'exit_group', ...RUNTIME_STARTUP_SYSCALLS.runc]) assert.ok(names.includes(s), s);
  assert.ok(!names.includes('mkdir'));
});

test('i386 is opened only for a recording that saw 32-bit calls; x32 never', () => {
  const native = decodeSeccomp(buildRecordedProfile(new Set(['read']), 'runc', { ia32: false }).bytes);
  assert.deepEqual(native.architectures, ['SCMP_ARCH_X86_64']);
  const compat = decodeSeccomp(buildRecordedProfile(new Set(['read']), 'runc', { ia32: true }).bytes);
  assert.deepEqual(compat.architectures, ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86']);
});

test('the runtime decides the start-up set', () => {
  const crun = decodeSeccomp(buildRecordedProfile(new Set(['exit_group']), 'crun', { ia32: false }).bytes).syscalls![0]!.names;
  assert.ok(crun.includes('execve') && crun.includes('setresuid'));
  assert.ok(!crun.includes('getdents64'));
  for (const rt of ['runc', 'crun'] as const) assert.ok(RUNTIME_STARTUP_SYSCALLS[rt].includes('execve'));
});

test('an empty recording is an error, not an allow-nothing profile', () => {
  assert.throws(() => buildRecordedProfile(new Set(), 'runc', { ia32: false }), spokeError({ code: 'FailedPrecondition', reason: 'RECORDING_EMPTY' }));
});

test('names outside the x86 tables are refused', () => {
  assert.throws(() => buildRecordedProfile(new Set(['read', 'OCI_ARTIFACT_TEST']), 'runc', { ia32: false }), spokeError({ code: 'InvalidArgument', reason: 'SYSCALL_UNKNOWN' }));
});
