// Golden outputs: pins the exact bytes, digests and constraint logs of the merge, the validators'
// verdicts and the evaluator's answers over a large fixed corpus, so optimisations of the seccomp
// code provably change nothing observable. A failure here means output changed: if that was the
// intent, re-derive the pins with the new code and say why in the change.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { test } from 'node:test';
import fc from 'fast-check';
import { isSpokeError } from '../../../src/core/errors.js';
import {
  canonicalize,
  decodeSeccomp,
  diff,
  encodeCanonical,
  evaluate,
  formatConstraint,
  intersect,
  mergeProfiles,
  validate,
  validateArtifact,
  validateStrict,
  type SeccompAction,
  type SeccompArchitecture,
  type SeccompArg,
  type SeccompFlag,
  type SeccompProfile,
  type SeccompSyscall,
} from '../../../src/profiles/seccomp/index.js';
import { largeArtifact, smallProfile } from '../../bench/profiles.js';
import { baselineBytes, realisticProfile, stable } from './seccomp-fixtures.js';

const sha = (data: string | Uint8Array) => createHash('sha256').update(data).digest('hex');

function outcome(fn: () => unknown): string {
  try {
    const v = fn();
    return v === undefined ? 'ok' : Buffer.isBuffer(v) ? sha(v) : stable(v);
  } catch (e) {
    return isSpokeError(e) ? `throw ${e.code} ${e.message} ${stable(e.context)}` : `throw ${String(e)}`;
  }
}

function mergeOutcome(baseline: SeccompProfile, base: SeccompProfile | undefined, artifact: SeccompProfile): string {
  return outcome(() => {
    const r = intersect(baseline, base, artifact);
    return { bytes: sha(r.bytes), digest: r.digest, constrained: r.constrained, lines: r.constrained.map(formatConstraint) };
  });
}

const baseline = () => decodeSeccomp(baselineBytes());

test('golden: baseline ∩ 1 MiB artifact (bench largeArtifact)', () => {
  const artifact = decodeSeccomp(largeArtifact());
  const r = intersect(baseline(), undefined, artifact);
  assert.equal(r.digest, 'sha256:e62dcc16ac21eb52ed259817b60d867c41325301feef27e0b4e20fabdb147233');
  assert.equal(sha(stable(r.constrained)), '38057d36c0927664005b6a038c0a77f2d128d3147cd865b297556e9087b5b132');
  assert.equal(r.constrained.length, 786);
  assert.equal(sha(encodeCanonical(canonicalize(artifact))), '848a3f69117bb64a48e8179221b7701b4798ce4ddf56913be6bbd44cf8f34daa');
  assert.equal(outcome(() => validateArtifact(artifact)), 'ok');
});

test('golden: baseline ∩ realistic 350-syscall profile, and with it as pod base', () => {
  const p = realisticProfile();
  const decoded = decodeSeccomp(encodeCanonical(p));
  assert.equal(sha(mergeOutcome(baseline(), undefined, decoded)), '89df951099586aa4746a79177e2d17d7d7dfbe50c04e54ef95e26a095eb7f4f1');
  assert.equal(sha(mergeOutcome(baseline(), decoded, decodeSeccomp(smallProfile(7)))), 'de975ceb863b92a71b1cf5d754939b2e3a409d6f426ec9003cb41a7d6148d94e');
  assert.equal(sha([validate, validateArtifact, validateStrict].map((f) => outcome(() => f(decoded))).join('\n')), 'eaefae9b6e1c46c8bb54d8d5cc742c33715ea1807056339079affd05f322ff88');
});

