// spoke sign: sign an artifact digest with a local key (optionally a certificate plus an
// RFC 3161 timestamp for keyless verification) and attach the signature the ways verifiers
// look for it (docs/signatures.md):
//  - bundle: the shape cosign v3 writes for an image signature: a sigstore bundle v0.3 holding
//    a DSSE envelope (in-toto Statement v1, the artifact's sha256 as subject, predicateType
//    cosign/sign/v1, predicate {}), attached as an OCI 1.1 referrer; where the registry has no
//    referrers API, the tag-schema index `sha256-<hex>` is updated too, keeping its entries.
//  - cosign: tag `sha256-<hex>.sig`, one simple-signing layer per signature, signature in the
//    layer annotation; earlier layers are kept.

import { X509Certificate as NodeX509, createHash, createPrivateKey, createPublicKey, sign as cryptoSign, verify as cryptoVerify, type KeyObject } from 'node:crypto';
import { bundleToJSON, toDSSEBundle } from '@sigstore/bundle';
import { dsse, pem as pemUtil } from '@sigstore/core';
import {
  ANNOTATION_BUNDLE_CONTENT,
  ANNOTATION_BUNDLE_PREDICATE,
  ANNOTATION_COSIGN_CERTIFICATE,
  ANNOTATION_COSIGN_CHAIN,
  ANNOTATION_COSIGN_SIGNATURE,
  COSIGN_SIGN_PREDICATE,
  COSIGN_SIMPLESIGNING_TYPE,
  IN_TOTO_STATEMENT_V1,
  MEDIA_TYPE_COSIGN_SIMPLESIGNING,
  MEDIA_TYPE_IN_TOTO,
  MEDIA_TYPE_OCI_EMPTY,
  MEDIA_TYPE_OCI_INDEX,
  MEDIA_TYPE_OCI_MANIFEST,
  MEDIA_TYPE_SIGSTORE_BUNDLE_V03,
  OCI_EMPTY_DIGEST,
} from '../core/constants.js';
import { digestHex, sha256Digest, type Digest } from '../core/digest.js';
import { SpokeError, isSpokeError } from '../core/errors.js';
import { MAX_INDEX_BYTES } from '../core/limits.js';
import { systemClock, type Clock } from '../core/runtime.js';
import type { Credential, RegistryClient, RepoLocator } from '../registry/types.js';
import { ANNOTATION_COSIGN_RFC3161, MEDIA_TYPE_DOCKER_MANIFEST, cosignSigTag, hashForKey, tagSchemaTag } from '../verify/index.js';
import { requestTimestamp } from './timestamp.js';

export type SignFormat = 'bundle' | 'cosign' | 'both';
const MEDIA_TYPE_OCI_CONFIG = 'application/vnd.oci.image.config.v1+json';
const TAG_UPDATE_ATTEMPTS = 5;

export interface SignArtifactOptions {
  registry: RegistryClient;
  repo: RepoLocator;
  digest: Digest;
  /** The artifact manifest bytes; their sha256 must be `digest`. */
  manifestBytes: Uint8Array;
  /** Private key: a KeyObject or PEM (PKCS#8 or SEC1; unencrypted). */
  key: KeyObject | string;
  /** Leaf certificate (PEM) for the key: keyless-style signature; needs `timestampUrl`. */
  cert?: string;
  /** Certificate chain (PEM), written to cosign's chain annotation. */
  chain?: string;
  /** RFC 3161 TSA URL; the timestamp is over the signature bytes. */
  timestampUrl?: string;
  format: SignFormat;
  credential?: Credential;
  signal?: AbortSignal;
  clock?: Clock;
  /** Injected fetch for the TSA (tests). */
  fetch?: typeof fetch;
}

export interface SignArtifactResult {
  /** Digest of the referrer manifest holding the bundle. */
  bundleDigest?: Digest;
  /** Digest of the bundle blob itself. */
  bundleBlobDigest?: Digest;
  /** How the referrer is discoverable: the registry's referrers API, or the tag-schema index we updated. */
  referrers?: 'referrers-api' | 'tag-schema';
  /** Digest of the `sha256-<hex>.sig` manifest after appending. */
  sigManifestDigest?: Digest;
}

