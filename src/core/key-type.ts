// The asymmetric key types spoke trusts and signs with (docs/signatures.md): ECDSA P-256 and
// P-384, Ed25519, RSA of 2,048 to 8,192 bits. One rule for both sides, so `spoke sign` never
// makes a signature whose public key no node policy can hold. Pure: reads only the key object.

import type { KeyObject } from 'node:crypto';

export const MIN_RSA_BITS = 2048;
export const MAX_RSA_BITS = 8192;

/** The key types a signer may use. Others (RSA < 2048, RSA-PSS, P-521, secp256k1, Ed448, DSA, DH) are refused. */
export type AcceptedKeyType = 'ecdsa-p256' | 'ecdsa-p384' | 'ed25519' | 'rsa';

/** The accepted type of `key` (public or private), or why it is not accepted. */
export function acceptedKeyType(key: KeyObject): { type: AcceptedKeyType } | { refused: string } {
  const details = key.asymmetricKeyDetails ?? {};
  switch (key.asymmetricKeyType) {
    case 'ec':
      if (details.namedCurve === 'prime256v1') return { type: 'ecdsa-p256' };
      if (details.namedCurve === 'secp384r1') return { type: 'ecdsa-p384' };
      return { refused: `EC curve ${details.namedCurve ?? '(unknown)'} is not accepted (P-256 or P-384)` };
    case 'ed25519':
      return { type: 'ed25519' };
    case 'rsa': {
      const bits = details.modulusLength ?? 0;
      if (bits < MIN_RSA_BITS) return { refused: `RSA key of ${bits} bits is too weak (at least ${MIN_RSA_BITS})` };
      if (bits > MAX_RSA_BITS) return { refused: `RSA key of ${bits} bits is larger than ${MAX_RSA_BITS}` };
      return { type: 'rsa' };
    }
    default:
      return { refused: `key type ${key.asymmetricKeyType ?? '(unknown)'} is not accepted (ECDSA P-256/P-384, Ed25519, RSA of ${MIN_RSA_BITS} to ${MAX_RSA_BITS} bits)` };
  }
}
