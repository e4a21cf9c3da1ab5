// A registry's bearer token is reused until a little before its `expires_in` (src/registry/auth.ts):
// how that lifetime is measured.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import { localHttpServer } from '../../helpers/local-http.js';
import { systemClock } from '../../../src/core/runtime.js';
import { UndiciRegistryClient } from '../../../src/registry/client.js';

const DAY_MS = 86_400_000;
const BLOB = Buffer.from('{"defaultAction":"SCMP_ACT_ERRNO"}');
const DIGEST = `sha256:${createHash('sha256').update(BLOB).digest('hex')}` as const;

describe('bearer token lifetime', () => {
  let tokenRequests = 0;
  const server = localHttpServer((req, res) => {
    if (req.url?.startsWith('/token')) {
      tokenRequests++;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ token: `t${tokenRequests}`, expires_in: 300 }));
      return;
    }
    if (!req.headers.authorization?.startsWith('Bearer t')) {
      res.writeHead(401, { 'www-authenticate': `Bearer realm="http://${server.host()}/token",service="test"` });
      res.end();
      return;
    }
    res.writeHead(200, { 'content-type': 'application/octet-stream' });
    res.end(BLOB);
  });

  /** A client on a wall clock and a monotonic clock the test moves, and a blob fetch through it. */
  function rig() {
    const clocks = { wall: Date.parse('2025-06-02T00:00:00Z'), mono: 0 };
    const client = new UndiciRegistryClient({
      plainHttp: true,
      retries: 0,
      clock: { now: () => clocks.wall, sleep: systemClock.sleep },
      monotonicNow: () => clocks.mono,
    });
    const fetch = async () => (await client.getBlob({ registry: server.host(), repository: 'team/profile' }, DIGEST, { maxBytes: 4096 })).bytes;
    return { clocks, client, fetch };
  }

  it('ends on the monotonic clock: a wall clock stepped back a day does not keep a token past its 300 s', async () => {
    tokenRequests = 0;
    const { clocks, client, fetch } = rig();
    try {
      assert.deepEqual(await fetch(), BLOB);
      assert.equal(tokenRequests, 1);
      // Five minutes later NTP steps the wall clock back by a day: the token's lifetime is over.
      clocks.wall -= DAY_MS - 300_000;
      clocks.mono += 300_000;
      assert.deepEqual(await fetch(), BLOB);
      assert.equal(tokenRequests, 2, 'a backward step does not stretch the token past its lifetime');
    } finally {
      await client.close();
    }
  });

  it('lasts on the monotonic clock: a wall clock stepped forward a day does not drop a token still valid', async () => {
    tokenRequests = 0;
    const { clocks, client, fetch } = rig();
    try {
      assert.deepEqual(await fetch(), BLOB);
      assert.equal(tokenRequests, 1);
      // A minute later the wall clock jumps a day ahead: the token still has four minutes.
      clocks.wall += DAY_MS + 60_000;
      clocks.mono += 60_000;
      assert.deepEqual(await fetch(), BLOB);
      assert.equal(tokenRequests, 1, 'a forward step does not cut the token short');
    } finally {
      await client.close();
    }
  });
});
