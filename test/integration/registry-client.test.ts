// UndiciRegistryClient against a real docker-registry 2.8 (push, pull, caps, tampering,
// htpasswd and token auth, mirrors), plus small node:http servers on 127.0.0.1 for protocol
// edges the real registry cannot produce (chunked oversize bodies, 429/503 with Retry-After,
// cross-origin redirects, a dead port).

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import diagnostics from 'node:diagnostics_channel';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Pool } from 'undici';
import { MEDIA_TYPE_OCI_INDEX, MEDIA_TYPE_OCI_MANIFEST, OCI_EMPTY_DIGEST } from '../../src/core/constants.js';
import { sha256Digest, type Digest } from '../../src/core/digest.js';
import { monotonicNow, silentLogger, systemClock, type Clock } from '../../src/core/runtime.js';
import { Authenticator } from '../../src/registry/auth.js';
import { UndiciRegistryClient } from '../../src/registry/client.js';
import { Transport, type HttpResponse } from '../../src/registry/http.js';
import { credentialsFromEntries } from '../../src/registry/credentials.js';
import type { RepoLocator } from '../../src/registry/types.js';
import { freePort, registryBlobPath, startRegistry, type TestRegistry } from '../helpers/registry.js';
import { startTokenServer, type TokenServer } from '../helpers/token-server.js';
import { rejectsWith } from '../helpers/assert.js';
import { toGrpcStatus } from '../../src/cri/grpc-status.js';
import { errorLine } from '../../src/cli/errors.js';
import { blobs, startSlowProxy } from '../helpers/slow-proxy.js';
import { makeTestCa, type TestCa } from '../helpers/tls.js';

// A test below measures what a read holds, after a collection.
setFlagsFromString('--expose-gc');

const ACCEPT = [MEDIA_TYPE_OCI_MANIFEST];
const CAP = 64 * 1024;

function profileBytes(tag: string): Buffer {
  return Buffer.from(JSON.stringify({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['mkdir'], action: 'SCMP_ACT_ERRNO' }], tag }));
}

function manifestFor(layer: Buffer): Buffer {
  return Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MEDIA_TYPE_OCI_MANIFEST,
      artifactType: 'application/vnd.cncf.seccomp-profile.config.v1+json',
      config: { mediaType: 'application/vnd.oci.empty.v1+json', digest: OCI_EMPTY_DIGEST, size: 2, data: 'e30=' },
      layers: [{ mediaType: 'application/json', digest: sha256Digest(layer), size: layer.length }],
    }),
  );
}

/** Pushes config + layer + manifest (tagged `tag`); returns the digests. */
async function pushArtifact(client: UndiciRegistryClient, repo: RepoLocator, layer: Buffer, tag = 'v1') {
  await client.putBlob(repo, Buffer.from('{}'));
  const layerDigest = await client.putBlob(repo, layer);
  const manifest = manifestFor(layer);
  const { digest } = await client.putManifest(repo, tag, manifest, MEDIA_TYPE_OCI_MANIFEST);
  return { layerDigest, manifestDigest: digest, manifest };
}

/** A client clock whose time can be moved forward; sleeps are recorded and return at once. */
function testClock(): Clock & { advance(ms: number): void; sleeps: number[] } {
  let offset = 0;
  const sleeps: number[] = [];
  return {
    now: () => Date.now() + offset,
    sleep: async (ms) => {
      sleeps.push(ms);
    },
    advance: (ms) => {
      offset += ms;
    },
    sleeps,
  };
}

interface FakeServer {
  host: string;
  url: string;
  hits: IncomingMessage[];
  close(): Promise<void>;
}

