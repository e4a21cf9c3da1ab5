// Conversion rules (docs/convert.md) on small documents: moby's includes/excludes semantics,
// legacy spellings, what cannot be converted, and what is said about it.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SpokeError } from '../../../src/core/errors.js';
import { convertProfile, detectFormat, parseProfileText } from '../../../src/profiles/seccomp/convert.js';

const doc = (syscalls: unknown[], extra: Record<string, unknown> = {}) => ({ defaultAction: 'SCMP_ACT_ERRNO', archMap: [{ architecture: 'SCMP_ARCH_X86_64', subArchitectures: ['SCMP_ARCH_X86'] }], syscalls, ...extra });
const names = (d: unknown, caps: string[] = [], arch = 'amd64') => (convertProfile(d, { arch, caps }).profile.syscalls ?? []).flatMap((s) => s.names).sort();

test('includes: every listed capability is needed; excludes: any one listed capability skips the entry', () => {
  const d = doc([
    { names: ['a'], action: 'SCMP_ACT_ALLOW', includes: { caps: ['CAP_SYS_ADMIN', 'CAP_NET_ADMIN'] } },
    { names: ['b'], action: 'SCMP_ACT_ALLOW', excludes: { caps: ['CAP_SYS_ADMIN', 'CAP_BPF'] } },
  ]);
  assert.deepEqual(names(d, ['SYS_ADMIN']), []);
  assert.deepEqual(names(d, ['SYS_ADMIN', 'cap_net_admin']), ['a']);
  assert.deepEqual(names(d, []), ['b']);
  assert.deepEqual(names(d, ['BPF']), []);
});

test('arches are Go names compared with the node; archMap gives the architectures', () => {
  const d = doc([
    { names: ['x'], action: 'SCMP_ACT_ALLOW', includes: { arches: ['amd64', 'x32'] } },
    { names: ['y'], action: 'SCMP_ACT_ALLOW', excludes: { arches: ['amd64'] } },
  ]);
  assert.deepEqual(names(d), ['x']);
  assert.deepEqual(convertProfile(d, { arch: 'amd64', caps: [] }).profile.architectures, ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86']);
  assert.throws(() => convertProfile(d, { arch: 'arm64', caps: [] }), (e: unknown) => e instanceof SpokeError && e.code === 'SecurityProfileInvalid' && e.context.path === 'archMap');
});

test('--arch names a Go architecture: a name every object has (constructor, toString, __proto__) is refused as unknown', () => {
  const d = doc([{ names: ['x'], action: 'SCMP_ACT_ALLOW', includes: { arches: ['constructor'] } }]);
  for (const arch of ['constructor', 'toString', '__proto__', 'hasOwnProperty']) {
    assert.throws(() => convertProfile(d, { arch, caps: [] }), (e: unknown) => e instanceof SpokeError && e.reason === 'OPTION_INVALID', arch);
  }
});

test('legacy "name", comments dropped, errnoRet kept, an errno given only by name refused with its path', () => {
  const d = doc([{ name: 'z', action: 'SCMP_ACT_ERRNO', errnoRet: 38, errno: 'ENOSYS', comment: 'why' }], { defaultErrnoRet: 1, defaultErrno: 'EPERM' });
  const p = convertProfile(d, { arch: 'amd64', caps: [] }).profile;
  assert.deepEqual(p.syscalls, [{ names: ['z'], action: 'SCMP_ACT_ERRNO', errnoRet: 38 }]);
  assert.equal(p.defaultErrnoRet, 1);
  assert.throws(
    () => convertProfile(doc([{ names: ['z'], action: 'SCMP_ACT_ERRNO', errno: 'ENOSYS' }]), { arch: 'amd64', caps: [] }),
    (e: unknown) => e instanceof SpokeError && e.context.path === 'syscalls[0].errno',
  );
});

test('minKernel cannot be checked offline: a recent kernel is assumed, and said', () => {
  const d = doc([
    { names: ['new'], action: 'SCMP_ACT_ALLOW', includes: { minKernel: '5.8' } },
    { names: ['old'], action: 'SCMP_ACT_ERRNO', excludes: { minKernel: '4.8' } },
  ]);
  const r = convertProfile(d, { arch: 'amd64', caps: [] });
  assert.deepEqual((r.profile.syscalls ?? []).flatMap((s) => s.names), ['new']);
  assert.match(r.notes.join('\n'), /4\.8, 5\.8/);
});

test('a minKernel that is not a kernel version is refused by its path: it is quoted in the notes', () => {
  for (const minKernel of ['5.0\u001b]0;PWNED\u0007', '5', 'five', '5.8.1.2', `5.${'1'.repeat(20)}`]) {
    assert.throws(
      () => convertProfile(doc([{ names: ['new'], action: 'SCMP_ACT_ALLOW', includes: { minKernel } }]), { arch: 'amd64', caps: [] }),
      (e: unknown) => e instanceof SpokeError && e.context.path === 'syscalls[0].includes.minKernel',
      minKernel,
    );
  }
  assert.equal(convertProfile(doc([{ names: ['new'], action: 'SCMP_ACT_ALLOW', includes: { minKernel: '4.14.0' } }]), { arch: 'amd64', caps: [] }).profile.syscalls?.length, 1);
});

test('conflicting unconditional rules keep the most restrictive; conditional ones are untouched', () => {
  const d = doc([
    { names: ['setns', 'read'], action: 'SCMP_ACT_ALLOW' },
    { names: ['setns'], action: 'SCMP_ACT_ERRNO', errnoRet: 1 },
    { names: ['read'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value: 1, op: 'SCMP_CMP_EQ' }] },
  ]);
  const r = convertProfile(d, { arch: 'amd64', caps: [] });
  assert.deepEqual(r.profile.syscalls, [
    { names: ['read'], action: 'SCMP_ACT_ALLOW' },
    { names: ['setns'], action: 'SCMP_ACT_ERRNO', errnoRet: 1 },
    { names: ['read'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value: 1n, op: 'SCMP_CMP_EQ' }] },
  ]);
  assert.equal(r.notes.length, 1);
  assert.match(r.notes[0]!, /^setns: /);
});

