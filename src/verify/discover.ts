// Signature discovery (docs/signatures.md): the OCI 1.1 referrers API, its tag-schema fallback (an image
// index at tag `sha256-<hex>`), and cosign's `sha256-<hex>.sig` tag. A 404 means "nothing on
// this channel"; 5xx and network errors come back as RegistryUnavailable and are never read
// as "unsigned". Everything fetched is capped (MAX_INDEX_BYTES, MAX_SIG_MANIFEST_BYTES) and
// parsed strictly.

import { MEDIA_TYPE_OCI_INDEX, MEDIA_TYPE_OCI_MANIFEST, MEDIA_TYPE_SIGSTORE_BUNDLE_V03 } from '../core/constants.js';
import { digestHex, isDigest, type Digest } from '../core/digest.js';
import { SpokeError, isSpokeError, registryUnavailable } from '../core/errors.js';
import { decodeStrictJson } from '../core/json.js';
import { MAX_INDEX_BYTES, MAX_SIG_MANIFEST_BYTES } from '../core/limits.js';
import type { Credential, RegistryClient, RepoLocator } from '../registry/types.js';

export const MEDIA_TYPE_DOCKER_MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json';
/** At most this many referrers / .sig layers are looked at; more is a sign of abuse, not of signing. */
export const MAX_SIGNATURE_CANDIDATES = 64;
/**
 * Entries of one list noted one by one when skipped; the rest are counted in one note. A refusal
 * quotes the first three notes, and a 4 MiB index of malformed entries once made two million of
 * them (~550 MB held until the verdict).
 */
const NOTES_PER_LIST = 4;

/** Notes on the skipped entries of one list: the first NOTES_PER_LIST, then how many more. */
class SkippedEntries {
  private count = 0;

  constructor(
    private readonly notes: string[],
    private readonly what: string,
  ) {}

  skip(text: string): void {
    if (this.count++ < NOTES_PER_LIST) this.notes.push(text);
  }

  /** After the list: the count of those not noted. */
  close(): void {
    if (this.count > NOTES_PER_LIST) this.notes.push(`${this.what}: ${this.count - NOTES_PER_LIST} more entries skipped`);
  }
}

export interface DiscoverOptions {
  credential?: Credential;
  signal?: AbortSignal;
  /** Read signatures through the policy's mirrors (pulls); signatures are checked cryptographically either way. */
  useMirrors?: boolean;
}

/** A referrer manifest listed for the digest, as the index described it (unauthenticated hints). */
export interface ReferrerCandidate {
  digest: Digest;
  size: number;
  mediaType: string;
  artifactType: string | undefined;
  annotations: Record<string, string>;
}

export interface SigLayer {
  mediaType: string;
  digest: Digest;
  size: number;
  annotations: Record<string, string>;
}

export interface CosignSignatures {
  tag: string;
  /** Digest of the `.sig` manifest as served. */
  digest: Digest;
  layers: SigLayer[];
}

export interface DiscoveredSignatures {
  /** Referrers whose artifactType is the sigstore bundle v0.3 type, in listed order. */
  bundles: ReferrerCandidate[];
  /** How referrers were found: the API, the tag-schema index, or nowhere. */
  referrersSource: 'referrers-api' | 'tag-schema' | 'none';
  cosign: CosignSignatures | undefined;
  /** Entries skipped and why (malformed entries, other artifact types, caps). */
  notes: string[];
}

/** `sha256:<hex>` → `sha256-<hex>`, the tag-schema tag (and `.sig` prefix). */
export function tagSchemaTag(digest: Digest): string {
  return `sha256-${digestHex(digest)}`;
}

export function cosignSigTag(digest: Digest): string {
  return `${tagSchemaTag(digest)}.sig`;
}

