// Pushes hand-made artifacts (good and deliberately broken) to a real registry over plain HTTP,
// with the project's registry client, so tests can see how the pipeline judges them.

import { createHash } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CONFIG_MEDIA_TYPE, MEDIA_TYPE_OCI_MANIFEST } from '../../src/core/constants.js';
import { sha256Digest } from '../../src/core/digest.js';
import { decodeSeccomp, intersect, type SeccompProfile } from '../../src/profiles/seccomp/index.js';
import { UndiciRegistryClient } from '../../src/registry/client.js';
import type { CredentialSource } from '../../src/registry/types.js';

export interface LayerSpec {
  mediaType?: string;
  bytes: Buffer;
  /** Declared size (default: the real size). */
  size?: number;
  urls?: string[];
}

export interface RawArtifactSpec {
  configMediaType?: string;
  configBytes?: Buffer;
  artifactType?: string | null; // null: omit
  layers: LayerSpec[];
  manifestMediaType?: string;
  tag?: string;
}

export const ALLOW_ALL_SECCOMP = Buffer.from(JSON.stringify({ defaultAction: 'SCMP_ACT_ALLOW', architectures: ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32'] }));

export function denySyscalls(names: string[]): Buffer {
  return Buffer.from(
    JSON.stringify({
      defaultAction: 'SCMP_ACT_ALLOW',
      architectures: ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32'],
      syscalls: [{ names, action: 'SCMP_ACT_ERRNO' }],
    }),
  );
}

/**
 * A look-alike of the effective profile `baseline` ∩ `layer` (no base) where the shim keeps it
 * (<seccompRoot>/spoke/<sha256>.json): same length, every call allowed, what a size check alone
 * would take for the profile. Returns its path and the sha256 of the real effective profile.
 */
export function plantLookalikeEffective(seccompRoot: string, baseline: SeccompProfile, layer: Buffer): { path: string; sha: string } {
  const expected = intersect(baseline, undefined, decodeSeccomp(layer)).bytes;
  const sha = createHash('sha256').update(expected).digest('hex');
  mkdirSync(join(seccompRoot, 'spoke'), { recursive: true });
  const path = join(seccompRoot, 'spoke', `${sha}.json`);
  const planted = Buffer.alloc(expected.length, ' ');
  Buffer.from('{"defaultAction":"SCMP_ACT_ALLOW"}').copy(planted);
  writeFileSync(path, planted);
  return { path, sha };
}

/** `credentials`: for a registry that wants them (htpasswd). */
export async function pushRawArtifact(
  host: string,
  repository: string,
  spec: RawArtifactSpec,
  credentials?: CredentialSource,
  /** A TLS registry's CA (PEM file): pushed over HTTPS trusting it, else over plain HTTP. */
  caFile?: string,
): Promise<{ reference: string; digest: string; manifest: Buffer }> {
  const client = new UndiciRegistryClient({ ...(caFile ? { caFile } : { plainHttp: true }), ...(credentials ? { credentials } : {}) });
  try {
    const repo = { registry: host, repository };
    const configBytes = spec.configBytes ?? Buffer.from('{}');
    await client.putBlob(repo, configBytes);
    const layers = [];
    for (const l of spec.layers) {
      await client.putBlob(repo, l.bytes);
      layers.push({
        mediaType: l.mediaType ?? 'application/json',
        digest: sha256Digest(l.bytes),
        size: l.size ?? l.bytes.byteLength,
        ...(l.urls ? { urls: l.urls } : {}),
      });
    }
    const configMediaType = spec.configMediaType ?? CONFIG_MEDIA_TYPE.seccomp;
    const manifestObj: Record<string, unknown> = {
      schemaVersion: 2,
      mediaType: spec.manifestMediaType ?? MEDIA_TYPE_OCI_MANIFEST,
      ...(spec.artifactType === null ? {} : { artifactType: spec.artifactType ?? configMediaType }),
      config: { mediaType: configMediaType, digest: sha256Digest(configBytes), size: configBytes.byteLength },
      layers,
    };
    const manifest = Buffer.from(JSON.stringify(manifestObj));
    const { digest } = await client.putManifest(repo, spec.tag ?? sha256Digest(manifest), manifest, MEDIA_TYPE_OCI_MANIFEST);
    return { reference: `${host}/${repository}@${digest}`, digest, manifest };
  } finally {
    await client.close();
  }
}