interface Signing {
  key: KeyObject;
  publicKey: KeyObject;
  hash: string | null;
  certPem: string | undefined;
}

function loadPrivateKey(key: KeyObject | string): KeyObject {
  if (typeof key !== 'string') {
    if (key.type !== 'private') throw new SpokeError('InvalidArgument', 'signing key must be a private key', {}, { reason: 'KEY_INVALID' });
    return key;
  }
  try {
    return createPrivateKey({ key, format: 'pem' });
  } catch (e) {
    throw new SpokeError('InvalidArgument', `signing key is not an unencrypted PEM private key (PKCS#8 or SEC1): ${(e as Error).message}`, {}, { reason: 'KEY_INVALID' });
  }
}

function checkKeyStrength(k: KeyObject): void {
  const t = k.asymmetricKeyType;
  const d = k.asymmetricKeyDetails;
  if (t === 'ec' && (d?.namedCurve === 'prime256v1' || d?.namedCurve === 'secp384r1' || d?.namedCurve === 'secp521r1')) return;
  if (t === 'ed25519') return;
  if (t === 'rsa' && (d?.modulusLength ?? 0) >= 2048) return;
  throw new SpokeError('InvalidArgument', `signing key type ${t}${d?.namedCurve ? ` (${d.namedCurve})` : ''}${d?.modulusLength ? ` ${d.modulusLength} bits` : ''} is not accepted: use ECDSA P-256/P-384, Ed25519 or RSA ≥ 2048`, {}, { reason: 'KEY_INVALID' });
}

function prepareSigning(o: SignArtifactOptions): Signing {
  const key = loadPrivateKey(o.key);
  checkKeyStrength(key);
  const publicKey = createPublicKey(key);
  let certPem: string | undefined;
  if (o.cert !== undefined) {
    let cert: NodeX509;
    try {
      cert = new NodeX509(o.cert);
    } catch (e) {
      throw new SpokeError('InvalidArgument', `certificate is not a PEM X.509 certificate: ${(e as Error).message}`, {}, { reason: 'CERTIFICATE_INVALID' });
    }
    const mine = publicKey.export({ type: 'spki', format: 'der' });
    const theirs = cert.publicKey.export({ type: 'spki', format: 'der' });
    if (!mine.equals(theirs)) throw new SpokeError('InvalidArgument', 'certificate is not for the signing key (public keys differ)', {}, { reason: 'CERTIFICATE_INVALID' });
    if (o.timestampUrl === undefined) {
      throw new SpokeError('InvalidArgument', 'a certificate signature needs --timestamp-url: keyless verification requires an RFC 3161 timestamp from the signing time', {}, { reason: 'OPTION_INVALID' });
    }
    certPem = cert.toString();
  } else if (o.chain !== undefined) {
    throw new SpokeError('InvalidArgument', '--chain needs --cert', {}, { reason: 'OPTION_INVALID' });
  }
  return { key, publicKey, hash: hashForKey(key), certPem };
}

function keyHint(publicKey: KeyObject): string {
  return createHash('sha256').update(publicKey.export({ type: 'spki', format: 'der' })).digest('base64');
}

function manifestMediaType(bytes: Uint8Array): string {
  try {
    const m = JSON.parse(Buffer.from(bytes).toString('utf8')) as { mediaType?: unknown };
    return typeof m.mediaType === 'string' ? m.mediaType : MEDIA_TYPE_OCI_MANIFEST;
  } catch {
    return MEDIA_TYPE_OCI_MANIFEST;
  }
}

/** The in-toto statement cosign v3 signs for an image: subject = the digest, empty predicate. */
export function signingStatement(repo: RepoLocator, digest: Digest): Buffer {
  return Buffer.from(
    JSON.stringify({
      _type: IN_TOTO_STATEMENT_V1,
      subject: [{ name: `${repo.registry}/${repo.repository}`, digest: { sha256: digestHex(digest) } }],
      predicateType: COSIGN_SIGN_PREDICATE,
      predicate: {},
    }),
  );
}

