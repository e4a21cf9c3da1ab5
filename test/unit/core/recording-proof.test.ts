import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { spokeError } from '../../helpers/assert.js';
import { parseRecordingKey, signRecordingProof, verifyRecordingProof, type ProofSeen } from '../../../src/core/recording-proof.js';

const KEY = Buffer.alloc(32, 7);
const NOW = 1_800_000_000;
const seen: ProofSeen = { namespace: 'team', podName: 'web', recording: 'rec', containers: ['app', 'side'] };
const signed = signRecordingProof(KEY, { namespace: 'team', pod: { name: 'web' }, recording: 'rec', containers: ['side', 'app'] }, NOW + 3600);

describe('recording proof', () => {
  it('verifies over exactly the signed fields (container order does not matter)', () => {
    assert.match(signed, /^v1\.n\.1800003600\.[A-Za-z0-9_-]{43}$/);
    assert.deepEqual(verifyRecordingProof(KEY, signed, seen, NOW), { ok: true, expiresAt: NOW + 3600 });
    const all = signRecordingProof(KEY, { namespace: 'team', pod: { name: 'web' }, recording: 'rec', containers: undefined }, NOW + 60);
    assert.equal(verifyRecordingProof(KEY, all, { ...seen, containers: undefined }, NOW).ok, true);
    assert.equal(verifyRecordingProof(KEY, all, seen, NOW).ok, false, '"all containers" is not a list');
  });

  it('any changed field is a mismatch', () => {
    for (const other of [
      { ...seen, namespace: 'attacker' },
      { ...seen, podName: 'web2' },
      { ...seen, recording: 'rec2' },
      { ...seen, containers: ['app'] },
      { ...seen, containers: ['app', 'side', 'extra'] },
      { ...seen, containers: undefined },
    ]) {
      const r = verifyRecordingProof(KEY, signed, other, NOW);
      assert.equal(r.ok, false, JSON.stringify(other));
      assert.equal(!r.ok && r.failure, 'mismatch');
    }
  });

  it('a tampered proof (expiry, mode or mac) is a mismatch; junk is malformed; none is missing', () => {
    const [v, mode, exp, mac] = signed.split('.') as [string, string, string, string];
    const flipped = (mac[0] === 'A' ? 'B' : 'A') + mac.slice(1);
    for (const t of [`${v}.${mode}.${Number(exp) + 86400}.${mac}`, `${v}.g.${exp}.${mac}`, `${v}.${mode}.${exp}.${flipped}`]) {
      const r = verifyRecordingProof(KEY, t, seen, NOW);
      assert.equal(!r.ok && r.failure, 'mismatch', t);
    }
    for (const junk of ['yes', 'v2.n.1.' + mac, `${signed} `, `${signed}.x`, 'v1.n.1.' + 'A'.repeat(42), 'x'.repeat(10_000)]) {
      const r = verifyRecordingProof(KEY, junk, seen, NOW);
      assert.equal(!r.ok && r.failure, 'malformed', junk.slice(0, 40));
    }
    const none = verifyRecordingProof(KEY, undefined, seen, NOW);
    assert.equal(!none.ok && none.failure, 'missing');
  });

  it('expires at the expiry second; ignoreExpiry (the controller judging results) still checks the mac', () => {
    assert.equal(verifyRecordingProof(KEY, signed, seen, NOW + 3599).ok, true);
    const r = verifyRecordingProof(KEY, signed, seen, NOW + 3600);
    assert.equal(!r.ok && r.failure, 'expired');
    assert.equal(verifyRecordingProof(KEY, signed, seen, NOW + 99_999, { ignoreExpiry: true }).ok, true);
    assert.equal(verifyRecordingProof(KEY, signed, { ...seen, podName: 'x' }, NOW + 99_999, { ignoreExpiry: true }).ok, false);
  });

  it('a proof expiring more than 7 days (the longest --recording-proof-ttl) and 5 minutes of clock skew from now is refused as too-long', () => {
    const until = (expiresAt: number) => signRecordingProof(KEY, { namespace: 'team', pod: { name: 'web' }, recording: 'rec', containers: ['app', 'side'] }, expiresAt);
    const longest = NOW + 7 * 86_400 + 300;
    assert.deepEqual(verifyRecordingProof(KEY, until(longest), seen, NOW), { ok: true, expiresAt: longest });
    for (const expiresAt of [longest + 1, NOW + 10 * 365 * 86_400]) {
      const r = verifyRecordingProof(KEY, until(expiresAt), seen, NOW);
      assert.equal(!r.ok && r.failure, 'too-long', String(expiresAt - NOW));
    }
    assert.equal(verifyRecordingProof(KEY, until(longest + 1), seen, NOW + 1).ok, true, 'a second later it is within the bound');
    assert.equal(verifyRecordingProof(KEY, until(longest + 1), seen, NOW, { ignoreExpiry: true }).ok, true, 'ignoreExpiry (the controller judging results) checks the mac only');
  });

  it('another key is a mismatch', () => {
    const r = verifyRecordingProof(Buffer.alloc(32, 8), signed, seen, NOW);
    assert.equal(!r.ok && r.failure, 'mismatch');
  });

  it('generateName: valid for the prefix plus an API-server suffix only, with the 58-character truncation', () => {
    const g = signRecordingProof(KEY, { namespace: 'team', pod: { generateName: 'web-7d9f8c-' }, recording: 'rec', containers: undefined }, NOW + 60);
    const at = (podName: string) => verifyRecordingProof(KEY, g, { ...seen, podName, containers: undefined }, NOW);
    assert.equal(at('web-7d9f8c-x2b4z').ok, true);
    assert.equal(at('web-7d9f8c-').ok, false);
    assert.equal(at('web-7d9f8c-xaaaa').ok, false, 'vowels are not in the suffix alphabet');
    assert.equal(at('web-7d9f8c-x2b4zz').ok, false);
    assert.equal(at('evil-x2b4z').ok, false);
    const long = 'a'.repeat(70);
    const gl = signRecordingProof(KEY, { namespace: 'team', pod: { generateName: long }, recording: 'rec', containers: undefined }, NOW + 60);
    assert.equal(verifyRecordingProof(KEY, gl, { ...seen, podName: `${'a'.repeat(58)}bcdfg`, containers: undefined }, NOW).ok, true);
  });

  it('keys: 32 to 4096 bytes', () => {
    assert.equal(parseRecordingKey(Buffer.alloc(32), 'k').length, 32);
    for (const n of [0, 31, 4097]) {
      assert.throws(() => parseRecordingKey(Buffer.alloc(n), 'k'), spokeError({ code: 'InvalidArgument', reason: 'KEY_INVALID' }));
    }
  });
});
