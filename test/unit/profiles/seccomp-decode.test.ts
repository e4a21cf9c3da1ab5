import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isSpokeError } from '../../../src/core/errors.js';
import { decodeSeccomp } from '../../../src/profiles/seccomp/index.js';

const bytes = (s: string) => Buffer.from(s, 'utf8');

function rejects(input: string | Uint8Array, path: string | undefined, message?: RegExp): void {
  assert.throws(
    () => decodeSeccomp(typeof input === 'string' ? bytes(input) : input),
    (e: unknown) => {
      assert.ok(isSpokeError(e), String(e));
      assert.equal(e.code, 'SecurityProfileInvalid');
      assert.equal(e.context.path, path, e.message);
      if (message) assert.match(e.message, message);
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

const cases: [string, string, string | undefined, RegExp?][] = [
  ['unknown top-level member', '{"defaultAction":"SCMP_ACT_ALLOW","comment":"x"}', 'comment', /unknown member/],
  ['docker includes', '{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["a"],"action":"SCMP_ACT_ALLOW","includes":{}}]}', 'syscalls[0].includes'],
  ['unknown arg member', '{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["a"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":1,"op":"SCMP_CMP_EQ","x":1}]}]}', 'syscalls[0].args[0].x'],
  ['duplicate member', '{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["a"],"action":"SCMP_ACT_ALLOW","action":"SCMP_ACT_LOG"}]}', 'syscalls[0].action', /duplicate/],
  ['missing defaultAction', '{}', 'defaultAction', /required/],
  ['missing names', '{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"action":"SCMP_ACT_ALLOW"}]}', 'syscalls[0].names'],
  ['unknown action', '{"defaultAction":"SCMP_ACT_NOPE"}', 'defaultAction', /unknown action/],
  ['unknown operator', '{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["a"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":1,"op":"SCMP_CMP_XX"}]}]}', 'syscalls[0].args[0].op', /unknown operator/],
  ['unknown arch', '{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_X86_64","SCMP_ARCH_VAX"]}', 'architectures[1]', /unknown architecture/],
  ['unknown flag', '{"defaultAction":"SCMP_ACT_ALLOW","flags":["SECCOMP_FILTER_FLAG_NOPE"]}', 'flags[0]', /unknown flag/],
  ['string for number', '{"defaultAction":"SCMP_ACT_ALLOW","defaultErrnoRet":"1"}', 'defaultErrnoRet', /unsigned integer, got a string/],
  ['negative number', '{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":-1}', 'defaultErrnoRet', /unsigned integer/],
  ['fraction', '{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":1.0}', 'defaultErrnoRet', /unsigned integer/],
  ['exponent', '{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["a"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":1e3,"op":"SCMP_CMP_EQ"}]}]}', 'syscalls[0].args[0].value'],
  ['uint64 overflow', '{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["a"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":18446744073709551616,"op":"SCMP_CMP_EQ"}]}]}', 'syscalls[0].args[0].value', /out of range/],
  ['number for string', '{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":[7],"action":"SCMP_ACT_ALLOW"}]}', 'syscalls[0].names[0]', /must be a string/],
  ['object for array', '{"defaultAction":"SCMP_ACT_ALLOW","syscalls":{}}', 'syscalls', /must be an array/],
  ['array document', '[]', '(document)', /must be an object/],
  ['trailing data', '{"defaultAction":"SCMP_ACT_ALLOW"} {}', undefined, /not valid JSON/],
  ['truncated', '{"defaultAction":"SCMP_ACT_ALLOW"', undefined, /not valid JSON/],
];
for (const [name, input, path, message] of cases) {
  test(`decode rejects ${name}`, () => rejects(input, path, message));
}

test('decode rejects bad UTF-8', () => {
  rejects(Buffer.concat([bytes('{"defaultAction":"SCMP_ACT_ALLOW","listenerPath":"'), Buffer.from([0xc3, 0x28]), bytes('"}')]), undefined, /UTF-8/);
});

test('a string that looks like a tagged number stays a string', () => {
  // The exact-number path is taken because of the 16-digit literal; "n5" must not read as 5.
  rejects('{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":"n5","syscalls":[{"names":["a"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":1234567890123456,"op":"SCMP_CMP_EQ"}]}]}', 'defaultErrnoRet', /got a string/);
});
