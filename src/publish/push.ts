// Push a packed profile: blobs first (skipped when present), then the manifest under the tag
// (or by digest). Returns the digest-pinned reference, which `spoke push` prints last.

import { MEDIA_TYPE_OCI_MANIFEST, type ProfileKind } from '../core/constants.js';
import { SpokeError } from '../core/errors.js';
import type { Digest } from '../core/digest.js';
import { formatReference } from '../core/reference.js';
import type { Credential, RegistryClient, RepoLocator } from '../registry/types.js';
import { validateArtifactBytes } from '../profiles/index.js';
import { decodeSeccompWithHint } from '../profiles/seccomp/convert.js';
import { packProfile, type PackedArtifact } from './pack.js';

export interface PushResult {
  reference: string;
  digest: Digest;
  size: number;
  packed: PackedArtifact;
}

export async function pushProfile(
  registry: RegistryClient,
  repo: RepoLocator,
  tag: string | undefined,
  profileBytes: Uint8Array,
  kind: ProfileKind,
  opts: { credential?: Credential; onProgress?: (step: string) => void } = {},
): Promise<PushResult> {
  // The publisher refuses what every node would refuse, before anything leaves the machine.
  if (kind === 'seccomp') decodeSeccompWithHint(profileBytes);
  validateArtifactBytes(kind, profileBytes);
  const packed = packProfile(profileBytes, kind);
  const put = { credential: opts.credential };
  opts.onProgress?.('uploading config');
  await registry.putBlob(repo, packed.config, put);
  opts.onProgress?.('uploading profile');
  await registry.putBlob(repo, packed.layer, put);
  opts.onProgress?.('uploading manifest');
  const { digest } = await registry.putManifest(repo, tag ?? packed.manifestDigest, packed.manifest, MEDIA_TYPE_OCI_MANIFEST, put);
  if (digest !== packed.manifestDigest) {
    throw new SpokeError('RegistryUnavailable', `registry stored manifest as ${digest}, expected ${packed.manifestDigest}`, { expected: packed.manifestDigest, actual: digest });
  }
  return { reference: formatReference({ ...repo, digest }), digest, size: packed.layer.byteLength, packed };
}
