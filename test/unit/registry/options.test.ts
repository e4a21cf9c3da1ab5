import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SpokeError } from '../../../src/core/errors.js';
import { UndiciRegistryClient } from '../../../src/registry/client.js';
import { resolveOptions } from '../../../src/registry/options.js';

function refuses(opts: unknown, pattern: RegExp): void {
  assert.throws(
    () => new UndiciRegistryClient(opts as never),
    (e: unknown) => e instanceof SpokeError && e.code === 'InvalidArgument' && pattern.test(e.message),
  );
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
    refuses({ insecure: 'host' }, /insecure must be an array/);
    refuses({ insecure: ['http://host'] }, /insecure entry/);
    refuses({ timeoutMs: 0 }, /timeoutMs/);
    refuses({ retries: 1.5 }, /retries/);
    refuses({ mirrors: { 'r.example.com': ['r.example.com'] } }, /its own mirror/);
    refuses({ mirrors: { 'r.example.com': 'm' } }, /mirrors for/);
    refuses({ caFile: '/nonexistent/ca.pem' }, /cannot be read/);
    refuses({ caFile: Buffer.from('not pem') }, /no PEM certificate/);
    refuses({ userAgent: 'a\r\nb' }, /userAgent/);
    refuses({ timeout: 5 }, /unknown option "timeout"/);
    refuses({ credentials: {} }, /lookup/);
  });

  it('refuses malformed repositories, tags and digests before any I/O', async () => {
    const c = new UndiciRegistryClient({ dispatcherFactory: () => assert.fail('no I/O expected') });
    const opts = { maxBytes: 1024 };
    const bad = async (p: Promise<unknown>, re: RegExp) =>
      assert.rejects(p, (e: unknown) => e instanceof SpokeError && e.code === 'InvalidArgument' && re.test(e.message));
    await bad(c.getManifest({ registry: 'r.example.com', repository: '../x' }, 'v1', [], opts), /invalid repository/);
    await bad(c.getManifest({ registry: 'R.example.com', repository: 'x' }, 'v1', [], opts), /lowercase/);
    await bad(c.getManifest({ registry: 'r.example.com', repository: 'x' }, 'a/../b', [], opts), /invalid tag/);
    await bad(c.getManifest({ registry: 'r.example.com', repository: 'x' }, 'sha256:abc', [], opts), /sha256/);
    await bad(c.putManifest({ registry: 'r.example.com', repository: 'x' }, 'v1', Buffer.from('{}'), 'text/plain\r\nx: y'), /media type/);
    await c.close();
  });
});
