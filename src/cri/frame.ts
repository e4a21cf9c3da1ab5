// gRPC over HTTP/2 framing facts (grpc/doc/PROTOCOL-HTTP2.md): length-prefixed messages
// (1 byte compressed flag, 4 bytes big-endian length), grpc-timeout, percent-encoded
// grpc-message. Pure.

import { gunzipSync } from 'node:zlib';
import { SpokeError } from '../core/errors.js';

export const FRAME_HEADER_BYTES = 5;
/** The shim buffers only the unary messages it inspects; anything bigger is refused. */
export const MAX_INSPECTED_MESSAGE_BYTES = 16 * 1024 * 1024;

export interface GrpcMessage {
  compressed: boolean;
  payload: Buffer;
}

/** A malformed gRPC frame: a SpokeError (InvalidArgument, FRAME_INVALID), so callers need no conversion. */
export class FrameError extends SpokeError {
  constructor(message: string) {
    super('InvalidArgument', message, {}, { reason: 'FRAME_INVALID' });
    this.name = 'FrameError';
  }
}

/** Splits a complete body into its messages; throws FrameError on a truncated body. */
export function parseFrames(body: Buffer, max = MAX_INSPECTED_MESSAGE_BYTES): GrpcMessage[] {
  const out: GrpcMessage[] = [];
  let pos = 0;
  while (pos < body.length) {
    if (pos + FRAME_HEADER_BYTES > body.length) throw new FrameError('truncated gRPC message header');
    const flag = body[pos]!;
    if (flag > 1) throw new FrameError(`invalid gRPC compressed flag ${flag}`);
    const len = body.readUInt32BE(pos + 1);
    if (len > max) throw new FrameError(`gRPC message of ${len} bytes exceeds ${max}`);
    const start = pos + FRAME_HEADER_BYTES;
    if (start + len > body.length) throw new FrameError('truncated gRPC message');
    out.push({ compressed: flag === 1, payload: body.subarray(start, start + len) });
    pos = start + len;
  }
  return out;
}

export function encodeFrame(payload: Uint8Array, compressed = false): Buffer {
  const out = Buffer.allocUnsafe(FRAME_HEADER_BYTES + payload.length);
  out[0] = compressed ? 1 : 0;
  out.writeUInt32BE(payload.length, 1);
  out.set(payload, FRAME_HEADER_BYTES);
  return out;
}

/** Decompresses a message flagged compressed under `encoding` (gzip only; identity never sets the flag). */
export function decompress(msg: GrpcMessage, encoding: string | undefined): Buffer {
  if (!msg.compressed) return msg.payload;
  if (encoding === 'gzip') return gunzipSync(msg.payload, { maxOutputLength: MAX_INSPECTED_MESSAGE_BYTES });
  throw new FrameError(`unsupported grpc-encoding ${JSON.stringify(encoding ?? '')}`);
}

const TIMEOUT_UNITS: Readonly<Record<string, number | undefined>> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 0.001, n: 0.000001 };

/** The longest delay a Node timer keeps. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** grpc-timeout header → milliseconds; undefined when absent or malformed. */
export function parseGrpcTimeout(v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const last = v.length - 1;
  if (last < 1 || last > 8) return undefined;
  const unit = TIMEOUT_UNITS[v[last]!];
  if (unit === undefined) return undefined;
  let n = 0;
  for (let i = 0; i < last; i++) {
    const d = v.charCodeAt(i) - 0x30;
    if (d < 0 || d > 9) return undefined;
    n = n * 10 + d;
  }
  // Node fires a timer longer than 2^31 - 1 ms (~24.8 days) at once: a 30-day deadline (grpc-go
  // writes "43200M") would fail every call. Longer is that much.
  return Math.min(n * unit, MAX_TIMER_MS);
}

/** Milliseconds → grpc-timeout header value (at most 8 digits). */
export function formatGrpcTimeout(ms: number): string {
  const v = Math.max(0, Math.ceil(ms));
  if (v < 1e8) return `${v}m`;
  const s = Math.ceil(v / 1000);
  if (s < 1e8) return `${s}S`;
  return `${Math.min(99_999_999, Math.ceil(s / 3600))}H`;
}

/** grpc-message is percent-encoded UTF-8 (bytes outside 0x20–0x7e, and '%'). */
export function encodeGrpcMessage(s: string): string {
  const bytes = Buffer.from(s, 'utf8');
  let out = '';
  for (const b of bytes) {
    if (b >= 0x20 && b <= 0x7e && b !== 0x25) out += String.fromCharCode(b);
    else out += '%' + b.toString(16).toUpperCase().padStart(2, '0');
  }
  return out;
}

export function decodeGrpcMessage(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}
