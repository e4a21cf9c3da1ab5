// Connection limits and probes: concurrent streams per connection, a liveness ping per client
// connection, a grace after the client's GOAWAY, and a bound on request bodies that never finish.

import { constants, type ServerHttp2Session } from 'node:http2';
import type { ErrorReason } from '../core/errors.js';
import type { Logger } from '../core/runtime.js';
import type { Call } from './call.js';
import { methodLabel } from './methods.js';
import { GrpcCode, type GrpcCodeValue } from './grpc-status.js';

const { NGHTTP2_NO_ERROR, NGHTTP2_STREAM_STATE_HALF_CLOSED_REMOTE, NGHTTP2_STREAM_STATE_CLOSED } = constants;

/**
 * SETTINGS_MAX_CONCURRENT_STREAMS advertised on every client connection (RFC 9113 §6.5.2 asks
 * for at least 100). The kubelet's gRPC client queues calls beyond it; a client that opens more
 * anyway has the excess refused (REFUSED_STREAM), or, once it acknowledged the setting, loses the
 * connection (nghttp2 treats that as a connection error).
 */
export const MAX_CONCURRENT_STREAMS = 256;
/**
 * A request body not complete this long after its call started is answered DEADLINE_EXCEEDED
 * and the stream reset (checked every quarter of it, so it ends within 1.25 times this). It
 * bounds every call, with or without grpc-timeout (a huge grpc-timeout must not keep a half-sent
 * request open): CRI has no client-streaming method, so a client sends
 * each request whole at once; server streams (GetContainerEvents…) finish their request at the
 * start and are not affected.
 */
export const REQUEST_BODY_TIMEOUT_MS = 30_000;
/**
 * Every client connection is pinged this often, and destroyed when it has not answered the
 * previous ping. nghttp2 answers a protocol error (garbage, a bad frame) with GOAWAY and stops
 * reading, and Node reports nothing: without the probe such a connection, and one whose peer
 * never speaks, would keep its fd and session memory forever.
 */
export const CONNECTION_PROBE_MS = 10_000;
/** After a client's GOAWAY, its calls in flight get this long before the connection is destroyed. */
export const GOAWAY_GRACE_MS = 10_000;
/**
 * Request bodies the shim reads whole (its own calls, and the creates it may edit) hold at most
 * this many bytes at once, over every call and connection: one client opening many streams of
 * 16 MiB bodies must not take the shim's memory (its deployments cap it at 256 MiB). Past it a
 * call is refused UNAVAILABLE (OVERLOADED), never forwarded unread. A kubelet's requests are a
 * few KiB.
 */
export const MAX_BUFFERED_REQUEST_BYTES = 64 * 1024 * 1024;
/**
 * Client connections at once; one more is closed as it opens. A kubelet keeps one or two, and
 * crictl or spoke's own tools one each for a call; a session costs ~30 KB even when idle, and
 * the liveness ping keeps any client that answers it.
 */
export const MAX_SESSIONS = 128;
/**
 * Calls in flight at once over every connection; one more is refused UNAVAILABLE (OVERLOADED)
 * as it opens, never forwarded. Each holds a few KiB of stream state besides its headers
 * (MAX_HEADER_LIST_BYTES): MAX_SESSIONS connections of MAX_CONCURRENT_STREAMS streams each would
 * take past the shim's heap. A kubelet has a few dozen in flight.
 */
export const MAX_CALLS = 1024;
/**
 * SETTINGS_MAX_HEADER_LIST_SIZE of client connections: a request's header fields, uncompressed.
 * They live outside the JavaScript heap, so its cap does not bound them. A kubelet's are a few
 * hundred bytes.
 */
export const MAX_HEADER_LIST_BYTES = 16 * 1024;

export interface ConnectionLimits {
  maxSessions: number;
  maxCalls: number;
  maxConcurrentStreams: number;
  maxBufferedRequestBytes: number;
  requestBodyTimeoutMs: number;
  probeMs: number;
  goawayGraceMs: number;
}

const DEFAULT_LIMITS: ConnectionLimits = Object.freeze({
  maxSessions: MAX_SESSIONS,
  maxCalls: MAX_CALLS,
  maxConcurrentStreams: MAX_CONCURRENT_STREAMS,
  maxBufferedRequestBytes: MAX_BUFFERED_REQUEST_BYTES,
  requestBodyTimeoutMs: REQUEST_BODY_TIMEOUT_MS,
  probeMs: CONNECTION_PROBE_MS,
  goawayGraceMs: GOAWAY_GRACE_MS,
});

