import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { decide, parsePolicy, parseScope } from '../../../src/policy/index.js';
import { memFs, policyText, ref } from './fixtures.js';

const fail = (why: string): never => {
  throw new Error(why);
};

describe('scope matching', () => {
  // [scope, reference name, matches?]
  const table: [string, string, boolean][] = [
    ['reg.io', 'reg.io/a@', true],
    ['reg.io', 'reg.io/a/b/c@', true],
    ['reg.io', 'reg.io.evil.com/a@', false],
    ['reg.io', 'evilreg.io/a@', false],
    ['reg.io', 'reg.io:5000/a@', false],
    ['reg.io:443', 'reg.io/a@', false],
    ['reg.io', 'reg.io:443/a@', false],
    ['reg.io:443', 'reg.io:443/a@', true],
    ['reg.io:5000', 'reg.io:05000/a@', true],
    ['Reg.IO', 'reg.io/a@', true],
    ['reg.io', 'REG.io/a@', true],
    ['r.io/team', 'r.io/team@', true],
    ['r.io/team', 'r.io/team/x@', true],
    ['r.io/team', 'r.io/teamevil/x@', false],
    ['r.io/team', 'r.io/team-evil@', false],
    ['r.io/team', 'r.io/tea@', false],
    ['r.io/team/x', 'r.io/team@', false],
    ['r.io/prof', 'r.io/profiles@', false],
    ['[::1]:5000', '[::1]:5000/p@', true],
    ['[::1]:5000', '[::1]/p@', false],
    ['[::1]:5000/p', '[::1]:5000/p/q@', true],
    ['[::1]:5000/p', '[::1]:5000/pq@', false],
    ['localhost:5000', 'localhost:5000/x@', true],
    ['127.0.0.1:5000', '127.0.0.1:5001/x@', false],
  ];
  for (const [scope, name, expected] of table) {
    it(`${scope} ${expected ? 'covers' : 'does not cover'} ${name.slice(0, -1)}`, () => {
      const policy = parsePolicy(policyText([{ scope, kinds: ['seccomp'], unsigned: true }]), 'p.yaml', memFs().readFile);
      const d = decide(policy, ref(name.slice(0, -1)), 'seccomp');
      assert.equal(d.allowed, expected, d.reason);
      if (!expected) assert.match(d.reason, /no rule matches .* for kind seccomp \(deny by default\)/);
    });
  }
});

describe('parseScope', () => {
  it('normalizes host case and port spelling, and counts components', () => {
    assert.deepEqual(parseScope('Reg.IO:05000/a/b', fail), { scope: 'reg.io:5000/a/b', registry: 'reg.io:5000', path: 'a/b', depth: 2 });
    assert.deepEqual(parseScope('[::1]:5000', fail), { scope: '[::1]:5000', registry: '[::1]:5000', path: '', depth: 0 });
  });

  const bad: [string, RegExp][] = [
    ['reg.io/', /trailing "\/"/],
    ['reg.io//a', /empty path component/],
    ['reg.io/a/../b', /"\.\." is not allowed/],
    ['reg.io/a/./b', /"\." is not allowed/],
    ['reg.io/a:latest', /a tag does not belong/],
    ['reg.io/a@sha256:' + '1'.repeat(64), /digest does not belong/],
    ['reg.io/Team', /uppercase/],
    ['reg.io/a/*', /wildcards/],
    ['https://reg.io/a', /no scheme/],
    ['profiles/x', /not a registry host/],
    ['reg.io:99999', /out of range/],
    ['reg.io:', /not a number/],
    ['bücher.de', /A-labels/],
    ['reg .io', /whitespace/],
    ['reg..io', /not a valid DNS name/],
    ['', /empty host/],
  ];
  for (const [scope, why] of bad) {
    it(`refuses ${JSON.stringify(scope)}`, () => {
      assert.throws(() => parseScope(scope, fail), why);
    });
  }
});
