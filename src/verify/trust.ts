// Trust material per signer, built once per loaded policy and reused on every pull. Only the
// policy's keys and roots are trusted: no TUF, and no network (a Rekor log's entries are checked
// offline against the log key the trusted root lists).

import type { KeyObject } from 'node:crypto';
import { TrustedRoot } from '@sigstore/protobuf-specs';
import { Verifier, toTrustMaterial, type TrustMaterial } from '@sigstore/verify';
import { SpokeError } from '../core/errors.js';
import type { KeylessSignerSpec, PublicKeySignerSpec, SignerSpec } from './types.js';

/** An empty trusted root: no CAs, TSAs or logs. Keyed verification trusts the key alone. */
const EMPTY_ROOT: TrustedRoot = TrustedRoot.fromJSON({
  mediaType: 'application/vnd.dev.sigstore.trustedroot+json;version=0.1',
  tlogs: [],
  certificateAuthorities: [],
  ctlogs: [],
  timestampAuthorities: [],
});

export interface PreparedKeyed {
  readonly kind: 'publicKey';
  readonly name: string;
  readonly key: KeyObject;
  /** Digest for node:crypto sign/verify: null for EdDSA, sha256 otherwise (as sigstore-js and cosign). */
  readonly hash: string | null;
  readonly verifier: Verifier;
}

export interface PreparedKeyless {
  readonly kind: 'keyless';
  readonly name: string;
  readonly issuer: string;
  readonly trust: TrustMaterial;
  readonly verifier: Verifier;
  /** What may vouch for the signing time, narrowed to what the trusted root can check. */
  readonly acceptTsa: boolean;
  readonly acceptTlog: boolean;
  /** When only a log entry can supply the time, a verified entry is required (`tlog`). */
  readonly requireTlog: boolean;
  /** Anchored matcher over the certificate SAN. */
  readonly matchSubject: (san: string) => boolean;
  /** For messages: what the subject must be. */
  readonly subjectText: string;
  /** Anchored RegExp handed to sigstore-js as a second check (never a plain string: String.match is unanchored). */
  readonly sanPolicy: RegExp;
}

export type PreparedSigner = PreparedKeyed | PreparedKeyless;

// Cached on the objects a loaded policy keeps for its lifetime (the KeyObject, the trusted-root
// JSON), not on the signer spec: callers may rebuild plain specs on every pull. A reloaded
// policy brings new objects, so nothing stale survives a policy or key change, and entries go
// when the policy is dropped.
const keyedCache = new WeakMap<KeyObject, Map<string, PreparedKeyed>>();
const keylessCache = new WeakMap<object, Map<string, PreparedKeyless>>();

export function hashForKey(key: KeyObject): string | null {
  const t = key.asymmetricKeyType;
  return t === 'ed25519' || t === 'ed448' ? null : 'sha256';
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}

/** `^(?:…)$` around the source, flags kept except the stateful g and y. */
export function anchoredRegExp(re: RegExp | string): RegExp {
  const source = typeof re === 'string' ? re : re.source;
  const flags = typeof re === 'string' ? '' : re.flags.replace(/[gy]/g, '');
  return new RegExp(`^(?:${source})$`, flags);
}

function prepareKeyed(s: PublicKeySignerSpec): PreparedKeyed {
  if (!s.key || s.key.type !== 'public') {
    throw new SpokeError('SignatureValidationFailed', `signer ${s.name}: not a public key`, {}, { reason: 'SIGNER_UNAVAILABLE' });
  }
  const key = s.key;
  // The key hint in a bundle is unauthenticated: the finder ignores it and answers with this key.
  const trust = toTrustMaterial(EMPTY_ROOT, () => ({ publicKey: key, validFor: () => true }));
  return {
    kind: 'publicKey',
    name: s.name,
    key,
    hash: hashForKey(key),
    verifier: new Verifier(trust, { tlogThreshold: 0, ctlogThreshold: 0, timestampThreshold: 0 }),
  };
}

