// Multi-architecture indexes in the pull pipeline (docs/multi-arch.md): this node's platform and
// the manifest an index lists for it.

import { checkProfileIndex, formatPlatform, selectPlatform, type Platform, type PlatformDescriptor } from '../core/artifact.js';
import { kindOfConfigMediaType, ociArchitecture, type ProfileKind } from '../core/constants.js';
import type { Digest } from '../core/digest.js';
import { SpokeError } from '../core/errors.js';
import { MAX_MANIFEST_BYTES } from '../core/limits.js';
import type { ProfileStore } from '../store/store.js';
import { kindMismatch, permanent } from './checks.js';

/** This node's OCI platform: `linux/amd64`, `linux/arm64`, ... (from the running Node.js). */
export function nodePlatform(): Platform {
  return { os: process.platform, architecture: ociArchitecture(process.arch) };
}

/**
 * The descriptor of `platform` in a multi-architecture index (docs/multi-arch.md).
 * The index's own faults are verdicts on its digest; a missing platform is not (other nodes
 * may use the index), nor is a kind other than the one asked for. A platform manifest already
 * judged invalid is refused without fetching it.
 */
export async function selectFromIndex(store: ProfileStore, platform: Platform, digest: Digest, canonical: string, kind: ProfileKind, indexBytes: Buffer): Promise<PlatformDescriptor> {
  const parsed = await permanent(store, digest, () => checkProfileIndex(indexBytes, digest, MAX_MANIFEST_BYTES));
  await checkDeclaredType(store, digest, canonical, kind, parsed.artifactType, 'index artifactType');
  const chosen = selectPlatform(parsed.manifests, platform, digest);
  await checkDeclaredType(store, digest, canonical, kind, chosen.artifactType, `artifactType of ${formatPlatform(chosen.platform)}`);
  const bad = await store.getInvalid(chosen.digest);
  if (bad) throw new SpokeError('SecurityProfileInvalid', `${canonical}: ${formatPlatform(chosen.platform)} manifest: ${bad.reason} (cached verdict)`, { reference: canonical, digest: chosen.digest }, { reason: 'KNOWN_INVALID' });
  return chosen;
}

/**
 * An artifactType an index declares, when set: another profile kind is a mismatch with this
 * request (not a content fault); a type that names no profile kind is one.
 */
async function checkDeclaredType(store: ProfileStore, digest: Digest, canonical: string, kind: ProfileKind, declared: string | undefined, what: string): Promise<void> {
  if (declared === undefined) return;
  const k = await permanent(store, digest, () => {
    const found = kindOfConfigMediaType(declared);
    if (found === undefined) throw new SpokeError('SecurityProfileInvalid', `${digest}: ${what} is not a profile artifact type`, { digest }, { reason: 'KIND_MISMATCH' });
    return found;
  });
  if (k !== kind) throw kindMismatch(canonical, kind, k);
}
