// Checks on a KEP-6061 profile artifact's manifest and layer bytes (KEP §5; DESIGN §3 steps 5–6).
// Pure: the caller fetched and hashed the bytes; here we judge their content.

import { CONFIG_MEDIA_TYPE, MEDIA_TYPE_OCI_EMPTY, MEDIA_TYPE_OCI_MANIFEST, MEDIA_TYPE_UNKNOWN_CONFIG, kindOfConfigMediaType, type ProfileKind } from './constants.js';
import { isDigest, type Digest } from './digest.js';
import { SpokeError, type ErrorReason } from './errors.js';
import { decodeStrictJson } from './json.js';

export interface Descriptor {
  mediaType: string;
  digest: Digest;
  size: number;
  annotations?: Record<string, string>;
}

export interface ArtifactManifest {
  config: Descriptor;
  layer: Descriptor;
  artifactType: string | undefined;
  kind: ProfileKind;
}

function invalid(digest: string, what: string, extra: Record<string, unknown> = {}, reason: ErrorReason = 'MANIFEST_INVALID'): SpokeError {
  return new SpokeError('SecurityProfileInvalid', `${digest}: ${what}`, { digest, ...extra }, { reason });
}

function readDescriptor(v: unknown, where: string, digest: string, maxBytes: number): Descriptor {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw invalid(digest, `${where} is not a descriptor`);
  const d = v as Record<string, unknown>;
  if (typeof d.mediaType !== 'string' || d.mediaType.length === 0 || d.mediaType.length > 255) throw invalid(digest, `${where}.mediaType missing or malformed`);
  if (typeof d.digest !== 'string') throw invalid(digest, `${where}.digest missing`);
  if (!d.digest.startsWith('sha256:')) throw invalid(digest, `${where}.digest uses ${JSON.stringify(d.digest.split(':')[0]?.slice(0, 20))}, only sha256 is accepted`);
  if (!isDigest(d.digest)) throw invalid(digest, `${where}.digest is not sha256:<64 lowercase hex>`);
  if (typeof d.size !== 'number' || !Number.isSafeInteger(d.size) || d.size < 0) throw invalid(digest, `${where}.size missing or not a non-negative integer`);
  if (d.size > maxBytes) {
    throw invalid(digest, `${where} declares ${d.size} bytes, over the ${maxBytes}-byte limit`, { limit: maxBytes, actual: d.size }, 'SIZE_LIMIT');
  }
  if (d.urls !== undefined) throw invalid(digest, `${where} has external urls, which are not accepted`);
  const annotations = d.annotations;
  if (annotations !== undefined && (typeof annotations !== 'object' || annotations === null || Array.isArray(annotations))) {
    throw invalid(digest, `${where}.annotations is not an object`);
  }
  return { mediaType: d.mediaType, digest: d.digest, size: d.size, annotations: annotations as Record<string, string> | undefined };
}

/**
 * Decodes and judges an artifact manifest: an OCI image manifest whose config media type (or
 * artifactType when the config is the empty descriptor) names `kind`, with exactly one layer.
 */
export function checkArtifactManifest(bytes: Uint8Array, digest: Digest, kind: ProfileKind, maxArtifactBytes: number): ArtifactManifest {
  let m: unknown;
  try {
    m = decodeStrictJson(bytes, `manifest ${digest}`);
  } catch (e) {
    throw invalid(digest, `manifest is not strict JSON: ${(e as Error).message}`, {}, 'JSON_INVALID');
  }
  if (typeof m !== 'object' || m === null || Array.isArray(m)) throw invalid(digest, 'manifest is not a JSON object');
  const man = m as Record<string, unknown>;
  if (man.schemaVersion !== 2) throw invalid(digest, 'manifest schemaVersion is not 2');
  if (man.mediaType !== MEDIA_TYPE_OCI_MANIFEST) {
    throw invalid(digest, `not an OCI image manifest (mediaType ${JSON.stringify(String(man.mediaType ?? '(none)').slice(0, 100))})`, { expected: MEDIA_TYPE_OCI_MANIFEST });
  }
  const config = readDescriptor(man.config, 'config', digest, maxArtifactBytes);
  if (!Array.isArray(man.layers)) throw invalid(digest, 'manifest has no layers array');
  if (man.layers.length !== 1) throw invalid(digest, `artifact must have exactly one layer, has ${man.layers.length}`, { expected: 1, actual: man.layers.length });
  const layer = readDescriptor(man.layers[0], 'layers[0]', digest, maxArtifactBytes);
  const artifactType = man.artifactType;
  if (artifactType !== undefined && typeof artifactType !== 'string') throw invalid(digest, 'artifactType is not a string');
  if (config.mediaType === MEDIA_TYPE_UNKNOWN_CONFIG) {
    throw invalid(digest, `generic config media type ${MEDIA_TYPE_UNKNOWN_CONFIG} is not a profile artifact; republish with ${CONFIG_MEDIA_TYPE[kind]}`, {}, 'KIND_MISMATCH');
  }
  let declared: string | undefined;
  if (config.mediaType === MEDIA_TYPE_OCI_EMPTY) {
    declared = artifactType;
    if (declared === undefined) throw invalid(digest, 'empty config and no artifactType: the kind is not declared', {}, 'KIND_MISMATCH');
  } else {
    declared = config.mediaType;
    if (artifactType !== undefined && artifactType !== config.mediaType) {
      throw invalid(digest, `artifactType ${JSON.stringify(artifactType)} disagrees with config media type ${JSON.stringify(config.mediaType)}`, {}, 'KIND_MISMATCH');
    }
  }
  const declaredKind = kindOfConfigMediaType(declared);
  if (declaredKind !== kind) {
    throw invalid(digest, `artifact type ${JSON.stringify(declared.slice(0, 100))} is not a ${kind} profile (expected ${CONFIG_MEDIA_TYPE[kind]})`, {
      expected: CONFIG_MEDIA_TYPE[kind],
      actual: declared.slice(0, 100),
    }, 'KIND_MISMATCH');
  }
  return { config, layer, artifactType, kind };
}

/** The kind an artifact manifest declares, for commands that learn it from the artifact itself. */
export function declaredKind(bytes: Uint8Array): ProfileKind | undefined {
  try {
    const man = JSON.parse(Buffer.from(bytes).toString('utf8')) as { artifactType?: unknown; config?: { mediaType?: unknown } };
    const t = man.config?.mediaType === MEDIA_TYPE_OCI_EMPTY ? man.artifactType : man.config?.mediaType;
    return typeof t === 'string' ? kindOfConfigMediaType(t) : undefined;
  } catch {
    return undefined;
  }
}

/** Profile layers are raw JSON documents; archives are refused by their magic bytes (KEP §5). */
export function refuseArchive(bytes: Uint8Array, digest: Digest): void {
  if (bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b) throw invalid(digest, 'layer is gzip-compressed; a profile layer must be the raw JSON document', {}, 'ARCHIVE_REFUSED');
  if (bytes.length >= 4 && bytes[0] === 0x28 && bytes[1] === 0xb5 && bytes[2] === 0x2f && bytes[3] === 0xfd) {
    throw invalid(digest, 'layer is zstd-compressed; a profile layer must be the raw JSON document', {}, 'ARCHIVE_REFUSED');
  }
  if (bytes.length >= 262 && Buffer.from(bytes.subarray(257, 262)).toString('latin1') === 'ustar') {
    throw invalid(digest, 'layer is a tar archive; a profile layer must be the raw JSON document', {}, 'ARCHIVE_REFUSED');
  }
}
