// A key spoke signs with is one a node policy can trust: what `spoke sign`, `spoke push
// --sign-key` and the recording controller accept is exactly what a policy's publicKey signer
// accepts for its public half (src/policy/signers.ts), so nothing is signed that no node admits.

import assert from 'node:assert/strict';
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { describe, it } from 'node:test';
import { parsePublicKey } from '../../../src/policy/signers.js';
import { signingKey } from '../../../src/publish/signing.js';
import { isSpokeError } from '../../../src/core/errors.js';

function signs(key: KeyObject): boolean {
  try {
    signingKey(key);
    return true;
  } catch (e) {
    assert.ok(isSpokeError(e) && e.reason === 'KEY_INVALID', String(e));
    return false;
  }
}

function policyTrusts(key: KeyObject): boolean {
  const pem = Buffer.from(key.export({ type: 'spki', format: 'pem' }) as string);
  try {
    parsePublicKey(pem, (why) => {
      throw new Error(why);
    });
    return true;
  } catch {
    return false;
  }
}

describe('signing keys', () => {
  // RSA above the policy's 8,192 bits takes too long to generate in a unit test; the bound is one
  // constant both sides read.
  const kinds: [string, () => { privateKey: KeyObject; publicKey: KeyObject }][] = [
    ['P-256', () => generateKeyPairSync('ec', { namedCurve: 'P-256' })],
    ['P-384', () => generateKeyPairSync('ec', { namedCurve: 'P-384' })],
    ['P-521', () => generateKeyPairSync('ec', { namedCurve: 'P-521' })],
    ['secp256k1', () => generateKeyPairSync('ec', { namedCurve: 'secp256k1' })],
    ['Ed25519', () => generateKeyPairSync('ed25519')],
    ['Ed448', () => generateKeyPairSync('ed448')],
    ['RSA-1024', () => generateKeyPairSync('rsa', { modulusLength: 1024 })],
    ['RSA-2048', () => generateKeyPairSync('rsa', { modulusLength: 2048 })],
    ['RSA-PSS-2048', () => generateKeyPairSync('rsa-pss', { modulusLength: 2048 })],
  ];

  for (const [name, make] of kinds) {
    it(`${name}: signed with exactly when a node policy can trust its public key`, () => {
      const { privateKey, publicKey } = make();
      assert.equal(signs(privateKey), policyTrusts(publicKey));
    });
  }

  it('the accepted kinds are the documented ones', () => {
    const accepted = kinds.filter(([, make]) => signs(make().privateKey)).map(([name]) => name);
    assert.deepEqual(accepted, ['P-256', 'P-384', 'Ed25519', 'RSA-2048']);
  });
});
