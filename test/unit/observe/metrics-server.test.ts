// The metrics endpoint is served on the node's network (the DaemonSet uses the host network):
// a few scrapers, never a crowd of idle or half-sent connections holding the shim's memory.

import assert from 'node:assert/strict';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { describe, it } from 'node:test';
import { createPromMetrics, METRICS_MAX_CONNECTIONS, serveMetrics } from '../../../src/observe/metrics.js';

function closed(s: Socket): Promise<void> {
  return new Promise((resolve) => {
    if (s.destroyed) resolve();
    else s.once('close', () => resolve());
  });
}

describe('metrics server limits', () => {
  it('holds at most METRICS_MAX_CONNECTIONS connections, and closes a request whose headers never end', { timeout: 30_000 }, async () => {
    const server = await serveMetrics(await createPromMetrics(), '127.0.0.1:0');
    const port = (server.address() as AddressInfo).port;
    const sockets: Socket[] = [];
    try {
      for (let i = 0; i < METRICS_MAX_CONNECTIONS + 8; i++) {
        const s = connect(port, '127.0.0.1');
        s.on('error', () => {});
        s.resume(); // reads the server's 408 and its close
        await new Promise<void>((resolve) => s.once('connect', () => resolve()));
        s.write('GET /metrics HTTP/1.1\r\nHost: x\r\n'); // the headers never end
        sockets.push(s);
      }
      // Past the limit, connections are dropped as they come, the others still open; those go when
      // their headers time out (within the test's timeout: Node's defaults keep them a minute).
      await Promise.all(sockets.slice(METRICS_MAX_CONNECTIONS).map(closed));
      assert.ok(sockets.slice(0, METRICS_MAX_CONNECTIONS).every((s) => !s.destroyed));
      await Promise.all(sockets.slice(0, METRICS_MAX_CONNECTIONS).map(closed));
      // A scraper still gets its answer.
      const res = await fetch(`http://127.0.0.1:${port}/healthz`);
      assert.equal(res.status, 200);
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    }
  });
});
