// forward() (src/cri/relay.ts) between an in-process node:http2 client, front server and
// upstream server on unix sockets: when the answer goes before onComplete, onComplete runs only
// once the client's stream is closed, so the work it does never holds up the answer.

import assert from 'node:assert/strict';
import { connect, createServer, type ClientHttp2Session, type Http2Server, type IncomingHttpHeaders, type OutgoingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { BodyBudget, type Call, type CallHost, type RawHeaders } from '../../../src/cri/call.js';
import { MAX_BUFFERED_REQUEST_BYTES } from '../../../src/cri/connections.js';
import { encodeFrame } from '../../../src/cri/frame.js';
import { forward } from '../../../src/cri/relay.js';
import type { Upstream } from '../../../src/cri/upstream.js';
import { silentLogger } from '../../../src/core/runtime.js';
import { SHIM_REASON_TRAILER } from '../../../src/core/errors.js';
import { RuntimeCriClient } from '../../../src/recorder/cri.js';
import { rejectsWith } from '../../helpers/assert.js';
import { ShimServer } from '../../../src/cri/server.js';
import { H2CriClient } from '../../helpers/cri-client.js';
import { FLAG, FRAME, frame, headerBlock, rawUpstream } from '../../helpers/h2raw.js';
import { stubShimDeps } from '../../helpers/shim.js';
import { status as grpcStatus } from '@grpc/grpc-js';

const PATH = '/runtime.v1.RuntimeService/CreateContainer';

/** A CallHost forwarding to `upstreamSession`, recording nothing. */
function hostFor(upstreamSession: ClientHttp2Session): CallHost {
  return {
    upstream: { get: () => upstreamSession } as unknown as Upstream,
    logger: silentLogger,
    bodies: new BodyBudget(MAX_BUFFERED_REQUEST_BYTES),
    report: () => undefined,
    endCall: () => undefined,
  };
}

function listen(server: Http2Server, path: string): Promise<void> {
  return new Promise((resolve) => server.listen(path, resolve));
}

describe('forward with completeAfterResponse', () => {
  let dir: string;
  let upstreamServer: Http2Server;
  let front: Http2Server;
  let upstreamSession: ClientHttp2Session;
  let client: ClientHttp2Session;
  /** What each onComplete saw: the client stream already closed, and the status it was given. */
  const seen: { closed: boolean; status: string | undefined }[] = [];
  let trailersOnly = false;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'spoke-relay-'));
    upstreamServer = createServer();
    upstreamServer.on('stream', (s) => {
      s.resume();
      s.on('end', () => {
        if (trailersOnly) {
          s.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '5' }, { endStream: true });
          return;
        }
        s.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
        s.on('wantTrailers', () => s.sendTrailers({ 'grpc-status': '0' }));
        s.end(encodeFrame(Buffer.from([0x0a, 0x02, 0x69, 0x64])));
      });
    });
    await listen(upstreamServer, join(dir, 'up.sock'));
    upstreamSession = connect('http://localhost', { path: join(dir, 'up.sock') } as never);
    const host = hostFor(upstreamSession);
    front = createServer();
    front.on('stream', (stream: ServerHttp2Stream, _headers: IncomingHttpHeaders, _flags: number, rawHeaders: RawHeaders) => {
      const call: Call = { stream, path: PATH, streaming: false, started: performance.now(), reported: false, up: undefined, requestDone: false, rawHeaders, release: undefined };
      stream.resume();
      forward(host, call, {
        body: encodeFrame(Buffer.alloc(0)),
        teeResponse: true,
        completeAfterResponse: true,
        onComplete: async (status) => {
          seen.push({ closed: stream.closed, status });
        },
      });
    });
    await listen(front, join(dir, 'front.sock'));
    client = connect('http://localhost', { path: join(dir, 'front.sock') } as never);
  });

  after(async () => {
    client.close();
    upstreamSession.close();
    await new Promise((r) => front.close(r));
    await new Promise((r) => upstreamServer.close(r));
    rmSync(dir, { recursive: true, force: true });
  });

  async function call(): Promise<string | undefined> {
    const req = client.request({ ':method': 'POST', ':path': PATH, 'content-type': 'application/grpc' });
    req.end(encodeFrame(Buffer.alloc(0)));
    req.resume();
    let status: string | undefined;
    req.on('response', (h) => (status ??= h['grpc-status'] as string | undefined));
    req.on('trailers', (t) => (status = t['grpc-status'] as string | undefined));
    await new Promise((r) => req.on('close', r));
    return status;
  }

  for (const [what, only, status] of [
    ['a response with trailers', false, '0'],
    ['a trailers-only response', true, '5'],
  ] as const) {
    it(`${what}: onComplete runs after the client stream closed`, async () => {
      seen.length = 0;
      trailersOnly = only;
      assert.equal(await call(), status);
      while (seen.length === 0) await new Promise((r) => setImmediate(r));
      assert.deepEqual(seen, [{ closed: true, status }]);
    });
  }
});

