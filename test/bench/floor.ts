// The pull floors: a lean client on a warm keep-alive undici pool doing only the round trips a
// pull cannot avoid, then the durability floor (one fsync of the blob, one of its directory).

import { closeSync, fsyncSync, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import type { Pool } from 'undici';

async function get(pool: Pool, path: string, accept?: string): Promise<Buffer> {
  const r = await pool.request({ path, method: 'GET', ...(accept ? { headers: { accept } } : {}) });
  const b = Buffer.from(await r.body.arrayBuffer());
  if (r.statusCode !== 200) throw new Error(`floor GET ${path}: ${r.statusCode}`);
  return b;
}

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';

function durable(dir: string, name: string, data: Buffer): void {
  const fd = openSync(join(dir, name), 'w');
  try {
    writeSync(fd, data);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  const dfd = openSync(dir, 'r');
  try {
    fsyncSync(dfd);
  } finally {
    closeSync(dfd);
  }
}

/** Unsigned floor: GET manifest, GET blob, write + fsync file + fsync directory. */
export async function floorPull(pool: Pool, repo: string, a: { digest: string; layerDigest: string }, dir: string, name: string): Promise<void> {
  await get(pool, `/v2/${repo}/manifests/${a.digest}`, OCI_MANIFEST);
  const data = await get(pool, `/v2/${repo}/blobs/${a.layerDigest}`);
  durable(dir, name, data);
}

/**
 * A floor given only a reference (`host/repo@sha256:…`), as a CRI server gets it: the layer
 * digest is read from the manifest, as any client must; `keyed` adds the signature chain of
 * floorSignedPull beside it.
 */
export async function floorPullRef(pool: Pool, ref: string, dir: string, name: string, keyed: boolean): Promise<void> {
  const at = ref.indexOf('@');
  const repo = ref.slice(ref.indexOf('/') + 1, at);
  const digest = ref.slice(at + 1);
  const artifact = (async () => {
    const manifest = JSON.parse((await get(pool, `/v2/${repo}/manifests/${digest}`, OCI_MANIFEST)).toString()) as { layers: { digest: string }[] };
    return get(pool, `/v2/${repo}/blobs/${manifest.layers[0]!.digest}`);
  })();
  const [data] = await Promise.all([artifact, keyed ? signatureChain(pool, repo, digest) : undefined]);
  durable(dir, name, data);
}

/** Tag-schema index → the bundle's manifest → the bundle blob (see floorSignedPull). */
async function signatureChain(pool: Pool, repo: string, digest: string): Promise<Buffer> {
  const index = JSON.parse((await get(pool, `/v2/${repo}/manifests/sha256-${digest.slice(7)}`, OCI_INDEX)).toString()) as { manifests: { digest: string }[] };
  const manifest = JSON.parse((await get(pool, `/v2/${repo}/manifests/${index.manifests[0]!.digest}`, OCI_MANIFEST)).toString()) as { layers: { digest: string }[] };
  return get(pool, `/v2/${repo}/blobs/${manifest.layers[0]!.digest}`);
}

/**
 * Keyed-signature floor on a registry without the referrers API. The minimum chain is three
 * serial round trips: the tag-schema index `sha256-<hex>` (asked at once, the digest is in the
 * reference) → the bundle's manifest → the bundle blob; the artifact's manifest → blob runs
 * beside it. Then the same writes and fsyncs.
 */
export async function floorSignedPull(pool: Pool, repo: string, a: { digest: string; layerDigest: string }, dir: string, name: string): Promise<void> {
  const artifact = (async () => {
    await get(pool, `/v2/${repo}/manifests/${a.digest}`, OCI_MANIFEST);
    return get(pool, `/v2/${repo}/blobs/${a.layerDigest}`);
  })();
  const [data] = await Promise.all([artifact, signatureChain(pool, repo, a.digest)]);
  durable(dir, name, data);
}
