// The one-pass scan (decode-scan.ts) against the general reading (readSeccomp of the text the
// bytes decode to): on any document the scan either declines or gives exactly what the general
// reading gives, and it does not decline the plain documents it exists for.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import fc from 'fast-check';
import { decodeUtf8Strict, stringifyExact } from '../../../src/core/json.js';
import { decodeSeccomp, readSeccomp } from '../../../src/profiles/seccomp/decode.js';
import { scanPlainSeccomp } from '../../../src/profiles/seccomp/decode-scan.js';
import { SECCOMP_ACTIONS, SECCOMP_ARCHITECTURES, SECCOMP_FLAGS, SECCOMP_OPERATORS, type SeccompProfile } from '../../../src/profiles/seccomp/types.js';

type Text = fc.Arbitrary<string>;

/**
 * `usual` nearly always, else one of `others`: rare enough that many documents hold a single odd
 * spot, where the scan must decline exactly when the general reading refuses.
 */
function mostly<T>(usual: fc.Arbitrary<T>, ...others: fc.Arbitrary<T>[]): fc.Arbitrary<T> {
  return fc.oneof({ arbitrary: usual, weight: 60 * others.length }, ...others.map((arbitrary) => ({ arbitrary, weight: 1 })));
}

/** JSON whitespace; `odd` adds characters that are not JSON whitespace. */
function space(odd: boolean): Text {
  const plain = fc.constantFrom('', '', ' ', '\n  ', '\t', '\r\n');
  return odd ? mostly(plain, fc.constantFrom('\u00a0', '\f', '\v', '/**/')) : plain;
}

const quoted = (s: string) => JSON.stringify(s);

/** A string literal spelling one of `values`, or (odd) one spelled with an escape, another word, a raw control character. */
function word(values: readonly string[], odd: boolean): Text {
  const plain = fc.constantFrom(...values).map(quoted);
  if (!odd) return plain;
  return mostly(
    plain,
    fc.constantFrom(...values).map((v) => `"\\u${v.charCodeAt(0).toString(16).padStart(4, '0')}${v.slice(1)}"`),
    fc.constantFrom('"SCMP_ACT_allow"', '"read"', '""', '"a\tb"', '"SCMP_CMP_EQ\\""', '"é"'),
    fc.string({ maxLength: 6 }).map(quoted),
  );
}

// 'Aa' and 'BB' share the scan's hash of a name; DEL is ASCII JSON allows raw in a string.
const SYSCALL_NAMES = ['read', 'write', 'openat', 'clone3', '_llseek', 'é', 'a"b', 'x\\y', 'S', 'Aa', 'BB', 'a\u007fb'];

/** A syscall name: plain words, or (odd) anything JSON.stringify writes, escapes included, or a raw tab. */
const syscallName = (odd: boolean): Text =>
  odd ? fc.oneof(fc.constantFrom(...SYSCALL_NAMES).map(quoted), fc.string({ maxLength: 8 }).map(quoted), fc.constant('"a\tb"')) : fc.constantFrom('read', 'write', 'openat', 'clone3', '_llseek', 'Aa', 'BB').map(quoted);

/** A number literal: unsigned integers within `max`, or (odd) signs, fractions, exponents, leading zeros, values out of range. */
function number(max: bigint, odd: boolean): Text {
  const plain = fc.oneof(fc.bigInt({ min: 0n, max: 20n }), fc.bigInt({ min: 0n, max })).map(String);
  if (!odd) return plain;
  return mostly(
    plain,
    fc.constantFrom('-1', '-0', '1.0', '1e3', '1E0', '0.5', '01', '00', '2e-1', '4294967296', '18446744073709551616', '99999999999999999999', '123456789012345678901', '9007199254740993', 'true', '"1"', '[]'),
    fc.bigInt({ min: max - 2n, max: max + 2n }).map(String),
    fc.bigInt({ min: 1n << 64n, max: 10n ** 20n - 1n }).map(String),
  );
}

function array(element: Text, ws: Text, maxLength = 3): Text {
  return fc.tuple(fc.array(fc.tuple(ws, element, ws), { maxLength }), ws).map(([items, end]) => `[${items.map(([a, e, b]) => `${a}${e}${b}`).join(',')}${items.length === 0 ? end : ''}]`);
}

