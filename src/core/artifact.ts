// Checks on a KEP-6061 profile artifact's manifest and layer bytes (KEP §5; docs/architecture.md, pull steps 5–6).
// Pure: the caller fetched and hashed the bytes; here we judge their content.

import { CONFIG_MEDIA_TYPE, MEDIA_TYPE_OCI_EMPTY, MEDIA_TYPE_OCI_INDEX, MEDIA_TYPE_OCI_MANIFEST, MEDIA_TYPE_UNKNOWN_CONFIG, kindOfConfigMediaType, type ProfileKind } from './constants.js';
import { isDigest, type Digest } from './digest.js';
import { SpokeError, type ErrorReason } from './errors.js';
import { decodeStrictJson } from './json.js';

export interface Descriptor {
  mediaType: string;
  digest: Digest;
  size: number;
  annotations?: Record<string, string>;
  /** Index entries only: the referenced artifact's type (OCI image spec 1.1). */
  artifactType?: string;
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

/** How Go's encoding/json matches a member to a field: ASCII case folded, and ſ and K as s and k. */
const goFold = (name: string): string => name.toLowerCase().replaceAll('ſ', 's');

const MANIFEST_MEMBERS = ['schemaVersion', 'mediaType', 'artifactType', 'config', 'layers', 'subject', 'annotations'];
const INDEX_MEMBERS = ['schemaVersion', 'mediaType', 'artifactType', 'manifests', 'subject', 'annotations'];
const DESCRIPTOR_MEMBERS = ['mediaType', 'digest', 'size', 'urls', 'annotations', 'data', 'artifactType', 'platform'];
const PLATFORM_MEMBERS = ['architecture', 'os', 'os.version', 'os.features', 'variant', 'features'];

/**
 * Refuses a member spelled as one of `known` but for case: Go readers (the registry, oras, the
 * KEP's runtimes) match members to fields that way, and the last of two such wins, so they would
 * read another value of that field than this one (another layer, under the same signed digest).
 * Other unknown members are ignored, as the OCI image spec asks.
 */
function refuseCaseVariants(o: Record<string, unknown>, known: readonly string[], where: string, digest: string): void {
  for (const member of Object.keys(o)) {
    if (known.includes(member)) continue;
    const folded = goFold(member);
    const field = known.find((k) => goFold(k) === folded);
    if (field !== undefined) {
      throw invalid(digest, `${where === '' ? '' : `${where}.`}${JSON.stringify(member.slice(0, 64))} differs from ${field} only by case, which Go readers take for ${field}`, { path: where === '' ? field : `${where}.${field}` });
    }
  }
}

function readDescriptor(v: unknown, where: string, digest: string, maxBytes: number): Descriptor {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw invalid(digest, `${where} is not a descriptor`, { path: where });
  const d = v as Record<string, unknown>;
  refuseCaseVariants(d, DESCRIPTOR_MEMBERS, where, digest);
  if (typeof d.mediaType !== 'string' || d.mediaType.length === 0 || d.mediaType.length > 255) throw invalid(digest, `${where}.mediaType missing or malformed`, { path: `${where}.mediaType` });
  if (typeof d.digest !== 'string') throw invalid(digest, `${where}.digest missing`, { path: `${where}.digest` });
  if (!d.digest.startsWith('sha256:')) throw invalid(digest, `${where}.digest uses ${JSON.stringify(d.digest.split(':')[0]?.slice(0, 20))}, only sha256 is accepted`, { path: `${where}.digest` });
  if (!isDigest(d.digest)) throw invalid(digest, `${where}.digest is not sha256:<64 lowercase hex>`, { path: `${where}.digest` });
  if (typeof d.size !== 'number' || !Number.isSafeInteger(d.size) || d.size < 0) throw invalid(digest, `${where}.size missing or not a non-negative integer`, { path: `${where}.size` });
  if (d.size > maxBytes) {
    throw invalid(digest, `${where} declares ${d.size} bytes, over the ${maxBytes}-byte limit`, { path: `${where}.size`, limit: maxBytes, actual: d.size }, 'SIZE_LIMIT');
  }
  if (d.urls !== undefined) throw invalid(digest, `${where} has external urls, which are not accepted`, { path: `${where}.urls` });
  const annotations = d.annotations;
  if (annotations !== undefined && (typeof annotations !== 'object' || annotations === null || Array.isArray(annotations))) {
    throw invalid(digest, `${where}.annotations is not an object`, { path: `${where}.annotations` });
  }
  return { mediaType: d.mediaType, digest: d.digest, size: d.size, annotations: annotations as Record<string, string> | undefined };
}

/**
 * A manifest's bytes with their strict decoding, made at most once however many of the readings
 * below judge them (a pull asks whether they are an index, which kind they declare, and whether
 * they are a valid artifact manifest). `what` names them in a decoding error.
 */
export class ManifestDocument {
  private decoded: { value: unknown } | { error: unknown } | undefined;

