// A small protobuf wire-format reader: varints, tags, length-delimited fields, read where they
// lie in the buffer, as Go's decoders read them (the writer and the edits: wire-write.ts).
// Pure: no I/O. Throws WireError on malformed input (never reads past the end of a buffer).
// Hand-written, not protobufjs's Reader: it decodes into messages, and the edits must keep every
// other byte (unknown fields, order, non-minimal encodings) as it was.

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

/**
 * Where the last varint or tag read below ended. A module variable rather than an object per
 * read: the shim reads every field of the requests it answers or edits, and a warm pull's
 * garbage is what sets its tail (docs/benchmarks.md). The reads are synchronous.
 */
let readEnd = 0;

/**
 * A varint's value as Go's decoders keep it (the low 64 bits), exact below 2^53; sets readEnd.
 * Up to seven bytes (below 2^49) it is added up as a number; a longer one goes through bigint,
 * whose 64-bit truncation a number cannot model.
 */
function readVarintValue(buf: Uint8Array, pos: number, end: number): number {
  let value = 0;
  let mul = 1;
  for (let i = 0; i < 7; i++) {
    if (pos + i >= end) throw new WireError('truncated varint');
    const b = buf[pos + i]!;
    value += (b & 0x7f) * mul;
    if ((b & 0x80) === 0) {
      readEnd = pos + i + 1;
      return value;
    }
    mul *= 128;
  }
  return Number(readBigVarint(buf, pos, end));
}

/** The varint at `pos` as its low 64 bits; sets readEnd. */
function readBigVarint(buf: Uint8Array, pos: number, end: number): bigint {
  let result = 0n;
  let shift = 0n;
  for (let i = 0; i < 10; i++) {
    if (pos >= end) throw new WireError('truncated varint');
    const b = buf[pos++]!;
    result |= BigInt(b & 0x7f) << shift;
    if ((b & 0x80) === 0) {
      readEnd = pos;
      return BigInt.asUintN(64, result);
    }
    shift += 7n;
  }
  throw new WireError('varint longer than 10 bytes');
}

/** Fast path for lengths and tags (< 2^32 where it matters; the caller checks); sets readEnd. */
function readSmallVarint(buf: Uint8Array, pos: number, end: number): number {
  let value = 0;
  let mul = 1;
  for (let i = 0; i < 10; i++) {
    if (pos >= end) throw new WireError('truncated varint');
    const b = buf[pos++]!;
    value += (b & 0x7f) * mul;
    if ((b & 0x80) === 0) {
      readEnd = pos;
      return value;
    }
    mul *= 128;
  }
  throw new WireError('varint longer than 10 bytes');
}

/**
 * A field's tag; sets readEnd. Protobuf tags are 32-bit (field numbers up to 2^29 - 1): a longer
 * one is refused, since decoders disagree on it. Runtimes built on older generated code keep
 * int32(tag >> 3), so field 2^32 + 15 would reach them as field 15 while this reader saw an
 * unknown field and kept it: a second profile the edit never saw.
 */
function readTag(buf: Uint8Array, pos: number, end: number): number {
  const tag = readSmallVarint(buf, pos, end);
  if (tag > 0xffffffff) throw new WireError('field tag beyond 32 bits');
  return tag;
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
      readSmallVarint(buf, pos, end);
      return readEnd;
    case WIRE_I64:
      if (pos + 8 > end) throw new WireError('truncated fixed64');
      return pos + 8;
    case WIRE_I32:
      if (pos + 4 > end) throw new WireError('truncated fixed32');
      return pos + 4;
    case WIRE_LEN: {
      const len = readSmallVarint(buf, pos, end);
      if (readEnd + len > end) throw new WireError('length-delimited field runs past its message');
      return readEnd + len;
    }
    case WIRE_SGROUP: {
      if (depth >= MAX_GROUP_DEPTH) throw new WireError('groups nested too deeply');
      let p = pos;
      for (;;) {
        if (p >= end) throw new WireError('unterminated group');
        const tag = readTag(buf, p, end);
        const wt = tag & 7;
        const fn = Math.floor(tag / 8);
        if (wt === WIRE_EGROUP) {
          if (fn !== field) throw new WireError('mismatched end-group');
          return readEnd;
        }
        p = skipValue(buf, wt, readEnd, end, fn, depth + 1);
      }
    }
    default:
      throw new WireError(`invalid wire type ${wireType}`);
  }
}

