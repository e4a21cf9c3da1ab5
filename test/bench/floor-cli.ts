// The CLI pull as a plain Node script: a whole process that only makes the pull's two requests
// with undici (imported as usual, no bundle, no code cache) and writes the blob with fsync of
// file and directory. `node floor-cli.js <ref> <dir>`. What it takes beyond `node -e 0` is what
// a straightforward Node CLI on undici pays for a pull here.

import { closeSync, fsyncSync, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { request } from 'undici';

const [ref, dir] = process.argv.slice(2) as [string, string];
const at = ref.indexOf('@');
const slash = ref.indexOf('/');
const base = `http://${ref.slice(0, slash)}/v2/${ref.slice(slash + 1, at)}`;
const manifest = await request(`${base}/manifests/${ref.slice(at + 1)}`, { headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } });
const { layers } = (await manifest.body.json()) as { layers: { digest: string }[] };
const blob = await request(`${base}/blobs/${layers[0]!.digest}`);
const bytes = Buffer.from(await blob.body.arrayBuffer());
const fd = openSync(join(dir, layers[0]!.digest.slice(7)), 'w');
writeSync(fd, bytes);
fsyncSync(fd);
closeSync(fd);
const dfd = openSync(dir, 'r');
fsyncSync(dfd);
closeSync(dfd);
