// Builds an OCI image layout tar holding busybox-static, with no network: two image names
// (docker.io/e2e/pause:1 running `sleep`, docker.io/e2e/busybox:1 with `/bin/sh`) sharing one
// layer. Described in docs/testing.md; the tar writer is
// a small ustar implementation. Import with `ctr -n k8s.io images import <tar>`.

import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';

export const PAUSE_IMAGE = 'docker.io/e2e/pause:1';
export const BUSYBOX_IMAGE = 'docker.io/e2e/busybox:1';
const APPLETS = ['sh', 'sleep', 'mkdir', 'echo', 'ls', 'cat', 'id', 'true', 'false', 'rmdir', 'touch', 'grep', 'head', 'wc', 'env', 'uname', 'chmod', 'unshare', 'rm'];

interface TarEntry {
  name: string;
  type: 'file' | 'dir' | 'symlink';
  mode: number;
  data?: Buffer;
  linkname?: string;
}

function octal(n: number, width: number): string {
  return n.toString(8).padStart(width - 1, '0') + '\0';
}

function tarHeader(e: TarEntry, size: number): Buffer {
  const h = Buffer.alloc(512);
  let name = e.name;
  let prefix = '';
  if (Buffer.byteLength(name) > 100) {
    const cut = name.lastIndexOf('/', 155);
    prefix = name.slice(0, cut);
    name = name.slice(cut + 1);
  }
  h.write(name, 0, 100, 'utf8');
  h.write(octal(e.mode, 8), 100);
  h.write(octal(0, 8), 108);
  h.write(octal(0, 8), 116);
  h.write(octal(size, 12), 124);
  h.write(octal(0, 12), 136);
  h.write('        ', 148);
  h.write(e.type === 'file' ? '0' : e.type === 'dir' ? '5' : '2', 156);
  if (e.linkname) h.write(e.linkname, 157, 100, 'utf8');
  h.write('ustar\0', 257);
  h.write('00', 263);
  h.write('root', 265);
  h.write('root', 297);
  h.write(prefix, 345, 155, 'utf8');
  let sum = 0;
  for (const b of h) sum += b;
  h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148);
  return h;
}

export function tar(entries: TarEntry[]): Buffer {
  const parts: Buffer[] = [];
  for (const e of entries) {
    const data = e.type === 'file' ? (e.data ?? Buffer.alloc(0)) : Buffer.alloc(0);
    parts.push(tarHeader(e, data.length), data);
    const pad = (512 - (data.length % 512)) % 512;
    if (pad) parts.push(Buffer.alloc(pad));
  }
  parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}

const sha = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

/** Writes the OCI layout tar to `out` and returns the image names. */
export function buildBusyboxImageTar(out: string, busybox = '/bin/busybox'): { images: string[] } {
  const blobs = new Map<string, Buffer>();
  const put = (b: Buffer) => {
    const d = sha(b);
    blobs.set(d, b);
    return { digest: `sha256:${d}`, size: b.length };
  };
  const entries: TarEntry[] = ['bin', 'etc', 'tmp', 'proc', 'sys', 'dev', 'var', 'root'].map((n) => ({ name: n + '/', type: 'dir' as const, mode: n === 'tmp' ? 0o1777 : 0o755 }));
  entries.push({ name: 'bin/busybox', type: 'file', mode: 0o755, data: readFileSync(busybox) });
  for (const a of APPLETS) entries.push({ name: `bin/${a}`, type: 'symlink', mode: 0o777, linkname: 'busybox' });
  entries.push({ name: 'etc/passwd', type: 'file', mode: 0o644, data: Buffer.from('root:x:0:0:root:/root:/bin/sh\n') });
  entries.push({ name: 'etc/group', type: 'file', mode: 0o644, data: Buffer.from('root:x:0:\n') });
  const raw = tar(entries);
  const diffId = `sha256:${sha(raw)}`;
  const layer = put(gzipSync(raw, { level: 6 }));

  const image = (name: string, entrypoint: string[] | null, cmd: string[] | null) => {
    const cfg = {
      architecture: 'amd64',
      os: 'linux',
      created: '1970-01-01T00:00:00Z',
      config: { Env: ['PATH=/bin'], Entrypoint: entrypoint, Cmd: cmd, WorkingDir: '/' },
      rootfs: { type: 'layers', diff_ids: [diffId] },
      history: [{ created: '1970-01-01T00:00:00Z', created_by: 'spoke test busybox-image.ts' }],
    };
    const c = put(Buffer.from(JSON.stringify(cfg)));
    const man = {
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...c },
      layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', ...layer }],
    };
    const m = put(Buffer.from(JSON.stringify(man)));
    return {
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      ...m,
      platform: { architecture: 'amd64', os: 'linux' },
      annotations: { 'io.containerd.image.name': name, 'org.opencontainers.image.ref.name': name.slice(name.lastIndexOf('/') + 1).replace(':', '-') },
    };
  };
  const index = {
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.index.v1+json',
    manifests: [image(PAUSE_IMAGE, ['/bin/sleep', '2147483647'], null), image(BUSYBOX_IMAGE, null, ['/bin/sh'])],
  };
  const files: TarEntry[] = [
    { name: 'oci-layout', type: 'file', mode: 0o644, data: Buffer.from(JSON.stringify({ imageLayoutVersion: '1.0.0' })) },
    { name: 'index.json', type: 'file', mode: 0o644, data: Buffer.from(JSON.stringify(index)) },
    { name: 'blobs/', type: 'dir', mode: 0o755 },
    { name: 'blobs/sha256/', type: 'dir', mode: 0o755 },
    ...[...blobs].map(([d, b]) => ({ name: `blobs/sha256/${d}`, type: 'file' as const, mode: 0o644, data: b })),
  ];
  writeFileSync(out, tar(files));
  return { images: [PAUSE_IMAGE, BUSYBOX_IMAGE] };
}
