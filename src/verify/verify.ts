// verifyArtifactSignature: discover, fetch (capped, digest-checked), verify offline, first
// acceptable signature wins. No network of its own beyond the RegistryClient it is handed,
// trust only from the signer specs. Every failure is a refusal: SignatureValidationFailed
// "<reference>: <why>", or the registry's own error (RegistryUnavailable, Unauthenticated) when
// a channel could not be read and nothing else verified — never "unsigned" for a 5xx.

import { MEDIA_TYPE_COSIGN_SIMPLESIGNING, MEDIA_TYPE_OCI_MANIFEST, MEDIA_TYPE_SIGSTORE_BUNDLE_V03 } from '../core/constants.js';
import { sha256Digest, type Digest } from '../core/digest.js';
import { SpokeError, isSpokeError, type ErrorReason } from '../core/errors.js';
import { decodeStrictJson } from '../core/json.js';
import { MAX_MANIFEST_BYTES, MAX_SIGNATURE_BYTES } from '../core/limits.js';
import { formatReference } from '../core/reference.js';
import { systemClock, type Clock } from '../core/runtime.js';
import type { Credential, RegistryClient, RepoLocator } from '../registry/types.js';
import { Rejection, verifyBundleBytes } from './bundle.js';
import { verifyCosignLayer } from './cosign.js';
import { asRegistryError, discoverChannels, type ReferrerCandidate, type SigLayer } from './discover.js';
import { prepareSigner, type PreparedSigner } from './trust.js';
import type { SignatureVerdict, SignerSpec } from './types.js';

export interface VerifyArtifactOptions {
  registry: RegistryClient;
  repo: RepoLocator;
  digest: Digest;
  /**
   * The artifact manifest bytes (fetched and digest-checked by the caller). May be a promise, so
   * signature discovery runs while the caller is still fetching the manifest.
   */
  manifestBytes: Uint8Array | Promise<Uint8Array>;
  /** The matching rule's signers: any one of them suffices. */
  signers: readonly SignerSpec[];
  credential?: Credential;
  signal?: AbortSignal;
  clock?: Clock;
  useMirrors?: boolean;
  /** For messages; defaults to registry/repository@digest. */
  reference?: string;
}

/** Codes that condemn one candidate only; anything else is a registry problem held until the end. */
const CANDIDATE_CODES = new Set(['SecurityProfileInvalid', 'NotFound', 'SignatureValidationFailed']);
/** Candidates whose reasons a refusal lists, at most. */
const MAX_LISTED_REJECTIONS = 32;

