// One sigstore bundle (v0.3) against the rule's signers, offline. What counts as a signature of
// the artifact: a DSSE envelope holding an in-toto Statement v1 whose predicateType is exactly
// cosign's image-signature type and whose subject names the manifest digest, or a message
// signature whose messageDigest is the manifest digest (the signature itself is then checked
// over the manifest bytes). Anything else (attestations included) is "not a signature".

import { assertBundleLatest, bundleFromJSON, type Bundle } from '@sigstore/bundle';
import { HashAlgorithm } from '@sigstore/protobuf-specs';
import { toSignedEntity, type SignedEntity } from '@sigstore/verify';
import { COSIGN_SIGN_PREDICATE, IN_TOTO_STATEMENT_V1, MEDIA_TYPE_IN_TOTO, MEDIA_TYPE_SIGSTORE_BUNDLE_V03 } from '../core/constants.js';
import { digestHex, type Digest } from '../core/digest.js';
import type { ErrorReason } from '../core/errors.js';
import { decodeStrictJson } from '../core/json.js';
import type { PreparedKeyed, PreparedKeyless, PreparedSigner } from './trust.js';
import type { SignatureVerdict } from './types.js';

/**
 * Why a candidate did not count. `notSignature`: it is not a signature of anything (attestation,
 * other type). Not a SpokeError on purpose: it is one candidate's verdict, never the answer;
 * verifyArtifactSignature (verify.ts, `attempt`) is the one place that collects it into the
 * SpokeError (NOT_SIGNED or SIGNATURE_INVALID).
 */
export class Rejection extends Error {
  constructor(
    readonly reason: CandidateReason,
    message: string,
    readonly notSignature = false,
  ) {
    super(message);
  }
}

/** Why one signature candidate did not count; listed in the refusal's `context.rejections`. */
export type CandidateReason = Extract<
  ErrorReason,
  | 'SIGNATURE_INVALID'
  | 'SUBJECT_MISMATCH'
  | 'IDENTITY_MISMATCH'
  | 'CERTIFICATE_INVALID'
  | 'TIMESTAMP_INVALID'
  | 'TLOG_INVALID'
  | 'NOT_A_SIGNATURE'
  | 'SIGNER_MISMATCH'
  | 'MANIFEST_INVALID'
  | 'SIZE_LIMIT'
  | 'DIGEST_MISMATCH'
>;

export interface VerifyContext {
  digest: Digest;
  manifestBytes: Buffer;
  signers: readonly PreparedSigner[];
  /** Wall clock, ms: timestamps later than this (plus skew) are refused. */
  now: number;
}

/** Largest clock skew tolerated between a TSA and this node. */
export const MAX_TIMESTAMP_SKEW_MS = 5 * 60 * 1000;
/** Transparency-log entries, and RFC 3161 timestamps, a bundle may carry: cosign writes one of each. */
const MAX_TIME_EVIDENCE = 4;

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function describe(e: unknown): string {
  if (e instanceof Error) {
    const code = (e as { code?: unknown }).code;
    return typeof code === 'string' && code !== '' ? `${code} ${e.message}` : e.message;
  }
  return String(e);
}

/** Checks the statement inside a DSSE envelope: in-toto v1, cosign signature predicate, our digest as a subject. */
function checkStatement(payloadType: string, payload: Buffer, digest: Digest): void {
  if (payloadType !== MEDIA_TYPE_IN_TOTO) {
    throw new Rejection('NOT_A_SIGNATURE', `DSSE payloadType ${JSON.stringify(payloadType.slice(0, 80))} is not ${MEDIA_TYPE_IN_TOTO}`, true);
  }
  let st: unknown;
  try {
    st = decodeStrictJson(payload, 'in-toto statement');
  } catch (e) {
    throw new Rejection('NOT_A_SIGNATURE', `DSSE payload: ${describe(e)}`, true);
  }
  if (!isObject(st) || st._type !== IN_TOTO_STATEMENT_V1) {
    throw new Rejection('NOT_A_SIGNATURE', `DSSE payload is not an in-toto Statement v1`, true);
  }
  if (st.predicateType !== COSIGN_SIGN_PREDICATE) {
    throw new Rejection('NOT_A_SIGNATURE', `attestation with predicateType ${JSON.stringify(String(st.predicateType).slice(0, 100))}, not a signature`, true);
  }
  const hex = digestHex(digest);
  const subjects = Array.isArray(st.subject) ? st.subject : [];
  const names = subjects.some((s) => isObject(s) && isObject(s.digest) && s.digest.sha256 === hex);
  if (!names) throw new Rejection('SUBJECT_MISMATCH', `signed statement does not name ${digest} as its subject`);
}

