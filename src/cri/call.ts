// One client call through the shim, and what the parts that serve it need from the server.

import type { ClientHttp2Stream, ServerHttp2Stream } from 'node:http2';
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
}

export interface CallHost {
  readonly upstream: Upstream;
  readonly logger: Logger;
  /** Records the forward-duration metric once: at the response headers, or when the call closes. */
  report(call: Call): void;
  /** Reports the call and ends it with a gRPC status. */
  endCall(call: Call, code: GrpcCodeValue, message: string): void;
}
