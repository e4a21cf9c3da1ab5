// The shim's socket survives any client. Connections that break HTTP/2 after the preface (or
// never speak) are closed and their fds released; each connection gets a bounded number of
// streams, and a request body that stops arriving is answered and reset, while another client's
// calls go on. Raw HTTP/2 clients (test/helpers/h2raw.ts) play the misbehaving side against a
// real in-process shim in front of a real containerd; a scripted upstream shows that server
// streams and slow answers are not cut by the body timeout.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { connect as h2connect, constants as h2, createServer as h2createServer, type Http2Server, type IncomingHttpHeaders } from 'node:http2';
import { connect as netConnect } from 'node:net';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { startContainerd, type Containerd } from '../helpers/containerd.js';
import { CriClient } from '../helpers/cri-client.js';
import { FLAG, FRAME, H2_NO_ERROR, H2_REFUSED_STREAM, RawH2, frame, grpcRequestHeaders, resets } from '../helpers/h2raw.js';
import { stubShimDeps } from '../helpers/shim.js';
import { within } from '../helpers/wait.js';
import { MAX_CONCURRENT_STREAMS, ShimServer, type ConnectionLimits } from '../../src/cri/server.js';
import { encodeFrame } from '../../src/cri/frame.js';
import { bindName } from '../../src/cri/socket.js';
import { PATH_PULL_ARTIFACT, PATH_RUN_POD_SANDBOX } from '../../src/cri/methods.js';

const VERSION = '/runtime.v1.RuntimeService/Version';

/**
 * The shim's accepted connections on `sock`: /proc/net/unix lists each accepted socket under the
 * name the listener was bound under (bindName; state 03, connected). The shim runs in this process, so its fds are this
 * process's, and /proc/self/fd shows which of them are those sockets; other fds of the test
 * process (clients, containerd's) never count.
 */
