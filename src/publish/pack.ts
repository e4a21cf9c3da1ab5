// Packages a profile file as the KEP-6061 artifact (KEP §5): config `{}` with the kind's config
// media type, `artifactType` the same, one `application/json` layer holding the file's exact
// bytes titled profile.json. No timestamps: the same file always yields the same digest.

import type { Platform } from '../core/artifact.js';
import { ANNOTATION_TITLE, CONFIG_MEDIA_TYPE, MEDIA_TYPE_OCI_INDEX, MEDIA_TYPE_OCI_MANIFEST, MEDIA_TYPE_PROFILE_LAYER, type ProfileKind } from '../core/constants.js';
import { sha256Digest, type Digest } from '../core/digest.js';

export interface PackedArtifact {
  config: Buffer;
  configDigest: Digest;
  layer: Buffer;
  layerDigest: Digest;
  manifest: Buffer;
  manifestDigest: Digest;
}

export function packProfile(profileBytes: Uint8Array, kind: ProfileKind): PackedArtifact {
  const config = Buffer.from('{}');
  const layer = Buffer.from(profileBytes);
  const configDigest = sha256Digest(config);
  const layerDigest = sha256Digest(layer);
  const manifestObject = {
    schemaVersion: 2,
    mediaType: MEDIA_TYPE_OCI_MANIFEST,
    artifactType: CONFIG_MEDIA_TYPE[kind],
    config: { mediaType: CONFIG_MEDIA_TYPE[kind], digest: configDigest, size: config.byteLength },
    layers: [{ mediaType: MEDIA_TYPE_PROFILE_LAYER, digest: layerDigest, size: layer.byteLength, annotations: { [ANNOTATION_TITLE]: 'profile.json' } }],
  };
  const manifest = Buffer.from(JSON.stringify(manifestObject));
  return { config, configDigest, layer, layerDigest, manifest, manifestDigest: sha256Digest(manifest) };
}

/**
 * The OCI image index of a multi-architecture profile (docs/multi-arch.md): one descriptor per
 * platform, in the order given, each with its platform and the kind's artifactType, and the
 * index's own artifactType the same. Deterministic like packProfile.
 */
export function packIndex(entries: readonly { platform: Platform; manifest: Buffer }[], kind: ProfileKind): { bytes: Buffer; digest: Digest } {
  const index = {
    schemaVersion: 2,
    mediaType: MEDIA_TYPE_OCI_INDEX,
    artifactType: CONFIG_MEDIA_TYPE[kind],
    manifests: entries.map((e) => ({
      mediaType: MEDIA_TYPE_OCI_MANIFEST,
      artifactType: CONFIG_MEDIA_TYPE[kind],
      digest: sha256Digest(e.manifest),
      size: e.manifest.byteLength,
      platform: { os: e.platform.os, architecture: e.platform.architecture, ...(e.platform.variant !== undefined ? { variant: e.platform.variant } : {}) },
    })),
  };
  const bytes = Buffer.from(JSON.stringify(index));
  return { bytes, digest: sha256Digest(bytes) };
}
