// A raw HTTP/2 client (and server) for tests that must break the rules a real HTTP/2 library
// enforces: send garbage after the preface, open more streams than the server allows, never
// finish a request, answer with a status node:http2 would refuse to send.
// Frames per RFC 9113 §4.1; header blocks use HPACK literals without indexing (RFC 7541 §6.2.2),
// so no encoder state is needed. Incoming frames are split but only their headers are read.

import { connect, createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net';

export const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

export const FRAME = { DATA: 0, HEADERS: 1, RST_STREAM: 3, SETTINGS: 4, PING: 6, GOAWAY: 7 } as const;
export const FLAG = { END_STREAM: 0x1, ACK: 0x1, END_HEADERS: 0x4 } as const;
export const H2_NO_ERROR = 0;
export const H2_REFUSED_STREAM = 7;

export interface Frame {
  type: number;
  flags: number;
  stream: number;
  payload: Buffer;
}

export function frame(type: number, flags: number, stream: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const h = Buffer.alloc(9);
  h.writeUIntBE(payload.length, 0, 3);
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(stream, 5);
  return Buffer.concat([h, payload]);
}

/** A header block of literals (names and values shorter than 127 bytes). */
export function headerBlock(headers: Record<string, string>): Buffer {
  const parts: Buffer[] = [];
  for (const [k, v] of Object.entries(headers)) {
    if (k.length > 126 || v.length > 126) throw new Error('header too long for this encoder');
    parts.push(Buffer.from([0, k.length]), Buffer.from(k, 'latin1'), Buffer.from([v.length]), Buffer.from(v, 'latin1'));
  }
  return Buffer.concat(parts);
}

/** Request headers of a gRPC call to `path` over the shim's socket. */
export function grpcRequestHeaders(path: string): Buffer {
  return headerBlock({ ':method': 'POST', ':scheme': 'http', ':path': path, ':authority': 'localhost', 'content-type': 'application/grpc', te: 'trailers' });
}

export class RawH2 {
  readonly frames: Frame[] = [];
  readonly closed: Promise<void>;
  private buf = Buffer.alloc(0);
  private listeners: (() => void)[] = [];

  private constructor(
    readonly socket: Socket,
    private readonly answerPings: boolean,
  ) {
    socket.on('data', (d: Buffer) => this.onData(d));
    socket.on('error', () => {});
    this.closed = new Promise((r) => socket.once('close', () => r()));
  }

  /** Connects; PINGs are answered unless `answerPings` is false (a peer that never speaks). */
  static async open(path: string, opts: { answerPings?: boolean } = {}): Promise<RawH2> {
    const s = connect(path);
    await new Promise<void>((resolve, reject) => {
      s.once('connect', resolve);
      s.once('error', reject);
    });
    return new RawH2(s, opts.answerPings ?? true);
  }

  write(b: Buffer): void {
    this.socket.write(b);
  }

  /** The preface and an empty SETTINGS frame; the server's SETTINGS are not acknowledged. */
  hello(): void {
    this.write(Buffer.concat([PREFACE, frame(FRAME.SETTINGS, 0, 0)]));
  }

  /** Resolves once `pred` holds for the frames received so far (checked on every frame). */
  until(pred: (frames: readonly Frame[]) => boolean): Promise<void> {
    if (pred(this.frames)) return Promise.resolve();
    return new Promise((resolve) => {
      const check = () => {
        if (!pred(this.frames)) return;
        this.listeners = this.listeners.filter((l) => l !== check);
        resolve();
      };
      this.listeners.push(check);
    });
  }

  destroy(): void {
    this.socket.destroy();
  }

  private onData(d: Buffer): void {
    this.buf = Buffer.concat([this.buf, d]);
    let added = false;
    while (this.buf.length >= 9) {
      const len = this.buf.readUIntBE(0, 3);
      if (this.buf.length < 9 + len) break;
      const f = { type: this.buf[3]!, flags: this.buf[4]!, stream: this.buf.readUInt32BE(5) & 0x7fffffff, payload: Buffer.from(this.buf.subarray(9, 9 + len)) };
      this.frames.push(f);
      if (this.answerPings && f.type === FRAME.PING && (f.flags & FLAG.ACK) === 0 && !this.socket.destroyed) this.write(frame(FRAME.PING, FLAG.ACK, 0, f.payload));
      this.buf = this.buf.subarray(9 + len);
      added = true;
    }
    if (added) for (const l of [...this.listeners]) l();
  }
}

/** RST_STREAM frames received, as stream id → error code. */
export function resets(frames: readonly Frame[]): Map<number, number> {
  const out = new Map<number, number>();
  for (const f of frames) if (f.type === FRAME.RST_STREAM) out.set(f.stream, f.payload.readUInt32BE(0));
  return out;
}

/**
 * A raw HTTP/2 server on a unix socket, answering each request's HEADERS with `answer` (the
 * socket and the stream id): for upstream answers node:http2 would not send itself.
 */
export function rawUpstream(path: string, answer: (sock: Socket, stream: number) => void): Promise<NetServer> {
  const server = createNetServer((sock) => {
    let buf = Buffer.alloc(0);
    let preface = false;
    sock.on('error', () => {});
    sock.write(frame(FRAME.SETTINGS, 0, 0));
    sock.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (!preface) {
        if (buf.length < PREFACE.length) return;
        buf = buf.subarray(PREFACE.length);
        preface = true;
      }
      while (buf.length >= 9) {
        const len = buf.readUIntBE(0, 3);
        if (buf.length < 9 + len) break;
        const type = buf[3]!;
        const flags = buf[4]!;
        const id = buf.readUInt32BE(5) & 0x7fffffff;
        buf = buf.subarray(9 + len);
        if (type === FRAME.SETTINGS && (flags & FLAG.ACK) === 0) sock.write(frame(FRAME.SETTINGS, FLAG.ACK, 0));
        if (type === FRAME.PING && (flags & FLAG.ACK) === 0) sock.write(frame(FRAME.PING, FLAG.ACK, 0, Buffer.alloc(8)));
        if (type === FRAME.HEADERS) answer(sock, id);
      }
    });
  });
  return new Promise((resolve) => server.listen(path, () => resolve(server)));
}
