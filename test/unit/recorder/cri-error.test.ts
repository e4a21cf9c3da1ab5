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

const withMetadata = (fields: Record<string, string>): grpc.Metadata => {
  const md = new grpc.Metadata();
  for (const [k, v] of Object.entries(fields)) md.set(k, v);
  return md;
};

test('an answer that is not gRPC, from an HTTP server at the socket: NOT_GRPC, whatever status grpc-js made of it', () => {
  // A trailers-only HTTP 503 (grpc-js: UNAVAILABLE), and one with a body (headers before the status).
  const trailersOnly = criError('Version', '/run/x.sock', 3000, { ...serviceError(grpc.status.UNAVAILABLE, 'Received HTTP status code 503'), metadata: withMetadata({ 'content-type': 'text/plain' }) }, true);
  const withBody = criError('Version', '/run/x.sock', 3000, serviceError(grpc.status.RESOURCE_EXHAUSTED, 'Received message larger than max'), true, withMetadata({ 'content-type': 'text/html' }));
  for (const e of [trailersOnly, withBody]) assert.deepEqual([e.code, e.reason], ['Unavailable', 'NOT_GRPC']);
  const grpcServer = criError('Version', '/run/x.sock', 3000, serviceError(grpc.status.UNAVAILABLE, 'not ready'), true, withMetadata({ 'content-type': 'application/grpc+proto' }));
  assert.equal(grpcServer.reason, 'RUNTIME_ERROR');
});

test("a status the shim gave itself carries the shim's reason; a relayed one none", () => {
  const refused = criError('Version', '/run/x.sock', 3000, { ...serviceError(grpc.status.UNAVAILABLE, 'Unavailable: the shim is reading 64 bytes of request bodies already; try again (reason OVERLOADED)'), metadata: withMetadata({ 'content-type': 'application/grpc', 'spoke-reason': 'OVERLOADED' }) }, true);
  assert.deepEqual([refused.code, refused.reason, refused.context.shimReason], ['Unavailable', 'RUNTIME_ERROR', 'OVERLOADED']);
  const relayed = criError('Version', '/run/x.sock', 3000, serviceError(grpc.status.UNAVAILABLE, 'not ready'), true);
  assert.equal(relayed.context.shimReason, undefined);
  const unknown = criError('Version', '/run/x.sock', 3000, { ...serviceError(grpc.status.UNAVAILABLE, 'x'), metadata: withMetadata({ 'spoke-reason': 'NO_SUCH_REASON' }) }, true);
  assert.equal(unknown.context.shimReason, undefined, 'only a reason spoke knows');
});