function shimConnectionFds(sock: string): number {
  const inodes = new Set(
    readFileSync('/proc/net/unix', 'utf8')
      .split('\n')
      .map((l) => l.trim().split(/\s+/))
      .filter((f) => f.length === 8 && f[7] === bindName(sock) && f[5] === '03')
      .map((f) => f[6]),
  );
  let n = 0;
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/self/fd/${fd}`));
      if (m && inodes.has(m[1])) n++;
    } catch {
      // closed between readdir and readlink
    }
  }
  return n;
}


function summary(ms: number[]): string {
  const sorted = [...ms].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!.toFixed(2);
  return `${sorted.length} calls, p50 ${at(0.5)} ms, p99 ${at(0.99)} ms`;
}

describe('shim socket against misbehaving clients (real containerd)', { timeout: 300_000 }, () => {
  let ctrd: Containerd;
  let work: string;
  let n = 0;

  async function startShim(limits: Partial<ConnectionLimits>): Promise<{ shim: ShimServer; sock: string }> {
    const sock = join(work, `s${++n}.sock`);
    const shim = new ShimServer({ listen: sock, upstream: ctrd.socket, deps: stubShimDeps(join(work, `store${n}`), join(work, `sc${n}`)), limits });
    await shim.start();
    assert.ok(await shim.upstream.waitUp(5000));
    return { shim, sock };
  }

  before(async () => {
    ctrd = await startContainerd();
    work = mkdtempSync('/tmp/sks-');
  });

  after(async () => {
    await ctrd?.stop();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  test('200 connections that break HTTP/2 after the preface, or never speak, are closed: fds back to baseline, a CRI client still connects', async () => {
    const { shim, sock } = await startShim({ probeMs: 300 });
    try {
      assert.equal(shimConnectionFds(sock), 0);
      const conns: RawH2[] = [];
      for (let i = 0; i < 200; i++) {
        // Quarters: garbage (a "frame" far over the maximum size), a SETTINGS frame on a stream
        // (a connection error, RFC 9113 §6.5), silence after the preface, and no preface at all
        // (the last two never answer a ping).
        const kind = i % 4;
        const c = await RawH2.open(sock, { answerPings: kind < 2 });
        if (kind < 3) c.hello();
        if (kind === 0) c.write(Buffer.from('this is not an HTTP/2 frame, only garbage'));
        else if (kind === 1) c.write(frame(FRAME.SETTINGS, 0, 1));
        conns.push(c);
      }
      // The count sees them while they are open (the silent ones wait for the probe).
      assert.ok(shimConnectionFds(sock) > 0, 'the shim holds the connections it accepted');
      await within(Promise.all(conns.map((c) => c.closed)), 30_000, 'every broken connection closed by the shim');
      conns.forEach((c, i) => {
        if (i % 4 < 2) assert.ok(c.frames.some((f) => f.type === FRAME.GOAWAY), `connection ${i} was answered with GOAWAY`);
      });
      assert.equal(shimConnectionFds(sock), 0, 'no accepted connection left open by the shim');
      const cri = new CriClient(sock);
      try {
        assert.equal((await cri.rt('Version', { version: 'v1' })).runtime_name, 'containerd');
      } finally {
        cri.close();
      }
    } finally {
      await shim.close();
    }
  });

  test("the client's GOAWAY: the connection is destroyed after the grace even with a call still open", async () => {
    const { shim, sock } = await startShim({ goawayGraceMs: 300 });
    try {
      const c = await RawH2.open(sock);
      c.hello();
      c.write(frame(FRAME.HEADERS, FLAG.END_HEADERS, 1, grpcRequestHeaders(VERSION)));
      c.write(frame(FRAME.GOAWAY, 0, 0, Buffer.alloc(8)));
      await within(c.closed, 10_000, 'the connection closed after GOAWAY');
    } finally {
      await shim.close();
    }
  });

  test('never-finished streams over several connections: the excess refused, bodies reset after the timeout, another client keeps working', async (t) => {
    const { shim, sock } = await startShim({ requestBodyTimeoutMs: 2000 });
    const probe = new CriClient(sock);
    const attackers: RawH2[] = [];
    try {
      const quiet: number[] = [];
      for (let i = 0; i < 500; i++) {
        const t0 = performance.now();
        await probe.rt('Version', { version: 'v1' });
        quiet.push(performance.now() - t0);
      }
      const perConnection = MAX_CONCURRENT_STREAMS + 44;
      const ids = Array.from({ length: perConnection }, (_, i) => 1 + 2 * i);
      for (let i = 0; i < 4; i++) attackers.push(await RawH2.open(sock));
      // HEADERS without END_STREAM: each request stays open, its body never sent. The server's
      // SETTINGS are not acknowledged, so nghttp2 refuses the excess stream by stream.
      const headers = Buffer.concat(ids.map((id) => frame(FRAME.HEADERS, FLAG.END_HEADERS, id, grpcRequestHeaders(VERSION))));
      for (const a of attackers) {
        a.hello();
        a.write(headers);
      }
      const ended = within(Promise.all(attackers.map((a) => a.until((f) => resets(f).size === perConnection))), 60_000, "every attacker stream ended by the shim");
      let settled = false;
      ended.then(
        () => (settled = true),
        () => (settled = true),
      );
      const latencies: number[] = [];
      while (!settled) {
        const t0 = performance.now();
        await probe.rt('Version', { version: 'v1' });
        latencies.push(performance.now() - t0);
      }
      await ended;
      t.diagnostic(`probe Version: before the attack ${summary(quiet)}; during it ${summary(latencies)}`);

      for (const a of attackers) {
        const r = resets(a.frames);
        assert.deepEqual(
          ids.filter((id) => r.get(id) === H2_REFUSED_STREAM),
          ids.slice(MAX_CONCURRENT_STREAMS),
          'exactly the streams over the limit are refused',
        );
        for (const id of ids.slice(0, MAX_CONCURRENT_STREAMS)) {
          assert.equal(r.get(id), H2_NO_ERROR, `stream ${id} reset after the body timeout`);
          assert.ok(
            a.frames.some((f) => f.type === FRAME.HEADERS && f.stream === id && (f.flags & FLAG.END_STREAM) !== 0),
            `stream ${id} was answered before the reset`,
          );
        }
      }
      assert.equal((await probe.rt('Version', { version: 'v1' })).runtime_name, 'containerd');

      // One that acknowledged the limit and exceeds it anyway loses the connection (nghttp2 makes
      // it a connection error), and the shim lets go of it.
      const acked = await RawH2.open(sock);
      attackers.push(acked);
      acked.hello();
      await acked.until((f) => f.some((x) => x.type === FRAME.SETTINGS && (x.flags & FLAG.ACK) === 0));
      acked.write(frame(FRAME.SETTINGS, FLAG.ACK, 0));
      acked.write(headers);
      await within(acked.closed, 10_000, 'the connection over its acknowledged limit closed');
      assert.ok(acked.frames.some((f) => f.type === FRAME.GOAWAY));
    } finally {
      for (const a of attackers) a.destroy();
      probe.close();
      await shim.close();
    }
  });
});

// Against an upstream whose timing the test controls: what the body timeout must not cut. The
// connection probe runs every 100 ms here, so the calls below also outlive many pings.
describe('request body timeout (scripted upstream)', { timeout: 60_000 }, () => {
  const BODY_TIMEOUT_MS = 300;
  let work: string;
  let upstream: Http2Server;
  let shim: ShimServer;
  let sock: string;
  /** Calls the upstream received, with the RST code their stream closed with. */
  const seen: { path: string; closed: Promise<number> }[] = [];
  /** Told each call the upstream receives (the client's call through the shim is then in flight). */
  let onUpstreamCall: ((path: string) => void) | undefined;

  before(async () => {
    work = mkdtempSync('/tmp/skb-');
    upstream = h2createServer();
    upstream.on('stream', (stream, headers) => {
      const rec = { path: String(headers[':path']), closed: new Promise<number>((r) => stream.on('close', () => r(stream.rstCode))) };
      seen.push(rec);
      onUpstreamCall?.(rec.path);
      stream.on('error', () => {});
      if (rec.path.endsWith('/Events')) {
        stream.respond({ ':status': 200, 'content-type': 'application/grpc' });
        const tick = setInterval(() => stream.write(encodeFrame(Buffer.from([0x0a, 0x01, 0x78]))), 30);
        stream.on('close', () => clearInterval(tick));
      } else if (rec.path.endsWith('/Late')) {
        // The request is complete at once; the answer comes well after the body timeout.
        stream.on('data', () => {});
        stream.on('end', () =>
          setTimeout(() => {
            if (stream.closed) return;
            stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
            stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
            stream.end(encodeFrame(Buffer.alloc(0)));
          }, 4 * BODY_TIMEOUT_MS),
        );
      } else if (rec.path.endsWith('/Stalled')) {
        stream.on('data', () => {});
      } else {
        // The shim's own calls (the in-use rebuild's List*): nothing here.
        stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': String(grpc.status.UNIMPLEMENTED) }, { endStream: true });
      }
    });
    await new Promise<void>((r) => upstream.listen(join(work, 'up.sock'), () => r()));
    sock = join(work, 'shim.sock');
    shim = new ShimServer({ listen: sock, upstream: join(work, 'up.sock'), deps: stubShimDeps(join(work, 'store'), join(work, 'sc')), limits: { requestBodyTimeoutMs: BODY_TIMEOUT_MS, probeMs: 100 } });
    await shim.start();
  });

  after(async () => {
    await shim?.close();
    await new Promise<void>((r) => upstream.close(() => r()));
    rmSync(work, { recursive: true, force: true });
  });

  /** Sends request headers and 5 bytes announcing a 10-byte message, then nothing. */
  async function stall(path: string): Promise<{ grpcStatus: unknown; rstCode: number | undefined }> {
    const session = h2connect('http://localhost', { createConnection: () => netConnect(sock) });
    session.on('error', () => {});
    try {
      const req = session.request({ ':method': 'POST', ':path': path, 'content-type': 'application/grpc', te: 'trailers', 'grpc-timeout': '99999999H' }, { endStream: false });
      req.on('error', () => {});
      req.write(Buffer.from([0, 0, 0, 0, 10]));
      const closed = new Promise((r) => req.once('close', r));
      const response = await within(new Promise<IncomingHttpHeaders>((r) => req.once('response', r)), 10_000, `an answer to the stalled ${path}`);
      await within(closed, 10_000, `the stalled ${path} closed`);
      return { grpcStatus: response['grpc-status'], rstCode: req.rstCode };
    } finally {
      session.destroy();
    }
  }

  test('a body that stops arriving is answered DEADLINE_EXCEEDED and reset, even under a long grpc-timeout; the upstream call is cancelled', async () => {
    const { grpcStatus, rstCode } = await stall('/runtime.v1.RuntimeService/Stalled');
    assert.equal(grpcStatus, String(grpc.status.DEADLINE_EXCEEDED));
    assert.equal(rstCode, h2.NGHTTP2_NO_ERROR);
    const rec = seen.find((s) => s.path === '/runtime.v1.RuntimeService/Stalled');
    assert.ok(rec, 'the call had reached the upstream');
    assert.equal(await within(rec.closed, 10_000, 'the upstream stream closed'), h2.NGHTTP2_CANCEL);
  });

  test('work put off with afterUnaryCall runs at once when no call is in flight, else when the call in flight has ended', async () => {
    let ran = 0;
    shim.afterUnaryCall(() => ran++);
    assert.equal(ran, 1, 'no call in flight: at once');
    let ranWhileInFlight: number | undefined;
    const ranAfter = new Promise<void>((resolve) => {
      onUpstreamCall = (path) => {
        if (path !== '/runtime.v1.RuntimeService/Stalled') return;
        shim.afterUnaryCall(() => {
          ran++;
          resolve();
        });
        ranWhileInFlight = ran;
      };
    });
    try {
      await stall('/runtime.v1.RuntimeService/Stalled');
      await within(ranAfter, 10_000, 'the work put off');
    } finally {
      onUpstreamCall = undefined;
    }
    assert.equal(ranWhileInFlight, 1, 'not while the call was in flight');
    assert.equal(ran, 2);
  });

  test('the same for calls the shim reads itself (an owned pull, an edited RunPodSandbox)', async () => {
    for (const path of [PATH_PULL_ARTIFACT, PATH_RUN_POD_SANDBOX]) {
      const { grpcStatus, rstCode } = await stall(path);
      assert.equal(grpcStatus, String(grpc.status.DEADLINE_EXCEEDED), path);
      assert.equal(rstCode, h2.NGHTTP2_NO_ERROR, path);
    }
    assert.ok(!seen.some((s) => s.path === PATH_RUN_POD_SANDBOX), 'the incomplete RunPodSandbox never reached the runtime');
  });

  test('a server stream and a slow unary answer outlive the body timeout (their requests were complete) and the pings', async () => {
    const cri = new CriClient(sock);
    try {
      const events = cri.client.makeServerStreamRequest('/runtime.v1.RuntimeService/Events', (b: Buffer) => b, (b: Buffer) => b, Buffer.alloc(0), new grpc.Metadata(), {});
      const failed = new Promise<grpc.ServiceError>((r) => events.on('error', r));
      const started = performance.now();
      // Events keep arriving for four body timeouts (an event wait: the stream's own messages).
      const lasted = new Promise<void>((r) => events.on('data', () => performance.now() - started > 4 * BODY_TIMEOUT_MS && r()));
      const late = cri.unaryFull('/runtime.v1.RuntimeService/Late', Buffer.alloc(0));
      const outcome = await within(Promise.race([lasted.then(() => 'ok'), failed.then((e) => `failed: ${e.code} ${e.details}`)]), 10_000, 'events for four body timeouts');
      assert.equal(outcome, 'ok');
      assert.equal((await late).error, null, 'the slow answer arrived');
      events.cancel();
    } finally {
      cri.close();
    }
  });
});
