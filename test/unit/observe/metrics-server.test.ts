// The metrics endpoint may be served on the node's network (docs/configuration.md):
// a few scrapers, never a crowd of idle or half-sent connections holding the shim's memory, and
// never one that keeps the kubelet's probes (from the node's own address) out.

import assert from 'node:assert/strict';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { describe, it } from 'node:test';
import { createPromMetrics, METRICS_MAX_CONNECTIONS, METRICS_MAX_LOCAL_CONNECTIONS, METRICS_MAX_PER_ADDRESS, serveMetrics } from '../../../src/observe/metrics.js';

function closed(s: Socket): Promise<void> {
  return new Promise((resolve) => {
    if (s.destroyed) resolve();
    else s.once('close', () => resolve());
  });
}

/** A connection from `from` (a loopback address other than the server's is another caller) whose request headers never end. */
async function halfSent(port: number, from: string): Promise<Socket> {
  const s = connect({ port, host: '127.0.0.1', localAddress: from });
  s.on('error', () => {});
  s.resume(); // reads the server's 408 and its close
  await new Promise<void>((resolve) => s.once('connect', () => resolve()));
  s.write('GET /metrics HTTP/1.1\r\nHost: x\r\n');
  return s;
}

/** A request that completes from `from`: its status, or 0 when the connection was refused. */
function get(port: number, path: string, from: string): Promise<number> {
  return new Promise((resolve) => {
    const s = connect({ port, host: '127.0.0.1', localAddress: from }, () => s.write(`GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`));
    let text = '';
    s.on('data', (d) => (text += d.toString()));
    s.on('error', () => {});
    s.on('close', () => resolve(Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0)));
  });
}

describe('metrics server limits', () => {
  it('one other address holds at most METRICS_MAX_PER_ADDRESS, all of them METRICS_MAX_CONNECTIONS; the node itself is still served', { timeout: 30_000 }, async () => {
    const server = await serveMetrics(await createPromMetrics(), '127.0.0.1:0');
    const port = (server.address() as AddressInfo).port;
    const others = Array.from({ length: METRICS_MAX_CONNECTIONS / METRICS_MAX_PER_ADDRESS + 1 }, (_, i) => `127.0.0.${i + 2}`);
    const opened: { kept: boolean; s: Socket }[] = [];
    const sockets = () => opened.map((o) => o.s);
    try {
      // Each address opens two more than its share; the last one finds the total taken.
      for (const [a, from] of others.entries()) {
        for (let i = 0; i < METRICS_MAX_PER_ADDRESS + 2; i++) opened.push({ kept: a < others.length - 1 && i < METRICS_MAX_PER_ADDRESS, s: await halfSent(port, from) });
      }
      await Promise.all(opened.filter((o) => !o.kept).map((o) => closed(o.s)));
      assert.deepEqual(opened.map((o) => !o.s.destroyed), opened.map((o) => o.kept));
      // The kubelet's probe comes from the node's own address: answered while the others wait.
      assert.equal(await get(port, '/healthz', '127.0.0.1'), 200);
      // Those go when their headers time out (Node's defaults would keep them a minute).
      await Promise.all(sockets().map(closed));
      assert.equal(await get(port, '/healthz', others[0]!), 200);
    } finally {
      for (const s of sockets()) s.destroy();
      await new Promise((r) => server.close(r));
    }
  });

  it('the node itself holds at most METRICS_MAX_LOCAL_CONNECTIONS, and a request whose headers never end is closed', { timeout: 30_000 }, async () => {
    const server = await serveMetrics(await createPromMetrics(), '127.0.0.1:0');
    const port = (server.address() as AddressInfo).port;
    const sockets: Socket[] = [];
    try {
      for (let i = 0; i < METRICS_MAX_LOCAL_CONNECTIONS + 4; i++) sockets.push(await halfSent(port, '127.0.0.1'));
      await Promise.all(sockets.slice(METRICS_MAX_LOCAL_CONNECTIONS).map(closed));
      assert.ok(sockets.slice(0, METRICS_MAX_LOCAL_CONNECTIONS).every((s) => !s.destroyed));
      await Promise.all(sockets.slice(0, METRICS_MAX_LOCAL_CONNECTIONS).map(closed));
      assert.equal(await get(port, '/healthz', '127.0.0.1'), 200);
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    }
  });
});
