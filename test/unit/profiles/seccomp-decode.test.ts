import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ErrorReason } from '../../../src/core/errors.js';
import { assertSpokeError } from '../../helpers/assert.js';
import { decodeSeccomp } from '../../../src/profiles/seccomp/index.js';

const bytes = (s: string) => Buffer.from(s, 'utf8');

function rejects(input: string | Uint8Array, path: string | undefined, reason: ErrorReason = 'PROFILE_INVALID'): void {
  assert.throws(
    () => decodeSeccomp(typeof input === 'string' ? bytes(input) : input),
    (e: unknown) => {
      const err = assertSpokeError(e, { code: 'SecurityProfileInvalid', reason });
      assert.equal(err.context.path, path, err.message);
      return true;
    },
  );
}

test('decodes a full profile, keeping uint64 values exact', () => {
  const p = decodeSeccomp(
    bytes(
      '{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":38,"architectures":["SCMP_ARCH_X86_64"],"flags":[],' +
        '"syscalls":[{"names":["write"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":18446744073709551615,"valueTwo":0,"op":"SCMP_CMP_LE"}]}]}',
    ),
  );
  assert.equal(p.defaultErrnoRet, 38);
  assert.deepEqual(p.flags, []);
  assert.equal(p.syscalls?.[0]?.args?.[0]?.value, 18446744073709551615n);
  assert.equal(p.syscalls?.[0]?.args?.[0]?.valueTwo, 0n);
});

test('null members are absent, as in Go', () => {
  const p = decodeSeccomp(bytes('{"defaultAction":"SCMP_ACT_ALLOW","syscalls":null,"architectures":null}'));
  assert.deepEqual(p, { defaultAction: 'SCMP_ACT_ALLOW' });
});

const cases: [string, string, string | undefined, ErrorReason?][] = [
  ['unknown top-level member', '{"defaultAction":"SCMP_ACT_ALLOW","comment":"x"}', 'comment'],
  ['docker includes', '{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["a"],"action":"SCMP_ACT_ALLOW","includes":{}}]}', 'syscalls[0].includes'],
  ['unknown arg member', '{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["a"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":1,"op":"SCMP_CMP_EQ","x":1}]}]}', 'syscalls[0].args[0].x'],
  ['duplicate member', '{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["a"],"action":"SCMP_ACT_ALLOW","action":"SCMP_ACT_LOG"}]}', 'syscalls[0].action', 'JSON_INVALID'],
  ['missing defaultAction', '{}', 'defaultAction'],
  ['missing names', '{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"action":"SCMP_ACT_ALLOW"}]}', 'syscalls[0].names'],
  ['unknown action', '{"defaultAction":"SCMP_ACT_NOPE"}', 'defaultAction'],
  ['unknown operator', '{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["a"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":1,"op":"SCMP_CMP_XX"}]}]}', 'syscalls[0].args[0].op'],
  ['unknown arch', '{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_X86_64","SCMP_ARCH_VAX"]}', 'architectures[1]'],
  ['unknown flag', '{"defaultAction":"SCMP_ACT_ALLOW","flags":["SECCOMP_FILTER_FLAG_NOPE"]}', 'flags[0]'],
  ['string for number', '{"defaultAction":"SCMP_ACT_ALLOW","defaultErrnoRet":"1"}', 'defaultErrnoRet'],
  ['negative number', '{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":-1}', 'defaultErrnoRet'],
  ['fraction', '{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":1.0}', 'defaultErrnoRet'],
  ['exponent', '{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["a"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":1e3,"op":"SCMP_CMP_EQ"}]}]}', 'syscalls[0].args[0].value'],
  ['uint64 overflow', '{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["a"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":18446744073709551616,"op":"SCMP_CMP_EQ"}]}]}', 'syscalls[0].args[0].value'],
  ['number for string', '{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":[7],"action":"SCMP_ACT_ALLOW"}]}', 'syscalls[0].names[0]'],
  ['object for array', '{"defaultAction":"SCMP_ACT_ALLOW","syscalls":{}}', 'syscalls'],
  ['array document', '[]', '(document)'],
  ['trailing data', '{"defaultAction":"SCMP_ACT_ALLOW"} {}', undefined, 'JSON_INVALID'],
  ['truncated', '{"defaultAction":"SCMP_ACT_ALLOW"', undefined, 'JSON_INVALID'],
];
for (const [name, input, path, reason] of cases) {
  test(`decode rejects ${name}`, () => rejects(input, path, reason));
}

test('decode rejects bad UTF-8', () => {
  rejects(Buffer.concat([bytes('{"defaultAction":"SCMP_ACT_ALLOW","listenerPath":"'), Buffer.from([0xc3, 0x28]), bytes('"}')]), undefined, 'JSON_INVALID');
});

