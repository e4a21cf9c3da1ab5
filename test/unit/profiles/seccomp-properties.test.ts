// Property tests of the merge against the reference evaluator (KEP-6061 §4): the effective
// profile is never looser than any input, equals the inputs when they agree, is idempotent and
// does not depend on the order of inputs of equal trust (actions; errno ties follow trust order).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import {
  actionRank,
  auditIntersect,
  canonicalize,
  decodeSeccomp,
  encodeCanonical,
  evaluate,
  intersect,
  mergeProfiles,
  validate,
  validateArtifact,
  type SeccompAction,
  type SeccompArg,
  type SeccompProfile,
  type SeccompSyscall,
} from '../../../src/profiles/seccomp/index.js';
import { decide, readProfile } from '../../../src/profiles/seccomp/decision.js';
import { capabilityDropIgnored } from '../../../src/profiles/seccomp/runtime-init.js';
import { isSpokeError } from '../../../src/core/errors.js';

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

test('property: the effective profile names every syscall an input names, so runc\'s ENOSYS threshold is never below an input\'s (docs/security-model.md#only-tighter)', () => {
  fc.assert(
    fc.property(profile, fc.option(profile, { nil: undefined }), profile, (baseline, base, artifact) => {
      const named = (p: SeccompProfile) => new Set((p.syscalls ?? []).flatMap((s) => s.names));
      const effective = named(intersect(baseline, base, artifact).profile);
      for (const input of [baseline, base, artifact]) if (input !== undefined) for (const n of named(input)) assert.ok(effective.has(n), n);
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

/** What an action with its errno does to a call, as a key: the evaluator's answer for a profile of that default alone. */
function verdictOfAction(action: SeccompProfile['defaultAction'], errnoRet: number | undefined): string {
  return JSON.stringify(evaluate({ defaultAction: action, ...(errnoRet === undefined ? {} : { defaultErrnoRet: errnoRet }) }, { syscall: 'x', args: [] }));
}

/**
 * Whether some syscall has, as written by the entries runc loads (not the default's), two or more
 * conditions on one argument with a range comparison and a value wider than 32 bits among them:
 * what libseccomp 2.5 builds wrong filters for.
 */
function writtenMisbuild(p: SeccompProfile): boolean {
  const defaultVerdict = verdictOfAction(p.defaultAction, p.defaultErrnoRet);
  const byArg = new Map<string, { count: number; range: boolean; wide: boolean }>();
  for (const s of p.syscalls ?? []) {
    if (verdictOfAction(s.action, s.errnoRet) === defaultVerdict) continue;
    for (const name of s.names) {
      for (const a of s.args ?? []) {
        const key = `${name}/${a.index}`;
        const w = byArg.get(key) ?? { count: 0, range: false, wide: false };
        w.count++;
        w.range ||= ['SCMP_CMP_LT', 'SCMP_CMP_LE', 'SCMP_CMP_GT', 'SCMP_CMP_GE'].includes(a.op);
        w.wide ||= a.value > 0xffffffffn || (a.valueTwo ?? 0n) > 0xffffffffn;
        byArg.set(key, w);
      }
    }
  }
  return [...byArg.values()].some((w) => w.count > 1 && w.range && w.wide);
}

/**
 * Whether an entry runc loads (not the default's verdict) has a condition no argument value
 * satisfies: `< 0` or `> 2^64 - 1` (libseccomp masks a masked comparison's datum too, so that
 * one always has a match).
 */
function neverMatching(p: SeccompProfile): boolean {
  const defaultVerdict = verdictOfAction(p.defaultAction, p.defaultErrnoRet);
  return (p.syscalls ?? []).some((s) => {
    return verdictOfAction(s.action, s.errnoRet) !== defaultVerdict && (s.args ?? []).some((a) => (a.op === 'SCMP_CMP_LT' && a.value === 0n) || (a.op === 'SCMP_CMP_GT' && a.value >= (1n << 64n) - 1n));
  });
}

// validateArtifact skips decide() for syscalls whose rules can only form an or-set; this holds it
// to the plain reading: refused exactly where decide() over readProfile() names a culprit, there,
// or where libseccomp would build the written conditions wrong.
test('property: validateArtifact refuses a shape exactly where decide() over the read profile finds a culprit, libseccomp misbuilds it, or a condition can never match', () => {
  fc.assert(
    fc.property(profile, (p) => {
      const read = readProfile(p);
      let expected: string | undefined;
      for (const clauses of read.clauses.values()) {
        const culprit = decide(clauses, read.defaultVerdict).culprit;
        if (culprit !== undefined) {
          expected = `syscalls[${culprit.entry}].names[${culprit.name}]`;
          break;
        }
      }
      const misbuilt = writtenMisbuild(p);
      const never = neverMatching(p);
      let got: string | undefined;
      try {
        validateArtifact(p);
      } catch (e) {
        assert.ok(isSpokeError(e) && e.reason === 'PROFILE_INVALID', String(e));
        got = String(e.context.path);
        // Those refusals name the condition (`syscalls[i].args[k]`), a shape's culprit its name.
        if ((misbuilt || never) && /^syscalls\[\d+\]\.args\[\d+\]$/.test(got)) return;
      }
      assert.ok(!misbuilt, 'a written shape libseccomp misbuilds is refused');
      assert.ok(!never, 'a condition that can never match is refused');
      assert.equal(got, expected);
    }),
    { numRuns: 1000 },
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

// Audit mode (docs/audit-mode.md): baseline ∩ base enforced, the artifact's own denials logged.
const LOG = actionRank('SCMP_ACT_LOG');
const plainProfile = profile.map((p) => ({ ...p, syscalls: (p.syscalls ?? []).map(({ args: _args, ...rest }) => rest) }));

// Where a merge has no form runc loads exactly it writes the most restrictive verdict involved
// (KEP §4), and relaxing the artifact can change which syscalls that happens to: only where the
// audit merge reports nothing inexpressible is it bounded by the enforcing profile.
test('property: audit mode is never looser than baseline ∩ base, never stricter than enforcing (where expressible), and never silently allows what the artifact denies', () => {
  fc.assert(
    fc.property(profile, fc.option(profile, { nil: undefined }), profile, calls, (baseline, base, artifact, cs) => {
      const result = auditIntersect(baseline, base, artifact);
      const audited = result.profile;
      const enforced = intersect(baseline, base, artifact).profile;
      const inexpressible = new Set(result.constrained.flatMap((k) => (k.kind === 'syscall' && k.by === 'inexpressible' ? [k.syscall] : [])));
      for (const c of cs) {
        const got = actionRank(evaluate(audited, c).action);
        const trusted = Math.min(...[baseline, base].filter((p) => p !== undefined).map((p) => actionRank(evaluate(p, c).action)));
        assert.ok(got <= trusted, 'looser than baseline ∩ base');
        if (!inexpressible.has(c.syscall)) assert.ok(got >= actionRank(evaluate(enforced, c).action), 'stricter than the enforcing profile');
        if (actionRank(evaluate(artifact, c).action) < LOG) assert.ok(got <= LOG, 'the artifact denies, the audit profile neither logs nor denies');
      }
    }),
    RUNS,
  );
});

test('property: with unconditional rules, audit mode logs exactly where only the artifact denies', () => {
  fc.assert(
    fc.property(plainProfile, fc.option(plainProfile, { nil: undefined }), plainProfile, calls, (baseline, base, artifact, cs) => {
      const audited = auditIntersect(baseline, base, artifact).profile;
      const enforced = intersect(baseline, base, artifact).profile;
      for (const c of cs) {
        const trusted = [baseline, base].filter((p) => p !== undefined).map((p) => evaluate(p, c)).reduce((a, b) => (actionRank(b.action) < actionRank(a.action) ? b : a));
        const onlyArtifactDenies = actionRank(evaluate(artifact, c).action) < Math.min(LOG, actionRank(trusted.action)) && actionRank(trusted.action) >= LOG;
        const expected = onlyArtifactDenies ? 'SCMP_ACT_LOG' : actionRank(evaluate(artifact, c).action) < LOG ? trusted.action : evaluate(enforced, c).action;
        assert.equal(evaluate(audited, c).action, expected);
      }
    }),
    RUNS,
  );
});

test('audit mode: the artifact denies mkdir, the baseline denies unshare: mkdir is logged, unshare still denied', () => {
  const baseline: SeccompProfile = { defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['unshare'], action: 'SCMP_ACT_ERRNO' }] };
  const artifact: SeccompProfile = { defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['mkdir', 'mkdirat'], action: 'SCMP_ACT_ERRNO', errnoRet: 13 }] };
  const audited = auditIntersect(baseline, undefined, artifact).profile;
  assert.deepEqual(evaluate(audited, { syscall: 'mkdir' }), { action: 'SCMP_ACT_LOG' });
  assert.deepEqual(evaluate(audited, { syscall: 'unshare' }), { action: 'SCMP_ACT_ERRNO', errno: 1 });
  assert.deepEqual(evaluate(audited, { syscall: 'read' }), { action: 'SCMP_ACT_ALLOW' });
  assert.deepEqual(evaluate(intersect(baseline, undefined, artifact).profile, { syscall: 'mkdir' }), { action: 'SCMP_ACT_ERRNO', errno: 13 });
});

// runtime-init.ts answers without reading the profile whole when no verdict for prctl is EINVAL;
// this holds every answer to the reference evaluator: no capability the check passes is answered
// EINVAL by prctl(PR_CAPBSET_DROP, cap), whatever the errno spellings (65558 is EINVAL to libseccomp).
test('property: a profile the capability-drop check passes never answers prctl(PR_CAPBSET_DROP, cap) with EINVAL', () => {
  const PR_CAPBSET_DROP = 24n;
  const prctlErrno = fc.option(fc.constantFrom(1, 22, 38, 65558), { nil: undefined });
  const prctlArg: fc.Arbitrary<SeccompArg> = fc.record({
    index: fc.integer({ min: 0, max: 2 }),
    value: fc.constantFrom(0n, 5n, 21n, PR_CAPBSET_DROP, 63n, 1n << 32n),
    op: fc.constantFrom<SeccompArg['op']>('SCMP_CMP_EQ', 'SCMP_CMP_NE', 'SCMP_CMP_GE', 'SCMP_CMP_LT'),
  });
  const prctlEntry: fc.Arbitrary<SeccompSyscall> = fc
    .record({ names: fc.constantFrom<string[]>(['prctl'], ['prctl', 'read'], ['read']), action: fc.constantFrom<SeccompAction>('SCMP_ACT_ERRNO', 'SCMP_ACT_ALLOW', 'SCMP_ACT_LOG'), errnoRet: prctlErrno, args: fc.array(prctlArg, { maxLength: 2 }) })
    .map(({ names, action: a, errnoRet, args }) => ({ names, action: a, ...(errnoRet !== undefined && a === 'SCMP_ACT_ERRNO' ? { errnoRet } : {}), ...(args.length === 0 ? {} : { args }) }));
  const prctlProfile = fc
    .record({ defaultAction: fc.constantFrom<SeccompAction>('SCMP_ACT_ERRNO', 'SCMP_ACT_ALLOW'), defaultErrnoRet: prctlErrno, syscalls: fc.array(prctlEntry, { maxLength: 4 }) })
    .map(({ defaultAction, defaultErrnoRet, syscalls }) => ({ defaultAction, ...(defaultErrnoRet !== undefined && defaultAction === 'SCMP_ACT_ERRNO' ? { defaultErrnoRet } : {}), syscalls }));
  let passed = 0;
  fc.assert(
    fc.property(prctlProfile, (p) => {
      if (capabilityDropIgnored(p) !== undefined) return;
      passed++;
      for (let cap = 0n; cap < 64n; cap++) {
        const v = evaluate(p, { syscall: 'prctl', args: [PR_CAPBSET_DROP, cap, 0n, 0n, 0n, 0n] });
        assert.ok(!(v.action === 'SCMP_ACT_ERRNO' && v.errno === 22), `capability ${cap} answered EINVAL by ${JSON.stringify(p, (_, x: unknown) => (typeof x === 'bigint' ? String(x) : x))}`);
      }
    }),
    { numRuns: 2000 },
  );
  assert.ok(passed > 100, `only ${passed} generated profiles passed the check`);
});