/**
 * An object with the `required` members, and some of the `optional` ones, in any order. Odd
 * objects may lose a required member, repeat one, give one null, add an unknown one or spell a
 * name with an escape.
 */
function object(members: Record<string, Text>, required: readonly string[], odd: boolean, ws: Text): Text {
  const names = Object.keys(members);
  const optional = names.filter((n) => !required.includes(n));
  const chosen = fc.tuple(odd ? mostly(fc.constant([...required]), fc.subarray([...required])) : fc.constant([...required]), fc.subarray(optional)).chain(([r, o]) => fc.shuffledSubarray([...r, ...o], { minLength: r.length + o.length }));
  const extra: fc.Arbitrary<string[]> = odd ? mostly(fc.constant([]), fc.constantFrom(...names, 'comment', 'listenerPath', '__proto__').map((n) => [n])) : fc.constant([]);
  const valueOf = (name: string): Text => (Object.hasOwn(members, name) ? members[name]! : fc.constant('"x"'));
  const entries = fc.tuple(chosen, extra).chain(([c, e]) =>
    fc.tuple(
      ...[...c, ...e].map((name) =>
        fc.tuple(
          ws,
          odd ? mostly(fc.constant(quoted(name)), fc.constant(`"\\u${name.charCodeAt(0).toString(16).padStart(4, '0')}${name.slice(1)}"`)) : fc.constant(quoted(name)),
          ws,
          ws,
          odd ? mostly(valueOf(name), fc.constant('null')) : valueOf(name),
          ws,
        ),
      ),
    ),
  );
  return fc.tuple(entries, ws).map(([list, end]) => `{${list.map(([a, k, b, c, v, d]) => `${a}${k}${b}:${c}${v}${d}`).join(',')}${list.length === 0 ? end : ''}}`);
}

function document(odd: boolean): Text {
  const ws = space(odd);
  const arg = object(
    { index: number(0xffff_ffffn, odd), value: number((1n << 64n) - 1n, odd), valueTwo: number((1n << 64n) - 1n, odd), op: word(SECCOMP_OPERATORS, odd) },
    ['index', 'value', 'op'],
    odd,
    ws,
  );
  const syscall = object(
    { names: array(syscallName(odd), ws), action: word(SECCOMP_ACTIONS, odd), errnoRet: number(0xffff_ffffn, odd), args: array(arg, ws) },
    ['names', 'action'],
    odd,
    ws,
  );
  const profile = object(
    {
      defaultAction: word(SECCOMP_ACTIONS, odd),
      defaultErrnoRet: number(0xffff_ffffn, odd),
      architectures: array(word(SECCOMP_ARCHITECTURES, odd), ws),
      flags: array(word(SECCOMP_FLAGS, odd), ws),
      syscalls: array(syscall, ws, 4),
    },
    ['defaultAction'],
    odd,
    ws,
  );
  const framed = fc.tuple(ws, profile, ws).map(([a, p, b]) => `${a}${p}${b}`);
  if (!odd) return framed;
  // Cut or extended documents too.
  return mostly(
    framed,
    fc.tuple(framed, fc.nat()).map(([t, n]) => t.slice(0, n % (t.length + 1))),
    fc.tuple(framed, fc.constantFrom(' x', '{}', ',', ' 1', '"')).map(([t, tail]) => t + tail),
  );
}

/** decodeSeccomp's result as text, member order and bigints included. */
const spelled = (p: SeccompProfile) => stringifyExact(p);

/** The scan of `text`'s UTF-8 bytes. */
const scan = (text: string) => scanPlainSeccomp(Buffer.from(text, 'utf8'));

function general(text: string): { profile?: SeccompProfile; error?: unknown } {
  try {
    return { profile: readSeccomp(decodeUtf8Strict(Buffer.from(text, 'utf8'), 'seccomp profile')) };
  } catch (error) {
    return { error };
  }
}

test('on any text the scan declines or gives exactly what the general reading gives', () => {
  let read = 0;
  fc.assert(
    fc.property(document(true), (text) => {
      const scanned = scan(text);
      if (scanned === undefined) return;
      read++;
      const { profile, error } = general(text);
      assert.equal(error, undefined, `the scan accepted what the general reading refuses: ${text}`);
      assert.deepStrictEqual(scanned, profile);
      assert.equal(spelled(scanned), spelled(profile!));
    }),
    { numRuns: 5000 },
  );
  // Not a vacuous property: the scan reads a good share of these documents.
  assert.ok(read > 500, `the scan read ${read} of 5000`);
});

