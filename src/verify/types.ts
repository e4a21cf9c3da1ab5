// What the verifier takes and returns. Signer specs are plain data handed over by the caller
// (src/policy parses them from the node policy); this folder never reads policy files.

import type { KeyObject } from 'node:crypto';

/** A public key the rule trusts (ECDSA P-256/P-384, Ed25519, RSA ≥ 2048). */
export interface PublicKeySignerSpec {
  readonly name: string;
  readonly kind: 'publicKey';
  readonly file?: string;
  readonly pem?: string;
  readonly key: KeyObject;
}

/** A keyless identity: certificate chain to `trustedRoot`, exact issuer, exact or anchored subject. */
export interface KeylessSignerSpec {
  readonly name: string;
  readonly kind: 'keyless';
  readonly trustedRootFile?: string;
  /** trusted_root.json content (parsed JSON) as written by sigstore: CAs and TSAs. */
  readonly trustedRoot: unknown;
  readonly issuer: string;
  /** Exact SAN (string compare). */
  readonly subject?: string;
  /** Regular expression over the whole SAN; spoke anchors it (`^(?:…)$`) whatever it is given. */
  readonly subjectRegExp?: RegExp | string;
  /**
   * What may vouch for the signing time: RFC 3161 timestamps (`tsa`), transparency-log entries
   * (`tlog`), either (`any`, the default). At least one verified time is always required.
   */
  readonly timeSource?: 'tsa' | 'tlog' | 'any';
}

export type SignerSpec = PublicKeySignerSpec | KeylessSignerSpec;

export type SignatureFormat = 'bundle' | 'cosign';

/** Which signer of the rule vouched for the digest, and how. */
export interface SignatureVerdict {
  signer: string;
  format: SignatureFormat;
  /** Certificate SAN for keyless signers. */
  identity?: string;
}
