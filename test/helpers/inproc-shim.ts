// An in-process ShimServer in front of a scripted runtime (a node:http2 server on a unix socket),
// each in its own temp directory: for tests of what the shim forwards and when.

import { connect as h2connect, createServer as h2createServer, type IncomingHttpHeaders, type ServerHttp2Stream, type Settings } from 'node:http2';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ShimServer, type ShimServerOptions } from '../../src/cri/server.js';
import type { ShimDeps } from '../../src/cri/deps.js';
import { encodeFrame } from '../../src/cri/frame.js';
import { encode } from './cri-client.js';
import { stubShimDeps } from './shim.js';

/** The runtime's answer to a create: the new object's id; to PodSandboxStatus, a sandbox of the default handler. */
export const runtimeAnswer = (path: string): Buffer =>
  path.endsWith('/CreateContainer')
    ? encode('CreateContainerResponse', { container_id: 'ctr' })
    : path.endsWith('/PodSandboxStatus')
      ? encode('PodSandboxStatusResponse', { status: { id: 'sb1', runtime_handler: '' } })
      : Buffer.alloc(0);

/**
 * Answers every call OK, with `answer(path)` as its message (empty by default), once
 * `beforeAnswer(path, body)` has settled (when given): a runtime that is slow on some calls.
 */
export function answering(answer: (path: string) => Buffer = () => Buffer.alloc(0), beforeAnswer?: (path: string, body: Buffer) => Promise<void> | void) {
  return (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => {
    const path = String(headers[':path']);
    const chunks: Buffer[] = [];
    stream.on('error', () => {});
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('end', () => {
      void Promise.resolve(beforeAnswer?.(path, Buffer.concat(chunks))).then(() => {
        stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
        stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
        stream.end(encodeFrame(answer(path)));
      });
    });
  };
}

/**
 * A shim in front of a scripted runtime (`onStream`), in its own directory. Its deps are
 * stubShimDeps (forwarding only) unless `o.deps` makes them from the rig's directory.
 */
export function shimRig<P = unknown>(
  prefix: string,
  onStream: (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => void,
  o: { deps?: (work: string) => ShimDeps<P>; server?: Partial<Omit<ShimServerOptions<P>, 'listen' | 'upstream' | 'deps'>> } = {},
) {
  const work = mkdtempSync(join(tmpdir(), prefix));
  const upstream = h2createServer();
  const deps = o.deps ? o.deps(work) : (stubShimDeps(join(work, 'store'), join(work, 'sc')) as ShimDeps<P>);
  const shim = new ShimServer<P>({ listen: join(work, 'shim.sock'), upstream: join(work, 'up.sock'), deps, ...o.server });
  const connect = (settings?: Settings) => {
    const session = h2connect('http://localhost', { createConnection: () => netConnect(join(work, 'shim.sock')), ...(settings ? { settings } : {}) });
    session.on('error', () => {});
    return session;
  };
  return {
    work,
    deps,
    shim,
    connect,
    async start() {
      upstream.on('stream', onStream);
      await new Promise<void>((r) => upstream.listen(join(work, 'up.sock'), () => r()));
      await shim.start();
    },
    async stop() {
      await shim.close();
      await new Promise<void>((r) => upstream.close(() => r()));
      rmSync(work, { recursive: true, force: true });
    },
  };
}
