// Properties of the evaluator against a brute-force model of docs/configuration.md (filter by kind, most
// specific scope, deny wins at equal scope, restrictions never fall through, deny by default).

import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import type { ProfileKind } from '../../../src/core/constants.js';
import { decide, parsePolicy, parseScope, scopeMatches, type Policy, type Rule } from '../../../src/policy/index.js';
import { D1, D2, memFs, pem, policyText, ref } from './fixtures.js';

const fs = memFs({ '/k.pub': pem('p256') });
// A small universe, so that random rules nest, collide and share scopes often.
const HOSTS = ['a.io', 'a.io', 'A.io', 'a.io:5000', 'a.io.b.io'];
const COMPONENTS = ['x', 'x', 'xy'];
const KINDS: ProfileKind[] = ['seccomp', 'apparmor'];
const NAMESPACES = ['n1', 'n2'];

const pathArb = fc.array(fc.constantFrom(...COMPONENTS), { maxLength: 2 });
const scopeArb = fc.tuple(fc.constantFrom(...HOSTS), pathArb).map(([h, p]) => [h, ...p].join('/'));
const kindsArb = fc.subarray(KINDS, { minLength: 1 });

const allowArb = fc.record(
  {
    scope: scopeArb,
    kinds: kindsArb,
    signing: fc.constantFrom('unsigned', 'signed'),
    digests: fc.option(fc.subarray([D1, D2], { minLength: 1 }), { nil: undefined }),
    namespaces: fc.option(fc.subarray(NAMESPACES, { minLength: 1 }), { nil: undefined }),
  },
  { requiredKeys: ['scope', 'kinds', 'signing'] },
);
const denyArb = fc.record({ scope: scopeArb, kinds: fc.option(kindsArb, { nil: undefined }) }, { requiredKeys: ['scope'] });

type AllowIn = { scope: string; kinds: ProfileKind[]; signing: string; digests?: string[]; namespaces?: string[] };
type DenyIn = { scope: string; kinds?: ProfileKind[] };
const ruleArb = fc.oneof(
  allowArb.map((r) => ({ allow: r as AllowIn })),
  denyArb.map((r) => ({ deny: r as DenyIn })),
);

function toYamlRule(r: { allow: AllowIn } | { deny: DenyIn }): object {
  if ('deny' in r) return { scope: r.deny.scope, action: 'deny', ...(r.deny.kinds ? { kinds: r.deny.kinds } : {}) };
  const { scope, kinds, signing, digests, namespaces } = r.allow;
  return { scope, kinds, ...(signing === 'unsigned' ? { unsigned: true } : { signedBy: ['k'] }), ...(digests ? { digests } : {}), ...(namespaces ? { namespaces } : {}) };
}

function load(rules: ({ allow: AllowIn } | { deny: DenyIn })[]): Policy {
  return parsePolicy(policyText(rules.map(toYamlRule), { signers: { k: { publicKey: '/k.pub' } } }), 'p.yaml', fs.readFile);
}

const refArb = fc.record({
  host: fc.constantFrom('a.io', 'a.io', 'a.io:5000', 'a.io.b.io', 'c.io'),
  path: fc.array(fc.constantFrom(...COMPONENTS, 'z'), { minLength: 1, maxLength: 3 }),
  digest: fc.constantFrom(D1, D2),
  kind: fc.constantFrom(...KINDS),
  namespace: fc.option(fc.constantFrom(...NAMESPACES, 'n3'), { nil: undefined }),
});

/** Component-array prefix: the definition of a whole-component match, written independently. */
function covers(scope: string, registry: string, repository: string): boolean {
  const [host, ...path] = scope.toLowerCase().split('/');
  const repo = repository.split('/');
  return host === registry && path.length <= repo.length && path.every((c, i) => c === repo[i]);
}

