import assert from 'node:assert/strict';
import { test } from 'node:test';
import { asSpokeError, ERROR_REASONS, registryUnavailable, SpokeError } from '../../../src/core/errors.js';
import { assertSpokeError } from '../../helpers/assert.js';

test('reasons are unique SCREAMING_SNAKE names', () => {
  assert.equal(new Set(ERROR_REASONS).size, ERROR_REASONS.length);
  for (const r of ERROR_REASONS) assert.match(r, /^[A-Z][A-Z0-9_]*$/);
});

test('anything that is not a SpokeError becomes the fallback code with reason UNEXPECTED; a SpokeError passes through', () => {
  const wrapped = assertSpokeError(asSpokeError(new TypeError('x'), 'SecurityProfileInvalid'), { code: 'SecurityProfileInvalid', reason: 'UNEXPECTED' });
  assert.ok(wrapped.cause instanceof TypeError);
  const own = new SpokeError('NotFound', 'gone', {}, { reason: 'NOT_FOUND' });
  assert.equal(asSpokeError(own), own);
});

test('registryUnavailable is a transport failure unless told otherwise', () => {
  assertSpokeError(registryUnavailable('down'), { code: 'RegistryUnavailable', reason: 'TRANSPORT' });
  assertSpokeError(registryUnavailable('slow', {}, undefined, 'DEADLINE'), { code: 'RegistryUnavailable', reason: 'DEADLINE' });
});
