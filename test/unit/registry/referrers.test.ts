// A registry that answered 404 to the referrers API is not asked again for ten minutes
// (src/registry/client.ts REFERRERS_ABSENT_MS, docs/signatures.md): how that window is measured.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { localHttpServer } from '../../helpers/local-http.js';
import { systemClock } from '../../../src/core/runtime.js';
import { UndiciRegistryClient } from '../../../src/registry/client.js';

const DAY_MS = 86_400_000;

describe('referrers API remembered absent', () => {
  let referrerRequests = 0;
  const server = localHttpServer((req, res) => {
    if (req.url?.includes('/referrers/')) referrerRequests++;
    res.writeHead(404, { 'content-type': 'application/json' });
    res.end('{"errors":[{"code":"MANIFEST_UNKNOWN"}]}');
  });

  it('for ten minutes of the monotonic clock: a wall-clock step neither stretches nor cuts the window', async () => {
    let wall = Date.parse('2025-06-02T00:00:00Z');
    let mono = 0;
    const client = new UndiciRegistryClient({ plainHttp: true, retries: 0, clock: { now: () => wall, sleep: systemClock.sleep }, monotonicNow: () => mono });
    const repo = { registry: server.host(), repository: 'team/profile' };
    const digest = `sha256:${'a'.repeat(64)}` as const;
    const ask = () => client.getReferrers(repo, digest, { maxBytes: 4096 });
    try {
      assert.equal(await ask(), undefined);
      assert.equal(referrerRequests, 1);
      // A minute later the wall clock jumps a day ahead: still within the window.
      wall += DAY_MS + 60_000;
      mono += 60_000;
      assert.equal(await ask(), undefined);
      assert.equal(referrerRequests, 1, 'a forward step does not end the window early');
      // Ten more minutes later NTP steps it back by a day: the window is over.
      wall -= DAY_MS - 10 * 60_000;
      mono += 10 * 60_000;
      assert.equal(await ask(), undefined);
      assert.equal(referrerRequests, 2, 'a backward step does not stretch the window');
    } finally {
      await client.close();
    }
  });
});

describe('referrers API absent for one caller', () => {
  // A registry may answer 404 to a caller who may not see a repository (hiding that it exists):
  // that caller's answer says nothing of what another caller's credentials would be shown.
  const INDEX = '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}';
  const server = localHttpServer((req, res) => {
    if (req.url?.includes('/referrers/') && req.headers.authorization !== undefined) {
      res.writeHead(200, { 'content-type': 'application/vnd.oci.image.index.v1+json' });
      res.end(INDEX);
      return;
    }
    res.writeHead(404, { 'content-type': 'application/json' });
    res.end('{"errors":[{"code":"MANIFEST_UNKNOWN"}]}');
  });

  it("is not remembered for another credential: an anonymous caller's 404 does not hide a tenant's referrers", async () => {
    const client = new UndiciRegistryClient({ plainHttp: true, retries: 0 });
    const repo = { registry: server.host(), repository: 'team/profile' };
    const digest = `sha256:${'b'.repeat(64)}` as const;
    try {
      assert.equal(await client.getReferrers(repo, digest, { maxBytes: 4096 }), undefined);
      const seen = await client.getReferrers(repo, digest, { maxBytes: 4096, credential: { kind: 'registryToken', token: 'tenant' } });
      assert.equal(seen?.toString(), INDEX);
    } finally {
      await client.close();
    }
  });
});
