// spoke loads two of undici's lib modules by path (src/registry/http.ts): this fails the day an
// undici update moves them or adds an `exports` map that hides them, instead of a node failing.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { test } from 'node:test';
import Pool from 'undici/lib/dispatcher/pool.js';
import dispatchRequest from 'undici/lib/api/api-request.js';
import { Pool as IndexPool, Dispatcher } from 'undici';

test('undici is pinned, has no exports map, and its Pool and request modules are the index ones', () => {
  const pkg = JSON.parse(readFileSync(createRequire(import.meta.url).resolve('undici/package.json'), 'utf8')) as { version: string; exports?: unknown };
  const wanted = (JSON.parse(readFileSync(new URL('../../../../package.json', import.meta.url), 'utf8')) as { dependencies: Record<string, string> }).dependencies.undici;
  assert.equal(pkg.version, wanted, 'package.json pins the exact undici version installed');
  assert.equal(pkg.exports, undefined);
  assert.equal(Pool, IndexPool);
  assert.equal(typeof dispatchRequest, 'function');
  assert.equal(dispatchRequest, (Dispatcher.prototype as unknown as { request: unknown }).request);
});
