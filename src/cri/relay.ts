// The raw relay: one call forwarded as HTTP/2 to the upstream runtime. Request headers, DATA,
// response headers, DATA and trailers pass unchanged, minus connection-specific fields and, in
// the answer, spoke-reason; an upstream reset or disconnect ends the client's stream (UNAVAILABLE
// when nothing was sent yet).

import { constants, type ClientHttp2Stream, type IncomingHttpHeaders, type OutgoingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import type { Readable, Writable } from 'node:stream';
import { SHIM_REASON_TRAILER } from '../core/errors.js';
import type { Call, CallHost, RawHeaders } from './call.js';
import { encodeFrame, encodeGrpcMessage, parseFrames } from './frame.js';
import { GrpcCode } from './grpc-status.js';
import { headerString, RESPOND_END, RESPOND_TRAILERS } from './unary.js';

const { NGHTTP2_FLAG_END_STREAM } = constants;

/** Headers that are per-connection in HTTP/1 and forbidden in HTTP/2 (RFC 9113 §8.2.2). */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'http2-settings', 'host']);
const REQUEST_PSEUDO = new Set([':method', ':path', ':scheme', ':authority']);
/**
 * Response fields and trailers not relayed: those, and the field that marks a status the shim
 * gives itself (SHIM_REASON_TRAILER), which a runtime, or a second shim chained upstream, may
 * send: relayed, a client (spoke status) would take the runtime's answer for this shim's own
 * (docs/shim.md#forwarding). One set, so the check per field stays one lookup.
 */
const RESPONSE_DROPPED = new Set([...HOP_BY_HOP, SHIM_REASON_TRAILER]);

export interface ForwardOptions {
  body?: Buffer;
  /** Request fields sent instead of the client's (an edited create's shorter grpc-timeout). */
  replace?: Readonly<Record<string, string>>;
  editResponse?: (payload: Buffer) => Buffer;
  teeResponse?: boolean;
  onComplete?: (grpcStatus: string | undefined, responseBody: Buffer | undefined) => Promise<void>;
  /**
   * Answer the client first and run `onComplete` once its stream has closed, the answer sent
   * (default: before the trailers go). Work done in the same turn as the answer would hold it
   * up: node:http2 writes what a turn submitted only after the turn ends.
   */
  completeAfterResponse?: boolean;
}

export const noop = (): void => {};

/**
 * Forwards one call as raw HTTP/2. The upstream stream is opened at once and the request body
 * relayed as it arrives (or `o.body` sent whole); the response headers are passed on as soon as
 * they arrive, DATA relayed, trailers passed at the end. Without `onComplete` everything happens
 * synchronously in the HTTP/2 callbacks, so a unary exchange leaves in one write each way.
 */
