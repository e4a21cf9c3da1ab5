// Strict JSON: one value, no duplicate object members, no trailing data but whitespace, valid
// UTF-8 (KEP-6061 §4 UnmarshalStrict). JSON.parse silently keeps the last duplicate and accepts
// lone surrogates from bad bytes, so we check after parsing: a cheap count proves the common case
// (no duplicates), the exact scanner finds the first problem otherwise. Bounded depth.

import { isAscii } from 'node:buffer';
import { SpokeError } from './errors.js';

export const MAX_JSON_DEPTH = 64;

/**
 * A member's JSON path below `path` for messages: a name that is not a plain word of at most 64
 * characters is quoted and cut, since the name is the author's text and the message may reach a
 * pod event.
 */
export function memberPath(path: string, key: string): string {
  const name = /^[A-Za-z0-9_]{1,64}$/.test(key) ? key : JSON.stringify(key.length > 64 ? `${key.slice(0, 64)}…` : key);
  return path === '' ? name : `${path}.${name}`;
}

/**
 * Why JSON.parse refused, without its message: V8 quotes the text around the fault, which may be
 * a secret (an auth file's password) or bytes an artifact's author chose, bound for a pod event.
 */
export function jsonSyntaxFault(e: unknown): string {
  const message = e instanceof Error ? e.message : '';
  const at = /at position (\d{1,10})/.exec(message)?.[1];
  if (at !== undefined) return `not valid JSON (at character ${at})`;
  return message.startsWith('Unexpected end') ? 'not valid JSON (it ends early)' : 'not valid JSON';
}

/** One decoder for every call: a one-shot decode() (no `stream`) keeps no state between calls. */
const UTF8_FATAL = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false });

export function decodeUtf8Strict(bytes: Uint8Array, what: string): string {
  // The decoder would drop it; Go's encoding/json, which the KEP's UnmarshalStrict and the
  // runtimes use, refuses the document.
  if (bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf) {
    throw new SpokeError('SecurityProfileInvalid', `${what}: starts with a byte-order mark (not JSON)`, {}, { reason: 'JSON_INVALID' });
  }
  // ASCII (every profile spoke writes, and most others) is UTF-8 whose latin1 reading is the
  // same text; that reading is the cheaper one.
  if (isAscii(bytes)) return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1');
  try {
    return UTF8_FATAL.decode(bytes);
  } catch {
    throw new SpokeError('SecurityProfileInvalid', `${what}: not valid UTF-8`, {}, { reason: 'JSON_INVALID' });
  }
}

/**
 * Parses `text` as exactly one JSON value, refusing duplicate member names at any depth.
 * Errors carry the JSON path of the offending member (`syscalls[3].names`).
 */
export function parseStrictJson(text: string, what: string): unknown {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new SpokeError('SecurityProfileInvalid', `${what}: ${jsonSyntaxFault(e)}`, {}, { reason: 'JSON_INVALID' });
  }
  const keys = countOwnKeys(value);
  // Every ':' in the text, inside strings or not, is at least the members written; equal to the
  // parsed keys means no duplicates (the usual case, one native scan). Otherwise count only the
  // colons outside strings, and only then scan exactly for the first problem.
  if (keys !== countColons(text) && keys !== countMembers(text)) checkNoDuplicates(text, what);
  return value;
}

function countColons(text: string): number {
  let count = 0;
  for (let i = text.indexOf(':'); i >= 0; i = text.indexOf(':', i + 1)) count++;
  return count;
}

/**
 * Members written in `text` (valid JSON): each has exactly one ':' outside strings. -1 when the
 * text cannot be read that way (never for valid JSON).
 */
function countMembers(text: string): number {
  const n = text.length;
  let members = 0;
  /** Position of the next backslash at or after the scan position (n when none). */
  let backslash = -1;
  let i = 0;
  while (i < n) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      let end = text.indexOf('"', i + 1);
      if (end < 0) return -1;
      if (backslash < i) {
        backslash = text.indexOf('\\', i);
        if (backslash < 0) backslash = n;
      }
      // A quote ends the string unless an odd run of backslashes escapes it.
      while (backslash < end) {
        let run = 0;
        while (text.charCodeAt(end - 1 - run) === 0x5c) run++;
        if (run % 2 === 0) break;
        end = text.indexOf('"', end + 1);
        if (end < 0) return -1;
      }
      i = end + 1;
      continue;
    }
    if (c === 0x3a /* : */) members++;
    i++;
  }
  return members;
}

/**
 * Own keys of every object in a parsed value, or -2 when it nests deeper than MAX_JSON_DEPTH.
 * JSON.parse keeps one key per distinct member name, so this equals countMembers(text) exactly
 * when no object repeats a name (a repeated one, or anything inside a value it replaced, is
 * counted in the text only); and then the parsed nesting is the written one. Any other case goes
 * to checkNoDuplicates, which reports the first problem in document order.
 */
function countOwnKeys(root: unknown): number {
  if (typeof root !== 'object' || root === null) return 0;
  // Parsed objects inherit from Object.prototype; unless something made a property of it enumerable.
  return countKeysIn(root, 1, Object.keys(Object.prototype).length === 0);
}

