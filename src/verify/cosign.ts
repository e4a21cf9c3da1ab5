// One cosign simple-signing layer (cosign SIGNATURE_SPEC): the signature in the layer
// annotation is over the exact payload blob bytes (never re-serialized JSON); the payload must
// name this manifest digest and the cosign signature type. Keyed layers are checked with
// node:crypto; layers carrying a Fulcio-style certificate go through sigstore-js with the
// signer's trusted root and an RFC 3161 timestamp (annotation dev.sigstore.cosign/rfc3161timestamp,
// over the raw signature bytes as cosign ≥ 2 writes it).

import { verify as cryptoVerify, type KeyObject } from 'node:crypto';
import { RFC3161Timestamp, X509Certificate, crypto as sigCrypto, pem } from '@sigstore/core';
import type { SignedEntity } from '@sigstore/verify';
import { ANNOTATION_COSIGN_CERTIFICATE, ANNOTATION_COSIGN_SIGNATURE, COSIGN_SIMPLESIGNING_TYPE } from '../core/constants.js';
import { sha256Digest, type Digest } from '../core/digest.js';
import { decodeStrictJson } from '../core/json.js';
import { Rejection, verifyKeyless } from './bundle.js';
import type { PreparedKeyed, PreparedSigner } from './trust.js';
import type { SignatureVerdict } from './types.js';

export const ANNOTATION_COSIGN_RFC3161 = 'dev.sigstore.cosign/rfc3161timestamp';
const BASE64_RE = /^[A-Za-z0-9+/]*={0,2}$/;

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function decodeBase64Strict(s: string, what: string): Buffer {
  const t = s.trim();
  if (t.length === 0 || t.length % 4 !== 0 || !BASE64_RE.test(t)) throw new Rejection('MANIFEST_INVALID', `${what} is not base64`);
  return Buffer.from(t, 'base64');
}

/** The payload must say: this digest, the cosign image-signature type. */
export function checkSimpleSigningPayload(payload: Uint8Array, digest: Digest): void {
  let v: unknown;
  try {
    v = decodeStrictJson(payload, 'simple-signing payload');
  } catch (e) {
    throw new Rejection('NOT_A_SIGNATURE', (e as Error).message, true);
  }
  const critical = isObject(v) ? v.critical : undefined;
  if (!isObject(critical)) throw new Rejection('NOT_A_SIGNATURE', 'simple-signing payload has no critical section', true);
  if (critical.type !== COSIGN_SIMPLESIGNING_TYPE) {
    throw new Rejection('NOT_A_SIGNATURE', `simple-signing payload type ${JSON.stringify(String(critical.type).slice(0, 80))} is not ${JSON.stringify(COSIGN_SIMPLESIGNING_TYPE)}`, true);
  }
  const image = critical.image;
  const named = isObject(image) ? image['docker-manifest-digest'] : undefined;
  if (named !== digest) throw new Rejection('SUBJECT_MISMATCH', `cosign payload is for ${JSON.stringify(String(named).slice(0, 80))}, not ${digest}`);
}

/** cosign signs with SHA-256 whatever the curve; newer tools use the curve's own hash. Both are strong. */
function hashesFor(p: PreparedKeyed): (string | null)[] {
  const curve = p.key.asymmetricKeyDetails?.namedCurve;
  if (curve === 'secp384r1') return ['sha256', 'sha384'];
  return [p.hash];
}

function verifyWithKey(p: PreparedKeyed, payload: Buffer, sig: Buffer): boolean {
  for (const h of hashesFor(p)) {
    try {
      if (cryptoVerify(h, payload, p.key as KeyObject, sig)) return true;
    } catch {
      /* wrong key type or malformed signature: not a match */
    }
  }
  return false;
}

function parseTimestampAnnotation(text: string): RFC3161Timestamp {
  let v: unknown;
  try {
    v = decodeStrictJson(Buffer.from(text, 'utf8'), 'rfc3161timestamp annotation');
  } catch (e) {
    throw new Rejection('TIMESTAMP_INVALID', (e as Error).message);
  }
  const b64 = isObject(v) ? v.SignedRFC3161Timestamp : undefined;
  if (typeof b64 !== 'string') throw new Rejection('TIMESTAMP_INVALID', 'rfc3161timestamp annotation has no SignedRFC3161Timestamp');
  try {
    return RFC3161Timestamp.parse(decodeBase64Strict(b64, 'SignedRFC3161Timestamp') as Buffer<ArrayBuffer>);
  } catch (e) {
    if (e instanceof Rejection) throw e;
    throw new Rejection('TIMESTAMP_INVALID', `malformed RFC 3161 timestamp: ${(e as Error).message}`);
  }
}

/** A sigstore-js SignedEntity for a certificate-signed cosign layer. */
function certificateEntity(payload: Buffer, sig: Buffer, certPem: string, tsAnnotation: string | undefined): SignedEntity {
  let certificate: X509Certificate;
  try {
    certificate = X509Certificate.parse(pem.toDER(certPem));
  } catch (e) {
    throw new Rejection('CERTIFICATE_INVALID', `malformed certificate annotation: ${(e as Error).message}`);
  }
  const timestamps: SignedEntity['timestamps'] = tsAnnotation === undefined ? [] : [{ $case: 'timestamp-authority', timestamp: parseTimestampAnnotation(tsAnnotation) }];
  const digest = sigCrypto.digest('sha256', payload);
  return {
    signature: {
      signature: sig,
      compareSignature: (s) => sigCrypto.bufferEqual(s, sig),
      compareDigest: (d) => sigCrypto.bufferEqual(d, digest),
      verifySignature: (key) => sigCrypto.verify(payload, key, sig, key.asymmetricKeyType === 'ed25519' ? undefined : 'sha256'),
    },
    key: { $case: 'certificate', certificate },
    timestamps,
    tlogEntries: [],
  };
}

export interface CosignLayerInput {
  annotations: Record<string, string>;
  payload: Buffer;
}

/** Verifies one `.sig` layer. Resolves the verdict or throws a Rejection. */
export function verifyCosignLayer(layer: CosignLayerInput, digest: Digest, signers: readonly PreparedSigner[], now: number): SignatureVerdict {
  const b64 = layer.annotations[ANNOTATION_COSIGN_SIGNATURE];
  if (b64 === undefined) throw new Rejection('NOT_A_SIGNATURE', `layer has no ${ANNOTATION_COSIGN_SIGNATURE} annotation`, true);
  const sig = decodeBase64Strict(b64, 'cosign signature annotation');
  checkSimpleSigningPayload(layer.payload, digest);
  const certPem = layer.annotations[ANNOTATION_COSIGN_CERTIFICATE];
  if (certPem !== undefined && certPem.trim() !== '') {
    return verifyKeyless(certificateEntity(layer.payload, sig, certPem, layer.annotations[ANNOTATION_COSIGN_RFC3161]), signers, 'cosign', now);
  }
  const keyed = signers.filter((s): s is PreparedKeyed => s.kind === 'publicKey');
  if (keyed.length === 0) throw new Rejection('SIGNER_MISMATCH', 'signed with a public key, and the rule names no public-key signer');
  for (const p of keyed) {
    if (verifyWithKey(p, layer.payload, sig)) return { signer: p.name, format: 'cosign' };
  }
  throw new Rejection('SIGNATURE_INVALID', `signature over payload ${sha256Digest(layer.payload)} does not verify with the key of ${keyed.map((k) => k.name).join(', ')}`);
}
