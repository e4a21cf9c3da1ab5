// `spoke push --sign-key` (src/cli/commands/push.ts) against an in-memory registry: the tag moves
// only to an artifact whose signature is attached, so a signing that fails part-way leaves the
// tag where it was (the artifact is pushed by digest only).

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, beforeEach, describe, it } from 'node:test';
import { spoke } from '../../helpers/cli.js';
import { localHttpServer } from '../../helpers/local-http.js';
import { makeKey } from '../../helpers/signing.js';

const dir = mkdtempSync(join(tmpdir(), 'spoke-push-sign-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const sha256 = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/** A registry without a referrers API; `refuseReferrers`: a manifest with a subject is refused (400), as some registries refuse them. */
const registry = { refuseReferrers: false, manifestPuts: [] as string[], manifests: new Map<string, Buffer>(), blobs: new Set<string>(), uploads: 0 };

function body(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks)));
  });
}

async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://x');
  const bytes = await body(req);
  const blob = /^\/v2\/.+\/blobs\/(sha256:[0-9a-f]{64})$/.exec(url.pathname);
  if (req.method === 'HEAD' && blob) return void res.writeHead(registry.blobs.has(blob[1]!) ? 200 : 404).end();
  if (req.method === 'POST' && url.pathname.endsWith('/blobs/uploads/')) return void res.writeHead(202, { location: `/upload/${++registry.uploads}` }).end();
  if (req.method === 'PUT' && url.pathname.startsWith('/upload/')) {
    registry.blobs.add(sha256(bytes));
    return void res.writeHead(201, { 'docker-content-digest': sha256(bytes) }).end();
  }
  const manifest = /^\/v2\/.+\/manifests\/(.+)$/.exec(url.pathname);
  if (req.method === 'PUT' && manifest) {
    if (registry.refuseReferrers && 'subject' in (JSON.parse(bytes.toString('utf8')) as object)) return void res.writeHead(400).end('{"errors":[{"code":"MANIFEST_INVALID","message":"no referrers here"}]}');
    registry.manifestPuts.push(manifest[1]!);
    registry.manifests.set(manifest[1]!, bytes);
    return void res.writeHead(201, { 'docker-content-digest': sha256(bytes) }).end();
  }
  const stored = manifest && req.method === 'GET' ? registry.manifests.get(manifest[1]!) : undefined;
  if (stored) return void res.writeHead(200, { 'content-type': (JSON.parse(stored.toString('utf8')) as { mediaType: string }).mediaType, 'docker-content-digest': sha256(stored) }).end(stored);
  res.writeHead(404).end();
}

describe('spoke push --sign-key', () => {
  const server = localHttpServer((req, res) => void handle(req, res));
  const key = join(dir, 'key.pem');
  writeFileSync(key, makeKey('p256').privatePem, { mode: 0o600 });
  const profile = join(dir, 'p.json');
  writeFileSync(profile, JSON.stringify({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['chmod'], action: 'SCMP_ACT_ERRNO' }] }));

  beforeEach(() => {
    registry.refuseReferrers = false;
    registry.manifestPuts.length = 0;
  });

  it('a signature the registry refuses to attach leaves the tag unmoved: the artifact is pushed by digest only', async () => {
    registry.refuseReferrers = true;
    const out = await spoke(['push', profile, `${server.host()}/team/p:v1`, '--kind', 'seccomp', '--plain-http', '--sign-key', key]);
    assert.notEqual(out.code, 0, out.stderr);
    assert.equal(out.stdout, '');
    assert.ok(registry.manifestPuts.length > 0 && registry.manifestPuts.every((ref) => ref.startsWith('sha256:')), `manifests put: ${registry.manifestPuts.join(', ')}`);
  });

  it('signed, the tag is put last, on the digest printed', async () => {
    const out = await spoke(['push', profile, `${server.host()}/team/p:v1`, '--kind', 'seccomp', '--plain-http', '--sign-key', key]);
    assert.equal(out.code, 0, out.stderr);
    const digest = out.stdout.trim().split('\n').at(-1)!.split('@')[1]!;
    assert.deepEqual(registry.manifestPuts.at(0), digest, 'the artifact first, by digest');
    assert.equal(registry.manifestPuts.at(-1), 'v1', 'the tag once the signature is attached');
    assert.equal(registry.manifestPuts.length, 4, `artifact, referrer, tag-schema index, tag: ${registry.manifestPuts.join(', ')}`);
  });
});
