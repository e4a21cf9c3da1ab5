import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import {
  canonicalize,
  decodeSeccomp,
  diff,
  encodeCanonical,
  evaluate,
  formatConstraint,
  intersect,
  validate,
  validateArtifact,
  validateRuntimeSteps,
  type SeccompArg,
  type SeccompProfile,
  type SeccompSyscall,
} from '../../../src/profiles/seccomp/index.js';
import { spokeError } from '../../helpers/assert.js';

const A = (names: string[], action: SeccompSyscall['action'], args?: SeccompArg[], errnoRet?: number): SeccompSyscall => ({
  names,
  action,
  ...(args === undefined ? {} : { args }),
  ...(errnoRet === undefined ? {} : { errnoRet }),
});
const P = (defaultAction: SeccompProfile['defaultAction'], syscalls: SeccompSyscall[] = [], extra: Partial<SeccompProfile> = {}): SeccompProfile => ({
  defaultAction,
  syscalls,
  ...extra,
});
const arg = (index: number, op: SeccompArg['op'], value: bigint, valueTwo?: bigint): SeccompArg => ({ index, op, value, ...(valueTwo === undefined ? {} : { valueTwo }) });
const ev = (p: SeccompProfile, syscall: string, ...args: bigint[]) => evaluate(p, { syscall, args });
const merge = (baseline: SeccompProfile, artifact: SeccompProfile, base?: SeccompProfile) => intersect(baseline, base, artifact);

test('KEP: a call is permitted only if every input permits it (baseline denies mkdir)', () => {
  const r = merge(P('SCMP_ACT_ALLOW', [A(['mkdir', 'mkdirat'], 'SCMP_ACT_ERRNO')]), P('SCMP_ACT_ALLOW'));
  assert.deepEqual(ev(r.profile, 'mkdir'), { action: 'SCMP_ACT_ERRNO', errno: 1 });
  assert.deepEqual(ev(r.profile, 'write'), { action: 'SCMP_ACT_ALLOW' });
});

test('KEP: the artifact can never loosen the baseline (bpf stays denied)', () => {
  const r = merge(P('SCMP_ACT_ERRNO', [A(['read', 'write'], 'SCMP_ACT_ALLOW')]), P('SCMP_ACT_ALLOW', [A(['bpf'], 'SCMP_ACT_ALLOW')]));
  assert.equal(ev(r.profile, 'bpf').action, 'SCMP_ACT_ERRNO');
  assert.equal(ev(r.profile, 'read').action, 'SCMP_ACT_ALLOW');
});

test('KEP: action order KILL_PROCESS > KILL > TRAP > ERRNO > NOTIFY > TRACE > LOG > ALLOW', () => {
  const order: SeccompSyscall['action'][] = ['SCMP_ACT_KILL_PROCESS', 'SCMP_ACT_KILL', 'SCMP_ACT_TRAP', 'SCMP_ACT_ERRNO', 'SCMP_ACT_TRACE', 'SCMP_ACT_LOG', 'SCMP_ACT_ALLOW'];
  for (let i = 0; i < order.length; i++) {
    for (let j = 0; j < order.length; j++) {
      const r = merge(P('SCMP_ACT_ALLOW', [A(['x'], order[i]!)]), P('SCMP_ACT_ALLOW', [A(['x'], order[j]!)]));
      assert.equal(ev(r.profile, 'x').action, order[Math.min(i, j)], `${order[i]} vs ${order[j]}`);
    }
  }
});

test('KEP: KILL_THREAD is written as SCMP_ACT_KILL', () => {
  const r = merge(P('SCMP_ACT_ALLOW'), P('SCMP_ACT_ALLOW', [A(['x'], 'SCMP_ACT_KILL_THREAD')]));
  assert.equal(r.profile.syscalls?.[0]?.action, 'SCMP_ACT_KILL');
});