/** countOwnKeys below `v`; recursion stops at MAX_JSON_DEPTH + 1 levels, and no list of pending values grows with the width. */
function countKeysIn(v: object, depth: number, inheritsNothing: boolean): number {
  if (depth > MAX_JSON_DEPTH) return -2;
  let keys = 0;
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) {
      const x: unknown = v[i];
      if (typeof x === 'object' && x !== null) {
        const below = countKeysIn(x, depth + 1, inheritsNothing);
        if (below < 0) return below;
        keys += below;
      }
    }
  } else if (inheritsNothing) {
    // for-in sees own keys only here, without the array Object.keys would allocate.
    for (const name in v) {
      keys++;
      const x: unknown = (v as Record<string, unknown>)[name];
      if (typeof x === 'object' && x !== null) {
        const below = countKeysIn(x, depth + 1, inheritsNothing);
        if (below < 0) return below;
        keys += below;
      }
    }
  } else {
    const names = Object.keys(v);
    keys += names.length;
    for (let i = 0; i < names.length; i++) {
      const x: unknown = (v as Record<string, unknown>)[names[i]!];
      if (typeof x === 'object' && x !== null) {
        const below = countKeysIn(x, depth + 1, inheritsNothing);
        if (below < 0) return below;
        keys += below;
      }
    }
  }
  return keys;
}

/** Keys per object beyond which a Set is faster than looking through the list. */
const KEYS_LINEAR = 16;

/**
 * Looks at just enough of `text` (already known to be valid JSON) to see the member names of each
 * object, tracking the path for errors. Strings are skipped with indexOf; only member names are
 * materialised, escaped ones decoded. Frames are kept per depth and reused.
 */
function checkNoDuplicates(text: string, what: string): void {
  const isObject: boolean[] = [];
  const keyAt: (string | undefined)[] = [];
  const indexAt: number[] = [];
  const keysAt: string[][] = [];
  const setAt: (Set<string> | undefined)[] = [];
  let depth = 0;
  const pathOf = (): string => {
    let p = '';
    for (let d = 0; d < depth; d++) {
      if (isObject[d]) {
        const key = keyAt[d];
        p += key === undefined ? '' : p === '' ? key : `.${key}`;
      } else p += `[${indexAt[d]!}]`;
    }
    return p;
  };
  const n = text.length;
  let expectKey = false;
  /** Position of the next backslash at or after the scan position (n when none). */
  let backslash = -1;
  let i = 0;
  while (i < n) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      if (backslash < i) {
        backslash = text.indexOf('\\', i);
        if (backslash < 0) backslash = n;
      }
      let end = text.indexOf('"', i + 1);
      if (end < 0) end = n;
      const raw = backslash < end;
      if (raw) {
        // A quote ends the string unless an odd run of backslashes escapes it.
        for (;;) {
          let run = 0;
          while (text.charCodeAt(end - 1 - run) === 0x5c) run++;
          if (run % 2 === 0 || end >= n) break;
          end = text.indexOf('"', end + 1);
          if (end < 0) end = n;
        }
      }
      if (expectKey && depth > 0 && isObject[depth - 1]) {
        const d = depth - 1;
        const key = raw ? (JSON.parse(text.slice(i, end + 1)) as string) : text.slice(i + 1, end);
        const keys = keysAt[d]!;
        let set = setAt[d];
        let duplicate = false;
        if (set !== undefined) duplicate = set.has(key);
        else {
          for (let k = 0; k < keys.length; k++) {
            if (keys[k] === key) {
              duplicate = true;
              break;
            }
          }
        }
        keyAt[d] = key;
        if (duplicate) throw new SpokeError('SecurityProfileInvalid', `${what}: duplicate member at ${pathOf()}`, { path: pathOf() }, { reason: 'JSON_INVALID' });
        if (set !== undefined) set.add(key);
        else {
          keys.push(key);
          if (keys.length >= KEYS_LINEAR) setAt[d] = set = new Set(keys);
        }
        expectKey = false;
      }
      i = end + 1;
      continue;
    }
    if (c === 0x7b /* { */ || c === 0x5b /* [ */) {
      if (depth >= MAX_JSON_DEPTH) throw new SpokeError('SecurityProfileInvalid', `${what}: nested deeper than ${MAX_JSON_DEPTH}`, {}, { reason: 'JSON_INVALID' });
      const object = c === 0x7b;
      isObject[depth] = object;
      keyAt[depth] = undefined;
      indexAt[depth] = 0;
      setAt[depth] = undefined;
      const keys = keysAt[depth];
      if (keys === undefined) keysAt[depth] = [];
      else keys.length = 0;
      depth++;
      if (object) expectKey = true;
    } else if (c === 0x7d || c === 0x5d) {
      if (depth > 0) depth--;
      expectKey = false;
    } else if (c === 0x2c /* , */) {
      if (depth > 0) {
        if (isObject[depth - 1]) expectKey = true;
        else indexAt[depth - 1]!++;
      }
    }
    i++;
  }
}

/** Bytes → strict JSON value: UTF-8 check, then parse with duplicate detection. */
export function decodeStrictJson(bytes: Uint8Array, what: string): unknown {
  return parseStrictJson(decodeUtf8Strict(bytes, what), what);
}

/** JSON.stringify (indented by 2) that writes bigints, such as seccomp argument values, as exact decimal numbers. */
export function stringifyExact(v: unknown): string {
  const marks = new Map<string, string>();
  const text = JSON.stringify(
    v,
    (_k, x: unknown) => {
      if (typeof x !== 'bigint') return x;
      const mark = `\u0000bigint${marks.size}\u0000`;
      marks.set(mark, x.toString());
      return mark;
    },
    2,
  );
  return marks.size === 0 ? text : text.replace(/"\\u0000bigint\d+\\u0000"/g, (m) => marks.get(JSON.parse(m) as string) ?? m);
}