async function fakeServer(handler: (req: IncomingMessage, res: ServerResponse, n: number) => void, ip = '127.0.0.1'): Promise<FakeServer> {
  const hits: IncomingMessage[] = [];
  const server = createServer((req, res) => {
    hits.push(req);
    req.resume();
    req.on('end', () => handler(req, res, hits.length));
  });
  await new Promise<void>((r) => server.listen(0, ip, r));
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  return {
    host: `${ip}:${port}`,
    url: `http://${ip}:${port}`,
    hits,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

const DIGEST_A = sha256Digest('a');

describe('registry client against docker-registry 2.8 (anonymous)', () => {
  let reg: TestRegistry;
  let client: UndiciRegistryClient;
  let repo: RepoLocator;

  before(async () => {
    reg = await startRegistry();
    client = new UndiciRegistryClient({ insecure: [reg.host] });
    repo = { registry: reg.host, repository: 'security/profiles/deny-mkdir' };
  });
  after(async () => {
    await client.close();
    await reg.stop();
  });

  it('pushes a blob monolithically (HEAD, POST, PUT) and skips it when present', async () => {
    const bytes = profileBytes('mono');
    await reg.resetRequests();
    const d = await client.putBlob(repo, bytes);
    assert.equal(d, sha256Digest(bytes));
    await reg.settle();
    assert.deepEqual(
      reg.requests().map((r) => `${r.method} ${r.status}`),
      ['HEAD 404', 'POST 202', 'PUT 201'],
    );
    await reg.resetRequests();
    assert.equal(await client.putBlob(repo, bytes), d);
    await reg.settle();
    assert.deepEqual(reg.requests().map((r) => `${r.method} ${r.status}`), ['HEAD 200']);
    assert.equal(await client.hasBlob(repo, d), true);
    assert.equal(await client.hasBlob(repo, DIGEST_A), false);
  });

  it('pushes a blob in chunks (PATCH with Content-Range, then PUT)', async () => {
    const bytes = Buffer.alloc(10_000, 7);
    await reg.resetRequests();
    const d = await client.putBlob(repo, bytes, { chunkSize: 4096 });
    await reg.settle();
    assert.deepEqual(
      reg.requests().map((r) => `${r.method} ${r.status}`),
      ['HEAD 404', 'POST 202', 'PATCH 202', 'PATCH 202', 'PATCH 202', 'PUT 201'],
    );
    const got = await client.getBlob(repo, d, { maxBytes: CAP });
    assert.ok(got.bytes.equals(bytes));
  });

  it('pushes a manifest and reads it by digest and by tag; a cold pull is two requests', async () => {
    const layer = profileBytes('pull');
    const { manifestDigest, layerDigest, manifest } = await pushArtifact(client, repo, layer, 'v1');
    assert.equal(manifestDigest, sha256Digest(manifest));
    const fresh = new UndiciRegistryClient({ insecure: [reg.host] });
    try {
      await reg.resetRequests();
      const t0 = performance.now();
      const m = await fresh.getManifest(repo, manifestDigest, ACCEPT, { maxBytes: CAP });
      const b = await fresh.getBlob(repo, layerDigest, { maxBytes: CAP, expectedSize: layer.length });
      const coldMs = performance.now() - t0;
      await reg.settle();
      assert.deepEqual(reg.requests().map((r) => `${r.method} ${r.status}`), ['GET 200', 'GET 200']);
      assert.ok(m.bytes.equals(manifest));
      assert.equal(m.digest, manifestDigest);
      assert.equal(m.servedBy, reg.host);
      assert.equal(m.contentType, MEDIA_TYPE_OCI_MANIFEST);
      assert.ok(b.bytes.equals(layer));
      const t1 = performance.now();
      await fresh.getManifest(repo, manifestDigest, ACCEPT, { maxBytes: CAP });
      await fresh.getBlob(repo, layerDigest, { maxBytes: CAP });
      const warmMs = performance.now() - t1;
      console.log(`# cold manifest+blob GET ${coldMs.toFixed(1)} ms, warm (keep-alive) ${warmMs.toFixed(1)} ms`);
    } finally {
      await fresh.close();
    }
    const byTag = await client.getManifest(repo, 'v1', ACCEPT, { maxBytes: CAP });
    assert.equal(byTag.digest, manifestDigest);
    assert.equal(await client.getManifestIfExists(repo, 'nope', ACCEPT, { maxBytes: CAP }), undefined);
    await rejectsWith(client.getManifest(repo, DIGEST_A, ACCEPT, { maxBytes: CAP }), { code: 'NotFound' });
  });

  it('refuses a declared Content-Length over the cap before reading', async () => {
    const big = Buffer.alloc(200_000, 1);
    const d = await client.putBlob(repo, big);
    // Bytes over the cap cannot be checked against the digest: the source is at fault (transient).
    const e = await rejectsWith(client.getBlob(repo, d, { maxBytes: 100_000 }), { code: 'RegistryUnavailable', reason: 'SIZE_LIMIT' });
    assert.equal(e.context.limit, 100_000);
    // A descriptor over the cap is the request's limit: refused before any request.
    await rejectsWith(client.getBlob(repo, d, { maxBytes: CAP, expectedSize: CAP + 1 }), { code: 'SecurityProfileInvalid', reason: 'SIZE_LIMIT' });
    await rejectsWith(client.getManifest(repo, 'v1', ACCEPT, { maxBytes: 16 }), { code: 'SecurityProfileInvalid', reason: 'SIZE_LIMIT' });
  });

  it('a descriptor size that lies is the content at fault; a blob tampered on disk, the source', async () => {
    const bytes = profileBytes('tamper');
    const d = await client.putBlob(repo, bytes);
    // The bytes hash to the digest, so the descriptor naming them is what lies.
    await rejectsWith(client.getBlob(repo, d, { maxBytes: CAP, expectedSize: bytes.length - 1 }), { code: 'SecurityProfileInvalid', reason: 'SIZE_LIMIT' });
    const file = registryBlobPath(reg, d);
    const evil = Buffer.from(readFileSync(file));
    evil[evil.length - 2] ^= 1;
    writeFileSync(file, evil);
    const e = await rejectsWith(client.getBlob(repo, d, { maxBytes: CAP }), { code: 'RegistryUnavailable', reason: 'DIGEST_MISMATCH' });
    assert.equal(e.context.expected, d);
    assert.equal(e.context.registry, reg.host);
  });

  it('referrers: registry 2.8 answers 404, which means unsupported', async () => {
    assert.equal(await client.getReferrers(repo, DIGEST_A, { maxBytes: CAP }), undefined);
    assert.equal(await client.getReferrers(repo, DIGEST_A, { maxBytes: CAP, artifactType: 'application/vnd.dev.sigstore.bundle.v0.3+json' }), undefined);
    // The tag schema fallback is an index under sha256-<hex>.
    const index = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MEDIA_TYPE_OCI_INDEX, manifests: [] }));
    await client.putManifest(repo, `sha256-${DIGEST_A.slice(7)}`, index, MEDIA_TYPE_OCI_INDEX);
    const got = await client.getManifest(repo, `sha256-${DIGEST_A.slice(7)}`, [MEDIA_TYPE_OCI_INDEX], { maxBytes: CAP });
    assert.ok(got.bytes.equals(index));
  });

  it('referrers: a registry that answered 404 is not asked again for ten minutes, then asked again', async () => {
    const clock = testClock();
    // The ten minutes are measured on the monotonic clock (registry/options.ts monotonicNow).
    const remembering = new UndiciRegistryClient({ insecure: [reg.host], monotonicNow: () => clock.now() });
    const referrerRequests = async () => {
      await reg.settle();
      return reg.requests().filter((r) => r.path.includes('/referrers/')).length;
    };
    try {
      await reg.resetRequests();
      for (let i = 0; i < 3; i++) assert.equal(await remembering.getReferrers(repo, DIGEST_A, { maxBytes: CAP }), undefined);
      assert.equal(await referrerRequests(), 1);
      clock.advance(9 * 60_000);
      assert.equal(await remembering.getReferrers(repo, DIGEST_A, { maxBytes: CAP }), undefined);
      assert.equal(await referrerRequests(), 1);
      clock.advance(60_000);
      assert.equal(await remembering.getReferrers(repo, DIGEST_A, { maxBytes: CAP }), undefined);
      assert.equal(await referrerRequests(), 2);
    } finally {
      await remembering.close();
    }
  });

  it('refuses plain HTTP to a host that is not listed insecure', async () => {
    const strict = new UndiciRegistryClient({ timeoutMs: 2000 });
    try {
      // HTTPS to a plain-HTTP registry fails the handshake: unavailable, never a silent downgrade.
      const err = await rejectsWith(strict.getBlob(repo, DIGEST_A, { maxBytes: CAP }), { code: 'RegistryUnavailable' });
      assert.match(err.message, /answers plain HTTP: .*--plain-http.*insecure/);
    } finally {
      await strict.close();
    }
  });
});

describe('HTTPS with a custom CA', () => {
  let reg: TestRegistry;
  let dir: string;
  let ca: TestCa;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'spoke-tls-'));
    ca = makeTestCa(dir);
    reg = await startRegistry({ tls: ca });
  });
  after(async () => {
    await reg.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('speaks HTTPS by default, trusts the extra CA, and fails closed without it', async () => {
    const repo = { registry: reg.host, repository: 'tls/profile' };
    const trusting = new UndiciRegistryClient({ caFile: ca.caFile });
    const plain = new UndiciRegistryClient({ timeoutMs: 2000 });
    try {
      const { manifestDigest } = await pushArtifact(trusting, repo, profileBytes('tls'));
      const m = await trusting.getManifest(repo, manifestDigest, ACCEPT, { maxBytes: CAP });
      assert.equal(m.digest, manifestDigest);
      await rejectsWith(plain.getManifest(repo, manifestDigest, ACCEPT, { maxBytes: CAP }), { code: 'RegistryUnavailable', reason: 'TRANSPORT' });
    } finally {
      await Promise.all([trusting.close(), plain.close()]);
    }
  });
});

