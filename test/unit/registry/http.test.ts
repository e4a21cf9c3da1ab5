// The transport's per-origin pools are bounded: redirects to ever new origins close the least
// recently used pool instead of growing the map, and a request on a closed pool still finishes.
// Real undici pools against real HTTP servers on 127.0.0.1.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { PassThrough } from 'node:stream';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { after, describe, it } from 'node:test';
import { Pool, type Dispatcher } from 'undici';
import { silentLogger, systemClock } from '../../../src/core/runtime.js';
import { Transport, discard, readCappedKeeping, type HttpResponse } from '../../../src/registry/http.js';
import { rejectsWith } from '../../helpers/assert.js';

const servers: Server[] = [];

async function serve(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<string> {
  const s = createServer(handler);
  servers.push(s);
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const a = s.address();
  return `http://127.0.0.1:${typeof a === 'object' && a ? a.port : 0}`;
}

function transport(maxPools: number, pools: Map<string, Pool>): Transport {
  return new Transport({
    allowsHttp: () => true,
    ca: undefined,
    timeoutMs: 10_000,
    totalTimeoutMs: 300_000,
    connectTimeoutMs: 5_000,
    userAgent: 'spoke-test',
    dispatcherFactory: (origin): Dispatcher => {
      const p = new Pool(origin);
      pools.set(origin, p);
      return p;
    },
    clock: systemClock,
    logger: silentLogger,
    maxPools,
  });
}

describe('Transport pools', () => {
  after(async () => {
    for (const s of servers) {
      s.closeAllConnections();
      await new Promise<void>((r) => s.close(() => r()));
    }
  });

  it('redirects to new origins evict the least recently used pool (cap 2)', async () => {
    const targets = await Promise.all(Array.from({ length: 5 }, () => serve((_req, res) => res.end('ok'))));
    const front = await serve((req, res) => res.writeHead(302, { location: `${targets[Number(req.url!.slice(1))]}/x` }).end());
    const pools = new Map<string, Pool>();
    const t = transport(2, pools);
    try {
      for (let i = 0; i < targets.length; i++) {
        const res = await t.sendFollowing({ method: 'GET', url: new URL(`${front}/${i}`), headers: {} }, {});
        assert.equal(res.status, 200);
        await discard(res);
        const open = [...pools.values()].filter((p) => !p.closed);
        assert.ok(open.length <= 2, `${open.length} pools open after ${i + 1} redirects`);
      }
      assert.equal(pools.size, 6, 'one pool was made per origin');
      // The front origin is used on every request, so it is never the least recently used.
      assert.equal(pools.get(front)!.closed, false);
      assert.equal(pools.get(targets.at(-1)!)!.closed, false);
      assert.ok(targets.slice(0, -1).every((o) => pools.get(o)!.closed));
    } finally {
      await t.close();
    }
  });

  it('a request in flight on an evicted pool still completes', async () => {
    let answer: (() => void) | undefined;
    let onArrival: () => void = () => {};
    const arrived = new Promise<void>((r) => (onArrival = r));
    const slow = await serve((_req, res) => {
      answer = () => res.end('late');
      onArrival();
    });
    const others = await Promise.all([serve((_q, s) => s.end('a')), serve((_q, s) => s.end('b'))]);
    const pools = new Map<string, Pool>();
    const t = transport(1, pools);
    try {
      const pending = t.send({ method: 'GET', url: new URL(`${slow}/held`), headers: {} });
      await arrived;
      for (const o of others) await discard(await t.send({ method: 'GET', url: new URL(`${o}/x`), headers: {} }));
      assert.equal(pools.get(slow)!.closed, true);
      answer!();
      const res = await pending;
      assert.equal(res.status, 200);
      assert.equal(await res.body.text(), 'late');
    } finally {
      await t.close();
    }
  });
});

describe('plain HTTP only where allowed', () => {
  const allowed = new Set(['reg.local:80', 'reg.local:5000']);
  const t = new Transport({ allowsHttp: (h) => allowed.has(h), ca: undefined, timeoutMs: 1_000, totalTimeoutMs: 1_000, connectTimeoutMs: 1_000, userAgent: 'spoke-test', dispatcherFactory: undefined, clock: systemClock, logger: silentLogger });
  const check = (url: string) => t.checkScheme(new URL(url), 'token realm', {});

  it('a host allowed it with its default port keeps it though the URL drops the port', () => {
    check('http://reg.local:80/token');
    check('http://reg.local/token');
    check('http://reg.local:5000/token');
  });

  it('every other host and port is refused', () => {
    for (const url of ['http://reg.local:8080/token', 'http://other.local/token', 'http://other.local:80/token']) {
      assert.throws(() => check(url), (e: unknown) => (e as { reason?: string }).reason === 'INSECURE_REFUSED', url);
    }
    check('https://other.local/token');
  });
});

describe('readCappedKeeping', () => {
  const response = (chunks: Buffer[]): HttpResponse => {
    const body = new PassThrough();
    for (const c of chunks) body.write(c);
    body.end();
    return { status: 200, headers: {}, body: body as unknown as HttpResponse['body'], url: new URL('http://registry.test/v2/x/blobs/sha256:0') };
  };
  const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

  it('holds at most `keep` bytes, counts and hashes them all, wherever the chunks split', async () => {
    const whole = Buffer.from('0123456789abcdef');
    for (const split of [[16], [3, 5, 8], [6, 10], [1, 1, 14], [7, 9]]) {
      const chunks: Buffer[] = [];
      let at = 0;
      for (const n of split) chunks.push(whole.subarray(at, (at += n)));
      for (const keep of [0, 1, 6, 7, 15, 16]) {
        const hash = createHash('sha256');
        const r = await readCappedKeeping(response(chunks), 64, keep, 'blob', {}, hash);
        assert.deepEqual(r.bytes, whole.subarray(0, keep), `split ${split} keep ${keep}`);
        assert.equal(r.length, 16);
        assert.equal(hash.digest('hex'), sha(whole));
      }
    }
    // A body shorter than `keep`: all of it, in a buffer of its own length.
    const short = await readCappedKeeping(response([whole.subarray(0, 5)]), 64, 10, 'blob', {});
    assert.deepEqual(short.bytes, whole.subarray(0, 5));
    assert.equal(short.length, 5);
  });

  it('a body at or under the cap with nothing held back reads as readCapped does; past the cap is SIZE_LIMIT', async () => {
    const whole = Buffer.alloc(40, 7);
    const r = await readCappedKeeping(response([whole.subarray(0, 10), whole.subarray(10)]), 40, 40, 'blob', {});
    assert.deepEqual(r.bytes, whole);
    await rejectsWith(readCappedKeeping(response([whole, Buffer.from('x')]), 40, 10, 'blob', {}), { code: 'SecurityProfileInvalid', reason: 'SIZE_LIMIT' });
  });
});