function model(policy: Policy, r: { host: string; path: string[]; digest: string; kind: ProfileKind; namespace: string | undefined }) {
  const repository = r.path.join('/');
  const matching = policy.rules.filter((rule) => rule.kinds.includes(r.kind) && covers(rule.scope, r.host, repository));
  if (matching.length === 0) return { allowed: false as const, rules: [] as Rule[] };
  const depth = Math.max(...matching.map((m) => m.depth));
  const top = matching.filter((m) => m.depth === depth);
  if (top.some((m) => m.action === 'deny')) return { allowed: false as const, rules: top };
  const applicable = top.filter(
    (m) => (!m.digests || m.digests.includes(r.digest as `sha256:${string}`)) && (!m.namespaces || (r.namespace !== undefined && m.namespaces.includes(r.namespace))),
  );
  return { allowed: applicable.length > 0, rules: applicable, unsigned: applicable.some((m) => m.unsigned) };
}

describe('decide: properties', () => {
  it('agrees with the brute-force model (allowed, deciding rules, unsigned)', () => {
    fc.assert(
      fc.property(fc.array(ruleArb, { maxLength: 8 }), refArb, (rules, r) => {
        const policy = load(rules);
        const d = decide(policy, ref(`${r.host}/${r.path.join('/')}`, r.digest), r.kind, r.namespace);
        const m = model(policy, r);
        assert.equal(d.allowed, m.allowed, d.reason);
        if (d.allowed) {
          assert.deepEqual(
            d.rules.map((x) => x.index),
            m.rules.map((x) => x.index),
          );
          assert.equal(d.unsigned, m.unsigned);
          assert.equal(d.signedBy.length === 0, d.unsigned);
        }
      }),
      { numRuns: 1000 },
    );
  });

  it('never allows without an allow rule for that kind whose scope covers the reference', () => {
    fc.assert(
      fc.property(fc.array(ruleArb, { maxLength: 8 }), refArb, (rules, r) => {
        const policy = load(rules);
        const d = decide(policy, ref(`${r.host}/${r.path.join('/')}`, r.digest), r.kind, r.namespace);
        if (!d.allowed) return;
        const rule = policy.rules[d.rule.index]!;
        assert.equal(rule.action, 'allow');
        assert.ok(rule.kinds.includes(r.kind));
        assert.ok(covers(rule.scope, r.host, r.path.join('/')));
      }),
      { numRuns: 300 },
    );
  });

  it('adding a deny rule never turns a deny into an allow', () => {
    fc.assert(
      fc.property(fc.array(ruleArb, { maxLength: 6 }), denyArb, fc.nat(6), refArb, (rules, extra, at, r) => {
        const before = load(rules);
        const withDeny = [...rules];
        withDeny.splice(Math.min(at, rules.length), 0, { deny: extra as DenyIn });
        const after = load(withDeny);
        const name = `${r.host}/${r.path.join('/')}`;
        const d0 = decide(before, ref(name, r.digest), r.kind, r.namespace);
        const d1 = decide(after, ref(name, r.digest), r.kind, r.namespace);
        if (!d0.allowed) assert.equal(d1.allowed, false);
      }),
      { numRuns: 300 },
    );
  });

  it('scope matching is whole-component and exact on host and port', () => {
    const anyHost = fc.constantFrom('r.io', 'r.io:5000', 'r.io.evil.com', 'evil-r.io', '[::1]:5000');
    // Few short components, so that one is often a string prefix of another (a / ab / a-b).
    const comp = fc.constantFrom('a', 'ab', 'a-b', 'a.b', 'b');
    fc.assert(
      fc.property(anyHost, fc.array(comp, { maxLength: 3 }), anyHost, fc.array(comp, { minLength: 1, maxLength: 4 }), (sh, sp, rh, rp) => {
        const scope = parseScope([sh, ...sp].join('/'), (why) => assert.fail(why));
        const reference = { registry: rh, repository: rp.join('/') };
        assert.equal(scopeMatches(scope, reference), covers(scope.scope, rh, reference.repository));
      }),
      { numRuns: 1000 },
    );
  });
});