describe('mirrors', () => {
  let source: TestRegistry;
  let mirror: TestRegistry;
  let deadPort: number;
  let pushed: { layerDigest: Digest; manifestDigest: Digest };
  const repository = 'security/profiles/mirrored';

  before(async () => {
    [source, mirror] = await Promise.all([startRegistry(), startRegistry()]);
    deadPort = await freePort();
    const pusher = new UndiciRegistryClient({ plainHttp: true });
    const layer = profileBytes('mirrored');
    pushed = await pushArtifact(pusher, { registry: source.host, repository }, layer);
    await pushArtifact(pusher, { registry: mirror.host, repository }, layer);
    await pusher.close();
  });
  after(async () => {
    await Promise.all([source.stop(), mirror.stop()]);
  });

  it('a mirror that is down or lacks the content falls back to the source', async () => {
    const empty = await startRegistry();
    const client = new UndiciRegistryClient({
      insecure: [source.host, empty.host, `127.0.0.1:${deadPort}`],
      mirrors: { [source.host]: [`127.0.0.1:${deadPort}`, empty.host] },
    });
    try {
      const m = await client.getManifest({ registry: source.host, repository }, pushed.manifestDigest, ACCEPT, { maxBytes: CAP, useMirrors: true });
      assert.equal(m.servedBy, source.host);
      await empty.settle();
      assert.equal(empty.requests().length, 1, 'the empty mirror was asked once');
      // Without useMirrors (publishing), mirrors are not contacted.
      await empty.resetRequests();
      await client.getManifest({ registry: source.host, repository }, pushed.manifestDigest, ACCEPT, { maxBytes: CAP });
      await empty.settle();
      assert.equal(empty.requests().length, 0);
    } finally {
      await client.close();
      await empty.stop();
    }
  });

  it('a mirror that trickles its answer is given up at its own budget, and the source serves it within the pull\'s deadline', async () => {
    const proxy = await startSlowProxy(mirror.port);
    proxy.trickle(blobs, 200);
    const client = new UndiciRegistryClient({ plainHttp: true, mirrors: { [source.host]: [proxy.host] }, mirrorTimeoutMs: 500 });
    try {
      // Never idle for the 10 s request timeout: only the mirror's budget ends it.
      const b = await client.getBlob({ registry: source.host, repository }, pushed.layerDigest, { maxBytes: CAP, useMirrors: true, signal: AbortSignal.timeout(60_000) });
      assert.equal(b.servedBy, source.host);
      assert.equal(b.digest, pushed.layerDigest);
      assert.ok(proxy.requests().some(blobs), 'the mirror was asked first');
    } finally {
      await client.close();
      await proxy.close();
    }
  });

  it('the mirror budget is an option of the client, validated', async () => {
    await new UndiciRegistryClient({ mirrorTimeoutMs: 1000 }).close();
    await rejectsWith(Promise.resolve().then(() => new UndiciRegistryClient({ mirrorTimeoutMs: 0 })), { code: 'InvalidArgument', reason: 'OPTION_INVALID' });
  });

  it('a mirror that serves the content is used; one that serves tampered bytes is skipped for the source', async () => {
    const client = new UndiciRegistryClient({ plainHttp: true, mirrors: { [source.host]: [mirror.host] } });
    try {
      const repo = { registry: source.host, repository };
      const b = await client.getBlob(repo, pushed.layerDigest, { maxBytes: CAP, useMirrors: true });
      assert.equal(b.servedBy, mirror.host);
      const file = registryBlobPath(mirror, pushed.layerDigest);
      const evil = Buffer.from(readFileSync(file));
      evil[0] ^= 0x20;
      writeFileSync(file, evil);
      await source.resetRequests();
      const fallback = await client.getBlob(repo, pushed.layerDigest, { maxBytes: CAP, useMirrors: true });
      assert.equal(fallback.servedBy, source.host);
      assert.equal(fallback.digest, pushed.layerDigest);
      await source.settle();
      assert.equal(source.requests().length, 1, 'one fallback request to the source');
    } finally {
      await client.close();
    }
  });
});

describe('htpasswd (Basic) auth', () => {
  let reg: TestRegistry;
  let dir: string;
  const repo = (r: TestRegistry): RepoLocator => ({ registry: r.host, repository: 'private/profile' });

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'spoke-htp-'));
    const line = execFileSync('htpasswd', ['-Bbn', 'alice', 's3cret'], { encoding: 'utf8' }).trim();
    writeFileSync(join(dir, 'htpasswd'), `${line}\n`);
    reg = await startRegistry({ authYaml: `htpasswd:\n  realm: spoke-test\n  path: ${join(dir, 'htpasswd')}` });
  });
  after(async () => {
    await reg.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('no credentials → Unauthenticated; wrong → Unauthenticated; right → works', async () => {
    const anon = new UndiciRegistryClient({ insecure: [reg.host] });
    const wrong = new UndiciRegistryClient({
      insecure: [reg.host],
      credentials: credentialsFromEntries({ [reg.host]: { kind: 'basic', username: 'alice', password: 'nope' } }),
    });
    const right = new UndiciRegistryClient({
      insecure: [reg.host],
      credentials: credentialsFromEntries({ [reg.host]: { kind: 'basic', username: 'alice', password: 's3cret' } }),
    });
    try {
      const e = await rejectsWith(anon.putBlob(repo(reg), Buffer.from('x')), { code: 'Unauthenticated', reason: 'AUTH_REQUIRED' });
      assert.doesNotMatch(e.message, /s3cret|alice/);
      const w = await rejectsWith(wrong.putBlob(repo(reg), Buffer.from('x')), { code: 'Unauthenticated', reason: 'AUTH_REFUSED' });
      assert.doesNotMatch(w.message + JSON.stringify(w.context), /nope/);
      const { manifestDigest } = await pushArtifact(right, repo(reg), profileBytes('basic'));
      // The learned scheme means later requests carry Basic up front: one request, no 401.
      await reg.resetRequests();
      await right.getManifest(repo(reg), manifestDigest, ACCEPT, { maxBytes: CAP });
      await reg.settle();
      assert.deepEqual(reg.requests().map((r) => r.status), [200]);
      // A per-request credential overrides the node's for that request only.
      await rejectsWith(
        right.getManifest(repo(reg), manifestDigest, ACCEPT, { maxBytes: CAP, credential: { kind: 'basic', username: 'alice', password: 'bad' } }), { code: 'Unauthenticated' });
      const ok = await anon.getManifest(repo(reg), manifestDigest, ACCEPT, {
        maxBytes: CAP,
        credential: { kind: 'basic', username: 'alice', password: 's3cret' },
      });
      assert.equal(ok.digest, manifestDigest);
    } finally {
      await Promise.all([anon.close(), wrong.close(), right.close()]);
    }
  });
});