/** sigstore-js error codes (@sigstore/verify error.d.ts) → the candidate's reason. */
function libraryReason(e: unknown): CandidateReason {
  const code = (e as { code?: unknown })?.code;
  if (code === 'UNTRUSTED_SIGNER_ERROR') return 'IDENTITY_MISMATCH';
  if (code === 'CERTIFICATE_ERROR') return 'CERTIFICATE_INVALID';
  if (code === 'TIMESTAMP_ERROR') return 'TIMESTAMP_INVALID';
  if (typeof code === 'string' && code.startsWith('TLOG_')) return 'TLOG_INVALID';
  return 'SIGNATURE_INVALID';
}

/** Verifies with the library; any exception, of any type, is a refusal carrying its text. */
function libraryVerify(p: PreparedKeyed | PreparedKeyless, entity: SignedEntity, policy?: { subjectAlternativeName: RegExp; extensions: { issuer: string } }) {
  try {
    // The library's d.ts types the SAN as string but uses String.prototype.match: a RegExp is what we mean.
    return p.verifier.verify(entity, policy as unknown as Parameters<typeof p.verifier.verify>[1]);
  } catch (e) {
    throw new Rejection(libraryReason(e), describe(e));
  }
}

/** Checks a keyless verification result and the timestamps against the signer's identity rules. */
export function checkKeylessIdentity(p: PreparedKeyless, san: string | undefined, issuer: string | undefined): string {
  if (issuer !== p.issuer) throw new Rejection('IDENTITY_MISMATCH', `certificate issuer ${JSON.stringify(issuer ?? '(none)')} is not ${JSON.stringify(p.issuer)}`);
  if (san === undefined || !p.matchSubject(san)) {
    throw new Rejection('IDENTITY_MISMATCH', `certificate subject ${JSON.stringify(san ?? '(none)')} does not match ${JSON.stringify(p.subjectText)}`);
  }
  return san;
}

/**
 * The signing times a keyless signer accepts from this entity: RFC 3161 timestamps where it
 * accepts a TSA, transparency-log entries with an inclusion promise (their integrated time) where
 * it accepts a log; none in the future. The verifier then checks each one (TSA chain, SET or
 * inclusion proof against the trusted log key), so a counted time is a verified one or a refusal.
 */
export function acceptedTimes(entity: SignedEntity, p: Pick<PreparedKeyless, 'acceptTsa' | 'acceptTlog'>, now: number): SignedEntity['timestamps'] {
  const out: SignedEntity['timestamps'] = [];
  for (const t of entity.timestamps) {
    let at: Date;
    if (t.$case === 'timestamp-authority') {
      if (!p.acceptTsa) continue;
      try {
        at = t.timestamp.signingTime;
      } catch (e) {
        throw new Rejection('TIMESTAMP_INVALID', `unreadable RFC 3161 timestamp: ${describe(e)}`);
      }
    } else {
      if (!p.acceptTlog || t.tlogEntry.inclusionPromise === undefined) continue;
      at = new Date(Number(t.tlogEntry.integratedTime) * 1000);
      if (Number.isNaN(at.getTime())) throw new Rejection('TIMESTAMP_INVALID', 'unreadable transparency-log integrated time');
    }
    if (at.getTime() > now + MAX_TIMESTAMP_SKEW_MS) throw new Rejection('TIMESTAMP_INVALID', `${t.$case === 'timestamp-authority' ? 'RFC 3161 timestamp' : 'transparency-log integrated time'} ${at.toISOString()} is in the future`);
    out.push(t);
  }
  return out;
}

/** Verifies a keyed entity against each keyed signer (the key hint is ignored); first match wins. */
export function verifyKeyed(entity: SignedEntity, signers: readonly PreparedSigner[], format: SignatureVerdict['format']): SignatureVerdict {
  const keyed = signers.filter((s): s is PreparedKeyed => s.kind === 'publicKey');
  if (keyed.length === 0) throw new Rejection('SIGNER_MISMATCH', 'signed with a public key, and the rule names no public-key signer');
  // Keys carry no time: tlog entries and timestamps are neither needed nor checkable here.
  const bare: SignedEntity = { ...entity, timestamps: [], tlogEntries: [] };
  for (const p of keyed) {
    try {
      libraryVerify(p, bare);
      return { signer: p.name, format };
    } catch {
      /* next key */
    }
  }
  throw new Rejection('SIGNATURE_INVALID', `signature does not verify with the key of ${keyed.map((k) => k.name).join(', ')}`);
}

