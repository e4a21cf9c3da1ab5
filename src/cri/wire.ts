// A small protobuf wire-format reader/writer: varints, tags, length-delimited fields, and the
// one edit the shim needs, "replace (or create) the message at this field path", which splices
// new bytes in and fixes the length prefixes of the enclosing messages. Every other byte of the
// message is kept as it was: unknown fields, field order, even non-minimal tag encodings.
// Pure: no I/O. Throws WireError on malformed input (never reads past the end of a buffer).
// Hand-written, not protobufjs's Reader/Writer: those decode into messages and re-encode, which
// would not keep every other byte (unknown fields, order, non-minimal encodings) as it was.

import { SpokeError } from '../core/errors.js';

export const WIRE_VARINT = 0;
export const WIRE_I64 = 1;
export const WIRE_LEN = 2;
export const WIRE_SGROUP = 3;
export const WIRE_EGROUP = 4;
export const WIRE_I32 = 5;

/** Deepest group nesting we follow while skipping (groups are deprecated; nobody nests them). */
const MAX_GROUP_DEPTH = 32;

/**
 * Malformed protobuf: a SpokeError (InvalidArgument, WIRE_INVALID), so that callers need no
 * conversion; the class stays for `instanceof` where a caller names the request it came from.
 */
export class WireError extends SpokeError {
  constructor(message: string) {
    super('InvalidArgument', message, {}, { reason: 'WIRE_INVALID' });
    this.name = 'WireError';
  }
}

export interface Varint {
  /** The value; exact up to 2^53, beyond that only `big` is exact. */
  value: number;
  big: bigint;
  next: number;
}

export function readVarint(buf: Uint8Array, pos: number, end = buf.length): Varint {
  let result = 0n;
  let shift = 0n;
  for (let i = 0; i < 10; i++) {
    if (pos >= end) throw new WireError('truncated varint');
    const b = buf[pos++]!;
    result |= BigInt(b & 0x7f) << shift;
    if ((b & 0x80) === 0) {
      const big = BigInt.asUintN(64, result);
      return { value: Number(big), big, next: pos };
    }
    shift += 7n;
  }
  throw new WireError('varint longer than 10 bytes');
}

/** Fast path for lengths and tags (< 2^32). */
function readSmallVarint(buf: Uint8Array, pos: number, end: number): { value: number; next: number } {
  let value = 0;
  let mul = 1;
  for (let i = 0; i < 10; i++) {
    if (pos >= end) throw new WireError('truncated varint');
    const b = buf[pos++]!;
    value += (b & 0x7f) * mul;
    if ((b & 0x80) === 0) return { value, next: pos };
    mul *= 128;
  }
  throw new WireError('varint longer than 10 bytes');
}

/**
 * A field's tag. Protobuf tags are 32-bit (field numbers up to 2^29 - 1): a longer one is refused,
 * since decoders disagree on it. Runtimes built on older generated code keep int32(tag >> 3), so
 * field 2^32 + 15 would reach them as field 15 while this reader saw an unknown field and kept it:
 * a second profile the edit never saw.
 */
function readTag(buf: Uint8Array, pos: number, end: number): { value: number; next: number } {
  const tag = readSmallVarint(buf, pos, end);
  if (tag.value > 0xffffffff) throw new WireError('field tag beyond 32 bits');
  return tag;
}