test('KEP: defaultAction is the more restrictive one; absent syscalls get each profile default', () => {
  const r = merge(P('SCMP_ACT_LOG'), P('SCMP_ACT_ERRNO', [A(['read'], 'SCMP_ACT_ALLOW')]));
  assert.equal(r.profile.defaultAction, 'SCMP_ACT_ERRNO');
  assert.equal(ev(r.profile, 'read').action, 'SCMP_ACT_LOG');
  assert.equal(ev(r.profile, 'other').action, 'SCMP_ACT_ERRNO');
});

test('KEP: errno comes from the picked action; equal actions: the earlier input wins', () => {
  const r = merge(P('SCMP_ACT_ALLOW', [A(['x'], 'SCMP_ACT_ERRNO', undefined, 13)]), P('SCMP_ACT_ALLOW', [A(['x'], 'SCMP_ACT_ERRNO', undefined, 2), A(['y'], 'SCMP_ACT_ERRNO', undefined, 2)]));
  assert.deepEqual(ev(r.profile, 'x'), { action: 'SCMP_ACT_ERRNO', errno: 13 });
  assert.deepEqual(ev(r.profile, 'y'), { action: 'SCMP_ACT_ERRNO', errno: 2 });
  const d = merge(P('SCMP_ACT_ERRNO', [], { defaultErrnoRet: 38 }), P('SCMP_ACT_ERRNO'));
  assert.equal(d.profile.defaultErrnoRet, 38);
});

test('KEP: EPERM is written as unset and ignored errno values are dropped', () => {
  const r = merge(P('SCMP_ACT_ALLOW', [A(['x'], 'SCMP_ACT_ERRNO', undefined, 1), A(['y'], 'SCMP_ACT_KILL')]), P('SCMP_ACT_ALLOW'));
  for (const s of r.profile.syscalls ?? []) assert.equal(s.errnoRet, undefined);
});

test('KEP: filters on different indices are ANDed into one entry', () => {
  const r = merge(P('SCMP_ACT_ERRNO', [A(['w'], 'SCMP_ACT_ALLOW', [arg(0, 'SCMP_CMP_EQ', 1n)])]), P('SCMP_ACT_ERRNO', [A(['w'], 'SCMP_ACT_ALLOW', [arg(1, 'SCMP_CMP_EQ', 2n)])]));
  assert.deepEqual(r.profile.syscalls, [{ names: ['w'], action: 'SCMP_ACT_ALLOW', args: [arg(0, 'SCMP_CMP_EQ', 1n), arg(1, 'SCMP_CMP_EQ', 2n)] }]);
  assert.equal(ev(r.profile, 'w', 1n, 2n).action, 'SCMP_ACT_ALLOW');
  assert.equal(ev(r.profile, 'w', 1n, 3n).action, 'SCMP_ACT_ERRNO');
});

test('KEP: identical filters are kept', () => {
  const s = [A(['w'], 'SCMP_ACT_ALLOW', [arg(0, 'SCMP_CMP_EQ', 1n)])];
  const r = merge(P('SCMP_ACT_ERRNO', s), P('SCMP_ACT_ERRNO', s));
  assert.deepEqual(r.profile.syscalls, s);
});

test('KEP: provably disjoint filters yield no shared entry', () => {
  const r = merge(P('SCMP_ACT_ERRNO', [A(['w'], 'SCMP_ACT_ALLOW', [arg(0, 'SCMP_CMP_EQ', 1n)])]), P('SCMP_ACT_ERRNO', [A(['w'], 'SCMP_ACT_ALLOW', [arg(0, 'SCMP_CMP_EQ', 2n)])]));
  // Named at the default only, for runc's ENOSYS threshold: no rule runc loads.
  assert.deepEqual(r.profile.syscalls, [{ names: ['w'], action: 'SCMP_ACT_ERRNO' }]);
});

test('KEP: different conditions on one index are inexpressible: the more restrictive action (write arg0>2 vs arg0<100)', () => {
  const r = merge(P('SCMP_ACT_ERRNO', [A(['write'], 'SCMP_ACT_ALLOW', [arg(0, 'SCMP_CMP_GT', 2n)])]), P('SCMP_ACT_ERRNO', [A(['write'], 'SCMP_ACT_ALLOW', [arg(0, 'SCMP_CMP_LT', 100n)])]));
  for (const x of [0n, 50n, 200n]) assert.equal(ev(r.profile, 'write', x).action, 'SCMP_ACT_ERRNO');
  assert.ok(r.constrained.some((c) => c.kind === 'syscall' && c.syscall === 'write' && c.by === 'inexpressible'));
});

