// The strict JSON scanner (src/core/json.ts) against the reference it replaced: same duplicate
// member detection at any depth, escaped names decoded, same JSON path and messages, same depth
// limit, on generated documents full of escapes, whitespace and near-duplicates.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { decodeUtf8Strict, MAX_JSON_DEPTH, parseStrictJson } from '../../../src/core/json.js';
import { isSpokeError, SpokeError } from '../../../src/core/errors.js';

/** The previous implementation, kept verbatim as the oracle. */
function referenceCheck(text: string, what: string): void {
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

function outcome(fn: () => unknown): unknown {
  try {
    return { value: fn() };
  } catch (e) {
    return isSpokeError(e) ? { code: e.code, message: e.message, context: e.context } : { error: String(e) };
  }
}

function reference(text: string): unknown {
  return outcome(() => {
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (e) {
      throw new SpokeError('SecurityProfileInvalid', `x: not valid JSON (${(e as Error).message})`);
    }
    referenceCheck(text, 'x');
    return value;
  });
}

// Raw JSON texts of member names: plain, escaped spellings of the same name, quotes, backslashes, colons, non-ASCII.
const KEYS = ['a', '\\u0061', 'b', '', 'a\\"', 'a\\\\', '\\\\', '\\"', ':', '\\"a\\":', 'é', '\\u00e9', '\\/', '/', 'ab', '\\\\\\"', '__proto__', '0', '1'];
const STRINGS = ['', 'x', '\\"', '\\\\', '\\\\\\"', '\\"}]', '{\\"a\\":1}', ':', '\\n', 'é', '\\ud83d\\ude00'];
const ws = fc.constantFrom('', '', '', ' ', '\n\t ', '\r\n');

const { value } = fc.letrec<{ value: string; object: string; array: string }>((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.constantFrom('1', '-0', '2.5e3', 'true', 'false', 'null', '18446744073709551615'),
    fc.constantFrom(...STRINGS).map((s) => `"${s}"`),
    tie('object'),
    tie('array'),
  ),
  object: fc
    .array(fc.tuple(ws, fc.constantFrom(...KEYS), ws, ws, tie('value'), ws), { maxLength: 5 })
    .map((members) => `{${members.map(([w1, k, w2, w3, v, w4]) => `${w1}"${k}"${w2}:${w3}${v}${w4}`).join(',')}}`),
  array: fc.array(fc.tuple(ws, tie('value'), ws), { maxLength: 4 }).map((items) => `[${items.map(([a, v, b]) => `${a}${v}${b}`).join(',')}]`),
}));

test('strict JSON: same outcome as the reference scanner on generated documents', () => {
  fc.assert(
    fc.property(ws, value, ws, (a, v, b) => {
      const text = `${a}${v}${b}`;
      assert.deepEqual(outcome(() => parseStrictJson(text, 'x')), reference(text), text);
    }),
    { numRuns: 4000, seed: 6061 },
  );
});

test('strict JSON: duplicates found at any depth, with the path, escaped or not', () => {
  const cases: [string, string][] = [
    ['{"a":1,"a":2}', 'a'],
    ['{"a":1,"\\u0061":2}', 'a'],
    ['[0,[1,{"x":{"y":[{"k":1," k":2,"k":3}]}}]]', '[1][1].x.y[0].k'],
    ['{"":{"a":1,"a":2}}', 'a'],
    ['{"s":"\\"a\\":1,","t":{"q\\\\":1,"q\\\\":2}}', 't.q\\'],
    [`{${Array.from({ length: 40 }, (_, i) => `"k${i}":${i}`).join(',')},"k39":0}`, 'k39'],
  ];
  for (const [text, path] of cases) {
    assert.deepEqual(outcome(() => parseStrictJson(text, 'x')), reference(text), text);
    assert.throws(() => parseStrictJson(text, 'x'), (e: unknown) => isSpokeError(e) && e.reason === 'JSON_INVALID' && e.context.path === path);
  }
  const many = `{${Array.from({ length: 40 }, (_, i) => `"k${i}":${i}`).join(',')}}`;
  assert.equal(Object.keys(parseStrictJson(many, 'x') as object).length, 40);
});

test('strict JSON: nesting limit', () => {
  const deep = (n: number) => '['.repeat(n) + ']'.repeat(n);
  assert.doesNotThrow(() => parseStrictJson(deep(MAX_JSON_DEPTH), 'x'));
  for (const text of [deep(MAX_JSON_DEPTH + 1), `{"a":1,"a":${deep(70)}}`, `[${deep(70)},{"a":1,"a":2}]`]) {
    assert.deepEqual(outcome(() => parseStrictJson(text, 'x')), reference(text), text);
  }
});

test('strict UTF-8: one shared decoder carries nothing from a refused input into the next', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 64 }), fc.string({ unit: 'binary', maxLength: 64 }), (bytes, text) => {
      // A truncated multi-byte sequence at the end is the state a streaming decoder would keep.
      const truncated = Buffer.concat([Buffer.from(bytes), Buffer.from([0xe2, 0x82])]);
      assert.throws(() => decodeUtf8Strict(truncated, 'x'), (e: unknown) => isSpokeError(e) && e.reason === 'JSON_INVALID');
      // A leading byte-order mark is dropped, as it always was.
      assert.equal(decodeUtf8Strict(Buffer.from(text, 'utf8'), 'x'), text.startsWith('\uFEFF') ? text.slice(1) : text);
    }),
  );
});

test('strict UTF-8: a leading byte-order mark is refused, as Go encoding/json (UnmarshalStrict) refuses it', () => {
  assert.throws(
    () => decodeUtf8Strict(Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('{"defaultAction":"SCMP_ACT_ERRNO"}')]), 'profile'),
    (e: unknown) => isSpokeError(e) && e.reason === 'JSON_INVALID' && /byte-order mark/.test(e.message),
  );
  assert.equal(decodeUtf8Strict(Buffer.from('{"a":"\uFEFF"}'), 'profile'), '{"a":"\uFEFF"}', 'inside a string it is a character like any other');
});