const NAMES = ['read', 'write', 'mkdir', 'socket', 'personality', 'Bad-Name'];
const VALUES = [0n, 1n, 2n, 3n, 5n, 0xfffn, (1n << 32n) - 1n, 1n << 32n, (1n << 32n) + 1n, (1n << 33n) + 2n, (1n << 64n) - 2n, (1n << 64n) - 1n];
const ACTIONS: SeccompAction[] = ['SCMP_ACT_KILL_PROCESS', 'SCMP_ACT_KILL_THREAD', 'SCMP_ACT_KILL', 'SCMP_ACT_TRAP', 'SCMP_ACT_ERRNO', 'SCMP_ACT_TRACE', 'SCMP_ACT_LOG', 'SCMP_ACT_ALLOW'];
const OPS: SeccompArg['op'][] = ['SCMP_CMP_NE', 'SCMP_CMP_LT', 'SCMP_CMP_LE', 'SCMP_CMP_EQ', 'SCMP_CMP_GE', 'SCMP_CMP_GT', 'SCMP_CMP_MASKED_EQ'];
const ARCHS: SeccompArchitecture[] = ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32', 'SCMP_ARCH_AARCH64', 'SCMP_ARCH_S390X'];
const FLAGS: SeccompFlag[] = ['SECCOMP_FILTER_FLAG_TSYNC', 'SECCOMP_FILTER_FLAG_LOG', 'SECCOMP_FILTER_FLAG_SPEC_ALLOW', 'SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV'];

const value = fc.constantFrom(...VALUES);
const action = fc.oneof({ weight: 20, arbitrary: fc.constantFrom(...ACTIONS) }, { weight: 1, arbitrary: fc.constant<SeccompAction>('SCMP_ACT_NOTIFY') });
const argument: fc.Arbitrary<SeccompArg> = fc
  .record({ index: fc.integer({ min: 0, max: 2 }), value, op: fc.constantFrom(...OPS), valueTwo: fc.option(value, { nil: undefined }) })
  .map(({ valueTwo, ...rest }) => (valueTwo === undefined ? rest : { ...rest, valueTwo }));
const entry: fc.Arbitrary<SeccompSyscall> = fc
  .record({
    names: fc.array(fc.constantFrom(...NAMES), { minLength: 1, maxLength: 3 }),
    action,
    errnoRet: fc.option(fc.constantFrom(1, 2, 38, 5000), { nil: undefined, freq: 2 }),
    args: fc.array(argument, { maxLength: 3 }),
  })
  .map(({ names, action: a, errnoRet, args }) => ({ names, action: a, ...(errnoRet === undefined ? {} : { errnoRet }), ...(args.length === 0 ? {} : { args }) }));
const profile: fc.Arbitrary<SeccompProfile> = fc
  .record({
    defaultAction: fc.constantFrom(...ACTIONS),
    defaultErrnoRet: fc.option(fc.constantFrom(1, 38), { nil: undefined, freq: 3 }),
    architectures: fc.option(fc.subarray(ARCHS), { nil: undefined }),
    flags: fc.option(fc.subarray(FLAGS), { nil: undefined }),
    listenerPath: fc.option(fc.constant('/run/listener.sock'), { nil: undefined, freq: 8 }),
    syscalls: fc.array(entry, { maxLength: 7 }),
  })
  .map((p) => Object.fromEntries(Object.entries(p).filter(([, v]) => v !== undefined)) as unknown as SeccompProfile);
const calls = fc.array(fc.record({ syscall: fc.constantFrom(...NAMES, 'other'), args: fc.tuple(value, value, value) }), { minLength: 4, maxLength: 4 });

test('golden: fixed random corpus (merge, diff, validators, evaluator, canonical form)', () => {
  const samples = fc.sample(fc.tuple(profile, fc.option(profile, { nil: undefined }), profile, calls), { seed: 6061, numRuns: 2500 });
  const hash = createHash('sha256');
  for (const [a, base, b, cs] of samples) {
    const lines = [
      mergeOutcome(a, base, b),
      mergeOutcome(b, undefined, a),
      outcome(() => mergeProfiles([b, a])),
      outcome(() => encodeCanonical(canonicalize(b))),
      outcome(() => diff(b, a)),
      outcome(() => diff(b, a, { baseline: a, base })),
      ...[a, b].flatMap((p) => [validate, validateArtifact, validateStrict].map((f) => outcome(() => f(p)))),
      ...cs.map((c) => outcome(() => evaluate(a, c))),
      outcome(() => {
        const e = intersect(a, base, b).profile;
        return cs.map((c) => evaluate(e, c));
      }),
    ];
    hash.update(lines.join('\n'));
    hash.update('\n--\n');
  }
  assert.equal(hash.digest('hex'), 'ac141e67eca060335181dcb21f338c05e2cc8c22aa259f683a54c6d236ecb571');
});
