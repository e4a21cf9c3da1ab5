// What a token endpoint answers is checked before it is read (src/registry/auth.ts): anything but
// an object with a usable token is the endpoint's protocol fault, never a transport one (which
// the kubelet would retry as a registry outage).

import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import { rejectsWith } from '../../helpers/assert.js';
import { localHttpServer } from '../../helpers/local-http.js';
import { UndiciRegistryClient } from '../../../src/registry/client.js';

const BLOB = Buffer.from('{"defaultAction":"SCMP_ACT_ERRNO"}');
const DIGEST = `sha256:${createHash('sha256').update(BLOB).digest('hex')}` as const;

describe('token endpoint answers', () => {
  let answer = '';
  const server = localHttpServer((req, res) => {
    if (req.url?.startsWith('/token')) {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(answer);
      return;
    }
    res.writeHead(401, { 'www-authenticate': `Bearer realm="http://${server.host()}/token",service="test"` });
    res.end();
  });

  // null, a list, a string, a number, no token, a token of the wrong type or alphabet, cut JSON, nothing.
  for (const body of ['null', '[]', '"t"', '7', '{}', '{"token":5}', '{"token":"a b"}', '{"token":', '']) {
    it(`an answer of ${JSON.stringify(body)} is Unauthenticated, AUTH_PROTOCOL`, async () => {
      answer = body;
      const client = new UndiciRegistryClient({ plainHttp: true, retries: 0 });
      try {
        await rejectsWith(client.getBlob({ registry: server.host(), repository: 'team/profile' }, DIGEST, { maxBytes: 4096 }), { code: 'Unauthenticated', reason: 'AUTH_PROTOCOL' });
      } finally {
        await client.close();
      }
    });
  }
});
