import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import type { ErrorReason } from '../../../src/core/errors.js';
import { rejectsWith, spokeError } from '../../helpers/assert.js';
import { UndiciRegistryClient } from '../../../src/registry/client.js';
import { resolveOptions } from '../../../src/registry/options.js';

function refuses(opts: unknown): void {
  assert.throws(() => new UndiciRegistryClient(opts as never), spokeError({ code: 'InvalidArgument', reason: 'OPTION_INVALID' }));
}

describe('UndiciRegistryClient options', () => {
  it('applies defaults and normalises hosts', () => {
    const o = resolveOptions({ insecure: ['LocalHost:5000', '127.0.0.1'], mirrors: { 'Registry.Example.com': ['mirror.internal:5000'] } });
    assert.deepEqual([...o.insecure], ['localhost:5000', '127.0.0.1']);
    assert.deepEqual([...o.mirrors], [['registry.example.com', ['mirror.internal:5000']]]);
    assert.equal(o.timeoutMs, 10_000);
    assert.equal(o.connectTimeoutMs, 5_000);
    assert.equal(o.retries, 2);
    assert.equal(o.plainHttp, false);
    assert.equal(o.ca, undefined);
  });

  it('refuses bad options up front', () => {
    refuses({ insecure: 'host' });
    refuses({ insecure: ['http://host'] });
    refuses({ timeoutMs: 0 });
    refuses({ retries: 1.5 });
    refuses({ mirrors: { 'r.example.com': ['r.example.com'] } });
    refuses({ mirrors: { 'r.example.com': 'm' } });
    refuses({ mirrors: { 'r.example.com': Array.from({ length: 17 }, (_, i) => `m${i}.example.com`) } });
  });

  it('takes as many mirrors per registry as the node policy schema allows (16): a policy that loads never fails every pull', () => {
    const schema = JSON.parse(readFileSync(new URL('../../../../policy/node-policy.schema.json', import.meta.url), 'utf8')) as { properties: { mirrors: { additionalProperties: { maxItems: number } } } };
    const max = schema.properties.mirrors.additionalProperties.maxItems;
    const o = resolveOptions({ mirrors: { 'r.example.com': Array.from({ length: max }, (_, i) => `m${i}.example.com`) } });
    assert.equal(o.mirrors.get('r.example.com')?.length, max);
    refuses({ caFile: '/nonexistent/ca.pem' });
    refuses({ caFile: Buffer.from('not pem') });
    refuses({ userAgent: 'a\r\nb' });
    refuses({ timeout: 5 });
    refuses({ credentials: {} });
  });

  it('refuses malformed repositories, tags and digests before any I/O', async () => {
    const c = new UndiciRegistryClient({ dispatcherFactory: () => assert.fail('no I/O expected') });
    const opts = { maxBytes: 1024 };
    const bad = async (p: Promise<unknown>, reason: ErrorReason) => rejectsWith(p, { code: 'InvalidArgument', reason });
    await bad(c.getManifest({ registry: 'r.example.com', repository: '../x' }, 'v1', [], opts), 'REFERENCE_INVALID');
    await bad(c.getManifest({ registry: 'R.example.com', repository: 'x' }, 'v1', [], opts), 'REFERENCE_INVALID');
    await bad(c.getManifest({ registry: 'r.example.com', repository: 'x' }, 'a/../b', [], opts), 'REFERENCE_INVALID');
    await bad(c.getManifest({ registry: 'r.example.com', repository: 'x' }, 'sha256:abc', [], opts), 'DIGEST_INVALID');
    await bad(c.putManifest({ registry: 'r.example.com', repository: 'x' }, 'v1', Buffer.from('{}'), 'text/plain\r\nx: y'), 'OPTION_INVALID');
    await c.close();
  });
});