describe('forward lets go of a finished call', () => {
  it("once both streams have closed, neither holds a listener of the call's forwarding: a closed stream held past a young collection must not keep the call alive", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'spoke-relay-release-'));
    const upstreamServer = createServer();
    upstreamServer.on('stream', (s) => {
      s.resume();
      s.on('end', () => {
        s.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
        s.on('wantTrailers', () => s.sendTrailers({ 'grpc-status': '0' }));
        s.end(encodeFrame(Buffer.from([0x0a, 0x01, 0x78])));
      });
    });
    await listen(upstreamServer, join(dir, 'up.sock'));
    const upstreamSession = connect('http://localhost', { path: join(dir, 'up.sock') } as never);
    const host = hostFor(upstreamSession);
    const closed: { stream: ServerHttp2Stream; up: import('node:http2').ClientHttp2Stream }[] = [];
    const front = createServer();
    front.on('stream', (stream: ServerHttp2Stream, _headers: IncomingHttpHeaders, _flags: number, rawHeaders: RawHeaders) => {
      const call: Call = { stream, path: PATH, streaming: false, started: performance.now(), reported: false, up: undefined, requestDone: false, rawHeaders, release: undefined };
      // As the shim's server does when the client's stream closes (src/cri/server.ts onStream).
      stream.on('close', () => {
        call.release?.();
        closed.push({ stream, up });
      });
      forward(host, call, {});
      const up = call.up!;
    });
    await listen(front, join(dir, 'front.sock'));
    const client = connect('http://localhost', { path: join(dir, 'front.sock') } as never);
    try {
      const req = client.request({ ':method': 'POST', ':path': PATH, 'content-type': 'application/grpc' });
      req.end(encodeFrame(Buffer.alloc(0)));
      req.resume();
      await new Promise((r) => req.on('close', r));
      while (closed.length === 0 || !closed[0]!.up.closed) await new Promise((r) => setImmediate(r));
      const { stream, up } = closed[0]!;
      for (const event of ['data', 'wantTrailers'] as const) assert.equal(stream.listenerCount(event), 0, `client stream: ${event}`);
      for (const event of ['response', 'trailers', 'data', 'close'] as const) assert.equal(up.listenerCount(event), 0, `upstream stream: ${event}`);
    } finally {
      client.close();
      upstreamSession.close();
      await new Promise((r) => front.close(r));
      await new Promise((r) => upstreamServer.close(r));
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('forward against an upstream answering what node:http2 refuses to send', () => {
  it('an HTTP status outside 200–599 fails that call, as grpc-go reads it (UNKNOWN), and the shim goes on', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'spoke-relay-status-'));
    const upstream = await rawUpstream(join(dir, 'up.sock'), (sock, id) => {
      sock.write(frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, id, headerBlock({ ':status': '600', 'content-type': 'application/grpc', 'grpc-status': '0' })));
    });
    const shim = new ShimServer({ listen: join(dir, 'shim.sock'), upstream: join(dir, 'up.sock'), deps: stubShimDeps(join(dir, 'store'), join(dir, 'seccomp')) });
    await shim.start();
    const client = new H2CriClient(join(dir, 'shim.sock'));
    try {
      for (let i = 0; i < 2; i++) {
        // The status the client reads off the wire (H2CriClient reports it as `grpc-status N: message`).
        await assert.rejects(client.unaryRaw('/runtime.v1.RuntimeService/Version', Buffer.alloc(0)), new RegExp(`grpc-status ${grpcStatus.UNKNOWN}: .*HTTP status 600`), `call ${i}`);
      }
    } finally {
      client.close();
      await shim.close();
      upstream.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('forward against an upstream answering fields node:http2 refuses to send twice', () => {
  it('a single-value field given twice (content-type) in the headers or a trailers-only answer fails that call (UNKNOWN), and the shim goes on', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'spoke-relay-dup-'));
    let call = 0;
    const upstream = await rawUpstream(join(dir, 'up.sock'), (sock, id) => {
      const ct = headerBlock({ 'content-type': 'application/grpc' });
      // One answer with headers then data, one trailers-only, alternately.
      const end = call++ % 2 === 0 ? 0 : FLAG.END_STREAM;
      sock.write(frame(FRAME.HEADERS, FLAG.END_HEADERS | end, id, Buffer.concat([headerBlock({ ':status': '200' }), ct, ct, ...(end ? [headerBlock({ 'grpc-status': '0' })] : [])])));
    });
    const shim = new ShimServer({ listen: join(dir, 'shim.sock'), upstream: join(dir, 'up.sock'), deps: stubShimDeps(join(dir, 'store'), join(dir, 'seccomp')) });
    await shim.start();
    const client = new H2CriClient(join(dir, 'shim.sock'));
    try {
      for (let i = 0; i < 4; i++) {
        await assert.rejects(client.unaryRaw('/runtime.v1.RuntimeService/Version', Buffer.alloc(0)), new RegExp(`grpc-status ${grpcStatus.UNKNOWN}: .*cannot relay`), `call ${i}`);
      }
    } finally {
      client.close();
      await shim.close();
      upstream.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('forward keeps repeated metadata as repeated fields', () => {
  it('a key sent twice reaches the other side twice, in order, both ways: a -bin value is never joined with a comma', async () => {
    // grpc-go decodes each -bin field on its own: "AAEC, AwQ" is not base64.
    const dir = mkdtempSync(join(tmpdir(), 'spoke-relay-dup-'));
    const rawOf = (raw: RawHeaders, name: string) => raw.flatMap((v, i) => (i % 2 === 0 && v === name ? [raw[i + 1]!] : []));
    let upstreamSaw: string[] = [];
    /** The request's fields whose names a plain object inherits (constructor) or sets its prototype by (__proto__). */
    let upstreamOdd: string[][] = [];
    const upstream = createServer();
    upstream.on('stream', (s: ServerHttp2Stream, h: IncomingHttpHeaders, _f: number, raw: RawHeaders) => {
      // The shim's own calls (its in-use rebuild at connect) come here too.
      if (h[':path'] === '/runtime.v1.RuntimeService/Version') {
        upstreamSaw = rawOf(raw, 'x-a-bin');
        upstreamOdd = [rawOf(raw, 'constructor'), rawOf(raw, '__proto__')];
      }
      s.resume();
      s.on('end', () => {
        s.respond({ ':status': 200, 'content-type': 'application/grpc', 'x-h': ['1', '2'] }, { waitForTrailers: true });
        s.on('wantTrailers', () => s.sendTrailers({ 'grpc-status': '0', 'x-t-bin': ['AAEC', 'AwQ'] }));
        s.end(encodeFrame(Buffer.alloc(0)));
      });
    });
    await listen(upstream, join(dir, 'up.sock'));
    const shim = new ShimServer({ listen: join(dir, 'shim.sock'), upstream: join(dir, 'up.sock'), deps: stubShimDeps(join(dir, 'store'), join(dir, 'seccomp')) });
    await shim.start();
    const client = connect('http://localhost', { path: join(dir, 'shim.sock') } as never);
    try {
      const got = await new Promise<{ headers: string[]; trailers: string[] }>((resolve, reject) => {
        const req = client.request(Object.fromEntries([[':method', 'POST'], [':path', '/runtime.v1.RuntimeService/Version'], ['content-type', 'application/grpc'], ['x-a-bin', ['AAEC', 'AwQ']], ['constructor', 'c'], ['__proto__', 'p']]) as OutgoingHttpHeaders);
        let headers: string[] = [];
        req.on('response', (_h: IncomingHttpHeaders, _f: number, raw: RawHeaders) => (headers = rawOf(raw, 'x-h')));
        req.on('trailers', (_t: IncomingHttpHeaders, _f: number, raw: RawHeaders) => resolve({ headers, trailers: rawOf(raw, 'x-t-bin') }));
        req.on('error', reject);
        req.resume();
        req.end(encodeFrame(Buffer.alloc(0)));
      });
      assert.deepEqual(upstreamSaw, ['AAEC', 'AwQ'], 'request metadata');
      assert.deepEqual(upstreamOdd, [['c'], ['p']], 'fields named constructor and __proto__, as sent');
      assert.deepEqual(got.headers, ['1', '2'], 'response headers');
      assert.deepEqual(got.trailers, ['AAEC', 'AwQ'], 'trailers');
    } finally {
      client.close();
      await shim.close();
      await new Promise((r) => upstream.close(r));
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('forward never relays a spoke-reason field the runtime sends', () => {
  // The field marks the shim's own answers (docs/shim.md#forwarding): one from upstream (a second
  // shim chained there, a runtime sending it) would make spoke status take the runtime's answer
  // for this shim's own refusal.
  it('in a trailers-only answer and in the headers and trailers of a full one: the status and the rest pass, the field does not', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'spoke-relay-reason-'));
    const upstream = createServer();
    let trailersOnly = true;
    upstream.on('stream', (s: ServerHttp2Stream) => {
      s.resume();
      s.on('end', () => {
        const status = { 'grpc-status': '14', 'grpc-message': 'busy', [SHIM_REASON_TRAILER]: 'OVERLOADED' };
        if (trailersOnly) {
          s.respond({ ':status': 200, 'content-type': 'application/grpc', ...status }, { endStream: true });
          return;
        }
        s.respond({ ':status': 200, 'content-type': 'application/grpc', [SHIM_REASON_TRAILER]: 'OVERLOADED', 'x-h': '1' }, { waitForTrailers: true });
        s.on('wantTrailers', () => s.sendTrailers(status));
        s.end(encodeFrame(Buffer.alloc(0)));
      });
    });
    await listen(upstream, join(dir, 'up.sock'));
    const shim = new ShimServer({ listen: join(dir, 'shim.sock'), upstream: join(dir, 'up.sock'), deps: stubShimDeps(join(dir, 'store'), join(dir, 'seccomp')) });
    await shim.start();
    const client = connect('http://localhost', { path: join(dir, 'shim.sock') } as never);
    const cri = new RuntimeCriClient(join(dir, 'shim.sock'));
    const call = () =>
      new Promise<{ headers: IncomingHttpHeaders; trailers: IncomingHttpHeaders | undefined }>((resolve, reject) => {
        const req = client.request({ ':method': 'POST', ':path': '/runtime.v1.RuntimeService/Version', 'content-type': 'application/grpc' });
        let headers: IncomingHttpHeaders = {};
        let trailers: IncomingHttpHeaders | undefined;
        req.on('response', (h) => (headers = h));
        req.on('trailers', (t) => (trailers = t));
        req.on('close', () => resolve({ headers, trailers }));
        req.on('error', reject);
        req.resume();
        req.end(encodeFrame(Buffer.alloc(0)));
      });
    try {
      for (const only of [true, false]) {
        trailersOnly = only;
        const { headers, trailers } = await call();
        const status = only ? headers : trailers;
        assert.deepEqual([status?.['grpc-status'], status?.['grpc-message']], ['14', 'busy'], `trailers-only ${only}`);
        assert.equal(headers[SHIM_REASON_TRAILER], undefined, `headers, trailers-only ${only}`);
        assert.equal(trailers?.[SHIM_REASON_TRAILER], undefined, `trailers, trailers-only ${only}`);
        if (!only) assert.equal(headers['x-h'], '1', 'other fields pass');
        // spoke status reads the answer as its runtime's, not as this shim's own refusal.
        const e = await rejectsWith(cri.rt('Version', { version: 'v1' }, 3000), { code: 'Unavailable', reason: 'RUNTIME_ERROR' });
        assert.equal(e.context.shimReason, undefined);
      }
    } finally {
      client.close();
      cri.close();
      await shim.close();
      await new Promise((r) => upstream.close(r));
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
