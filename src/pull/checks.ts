// Content, kind and size checks of the pull pipeline (docs/architecture.md). Kind and size depend
// on the request and the policy; only what the content alone decides becomes a verdict on a digest.

import { formatPlatform, type ArtifactManifest, type Platform } from '../core/artifact.js';
import type { ProfileKind } from '../core/constants.js';
import type { Digest } from '../core/digest.js';
import { SpokeError, asSpokeError } from '../core/errors.js';
import { isNamespaceName } from '../core/namespace.js';
import type { ProvenanceRecord } from '../store/record-format.js';
import type { ProfileStore } from '../store/store.js';

/**
 * Runs a content check on bytes whose digest matched, judging the content alone (strict JSON,
 * one layer, media types, archives, the profile under its own declared kind). Such failures are
 * permanent for the digest (the content can never change): recorded, and not fetched again.
 * Anything else the check throws still refuses, but is no verdict on the content (a stack
 * overflow depends on the process, a TypeError on spoke's own code), and is Internal: the KEP
 * has the kubelet retry unclassified failures rather than reject the pod.
 */
export async function permanent<T>(store: ProfileStore, digest: Digest, check: () => T): Promise<T> {
  try {
    return check();
  } catch (e) {
    if (e instanceof SpokeError && e.code === 'SecurityProfileInvalid') await store.recordInvalid(digest, e.message);
    throw asSpokeError(e, 'Internal');
  }
}

/**
 * Refuses a namespace the API server would not admit (InvalidArgument): it came from no pod, and
 * the pipeline keeps namespaces as keys (the namespaces a reference was pulled for, the blob
 * budget's owners).
 */
export function checkNamespace(namespace: string | undefined): void {
  if (namespace === undefined || isNamespaceName(namespace)) return;
  throw new SpokeError('InvalidArgument', `namespace ${JSON.stringify(namespace.slice(0, 64))}${namespace.length > 64 ? '…' : ''} is not a Kubernetes namespace name`, {}, { reason: 'OPTION_INVALID' });
}

export function kindMismatch(canonical: string, expected: ProfileKind, actual: ProfileKind): SpokeError {
  return new SpokeError('SecurityProfileInvalid', `${canonical}: the artifact is a ${actual} profile, not ${expected}`, { reference: canonical, expected, actual }, { reason: 'KIND_MISMATCH' });
}

export function checkSizeLimit(canonical: string, size: number, limit: number, what = 'profile'): void {
  if (size > limit) {
    throw new SpokeError('SecurityProfileInvalid', `${canonical}: ${what} is ${size} bytes, over the node policy's limit of ${limit} (limits.maxArtifactBytes)`, { reference: canonical, limit, actual: size }, { reason: 'SIZE_LIMIT' });
  }
}

export function checkDescriptorSizes(canonical: string, artifact: ArtifactManifest, limit: number): void {
  checkSizeLimit(canonical, artifact.config.size, limit, 'config');
  checkSizeLimit(canonical, artifact.layer.size, limit, 'layer');
}

/**
 * What a stored artifact must match for this request and this node, whatever its content: checked
 * on every use, pull or create, cached or not (KEP: size and type are re-validated each time).
 * A record holds one platform's profile of an index: a store shared with a node of another
 * platform (docs/multi-arch.md) must never hand this node that one. `configSize`: the config
 * descriptor's size where the caller has just read it from the record's own manifest bytes (a
 * fetch of that digest), else read from the stored manifest.
 */
export function checkStored(canonical: string, record: ProvenanceRecord, kind: ProfileKind, limit: number, platform: Platform, configSize?: number): void {
  if (record.platform && (record.platform.os !== platform.os || record.platform.architecture !== platform.architecture)) {
    throw new SpokeError('FailedPrecondition', `${canonical}: the store holds its profile for ${formatPlatform(record.platform)}, not for this node's ${formatPlatform(platform)}; a store serves the nodes of one platform`, { reference: canonical, digest: record.digest }, { reason: 'STORE_PLATFORM' });
  }
  if (record.kind !== kind) throw kindMismatch(canonical, kind, record.kind);
  checkSizeLimit(canonical, record.size, limit);
  checkSizeLimit(canonical, configSize ?? storedConfigSize(record), limit, 'config');
}

/**
 * The config descriptor's declared size in a stored artifact manifest (the platform's, for an
 * index), which a fetch checks against the limit too (checkDescriptorSizes): spoke never fetches
 * the config, so the stored manifest is the one place that says it.
 */
function storedConfigSize(record: ProvenanceRecord): number {
  // The store hands out one object per record until the record changes: a warm pull decodes
  // the manifest once.
  const known = configSizes.get(record);
  if (known !== undefined) return known;
  let size: unknown;
  try {
    const manifest = JSON.parse(Buffer.from(record.platform?.manifest ?? record.manifest, 'base64').toString('utf8')) as { config?: { size?: unknown } };
    size = manifest.config?.size;
  } catch {
    /* reported below */
  }
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) {
    throw new SpokeError('Internal', `store record ${record.digest}: its manifest has no config size`, { digest: record.digest }, { reason: 'STATE_CORRUPT' });
  }
  configSizes.set(record, size);
  return size;
}
const configSizes = new WeakMap<ProvenanceRecord, number>();