function prepareKeyless(s: KeylessSignerSpec): PreparedKeyless {
  let root: TrustedRoot;
  try {
    root = TrustedRoot.fromJSON(s.trustedRoot);
  } catch (e) {
    throw new SpokeError('SignatureValidationFailed', `signer ${s.name}: malformed trusted root: ${(e as Error).message}`, {}, { cause: e, reason: 'SIGNER_UNAVAILABLE' });
  }
  if (!root.certificateAuthorities?.length) {
    throw new SpokeError('SignatureValidationFailed', `signer ${s.name}: trusted root lists no certificate authorities`, {}, { reason: 'SIGNER_UNAVAILABLE' });
  }
  const timeSource = s.timeSource ?? 'any';
  const acceptTsa = timeSource !== 'tlog' && (root.timestampAuthorities?.length ?? 0) > 0;
  const acceptTlog = timeSource !== 'tsa' && (root.tlogs?.length ?? 0) > 0;
  if (!acceptTsa && !acceptTlog) {
    const needs = timeSource === 'tsa' ? 'timestamp authorities' : timeSource === 'tlog' ? 'transparency logs' : 'timestamp authorities or transparency logs';
    throw new SpokeError('SignatureValidationFailed', `signer ${s.name}: trusted root lists no ${needs} (keyless needs a verified signing time, timeSource ${timeSource})`, {}, { reason: 'SIGNER_UNAVAILABLE' });
  }
  if (typeof s.issuer !== 'string' || s.issuer.length === 0) {
    throw new SpokeError('SignatureValidationFailed', `signer ${s.name}: keyless signer without an issuer`, {}, { reason: 'POLICY_INVALID' });
  }
  let matchSubject: (san: string) => boolean;
  let sanPolicy: RegExp;
  let subjectText: string;
  if (typeof s.subject === 'string' && s.subject.length > 0) {
    const subject = s.subject;
    matchSubject = (san) => san === subject;
    sanPolicy = new RegExp(`^${escapeRegExp(subject)}$`);
    subjectText = subject;
  } else if (s.subjectRegExp !== undefined && s.subjectRegExp !== '') {
    const re = anchoredRegExp(s.subjectRegExp);
    matchSubject = (san) => re.test(san);
    sanPolicy = re;
    subjectText = re.source;
  } else {
    throw new SpokeError('SignatureValidationFailed', `signer ${s.name}: keyless signer without subject or subjectRegExp`, {}, { reason: 'POLICY_INVALID' });
  }
  let trust: TrustMaterial;
  try {
    trust = toTrustMaterial(root, () => {
      throw new SpokeError('SignatureValidationFailed', 'keyless signer has no public keys', {}, { reason: 'SIGNER_UNAVAILABLE' });
    });
  } catch (e) {
    throw new SpokeError('SignatureValidationFailed', `signer ${s.name}: unusable trusted root: ${(e as Error).message}`, {}, { cause: e, reason: 'SIGNER_UNAVAILABLE' });
  }
  return {
    kind: 'keyless',
    name: s.name,
    issuer: s.issuer,
    trust,
    acceptTsa,
    acceptTlog,
    requireTlog: timeSource === 'tlog',
    // Time comes from what the signer accepts (see acceptTsa/acceptTlog): evidence of any other
    // kind is stripped, and at least one verified time is counted before this verifier runs.
    verifier: new Verifier(trust, { tlogThreshold: timeSource === 'tlog' ? 1 : 0, ctlogThreshold: 0, timestampThreshold: 1 }),
    matchSubject,
    subjectText,
    sanPolicy,
  };
}

function keylessCacheKey(s: KeylessSignerSpec): string {
  const re = s.subjectRegExp;
  const reText = re === undefined ? '' : typeof re === 'string' ? `s:${re}` : `r:${re.source}/${re.flags}`;
  return JSON.stringify([s.name, s.issuer, s.subject ?? null, reText, s.timeSource ?? 'any']);
}

/** The prepared form of `s`, built on first use. Throws SignatureValidationFailed on unusable material. */
export function prepareSigner(s: SignerSpec): PreparedSigner {
  if (s.kind === 'publicKey') {
    if (typeof s.key !== 'object' || s.key === null) return prepareKeyed(s);
    let byName = keyedCache.get(s.key);
    if (!byName) keyedCache.set(s.key, (byName = new Map()));
    let p = byName.get(s.name);
    if (!p) byName.set(s.name, (p = prepareKeyed(s)));
    return p;
  }
  const root = s.trustedRoot;
  if (typeof root !== 'object' || root === null) return prepareKeyless(s);
  let byIdentity = keylessCache.get(root);
  if (!byIdentity) keylessCache.set(root, (byIdentity = new Map()));
  const k = keylessCacheKey(s);
  let p = byIdentity.get(k);
  if (!p) byIdentity.set(k, (p = prepareKeyless(s)));
  return p;
}
