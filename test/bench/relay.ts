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
//   node relay.js conforming <listen> <registry URL> <policy file> — the same server doing the
//     conforming floor's work (floor.ts conformingPullRef: the reference and the node policy, digests,
//     the artifact manifest and the profile validated, atomic placement, a provenance record, the
//     bundle's signature verified when the rule wants one) and answering an empty message: the
//     least a conforming implementation does per pull.
// Prints "up" when listening.

import { connect, createServer as createH2Server, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http2';
import { connect as netConnect, createServer as createNetServer } from 'node:net';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Pool } from 'undici';
import { getMergedMessage, getString } from '../../src/cri/wire.js';
import { parsePolicy } from '../../src/policy/load.js';
import { conformingPullRef, floorPullRef } from './floor.js';

const [mode, listen, upstream, policyFile] = process.argv.slice(2);
if (!listen || !upstream || (mode !== 'bytes' && mode !== 'h2' && mode !== 'answer' && mode !== 'pull' && !(mode === 'conforming' && policyFile))) {
  process.stderr.write('usage: relay.js bytes|h2|answer|pull <listen> <upstream> | conforming <listen> <registry URL> <policy file>\n');
  process.exit(2);
}

const ready = () => process.stdout.write('up\n');

if (mode === 'answer' || mode === 'pull' || mode === 'conforming') {
  const empty = Buffer.alloc(5);
  const pool = mode === 'answer' ? undefined : new Pool(upstream, { connections: 4 });
  const policy = mode === 'conforming' ? parsePolicy(readFileSync(policyFile!, 'utf8'), policyFile!, (p) => readFileSync(p)) : undefined;
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
      // PullSecurityProfileArtifactRequest (proto/): image = 1 { image = 1 }, after the gRPC frame's 5-byte prefix.
      const ref = getString(getMergedMessage(Buffer.concat(chunks).subarray(5), 1) ?? Buffer.alloc(0), 1);
      const work = policy ? conformingPullRef(pool, ref, dir, `p${seq++}`, policy) : floorPullRef(pool, ref, dir, `p${seq++}`, ref.includes('/bench/'));
      work.then(answer, (e: Error) => {
        process.stderr.write(`relay ${mode}: ${e.message}\n`);
        s.close(2);
      });
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