test('KEP: valueTwo is cleared outside MASKED_EQ; MASKED_EQ with an empty mask is dropped', () => {
  const r = canonicalize(P('SCMP_ACT_ERRNO', [A(['a'], 'SCMP_ACT_ALLOW', [arg(0, 'SCMP_CMP_EQ', 1n, 7n)]), A(['b'], 'SCMP_ACT_ALLOW', [arg(0, 'SCMP_CMP_MASKED_EQ', 0n, 0n)])]));
  assert.deepEqual(r.syscalls, [
    { names: ['b'], action: 'SCMP_ACT_ALLOW' },
    { names: ['a'], action: 'SCMP_ACT_ALLOW', args: [arg(0, 'SCMP_CMP_EQ', 1n)] },
  ]);
});

test('KEP: an unconditional rule hides conditional ones (evaluation model)', () => {
  const p = P('SCMP_ACT_ERRNO', [A(['x'], 'SCMP_ACT_ALLOW'), A(['x'], 'SCMP_ACT_LOG', [arg(0, 'SCMP_CMP_EQ', 1n)])]);
  validate(p);
  assert.equal(ev(p, 'x', 1n).action, 'SCMP_ACT_ALLOW');
});

test('KEP: entries equal to the default are skipped (evaluation model)', () => {
  const p = P('SCMP_ACT_ERRNO', [A(['x'], 'SCMP_ACT_ERRNO', [arg(0, 'SCMP_CMP_EQ', 1n)]), A(['x'], 'SCMP_ACT_ALLOW')]);
  assert.equal(ev(p, 'x', 1n).action, 'SCMP_ACT_ALLOW');
});

test('KEP: non-safe shapes read as the most restrictive action', () => {
  const p = P('SCMP_ACT_ALLOW', [A(['x'], 'SCMP_ACT_LOG', [arg(0, 'SCMP_CMP_EQ', 1n), arg(1, 'SCMP_CMP_EQ', 1n)]), A(['x'], 'SCMP_ACT_TRAP', [arg(0, 'SCMP_CMP_EQ', 2n), arg(1, 'SCMP_CMP_EQ', 2n)])]);
  assert.equal(ev(p, 'x', 9n, 9n).action, 'SCMP_ACT_TRAP');
});

test('KEP: a one-condition entry next to an unconditional result becomes entry + complement', () => {
  // Artifact: write arg0 == 1 denied with EBADF, all else allowed; baseline allows write, denies by default.
  const r = merge(P('SCMP_ACT_ERRNO', [A(['write'], 'SCMP_ACT_ALLOW')]), P('SCMP_ACT_ALLOW', [A(['write'], 'SCMP_ACT_ERRNO', [arg(0, 'SCMP_CMP_EQ', 1n)], 9)]));
  assert.deepEqual(r.profile.syscalls, [
    { names: ['write'], action: 'SCMP_ACT_ERRNO', errnoRet: 9, args: [arg(0, 'SCMP_CMP_EQ', 1n)] },
    { names: ['write'], action: 'SCMP_ACT_ALLOW', args: [arg(0, 'SCMP_CMP_NE', 1n)] },
  ]);
  assert.deepEqual(ev(r.profile, 'write', 1n), { action: 'SCMP_ACT_ERRNO', errno: 9 });
  assert.equal(ev(r.profile, 'write', 2n).action, 'SCMP_ACT_ALLOW');
});

test('KEP: without a complement the syscall collapses to the most restrictive action', () => {
  const r = merge(P('SCMP_ACT_ERRNO', [A(['w'], 'SCMP_ACT_ALLOW')]), P('SCMP_ACT_ALLOW', [A(['w'], 'SCMP_ACT_LOG', [arg(0, 'SCMP_CMP_MASKED_EQ', 3n, 1n)])]));
  assert.deepEqual(r.profile.syscalls, [{ names: ['w'], action: 'SCMP_ACT_LOG' }]);
});

