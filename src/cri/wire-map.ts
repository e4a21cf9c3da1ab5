// Protobuf `map<string, string>` fields (CRI labels and annotations) on the wire reader of wire.ts.

import { FieldCursor, UTF8_AS_GO, WIRE_LEN, WireError } from './wire.js';

function startsWithBytes(buf: Uint8Array, start: number, end: number, prefix: Uint8Array): boolean {
  if (end - start < prefix.length) return false;
  for (let i = 0; i < prefix.length; i++) if (buf[start + i] !== prefix[i]) return false;
  return true;
}

/**
 * Entries of a `map<string, string>` field: repeated MapEntry {string key = 1; string value = 2}.
 * Protobuf map semantics: a missing key or value is '', a later entry for the same key wins, and
 * inside an entry the last occurrence of key/value wins. With `keyPrefixes`, only entries whose
 * key starts with one of them (byte for byte, case-sensitive) are decoded and returned; the rest
 * are only walked (their structure is still checked). Throws WireError on malformed input or on
 * a returned key/value that is not UTF-8.
 */
export function getStringMap(buf: Uint8Array, field: number, keyPrefixes?: readonly string[]): Map<string, string> {
  const prefixes = keyPrefixes?.map((p) => Buffer.from(p, 'utf8'));
  const out = new Map<string, string>();
  for (const f = new FieldCursor(buf); f.next(); ) {
    if (f.field !== field) continue;
    if (f.wireType !== WIRE_LEN) throw new WireError(`map field ${field} is not length-delimited`);
    let key: [number, number] = [0, 0];
    let value: [number, number] = [0, 0];
    for (const e = new FieldCursor(buf, f.valueStart, f.end); e.next(); ) {
      if (e.field !== 1 && e.field !== 2) continue;
      if (e.wireType !== WIRE_LEN) throw new WireError(`map field ${field}: entry ${e.field === 1 ? 'key' : 'value'} is not length-delimited`);
      if (e.field === 1) key = [e.valueStart, e.end];
      else value = [e.valueStart, e.end];
    }
    if (prefixes !== undefined && !prefixes.some((p) => startsWithBytes(buf, key[0], key[1], p))) continue;
    try {
      out.set(UTF8_AS_GO.decode(buf.subarray(key[0], key[1])), UTF8_AS_GO.decode(buf.subarray(value[0], value[1])));
    } catch {
      throw new WireError(`map field ${field}: key or value is not valid UTF-8`);
    }
  }
  return out;
}