/** A client connection's liveness probe. */
interface Probe {
  /** A ping was sent and has not been answered yet. */
  awaiting: boolean;
  /** Destroys the connection when the grace after the client's GOAWAY ends. */
  goaway: NodeJS.Timeout | undefined;
}

/** The client connections of one server, and the timers that bound them and their calls. */
export class ConnectionGuard {
  readonly limits: ConnectionLimits;
  private readonly sessions = new Map<ServerHttp2Session, Probe>();
  private probeTimer: NodeJS.Timeout | undefined;
  private bodyTimer: NodeJS.Timeout | undefined;

  constructor(
    limits: Partial<ConnectionLimits> | undefined,
    private readonly calls: ReadonlySet<Call>,
    private readonly endCall: (call: Call, code: GrpcCodeValue, message: string, reason: ErrorReason) => void,
    private readonly logger: Logger,
  ) {
    this.limits = { ...DEFAULT_LIMITS, ...limits };
  }

  start(): void {
    this.probeTimer = setInterval(() => this.probeSessions(), this.limits.probeMs).unref();
    this.bodyTimer = setInterval(() => this.endStalledRequests(), Math.max(1, this.limits.requestBodyTimeoutMs / 4)).unref();
  }

  stop(): void {
    clearInterval(this.probeTimer);
    clearInterval(this.bodyTimer);
  }

  /** Closes every client connection: no new streams, those open may finish. */
  closeAll(): void {
    for (const s of this.sessions.keys()) s.close();
  }

  destroyAll(): void {
    for (const s of this.sessions.keys()) s.destroy();
  }

  /** Tracks a new client connection: its probe, its errors, the grace after its GOAWAY. */
  onSession(s: ServerHttp2Session): void {
    if (this.sessions.size >= this.limits.maxSessions) {
      this.logger.log('warn', 'client connection refused: too many open', { limit: this.limits.maxSessions });
      s.destroy();
      return;
    }
    const probe: Probe = { awaiting: false, goaway: undefined };
    this.sessions.set(s, probe);
    s.on('close', () => {
      this.sessions.delete(s);
      if (probe.goaway) clearTimeout(probe.goaway);
    });
    // Node destroys the session after 'error' itself; destroying here as well makes sure the
    // socket goes with it whatever the error.
    s.on('error', () => s.destroy());
    s.on('frameError', (_type: number, _code: number, id: number) => {
      if (id === 0) s.destroy();
    });
    // Node closes the session on the client's GOAWAY, but waits without bound for its streams.
    s.on('goaway', () => {
      probe.goaway ??= setTimeout(() => s.destroy(), this.limits.goawayGraceMs).unref();
    });
  }

  /** Pings every client connection; destroys those that did not answer the previous ping. */
  private probeSessions(): void {
    for (const [s, probe] of this.sessions) {
      if (s.destroyed) continue;
      if (probe.awaiting) {
        this.logger.log('debug', 'client connection did not answer a ping: closed');
        s.destroy();
        continue;
      }
      probe.awaiting = true;
      try {
        s.ping((err) => {
          if (!err) probe.awaiting = false;
        });
      } catch {
        s.destroy();
      }
    }
  }

  /** Ends the calls whose request body is still incomplete after the body timeout. */
  private endStalledRequests(): void {
    const limit = this.limits.requestBodyTimeoutMs;
    const oldest = performance.now() - limit;
    for (const call of this.calls) {
      if (call.requestDone || call.started > oldest) continue;
      const stream = call.stream;
      if (stream.closed || stream.destroyed) continue;
      const state = stream.state.state;
      if (state === NGHTTP2_STREAM_STATE_HALF_CLOSED_REMOTE || state === NGHTTP2_STREAM_STATE_CLOSED) {
        call.requestDone = true;
        continue;
      }
      this.logger.log('debug', 'request body incomplete at the timeout: call ended', { method: methodLabel(call.path) });
      this.endCall(call, GrpcCode.DEADLINE_EXCEEDED, `spoke shim: the request was not complete within ${limit} ms`, 'DEADLINE');
      // RFC 9113 §8.1: a complete response, then RST_STREAM(NO_ERROR) stops the request.
      if (!stream.closed && !stream.destroyed) stream.close(NGHTTP2_NO_ERROR);
    }
  }
}