/** Verifies a certificate entity against each keyless signer; first match wins. */
export function verifyKeyless(entity: SignedEntity, signers: readonly PreparedSigner[], format: SignatureVerdict['format'], now: number): SignatureVerdict {
  const keyless = signers.filter((s): s is PreparedKeyless => s.kind === 'keyless');
  if (keyless.length === 0) throw new Rejection('SIGNER_MISMATCH', 'signed with a certificate, and the rule names no keyless signer');
  const reasons: string[] = [];
  const why = new Set<CandidateReason>();
  for (const p of keyless) {
    try {
      // Count first: with zero timestamps sigstore-js never checks the chain (and throws a TypeError).
      const times = acceptedTimes(entity, p, now);
      if (times.length < 1) throw new Rejection('TIMESTAMP_INVALID', `certificate signature carries no ${timeEvidence(p)}`);
      if (p.requireTlog && entity.tlogEntries.length === 0) throw new Rejection('TLOG_INVALID', 'certificate signature carries no transparency-log entry');
      const evidence: SignedEntity = { ...entity, timestamps: times, tlogEntries: p.acceptTlog ? entity.tlogEntries : [] };
      const signer = libraryVerify(p, evidence, { subjectAlternativeName: p.sanPolicy, extensions: { issuer: p.issuer } });
      const identity = checkKeylessIdentity(p, signer.identity?.subjectAlternativeName, signer.identity?.extensions?.issuer);
      return { signer: p.name, format, identity };
    } catch (e) {
      reasons.push(`${p.name}: ${describe(e)}`);
      why.add(e instanceof Rejection ? e.reason : 'SIGNATURE_INVALID');
    }
  }
  // One reason when every signer refused for the same one; otherwise the general one.
  throw new Rejection(why.size === 1 ? [...why][0]! : 'SIGNATURE_INVALID', reasons.join('; '));
}

function timeEvidence(p: Pick<PreparedKeyless, 'acceptTsa' | 'acceptTlog'>): string {
  if (p.acceptTsa && p.acceptTlog) return 'RFC 3161 timestamp or transparency-log entry with an inclusion promise';
  return p.acceptTsa ? 'RFC 3161 timestamp' : 'transparency-log entry with an inclusion promise';
}

/** Parses bundle JSON bytes into a v0.3 bundle or rejects. */
export function parseBundle(bytes: Uint8Array): Bundle {
  let json: unknown;
  try {
    json = decodeStrictJson(bytes, 'bundle');
  } catch (e) {
    throw new Rejection('MANIFEST_INVALID', describe(e), true);
  }
  if (!isObject(json)) throw new Rejection('MANIFEST_INVALID', 'bundle is not a JSON object', true);
  // One protobuf oneof: a JSON form with both is malformed, and verifiers differ on which they read.
  if (json.dsseEnvelope !== undefined && json.messageSignature !== undefined) {
    throw new Rejection('MANIFEST_INVALID', 'bundle carries both a DSSE envelope and a message signature', true);
  }
  if (json.mediaType !== MEDIA_TYPE_SIGSTORE_BUNDLE_V03) {
    throw new Rejection('MANIFEST_INVALID', `bundle media type ${JSON.stringify(String(json.mediaType).slice(0, 80))} refused; ${MEDIA_TYPE_SIGSTORE_BUNDLE_V03} is required`, true);
  }
  try {
    const b = bundleFromJSON(json);
    assertBundleLatest(b);
    return b;
  } catch (e) {
    const fields = (e as { fields?: unknown }).fields;
    throw new Rejection('MANIFEST_INVALID', `malformed bundle: ${describe(e)}${Array.isArray(fields) ? ` (${fields.join(', ')})` : ''}`, true);
  }
}

/** Verifies one bundle's bytes. Resolves the verdict or throws a Rejection saying why not. */
export function verifyBundleBytes(bytes: Uint8Array, ctx: VerifyContext): SignatureVerdict {
  const bundle = parseBundle(bytes);
  // cosign writes one of each. sigstore-js compares every pair of timestamps before it checks
  // any, so a forged bundle of 2,350 log entries took 2.7 s of the shim's only thread.
  const material = bundle.verificationMaterial;
  const tlog = material.tlogEntries.length;
  const tsa = material.timestampVerificationData?.rfc3161Timestamps.length ?? 0;
  if (tlog > MAX_TIME_EVIDENCE || tsa > MAX_TIME_EVIDENCE) {
    throw new Rejection('MANIFEST_INVALID', `the bundle carries ${tlog} transparency-log entries and ${tsa} RFC 3161 timestamps; at most ${MAX_TIME_EVIDENCE} of each are read`);
  }
  let entity: SignedEntity;
  const content = bundle.content;
  if (content.$case === 'dsseEnvelope') {
    checkStatement(content.dsseEnvelope.payloadType, content.dsseEnvelope.payload, ctx.digest);
    try {
      entity = toSignedEntity(bundle);
    } catch (e) {
      throw new Rejection('MANIFEST_INVALID', `malformed bundle: ${describe(e)}`);
    }
  } else {
    const md = content.messageSignature.messageDigest;
    if (!md || md.algorithm !== HashAlgorithm.SHA2_256 || Buffer.from(md.digest).toString('hex') !== digestHex(ctx.digest)) {
      throw new Rejection('SUBJECT_MISMATCH', `message signature is over another artifact, not ${ctx.digest}`);
    }
    try {
      entity = toSignedEntity(bundle, ctx.manifestBytes);
    } catch (e) {
      throw new Rejection('MANIFEST_INVALID', `malformed bundle: ${describe(e)}`);
    }
  }
  return entity.key.$case === 'public-key' ? verifyKeyed(entity, ctx.signers, 'bundle') : verifyKeyless(entity, ctx.signers, 'bundle', ctx.now);
}
