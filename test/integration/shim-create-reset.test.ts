// A create whose client goes away after the runtime answered, in front of a scripted runtime:
// the pending holder the create recorded before the call must be settled, never left behind
// (a leaked one keeps its profile from gc and RemoveSecurityProfile until the shim restarts).

import { connect as h2connect, constants as h2, createServer as h2createServer } from 'node:http2';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ShimServer } from '../../src/cri/server.js';
import { encodeFrame } from '../../src/cri/frame.js';
import type { Applied } from '../../src/cri/apply.js';
import { encode } from '../helpers/cri-client.js';
import { stubShimDeps } from '../helpers/shim.js';
import { waitFor } from '../helpers/wait.js';

const DIGEST = `sha256:${'a'.repeat(64)}`;

describe('shim: a create reset by its client after the runtime answered', () => {
  const work = mkdtempSync(join(tmpdir(), 'spoke-reset-'));
  const upstream = h2createServer();
  let shim: ShimServer;
  const deps = stubShimDeps(join(work, 'store'), join(work, 'sc'));

  before(async () => {
    upstream.on('stream', (stream, headers) => {
      stream.on('error', () => {});
      stream.on('data', () => {});
      stream.on('end', () => {
        const create = String(headers[':path']).endsWith('/CreateContainer');
        stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
        stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
        stream.end(encodeFrame(create ? encode('CreateContainerResponse', { container_id: 'ctr' }) : Buffer.alloc(0)));
      });
    });
    await new Promise<void>((r) => upstream.listen(join(work, 'up.sock'), () => r()));
    shim = new ShimServer({ listen: join(work, 'shim.sock'), upstream: join(work, 'up.sock'), deps });
    // The merge itself is another test's: here every OCI profile resolves to one stored artifact.
    const applied: Applied = { path: join(work, 'sc', 'spoke', `${'b'.repeat(64)}.json`), digest: DIGEST, reference: `reg.example/p@${DIGEST}`, effectiveSha: 'b'.repeat(64), constrained: 0 } as Applied;
    (shim as unknown as { applier: { apply: () => Promise<Applied> } }).applier.apply = async () => applied;
    await shim.start();
  });
  after(async () => {
    await shim?.close();
    await new Promise<void>((r) => upstream.close(() => r()));
    rmSync(work, { recursive: true, force: true });
  });

  it('settles the pending holder when the client resets a stream it never read (window 0)', async () => {
    const session = h2connect('http://localhost', { createConnection: () => netConnect(join(work, 'shim.sock')), settings: { initialWindowSize: 0 } });
    session.on('error', () => {});
    try {
      for (let i = 0; i < 5; i++) {
        const req = session.request({ ':method': 'POST', ':path': '/runtime.v1.RuntimeService/CreateContainer', 'content-type': 'application/grpc', te: 'trailers' });
        req.on('error', () => {});
        req.end(
          encodeFrame(
            encode('CreateContainerRequest', {
              pod_sandbox_id: 'sb1',
              config: { metadata: { name: `c${i}`, attempt: 0 }, linux: { security_context: { seccomp: { profile_type: 'OCI', oci_ref: `reg.example/p@${DIGEST}` } } } },
              sandbox_config: { metadata: { name: 'pod', namespace: 'ns', uid: 'u' } },
            }),
          ),
        );
        await new Promise((r) => req.once('response', r));
        const closed = new Promise((r) => req.once('close', r));
        req.close(h2.NGHTTP2_CANCEL);
        await closed;
      }
    } finally {
      session.destroy();
    }
    const pending = async () => [...(await deps.store.inUse()).values()].flat().filter((h) => h.startsWith('pending:')).length;
    await waitFor(async () => (await pending()) === 0, { timeoutMs: 5000, what: 'no pending holder left' });
  });
});