test('plain documents are read by the scan, with the values the general reading gives', () => {
  fc.assert(
    fc.property(document(false), (text) => {
      const scanned = scan(text);
      assert.notEqual(scanned, undefined, text);
      assert.deepStrictEqual(scanned, readSeccomp(text));
      assert.equal(spelled(scanned!), spelled(readSeccomp(text)));
    }),
    { numRuns: 1000 },
  );
});

test('the node baselines and the profiles spoke writes are read by the scan', () => {
  for (const file of ['seccomp-baseline.json', 'seccomp-baseline-arm64.json']) {
    const text = readFileSync(new URL(`../../../../policy/${file}`, import.meta.url), 'utf8');
    const scanned = scan(text);
    assert.notEqual(scanned, undefined, file);
    assert.deepStrictEqual(scanned, readSeccomp(text));
    // Written back the way spoke writes profiles, still plain.
    assert.deepStrictEqual(scan(stringifyExact(scanned)), scanned);
  }
});

test('what the scan declines is decided by the general reading, errors included', () => {
  const duplicate = '{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["read"],"action":"SCMP_ACT_ERRNO","action":"SCMP_ACT_ALLOW"}]}';
  assert.equal(scan(duplicate), undefined);
  assert.throws(() => decodeSeccomp(Buffer.from(duplicate)), (e: unknown) => (e as { reason?: string }).reason === 'JSON_INVALID');
  // Cut where a number should start: declined, not a RangeError from the scan.
  const cut = '{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["read"],"action":"SCMP_ACT_ERRNO","args":[{"index":1,"op":"SCMP_CMP_EQ","value":';
  assert.equal(scan(cut), undefined);
  assert.equal(scan(cut.replace('"index":1', '"index":')), undefined);
  const escaped = '{"defaultAction":"SCMP_ACT_\\u0041LLOW","syscalls":[{"names":["re\\u0061d"],"action":"SCMP_ACT_ERRNO"}]}';
  assert.equal(scan(escaped), undefined);
  assert.deepStrictEqual(decodeSeccomp(Buffer.from(escaped)), { defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['read'], action: 'SCMP_ACT_ERRNO' }] });
});

test('names the scan has met are read back by their bytes: names that share a hash stay apart', () => {
  const entries = ['Aa', 'BB', 'Aa', 'read', 'BB', 'read'].map((n) => `{"names":["${n}"],"action":"SCMP_ACT_ERRNO"}`);
  const text = `{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[${entries.join(',')}]}`;
  const scanned = scan(text)!;
  assert.deepStrictEqual(scanned.syscalls!.map((s) => s.names[0]), ['Aa', 'BB', 'Aa', 'read', 'BB', 'read']);
  assert.deepStrictEqual(scanned, general(text).profile);
});

test('bytes that are not ASCII are declined by the scan and judged by the general reading', () => {
  const doc = (name: Buffer) => Buffer.concat([Buffer.from('{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["'), name, Buffer.from('"],"action":"SCMP_ACT_ERRNO"}]}')]);
  // Not UTF-8: refused, as the general reading refuses it.
  const invalid = doc(Buffer.from([0x72, 0xff, 0x64]));
  assert.equal(scanPlainSeccomp(invalid), undefined);
  assert.throws(() => decodeSeccomp(invalid), (e: unknown) => (e as { reason?: string }).reason === 'JSON_INVALID');
  // UTF-8 but not ASCII: read the general way, to the same name.
  const accented = doc(Buffer.from('ré', 'utf8'));
  assert.equal(scanPlainSeccomp(accented), undefined);
  assert.deepStrictEqual(decodeSeccomp(accented).syscalls![0]!.names, ['ré']);
  // A byte-order mark: refused.
  const marked = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), doc(Buffer.from('read'))]);
  assert.equal(scanPlainSeccomp(marked), undefined);
  assert.throws(() => decodeSeccomp(marked), (e: unknown) => (e as { reason?: string }).reason === 'JSON_INVALID');
});