  constructor(
    readonly bytes: Uint8Array,
    private readonly what = 'manifest',
  ) {}

  /** The decoded value; throws what decodeStrictJson threw, each time it is asked. */
  value(): unknown {
    if (this.decoded === undefined) {
      try {
        this.decoded = { value: decodeStrictJson(this.bytes, this.what) };
      } catch (error) {
        this.decoded = { error };
      }
    }
    if ('error' in this.decoded) throw this.decoded.error;
    return this.decoded.value;
  }
}

const documentOf = (m: Uint8Array | ManifestDocument, what?: string): ManifestDocument => (m instanceof ManifestDocument ? m : new ManifestDocument(m, what));

/**
 * Decodes and judges an artifact manifest: an OCI image manifest whose config media type (or
 * artifactType when the config is the empty descriptor) names `kind`, with exactly one layer.
 */
export function checkArtifactManifest(bytes: Uint8Array | ManifestDocument, digest: Digest, kind: ProfileKind, maxArtifactBytes: number): ArtifactManifest {
  let m: unknown;
  try {
    m = documentOf(bytes, `manifest ${digest}`).value();
  } catch (e) {
    throw invalid(digest, `manifest is not strict JSON: ${(e as Error).message}`, {}, 'JSON_INVALID');
  }
  if (typeof m !== 'object' || m === null || Array.isArray(m)) throw invalid(digest, 'manifest is not a JSON object');
  const man = m as Record<string, unknown>;
  refuseCaseVariants(man, MANIFEST_MEMBERS, '', digest);
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

/**
 * The kind an artifact manifest declares, for commands that learn it from the artifact itself; for
 * a multi-architecture index, its artifactType (docs/multi-arch.md). Read with the strict decoder
 * checkArtifactManifest uses: the pull judges the requested kind apart from the content, and a
 * reader that failed where the check succeeds would hand the check the
 * request's kind, making a verdict on the digest of what is not one.
 */
export function declaredKind(bytes: Uint8Array | ManifestDocument): ProfileKind | undefined {
  try {
    const man = documentOf(bytes).value() as { mediaType?: unknown; artifactType?: unknown; config?: { mediaType?: unknown } } | null;
    if (typeof man !== 'object' || man === null) return undefined;
    const byArtifactType = man.mediaType === MEDIA_TYPE_OCI_INDEX || man.config?.mediaType === MEDIA_TYPE_OCI_EMPTY;
    const t = byArtifactType ? man.artifactType : man.config?.mediaType;
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

// ---- multi-architecture profiles (docs/multi-arch.md) ----

/** An OCI platform as an image index descriptor carries it (OCI image spec, image-index.md). */
export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

export interface PlatformDescriptor extends Descriptor {
  platform: Platform;
}

/** How many manifests a profile index may list: one per platform, and platforms are few. */
export const MAX_INDEX_MANIFESTS = 32;

/** os, architecture and variant values: Go's GOOS/GOARCH style names, short and plain. */
const PLATFORM_NAME_RE = /^[a-z0-9][a-z0-9_]{0,31}$/;

/** `os/architecture[/variant]`, as `spoke push --platform` and the error messages write it. */
export function formatPlatform(p: Platform): string {
  return `${p.os}/${p.architecture}${p.variant === undefined ? '' : `/${p.variant}`}`;
}

/**
 * The variant a platform means when it names none (as containerd normalises them): arm64 is v8
 * and amd64 is v1 whether written or not, so `linux/arm64/v8` and `linux/arm64` are one platform.
 */
function normalVariant(p: Platform): string | undefined {
  if (p.architecture === 'arm64' && p.variant === 'v8') return undefined;
  if (p.architecture === 'amd64' && p.variant === 'v1') return undefined;
  return p.variant;
}

/** One name per platform, however its variant is written: two platforms are the same when their keys are. */
export function platformKey(p: Platform): string {
  return formatPlatform({ os: p.os, architecture: p.architecture, ...(normalVariant(p) !== undefined ? { variant: normalVariant(p) } : {}) });
}

/** Parses `os/architecture[/variant]` (a `--platform` value); undefined when malformed. */
export function parsePlatform(s: string): Platform | undefined {
  const parts = s.split('/');
  if (parts.length < 2 || parts.length > 3 || !parts.every((x) => PLATFORM_NAME_RE.test(x))) return undefined;
  return { os: parts[0]!, architecture: parts[1]!, ...(parts[2] !== undefined ? { variant: parts[2] } : {}) };
}

/** True when `bytes` declare themselves an OCI image index (the caller then uses checkProfileIndex). */
export function isImageIndex(bytes: Uint8Array | ManifestDocument): boolean {
  try {
    const m = documentOf(bytes).value() as { mediaType?: unknown } | null;
    return typeof m === 'object' && m !== null && m.mediaType === MEDIA_TYPE_OCI_INDEX;
  } catch {
    return false;
  }
}

function readPlatform(v: unknown, where: string, digest: string): Platform {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw invalid(digest, `${where}.platform is missing: every manifest of a profile index names its platform`, { path: `${where}.platform` });
  const p = v as Record<string, unknown>;
  refuseCaseVariants(p, PLATFORM_MEMBERS, `${where}.platform`, digest);
  for (const k of ['os', 'architecture', 'variant'] as const) {
    const x = p[k];
    if (x === undefined && k === 'variant') continue;
    if (typeof x !== 'string' || !PLATFORM_NAME_RE.test(x)) throw invalid(digest, `${where}.platform.${k} is missing or not a plain lowercase name`, { path: `${where}.platform.${k}` });
  }
  return { os: p.os as string, architecture: p.architecture as string, ...(p.variant !== undefined ? { variant: p.variant as string } : {}) };
}

/**
 * Decodes and judges an OCI image index naming one profile artifact per platform: strict JSON,
 * schemaVersion 2, the index media type, 1 to MAX_INDEX_MANIFESTS image manifests (no nested
 * indexes, no external urls, sha256 only, each within the manifest size cap), each with a
 * platform, no platform twice. Judges the content alone: `artifactType`s are returned for the
 * caller to compare with the kind asked for.
 */
export function checkProfileIndex(bytes: Uint8Array, digest: Digest, maxManifestBytes: number): { artifactType: string | undefined; manifests: PlatformDescriptor[] } {
  let m: unknown;
  try {
    m = decodeStrictJson(bytes, `index ${digest}`);
  } catch (e) {
    throw invalid(digest, `index is not strict JSON: ${(e as Error).message}`);
  }
  if (typeof m !== 'object' || m === null || Array.isArray(m)) throw invalid(digest, 'index is not a JSON object');
  const idx = m as Record<string, unknown>;
  refuseCaseVariants(idx, INDEX_MEMBERS, '', digest);
  if (idx.schemaVersion !== 2) throw invalid(digest, 'index schemaVersion is not 2');
  if (idx.mediaType !== MEDIA_TYPE_OCI_INDEX) throw invalid(digest, 'not an OCI image index', { expected: MEDIA_TYPE_OCI_INDEX });
  const artifactType = idx.artifactType;
  if (artifactType !== undefined && typeof artifactType !== 'string') throw invalid(digest, 'index artifactType is not a string');
  if (!Array.isArray(idx.manifests) || idx.manifests.length === 0) throw invalid(digest, 'index lists no manifests');
  if (idx.manifests.length > MAX_INDEX_MANIFESTS) {
    throw invalid(digest, `index lists ${idx.manifests.length} manifests, over the limit of ${MAX_INDEX_MANIFESTS}`, { limit: MAX_INDEX_MANIFESTS, actual: idx.manifests.length });
  }
  const seen = new Set<string>();
  const manifests = idx.manifests.map((v: unknown, i: number): PlatformDescriptor => {
    const where = `manifests[${i}]`;
    const d = readDescriptor(v, where, digest, maxManifestBytes);
    if (d.mediaType !== MEDIA_TYPE_OCI_MANIFEST) throw invalid(digest, `${where} is not an OCI image manifest (nested indexes and other media types are not accepted)`, { path: `${where}.mediaType`, expected: MEDIA_TYPE_OCI_MANIFEST });
    const rec = v as Record<string, unknown>;
    if (rec.artifactType !== undefined && typeof rec.artifactType !== 'string') throw invalid(digest, `${where}.artifactType is not a string`, { path: `${where}.artifactType` });
    const platform = readPlatform(rec.platform, where, digest);
    const key = platformKey(platform);
    if (seen.has(key)) throw invalid(digest, `${where}: platform ${key} is listed twice`, { path: where });
    seen.add(key);
    return { ...d, platform, ...(typeof rec.artifactType === 'string' ? { artifactType: rec.artifactType } : {}) };
  });
  return { artifactType, manifests };
}

/**
 * The manifest for `node`'s platform: same os and architecture, and the same variant (arm64/v8
 * and amd64/v1 count as no variant). A node that knows no variant takes the one entry for its
 * os and architecture, if there is exactly one. Otherwise PLATFORM_MISSING, naming the platform:
 * permanent for this node (SecurityProfileInvalid), but not a verdict on the index, which other
 * nodes may use.
 */
export function selectPlatform(manifests: readonly PlatformDescriptor[], node: Platform, digest: Digest): PlatformDescriptor {
  const want = normalVariant(node);
  const candidates = manifests.filter((d) => d.platform.os === node.os && d.platform.architecture === node.architecture);
  const exact = candidates.find((d) => normalVariant(d.platform) === want);
  if (exact) return exact;
  if (want === undefined && candidates.length === 1) return candidates[0]!;
  const name = formatPlatform(node);
  const offered = manifests.map((d) => formatPlatform(d.platform)).join(', ');
  throw new SpokeError('SecurityProfileInvalid', `${digest}: the index has no profile for this node's platform ${name} (it offers ${offered})`, { digest, expected: name, actual: offered }, { reason: 'PLATFORM_MISSING' });
}