/** The simple-signing payload cosign signs (docker-reference is the repository, no tag). */
export function simpleSigningPayload(repo: RepoLocator, digest: Digest): Buffer {
  return Buffer.from(
    JSON.stringify({
      critical: { identity: { 'docker-reference': `${repo.registry}/${repo.repository}` }, image: { 'docker-manifest-digest': digest }, type: COSIGN_SIMPLESIGNING_TYPE },
      optional: null,
    }),
  );
}

/** Builds the bundle JSON bytes (DSSE, statement over `digest`). */
export async function buildSignatureBundle(o: SignArtifactOptions, s: Signing): Promise<Buffer> {
  const payload = signingStatement(o.repo, o.digest);
  const signature = cryptoSign(s.hash, dsse.preAuthEncoding(MEDIA_TYPE_IN_TOTO, payload), s.key);
  const bundle = toDSSEBundle({
    artifact: payload,
    artifactType: MEDIA_TYPE_IN_TOTO,
    signature,
    certificate: s.certPem ? pemUtil.toDER(s.certPem) : undefined,
    keyHint: s.certPem ? undefined : keyHint(s.publicKey),
    certificateChain: false,
  });
  if (o.timestampUrl !== undefined) {
    const ts = await requestTimestamp(o.timestampUrl, signature, { signal: o.signal, fetch: o.fetch });
    bundle.verificationMaterial.timestampVerificationData = { rfc3161Timestamps: [{ signedTimestamp: ts }] };
  }
  return Buffer.from(JSON.stringify(bundleToJSON(bundle)));
}

const EMPTY_CONFIG = Buffer.from('{}');

