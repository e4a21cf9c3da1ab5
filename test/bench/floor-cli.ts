// The CLI pull's floor on undici: a whole process that only makes the pull's two requests (GET
// manifest, GET blob) with undici, loaded as spoke loads it (its pool and request API, not its
// index), checks each body against its digest (as any pull must: OCI distribution spec, "Pulling
// manifests" and "Pulling blobs"), writes the blob with fsync of file and directory, and exits. The bench bundles it with
// bin/bundle-build.mjs and starts it with bin/start-bundle.cjs from its code cache, the start-up
// spoke's CLI gets, so what it takes beyond `node -e 0` is the least a Node CLI on undici pays for
// a pull here. `<start> <ref> <dir>`.

import { createHash } from 'node:crypto';
import { closeSync, fsyncSync, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import Pool from 'undici/lib/dispatcher/pool.js';
import request from 'undici/lib/api/api-request.js';
import { MAX_RESPONSE_HEADER_BYTES } from '../../src/core/limits.js';

async function verifiedBody(res: { body: { arrayBuffer(): Promise<ArrayBuffer> } }, digest: string): Promise<Buffer> {
  const bytes = Buffer.from(await res.body.arrayBuffer());
  if (`sha256:${createHash('sha256').update(bytes).digest('hex')}` !== digest) throw new Error(`digest mismatch: ${digest}`);
  return bytes;
}

async function main(): Promise<void> {
  const [ref, dir] = process.argv.slice(2) as [string, string];
  const at = ref.indexOf('@');
  const slash = ref.indexOf('/');
  const repository = `/v2/${ref.slice(slash + 1, at)}`;
  // The header cap given, as spoke gives it (src/registry/http.ts): undici then never loads node:http.
  const pool = new Pool(`http://${ref.slice(0, slash)}`, { connections: 1, maxHeaderSize: MAX_RESPONSE_HEADER_BYTES });
  const digest = ref.slice(at + 1);
  const manifest = await request.call(pool, { method: 'GET', path: `${repository}/manifests/${digest}`, headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } });
  const { layers } = JSON.parse((await verifiedBody(manifest, digest)).toString()) as { layers: { digest: string }[] };
  const blob = await request.call(pool, { method: 'GET', path: `${repository}/blobs/${layers[0]!.digest}` });
  const bytes = await verifiedBody(blob, layers[0]!.digest);
  const fd = openSync(join(dir, layers[0]!.digest.slice(7)), 'w');
  writeSync(fd, bytes);
  fsyncSync(fd);
  closeSync(fd);
  const dfd = openSync(dir, 'r');
  fsyncSync(dfd);
  closeSync(dfd);
}

// Exits once done, as spoke's CLI does (src/cli/main.ts): no wait for the idle connection.
main().then(
  () => process.exit(0),
  (e: unknown) => {
    process.stderr.write(`${String(e)}\n`);
    process.exit(1);
  },
);