test('a string that looks like a tagged number stays a string', () => {
  // The value beyond 2^53 sends the document to the exact reading before "n5" is read; it must not read as 5.
  rejects(
    '{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["a"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":18446744073709551615,"op":"SCMP_CMP_EQ"}]},{"names":["b"],"action":"SCMP_ACT_ERRNO","errnoRet":"n5"}]}',
    'syscalls[1].errnoRet',
  );
});

test('values beyond 2^53 after entries read as JS numbers are still exact', () => {
  const p = decodeSeccomp(
    bytes('{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["a"],"action":"SCMP_ACT_ERRNO","errnoRet":13,"args":[{"index":1,"value":5,"op":"SCMP_CMP_EQ"}]},{"names":["b"],"action":"SCMP_ACT_ERRNO","args":[{"index":0,"value":9007199254740993,"valueTwo":18446744073709551614,"op":"SCMP_CMP_MASKED_EQ"}]}]}'),
  );
  assert.deepEqual(p.syscalls, [
    { names: ['a'], action: 'SCMP_ACT_ERRNO', errnoRet: 13, args: [{ index: 1, value: 5n, op: 'SCMP_CMP_EQ' }] },
    { names: ['b'], action: 'SCMP_ACT_ERRNO', args: [{ index: 0, value: 9007199254740993n, valueTwo: 18446744073709551614n, op: 'SCMP_CMP_MASKED_EQ' }] },
  ]);
});

test('a "__proto__" member is an unknown member in every reading: the exact one (a literal past 2^53, a fraction anywhere) refuses it as the plain one does', () => {
  const big = '{"names":["read"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":9007199254740993,"op":"SCMP_CMP_NE"}]}';
  const hidden = '{"__proto__":{"names":["mkdir"],"action":"SCMP_ACT_ALLOW"}}';
  for (const text of [
    `{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[${hidden}]}`,
    // Read exactly: an entry that the prototype setter would have made an ALLOW rule nobody sees.
    `{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[${big},${hidden}]}`,
    `{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[${big},{"names":["mkdir"],"action":"SCMP_ACT_ALLOW","__proto__":null}]}`,
    `{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":9007199254740993,"op":"SCMP_CMP_NE","__proto__":{}}]}]}`,
    '{"defaultAction":"SCMP_ACT_ERRNO","__proto__":{"defaultErrnoRet":1.0}}',
    '{"defaultAction":"SCMP_ACT_ERRNO","__proto__":null,"syscalls":[{"names":["x1e5"],"action":"SCMP_ACT_ALLOW"}]}',
  ]) {
    assert.throws(() => decodeSeccomp(Buffer.from(text)), (e: unknown) => assertSpokeError(e, { code: 'SecurityProfileInvalid', reason: 'PROFILE_INVALID' }) && /__proto__.*unknown member|unknown member.*__proto__/.test((e as Error).message), text);
  }
});

test('-0 reads as 0, except next to a literal of 16+ digits (the exact reading refuses it), as it always has', () => {
  const doc = (extra: string) => `{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":-0${extra}}`;
  assert.equal(decodeSeccomp(bytes(doc(''))).defaultErrnoRet, 0);
  rejects(doc(',"listenerPath":"/run/1234567890123456"'), 'defaultErrnoRet');
});

test('entries are read alike whatever the order of their members (the decoded objects list them in one order)', () => {
  const ordered = decodeSeccomp(bytes('{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["a"],"action":"SCMP_ACT_ERRNO","errnoRet":13,"args":[{"index":1,"value":5,"op":"SCMP_CMP_EQ"}]}]}'));
  const shuffled = decodeSeccomp(bytes('{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"args":[{"op":"SCMP_CMP_EQ","value":5,"index":1}],"errnoRet":13,"action":"SCMP_ACT_ERRNO","names":["a"]}]}'));
  assert.deepEqual(shuffled, ordered);
  assert.equal(JSON.stringify(shuffled, (_, v: unknown) => (typeof v === 'bigint' ? `${v}` : v)), JSON.stringify(ordered, (_, v: unknown) => (typeof v === 'bigint' ? `${v}` : v)));
});

test("an unknown member's name reaches the message quoted and cut: it is the author's text, bound for pod events", () => {
  const name = `\u001b[2J\u202eOK${'m'.repeat(10_000)}`;
  assert.throws(
    () => decodeSeccomp(Buffer.from(JSON.stringify({ defaultAction: 'SCMP_ACT_ERRNO', [name]: 1 }))),
    (e: Error) => {
      assert.ok(!e.message.includes('\u001b') && e.message.length < 300, e.message.slice(0, 300));
      assert.match(e.message, /"\\u001b\[2J\u202eOKm+…": unknown member/);
      return true;
    },
  );
});

test('JSON that does not parse is refused without quoting the text around the fault', () => {
  assert.throws(
    () => decodeSeccomp(Buffer.from('{"defaultAction": SCMP_ACT_ERRNO_secret_text}')),
    (e: Error) => !/secret_text|SCMP_ACT/.test(e.message),
  );
});
