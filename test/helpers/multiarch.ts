// Multi-architecture profile indexes made with plain HTTP calls, the way another publishing tool
// would, not with spoke's own packer (docs/multi-arch.md).

import type { Digest } from '../../src/core/digest.js';
import { fetchPutManifest, OCI_INDEX, OCI_MANIFEST, SECCOMP_CONFIG } from './signing.js';

export interface IndexEntry {
  /** The platform's artifact: its digest and exact manifest bytes. */
  artifact: { digest: string; manifest: Buffer };
  platform: Record<string, string>;
}

/** PUTs an OCI image index over `entries` at `tag`; `extra` overrides top-level members. */
export async function putIndex(url: string, host: string, repository: string, entries: IndexEntry[], extra: Record<string, unknown> = {}, tag = 'latest'): Promise<{ reference: string; digest: Digest; bytes: Buffer }> {
  const bytes = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_INDEX,
      artifactType: SECCOMP_CONFIG,
      manifests: entries.map((e) => ({ mediaType: OCI_MANIFEST, artifactType: SECCOMP_CONFIG, digest: e.artifact.digest, size: e.artifact.manifest.length, platform: e.platform })),
      ...extra,
    }),
  );
  const digest = (await fetchPutManifest(url, repository, tag, bytes, OCI_INDEX)) as Digest;
  return { reference: `${host}/${repository}@${digest}`, digest, bytes };
}
