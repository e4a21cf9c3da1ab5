// `mode: audit` on allow rules (docs/audit-mode.md): parsed, refused where it means nothing,
// carried by the decision, and enforcing whenever any applicable rule enforces.
import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { decide, parsePolicy } from '../../../src/policy/index.js';
import { D1, D2, memFs, policyText, ref } from './fixtures.js';
import { throwsWith } from '../../helpers/assert.js';

const fs = memFs();
const load = (rules: object[]) => parsePolicy(policyText(rules), '/etc/spoke/policy.yaml', fs.readFile);

describe('policy rule mode', () => {
  it('defaults to enforce; mode: audit is carried by the decision', () => {
    const p = load([
      { scope: 'r.io/enf', kinds: ['seccomp'], unsigned: true },
      { scope: 'r.io/aud', kinds: ['seccomp'], unsigned: true, mode: 'audit' },
    ]);
    const enf = decide(p, ref('r.io/enf/x'), 'seccomp');
    const aud = decide(p, ref('r.io/aud/x'), 'seccomp');
    assert.ok(enf.allowed && aud.allowed);
    assert.equal(enf.mode, 'enforce');
    assert.equal(aud.mode, 'audit');
    assert.equal(p.rules[1]!.mode, 'audit');
  });

  it('audits only when every applicable rule at the deciding scope says audit', () => {
    const p = load([
      { scope: 'r.io/x', kinds: ['seccomp'], unsigned: true, mode: 'audit' },
      { scope: 'r.io/x', kinds: ['seccomp'], unsigned: true, digests: [D2] },
    ]);
    const one = decide(p, ref('r.io/x/y', D1), 'seccomp');
    const both = decide(p, ref('r.io/x/y', D2), 'seccomp');
    assert.ok(one.allowed && both.allowed);
    assert.equal(one.mode, 'audit');
    assert.equal(both.mode, 'enforce');
  });

  it('refuses an unknown mode, mode on a deny rule and audit for AppArmor', () => {
    for (const [rule, path] of [
      [{ scope: 'r.io/x', kinds: ['seccomp'], unsigned: true, mode: 'log' }, 'rules[0].mode'],
      [{ scope: 'r.io/x', action: 'deny', mode: 'audit' }, 'rules[0].mode'],
      [{ scope: 'r.io/x', kinds: ['seccomp', 'apparmor'], unsigned: true, mode: 'audit' }, 'rules[0].mode'],
    ] as const) {
      const e = throwsWith(() => load([rule]), {});
      assert.equal(e.code, 'InvalidArgument');
      assert.equal(e.context.path, path);
    }
  });
});
