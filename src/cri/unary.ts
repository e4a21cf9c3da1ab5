// Unary gRPC helpers of the shim: reading a request body, its single message, sending a
// response or a status, the call's deadline (grpc-timeout), and a unary call answered here.

import { constants, type IncomingHttpHeaders, type OutgoingHttpHeaders, type ServerHttp2Stream, type ServerStreamResponseOptions } from 'node:http2';
import { SHIM_REASON_TRAILER, SpokeError, type ErrorReason } from '../core/errors.js';
import { decompress, encodeFrame, encodeGrpcMessage, FrameError, parseFrames, parseGrpcTimeout, MAX_INSPECTED_MESSAGE_BYTES } from './frame.js';
import type { BodyBudget, Call, CallHost } from './call.js';
import { GrpcCode, type GrpcCodeValue } from './grpc-status.js';

const { NGHTTP2_CANCEL } = constants;

const GRPC_RESPONSE_HEADERS: OutgoingHttpHeaders = Object.freeze({ ':status': 200, 'content-type': 'application/grpc' });
const GRPC_OK_TRAILERS: OutgoingHttpHeaders = Object.freeze({ 'grpc-status': '0' });
// No `date` header of our own (Node adds one by default): responses carry what the upstream sent.
// `sendDate` is honoured by respond() but missing from @types/node.
export const RESPOND_END = Object.freeze({ endStream: true, sendDate: false }) as ServerStreamResponseOptions;
export const RESPOND_TRAILERS = Object.freeze({ waitForTrailers: true, sendDate: false }) as ServerStreamResponseOptions;

export function headerString(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

export function deadlineOf(headers: IncomingHttpHeaders, started: number): number | undefined {
  const ms = parseGrpcTimeout(headerString(headers['grpc-timeout']));
  return ms === undefined ? undefined : started + ms;
}

/**
 * Ends a call with a status the shim gives itself, its `reason` in the SHIM_REASON_TRAILER field:
 * a client tells it from a status relayed from the runtime, which never has that field.
 */
export function endWithStatus(stream: ServerHttp2Stream, code: GrpcCodeValue, message: string, reason: ErrorReason): void {
  if (stream.closed || stream.destroyed) return;
  const trailers = { 'grpc-status': String(code), 'grpc-message': encodeGrpcMessage(message), [SHIM_REASON_TRAILER]: reason };
  try {
    if (!stream.headersSent) {
      stream.respond({ ':status': 200, 'content-type': 'application/grpc', ...trailers }, RESPOND_END);
    } else {
      stream.close(NGHTTP2_CANCEL);
    }
  } catch {
    stream.destroy();
  }
}

export function sendUnary(stream: ServerHttp2Stream, payload: Buffer): void {
  if (stream.closed || stream.destroyed) return;
  stream.respond(GRPC_RESPONSE_HEADERS, RESPOND_TRAILERS);
  stream.on('wantTrailers', () => {
    try {
      stream.sendTrailers(GRPC_OK_TRAILERS);
    } catch {
      /* gone */
    }
  });
  stream.end(encodeFrame(payload));
}

/**
 * The request body, whole. Its bytes count against `budget` from the read until the call's stream
 * closes, or until the read is refused: a body read is held while its call waits (a create for
 * its profile's merge or AppArmor load), so the budget bounds what all open calls hold. Past
 * the budget the call is refused, never forwarded unread.
 */
export function readBody(stream: ServerHttp2Stream, budget: BodyBudget, max = MAX_INSPECTED_MESSAGE_BYTES + 5): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    // `size` is what this read has taken from the budget; cleanup() gives exactly that back.
    const onData = (c: Buffer) => {
      if (size + c.length > max) {
        cleanup();
        reject(new SpokeError('InvalidArgument', `request larger than ${max} bytes`, { limit: max }, { reason: 'FRAME_INVALID' }));
        return;
      }
      if (!budget.take(c.length)) {
        cleanup();
        reject(new SpokeError('Unavailable', `the shim is reading ${budget.limit} bytes of request bodies already; try again`, { limit: budget.limit }, { reason: 'OVERLOADED' }));
        return;
      }
      size += c.length;
      chunks.push(c);
    };
    const onEnd = () => {
      const held = size;
      size = 0;
      cleanup();
      // 'close' follows 'end' on every HTTP/2 stream, however the call ends.
      stream.once('close', () => budget.give(held));
      resolve(Buffer.concat(chunks));
    };
    const onClose = () => {
      cleanup();
      reject(new SpokeError('Unavailable', 'the client closed the stream before the request was complete', {}, { reason: 'CANCELLED' }));
    };
    const cleanup = () => {
      budget.give(size);
      size = 0;
      stream.off('data', onData);
      stream.off('end', onEnd);
      stream.off('close', onClose);
    };
    stream.on('data', onData);
    stream.once('end', onEnd);
    stream.once('close', onClose);
  });
}