test('KEP: architectures present in only some inputs are dropped', () => {
  const r = merge(P('SCMP_ACT_ALLOW', [], { architectures: ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32'] }), P('SCMP_ACT_ALLOW', [], { architectures: ['SCMP_ARCH_X86_64', 'SCMP_ARCH_AARCH64'] }));
  assert.deepEqual(r.profile.architectures, ['SCMP_ARCH_X86_64']);
  assert.deepEqual(r.constrained, [{ kind: 'architecture', architecture: 'SCMP_ARCH_AARCH64', by: 'baseline' }]);
});

test('KEP: 32-bit architectures are dropped when an input compares values wider than 32 bits', () => {
  const r = merge(P('SCMP_ACT_ALLOW', [], { architectures: ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86'] }), P('SCMP_ACT_ALLOW', [A(['x'], 'SCMP_ACT_ERRNO', [arg(0, 'SCMP_CMP_EQ', 1n << 40n)])], { architectures: ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86'] }));
  assert.deepEqual(r.profile.architectures, ['SCMP_ARCH_X86_64']);
  // Wide as written, though not once normalised: `arg >= 2^32` reads as `arg > 0xffffffff`, where
  // libseccomp on a 32-bit architecture compares the written value's low word (`arg >= 0`, every
  // call). Only a node's own inputs (a baseline with a listener, the runtime's default) can say so.
  for (const [op, value] of [['SCMP_CMP_GE', 1n << 32n], ['SCMP_CMP_LT', 1n << 32n], ['SCMP_CMP_NE', 1n << 32n]] as const) {
    const baseline = P('SCMP_ACT_ALLOW', [A(['mkdir'], 'SCMP_ACT_ERRNO', [arg(1, op, value)])], { architectures: ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86'] });
    const w = merge(baseline, P('SCMP_ACT_ALLOW', [], { architectures: ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86'] }));
    assert.deepEqual(w.profile.architectures, ['SCMP_ARCH_X86_64'], op);
  }
});

test('KEP: flags: SPEC_ALLOW only if all, LOG if any, no member unless an input names flags', () => {
  assert.equal(merge(P('SCMP_ACT_ALLOW'), P('SCMP_ACT_ALLOW')).profile.flags, undefined);
  const r = merge(P('SCMP_ACT_ALLOW', [], { flags: ['SECCOMP_FILTER_FLAG_SPEC_ALLOW'] }), P('SCMP_ACT_ALLOW', [], { flags: ['SECCOMP_FILTER_FLAG_LOG', 'SECCOMP_FILTER_FLAG_SPEC_ALLOW'] }));
  assert.deepEqual(r.profile.flags, ['SECCOMP_FILTER_FLAG_LOG', 'SECCOMP_FILTER_FLAG_SPEC_ALLOW']);
  const s = merge(P('SCMP_ACT_ALLOW'), P('SCMP_ACT_ALLOW', [], { flags: ['SECCOMP_FILTER_FLAG_SPEC_ALLOW'] }));
  assert.deepEqual(s.profile.flags, []);
  assert.deepEqual(s.constrained, [{ kind: 'flag', flag: 'SECCOMP_FILTER_FLAG_SPEC_ALLOW', by: 'baseline' }]);
});

test('KEP: the listener comes from the baseline; TSYNC is not kept next to a listener', () => {
  const baseline = P('SCMP_ACT_ALLOW', [A(['mkdir'], 'SCMP_ACT_NOTIFY')], { listenerPath: '/run/agent.sock', listenerMetadata: 'm', flags: ['SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV'] });
  const r = merge(baseline, P('SCMP_ACT_ALLOW', [], { flags: ['SECCOMP_FILTER_FLAG_TSYNC'] }));
  assert.equal(r.profile.listenerPath, '/run/agent.sock');
  assert.equal(r.profile.listenerMetadata, 'm');
  assert.deepEqual(r.profile.flags, ['SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV']);
  assert.equal(ev(r.profile, 'mkdir').action, 'SCMP_ACT_NOTIFY');
});

test('three inputs: base profile constrains too and is named in the log', () => {
  const r = merge(P('SCMP_ACT_ALLOW', [A(['bpf'], 'SCMP_ACT_ERRNO')]), P('SCMP_ACT_ALLOW'), P('SCMP_ACT_ALLOW', [A(['chmod'], 'SCMP_ACT_KILL_PROCESS')]));
  assert.equal(ev(r.profile, 'chmod').action, 'SCMP_ACT_KILL_PROCESS');
  assert.deepEqual(
    r.constrained.map(formatConstraint),
    ['bpf: artifact SCMP_ACT_ALLOW, effective SCMP_ACT_ERRNO(errno 1) (by the node baseline)', 'chmod: artifact SCMP_ACT_ALLOW, effective SCMP_ACT_KILL_PROCESS (by the pod base profile)'],
  );
});

test('canonical output: equal inputs give byte-identical bytes, whatever their order and spelling', () => {
  const one = P('SCMP_ACT_ERRNO', [A(['b', 'a'], 'SCMP_ACT_ALLOW'), A(['c'], 'SCMP_ACT_ERRNO', [arg(0, 'SCMP_CMP_LT', 5n)], 1)], { architectures: ['SCMP_ARCH_X86', 'SCMP_ARCH_X86_64'] });
  const two = P('SCMP_ACT_ERRNO', [A(['c'], 'SCMP_ACT_ERRNO', [arg(0, 'SCMP_CMP_LE', 4n)]), A(['a'], 'SCMP_ACT_ALLOW'), A(['b'], 'SCMP_ACT_ALLOW')], { architectures: ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86'] });
  const baseline = decodeSeccomp(readFileSync(new URL('../../../../policy/seccomp-baseline.json', import.meta.url)));
  const r1 = intersect(baseline, undefined, one);
  const r2 = intersect(baseline, undefined, two);
  assert.ok(r1.bytes.equals(r2.bytes));
  assert.equal(r1.digest, r2.digest);
  assert.match(r1.digest, /^sha256:[0-9a-f]{64}$/);
  assert.ok(encodeCanonical(canonicalize(one)).equals(encodeCanonical(canonicalize(two))));
  // The bytes decode back to the same profile.
  assert.deepEqual(decodeSeccomp(r1.bytes), r1.profile);
});

test('diff lists default action, syscall and argument cases', () => {
  const baseline = P('SCMP_ACT_ERRNO', [A(['read', 'write'], 'SCMP_ACT_ALLOW'), A(['open'], 'SCMP_ACT_ALLOW', [arg(1, 'SCMP_CMP_EQ', 0n)])]);
  const artifact = P('SCMP_ACT_ALLOW', [A(['write'], 'SCMP_ACT_LOG')]);
  const r = merge(baseline, artifact);
  assert.deepEqual(r.constrained, [
    { kind: 'defaultAction', artifact: { action: 'SCMP_ACT_ALLOW' }, effective: { action: 'SCMP_ACT_ERRNO', errno: 1 }, by: 'baseline' },
    { kind: 'syscall', syscall: 'open', args: 'arg1 >= 1', artifact: { action: 'SCMP_ACT_ALLOW' }, effective: { action: 'SCMP_ACT_ERRNO', errno: 1 }, by: 'baseline' },
  ]);
  assert.equal(formatConstraint(r.constrained[1]!), 'open when arg1 >= 1: artifact SCMP_ACT_ALLOW, effective SCMP_ACT_ERRNO(errno 1) (by the node baseline)');
  // Without the inputs, diff cannot attribute.
  assert.deepEqual(diff(artifact, r.profile)[0], { kind: 'defaultAction', artifact: { action: 'SCMP_ACT_ALLOW' }, effective: { action: 'SCMP_ACT_ERRNO', errno: 1 } });
});

test('evaluate: architectures outside the filter hit the bad-arch kill', () => {
  const p = P('SCMP_ACT_ALLOW', [], { architectures: ['SCMP_ARCH_X86_64'] });
  assert.deepEqual(evaluate(p, { syscall: 'read', arch: 'SCMP_ARCH_AARCH64' }), { action: 'SCMP_ACT_KILL', badArch: true });
  assert.deepEqual(evaluate(p, { syscall: 'read', arch: 'SCMP_ARCH_X86_64' }), { action: 'SCMP_ACT_ALLOW' });
});

test('intersect refuses a missing input', () => {
  assert.throws(() => intersect(undefined as unknown as SeccompProfile, undefined, P('SCMP_ACT_ALLOW')), spokeError({ code: 'SecurityProfileInvalid', reason: 'PROFILE_INVALID' }));
});

test('MASKED_EQ compares the datum under its mask, as libseccomp does: datum bits outside the mask never make a rule dead', () => {
  // libseccomp tests (x & mask) == (datum & mask); with mask 0 the comparison goes, and the rule
  // applies to every call.
  const baseline = P('SCMP_ACT_ALLOW', [A(['getppid'], 'SCMP_ACT_ERRNO', [arg(0, 'SCMP_CMP_MASKED_EQ', 0n, 1n)])]);
  const merged = merge(baseline, P('SCMP_ACT_ALLOW'));
  for (const x of [0n, 1n, 7n]) {
    assert.equal(ev(baseline, 'getppid', x).action, 'SCMP_ACT_ERRNO');
    assert.equal(ev(merged.profile, 'getppid', x).action, 'SCMP_ACT_ERRNO');
  }
  // Mask 1, datum 3: the calls whose first argument is odd.
  const artifact = P('SCMP_ACT_ALLOW', [A(['getppid'], 'SCMP_ACT_ERRNO', [arg(0, 'SCMP_CMP_MASKED_EQ', 1n, 3n)])]);
  const fromArtifact = merge(P('SCMP_ACT_ALLOW'), artifact);
  for (const x of [1n, 3n, 5n]) assert.equal(ev(fromArtifact.profile, 'getppid', x).action, 'SCMP_ACT_ERRNO');
  for (const x of [0n, 2n]) assert.equal(ev(fromArtifact.profile, 'getppid', x).action, 'SCMP_ACT_ALLOW');
});

test('libseccomp 2.5 misbuilds an or-set of two range comparisons on one argument with a value of 2^32 or more: never read, accepted or written as one', () => {
  // Checked against libseccomp 2.5.4 under runc: ALLOW kill if arg0 < 40, ALLOW kill if
  // arg0 >= 2^32 + 5 was enforced as allowing kill(40, …), which the baseline denies.
  const range = [A(['kill'], 'SCMP_ACT_ALLOW', [arg(0, 'SCMP_CMP_LT', 40n)]), A(['kill'], 'SCMP_ACT_ALLOW', [arg(0, 'SCMP_CMP_GE', (1n << 32n) + 5n)])];
  const baseline = P('SCMP_ACT_ERRNO', [A(['kill'], 'SCMP_ACT_ALLOW', [arg(0, 'SCMP_CMP_NE', 40n)]), A(['read'], 'SCMP_ACT_ALLOW')], { architectures: ['SCMP_ARCH_X86_64'] });
  const artifact = P('SCMP_ACT_ERRNO', [...range, A(['read'], 'SCMP_ACT_ALLOW')], { architectures: ['SCMP_ARCH_X86_64'] });
  // Read as its most restrictive verdict, as any shape runc does not load exactly.
  assert.equal(ev(artifact, 'kill', 1n).action, 'SCMP_ACT_ERRNO');
  assert.throws(() => validateArtifact(artifact), spokeError({ code: 'SecurityProfileInvalid', reason: 'PROFILE_INVALID' }));
  const r = merge(baseline, artifact);
  assert.equal(ev(r.profile, 'kill', 40n).action, 'SCMP_ACT_ERRNO');
  const kills = (r.profile.syscalls ?? []).filter((s) => s.names.includes('kill'));
  const wide = kills.flatMap((s) => s.args ?? []).some((a) => a.value > 0xffffffffn);
  assert.ok(!(kills.length > 1 && wide), `no misbuilt or-set written: ${JSON.stringify(kills, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v))}`);
  // Below 2^32 the same shape is loaded exactly, and stays an or-set.
  const narrow = P('SCMP_ACT_ERRNO', [A(['kill'], 'SCMP_ACT_ALLOW', [arg(0, 'SCMP_CMP_LT', 40n)]), A(['kill'], 'SCMP_ACT_ALLOW', [arg(0, 'SCMP_CMP_GE', 50n)])]);
  validateArtifact(narrow);
  assert.equal(ev(narrow, 'kill', 1n).action, 'SCMP_ACT_ALLOW');
});

test('a complementary pair the merge would write with a range comparison and a value of 2^32 or more is collapsed, not written for the shim to refuse', () => {
  // Each input passes; exactly, the merge is `KILL read if arg0 <= 2^32 + 4` plus `ALLOW read
  // if arg0 >= 2^32 + 5`: two conditions on one argument, a range comparison and a wide value,
  // which validateRuntimeSteps refuses in an effective profile (MERGE_UNSAFE at every create).
  const wide = (1n << 32n) + 5n;
  const baseline = P('SCMP_ACT_ALLOW', [A(['read'], 'SCMP_ACT_KILL', [arg(0, 'SCMP_CMP_LT', wide)])]);
  const artifact = P('SCMP_ACT_KILL_PROCESS', [A(['read'], 'SCMP_ACT_ALLOW')]);
  validateArtifact(artifact);
  validateRuntimeSteps(baseline);
  const r = merge(baseline, artifact);
  validateRuntimeSteps(r.profile);
  // Collapsed to the strictest verdict involved (KEP §4), never looser than the baseline.
  for (const x of [0n, wide - 1n, wide, (1n << 64n) - 1n]) assert.equal(ev(r.profile, 'read', x).action, 'SCMP_ACT_KILL');
});

test('products share one work budget per merge: past it a syscall gets its strictest verdict, and the report lists it', () => {
  // An or-set of 128 values in both the base and the artifact: each syscall's exact product
  // conjoins ~66,000 atoms, so the first fits the budget and the rest are not multiplied
  // (docs/decisions.md#merge-budget). Without a budget 120 such syscalls took seconds.
  const names = ['read', 'write', 'close', 'fstat', 'lseek'];
  const orSet = Array.from({ length: 128 }, (_, i) => arg(0, 'SCMP_CMP_EQ', BigInt(i)));
  const baseline = P('SCMP_ACT_ERRNO', [A(names, 'SCMP_ACT_ALLOW')]);
  const filtered = P('SCMP_ACT_ERRNO', [A(names, 'SCMP_ACT_ALLOW', orSet)]);
  const r = merge(baseline, filtered, filtered);
  assert.deepEqual(ev(r.profile, 'read', 5n), { action: 'SCMP_ACT_ALLOW' }, 'the first product is made: exact');
  assert.deepEqual(ev(r.profile, 'read', 500n), { action: 'SCMP_ACT_ERRNO', errno: 1 });
  for (const name of names.slice(1)) {
    assert.deepEqual(ev(r.profile, name, 5n), { action: 'SCMP_ACT_ERRNO', errno: 1 }, `${name}: strictest verdict`);
    assert.ok(
      r.constrained.some((c) => c.kind === 'syscall' && c.syscall === name),
      `${name} is in the report`,
    );
  }
});

test('a rule whose conditions always match is still a conditional rule to libseccomp: never read as one that hides the others', () => {
  // A RuntimeDefault base (checked at the runtime's level only) may write it. libseccomp 2.5.4
  // loaded `KILL_PROCESS kill if arg1 == 9` + `ALLOW kill if arg0 <= 2^64-1` as killing kill(1, 9);
  // read as an unconditional ALLOW, the merge let it through.
  const base = P('SCMP_ACT_ERRNO', [A(['kill'], 'SCMP_ACT_KILL_PROCESS', [arg(1, 'SCMP_CMP_EQ', 9n)]), A(['kill'], 'SCMP_ACT_ALLOW', [arg(0, 'SCMP_CMP_LE', (1n << 64n) - 1n)])]);
  validate(base);
  assert.equal(ev(base, 'kill', 1n, 9n).action, 'SCMP_ACT_KILL_PROCESS');
  const r = merge(P('SCMP_ACT_ALLOW'), P('SCMP_ACT_ALLOW'), base);
  assert.equal(ev(r.profile, 'kill', 1n, 9n).action, 'SCMP_ACT_KILL_PROCESS');
  // Alone, such a rule is what it says: every call.
  const alone = P('SCMP_ACT_ERRNO', [A(['kill'], 'SCMP_ACT_ALLOW', [arg(0, 'SCMP_CMP_LE', (1n << 64n) - 1n)])]);
  assert.equal(ev(alone, 'kill', 7n, 9n).action, 'SCMP_ACT_ALLOW');
});

test('an unconditional rule and an always-matching one of the same verdict are read alike in either order', () => {
  // Found by the compare property: deduplicated as one, the always-matching one hid the
  // unconditional one when it came first, and the syscall read otherwise than in document order.
  const entries = [A(['mkdir'], 'SCMP_ACT_LOG'), A(['mkdir'], 'SCMP_ACT_LOG', [arg(0, 'SCMP_CMP_MASKED_EQ', 0n, 0n)]), A(['mkdir'], 'SCMP_ACT_KILL_PROCESS', [arg(0, 'SCMP_CMP_NE', 0n)])];
  const forward = P('SCMP_ACT_ERRNO', entries);
  const reversed = P('SCMP_ACT_ERRNO', [...entries].reverse());
  for (const a0 of [0n, 1n]) assert.deepEqual(ev(reversed, 'mkdir', a0), ev(forward, 'mkdir', a0), `mkdir(${a0})`);
});

test('a merge never keeps x32: libseccomp 2.5.4 misbuilt the x86_64 branch of such filters', () => {
  // A deny-list baseline denying ipc (a name x86_64 lacks) and an artifact denying
  // socket(AF_UNSPEC): with x32 listed, the filter libseccomp built let x86_64 socket(0) through.
  const archs: SeccompProfile['architectures'] = ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X32'];
  const r = merge(P('SCMP_ACT_ALLOW', [A(['ipc'], 'SCMP_ACT_ERRNO')], { architectures: archs }), P('SCMP_ACT_ALLOW', [A(['socket'], 'SCMP_ACT_ERRNO', [arg(0, 'SCMP_CMP_EQ', 0n)])], { architectures: archs }));
  assert.deepEqual(r.profile.architectures, ['SCMP_ARCH_X86_64']);
  assert.equal(ev(r.profile, 'socket', 0n).action, 'SCMP_ACT_ERRNO');
});

test('an unconditional rule libseccomp makes of a mask-0 MASKED_EQ counts with the other unconditional rules: the strictest holds (a listener baseline, checked at runtime level only, allowed kill where runc kills)', () => {
  // libseccomp drops a comparison whose mask is 0 (always true) and keeps the first
  // unconditional rule of a syscall; spoke takes the strictest of them, never the laxer.
  for (const order of [0, 1]) {
    const rules = [A(['kill'], 'SCMP_ACT_KILL_PROCESS', [arg(0, 'SCMP_CMP_MASKED_EQ', 0n)]), A(['kill'], 'SCMP_ACT_ALLOW')];
    const baseline = P('SCMP_ACT_ERRNO', order === 0 ? rules : rules.reverse(), { listenerPath: '/run/seccomp-agent.sock' });
    assert.equal(ev(baseline, 'kill', 1n, 0n).action, 'SCMP_ACT_KILL_PROCESS');
    const r = merge(baseline, P('SCMP_ACT_ALLOW'));
    assert.equal(ev(r.profile, 'kill', 1n, 0n).action, 'SCMP_ACT_KILL_PROCESS');
  }
});