function jsonBytes(v: unknown): Buffer {
  return Buffer.from(JSON.stringify(v));
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Adds `entry` to the tag-schema referrers index at `sha256-<hex>`, keeping every existing entry.
 * Read-modify-write is racy between concurrent signers; we re-read after writing and retry.
 */
async function addToTagSchemaIndex(o: SignArtifactOptions, entry: Record<string, unknown>): Promise<void> {
  const tag = tagSchemaTag(o.digest);
  const common = { credential: o.credential, signal: o.signal };
  for (let attempt = 0; attempt < TAG_UPDATE_ATTEMPTS; attempt++) {
    const cur = await o.registry.getManifestIfExists(o.repo, tag, [MEDIA_TYPE_OCI_INDEX], { ...common, maxBytes: MAX_INDEX_BYTES });
    let index: Record<string, unknown>;
    if (cur === undefined) {
      index = { schemaVersion: 2, mediaType: MEDIA_TYPE_OCI_INDEX, manifests: [] };
    } else {
      let parsed: unknown;
      try {
        parsed = JSON.parse(cur.bytes.toString('utf8'));
      } catch {
        parsed = undefined;
      }
      if (!isObject(parsed) || !Array.isArray(parsed.manifests) || (parsed.mediaType !== undefined && parsed.mediaType !== MEDIA_TYPE_OCI_INDEX)) {
        throw new SpokeError('FailedPrecondition', `tag ${tag} exists and is not an OCI image index; refusing to overwrite it`, {}, { reason: 'MANIFEST_INVALID' });
      }
      index = parsed;
    }
    const manifests = index.manifests as unknown[];
    if (manifests.some((m) => isObject(m) && m.digest === entry.digest)) return;
    manifests.push(entry);
    await o.registry.putManifest(o.repo, tag, jsonBytes(index), MEDIA_TYPE_OCI_INDEX, common);
    const check = await o.registry.getManifestIfExists(o.repo, tag, [MEDIA_TYPE_OCI_INDEX], { ...common, maxBytes: MAX_INDEX_BYTES });
    if (check && check.bytes.includes(Buffer.from(entry.digest as string))) return;
  }
  throw new SpokeError('RegistryUnavailable', `tag ${tag} kept changing under us; the referrer is pushed but not listed in the tag-schema index`, {}, { reason: 'TAG_CONTESTED' });
}

async function attachBundle(o: SignArtifactOptions, s: Signing, clock: Clock): Promise<Pick<SignArtifactResult, 'bundleDigest' | 'bundleBlobDigest' | 'referrers'>> {
  const bundleBytes = await buildSignatureBundle(o, s);
  const common = { credential: o.credential, signal: o.signal };
  const [bundleBlobDigest] = await Promise.all([o.registry.putBlob(o.repo, bundleBytes, common), o.registry.putBlob(o.repo, EMPTY_CONFIG, common)]);
  const annotations = {
    [ANNOTATION_BUNDLE_CONTENT]: 'dsse-envelope',
    [ANNOTATION_BUNDLE_PREDICATE]: COSIGN_SIGN_PREDICATE,
    'org.opencontainers.image.created': new Date(clock.now()).toISOString(),
  };
  const manifest = jsonBytes({
    schemaVersion: 2,
    mediaType: MEDIA_TYPE_OCI_MANIFEST,
    artifactType: MEDIA_TYPE_SIGSTORE_BUNDLE_V03,
    config: { mediaType: MEDIA_TYPE_OCI_EMPTY, digest: OCI_EMPTY_DIGEST, size: 2, data: 'e30=' },
    layers: [{ mediaType: MEDIA_TYPE_SIGSTORE_BUNDLE_V03, digest: bundleBlobDigest, size: bundleBytes.length }],
    subject: { mediaType: manifestMediaType(o.manifestBytes), digest: o.digest, size: o.manifestBytes.length },
    annotations,
  });
  const bundleDigest = sha256Digest(manifest);
  const put = await o.registry.putManifest(o.repo, bundleDigest, manifest, MEDIA_TYPE_OCI_MANIFEST, common);
  if (put.subjectHeader !== undefined) return { bundleDigest, bundleBlobDigest, referrers: 'referrers-api' };
  // No OCI-Subject header: ask the referrers API itself before falling back (some registries omit the header).
  const api = await o.registry.getReferrers(o.repo, o.digest, { ...common, maxBytes: MAX_INDEX_BYTES });
  if (api !== undefined) return { bundleDigest, bundleBlobDigest, referrers: 'referrers-api' };
  await addToTagSchemaIndex(o, {
    mediaType: MEDIA_TYPE_OCI_MANIFEST,
    digest: bundleDigest,
    size: manifest.length,
    artifactType: MEDIA_TYPE_SIGSTORE_BUNDLE_V03,
    annotations,
  });
  return { bundleDigest, bundleBlobDigest, referrers: 'tag-schema' };
}

function b64(b: Buffer): string {
  return b.toString('base64');
}

async function attachCosign(o: SignArtifactOptions, s: Signing): Promise<Digest> {
  const payload = simpleSigningPayload(o.repo, o.digest);
  const signature = cryptoSign(s.hash, payload, s.key);
  const annotations: Record<string, string> = { [ANNOTATION_COSIGN_SIGNATURE]: b64(signature) };
  if (s.certPem !== undefined) {
    annotations[ANNOTATION_COSIGN_CERTIFICATE] = s.certPem;
    if (o.chain !== undefined) annotations[ANNOTATION_COSIGN_CHAIN] = o.chain;
  }
  if (o.timestampUrl !== undefined) {
    const ts = await requestTimestamp(o.timestampUrl, signature, { signal: o.signal, fetch: o.fetch });
    annotations[ANNOTATION_COSIGN_RFC3161] = JSON.stringify({ SignedRFC3161Timestamp: b64(ts) });
  }
  const common = { credential: o.credential, signal: o.signal };
  const payloadDigest = await o.registry.putBlob(o.repo, payload, common);
  const tag = cosignSigTag(o.digest);
  const newLayer = { mediaType: MEDIA_TYPE_COSIGN_SIMPLESIGNING, digest: payloadDigest, size: payload.length, annotations };
  for (let attempt = 0; attempt < TAG_UPDATE_ATTEMPTS; attempt++) {
    const cur = await o.registry.getManifestIfExists(o.repo, tag, [MEDIA_TYPE_OCI_MANIFEST, MEDIA_TYPE_DOCKER_MANIFEST], { ...common, maxBytes: MAX_INDEX_BYTES });
    let layers: Record<string, unknown>[] = [];
    if (cur !== undefined) {
      let parsed: unknown;
      try {
        parsed = JSON.parse(cur.bytes.toString('utf8'));
      } catch {
        parsed = undefined;
      }
      if (!isObject(parsed) || !Array.isArray(parsed.layers)) throw new SpokeError('FailedPrecondition', `tag ${tag} exists and is not an image manifest; refusing to overwrite it`, {}, { reason: 'MANIFEST_INVALID' });
      layers = parsed.layers.filter(isObject);
      // Idempotent: an existing layer with our payload and a signature our key verifies is enough.
      const already = layers.find((l) => {
        const sig = isObject(l.annotations) ? l.annotations[ANNOTATION_COSIGN_SIGNATURE] : undefined;
        if (l.digest !== payloadDigest || typeof sig !== 'string') return false;
        if (s.certPem !== undefined && (l.annotations as Record<string, unknown>)[ANNOTATION_COSIGN_CERTIFICATE] !== s.certPem) return false;
        try {
          return cryptoVerify(s.hash, payload, s.publicKey, Buffer.from(sig, 'base64'));
        } catch {
          return false;
        }
      });
      if (already) return cur.digest;
    }
    layers.push(newLayer);
    const config = jsonBytes({
      architecture: '',
      created: '0001-01-01T00:00:00Z',
      history: layers.map(() => ({ created: '0001-01-01T00:00:00Z' })),
      os: '',
      rootfs: { type: 'layers', diff_ids: layers.map((l) => l.digest) },
      config: {},
    });
    const configDigest = await o.registry.putBlob(o.repo, config, common);
    const manifest = jsonBytes({
      schemaVersion: 2,
      mediaType: MEDIA_TYPE_OCI_MANIFEST,
      config: { mediaType: MEDIA_TYPE_OCI_CONFIG, digest: configDigest, size: config.length },
      layers,
    });
    const put = await o.registry.putManifest(o.repo, tag, manifest, MEDIA_TYPE_OCI_MANIFEST, common);
    const check = await o.registry.getManifestIfExists(o.repo, tag, [MEDIA_TYPE_OCI_MANIFEST, MEDIA_TYPE_DOCKER_MANIFEST], { ...common, maxBytes: MAX_INDEX_BYTES });
    if (check && check.digest === put.digest) return put.digest;
  }
  throw new SpokeError('RegistryUnavailable', `tag ${tag} kept changing under us; signature not attached`, {}, { reason: 'TAG_CONTESTED' });
}

/** Signs `digest` and attaches the signature in the requested format(s). */
export async function signArtifact(o: SignArtifactOptions): Promise<SignArtifactResult> {
  if (sha256Digest(o.manifestBytes) !== o.digest) throw new SpokeError('InvalidArgument', `manifest bytes do not hash to ${o.digest}`, {}, { reason: 'DIGEST_MISMATCH' });
  if (o.format !== 'bundle' && o.format !== 'cosign' && o.format !== 'both') throw new SpokeError('InvalidArgument', `unknown signature format ${JSON.stringify(o.format)}`, {}, { reason: 'OPTION_INVALID' });
  const s = prepareSigning(o);
  const clock = o.clock ?? systemClock;
  const out: SignArtifactResult = {};
  try {
    if (o.format === 'bundle' || o.format === 'both') Object.assign(out, await attachBundle(o, s, clock));
    if (o.format === 'cosign' || o.format === 'both') out.sigManifestDigest = await attachCosign(o, s);
  } catch (e) {
    if (isSpokeError(e)) throw e;
    throw new SpokeError('RegistryUnavailable', `signing ${o.digest}: ${(e as Error).message}`, {}, { cause: e, reason: 'UNEXPECTED' });
  }
  return out;
}
