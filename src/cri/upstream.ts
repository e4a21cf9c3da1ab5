// ONE HTTP/2 client session to the upstream runtime's unix socket, reconnected with backoff
// when the runtime restarts. While it is down, get() returns undefined and callers answer
// UNAVAILABLE at once (the kubelet retries). A GOAWAY lets streams in flight finish on the old
// session while new calls open a new one.

import { connect, constants, type ClientHttp2Session, type ClientHttp2Stream, type OutgoingHttpHeaders } from 'node:http2';
import { connect as netConnect } from 'node:net';
import { monotonicNow, type Logger, type MonotonicNow } from '../core/runtime.js';
import { decodeGrpcMessage, encodeFrame, formatGrpcTimeout, parseFrames } from './frame.js';

export const BACKOFF_INITIAL_MS = 50;
export const BACKOFF_MAX_MS = 2000;

export interface UpstreamEvents {
  /** Called each time a session becomes connected (first start and every reconnect). */
  onConnect?: () => void;
  /** Called each time a connected session is lost (the runtime stopped, restarts, or went away). */
  onDisconnect?: () => void;
}

export class Upstream {
  private session: ClientHttp2Session | undefined;
  private connected = false;
  private backoff = BACKOFF_INITIAL_MS;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private lastFailure = -Infinity;
  private everConnected = false;

  constructor(
    readonly socketPath: string,
    private readonly logger: Logger,
    private readonly events: UpstreamEvents = {},
    /** The clock the reconnect backoff and waitUp's timeout are measured on (tests). */
    private readonly now: MonotonicNow = monotonicNow,
  ) {}

  start(): void {
    this.connectNow();
  }

  isUp(): boolean {
    return this.connected && this.session !== undefined && !this.session.destroyed && !this.session.closed;
  }

  /**
   * The session to use for a new stream, or undefined while the runtime is down. A session that
   * is still connecting is returned (requests queue on it until the socket is up).
   */
  get(): ClientHttp2Session | undefined {
    if (this.closed) return undefined;
    const s = this.session;
    if (s && !s.destroyed && !s.closed) return s;
    // Down: try again at once unless the last attempt failed moments ago (then the backoff
    // timer owns reconnecting and the caller answers UNAVAILABLE).
    if (this.now() - this.lastFailure >= this.backoff) this.connectNow();
    const n = this.session;
    return n && !n.destroyed && !n.closed ? n : undefined;
  }

  private connectNow(): void {
    if (this.closed) return;
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    const path = this.socketPath;
    const session = connect('http://localhost', {
      createConnection: () => netConnect(path),
      settings: { enablePush: false, initialWindowSize: 4 * 1024 * 1024 },
      maxSessionMemory: 64,
    });
    this.session = session;
    this.connected = false;
    session.on('connect', () => {
      if (this.session !== session) return;
      this.connected = true;
      this.backoff = BACKOFF_INITIAL_MS;
      this.logger.log(this.everConnected ? 'info' : 'debug', 'upstream connected', { upstream: path });
      this.everConnected = true;
      // Larger connection window than the 64 KiB default: big List* responses flow at once.
      try {
        session.setLocalWindowSize(8 * 1024 * 1024);
      } catch {
        /* not fatal */
      }
      this.events.onConnect?.();
    });
    session.on('error', (err: NodeJS.ErrnoException) => {
      if (this.session === session && !this.connected) {
        this.logger.log('debug', 'upstream connect failed', { upstream: path, error: err.code ?? err.message });
      } else {
        this.logger.log('warn', 'upstream session error', { upstream: path, error: err.code ?? err.message });
      }
    });
    session.on('goaway', () => {
      // Existing streams may finish; new ones go to a fresh session.
      if (this.session === session) this.dropAndReconnect(session, false);
    });
    session.on('close', () => {
      if (this.session === session) this.dropAndReconnect(session, true);
    });
    // Do not keep the process alive just for an idle upstream connection.
    session.unref();
  }

  private dropAndReconnect(session: ClientHttp2Session, failed: boolean): void {
    const wasConnected = this.connected;
    this.session = undefined;
    this.connected = false;
    if (wasConnected) {
      this.logger.log('warn', 'upstream disconnected', { upstream: this.socketPath });
      this.events.onDisconnect?.();
    }
    if (!session.closed && !session.destroyed) session.close();
    if (this.closed) return;
    if (failed && !wasConnected) {
      this.lastFailure = this.now();
      this.backoff = Math.min(BACKOFF_MAX_MS, this.backoff * 2);
    }
    const delay = wasConnected ? 0 : this.backoff;
    this.timer = setTimeout(() => this.connectNow(), delay);
    this.timer.unref();
  }

  /** Waits until connected (or the timeout passes); true when up. */
  async waitUp(timeoutMs: number): Promise<boolean> {
    const until = this.now() + timeoutMs;
    while (!this.isUp()) {
      if (this.now() >= until || this.closed) return false;
      if (!this.session) this.get();
      await new Promise((r) => setTimeout(r, 20));
    }
    return true;
  }

  /**
   * A unary call made by the shim itself (ListContainers, ListPodSandbox on rebuild).
   * Resolves with the response message; rejects with an Error carrying `grpcCode`.
   */
  unary(path: string, request: Uint8Array, timeoutMs = 10_000): Promise<Buffer> {
    const session = this.get();
    if (!session) return Promise.reject(Object.assign(new Error('upstream unavailable'), { grpcCode: 14 }));
    return new Promise((resolve, reject) => {
      const headers: OutgoingHttpHeaders = {
        ':method': 'POST',
        ':path': path,
        ':scheme': 'http',
        ':authority': 'localhost',
        'content-type': 'application/grpc',
        te: 'trailers',
        'grpc-timeout': formatGrpcTimeout(timeoutMs),
        'user-agent': 'spoke-shim',
      };
      let stream: ClientHttp2Stream;
      try {
        stream = session.request(headers, { endStream: false });
      } catch (e) {
        reject(Object.assign(new Error(`upstream request failed: ${(e as Error).message}`), { grpcCode: 14 }));
        return;
      }
      const chunks: Buffer[] = [];
      let status: string | undefined;
      let message = '';
      const grab = (h: Record<string, unknown>) => {
        if (h['grpc-status'] !== undefined) status = String(h['grpc-status']);
        if (h['grpc-message'] !== undefined) message = String(h['grpc-message']);
      };
      stream.on('response', (h) => grab(h as Record<string, unknown>));
      stream.on('trailers', (h) => grab(h as Record<string, unknown>));
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('error', () => {
        /* reported through close */
      });
      stream.on('close', () => {
        if (status === '0') {
          try {
            const frames = parseFrames(Buffer.concat(chunks), 256 * 1024 * 1024);
            resolve(frames[0]?.payload ?? Buffer.alloc(0));
          } catch (e) {
            reject(e);
          }
        } else {
          const code = status === undefined ? 14 : Number(status);
          reject(Object.assign(new Error(`upstream ${path}: ${decodeGrpcMessage(message || 'no status')}`), { grpcCode: code }));
        }
      });
      stream.end(encodeFrame(request));
      const t = setTimeout(() => stream.close(constants.NGHTTP2_CANCEL), timeoutMs + 1000);
      t.unref();
      stream.on('close', () => clearTimeout(t));
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    const s = this.session;
    this.session = undefined;
    this.connected = false;
    if (s && !s.destroyed) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(() => {
          s.destroy();
          resolve();
        }, 2000);
        t.unref();
        s.close(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }
}
