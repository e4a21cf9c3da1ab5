// Property tests of the merge against the reference evaluator (KEP-6061 §4): the effective
// profile is never looser than any input, equals the inputs when they agree, is idempotent and
// does not depend on the order of inputs of equal trust (actions; errno ties follow trust order).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import {
  actionRank,
  canonicalize,
  decodeSeccomp,
  encodeCanonical,
  evaluate,
  intersect,
  mergeProfiles,
  validate,
  type SeccompAction,
  type SeccompArg,
  type SeccompProfile,
  type SeccompSyscall,
} from '../../../src/profiles/seccomp/index.js';

const NAMES = ['read', 'write', 'mkdir'];
const VALUES = [0n, 1n, 2n, 3n, 5n, (1n << 32n) - 1n, 1n << 32n, (1n << 64n) - 1n];
const ACTIONS: SeccompAction[] = ['SCMP_ACT_KILL_PROCESS', 'SCMP_ACT_KILL', 'SCMP_ACT_TRAP', 'SCMP_ACT_ERRNO', 'SCMP_ACT_TRACE', 'SCMP_ACT_LOG', 'SCMP_ACT_ALLOW'];
const OPS: SeccompArg['op'][] = ['SCMP_CMP_NE', 'SCMP_CMP_LT', 'SCMP_CMP_LE', 'SCMP_CMP_EQ', 'SCMP_CMP_GE', 'SCMP_CMP_GT', 'SCMP_CMP_MASKED_EQ'];

const value = fc.constantFrom(...VALUES);
const action = fc.constantFrom(...ACTIONS);
const errno = fc.option(fc.constantFrom(1, 2, 38), { nil: undefined });
const argument: fc.Arbitrary<SeccompArg> = fc.record({ index: fc.integer({ min: 0, max: 1 }), value, op: fc.constantFrom(...OPS), valueTwo: value });
const entry: fc.Arbitrary<SeccompSyscall> = fc
  .record({
    names: fc.uniqueArray(fc.constantFrom(...NAMES), { minLength: 1, maxLength: 3 }),
    action,
    errnoRet: errno,
    args: fc.array(argument, { maxLength: 2 }),
  })
  .map(({ names, action: a, errnoRet, args }) => ({
    names,
    action: a,
    ...(errnoRet !== undefined && (a === 'SCMP_ACT_ERRNO' || a === 'SCMP_ACT_TRACE') ? { errnoRet } : {}),
    ...(args.length === 0 ? {} : { args }),
  }));
const profile: fc.Arbitrary<SeccompProfile> = fc.record({ defaultAction: action, syscalls: fc.array(entry, { maxLength: 5 }) });
const call = fc.record({ syscall: fc.constantFrom(...NAMES, 'other'), args: fc.tuple(value, value) });
const calls = fc.array(call, { minLength: 1, maxLength: 25 });

const RUNS = { numRuns: 300 };

test('property: the effective profile is at least as restrictive as each input', () => {
  fc.assert(
    fc.property(profile, fc.option(profile, { nil: undefined }), profile, calls, (baseline, base, artifact, cs) => {
      const effective = intersect(baseline, base, artifact).profile;
      for (const c of cs) {
        const got = actionRank(evaluate(effective, c).action);
        for (const input of [baseline, base, artifact]) {
          if (input !== undefined) assert.ok(got <= actionRank(evaluate(input, c).action), `${JSON.stringify(c, (_, v) => (typeof v === 'bigint' ? `${v}` : v))}`);
        }
      }
    }),
    RUNS,
  );
});

test('property: when the inputs agree the effective profile equals them (and P ∩ P evaluates like P)', () => {
  fc.assert(
    fc.property(profile, calls, (p, cs) => {
      const effective = intersect(p, p, p).profile;
      for (const c of cs) assert.deepEqual(evaluate(effective, c), evaluate(p, c));
    }),
    RUNS,
  );
});

test('property: merging is idempotent and its bytes are canonical', () => {
  fc.assert(
    fc.property(profile, profile, (a, b) => {
      const r = intersect(a, undefined, b);
      const again = intersect(r.profile, undefined, r.profile);
      assert.ok(again.bytes.equals(r.bytes));
      assert.ok(encodeCanonical(canonicalize(r.profile)).equals(r.bytes));
      assert.deepEqual(decodeSeccomp(r.bytes), r.profile);
      validate(r.profile);
    }),
    RUNS,
  );
});

test('property: no order of the inputs loosens anything (errno ties aside, trust order only picks errno)', () => {
  const orders = [[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]];
  fc.assert(
    fc.property(fc.tuple(profile, profile, profile), calls, (inputs, cs) => {
      for (const order of orders) {
        const effective = mergeProfiles(order.map((i) => inputs[i]!));
        for (const c of cs) {
          const strictestInput = Math.min(...inputs.map((p) => actionRank(evaluate(p, c).action)));
          assert.ok(actionRank(evaluate(effective, c).action) <= strictestInput);
        }
      }
    }),
    { numRuns: 150 },
  );
});

test('property: with unconditional rules only, every order gives the same actions', () => {
  const plain = profile.map((p) => ({ ...p, syscalls: (p.syscalls ?? []).map(({ args: _args, ...rest }) => rest) }));
  fc.assert(
    fc.property(plain, plain, plain, calls, (a, b, c, cs) => {
      const one = mergeProfiles([a, b, c]);
      const two = mergeProfiles([c, a, b]);
      for (const x of cs) assert.equal(evaluate(one, x).action, evaluate(two, x).action);
    }),
    RUNS,
  );
});