function short(d: string): string {
  return d.slice(0, 19);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Fetches a bundle referrer manifest and its bundle layer. */
async function loadBundle(o: VerifyArtifactOptions, r: ReferrerCandidate): Promise<Buffer> {
  const common = { credential: o.credential, signal: o.signal, useMirrors: o.useMirrors };
  if (r.size > MAX_MANIFEST_BYTES) throw new Rejection('SIZE_LIMIT', `referrer manifest declares ${r.size} bytes, over ${MAX_MANIFEST_BYTES}`);
  const got = await o.registry.getManifestIfExists(o.repo, r.digest, [MEDIA_TYPE_OCI_MANIFEST], { ...common, maxBytes: MAX_MANIFEST_BYTES });
  if (got === undefined) throw new Rejection('MANIFEST_INVALID', 'listed referrer manifest is missing');
  let m: unknown;
  try {
    m = decodeStrictJson(got.bytes, 'referrer manifest');
  } catch (e) {
    throw new Rejection('MANIFEST_INVALID', (e as Error).message, true);
  }
  if (!isObject(m) || m.mediaType !== MEDIA_TYPE_OCI_MANIFEST || !Array.isArray(m.layers)) throw new Rejection('MANIFEST_INVALID', 'referrer is not an OCI image manifest', true);
  if (m.artifactType !== MEDIA_TYPE_SIGSTORE_BUNDLE_V03) throw new Rejection('NOT_A_SIGNATURE', `referrer artifactType ${JSON.stringify(String(m.artifactType).slice(0, 80))} is not a v0.3 bundle`, true);
  // `subject` is not covered by any signature; a mismatch only means the referrer is not for us.
  if (!isObject(m.subject) || m.subject.digest !== o.digest) throw new Rejection('SUBJECT_MISMATCH', `referrer subject is not ${o.digest}`, true);
  const layers = m.layers.filter((l) => isObject(l) && l.mediaType === MEDIA_TYPE_SIGSTORE_BUNDLE_V03);
  if (layers.length !== 1) throw new Rejection('MANIFEST_INVALID', `referrer has ${layers.length} bundle layers, expected exactly one`, true);
  const l = layers[0] as Record<string, unknown>;
  if (typeof l.digest !== 'string' || !/^sha256:[0-9a-f]{64}$/.test(l.digest) || typeof l.size !== 'number' || !Number.isSafeInteger(l.size) || l.size < 0) {
    throw new Rejection('MANIFEST_INVALID', 'bundle layer descriptor is malformed', true);
  }
  if (l.size > MAX_SIGNATURE_BYTES) throw new Rejection('SIZE_LIMIT', `bundle layer declares ${l.size} bytes, over the ${MAX_SIGNATURE_BYTES}-byte limit`);
  const blob = await o.registry.getBlob(o.repo, l.digest as Digest, { ...common, maxBytes: MAX_SIGNATURE_BYTES, expectedSize: l.size });
  return blob.bytes;
}

async function loadCosignPayload(o: VerifyArtifactOptions, l: SigLayer): Promise<Buffer> {
  if (l.size > MAX_SIGNATURE_BYTES) throw new Rejection('SIZE_LIMIT', `payload declares ${l.size} bytes, over the ${MAX_SIGNATURE_BYTES}-byte limit`);
  const blob = await o.registry.getBlob(o.repo, l.digest, {
    credential: o.credential,
    signal: o.signal,
    useMirrors: o.useMirrors,
    maxBytes: MAX_SIGNATURE_BYTES,
    expectedSize: l.size,
  });
  return blob.bytes;
}

/** Runs a verification step: whatever it throws, of whatever type, is a refusal of that candidate. */
function verifying(run: () => SignatureVerdict): SignatureVerdict {
  try {
    return run();
  } catch (e) {
    if (e instanceof Rejection) throw e;
    throw new Rejection('SIGNATURE_INVALID', `verification error: ${e instanceof Error ? e.message : String(e)}`);
  }
}

/**
 * Verifies that `digest` carries a signature, in either accepted format, from one of `signers`.
 * Resolves which signer matched; throws SpokeError otherwise (see the file comment).
 */
export async function verifyArtifactSignature(o: VerifyArtifactOptions): Promise<SignatureVerdict> {
  const reference = o.reference ?? formatReference({ registry: o.repo.registry, repository: o.repo.repository, digest: o.digest });
  // `rejections`: why each candidate did not count, in the order tried (bounded like the message).
  const rejections: ErrorReason[] = [];
  const refuse = (reason: ErrorReason, why: string) =>
    new SpokeError('SignatureValidationFailed', `${reference}: ${why}`, { reference, digest: o.digest, rejections: rejections.slice(0, MAX_LISTED_REJECTIONS) }, { reason });
  if (o.signers.length === 0) throw refuse('SIGNER_UNAVAILABLE', 'the rule names no signers');
  // A signer whose trust material is unusable is skipped (and named if nothing else verifies).
  const prepared: PreparedSigner[] = [];
  const unusable: string[] = [];
  for (const s of o.signers) {
    try {
      prepared.push(prepareSigner(s));
    } catch (e) {
      unusable.push(isSpokeError(e) ? e.message : `signer ${s.name}: ${String(e)}`);
    }
  }
  if (prepared.length === 0) throw refuse('SIGNER_UNAVAILABLE', `no usable signer: ${unusable.join('; ')}`);
  const now = (o.clock ?? systemClock).now();
  // Discovery and the candidates' own requests need only the digest: they start before the
  // manifest bytes are in hand, which only the verification of a loaded candidate needs (on a
  // registry that answers the tag-schema index first, the bundle's requests would otherwise
  // wait for the manifest; docs/benchmarks.md). A failure of either that is never awaited (the
  // other failed first) is dropped here. The cosign tag is looked up only once no bundle
  // verified (discover.ts).
  const channels = discoverChannels(o.registry, o.repo, o.digest, { credential: o.credential, signal: o.signal, useMirrors: o.useMirrors });
  channels.bundles.catch(() => {});
  const manifest = Promise.resolve(o.manifestBytes).then((bytes) => {
    const copy = Buffer.from(bytes);
    if (sha256Digest(copy) !== o.digest) throw refuse('DIGEST_MISMATCH', 'manifest bytes do not hash to the digest being verified');
    return copy;
  });
  manifest.catch(() => {});

  const rejected: string[] = [];
  const ignored: string[] = [];
  let held: SpokeError | undefined;
  /** Runs one step of one candidate: what condemns only that candidate is noted, and undefined returned. */
  const attempt = async <T>(label: string, run: () => Promise<T>): Promise<T | undefined> => {
    try {
      return await run();
    } catch (e) {
      if (e instanceof Rejection) {
        (e.notSignature ? ignored : rejected).push(`${label}: ${e.message}`);
        rejections.push(e.reason);
      } else if (isSpokeError(e) && CANDIDATE_CODES.has(e.code)) {
        rejected.push(`${label}: ${e.message}`);
        rejections.push(e.reason);
      } else {
        o.signal?.throwIfAborted();
        held ??= asRegistryError(e, label);
      }
      return undefined;
    }
  };

  for (const r of (await channels.bundles).bundles) {
    const label = `bundle ${short(r.digest)}`;
    const bytes = await attempt(label, () => loadBundle(o, r));
    if (bytes === undefined) continue;
    // Awaited outside `attempt`: a manifest that fails (or is not the digest's) refuses the
    // whole verification, not one candidate.
    const manifestBytes = await manifest;
    const v = await attempt(label, async () => verifying(() => verifyBundleBytes(bytes, { digest: o.digest, manifestBytes, signers: prepared, now })));
    if (v) return v;
  }
  // No verdict, not even a refusal, without the manifest's bytes checked against the digest.
  await manifest;
  for (const l of (await channels.cosign())?.layers ?? []) {
    if (l.mediaType !== MEDIA_TYPE_COSIGN_SIMPLESIGNING) {
      ignored.push(`cosign layer ${short(l.digest)}: media type ${JSON.stringify(l.mediaType.slice(0, 80))} is not simple signing`);
      continue;
    }
    const v = await attempt(`cosign layer ${short(l.digest)}`, async () => {
      const payload = await loadCosignPayload(o, l);
      return verifying(() => verifyCosignLayer({ annotations: l.annotations, payload }, o.digest, prepared, now));
    });
    if (v) return v;
  }
  if (held) throw held;
  const names = prepared.map((s) => s.name).join(', ') + (unusable.length ? ` (skipped: ${unusable.join('; ')})` : '');
  if (rejected.length === 0) {
    const extra = [...ignored, ...channels.notes];
    const detail = extra.length === 0 ? 'no sigstore bundle referrer and no cosign signature for this digest' : `only non-signatures: ${extra.slice(0, 3).join('; ')}`;
    throw refuse('NOT_SIGNED', `not signed: no signature by ${names} found (${detail})`);
  }
  const shown = rejected.slice(0, 4).join('; ') + (rejected.length > 4 ? `; and ${rejected.length - 4} more` : '');
  throw refuse('SIGNATURE_INVALID', `no valid signature by ${names}: ${shown}`);
}