describe('token (Bearer) auth with a real token server', () => {
  let reg: TestRegistry;
  let tokens: TokenServer;
  const repoOf = () => ({ registry: reg.host, repository: 'private/tokened' });
  // The token service runs beside the registry on another port: same host name, so it gets the credentials.
  const insecure = () => [reg.host, new URL(tokens.realm).host];

  before(async () => {
    tokens = await startTokenServer({ users: { bob: 'pw' }, refreshTokens: { 'refresh-123': 'bob' }, expiresIn: 120 });
    reg = await startRegistry({ authYaml: tokens.registryAuthYaml });
  });
  after(async () => {
    await reg.stop();
    await tokens.stop();
  });

  it('no credentials → Unauthenticated; wrong password → Unauthenticated', async () => {
    const anon = new UndiciRegistryClient({ insecure: insecure() });
    const wrong = new UndiciRegistryClient({
      insecure: insecure(),
      credentials: credentialsFromEntries({ [reg.host]: { kind: 'basic', username: 'bob', password: 'wrong' } }),
    });
    try {
      await rejectsWith(anon.getManifest(repoOf(), 'v1', ACCEPT, { maxBytes: CAP }), { code: 'Unauthenticated', reason: 'AUTH_REQUIRED' });
      await rejectsWith(wrong.getManifest(repoOf(), 'v1', ACCEPT, { maxBytes: CAP }), { code: 'Unauthenticated', reason: 'AUTH_REFUSED' });
    } finally {
      await Promise.all([anon.close(), wrong.close()]);
    }
  });

  it('basic credentials get a token; tokens are cached per scope until expires_in', async () => {
    const clock = testClock();
    const client = new UndiciRegistryClient({
      insecure: insecure(),
      clock,
      // A token's lifetime is measured on the monotonic clock (registry/auth.ts).
      monotonicNow: () => clock.now(),
      credentials: credentialsFromEntries({ [reg.host]: { kind: 'basic', username: 'bob', password: 'pw' } }),
    });
    try {
      tokens.reset();
      const layer = profileBytes('token');
      const { manifestDigest, layerDigest } = await pushArtifact(client, repoOf(), layer);
      assert.equal(tokens.requests().length, 1, 'one pull,push token serves the whole push');
      assert.equal(tokens.requests()[0]!.user, 'bob');
      assert.equal(tokens.requests()[0]!.scope, 'repository:private/tokened:pull,push');
      await reg.resetRequests();
      await client.getManifest(repoOf(), manifestDigest, ACCEPT, { maxBytes: CAP });
      await client.getBlob(repoOf(), layerDigest, { maxBytes: CAP });
      await client.getBlob(repoOf(), layerDigest, { maxBytes: CAP });
      assert.equal(tokens.requests().length, 2, 'a pull token, fetched up front (scheme known), then cached');
      await reg.settle();
      assert.deepEqual(reg.requests().map((r) => r.status), [200, 200, 200]);
      clock.advance(121_000);
      await client.getBlob(repoOf(), layerDigest, { maxBytes: CAP });
      assert.equal(tokens.requests().length, 3, 'expired token refetched');
    } finally {
      await client.close();
    }
  });

  it('an identity token is exchanged at the realm with POST (refresh_token grant)', async () => {
    const client = new UndiciRegistryClient({
      insecure: insecure(),
      credentials: credentialsFromEntries({ [reg.host]: { kind: 'identityToken', token: 'refresh-123' } }),
    });
    try {
      tokens.reset();
      await pushArtifact(client, repoOf(), profileBytes('identity'), 'v2');
      assert.deepEqual(
        tokens.requests().map((r) => `${r.method} ${r.user}`),
        ['POST bob'],
      );
    } finally {
      await client.close();
    }
  });
});

