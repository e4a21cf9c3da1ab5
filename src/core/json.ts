// Strict JSON: one value, no duplicate object members, no trailing data but whitespace, valid
// UTF-8 (KEP-6061 §4 UnmarshalStrict). JSON.parse silently keeps the last duplicate and accepts
// lone surrogates from bad bytes, so we scan first. Iterative, bounded depth.

import { SpokeError } from './errors.js';

export const MAX_JSON_DEPTH = 64;

export function decodeUtf8Strict(bytes: Uint8Array, what: string): string {
  try {
    return new TextDecoder('utf-8', { fatal: true, ignoreBOM: false }).decode(bytes);
  } catch {
    throw new SpokeError('SecurityProfileInvalid', `${what}: not valid UTF-8`);
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
    throw new SpokeError('SecurityProfileInvalid', `${what}: not valid JSON (${(e as Error).message})`);
  }
  checkNoDuplicates(text, what);
  return value;
}

/** Tokenizes just enough to see object member names per object, tracking the path for errors. */
function checkNoDuplicates(text: string, what: string): void {
  type Frame = { kind: 'object'; keys: Set<string>; key: string | undefined } | { kind: 'array'; index: number };
  const stack: Frame[] = [];
  const pathOf = (): string => {
    let p = '';
    for (const f of stack) {
      if (f.kind === 'object') p += f.key === undefined ? '' : p === '' ? f.key : `.${f.key}`;
      else p += `[${f.index}]`;
    }
    return p;
  };
  let i = 0;
  const n = text.length;
  let expectKey = false;
  while (i < n) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      const start = i + 1;
      i++;
      let raw = false;
      while (i < n && text.charCodeAt(i) !== 0x22) {
        if (text.charCodeAt(i) === 0x5c) {
          raw = true;
          i++;
        }
        i++;
      }
      const str = raw ? (JSON.parse(text.slice(start - 1, i + 1)) as string) : text.slice(start, i);
      i++;
      const top = stack[stack.length - 1];
      if (expectKey && top?.kind === 'object') {
        if (top.keys.has(str)) {
          top.key = str;
          throw new SpokeError('SecurityProfileInvalid', `${what}: duplicate member at ${pathOf()}`, { path: pathOf() });
        }
        top.keys.add(str);
        top.key = str;
        expectKey = false;
      }
      continue;
    }
    if (c === 0x7b /* { */) {
      if (stack.length >= MAX_JSON_DEPTH) throw new SpokeError('SecurityProfileInvalid', `${what}: nested deeper than ${MAX_JSON_DEPTH}`);
      stack.push({ kind: 'object', keys: new Set(), key: undefined });
      expectKey = true;
    } else if (c === 0x5b /* [ */) {
      if (stack.length >= MAX_JSON_DEPTH) throw new SpokeError('SecurityProfileInvalid', `${what}: nested deeper than ${MAX_JSON_DEPTH}`);
      stack.push({ kind: 'array', index: 0 });
    } else if (c === 0x7d || c === 0x5d) {
      stack.pop();
      expectKey = false;
    } else if (c === 0x2c /* , */) {
      const top = stack[stack.length - 1];
      if (top?.kind === 'object') expectKey = true;
      else if (top?.kind === 'array') top.index++;
    }
    i++;
  }
}

/** Bytes → strict JSON value: UTF-8 check, then parse with duplicate detection. */
export function decodeStrictJson(bytes: Uint8Array, what: string): unknown {
  return parseStrictJson(decodeUtf8Strict(bytes, what), what);
}
