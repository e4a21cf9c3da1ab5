// On SIGTERM the shim waits up to shutdownGraceMs for unary calls in flight (src/cri/server.ts
// close()): how that grace is measured.

import assert from 'node:assert/strict';
import { connect, createServer, type ServerHttp2Stream } from 'node:http2';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { encodeFrame } from '../../../src/cri/frame.js';
import { ShimServer } from '../../../src/cri/server.js';
import { stubShimDeps } from '../../helpers/shim.js';

const DAY_MS = 86_400_000;
const GRACE_MS = 30_000;
/** A unary call the test's runtime answers only when told to. */
const HELD = '/runtime.v1.RuntimeService/ExecSync';

/**
 * A shim in front of a runtime that holds HELD calls, a client call to HELD in flight, the wall
 * clock mocked from 2025-06-02 and a monotonic clock the test moves. `reads` resolves the next
 * time the shim reads the monotonic clock.
 */
async function rig(t: TestContext) {
  const dir = mkdtempSync(join(tmpdir(), 'spoke-drain-'));
  let release!: () => void;
  const released = new Promise<void>((r) => (release = r));
  let arrived!: () => void;
  const held = new Promise<void>((r) => (arrived = r));
  const heldStreams: ServerHttp2Stream[] = [];
  const runtime = createServer();
  runtime.on('stream', (s: ServerHttp2Stream, h) => {
    s.on('error', () => {});
    s.resume();
    s.on('end', () => {
      const answer = () => {
        if (s.destroyed) return;
        s.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
        s.on('wantTrailers', () => s.sendTrailers({ 'grpc-status': '0' }));
        s.end(encodeFrame(Buffer.alloc(0)));
      };
      if (h[':path'] !== HELD) return answer();
      heldStreams.push(s);
      arrived();
      void released.then(answer);
    });
  });
  await new Promise<void>((r) => runtime.listen(join(dir, 'up.sock'), () => r()));
  t.mock.timers.enable({ apis: ['Date'], now: Date.parse('2025-06-02T00:00:00Z') });
  const clocks = { mono: 0, onRead: undefined as (() => void) | undefined };
  const shim = new ShimServer({
    listen: join(dir, 'shim.sock'),
    upstream: join(dir, 'up.sock'),
    deps: stubShimDeps(join(dir, 'store'), join(dir, 'seccomp')),
    shutdownGraceMs: GRACE_MS,
    monotonicNow: () => {
      clocks.onRead?.();
      return clocks.mono;
    },
  });
  await shim.start();
  const client = connect('http://localhost', { path: join(dir, 'shim.sock') } as never);
  client.on('error', () => {});
  const req = client.request({ ':method': 'POST', ':path': HELD, 'content-type': 'application/grpc', te: 'trailers' });
  req.on('error', () => {});
  req.resume();
  /** The call's grpc-status, or undefined when it was cut without one. */
  const status = new Promise<string | undefined>((resolve) => {
    let got: string | undefined;
    req.on('trailers', (tr) => (got = tr['grpc-status'] as string | undefined));
    req.on('close', () => resolve(got));
  });
  req.end(encodeFrame(Buffer.alloc(0)));
  await held;
  const reads = () => new Promise<void>((r) => (clocks.onRead = r));
  const cleanup = async () => {
    client.destroy();
    for (const s of heldStreams) s.destroy();
    await new Promise((r) => runtime.close(r));
    rmSync(dir, { recursive: true, force: true });
  };
  return { shim, clocks, status, release, reads, cleanup };
}

describe('shutdown drain', () => {
  it('a wall clock stepped forward a day does not cut the calls in flight: they finish within the grace', { timeout: 10_000 }, async (t) => {
    const { shim, clocks, status, release, reads, cleanup } = await rig(t);
    try {
      const closing = shim.close();
      t.mock.timers.setTime(Date.now() + DAY_MS);
      // The drain looks at the time again (a second later) or, measuring on the wall clock, ends.
      clocks.mono += 1000;
      await Promise.race([reads(), status]);
      release();
      assert.equal(await status, '0', 'the call in flight got its answer');
      await closing;
    } finally {
      await cleanup();
    }
  });

  it('a wall clock stepped back a day does not stretch the grace: past it the calls in flight are cut', { timeout: 10_000 }, async (t) => {
    const { shim, clocks, status, cleanup } = await rig(t);
    try {
      const closing = shim.close();
      t.mock.timers.setTime(Date.now() - DAY_MS + GRACE_MS);
      clocks.mono += GRACE_MS;
      await closing;
      assert.equal(await status, undefined, 'the call in flight was cut, not answered');
    } finally {
      await cleanup();
    }
  });
});