/** Anything but a SpokeError (a TypeError from fetch, a socket reset) is a transient registry failure. */
export function asRegistryError(e: unknown, what: string): SpokeError {
  if (isSpokeError(e)) return e;
  return registryUnavailable(`${what}: ${(e as Error)?.message ?? String(e)}`, {}, e);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function stringMap(v: unknown): Record<string, string> | undefined {
  if (v === undefined) return {};
  if (!isObject(v)) return undefined;
  const out: Record<string, string> = {};
  for (const [k, val] of Object.entries(v)) {
    if (typeof val !== 'string') return undefined;
    out[k] = val;
  }
  return out;
}

/** Parses an image index listing referrers; entries that are not well-formed descriptors are noted and skipped. */
export function parseReferrersIndex(bytes: Uint8Array, what: string, notes: string[]): ReferrerCandidate[] {
  const v = decodeStrictJson(bytes, what);
  if (!isObject(v) || v.schemaVersion !== 2 || !Array.isArray(v.manifests)) {
    throw new SpokeError('SignatureValidationFailed', `${what} is not an OCI image index`, {}, { reason: 'MANIFEST_INVALID' });
  }
  if (v.mediaType !== undefined && v.mediaType !== MEDIA_TYPE_OCI_INDEX) {
    throw new SpokeError('SignatureValidationFailed', `${what} has media type ${JSON.stringify(String(v.mediaType).slice(0, 80))}, not an OCI image index`, {}, { reason: 'MANIFEST_INVALID' });
  }
  const out: ReferrerCandidate[] = [];
  const skipped = new SkippedEntries(notes, what);
  for (const [i, m] of v.manifests.entries()) {
    if (!isObject(m) || typeof m.digest !== 'string' || !isDigest(m.digest) || typeof m.mediaType !== 'string' || typeof m.size !== 'number' || !Number.isSafeInteger(m.size) || m.size < 0) {
      skipped.skip(`${what}: manifests[${i}] is not a sha256 descriptor; skipped`);
      continue;
    }
    const annotations = stringMap(m.annotations);
    if (annotations === undefined || (m.artifactType !== undefined && typeof m.artifactType !== 'string')) {
      skipped.skip(`${what}: manifests[${i}] has malformed annotations or artifactType; skipped`);
      continue;
    }
    out.push({ digest: m.digest, size: m.size, mediaType: m.mediaType, artifactType: m.artifactType as string | undefined, annotations });
  }
  skipped.close();
  return out;
}

/** Parses a cosign `.sig` manifest into its layers (each one signature). */
export function parseSigManifest(bytes: Uint8Array, what: string, notes: string[]): SigLayer[] {
  const v = decodeStrictJson(bytes, what);
  if (!isObject(v) || v.schemaVersion !== 2 || !Array.isArray(v.layers)) {
    throw new SpokeError('SignatureValidationFailed', `${what} is not an image manifest with layers`, {}, { reason: 'MANIFEST_INVALID' });
  }
  if (v.mediaType !== undefined && v.mediaType !== MEDIA_TYPE_OCI_MANIFEST && v.mediaType !== MEDIA_TYPE_DOCKER_MANIFEST) {
    throw new SpokeError('SignatureValidationFailed', `${what} has media type ${JSON.stringify(String(v.mediaType).slice(0, 80))}`, {}, { reason: 'MANIFEST_INVALID' });
  }
  const out: SigLayer[] = [];
  const skipped = new SkippedEntries(notes, what);
  for (const [i, l] of v.layers.entries()) {
    if (!isObject(l) || typeof l.digest !== 'string' || !isDigest(l.digest) || typeof l.mediaType !== 'string' || typeof l.size !== 'number' || !Number.isSafeInteger(l.size) || l.size < 0) {
      skipped.skip(`${what}: layers[${i}] is not a sha256 descriptor; skipped`);
      continue;
    }
    const annotations = stringMap(l.annotations);
    if (annotations === undefined) {
      skipped.skip(`${what}: layers[${i}] has malformed annotations; skipped`);
      continue;
    }
    out.push({ mediaType: l.mediaType, digest: l.digest, size: l.size, annotations });
  }
  skipped.close();
  return out;
}

/**
 * A channel that answers with something unusable (over the cap, not JSON, not an index) is
 * noted and treated as empty: a valid signature elsewhere still counts, and with none the
 * verdict is a refusal anyway. Transport failures are never swallowed.
 */
function unusable(e: unknown, what: string, notes: string[]): void {
  if (isSpokeError(e) && (e.code === 'SecurityProfileInvalid' || e.code === 'SignatureValidationFailed')) {
    notes.push(`${what}: ${e.message}`);
    return;
  }
  throw asRegistryError(e, what);
}

async function discoverReferrers(
  registry: RegistryClient,
  repo: RepoLocator,
  digest: Digest,
  opts: DiscoverOptions,
  notes: string[],
): Promise<{ list: ReferrerCandidate[]; source: DiscoveredSignatures['referrersSource'] }> {
  const fetchOpts = { maxBytes: MAX_INDEX_BYTES, credential: opts.credential, signal: opts.signal, useMirrors: opts.useMirrors };
  const apiWhat = `referrers of ${digest}`;
  const tag = tagSchemaTag(digest);
  const tagWhat = `referrers tag ${tag}`;
  // The API and its tag-schema fallback are asked at once: a registry without the API (404)
  // then costs no extra round trip. Settled results, so neither can reject unobserved.
  const settle = <T>(p: Promise<T>) => p.then((value) => ({ ok: true as const, value }), (error: unknown) => ({ ok: false as const, error }));
  const apiP = settle(registry.getReferrers(repo, digest, { ...fetchOpts, artifactType: MEDIA_TYPE_SIGSTORE_BUNDLE_V03 }));
  const tagP = settle(registry.getManifestIfExists(repo, tag, [MEDIA_TYPE_OCI_INDEX], fetchOpts));
  // A malformed index is noted and skipped (unusable), like a failed request.
  const parsed = (bytes: Buffer, what: string, source: DiscoveredSignatures['referrersSource']) => {
    try {
      return { list: parseReferrersIndex(bytes, what, notes), source };
    } catch (e) {
      unusable(e, what, notes);
      return { list: [], source };
    }
  };
  const api = await apiP;
  if (!api.ok) {
    unusable(api.error, apiWhat, notes);
    return { list: [], source: 'referrers-api' };
  }
  if (api.value !== undefined) return parsed(api.value, apiWhat, 'referrers-api');
  const fallback = await tagP;
  if (!fallback.ok) {
    unusable(fallback.error, tagWhat, notes);
    return { list: [], source: 'tag-schema' };
  }
  if (fallback.value === undefined) return { list: [], source: 'none' };
  return parsed(fallback.value.bytes, tagWhat, 'tag-schema');
}

async function discoverCosign(registry: RegistryClient, repo: RepoLocator, digest: Digest, opts: DiscoverOptions, notes: string[]): Promise<CosignSignatures | undefined> {
  const tag = cosignSigTag(digest);
  const what = `cosign signature tag ${tag}`;
  try {
    const got = await registry.getManifestIfExists(repo, tag, [MEDIA_TYPE_OCI_MANIFEST, MEDIA_TYPE_DOCKER_MANIFEST], {
      maxBytes: MAX_SIG_MANIFEST_BYTES,
      credential: opts.credential,
      signal: opts.signal,
      useMirrors: opts.useMirrors,
    });
    if (got === undefined) return undefined;
    return { tag, digest: got.digest, layers: parseSigManifest(got.bytes, what, notes) };
  } catch (e) {
    unusable(e, what, notes);
    return undefined;
  }
}

/** The two discovery channels, each settling on its own (see discoverChannels). */
export interface DiscoveryChannels {
  /** Sigstore bundle referrers (API, then the tag-schema index), looked up at once. */
  bundles: Promise<{ bundles: ReferrerCandidate[]; referrersSource: DiscoveredSignatures['referrersSource'] }>;
  /** The cosign `.sig` manifest, looked up on the first call (later calls share it). */
  cosign: () => Promise<CosignSignatures | undefined>;
  /** Entries skipped and why, from both channels (complete once both settled). */
  notes: string[];
}

/**
 * Starts the bundle channel and hands back the cosign channel to start when wanted: a verifier
 * tries the bundles first and asks for the legacy `.sig` tag only if none verified, so a pull
 * signed the current way makes no request for the old way (a registry counts and rate-limits
 * every manifest request; docs/signatures.md). Registry failures reject the channel they
 * happened on; a malformed or oversized index or `.sig` manifest is noted and ignored.
 */
export function discoverChannels(registry: RegistryClient, repo: RepoLocator, digest: Digest, opts: DiscoverOptions = {}): DiscoveryChannels {
  const notes: string[] = [];
  const bundles = discoverReferrers(registry, repo, digest, opts, notes).then((ref) => ({ bundles: bundleCandidates(ref.list, notes), referrersSource: ref.source }));
  let cosign: Promise<CosignSignatures | undefined> | undefined;
  const lookUpCosign = () =>
    (cosign ??= discoverCosign(registry, repo, digest, opts, notes).then((c) => {
      if (c && c.layers.length > MAX_SIGNATURE_CANDIDATES) {
        notes.push(`more than ${MAX_SIGNATURE_CANDIDATES} cosign signature layers; the rest ignored`);
        c.layers = c.layers.slice(0, MAX_SIGNATURE_CANDIDATES);
      }
      return c;
    }));
  return { bundles, cosign: lookUpCosign, notes };
}

/** The referrers that are v0.3 sigstore bundles in OCI manifests, deduplicated and capped. */
function bundleCandidates(list: readonly ReferrerCandidate[], notes: string[]): ReferrerCandidate[] {
  const bundles: ReferrerCandidate[] = [];
  const skipped = new SkippedEntries(notes, 'referrers');
  for (const r of list) {
    if (r.artifactType !== MEDIA_TYPE_SIGSTORE_BUNDLE_V03) {
      // Registries may ignore the artifactType filter; other types (v0.2 bundles, SBOMs) are not ours.
      skipped.skip(`referrer ${r.digest} has artifactType ${JSON.stringify((r.artifactType ?? '(none)').slice(0, 80))}; not a v0.3 sigstore bundle`);
      continue;
    }
    if (r.mediaType !== MEDIA_TYPE_OCI_MANIFEST) {
      skipped.skip(`referrer ${r.digest} is a ${JSON.stringify(r.mediaType.slice(0, 80))}, not an OCI image manifest`);
      continue;
    }
    if (bundles.length >= MAX_SIGNATURE_CANDIDATES) {
      notes.push(`more than ${MAX_SIGNATURE_CANDIDATES} bundle referrers; the rest ignored`);
      break;
    }
    if (!bundles.some((b) => b.digest === r.digest)) bundles.push(r);
  }
  skipped.close();
  return bundles;
}

/**
 * Lists the signatures attached to `digest` in `repo`: sigstore bundle referrers (API, then the
 * tag-schema index) and the cosign `.sig` manifest. Registry failures throw (RegistryUnavailable,
 * Unauthenticated, …); a malformed or oversized index or `.sig` manifest is noted and ignored.
 */
export async function discoverSignatures(registry: RegistryClient, repo: RepoLocator, digest: Digest, opts: DiscoverOptions = {}): Promise<DiscoveredSignatures> {
  const channels = discoverChannels(registry, repo, digest, opts);
  const [ref, cosign] = await Promise.all([channels.bundles, channels.cosign()]);
  return { bundles: ref.bundles, referrersSource: ref.referrersSource, cosign, notes: channels.notes };
}