export function forward(host: CallHost, call: Call, o: ForwardOptions): void {
  const stream = call.stream;
  if (stream.closed || stream.destroyed) {
    // The client is gone (while an edited request was being prepared): nothing to forward.
    void o.onComplete?.(undefined, undefined);
    return;
  }
  const session = host.upstream.get();
  if (!session) {
    void o.onComplete?.(undefined, undefined);
    host.endCall(call, GrpcCode.UNAVAILABLE, 'spoke shim: the upstream runtime is not available', 'TRANSPORT');
    return;
  }
  let up: ClientHttp2Stream;
  try {
    up = session.request({ ...fromRaw(call.rawHeaders, isRequestField), ...o.replace }, { endStream: false });
  } catch (e) {
    void o.onComplete?.(undefined, undefined);
    host.endCall(call, GrpcCode.UNAVAILABLE, `spoke shim: upstream request failed: ${(e as Error).message}`, 'TRANSPORT');
    return;
  }
  up.on('error', noop);
  call.up = up;
  let responded = false;
  let trailers: OutgoingHttpHeaders | undefined;
  let grpcStatus: string | undefined;
  let tee: Buffer[] | undefined;
  let downRelay: Relay | undefined;
  const onComplete = o.onComplete;
  let completed = false;
  const complete = async () => {
    if (completed) return;
    completed = true;
    if (onComplete) await onComplete(grpcStatus, tee ? Buffer.concat(tee) : undefined).catch(() => undefined);
  };
  const completeOnClose = () => {
    if (onComplete) stream.once('close', () => void complete());
  };

  // client → upstream
  let upRelay: Relay | undefined;
  if (o.body !== undefined) up.end(o.body);
  else upRelay = relay(stream, up);
  let onWantTrailers: (() => void) | undefined;
  // A closed stream can outlive its call (its session and the native side let go of it later),
  // and the listeners below hold the whole call through their closures: left attached, a young
  // collection finds the call alive and moves it to the old generation, where only a full
  // collection frees it. Detached once each stream is done, the call dies young
  // (docs/benchmarks.md#kept).
  call.release = () => {
    upRelay?.detach();
    if (onWantTrailers !== undefined) stream.off('wantTrailers', onWantTrailers);
  };

  const onResponse = (h: IncomingHttpHeaders, flags: number, raw: RawHeaders): void => {
    if (stream.closed || stream.destroyed) return;
    // node:http2 refuses to send a status outside 200–599, which nghttp2 accepts from the
    // upstream: the call fails as grpc-go reads an unknown HTTP status (UNKNOWN), not the shim.
    const status = Number(h[':status']);
    if (!(status >= 200 && status <= 599)) {
      responded = true; // answered here: the upstream stream's close adds nothing
      void complete();
      up.close(constants.NGHTTP2_CANCEL);
      host.endCall(call, GrpcCode.UNKNOWN, `spoke shim: the upstream runtime answered HTTP status ${String(h[':status']).slice(0, 16)}`, 'TRANSPORT');
      return;
    }
    const rh = fromRaw(raw, isResponseField);
    responded = true;
    host.report(call);
    // node:http2 throws on what nghttp2 accepted from the upstream but it will not send (a
    // single-value field such as content-type given twice): the call fails, as grpc-go fails on
    // headers it cannot read, and nothing reaches the client.
    const respond = (options: typeof RESPOND_END | typeof RESPOND_TRAILERS): boolean => {
      try {
        stream.respond(rh, options);
        return true;
      } catch (e) {
        up.close(constants.NGHTTP2_CANCEL);
        host.endCall(call, GrpcCode.UNKNOWN, `spoke shim: the upstream runtime answered headers this shim cannot relay: ${(e as Error).message.slice(0, 200)}`, 'TRANSPORT');
        return false;
      }
    };
    if ((flags & NGHTTP2_FLAG_END_STREAM) !== 0) {
      // Trailers-only response (errors, unknown methods): status and message in one block.
      grpcStatus = headerString(h['grpc-status']);
      if (!onComplete || o.completeAfterResponse) {
        if (respond(RESPOND_END)) completeOnClose();
        else void complete();
        return;
      }
      void complete().finally(() => {
        if (!stream.closed && !stream.destroyed) respond(RESPOND_END);
      });
      return;
    }
    if (!respond(RESPOND_TRAILERS)) {
      void complete();
      return;
    }
    // From here the answer is the client's: whenever its stream closes, trailers sent or not (a
    // client that never opened its window and then reset gets no 'wantTrailers'), the call is over.
    if (o.completeAfterResponse) completeOnClose();
    onWantTrailers = () => {
      if (!onComplete || o.completeAfterResponse) {
        sendTrailers(stream, trailers);
        return;
      }
      void complete().finally(() => sendTrailers(stream, trailers));
    };
    stream.on('wantTrailers', onWantTrailers);
    if (o.teeResponse || o.editResponse) {
      const chunks: Buffer[] = (tee = []);
      up.on('data', (c: Buffer) => chunks.push(c));
    }
    if (o.editResponse) {
      const edit = o.editResponse;
      up.on('end', () => {
        const body = Buffer.concat(tee!);
        let outBody: Buffer = body;
        try {
          const frames = parseFrames(body, 256 * 1024 * 1024);
          if (frames.length === 1 && !frames[0]!.compressed) outBody = encodeFrame(edit(frames[0]!.payload));
        } catch (e) {
          host.logger.log('warn', 'response not edited: unparseable', { error: (e as Error).message });
        }
        if (!stream.closed && !stream.destroyed) stream.end(outBody);
      });
    } else {
      downRelay = relay(up, stream);
    }
  };
  up.on('response', onResponse);

  const onTrailers = (t: IncomingHttpHeaders, _flags: number, raw: RawHeaders): void => {
    trailers = fromRaw(raw, isResponseField);
    grpcStatus = headerString(t['grpc-status']);
  };
  up.on('trailers', onTrailers);

  up.once('close', () => {
    call.up = undefined;
    up.off('response', onResponse);
    up.off('trailers', onTrailers);
    downRelay?.detach();
    if (stream.closed || stream.destroyed) {
      void complete();
      return;
    }
    if (!responded) {
      void complete();
      host.endCall(call, GrpcCode.UNAVAILABLE, 'spoke shim: the upstream runtime closed the stream', 'TRANSPORT');
    } else if (trailers === undefined && up.rstCode !== undefined && up.rstCode !== 0) {
      // Reset or disconnect in the middle of a response: what arrived goes out, then UNAVAILABLE.
      downRelay?.flush();
      trailers = { 'grpc-status': String(GrpcCode.UNAVAILABLE), 'grpc-message': encodeGrpcMessage('spoke shim: the upstream runtime reset the stream'), [SHIM_REASON_TRAILER]: 'TRANSPORT' };
      if (!stream.writableEnded) stream.end();
    }
  });
}
/** Request fields for the upstream: the pseudo-headers of a request, no connection-specific field. */
const isRequestField = (k: string): boolean => (k.charCodeAt(0) === 0x3a /* : */ ? REQUEST_PSEUDO.has(k) : !HOP_BY_HOP.has(k));
/** Response fields and trailers for the client: `:status`, no connection-specific field, no spoke-reason. */
const isResponseField = (k: string): boolean => (k.charCodeAt(0) === 0x3a /* : */ ? k === ':status' : !RESPONSE_DROPPED.has(k));

