// The cosign format of spoke sign (sign.ts): tag `sha256-<hex>.sig`, one simple-signing layer
// per signature, the signature in the layer annotation; earlier layers are kept.

import { sign as cryptoSign, verify as cryptoVerify } from 'node:crypto';
import { ANNOTATION_COSIGN_CERTIFICATE, ANNOTATION_COSIGN_CHAIN, ANNOTATION_COSIGN_SIGNATURE, COSIGN_SIMPLESIGNING_TYPE, MEDIA_TYPE_COSIGN_SIMPLESIGNING, MEDIA_TYPE_OCI_MANIFEST } from '../core/constants.js';
import type { Digest } from '../core/digest.js';
import { SpokeError } from '../core/errors.js';
import { MAX_SIG_MANIFEST_BYTES } from '../core/limits.js';
import type { RepoLocator } from '../registry/types.js';
import { ANNOTATION_COSIGN_RFC3161, MEDIA_TYPE_DOCKER_MANIFEST, cosignSigTag } from '../verify/index.js';
import { isObject, jsonBytes, refuseOverCap, TAG_UPDATE_ATTEMPTS, type SignArtifactOptions, type Signing } from './signing.js';
import { requestTimestamp, timestampCovers } from './timestamp.js';

const MEDIA_TYPE_OCI_CONFIG = 'application/vnd.oci.image.config.v1+json';

/** The simple-signing payload cosign signs (docker-reference is the repository, no tag). */
export function simpleSigningPayload(repo: RepoLocator, digest: Digest): Buffer {
  return Buffer.from(
    JSON.stringify({
      critical: { identity: { 'docker-reference': `${repo.registry}/${repo.repository}` }, image: { 'docker-manifest-digest': digest }, type: COSIGN_SIMPLESIGNING_TYPE },
      optional: null,
    }),
  );
}

/** The layer's cosign timestamp annotation holds a timestamp over `signature` that verifies. */
function hasTimestampOver(annotations: Record<string, unknown>, signature: Buffer): boolean {
  const raw = annotations[ANNOTATION_COSIGN_RFC3161];
  if (typeof raw !== 'string') return false;
  try {
    const token = (JSON.parse(raw) as { SignedRFC3161Timestamp?: unknown }).SignedRFC3161Timestamp;
    return typeof token === 'string' && timestampCovers(token, signature);
  } catch {
    return false;
  }
}

function b64(b: Buffer): string {
  return b.toString('base64');
}

export async function attachCosign(o: SignArtifactOptions, s: Signing): Promise<Digest> {
  const payload = simpleSigningPayload(o.repo, o.digest);
  const signature = cryptoSign(s.hash, payload, s.key);
  const annotations: Record<string, string> = { [ANNOTATION_COSIGN_SIGNATURE]: b64(signature) };
  if (s.certPem !== undefined) {
    annotations[ANNOTATION_COSIGN_CERTIFICATE] = s.certPem;
    if (s.chainPem !== undefined) annotations[ANNOTATION_COSIGN_CHAIN] = s.chainPem;
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
    const cur = await o.registry.getManifestIfExists(o.repo, tag, [MEDIA_TYPE_OCI_MANIFEST, MEDIA_TYPE_DOCKER_MANIFEST], { ...common, maxBytes: MAX_SIG_MANIFEST_BYTES });
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
      // Idempotent: an existing layer with our payload and a signature our key verifies is enough,
      // when it carries what this signing adds: with a timestamp asked for, one over its own
      // signature (else an earlier signature without one, or with a broken one, could never be
      // repaired by signing again).
      const already = layers.find((l) => {
        const sig = isObject(l.annotations) ? l.annotations[ANNOTATION_COSIGN_SIGNATURE] : undefined;
        if (l.digest !== payloadDigest || typeof sig !== 'string') return false;
        if (s.certPem !== undefined && (l.annotations as Record<string, unknown>)[ANNOTATION_COSIGN_CERTIFICATE] !== s.certPem) return false;
        if (o.timestampUrl !== undefined && !hasTimestampOver(l.annotations as Record<string, unknown>, Buffer.from(sig, 'base64'))) return false;
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
    refuseOverCap(manifest, MAX_SIG_MANIFEST_BYTES, `tag ${tag}`, 'signature is pushed but not attached');
    const put = await o.registry.putManifest(o.repo, tag, manifest, MEDIA_TYPE_OCI_MANIFEST, common);
    const check = await o.registry.getManifestIfExists(o.repo, tag, [MEDIA_TYPE_OCI_MANIFEST, MEDIA_TYPE_DOCKER_MANIFEST], { ...common, maxBytes: MAX_SIG_MANIFEST_BYTES });
    if (check && check.digest === put.digest) return put.digest;
  }
  throw new SpokeError('RegistryUnavailable', `tag ${tag} kept changing under us; signature not attached`, {}, { reason: 'TAG_CONTESTED' });
}
