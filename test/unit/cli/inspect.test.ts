// `spoke inspect` (src/cli/commands/inspect.ts) of a manifest a registry serves under its digest
// that is no JSON object: its own refusal or a view of nothing, never an unexpected error.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import { spoke } from '../../helpers/cli.js';
import { localHttpServer } from '../../helpers/local-http.js';

const digestOf = (text: string) => `sha256:${createHash('sha256').update(text).digest('hex')}`;
const served = ['null', 'not json', '{"mediaType": "a", "mediaType": "b"}'];

describe('spoke inspect of a manifest that is no JSON object', () => {
  const server = localHttpServer((req, res) => {
    const body = served.find((b) => req.url === `/v2/p/manifests/${digestOf(b)}`);
    if (body === undefined) return void res.writeHead(404).end();
    res.writeHead(200, { 'content-type': 'application/vnd.oci.image.manifest.v1+json', 'docker-content-digest': digestOf(body) }).end(body);
  });

  it('JSON null: shown as a manifest with no fields, not a profile artifact', async () => {
    const out = await spoke(['inspect', `${server.host()}/p@${digestOf('null')}`, '--plain-http', '--json']);
    assert.equal(out.code, 0, out.stderr);
    const shown = JSON.parse(out.stdout) as Record<string, unknown>;
    assert.deepEqual([shown.digest, shown.kind, shown.mediaType, shown.config, shown.layers], [digestOf('null'), null, null, null, []]);
  });

  it('not JSON, or JSON with a member twice: SecurityProfileInvalid, JSON_INVALID', async () => {
    for (const body of served.slice(1)) {
      const out = await spoke(['inspect', `${server.host()}/p@${digestOf(body)}`, '--plain-http']);
      assert.equal(out.code, 1, body);
      assert.match(out.stderr, /^SecurityProfileInvalid: .*\(reason JSON_INVALID\)\n$/, body);
    }
  });
});