/**
 * The fields of a raw header list that `keep` accepts. A name received several times is sent
 * several times, in order (node:http2's parsed headers join them with commas, which breaks a
 * `-bin` value: grpc-go decodes each field on its own).
 */
function fromRaw(raw: RawHeaders, keep: (name: string) => boolean): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const k = raw[i]!;
    if (!keep(k)) continue;
    const v = raw[i + 1]!;
    // Own fields only: a name the object inherits (constructor) is not a field sent before.
    const prev = Object.hasOwn(out, k) ? out[k] : undefined;
    const next = prev === undefined ? v : Array.isArray(prev) ? [...prev, v] : [String(prev), v];
    // Assigned, a field named __proto__ would set the object's prototype instead.
    if (k === '__proto__') Object.defineProperty(out, k, { value: next, enumerable: true, writable: true, configurable: true });
    else out[k] = next;
  }
  return out;
}

function sendTrailers(stream: ServerHttp2Stream, trailers: OutgoingHttpHeaders | undefined): void {
  if (stream.closed || stream.destroyed) return;
  try {
    stream.sendTrailers(trailers ?? {});
  } catch {
    /* stream already gone */
  }
}

interface Relay {
  /** Writes the chunk held back, if any (before ending the destination some other way). */
  flush(): void;
  /** Removes its listeners from the source, which has nothing more to give (see forward). */
  detach(): void;
}

/**
 * Relays DATA from `src` to `dst` as it arrives, with backpressure, and ends `dst` when `src`
 * ends. The latest chunk is held back until the next one, the end of `src`, or the next turn of
 * the event loop, whichever comes first: a unary message and its END_STREAM usually arrive in
 * one read, and writing them together lets HTTP/2 send the END_STREAM flag (and trailers) on the
 * last DATA frame in the same write instead of an extra frame and an extra loop turn later.
 */
function relay(src: Readable, dst: Writable): Relay {
  let held: Buffer | undefined;
  let timer: NodeJS.Immediate | undefined;
  const write = (c: Buffer) => {
    if (dst.destroyed || dst.writableEnded) return;
    if (!dst.write(c)) {
      src.pause();
      dst.once('drain', () => src.resume());
    }
  };
  const flush = () => {
    if (timer !== undefined) {
      clearImmediate(timer);
      timer = undefined;
    }
    const c = held;
    held = undefined;
    if (c !== undefined) write(c);
  };
  const onImmediate = () => {
    timer = undefined;
    flush();
  };
  const onData = (c: Buffer): void => {
    if (held !== undefined) write(held);
    held = c;
    timer ??= setImmediate(onImmediate);
  };
  const onEnd = (): void => {
    if (timer !== undefined) {
      clearImmediate(timer);
      timer = undefined;
    }
    const c = held;
    held = undefined;
    if (dst.destroyed || dst.writableEnded) return;
    if (c !== undefined) dst.end(c);
    else dst.end();
  };
  src.on('data', onData);
  src.on('end', onEnd);
  return {
    flush,
    detach: () => {
      src.off('data', onData);
      src.off('end', onEnd);
    },
  };
}

