// The statuses the shim gives itself carry their reason in a trailer of their own
// (SHIM_REASON_TRAILER, src/cri/unary.ts endWithStatus), on a real socket: a client (spoke status)
// tells the shim's refusal (OVERLOADED) and the shim's word for its runtime (TRANSPORT) from
// what the runtime answers, which the shim relays without that field.

import assert from 'node:assert/strict';
import { connect, createServer, type IncomingHttpHeaders } from 'node:http2';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { SHIM_REASON_TRAILER } from '../../../src/core/errors.js';
import { encodeFrame } from '../../../src/cri/frame.js';
import { GrpcCode } from '../../../src/cri/grpc-status.js';
import { PATH_PULL_PROFILE } from '../../../src/cri/methods.js';
import { ShimServer } from '../../../src/cri/server.js';
import { stubShimDeps } from '../../helpers/shim.js';

const VERSION = '/runtime.v1.RuntimeService/Version';

/** The status fields of one call's answer (trailers, or a trailers-only response). */
function statusOf(socket: string, path: string, message: Buffer): Promise<IncomingHttpHeaders> {
  const session = connect('http://localhost', { path: socket } as never);
  return new Promise<IncomingHttpHeaders>((resolve, reject) => {
    const req = session.request({ ':method': 'POST', ':path': path, 'content-type': 'application/grpc', te: 'trailers' });
    let status: IncomingHttpHeaders = {};
    req.on('response', (h) => {
      if (h['grpc-status'] !== undefined) status = h;
    });
    req.on('trailers', (t) => (status = t));
    req.on('error', reject);
    req.resume();
    req.on('close', () => resolve(status));
    req.end(encodeFrame(message));
  }).finally(() => session.close());
}

describe("the shim's own statuses carry their reason; its runtime's do not", () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'spoke-own-answers-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('no runtime behind it: TRANSPORT; past its body budget: OVERLOADED', async () => {
    const socket = join(dir, 'alone.sock');
    const shim = new ShimServer({ listen: socket, upstream: join(dir, 'none.sock'), deps: stubShimDeps(join(dir, 'store-alone'), join(dir, 'seccomp-alone')), limits: { maxBufferedRequestBytes: 64 } });
    await shim.start();
    try {
      const down = await statusOf(socket, VERSION, Buffer.alloc(0));
      assert.deepEqual([down['grpc-status'], down[SHIM_REASON_TRAILER]], [String(GrpcCode.UNAVAILABLE), 'TRANSPORT']);
      const overloaded = await statusOf(socket, PATH_PULL_PROFILE, Buffer.alloc(128));
      assert.deepEqual([overloaded['grpc-status'], overloaded[SHIM_REASON_TRAILER]], [String(GrpcCode.UNAVAILABLE), 'OVERLOADED']);
    } finally {
      await shim.close();
    }
  });

  it("the runtime's own UNAVAILABLE is relayed without the shim's reason", async () => {
    const runtime = createServer();
    runtime.on('stream', (s) => {
      s.resume();
      s.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': String(GrpcCode.UNAVAILABLE), 'grpc-message': 'not ready' }, { endStream: true });
    });
    await new Promise<void>((resolve) => runtime.listen(join(dir, 'runtime.sock'), resolve));
    const socket = join(dir, 'relay.sock');
    const shim = new ShimServer({ listen: socket, upstream: join(dir, 'runtime.sock'), deps: stubShimDeps(join(dir, 'store-relay'), join(dir, 'seccomp-relay')) });
    await shim.start();
    try {
      let said: IncomingHttpHeaders = {};
      // The shim connects to its runtime in the background: until then it answers for it.
      for (let i = 0; i < 100 && said['grpc-message'] !== 'not ready'; i++) {
        said = await statusOf(socket, VERSION, Buffer.alloc(0));
        if (said['grpc-message'] !== 'not ready') await new Promise((r) => setTimeout(r, 20));
      }
      assert.deepEqual([said['grpc-status'], said['grpc-message'], said[SHIM_REASON_TRAILER]], [String(GrpcCode.UNAVAILABLE), 'not ready', undefined]);
    } finally {
      await shim.close();
      runtime.close();
    }
  });
});
