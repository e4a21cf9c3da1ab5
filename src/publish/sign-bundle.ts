// The sigstore bundle format of spoke sign (sign.ts): the shape cosign v3 writes for an image
// signature, a sigstore bundle v0.3 holding a DSSE envelope (in-toto Statement v1, the
// artifact's sha256 as subject, predicateType cosign/sign/v1, predicate {}), attached as an OCI
// 1.1 referrer; where the registry has no referrers API, the tag-schema index `sha256-<hex>` is
// updated too, keeping its entries.

import { createHash, sign as cryptoSign, type KeyObject } from 'node:crypto';
import { bundleToJSON, toDSSEBundle } from '@sigstore/bundle';
import { dsse, pem as pemUtil } from '@sigstore/core';
import {
  ANNOTATION_BUNDLE_CONTENT,
  ANNOTATION_BUNDLE_PREDICATE,
  COSIGN_SIGN_PREDICATE,
  IN_TOTO_STATEMENT_V1,
  MEDIA_TYPE_IN_TOTO,
  MEDIA_TYPE_OCI_EMPTY,
  MEDIA_TYPE_OCI_INDEX,
  MEDIA_TYPE_OCI_MANIFEST,
  MEDIA_TYPE_SIGSTORE_BUNDLE_V03,
  OCI_EMPTY_DIGEST,
} from '../core/constants.js';
import { digestHex, sha256Digest, type Digest } from '../core/digest.js';
import { SpokeError } from '../core/errors.js';
import { MAX_INDEX_BYTES } from '../core/limits.js';
import type { Clock } from '../core/runtime.js';
import type { Credential, RepoLocator } from '../registry/types.js';
import { tagSchemaTag } from '../verify/index.js';
import { isObject, jsonBytes, refuseOverCap, TAG_UPDATE_ATTEMPTS, type SignArtifactOptions, type SignArtifactResult, type Signing } from './signing.js';
import { requestTimestamp } from './timestamp.js';

function manifestMediaType(bytes: Uint8Array): string {
  try {
    const m = JSON.parse(Buffer.from(bytes).toString('utf8')) as { mediaType?: unknown };
    return typeof m.mediaType === 'string' ? m.mediaType : MEDIA_TYPE_OCI_MANIFEST;
  } catch {
    return MEDIA_TYPE_OCI_MANIFEST;
  }
}

function keyHint(publicKey: KeyObject): string {
  return createHash('sha256').update(publicKey.export({ type: 'spki', format: 'der' })).digest('base64');
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
    const bytes = jsonBytes(index);
    refuseOverCap(bytes, MAX_INDEX_BYTES, `tag ${tag}`, `referrer ${entry.digest as string} is pushed but not listed`);
    await o.registry.putManifest(o.repo, tag, bytes, MEDIA_TYPE_OCI_INDEX, common);
    const check = await o.registry.getManifestIfExists(o.repo, tag, [MEDIA_TYPE_OCI_INDEX], { ...common, maxBytes: MAX_INDEX_BYTES });
    if (check && check.bytes.includes(Buffer.from(entry.digest as string))) return;
  }
  throw new SpokeError('RegistryUnavailable', `tag ${tag} kept changing under us; the referrer is pushed but not listed in the tag-schema index`, {}, { reason: 'TAG_CONTESTED' });
}

async function hasReferrersApi(o: SignArtifactOptions, common: { credential?: Credential; signal?: AbortSignal }): Promise<boolean> {
  try {
    return (await o.registry.getReferrers(o.repo, o.digest, { ...common, maxBytes: MAX_INDEX_BYTES })) !== undefined;
  } catch (e) {
    if (e instanceof SpokeError && e.reason === 'SIZE_LIMIT') return true;
    throw e;
  }
}

export async function attachBundle(o: SignArtifactOptions, s: Signing, clock: Clock): Promise<Pick<SignArtifactResult, 'bundleDigest' | 'bundleBlobDigest' | 'referrers'>> {
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
  // No OCI-Subject header: ask the referrers API itself before falling back (some registries omit
  // the header). Only whether it answers matters: a listing longer than a node reads is an answer.
  if (await hasReferrersApi(o, common)) return { bundleDigest, bundleBlobDigest, referrers: 'referrers-api' };
  await addToTagSchemaIndex(o, {
    mediaType: MEDIA_TYPE_OCI_MANIFEST,
    digest: bundleDigest,
    size: manifest.length,
    artifactType: MEDIA_TYPE_SIGSTORE_BUNDLE_V03,
    annotations,
  });
  return { bundleDigest, bundleBlobDigest, referrers: 'tag-schema' };
}
