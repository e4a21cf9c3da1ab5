// The forwarding floors for the bench, each run as its own process like the shim:
//   node relay.js bytes <listen> <upstream>  — a bare byte relay (one upstream socket per client
//     connection, bytes piped both ways: no HTTP/2 work at all);
//   node relay.js h2 <listen> <upstream>     — a minimal node:http2 relay (one upstream session,
//     every stream forwarded with its headers, DATA and trailers, nothing inspected: the least an
//     HTTP/2 proxy built on node:http2 can do);
//   node relay.js answer <listen> -          — a node:http2 server answering every call at once
//     with an empty gRPC message and status OK: the floor of any call a node:http2 server answers
//     itself (the warm pull's peer).
//   node relay.js pull <listen> <registry URL> — a node:http2 server that answers each
//     PullSecurityProfileArtifact call with the lean client floor's work (floor.ts: GET manifest,
//     GET blob, for a repository under bench/ the signature chain beside them as the bench
//     policy requires, then write + fsync file + directory) and an empty message: the cold pull
//     floor with the CRI hop a kubelet's pull makes.
//   node relay.js conforming <listen> <registry URL> <public key file> — the same server doing the
//     conforming floor's work (floor.ts conformingPullRef: digests, JSON, atomic placement, a
//     provenance record, for a repository under bench/ the bundle's signature verified with the
//     key) and answering an empty message: the least a conforming implementation does per pull.
// Prints "up" when listening.

import { connect, createServer as createH2Server, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http2';
import { connect as netConnect, createServer as createNetServer } from 'node:net';
import { createPublicKey } from 'node:crypto';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Pool } from 'undici';
import { conformingPullRef, floorPullRef } from './floor.js';

const [mode, listen, upstream, keyFile] = process.argv.slice(2);
if (!listen || !upstream || (mode !== 'bytes' && mode !== 'h2' && mode !== 'answer' && mode !== 'pull' && !(mode === 'conforming' && keyFile))) {
  process.stderr.write('usage: relay.js bytes|h2|answer|pull <listen> <upstream> | conforming <listen> <registry URL> <public key file>\n');
  process.exit(2);
}

const ready = () => process.stdout.write('up\n');

if (mode === 'answer' || mode === 'pull' || mode === 'conforming') {
  const empty = Buffer.alloc(5);
  const pool = mode === 'answer' ? undefined : new Pool(upstream, { connections: 4 });
  const key = mode === 'conforming' ? createPublicKey(readFileSync(keyFile!)) : undefined;
  const dir = mkdtempSync(join(tmpdir(), 'spoke-floor-'));
  let seq = 0;
  const server = createH2Server();
  server.on('stream', (s) => {
    const chunks: Buffer[] = [];
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('end', () => {
      const answer = () => {
        s.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
        s.on('wantTrailers', () => s.sendTrailers({ 'grpc-status': '0' }));
        s.end(empty);
      };
      if (!pool) return answer();
      // The reference is the request's only string with "@sha256:" in it (PullSecurityProfileArtifactRequest.image.image).
      const ref = /[\x21-\x7e]+@sha256:[0-9a-f]{64}/.exec(Buffer.concat(chunks).toString('latin1'))?.[0] ?? '';
      const keyed = ref.includes('/bench/');
      const work = mode === 'conforming' ? conformingPullRef(pool, ref, dir, `p${seq++}`, keyed ? key : undefined) : floorPullRef(pool, ref, dir, `p${seq++}`, keyed);
      work.then(answer, () => s.close(2));
    });
  });
  server.listen(listen, ready);
} else if (mode === 'bytes') {
  createNetServer((c) => {
    const u = netConnect(upstream);
    c.pipe(u).on('error', () => c.destroy());
    u.pipe(c).on('error', () => u.destroy());
    c.on('error', () => u.destroy());
    u.on('error', () => c.destroy());
  }).listen(listen, ready);
} else {
  const session = connect('http://localhost', { createConnection: () => netConnect(upstream), settings: { initialWindowSize: 4 * 1024 * 1024 } });
  const strip = (h: IncomingHttpHeaders, keep: (k: string) => boolean): OutgoingHttpHeaders => {
    const out: OutgoingHttpHeaders = {};
    for (const k in h) if (keep(k) && h[k] !== undefined) out[k] = h[k];
    return out;
  };
  const server = createH2Server({ settings: { initialWindowSize: 4 * 1024 * 1024 } });
  server.on('stream', (s, h) => {
    const up = session.request(strip(h, (k) => k !== ':scheme' && k !== ':authority'));
    let trailers: OutgoingHttpHeaders = {};
    s.pipe(up);
    up.on('response', (rh, flags) => {
      if (flags & 1 /* END_STREAM: trailers-only */) {
        s.respond(strip(rh, () => true), { endStream: true });
        return;
      }
      s.respond(strip(rh, () => true), { waitForTrailers: true });
      s.on('wantTrailers', () => s.sendTrailers(trailers));
      up.pipe(s);
    });
    up.on('trailers', (t) => (trailers = strip(t, () => true)));
    up.on('error', () => s.destroy());
    s.on('error', () => up.destroy());
  });
  server.listen(listen, ready);
}
