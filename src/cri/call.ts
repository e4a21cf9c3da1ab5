// One client call through the shim, and what the parts that serve it need from the server.

import type { ClientHttp2Stream, ServerHttp2Stream } from 'node:http2';
import type { ErrorReason } from '../core/errors.js';
import type { Logger } from '../core/runtime.js';
import type { GrpcCodeValue } from './grpc-status.js';
import type { Upstream } from './upstream.js';

export interface Call {
  stream: ServerHttp2Stream;
  path: string;
  streaming: boolean;
  /** performance.now() when the call arrived. */
  started: number;
  /** The forward-duration metric was recorded (at the response headers, or at close). */
  reported: boolean;
  /** The upstream stream of a forwarded call, until it closes. */
  up: ClientHttp2Stream | undefined;
  /** The client has sent the whole request (END_STREAM), as last seen by the body sweep. */
  requestDone: boolean;
  /** The request's header fields as received (name, value, …): a repeated name stays repeated. */
  rawHeaders: RawHeaders;
  /** Detaches what forwarding attached to the client's stream; run when that stream closes (relay.ts). */
  release: (() => void) | undefined;
}

/**
 * A header list as received, name and value alternating. node:http2 passes it to 'stream',
 * 'response' and 'trailers' listeners after the arguments @types/node declares.
 */
export type RawHeaders = readonly string[];

/** Bytes of request bodies being read, over every call: what the shim holds for them is bounded. */
export class BodyBudget {
  private used = 0;
  /** namespace → bytes of its bodies held while their calls wait (own). */
  private readonly owned = new Map<string, number>();

  constructor(readonly limit: number) {}

  /**
   * Counts a body read whole (taken already) as `owner`'s while its call waits, until `call`
   * closes: false, counting nothing, when the bodies that namespace holds would pass half the
   * budget (one body alone always fits). One namespace's calls waiting on its stalled pulls
   * would otherwise hold the whole budget, and every other namespace's calls be refused. A call
   * closed already is counted nothing: no 'close' would come to give it back.
   */
  own(bytes: number, owner: string, call: { readonly closed?: boolean; once(event: 'close', listener: () => void): unknown }): boolean {
    if (call.closed === true) return true;
    const held = this.owned.get(owner) ?? 0;
    if (held > 0 && held + bytes > this.limit / 2) return false;
    this.owned.set(owner, held + bytes);
    call.once('close', () => {
      const left = (this.owned.get(owner) ?? 0) - bytes;
      if (left > 0) this.owned.set(owner, left);
      else this.owned.delete(owner);
    });
    return true;
  }

  /** Takes `n` bytes; false (nothing taken) when that would pass the limit. */
  take(n: number): boolean {
    if (this.used + n > this.limit) return false;
    this.used += n;
    return true;
  }

  give(n: number): void {
    this.used -= n;
  }
}

export interface CallHost {
  readonly upstream: Upstream;
  readonly logger: Logger;
  /** Shared by every request body the shim reads whole (connections.ts MAX_BUFFERED_REQUEST_BYTES). */
  readonly bodies: BodyBudget;
  /** Records the forward-duration metric once: at the response headers, or when the call closes. */
  report(call: Call): void;
  /** Reports the call and ends it with a gRPC status of the shim's own, for `reason` (unary.ts endWithStatus). */
  endCall(call: Call, code: GrpcCodeValue, message: string, reason: ErrorReason): void;
}
