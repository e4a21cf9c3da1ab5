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

test("what a registry said stays with a wrapper that keeps the failure as its cause, and only the CLI line shows it", async () => {
  const { annotationError } = await import('../../../src/cri/annotations.js');
  const { toGrpcStatus } = await import('../../../src/cri/grpc-status.js');
  const inner = new SpokeError('Unauthenticated', 'manifest m: r.example answered 403 (DENIED)', {}, { reason: 'AUTH_REFUSED', registryText: 'no access for Basic c2VjcmV0' });
  const wrapped = annotationError('seccomp.profiles.spoke.dev/web', inner);
  assert.equal(wrapped.registryText, 'no access for Basic c2VjcmV0');
  assert.match(wrapped.toLine(), /; registry said: no access for Basic c2VjcmV0$/);
  assert.ok(!toGrpcStatus(wrapped).message.includes('c2VjcmV0'));
  // A wrapper of anything else says nothing for a registry.
  assert.equal(new SpokeError('Internal', 'x', {}, { cause: new Error('y') }).registryText, undefined);
});
