import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import type { ProfileKind } from '../../../src/core/constants.js';
import { decide, isInsecure, mirrorsFor, parsePolicy, type Decision } from '../../../src/policy/index.js';
import { D1, D2, HEADER, memFs, pem, policyText, ref } from './fixtures.js';

const fs = memFs({ '/keys/a.pub': pem('p256'), '/keys/b.pub': pem('ed25519') });
const SIGNERS = { a: { publicKey: '/keys/a.pub' }, b: { publicKey: '/keys/b.pub' } };

function load(rules: object[], extra: Record<string, unknown> = {}) {
  return parsePolicy(policyText(rules, { signers: SIGNERS, ...extra }), '/etc/spoke/policy.yaml', fs.readFile);
}

function ruleIndex(d: Decision): number | undefined {
  return d.rule?.index;
}

describe('decide', () => {
  it('the deeper scope wins, in either file order', () => {
    const rules = [
      { scope: 'r.io', kinds: ['seccomp'], signedBy: ['a'] },
      { scope: 'r.io/team', kinds: ['seccomp'], unsigned: true },
      { scope: 'r.io/team/secret', action: 'deny' },
    ];
    for (const order of [rules, [...rules].reverse()]) {
      const p = load(order);
      const byScope = (s: string) => p.rules.find((r) => r.scope === s)!.index;
      assert.equal(ruleIndex(decide(p, ref('r.io/other'), 'seccomp')), byScope('r.io'));
      assert.equal(ruleIndex(decide(p, ref('r.io/team/x'), 'seccomp')), byScope('r.io/team'));
      const secret = decide(p, ref('r.io/team/secret/x'), 'seccomp');
      assert.equal(secret.allowed, false);
      assert.equal(ruleIndex(secret), byScope('r.io/team/secret'));
    }
  });

  it('a deeper allow overrides a broader deny', () => {
    const p = load([
      { scope: 'r.io', action: 'deny' },
      { scope: 'r.io/ok', kinds: ['seccomp'], signedBy: ['a'] },
    ]);
    assert.equal(decide(p, ref('r.io/ok/x'), 'seccomp').allowed, true);
    assert.equal(decide(p, ref('r.io/nope'), 'seccomp').allowed, false);
  });

  it('at equal specificity deny wins, whatever the order', () => {
    for (const rules of [
      [{ scope: 'r.io/x', kinds: ['seccomp'], unsigned: true }, { scope: 'r.io/x', action: 'deny', kinds: ['seccomp'] }],
      [{ scope: 'r.io/x', action: 'deny', kinds: ['seccomp'] }, { scope: 'r.io/x', kinds: ['seccomp'], unsigned: true }],
    ]) {
      const d = decide(load(rules), ref('r.io/x/y'), 'seccomp');
      assert.equal(d.allowed, false);
      assert.equal(d.rule?.action, 'deny');
      assert.match(d.reason, /deny wins over rules\[\d\]/);
    }
  });

  it('filters rules by kind before specificity', () => {
    const p = load([
      { scope: 'r.io', kinds: ['seccomp', 'apparmor'], signedBy: ['a'] },
      { scope: 'r.io/x', action: 'deny', kinds: ['apparmor'] },
      { scope: 'r.io/y', kinds: ['apparmor'], unsigned: true },
    ]);
    // The deeper apparmor-only deny does not touch seccomp: the broader seccomp rule applies.
    assert.equal(ruleIndex(decide(p, ref('r.io/x/p'), 'seccomp')), 0);
    assert.equal(decide(p, ref('r.io/x/p'), 'apparmor').allowed, false);
    // The apparmor-only allow at r.io/y does not apply to seccomp.
    const s = decide(p, ref('r.io/y/p'), 'seccomp');
    assert.ok(s.allowed && !s.unsigned && ruleIndex(s) === 0);
    const a = decide(p, ref('r.io/y/p'), 'apparmor');
    assert.ok(a.allowed && a.unsigned && ruleIndex(a) === 2);
  });

  it('a kind no rule names is denied, as is an unknown kind', () => {
    const p = load([{ scope: 'r.io', kinds: ['seccomp'], unsigned: true }]);
    assert.match(decide(p, ref('r.io/x'), 'apparmor').reason, /no rule matches r\.io\/x for kind apparmor \(deny by default\)/);
    assert.equal(decide(p, ref('r.io/x'), 'selinux' as ProfileKind).allowed, false);
  });

  it('a deny rule without kinds denies every kind', () => {
    const p = load([
      { scope: 'r.io', kinds: ['seccomp', 'apparmor'], unsigned: true },
      { scope: 'r.io/x', action: 'deny' },
    ]);
    for (const k of ['seccomp', 'apparmor'] as const) assert.equal(decide(p, ref('r.io/x/y'), k).allowed, false);
  });

  it('returns the signers of the rule, and ORs the signers of allow rules that share the scope', () => {
    const p = load([
      { scope: 'r.io/x', kinds: ['seccomp'], signedBy: ['a'] },
      { scope: 'r.io/x', kinds: ['seccomp'], signedBy: ['b', 'a'] },
    ]);
    const d = decide(p, ref('r.io/x'), 'seccomp');
    assert.ok(d.allowed);
    assert.equal(d.unsigned, false);
    assert.deepEqual(
      d.signedBy.map((s) => s.name),
      ['a', 'b'],
    );
    assert.equal(d.signedBy[0], p.signers.a);
    assert.deepEqual(
      d.rules.map((r) => r.index),
      [0, 1],
    );
    assert.equal(d.rule.id, 'rules[0] (r.io/x)');
    assert.match(d.reason, /signature is required from any of: a, b/);
  });

  it('unsigned at the same scope makes the signature optional, and signedBy is then empty', () => {
    const p = load([
      { scope: 'r.io/x', kinds: ['seccomp'], signedBy: ['a'] },
      { scope: 'r.io/x', kinds: ['seccomp'], unsigned: true, namespaces: ['dev'] },
    ]);
    const dev = decide(p, ref('r.io/x'), 'seccomp', 'dev');
    assert.ok(dev.allowed && dev.unsigned && dev.signedBy.length === 0 && dev.rule.index === 1);
    const prod = decide(p, ref('r.io/x'), 'seccomp', 'prod');
    assert.ok(prod.allowed && !prod.unsigned && prod.rule.index === 0);
  });

  describe('digests restriction', () => {
    const p = load([
      { scope: 'r.io', kinds: ['seccomp'], unsigned: true },
      { scope: 'r.io/pinned', kinds: ['seccomp'], signedBy: ['a'], digests: [D1] },
    ]);
    it('admits a listed digest', () => {
      const d = decide(p, ref('r.io/pinned/x', D1), 'seccomp');
      assert.ok(d.allowed && d.rule.index === 1);
    });
    it('denies another digest and never falls back to the broader (unsigned!) rule', () => {
      const d = decide(p, ref('r.io/pinned/x', D2), 'seccomp');
      assert.equal(d.allowed, false);
      assert.equal(ruleIndex(d), 1);
      assert.match(d.reason, /admits only its listed digests, not sha256:2{64}/);
    });
  });

  describe('namespaces restriction', () => {
    const p = load([
      { scope: 'r.io', kinds: ['seccomp'], unsigned: true },
      { scope: 'r.io/team-a', kinds: ['seccomp'], signedBy: ['a'], namespaces: ['team-a'] },
      { scope: 'r.io/team-a', kinds: ['seccomp'], signedBy: ['b'], namespaces: ['team-b'] },
    ]);
    it('admits a listed namespace', () => {
      const d = decide(p, ref('r.io/team-a/x'), 'seccomp', 'team-a');
      assert.ok(d.allowed && d.rule.index === 1 && d.signedBy[0]!.name === 'a');
      const b = decide(p, ref('r.io/team-a/x'), 'seccomp', 'team-b');
      assert.ok(b.allowed && b.rule.index === 2 && b.signedBy[0]!.name === 'b');
    });
    it('denies another namespace, and a missing one, without falling back', () => {
      const other = decide(p, ref('r.io/team-a/x'), 'seccomp', 'team-c');
      assert.equal(other.allowed, false);
      assert.match(other.reason, /does not admit namespace "team-c"/);
      // The reason reaches team-c's pod events: the namespaces a rule admits are not theirs to read.
      assert.doesNotMatch(other.reason, /team-b/);
      const none = decide(p, ref('r.io/team-a/x'), 'seccomp');
      assert.equal(none.allowed, false);
      assert.match(none.reason, /no namespace was given/);
    });
  });

  it('mirrors never change the rule or the decision', () => {
    const rules = [
      { scope: 'r.io/x', kinds: ['seccomp'], signedBy: ['a'] },
      { scope: 'mirror.local:5000', kinds: ['seccomp'], unsigned: true },
    ];
    const plain = load(rules);
    const mirrored = load(rules, { mirrors: { 'R.io': ['mirror.local:5000'] }, insecure: ['mirror.local:5000'] });
    assert.deepEqual(mirrorsFor(mirrored, 'r.io'), ['mirror.local:5000']);
    assert.deepEqual(mirrorsFor(plain, 'r.io'), []);
    for (const name of ['r.io/x/p', 'r.io/y', 'mirror.local:5000/x/p']) {
      const gist = (d: Decision) => ({ allowed: d.allowed, rule: d.rule?.index, unsigned: d.allowed && d.unsigned, reason: d.reason });
      assert.deepEqual(gist(decide(mirrored, ref(name), 'seccomp')), gist(decide(plain, ref(name), 'seccomp')));
    }
    const d = decide(mirrored, ref('r.io/x/p'), 'seccomp');
    assert.ok(d.allowed && !d.unsigned && d.rule.scope === 'r.io/x');
  });

  it('isInsecure is exact, port included, and case-insensitive', () => {
    const p = load([], { insecure: ['127.0.0.1:5000', 'Local.Test:80'] });
    assert.equal(isInsecure(p, '127.0.0.1:5000'), true);
    assert.equal(isInsecure(p, '127.0.0.1'), false);
    assert.equal(isInsecure(p, '127.0.0.1:5001'), false);
    assert.equal(isInsecure(p, 'local.test:80'), true);
    assert.equal(isInsecure(p, 'LOCAL.TEST:80'), true);
    assert.equal(isInsecure(p, 'local.test'), false);
  });

  it('decisions and the policy are frozen', () => {
    const p = load([{ scope: 'r.io', kinds: ['seccomp'], signedBy: ['a'] }]);
    const d = decide(p, ref('r.io/x'), 'seccomp');
    assert.ok(Object.isFrozen(d) && Object.isFrozen(d.rule));
    assert.ok(Object.isFrozen(p) && Object.isFrozen(p.rules) && Object.isFrozen(p.rules[0]) && Object.isFrozen(p.rules[0]!.kinds));
    assert.ok(Object.isFrozen(p.signers) && Object.isFrozen(p.signers.a) && Object.isFrozen(p.limits) && Object.isFrozen(p.mirrors));
    assert.throws(() => {
      (p.rules as object[]).push({});
    }, TypeError);
  });

  it('an empty rule list denies everything', () => {
    const p = parsePolicy(`${HEADER}rules: []\n`, 'p.yaml', fs.readFile);
    assert.equal(decide(p, ref('r.io/x'), 'seccomp').allowed, false);
  });

  it('decides on a 1000-rule policy by the deepest matching scope (speed is measured in test/bench)', () => {
    const rules = [];
    for (let i = 0; i < 1000; i++) rules.push({ scope: `r${i % 10}.io/team${i}/sub`, kinds: ['seccomp'], signedBy: ['a'] });
    const p = load(rules);
    const d = decide(p, ref('r3.io/team503/sub/deep/er/x'), 'seccomp');
    assert.ok(d.allowed);
    assert.equal(d.rule?.index, 503);
    assert.equal(decide(p, ref('r3.io/team504/sub/x'), 'seccomp').allowed, false);
  });
});