test('format detection; unknown members are errors naming their path', () => {
  assert.equal(detectFormat(doc([])), 'docker');
  assert.equal(detectFormat({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['a'], action: 'SCMP_ACT_ALLOW', includes: {} }] }), 'docker');
  assert.equal(detectFormat({ apiVersion: 'security-profiles-operator.x-k8s.io/v1beta1', kind: 'SeccompProfile', spec: {} }), 'spo');
  assert.equal(detectFormat({ defaultAction: 'SCMP_ACT_ALLOW' }), undefined);
  assert.throws(() => convertProfile(doc([{ names: ['a'], action: 'SCMP_ACT_ALLOW', bogus: 1 }]), { arch: 'amd64', caps: [] }), (e: unknown) => e instanceof SpokeError && e.context.path === 'syscalls[0].bogus');
  assert.throws(() => parseProfileText('{"a": 1, "a": 2}'), (e: unknown) => e instanceof SpokeError && e.code === 'SecurityProfileInvalid');
});

test('an entry with both "name" and "names" is refused, as moby and containers-common refuse it: none of its names is dropped', () => {
  const d = doc([{ name: 'ptrace', names: ['ptrace', 'bpf', 'kexec_load'], action: 'SCMP_ACT_ERRNO', errnoRet: 1 }], { defaultAction: 'SCMP_ACT_ALLOW' });
  assert.throws(() => convertProfile(d, { arch: 'amd64', caps: [] }), (e: unknown) => e instanceof SpokeError && e.code === 'SecurityProfileInvalid' && e.context.path === 'syscalls[0].name');
});

test('"architectures" beside "archMap" is refused, as moby refuses it, rather than one of them read', () => {
  const d = doc([{ names: ['x'], action: 'SCMP_ACT_ALLOW' }], { architectures: ['SCMP_ARCH_X86_64'] });
  assert.throws(() => convertProfile(d, { arch: 'amd64', caps: [] }), (e: unknown) => e instanceof SpokeError && e.code === 'SecurityProfileInvalid' && e.context.path === 'architectures');
});

test("the document's capability names are compared as moby compares them, exactly: a name not spelled CAP_… matches no capability, and that is said", () => {
  const d = doc([
    { names: ['mount'], action: 'SCMP_ACT_ALLOW', includes: { caps: ['sys_admin'] } },
    { names: ['ptrace'], action: 'SCMP_ACT_ALLOW', excludes: { caps: ['sys_ptrace'] } },
  ]);
  const { profile, notes } = convertProfile(d, { arch: 'amd64', caps: ['SYS_ADMIN', 'SYS_PTRACE'] });
  assert.deepEqual(profile.syscalls?.flatMap((s) => s.names), ['ptrace']);
  assert.ok(notes.some((n) => n.includes('sys_admin') && n.includes('CAP_SYS_ADMIN')), notes.join('\n'));
});

test('YAML whose values YAML 1.1 (kubectl, sigs.k8s.io/yaml) and YAML 1.2 read differently is refused: a leading 0 is octal to one and decimal to the other', () => {
  for (const text of ['value: 04000', 'value: 0o10', 'flag: yes', 'flag: off', 'value: 1_000']) {
    assert.throws(() => parseProfileText(text), (e: unknown) => e instanceof SpokeError && e.code === 'SecurityProfileInvalid' && e.reason === 'JSON_INVALID', text);
  }
  assert.deepEqual(parseProfileText('value: 2048\nname: "04000"\nflag: true'), { value: 2048n, name: '04000', flag: true });
  assert.deepEqual(parseProfileText('{"value": 18446744073709551615, "flag": false}'), { value: 18446744073709551615n, flag: false });
});
