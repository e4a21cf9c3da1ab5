import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MAX_CHALLENGE_HEADER_LENGTH, parseChallenges } from '../../../src/registry/challenge.js';
import { finishesInChild } from '../../helpers/hang.js';

const params = (c: { params: ReadonlyMap<string, string> } | undefined) => Object.fromEntries(c?.params ?? []);

describe('parseChallenges', () => {
  it('reads a Docker Bearer challenge', () => {
    const [c] = parseChallenges('Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:a/b:pull,push"');
    assert.equal(c?.scheme, 'bearer');
    assert.deepEqual(params(c), {
      realm: 'https://auth.example.com/token',
      service: 'registry.example.com',
      scope: 'repository:a/b:pull,push',
    });
  });

  it('reads Basic, case-insensitive schemes and names, tokens and spaces around "="', () => {
    const [c] = parseChallenges('BASIC Realm = "Registry Realm"');
    assert.equal(c?.scheme, 'basic');
    assert.deepEqual(params(c), { realm: 'Registry Realm' });
    assert.deepEqual(params(parseChallenges('Bearer realm=token68ish,error=insufficient_scope')[0]), {
      realm: 'token68ish',
      error: 'insufficient_scope',
    });
  });

  it('splits several challenges in one value and across values', () => {
    const cs = parseChallenges(['Negotiate abc==, Basic realm="a"', 'Bearer realm="r", service="s"']);
    assert.deepEqual(
      cs.map((c) => c.scheme),
      ['negotiate', 'basic', 'bearer'],
    );
    assert.equal(cs[2]?.params.get('service'), 's');
  });

  it('unescapes quoted pairs and keeps the first of duplicate params', () => {
    const [c] = parseChallenges('Bearer realm="a\\"b\\\\c", realm="second"');
    assert.equal(c?.params.get('realm'), 'a"b\\c');
  });

  it('is robust against hostile input', () => {
    assert.deepEqual(parseChallenges(undefined), []);
    assert.deepEqual(parseChallenges(''), []);
    assert.deepEqual(parseChallenges(',,, ,'), []);
    assert.deepEqual(parseChallenges('Bearer realm="unterminated')[0]?.params.size, 0);
    assert.deepEqual(parseChallenges('x'.repeat(MAX_CHALLENGE_HEADER_LENGTH + 1)), []);
    // __proto__ is just a name: params live in a Map.
    const [c] = parseChallenges('Bearer __proto__="x", constructor="y"');
    assert.equal(c?.params.get('__proto__'), 'x');
    assert.equal(({} as Record<string, unknown>)['x'], undefined);
    // Bounded counts.
    const many = Array.from({ length: 100 }, (_, i) => `S${i} a=b`).join(', ');
    assert.ok(parseChallenges(many.slice(0, MAX_CHALLENGE_HEADER_LENGTH)).length <= 8);
    const manyParams = 'Bearer ' + Array.from({ length: 100 }, (_, i) => `p${i}=v`).join(',');
    assert.ok((parseChallenges(manyParams)[0]?.params.size ?? 0) <= 16);
  });

  it('reads pathological headers without a backtracking blow-up', () => {
    // The length cap bounds even quadratic work on these; the guard catches worse.
    const out = finishesInChild(new URL('../../../src/registry/challenge.js', import.meta.url), `
      const read = (h) => m.parseChallenges(h).map((c) => [c.scheme, [...c.params]]);
      process.stdout.write(JSON.stringify([
        read('Bearer ' + 'a='.repeat(4000)),
        read('"'.repeat(8000)),
        read('Bearer realm="' + '\\\\'.repeat(8000)),
      ]));`);
    // The first pair is read and the garbage after it ends the header; an unterminated string is
    // no parameter.
    assert.deepEqual(JSON.parse(out), [[['bearer', [['a', 'a']]]], [], [['bearer', []]]]);
  });

  it('stops at garbage instead of guessing', () => {
    const cs = parseChallenges('Bearer realm="r" junk, Basic realm="b"');
    assert.equal(cs.length, 1);
    assert.equal(cs[0]?.params.get('realm'), 'r');
  });
});