/**
 * Counts a compressed request's message (decodeRequest) against `budget` beside its body
 * (readBody), until the call's stream closes: a call holds its message while it waits, and a few
 * KiB of gzip decompress to 16 MiB, so the budget would not bound what the calls hold
 * (docs/shim.md#connections). Returns the bytes the call holds in all, what its namespace's share
 * counts (namespaceShare); throws Unavailable (OVERLOADED) past the budget.
 */
export function holdMessage(budget: BodyBudget, stream: ServerHttp2Stream, body: Buffer, message: Buffer): number {
  // decodeRequest read one frame: its first byte is the compressed flag.
  if (body[0] !== 1 || stream.closed || stream.destroyed) return body.length;
  if (!budget.take(message.length)) {
    throw new SpokeError('Unavailable', `the shim is holding ${budget.limit} bytes of request bodies already; try again`, { limit: budget.limit }, { reason: 'OVERLOADED' });
  }
  stream.once('close', () => budget.give(message.length));
  return body.length + message.length;
}

/**
 * Counts the `held` bytes of a body read whole (holdMessage: with its message, when compressed)
 * as its namespace's share of the body budget (BodyBudget.own) from the
 * first call of the function returned, made as soon as the namespace is known and before the
 * call waits on anything (a pull, a runtime answer), until the call's stream closes; later calls
 * count nothing more. Throws Unavailable (OVERLOADED) when that namespace's waiting calls hold
 * half the budget (docs/shim.md#connections).
 */
export function namespaceShare(budget: BodyBudget, held: number, stream: ServerHttp2Stream): (namespace: string | undefined) => void {
  let counted = false;
  return (namespace) => {
    if (counted) return;
    if (!budget.own(held, namespace ?? '', stream)) {
      throw new SpokeError('Unavailable', `spoke shim: the calls of this namespace waiting in the shim hold half of the ${budget.limit} bytes of request bodies it holds at once; try again`, { limit: budget.limit }, { reason: 'OVERLOADED' });
    }
    counted = true;
  };
}

/**
 * The one message of a unary request body, decompressed per grpc-encoding. Throws on a body
 * that is not exactly one well-formed frame or whose encoding cannot be undone.
 */
export function decodeRequest(body: Buffer, headers: IncomingHttpHeaders): Buffer {
  const frames = parseFrames(body);
  if (frames.length !== 1) throw new FrameError(`expected one request message, got ${frames.length}`);
  return decompress(frames[0]!, headerString(headers['grpc-encoding']));
}

export function singleMessage(body: Buffer, headers: IncomingHttpHeaders): Buffer {
  try {
    return decodeRequest(body, headers);
  } catch (e) {
    throw new SpokeError('InvalidArgument', `malformed gRPC request: ${(e as Error).message}`, {}, { cause: e, reason: 'FRAME_INVALID' });
  }
}

/**
 * A unary call answered by the shim: the request read whole, `handler` given its message, an
 * abort signal (client cancel, deadline) and the body's namespace share (namespaceShare), the
 * response sent unless the deadline passed.
 */
export async function unaryCall(
  host: CallHost,
  call: Call,
  headers: IncomingHttpHeaders,
  handler: (request: Buffer, signal: () => AbortSignal, share: (namespace: string | undefined) => void) => Promise<Buffer>,
): Promise<void> {
  const stream = call.stream;
  const deadline = deadlineOf(headers, call.started);
  // The abort signal (client cancel, deadline) is made only when the handler asks for it: a
  // cached pull never does, and an AbortController plus a deadline timer per call are a
  // noticeable part of its cost.
  let ac: AbortController | undefined;
  let timer: NodeJS.Timeout | undefined;
  let cancelled: SpokeError | undefined;
  const signal = (): AbortSignal => {
    if (ac === undefined) {
      const c = (ac = new AbortController());
      if (cancelled !== undefined) c.abort(cancelled);
      else if (deadline !== undefined) {
        timer = setTimeout(() => c.abort(new SpokeError('Unavailable', 'deadline exceeded', {}, { reason: 'DEADLINE' })), Math.max(0, deadline - performance.now()));
      }
    }
    return ac.signal;
  };
  const onClose = () => {
    cancelled ??= new SpokeError('Unavailable', 'the client cancelled the call', {}, { reason: 'CANCELLED' });
    ac?.abort(cancelled);
  };
  stream.once('close', onClose);
  try {
    const body = await readBody(stream, host.bodies);
    const request = singleMessage(body, headers);
    const held = holdMessage(host.bodies, stream, body, request);
    const response = await handler(request, signal, namespaceShare(host.bodies, held, stream));
    if (deadline !== undefined && performance.now() > deadline) {
      host.endCall(call, GrpcCode.DEADLINE_EXCEEDED, 'deadline exceeded', 'DEADLINE');
      return;
    }
    host.report(call);
    sendUnary(stream, response);
  } catch (e) {
    if (deadline !== undefined && performance.now() >= deadline) host.endCall(call, GrpcCode.DEADLINE_EXCEEDED, 'deadline exceeded', 'DEADLINE');
    else throw e;
  } finally {
    if (timer) clearTimeout(timer);
    stream.off('close', onClose);
  }
}
