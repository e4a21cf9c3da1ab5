// The protobuf wire-format writer, and the one edit the shim needs, "replace (or create) the
// message at this field path", which splices new bytes in and fixes the length prefixes of the
// enclosing messages. Every other byte of the message is kept as it was: unknown fields, field
// order, even non-minimal tag encodings. Pure: no I/O. Reading: wire.ts.

import { FieldCursor, findAll, WIRE_LEN, WIRE_VARINT, WireError } from './wire.js';

/** Bytes of the varint of `n`, a whole number below 2^32. */
export function varintSize(n: number): number {
  let size = 1;
  for (let v = n; v >= 0x80; v = Math.floor(v / 128)) size++;
  return size;
}

/** Writes the varint of `n` (a whole number below 2^32) into `out` at `pos`; the offset past it. */
export function writeVarint(out: Uint8Array, pos: number, n: number): number {
  let small = n;
  while (small >= 0x80) {
    out[pos++] = (small & 0x7f) | 0x80;
    small = Math.floor(small / 128);
  }
  out[pos++] = small;
  return pos;
}

export function encodeVarint(n: number | bigint): Buffer {
  // Tags, lengths and most values fit 32 bits: written without BigInt, which a response and
  // every edited request would otherwise pay per field.
  if (typeof n === 'number' && n >= 0 && n <= 0xffffffff && Number.isInteger(n)) {
    const out = Buffer.allocUnsafe(varintSize(n));
    writeVarint(out, 0, n);
    return out;
  }
  let v = typeof n === 'bigint' ? BigInt.asUintN(64, n) : BigInt(n < 0 ? BigInt.asUintN(64, BigInt(n)) : n);
  const out: number[] = [];
  while (v >= 0x80n) {
    out.push(Number(v & 0x7fn) | 0x80);
    v >>= 7n;
  }
  out.push(Number(v));
  return Buffer.from(out);
}

export function encodeTag(field: number, wireType: number): Buffer {
  return encodeVarint(field * 8 + wireType);
}

export function lenField(field: number, payload: Uint8Array): Buffer {
  return Buffer.concat([encodeTag(field, WIRE_LEN), encodeVarint(payload.length), payload]);
}

export function stringField(field: number, s: string): Buffer {
  return s === '' ? Buffer.alloc(0) : lenField(field, Buffer.from(s, 'utf8'));
}

export function varintField(field: number, v: number | bigint): Buffer {
  return v === 0 || v === 0n ? Buffer.alloc(0) : Buffer.concat([encodeTag(field, WIRE_VARINT), encodeVarint(v)]);
}

export function boolField(field: number, b: boolean): Buffer {
  return b ? Buffer.concat([encodeTag(field, WIRE_VARINT), Buffer.from([1])]) : Buffer.alloc(0);
}

/**
 * Replaces the payload of the embedded message at `path` (field numbers from the outermost
 * message inward) with `payload`; missing messages along the path are created (appended at the
 * end of their parent). Every field along the path must occur at most once (the caller decides
 * what to do with repeated occurrences before calling). Only the spliced field and the length
 * prefixes of its enclosing messages change; the tag bytes of existing fields are kept as sent.
 */
export function replaceMessageAt(msg: Uint8Array, path: readonly number[], payload: Uint8Array): Buffer {
  if (path.length === 0) return Buffer.from(payload);
  const [head, ...rest] = path as [number, ...number[]];
  const all = findAll(msg, head);
  if (all.length > 1) throw new WireError(`field ${head} occurs ${all.length} times on the edit path`);
  const src = Buffer.from(msg.buffer, msg.byteOffset, msg.length);
  if (all.length === 0) {
    const inner = replaceMessageAt(Buffer.alloc(0), rest, payload);
    return Buffer.concat([src, lenField(head, inner)]);
  }
  const f = all[0]!;
  if (f.wireType !== WIRE_LEN) throw new WireError(`field ${head} on the edit path is not length-delimited`);
  const inner = replaceMessageAt(src.subarray(f.valueStart, f.end), rest, payload);
  return Buffer.concat([src.subarray(0, f.start), src.subarray(f.start, f.lenStart), encodeVarint(inner.length), inner, src.subarray(f.end)]);
}

/** `buf` without any occurrence of `field`, and how many there were. */
export function withoutField(buf: Uint8Array, field: number): { bytes: Buffer; removed: number } {
  const kept: Uint8Array[] = [];
  let removed = 0;
  for (const f = new FieldCursor(buf); f.next(); ) {
    if (f.field === field) removed++;
    else kept.push(buf.subarray(f.start, f.end));
  }
  return { bytes: Buffer.concat(kept), removed };
}

/** Appends raw field bytes to the embedded message at `path` (created when missing). */
export function appendToMessageAt(msg: Uint8Array, path: readonly number[], fieldBytes: Uint8Array): Buffer {
  if (path.length === 0) return Buffer.concat([msg, fieldBytes]);
  const [head, ...rest] = path as [number, ...number[]];
  const all = findAll(msg, head);
  const src = Buffer.from(msg.buffer, msg.byteOffset, msg.length);
  if (all.length === 0) return Buffer.concat([src, lenField(head, appendToMessageAt(Buffer.alloc(0), rest, fieldBytes))]);
  // Several occurrences merge; appending to the last one gives the appended field the last word.
  const f = all[all.length - 1]!;
  if (f.wireType !== WIRE_LEN) throw new WireError(`field ${head} on the edit path is not length-delimited`);
  const inner = appendToMessageAt(src.subarray(f.valueStart, f.end), rest, fieldBytes);
  return Buffer.concat([src.subarray(0, f.start), src.subarray(f.start, f.lenStart), encodeVarint(inner.length), inner, src.subarray(f.end)]);
}