/**
 * Reads the fields of the message in buf[start, end) one at a time into its own properties
 * (no object per field), validating structure as it goes: next() parses the next field, false
 * at the end.
 */
export class FieldCursor implements WireField {
  field = 0;
  wireType = 0;
  start = 0;
  lenStart = 0;
  valueStart = 0;
  end = 0;
  varint: number | undefined = undefined;
  private pos: number;

  constructor(
    private readonly buf: Uint8Array,
    start = 0,
    private readonly limit = buf.length,
  ) {
    this.pos = start;
  }

  next(): boolean {
    const { buf, limit } = this;
    const pos = this.pos;
    if (pos >= limit) return false;
    const tag = readTag(buf, pos, limit);
    const wireType = tag & 7;
    const field = Math.floor(tag / 8);
    if (field === 0) throw new WireError('field number 0');
    if (wireType === WIRE_EGROUP) throw new WireError('unexpected end-group');
    const afterTag = readEnd;
    let valueStart = afterTag;
    let varint: number | undefined;
    let next: number;
    if (wireType === WIRE_LEN) {
      const len = readSmallVarint(buf, afterTag, limit);
      valueStart = readEnd;
      if (valueStart + len > limit) throw new WireError('length-delimited field runs past its message');
      next = valueStart + len;
    } else if (wireType === WIRE_VARINT) {
      varint = readVarintValue(buf, afterTag, limit);
      next = readEnd;
    } else {
      next = skipValue(buf, wireType, afterTag, limit, field, 0);
    }
    this.field = field;
    this.wireType = wireType;
    this.start = pos;
    this.lenStart = afterTag;
    this.valueStart = valueStart;
    this.end = next;
    this.varint = varint;
    this.pos = next;
    return true;
  }

  /** The current field as an object of its own (the cursor's properties change with next()). */
  snapshot(): WireField {
    const { field, wireType, start, lenStart, valueStart, end, varint } = this;
    return varint === undefined ? { field, wireType, start, lenStart, valueStart, end } : { field, wireType, start, lenStart, valueStart, end, varint };
  }
}

/** Checks that buf is a well-formed message (every field parses, nothing runs past the end). */
export function validateMessage(buf: Uint8Array): void {
  const c = new FieldCursor(buf);
  while (c.next()) {
    /* walking is the check */
  }
}

/** All occurrences of `field` (any wire type). */
export function findAll(buf: Uint8Array, field: number): WireField[] {
  const out: WireField[] = [];
  for (const c = new FieldCursor(buf); c.next(); ) if (c.field === field) out.push(c.snapshot());
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
  // The first occurrence's bounds are kept as numbers: most messages hold one.
  let first = -1;
  let firstEnd = 0;
  let parts: Uint8Array[] | undefined;
  for (const f = new FieldCursor(buf); f.next(); ) {
    if (f.field !== field) continue;
    if (f.wireType !== WIRE_LEN) throw new WireError(`field ${field} is not length-delimited`);
    if (first < 0) {
      first = f.valueStart;
      firstEnd = f.end;
    } else (parts ??= [buf.subarray(first, firstEnd)]).push(buf.subarray(f.valueStart, f.end));
  }
  if (first < 0) return undefined;
  return parts === undefined ? Buffer.from(buf.buffer, buf.byteOffset + first, firstEnd - first) : Buffer.concat(parts);
}

/**
 * Last value of a singular varint field (proto3: last one wins); `dflt` when absent. Any other
 * wire type is refused, a length-delimited one too: packed encoding is for repeated fields, and
 * runtimes read it on a singular field either as an error or as an unknown field (the default
 * value), never as the value this reader would pick.
 */
export function getVarint(buf: Uint8Array, field: number, dflt = 0): number {
  let v = dflt;
  for (const f = new FieldCursor(buf); f.next(); ) {
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
  for (const f = new FieldCursor(buf); f.next(); ) if (f.field === field) v = enumValue(f);
  return v;
}

/** Strict UTF-8 that keeps a leading byte-order mark, as Go's strings do (the default decoder drops it). */
export const UTF8_AS_GO = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Last value of a string field; '' when absent. Throws on invalid UTF-8 (proto3 strings must be UTF-8). */
export function getString(buf: Uint8Array, field: number): string {
  let s = '';
  for (const f = new FieldCursor(buf); f.next(); ) {
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
  for (const f = new FieldCursor(buf); f.next(); ) {
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
