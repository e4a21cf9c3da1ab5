// A request without a caller's deadline gets one of its own: a registry that trickles a body (a
// byte now and then, never idle long enough for the idle timeout) cannot hold a publisher or the
// recording controller forever. Real undici against a real HTTP server on 127.0.0.1.

import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { after, describe, it } from 'node:test';
import { UndiciRegistryClient } from '../../../src/registry/client.js';
import { spokeError } from '../../helpers/assert.js';

const servers: Server[] = [];
after(() => {
  for (const s of servers) {
    s.closeAllConnections();
    s.close();
  }
});

describe('registry requests have a total deadline', () => {
  it('a body trickled past the deadline fails the request RegistryUnavailable, DEADLINE', async () => {
    const s = createServer((_req, res) => {
      res.writeHead(200, { 'content-length': '1000', 'content-type': 'application/octet-stream' });
      const t = setInterval(() => res.write('x'), 50);
      res.on('close', () => clearInterval(t));
    });
    servers.push(s);
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
    const port = (s.address() as { port: number }).port;
    const client = new UndiciRegistryClient({ plainHttp: true, timeoutMs: 10_000, totalTimeoutMs: 500, retries: 0 });
    try {
      // A byte every 50 ms never trips the 10 s idle timeout: only the total deadline ends this.
      await assert.rejects(
        client.getBlob({ registry: `127.0.0.1:${port}`, repository: 'p' }, `sha256:${'a'.repeat(64)}`, { maxBytes: 4096 }),
        spokeError({ code: 'RegistryUnavailable', reason: 'DEADLINE' }),
      );
    } finally {
      await client.close();
    }
  });

  it('the total deadline is an option of the client, validated', async () => {
    // Accepted in range (an unknown option is refused too, so the refusal alone proves nothing).
    await new UndiciRegistryClient({ totalTimeoutMs: 1000 }).close();
    assert.throws(() => new UndiciRegistryClient({ totalTimeoutMs: 0 }), spokeError({ code: 'InvalidArgument', reason: 'OPTION_INVALID' }));
  });
});
