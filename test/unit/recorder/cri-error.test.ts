// Failed CRI calls read as spoke's own words (spoke status, record, recorder): grpc-js's
// connection internals never pass through, and an UNAVAILABLE answered over a connection that is
// up is told apart from a socket nobody answers on.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { criError } from '../../../src/recorder/cri.js';

const serviceError = (code: number, details: string): grpc.ServiceError => Object.assign(new Error(`${code} ${details}`), { code, details, metadata: new grpc.Metadata() });

test('a socket nobody listens on, a deadline, a runtime error', () => {
  const gone = criError('Version', '/run/x.sock', 3000, serviceError(grpc.status.UNAVAILABLE, 'No connection established. Last error: connect ENOENT /run/x.sock (2026-12-04T21:00:00Z). Resolution note: '));
  assert.deepEqual([gone.code, gone.reason, gone.message], ['Unavailable', 'TRANSPORT', 'CRI Version: nothing answers on /run/x.sock (no socket there)']);
  const slow = criError('Status', '/run/x.sock', 3000, serviceError(grpc.status.DEADLINE_EXCEEDED, 'Deadline exceeded after 3.001s,LB pick: 0.000s'));
  assert.deepEqual([slow.code, slow.reason, slow.message], ['Unavailable', 'DEADLINE', 'CRI Status: /run/x.sock did not answer within 3000 ms']);
  const missing = criError('ContainerStatus', '/run/x.sock', 3000, serviceError(grpc.status.NOT_FOUND, 'container "abc" not found'));
  assert.deepEqual([missing.code, missing.reason], ['NotFound', 'NOT_FOUND']);
  assert.match(missing.message, /the runtime answered NOT_FOUND: container "abc" not found$/);
  // The same code over a connection that is up: what listens there answered it (a shim whose
  // runtime is down), with its own message, not a socket nobody answers on.
  const said = criError('Version', '/run/x.sock', 3000, serviceError(grpc.status.UNAVAILABLE, 'spoke shim: the upstream runtime is not available'), true);
  assert.deepEqual([said.code, said.reason, said.context.grpcMessage], ['Unavailable', 'RUNTIME_ERROR', 'spoke shim: the upstream runtime is not available']);
  for (const e of [gone, slow, missing]) assert.doesNotMatch(e.message, /Resolution note|No connection established|LB pick/);
});