describe('protocol edges (local fake servers)', () => {
  const repoAt = (host: string): RepoLocator => ({ registry: host, repository: 'edge/case' });
  const manifest = Buffer.from('{"schemaVersion":2}');
  const manifestDigest = sha256Digest(manifest);

  /**
   * A registry whose Bearer challenge names `realm()`, a token server that gives a usable token
   * only for alice's credentials (configured for `credentialHost`), and clients whose every origin
   * is routed to one of the two, so that the names are the real ones.
   */
  async function bearerRig(o: { credentialHost: string; insecure: string[]; service: string; realm: () => string; routes: (registry: string, tokens: string) => Record<string, string> }) {
    const registry = await fakeServer((req, res) => {
      if (req.headers.authorization === 'Bearer AUTHED') return void res.writeHead(200).end(manifest);
      res.writeHead(401, { 'www-authenticate': `Bearer realm="${o.realm()}",service="${o.service}"` }).end();
    });
    const tokens = await fakeServer((req, res) => res.writeHead(200).end(JSON.stringify({ token: req.headers.authorization === 'Basic YWxpY2U6czNjcmV0' ? 'AUTHED' : 'ANON' })));
    const routes = o.routes(registry.url, tokens.url);
    const options = {
      retries: 0,
      insecure: o.insecure,
      credentials: credentialsFromEntries({ [o.credentialHost]: { kind: 'basic', username: 'alice', password: 's3cret' } }),
      dispatcherFactory: (origin: string) => new Pool(routes[origin]!),
    };
    const clients: UndiciRegistryClient[] = [];
    return {
      tokens,
      fresh: () => {
        clients.push(new UndiciRegistryClient(options));
        return clients.at(-1)!;
      },
      close: async () => {
        await Promise.all(clients.map((c) => c.close()));
        await Promise.all([registry.close(), tokens.close()]);
      },
    };
  }

  it('a request made right after a body was read reuses its connection: a cold pull opens one', async () => {
    const blob = Buffer.from('{"defaultAction":"SCMP_ACT_ALLOW"}');
    const srv = await fakeServer((req, res) => {
      if (req.url?.includes('/blobs/')) return void res.writeHead(200, { 'content-length': String(blob.length) }).end(blob);
      res.writeHead(200, { 'content-type': MEDIA_TYPE_OCI_MANIFEST, 'content-length': String(manifest.length) }).end(manifest);
    });
    const client = new UndiciRegistryClient({ insecure: [srv.host] });
    try {
      await client.getManifest(repoAt(srv.host), manifestDigest, ACCEPT, { maxBytes: CAP });
      await client.getBlob(repoAt(srv.host), sha256Digest(blob), { maxBytes: CAP });
      await client.getManifest(repoAt(srv.host), 'v1', ACCEPT, { maxBytes: CAP });
      assert.equal(srv.hits.length, 3);
      assert.equal(new Set(srv.hits.map((h) => h.socket)).size, 1);
    } finally {
      await client.close();
      await srv.close();
    }
  });

  it('a body read to its end resolves before the next turn of the event loop: the last response of a pull delays nothing after it', async () => {
    // undici publishes this as a response ends; an immediate queued then runs at the next turn.
    // The client waits for a turn only before a request that would otherwise open a connection
    // (the one above), never after a body, so what follows the last response (a pull's checks,
    // its store writes, the shim's answer) runs in the turn its bytes arrived.
    const blob = Buffer.from('{"defaultAction":"SCMP_ACT_ALLOW"}');
    const srv = await fakeServer((_req, res) => void res.writeHead(200, { 'content-length': String(blob.length) }).end(blob));
    const client = new UndiciRegistryClient({ insecure: [srv.host] });
    let turned = false;
    const onEnd = () => setImmediate(() => (turned = true));
    diagnostics.subscribe('undici:request:trailers', onEnd);
    try {
      await client.getBlob(repoAt(srv.host), sha256Digest(blob), { maxBytes: CAP });
      assert.equal(turned, false);
    } finally {
      diagnostics.unsubscribe('undici:request:trailers', onEnd);
      await client.close();
      await srv.close();
    }
  });

  it('refuses a chunked body that streams past the cap', async () => {
    const srv = await fakeServer((_req, res) => {
      res.writeHead(200, { 'content-type': MEDIA_TYPE_OCI_MANIFEST }); // no Content-Length: chunked
      for (let i = 0; i < 20; i++) res.write(Buffer.alloc(8192, 32));
      res.end();
    });
    const client = new UndiciRegistryClient({ insecure: [srv.host] });
    try {
      await rejectsWith(client.getManifest(repoAt(srv.host), manifestDigest, ACCEPT, { maxBytes: 50_000 }), { code: 'RegistryUnavailable', reason: 'SIZE_LIMIT' });
    } finally {
      await client.close();
      await srv.close();
    }
  });

  it('a blob body longer than its descriptor is hashed to its end but held only up to the declared size', async () => {
    // The pull holds the declared size of the node's budget (src/pull/byte-budget.ts): a source
    // that sends more must not make it hold more.
    const gc = runInNewContext('gc') as () => void;
    const chunk = Buffer.alloc(1024 * 1024, 0x7b);
    const sent = 40;
    let peak = 0;
    let base = 0;
    const srv = await fakeServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream' }); // no Content-Length
      let i = 0;
      const more = (): void => {
        // Measured each time the client has taken the last chunk: what it holds so far.
        gc();
        peak = Math.max(peak, process.memoryUsage().arrayBuffers - base);
        if (i++ === sent) {
          res.end();
          return;
        }
        if (res.write(chunk)) setImmediate(more);
        else res.once('drain', more);
      };
      more();
    });
    const client = new UndiciRegistryClient({ insecure: [srv.host] });
    try {
      gc();
      base = process.memoryUsage().arrayBuffers;
      const declared = Buffer.from('{"defaultAction":"SCMP_ACT_ERRNO"}');
      const e = await rejectsWith(client.getBlob(repoAt(srv.host), sha256Digest(declared), { maxBytes: 64 * 1024 * 1024, expectedSize: declared.length }), { code: 'RegistryUnavailable', reason: 'DIGEST_MISMATCH' });
      assert.equal(e.context.registry, srv.host);
      assert.ok(peak < 16 * 1024 * 1024, `held ${(peak / 2 ** 20).toFixed(1)} MiB of a ${sent} MiB body declared ${declared.length} bytes`);
    } finally {
      await client.close();
      await srv.close();
    }
  });

  it('a connection closed mid-body is RegistryUnavailable (TRANSPORT), for a manifest and for a token response', async () => {
    let host = '';
    const srv = await fakeServer((req, res) => {
      if (req.url?.startsWith('/token')) {
        res.writeHead(200, { 'content-length': '100' }).write('{"tok', () => res.socket?.destroy());
        return;
      }
      if (req.url?.includes('/private/')) {
        res.writeHead(401, { 'www-authenticate': `Bearer realm="http://${host}/token",service="svc"` }).end();
        return;
      }
      res.writeHead(200, { 'content-length': String(manifest.length) }).write(manifest.subarray(0, 5), () => res.socket?.destroy());
    });
    host = srv.host;
    const client = new UndiciRegistryClient({ insecure: [srv.host], retries: 0 });
    try {
      await rejectsWith(client.getManifest(repoAt(srv.host), manifestDigest, ACCEPT, { maxBytes: CAP }), { code: 'RegistryUnavailable', reason: 'TRANSPORT' });
      await rejectsWith(client.getManifest({ registry: srv.host, repository: 'private/case' }, manifestDigest, ACCEPT, { maxBytes: CAP }), { code: 'RegistryUnavailable', reason: 'TRANSPORT' });
    } finally {
      await client.close();
      await srv.close();
    }
  });

  it("a token fetch shared by two callers: when the one that started it goes away, the other fetches its own", async () => {
    let held: ServerResponse | undefined;
    let heldArrived!: () => void;
    const arrived = new Promise<void>((r) => (heldArrived = r));
    const realm = await fakeServer((_req, res, n) => {
      if (n === 1) {
        held = res; // the first fetch is never answered: its caller leaves first
        heldArrived();
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ token: 'second' }));
    });
    const transport = new Transport({ allowsHttp: () => true, ca: undefined, timeoutMs: 30_000, totalTimeoutMs: 300_000, connectTimeoutMs: 5_000, userAgent: 'spoke-test', dispatcherFactory: undefined, clock: systemClock, logger: silentLogger });
    const auth = new Authenticator({ transport, monotonicNow, logger: silentLogger, retries: 0 });
    const base = new URL('http://registry.test');
    const target = (signal: AbortSignal) => ({ registry: 'registry.test', base, scope: 'repository:team/app:pull', credential: undefined, signal, ctx: {} });
    const a = new AbortController();
    const challenge = { status: 401, headers: { 'www-authenticate': `Bearer realm="${realm.url}/token",service="svc"` }, body: { dump: async () => undefined }, url: base } as unknown as HttpResponse;
    try {
      const first = auth.after401(target(a.signal), challenge, { header: undefined, cached: false });
      first.catch(() => undefined);
      await arrived;
      const second = auth.before(target(new AbortController().signal)); // joins the fetch in flight
      a.abort();
      await rejectsWith(first, { code: 'RegistryUnavailable', reason: 'CANCELLED' });
      assert.deepEqual(await second, { header: 'Bearer second', cached: false });
    } finally {
      held?.destroy();
      await transport.close();
      await realm.close();
    }
  });

  it('refuses manifest bytes that do not match the requested digest, naming digest and host', async () => {
    const srv = await fakeServer((_req, res) => res.writeHead(200).end('{"schemaVersion":3}'));
    const client = new UndiciRegistryClient({ insecure: [srv.host] });
    try {
      const e = await rejectsWith(client.getManifest(repoAt(srv.host), manifestDigest, ACCEPT, { maxBytes: CAP }), { code: 'RegistryUnavailable', reason: 'DIGEST_MISMATCH' });
      assert.equal(e.context.expected, manifestDigest);
      assert.equal(e.context.registry, srv.host);
    } finally {
      await client.close();
      await srv.close();
    }
  });

  it("a registry's own error text stays out of CRI statuses (pod events): its code is kept, its message goes to the CLI and the node log", async () => {
    // A registry that echoes the request's Authorization header into its error message.
    const srv = await fakeServer((req, res) => {
      if (req.headers.authorization === undefined) {
        res.writeHead(401, { 'www-authenticate': 'Basic realm="r"' }).end();
        return;
      }
      res.writeHead(403, { 'content-type': 'application/json' }).end(JSON.stringify({ errors: [{ code: 'DENIED', message: `no access for ${req.headers.authorization}` }] }));
    });
    const client = new UndiciRegistryClient({ insecure: [srv.host] });
    const basic = Buffer.from('alice:s3cret-pw').toString('base64');
    try {
      const e = await rejectsWith(client.getManifest(repoAt(srv.host), manifestDigest, ACCEPT, { maxBytes: CAP, credential: { kind: 'basic', username: 'alice', password: 's3cret-pw' } }), { code: 'Unauthenticated', reason: 'AUTH_REFUSED' });
      const status = toGrpcStatus(e).message;
      assert.match(status, /answered 403 \(DENIED\)/);
      assert.ok(!status.includes(basic), status);
      assert.ok(errorLine(e).includes(`registry said: no access for Basic ${basic}`), errorLine(e));
      assert.equal(e.registryText, `no access for Basic ${basic}`);
    } finally {
      await client.close();
      await srv.close();
    }
  });

  it('a registry error code that the specs do not define is not kept in the status, however it is spelled', async () => {
    const codes = ['dG9rZW4=', 'AKIAIOSFODNN7EXAMPLE'];
    const srv = await fakeServer((_req, res, n) => res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ errors: [{ code: codes[(n - 1) % codes.length], message: 'm' }] })));
    const client = new UndiciRegistryClient({ insecure: [srv.host] });
    try {
      for (const code of codes) {
        const e = await rejectsWith(client.getManifest(repoAt(srv.host), manifestDigest, ACCEPT, { maxBytes: CAP }), { code: 'NotFound', reason: 'NOT_FOUND' });
        assert.ok(!toGrpcStatus(e).message.includes(code.slice(0, 6)), toGrpcStatus(e).message);
        assert.equal(e.registryText, `${code}: m`);
      }
    } finally {
      await client.close();
      await srv.close();
    }
  });

  it('referrers: a 404 saying the repository is unknown (NAME_UNKNOWN) is not remembered; other repositories are asked on their own', async () => {
    const srv = await fakeServer((req, res) => {
      const unknown = (req.url ?? '').startsWith('/v2/not/yet/');
      res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ errors: [{ code: unknown ? 'NAME_UNKNOWN' : 'NOT_FOUND', message: 'x' }] }));
    });
    const client = new UndiciRegistryClient({ insecure: [srv.host] });
    try {
      const notYet = { registry: srv.host, repository: 'not/yet' };
      for (const r of [notYet, notYet, repoAt(srv.host), repoAt(srv.host), notYet]) assert.equal(await client.getReferrers(r, manifestDigest, { maxBytes: CAP }), undefined);
      assert.deepEqual(
        srv.hits.map((h) => h.url?.split('/referrers/')[0]),
        ['/v2/not/yet', '/v2/not/yet', '/v2/edge/case', '/v2/not/yet'],
      );
    } finally {
      await client.close();
      await srv.close();
    }
  });

  it('honours Retry-After on 429 and 503, then succeeds; gives up after the retries', async () => {
    const srv = await fakeServer((_req, res, n) => {
      if (n === 1) res.writeHead(429, { 'retry-after': '3' }).end();
      else if (n === 2) res.writeHead(503, { 'retry-after': new Date(Date.now() + 60_000).toUTCString() }).end();
      else res.writeHead(200).end(manifest);
    });
    const clock = testClock();
    const client = new UndiciRegistryClient({ insecure: [srv.host], clock });
    try {
      const m = await client.getManifest(repoAt(srv.host), manifestDigest, ACCEPT, { maxBytes: CAP });
      assert.equal(m.digest, manifestDigest);
      assert.equal(clock.sleeps.length, 2);
      assert.equal(clock.sleeps[0], 3000);
      assert.equal(clock.sleeps[1], 10_000, 'an HTTP-date a minute away is capped at 10 s');
    } finally {
      await client.close();
      await srv.close();
    }
    const down = await fakeServer((_req, res) => res.writeHead(503).end());
    const c2 = new UndiciRegistryClient({ insecure: [down.host], clock: testClock(), retries: 2 });
    try {
      await rejectsWith(c2.getManifest(repoAt(down.host), manifestDigest, ACCEPT, { maxBytes: CAP }), { code: 'RegistryUnavailable', reason: 'REGISTRY_ERROR' });
      assert.equal(down.hits.length, 3);
    } finally {
      await c2.close();
      await down.close();
    }
    // No retry on other 4xx.
    const bad = await fakeServer((_req, res) => res.writeHead(400).end('{"errors":[{"code":"NAME_INVALID","message":"bad\\u0007name"}]}'));
    const c3 = new UndiciRegistryClient({ insecure: [bad.host], clock: testClock() });
    try {
      const e = await rejectsWith(c3.getManifest(repoAt(bad.host), manifestDigest, ACCEPT, { maxBytes: CAP }), { code: 'RegistryUnavailable', reason: 'REGISTRY_ERROR' });
      // The message names the registry's error code; its text is kept apart, control characters replaced.
      assert.match(e.message, /400 \(NAME_INVALID\)$/);
      assert.equal(e.registryText, 'bad?name');
      assert.equal(e.context.actual, 400);
      assert.equal(bad.hits.length, 1);
    } finally {
      await c3.close();
      await bad.close();
    }
  });

  it('uploads follow a relative Location; putManifest refuses a registry that stored other bytes', async () => {
    const seen: string[] = [];
    const srv = await fakeServer((req, res) => {
      seen.push(`${req.method} ${req.url}`);
      if (req.method === 'HEAD') return void res.writeHead(404).end();
      if (req.method === 'POST') return void res.writeHead(202, { location: '/v2/edge/case/blobs/uploads/u1?_state=a%3Db' }).end();
      if (req.method === 'PUT' && req.url?.includes('/blobs/')) return void res.writeHead(201).end();
      res.writeHead(201, { 'docker-content-digest': DIGEST_A }).end();
    });
    const client = new UndiciRegistryClient({ insecure: [srv.host] });
    try {
      const d = await client.putBlob(repoAt(srv.host), Buffer.from('x'));
      assert.equal(seen[2], `PUT /v2/edge/case/blobs/uploads/u1?_state=a%3Db&digest=${encodeURIComponent(d)}`);
      const e = await rejectsWith(client.putManifest(repoAt(srv.host), 'v1', manifest, MEDIA_TYPE_OCI_MANIFEST), { code: 'SecurityProfileInvalid' });
      assert.equal(e.context.actual, DIGEST_A);
      await rejectsWith(client.putManifest(repoAt(srv.host), DIGEST_A, manifest, MEDIA_TYPE_OCI_MANIFEST), { code: 'InvalidArgument' });
    } finally {
      await client.close();
      await srv.close();
    }
  });

  it("a mirror never receives the registry's credentials", async () => {
    const mirror = await fakeServer((_req, res) => res.writeHead(401, { 'www-authenticate': 'Basic realm="m"' }).end());
    const source = await fakeServer((req, res) => {
      if (!req.headers.authorization) return void res.writeHead(401, { 'www-authenticate': 'Basic realm="s"' }).end();
      res.writeHead(200).end(manifest);
    });
    const client = new UndiciRegistryClient({
      insecure: [mirror.host, source.host],
      mirrors: { [source.host]: [mirror.host] },
      credentials: credentialsFromEntries({ [source.host]: { kind: 'basic', username: 'node', password: 'n' } }),
    });
    try {
      const repo = repoAt(source.host);
      const m = await client.getManifest(repo, manifestDigest, ACCEPT, { maxBytes: CAP, useMirrors: true });
      assert.equal(m.servedBy, source.host);
      await client.getManifest(repo, manifestDigest, ACCEPT, {
        maxBytes: CAP,
        useMirrors: true,
        credential: { kind: 'basic', username: 'pod', password: 'p' },
      });
      assert.equal(mirror.hits.length, 2);
      assert.ok(mirror.hits.every((h) => h.headers.authorization === undefined));
      const podAuth = `Basic ${Buffer.from('pod:p').toString('base64')}`;
      assert.equal(source.hits.at(-1)!.headers.authorization, podAuth, 'the per-request credential went to the source');
    } finally {
      await client.close();
      await Promise.all([mirror.close(), source.close()]);
    }
  });

  // Test timeouts here are hang guards, not timing assertions.
  it('a dead registry is RegistryUnavailable; referrers 5xx is never "no referrers"', { timeout: 30_000 }, async () => {
    const port = await freePort();
    const client = new UndiciRegistryClient({ insecure: [`127.0.0.1:${port}`] });
    try {
      await rejectsWith(client.getManifest(repoAt(`127.0.0.1:${port}`), manifestDigest, ACCEPT, { maxBytes: CAP }), { code: 'RegistryUnavailable', reason: 'TRANSPORT' });
    } finally {
      await client.close();
    }
    const srv = await fakeServer((_req, res) => res.writeHead(500).end());
    const c2 = new UndiciRegistryClient({ insecure: [srv.host], retries: 0 });
    try {
      await rejectsWith(c2.getReferrers(repoAt(srv.host), DIGEST_A, { maxBytes: CAP }), { code: 'RegistryUnavailable' });
    } finally {
      await c2.close();
      await srv.close();
    }
  });

  it('a registry that accepts but never answers times out; a request in flight is cancelled by its signal', { timeout: 30_000 }, async () => {
    let secondArrived!: () => void;
    const inFlight = new Promise<void>((r) => (secondArrived = r));
    // Never responds; says when the second request is there.
    const srv = await fakeServer((_req, _res, n) => n === 2 && secondArrived());
    const client = new UndiciRegistryClient({ insecure: [srv.host], timeoutMs: 300 });
    try {
      await rejectsWith(client.getManifest(repoAt(srv.host), manifestDigest, ACCEPT, { maxBytes: CAP }), { code: 'RegistryUnavailable', reason: 'TRANSPORT' });
      const ac = new AbortController();
      const p = client.getManifest(repoAt(srv.host), manifestDigest, ACCEPT, { maxBytes: CAP, signal: ac.signal });
      await inFlight;
      ac.abort();
      await rejectsWith(p, { code: 'RegistryUnavailable', reason: 'CANCELLED' });
    } finally {
      await client.close();
      await srv.close();
    }
  });

  it('a redirect to another origin drops Authorization; to a non-insecure http host is refused', async () => {
    const blob = Buffer.from('redirected blob');
    const blobDigest = sha256Digest(blob);
    const storage = await fakeServer((_req, res) => res.writeHead(200).end(blob));
    const reg = await fakeServer((req, res) => {
      if (req.headers.authorization !== `Basic ${Buffer.from('u:p').toString('base64')}`) {
        res.writeHead(401, { 'www-authenticate': 'Basic realm="x"' }).end();
      } else res.writeHead(307, { location: `${storage.url}/blob-data?sig=1` }).end();
    });
    const client = new UndiciRegistryClient({
      insecure: [reg.host, storage.host],
      credentials: credentialsFromEntries({ [reg.host]: { kind: 'basic', username: 'u', password: 'p' } }),
    });
    const strict = new UndiciRegistryClient({
      insecure: [reg.host],
      credentials: credentialsFromEntries({ [reg.host]: { kind: 'basic', username: 'u', password: 'p' } }),
    });
    try {
      let dispatched = 0;
      const b = await client.getBlob(repoAt(reg.host), blobDigest, { maxBytes: CAP, onDispatched: () => dispatched++ });
      assert.ok(b.bytes.equals(blob));
      assert.equal(b.servedBy, reg.host);
      assert.equal(dispatched, reg.hits.length + storage.hits.length, 'onDispatched once per request handed to a pool, each hop included');
      assert.equal(storage.hits.length, 1);
      assert.equal(storage.hits[0]!.headers.authorization, undefined);
      assert.equal(storage.hits[0]!.url, '/blob-data?sig=1');
      await rejectsWith(strict.getBlob(repoAt(reg.host), blobDigest, { maxBytes: CAP }), { code: 'RegistryUnavailable', reason: 'INSECURE_REFUSED' });
      assert.equal(storage.hits.length, 1);
    } finally {
      await Promise.all([client.close(), strict.close()]);
      await Promise.all([reg.close(), storage.close()]);
    }
  });

  it("Docker Hub: credentials go to its token service auth.docker.io, over https only; any other host's realm stays anonymous", async () => {
    // Each origin the client opens is routed to a local server: the names are Docker Hub's own.
    let realmUrl = 'https://auth.docker.io/token';
    const rig = await bearerRig({
      credentialHost: 'docker.io',
      insecure: ['auth.docker.io'],
      service: 'registry.docker.io',
      realm: () => realmUrl,
      routes: (hub, tokens) => ({ 'https://registry-1.docker.io': hub, 'https://auth.docker.io': tokens, 'http://auth.docker.io': tokens, 'https://auth.docker.io.example': tokens }),
    });
    const { tokens, fresh } = rig;
    const hubRepo = { registry: 'docker.io', repository: 'alice/profiles' };
    try {
      await fresh().getManifest(hubRepo, manifestDigest, ACCEPT, { maxBytes: CAP });
      assert.equal(tokens.hits.at(-1)!.headers.authorization, 'Basic YWxpY2U6czNjcmV0');
      for (const elsewhere of ['http://auth.docker.io/token', 'https://auth.docker.io.example/token']) {
        realmUrl = elsewhere;
        const before = tokens.hits.length;
        await rejectsWith(fresh().getManifest(hubRepo, manifestDigest, ACCEPT, { maxBytes: CAP }), { code: 'Unauthenticated', reason: 'AUTH_WITHHELD' });
        assert.equal(tokens.hits.length, before + 1);
        assert.equal(tokens.hits.at(-1)!.headers.authorization, undefined, elsewhere);
      }
    } finally {
      await rig.close();
    }
  });

  it('credentials of a registry reached over https never go to a realm over plain http, even on its own host name', async () => {
    // Each origin the client opens is routed to a local server; the realm's port is listed insecure.
    let realmUrl = 'http://registry.test:5001/token';
    const rig = await bearerRig({
      credentialHost: 'registry.test',
      insecure: ['registry.test:5001'],
      service: 'svc',
      realm: () => realmUrl,
      routes: (registry, tokens) => ({ 'https://registry.test': registry, 'http://registry.test:5001': tokens, 'https://registry.test:5001': tokens }),
    });
    const { tokens, fresh } = rig;
    const repo = { registry: 'registry.test', repository: 'alice/profiles' };
    try {
      await rejectsWith(fresh().getManifest(repo, manifestDigest, ACCEPT, { maxBytes: CAP }), { code: 'Unauthenticated', reason: 'AUTH_WITHHELD' });
      assert.equal(tokens.hits.length, 1);
      assert.equal(tokens.hits[0]!.headers.authorization, undefined);
      // The same realm over https, on another port of the registry's host name, gets them.
      realmUrl = 'https://registry.test:5001/token';
      await fresh().getManifest(repo, manifestDigest, ACCEPT, { maxBytes: CAP });
      assert.equal(tokens.hits.at(-1)!.headers.authorization, 'Basic YWxpY2U6czNjcmV0');
    } finally {
      await rig.close();
    }
  });

  it('a cached token the registry rejects is refetched once; a realm on another host gets no credentials', async () => {
    let accept = 'T1';
    let issued = 0;
    let otherRealm = false;
    // Another host name on loopback (Linux routes all of 127/8 locally).
    const realm = await fakeServer((_req, res) => res.writeHead(200).end(JSON.stringify({ token: 'R', expires_in: 300 })), '127.0.0.2');
    let regHost = '';
    const reg = await fakeServer((req, res) => {
      if (req.url?.startsWith('/token')) {
        issued++;
        return void res.writeHead(200).end(JSON.stringify({ token: `T${issued}` }));
      }
      if (req.headers.authorization === `Bearer ${accept}`) return void res.writeHead(200).end(manifest);
      const realmUrl = otherRealm ? `${realm.url}/token` : `http://${regHost}/token`;
      res.writeHead(401, { 'www-authenticate': `Bearer realm="${realmUrl}",service="svc",scope="repository:edge/case:pull"` }).end();
    });
    regHost = reg.host;
    const options = {
      insecure: [reg.host, realm.host],
      credentials: credentialsFromEntries({ [reg.host]: { kind: 'basic', username: 'u', password: 'p' } }),
    };
    const client = new UndiciRegistryClient(options);
    const fresh = new UndiciRegistryClient(options);
    try {
      const repo = repoAt(reg.host);
      await client.getManifest(repo, manifestDigest, ACCEPT, { maxBytes: CAP }); // 401, token T1, 200
      accept = 'T2';
      await client.getManifest(repo, manifestDigest, ACCEPT, { maxBytes: CAP }); // cached T1 → 401 → T2 → 200
      assert.equal(issued, 2);
      accept = 'never';
      await rejectsWith(client.getManifest(repo, manifestDigest, ACCEPT, { maxBytes: CAP }), { code: 'Unauthenticated' }); // T2 → 401 → T3 → 401
      assert.equal(issued, 3);
      const tokenHits = reg.hits.filter((h) => h.url?.startsWith('/token'));
      assert.ok(tokenHits.every((h) => h.headers.authorization?.startsWith('Basic ')), 'a same-host realm gets the credentials');
      // A realm on another host is asked anonymously.
      otherRealm = true;
      accept = 'R';
      await fresh.getManifest(repo, manifestDigest, ACCEPT, { maxBytes: CAP });
      assert.equal(realm.hits.length, 1);
      assert.equal(realm.hits[0]!.headers.authorization, undefined);
    } finally {
      await Promise.all([client.close(), fresh.close()]);
      await Promise.all([reg.close(), realm.close()]);
    }
  });
});