export function encodeVarint(n: number | bigint): Buffer {
  // Tags, lengths and most values fit 32 bits: written without BigInt, which a response and
  // every edited request would otherwise pay per field.
  if (typeof n === 'number' && n >= 0 && n <= 0xffffffff && Number.isInteger(n)) {
    const out: number[] = [];
    let small = n;
    while (small >= 0x80) {
      out.push((small & 0x7f) | 0x80);
      small = Math.floor(small / 128);
    }
    out.push(small);
    return Buffer.from(out);
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

/** One field occurrence inside a message, as offsets into the buffer it was read from. */
export interface WireField {
  field: number;
  wireType: number;
  /** Offset of the tag. */
  start: number;
  /** For LEN fields: offset of the length prefix; otherwise equal to valueStart. */
  lenStart: number;
  /** Offset of the value (for LEN: the payload). */
  valueStart: number;
  /** Offset just past the field. */
  end: number;
  /** VARINT fields: the value (exact below 2^53). */
  varint?: number;
}

function skipValue(buf: Uint8Array, wireType: number, pos: number, end: number, field: number, depth: number): number {
  switch (wireType) {
    case WIRE_VARINT:
      return readSmallVarint(buf, pos, end).next;
    case WIRE_I64:
      if (pos + 8 > end) throw new WireError('truncated fixed64');
      return pos + 8;
    case WIRE_I32:
      if (pos + 4 > end) throw new WireError('truncated fixed32');
      return pos + 4;
    case WIRE_LEN: {
      const len = readSmallVarint(buf, pos, end);
      if (len.next + len.value > end) throw new WireError('length-delimited field runs past its message');
      return len.next + len.value;
    }
    case WIRE_SGROUP: {
      if (depth >= MAX_GROUP_DEPTH) throw new WireError('groups nested too deeply');
      let p = pos;
      for (;;) {
        if (p >= end) throw new WireError('unterminated group');
        const tag = readTag(buf, p, end);
        const wt = tag.value & 7;
        const fn = Math.floor(tag.value / 8);
        if (wt === WIRE_EGROUP) {
          if (fn !== field) throw new WireError('mismatched end-group');
          return tag.next;
        }
        p = skipValue(buf, wt, tag.next, end, fn, depth + 1);
      }
    }
    default:
      throw new WireError(`invalid wire type ${wireType}`);
  }
}

/** Iterates the fields of the message in buf[start, end). Validates structure as it goes. */
export function* fields(buf: Uint8Array, start = 0, end = buf.length): Generator<WireField> {
  let pos = start;
  while (pos < end) {
    const tagStart = pos;
    const tag = readTag(buf, pos, end);
    const wireType = tag.value & 7;
    const field = Math.floor(tag.value / 8);
    if (field === 0) throw new WireError('field number 0');
    if (wireType === WIRE_EGROUP) throw new WireError('unexpected end-group');
    let valueStart = tag.next;
    const lenStart = tag.next;
    let varint: number | undefined;
    let next: number;
    if (wireType === WIRE_LEN) {
      const len = readSmallVarint(buf, tag.next, end);
      valueStart = len.next;
      if (len.next + len.value > end) throw new WireError('length-delimited field runs past its message');
      next = len.next + len.value;
    } else if (wireType === WIRE_VARINT) {
      const v = readVarint(buf, tag.next, end);
      varint = v.value;
      next = v.next;
    } else {
      next = skipValue(buf, wireType, tag.next, end, field, 0);
    }
    yield varint === undefined
      ? { field, wireType, start: tagStart, lenStart, valueStart, end: next }
      : { field, wireType, start: tagStart, lenStart, valueStart, end: next, varint };
    pos = next;
  }
}

/** Checks that buf is a well-formed message (every field parses, nothing runs past the end). */
export function validateMessage(buf: Uint8Array): void {
  const it = fields(buf);
  while (!it.next().done) {
    /* walking is the check */
  }
}

/** All occurrences of `field` (any wire type). */
export function findAll(buf: Uint8Array, field: number): WireField[] {
  const out: WireField[] = [];
  for (const f of fields(buf)) if (f.field === field) out.push(f);
  return out;
}

/** Payload of the only LEN occurrence of `field`, undefined when absent; throws when repeated or of another type. */
export function getSingleMessage(buf: Uint8Array, field: number): Buffer | undefined {
  const all = findAll(buf, field);
  if (all.length === 0) return undefined;
  if (all.length > 1) throw new WireError(`field ${field} occurs ${all.length} times`);
  const f = all[0]!;
  if (f.wireType !== WIRE_LEN) throw new WireError(`field ${field} is not length-delimited`);
  return Buffer.from(buf.buffer, buf.byteOffset + f.valueStart, f.end - f.valueStart);
}

/**
 * Protobuf semantics for an embedded message that occurs several times: the occurrences merge,
 * which for the wire is the concatenation of their payloads. Returns undefined when absent.
 */
export function getMergedMessage(buf: Uint8Array, field: number): Buffer | undefined {
  const parts: Uint8Array[] = [];
  for (const f of fields(buf)) {
    if (f.field !== field) continue;
    if (f.wireType !== WIRE_LEN) throw new WireError(`field ${field} is not length-delimited`);
    parts.push(buf.subarray(f.valueStart, f.end));
  }
  if (parts.length === 0) return undefined;
  return parts.length === 1 ? Buffer.from(parts[0]!.buffer, parts[0]!.byteOffset, parts[0]!.length) : Buffer.concat(parts);
}

/**
 * Last value of a singular varint field (proto3: last one wins); `dflt` when absent. Any other
 * wire type is refused, a length-delimited one too: packed encoding is for repeated fields, and
 * runtimes read it on a singular field either as an error or as an unknown field (the default
 * value), never as the value this reader would pick.
 */
export function getVarint(buf: Uint8Array, field: number, dflt = 0): number {
  let v = dflt;
  for (const f of fields(buf)) {
    if (f.field !== field) continue;
    if (f.wireType !== WIRE_VARINT) throw new WireError(`field ${field} is not a varint`);
    v = f.varint!;
  }
  return v;
}

/**
 * One occurrence of an enum field, as Go's CRI decoders read it: they keep the low 32 bits (an
 * int32), so 2^32 + 3 is 3 to them. A value beyond int32, negative ones included (ten-byte
 * varints), is refused rather than read two ways; a non-varint as by getVarint.
 */
export function enumValue(f: WireField): number {
  if (f.wireType !== WIRE_VARINT) throw new WireError(`field ${f.field} is not a varint`);
  if (f.varint! > 0x7fffffff) throw new WireError(`field ${f.field}: enum value ${f.varint!} is beyond int32`);
  return f.varint!;
}

/** Last value of a singular enum field (see enumValue); `dflt` when absent. */
export function getEnum(buf: Uint8Array, field: number, dflt = 0): number {
  let v = dflt;
  for (const f of fields(buf)) if (f.field === field) v = enumValue(f);
  return v;
}

/** Strict UTF-8 that keeps a leading byte-order mark, as Go's strings do (the default decoder drops it). */
export const UTF8_AS_GO = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Last value of a string field; '' when absent. Throws on invalid UTF-8 (proto3 strings must be UTF-8). */
export function getString(buf: Uint8Array, field: number): string {
  let s = '';
  for (const f of fields(buf)) {
    if (f.field !== field) continue;
    if (f.wireType !== WIRE_LEN) throw new WireError(`field ${field} is not length-delimited`);
    try {
      s = UTF8_AS_GO.decode(buf.subarray(f.valueStart, f.end));
    } catch {
      throw new WireError(`field ${field} is not valid UTF-8`);
    }
  }
  return s;
}

/** All values of a repeated string field. */
export function getStrings(buf: Uint8Array, field: number): string[] {
  const out: string[] = [];
  for (const f of fields(buf)) {
    if (f.field !== field) continue;
    if (f.wireType !== WIRE_LEN) throw new WireError(`field ${field} is not length-delimited`);
    try {
      out.push(UTF8_AS_GO.decode(buf.subarray(f.valueStart, f.end)));
    } catch {
      throw new WireError(`field ${field} is not valid UTF-8`);
    }
  }
  return out;
}

// ------------------------------------------------------------------ writing

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
  for (const f of fields(buf)) {
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

/** Number of occurrences of each field along `path` (merge-aware: counts within the merged parent). */
export function pathOccurrences(msg: Uint8Array, path: readonly number[]): number[] {
  const counts: number[] = [];
  let cur: Uint8Array | undefined = msg;
  for (const fieldNo of path) {
    if (cur === undefined) {
      counts.push(0);
      continue;
    }
    counts.push(findAll(cur, fieldNo).length);
    cur = getMergedMessage(cur, fieldNo);
  }
  return counts;
}

/** The merged message at `path`, undefined when any level is absent. */
export function getMergedAt(msg: Uint8Array, path: readonly number[]): Buffer | undefined {
  let cur: Buffer | undefined = Buffer.from(msg.buffer, msg.byteOffset, msg.length);
  for (const fieldNo of path) {
    if (cur === undefined) return undefined;
    cur = getMergedMessage(cur, fieldNo);
  }
  return cur;
}
