// Strict decode of a runtime-spec LinuxSeccomp document (KEP-6061 §4 UnmarshalStrict): valid
// UTF-8, one JSON value, no duplicate members, no unknown members, exact types. Argument values
// are uint64, beyond the precision of a JS number: decode-numbers.ts reads them exactly.
// A document in a plain subset of JSON is read in one pass (decode-scan.ts); otherwise well-formed
// entries take the fast path of decode-fast.ts.

import { decodeUtf8Strict, memberPath, parseStrictJson } from '../../core/json.js';
import { SpokeError } from '../../core/errors.js';
import { MAX_UINT32, MAX_UINT64 } from './conditions.js';
import { plainSyscall, prototypeIsClean } from './decode-fast.js';
import { scanPlainSeccomp } from './decode-scan.js';
import { ExactNumber, needsExactReading, parseExact, RoundedNumber, UINT_RE } from './decode-numbers.js';
import {
  SECCOMP_ACTIONS,
  SECCOMP_ARCHITECTURES,
  SECCOMP_FLAGS,
  SECCOMP_OPERATORS,
  type SeccompArg,
  type SeccompProfile,
  type SeccompSyscall,
} from './types.js';

const WHAT = 'seccomp profile';

function invalid(path: string, message: string): SpokeError {
  return new SpokeError('SecurityProfileInvalid', `${WHAT}: ${path}: ${message}`, { path }, { reason: 'PROFILE_INVALID' });
}

type JsonObject = Record<string, unknown>;

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (v instanceof ExactNumber) return 'a number';
  return `${typeof v === 'object' ? 'an' : 'a'} ${typeof v}`;
}

function asObject(v: unknown, path: string): JsonObject {
  if (typeof v !== 'object' || v === null || Array.isArray(v) || v instanceof ExactNumber) throw invalid(path, `must be an object, got ${describe(v)}`);
  return v as JsonObject;
}

function asArray(v: unknown, path: string): unknown[] {
  if (!Array.isArray(v)) throw invalid(path, `must be an array, got ${describe(v)}`);
  return v;
}

function asString(v: unknown, path: string): string {
  if (typeof v !== 'string') throw invalid(path, `must be a string, got ${describe(v)}`);
  return v;
}

function asEnum<T extends string>(v: unknown, path: string, allowed: readonly T[], what: string): T {
  const s = asString(v, path);
  if (!(allowed as readonly string[]).includes(s)) throw invalid(path, `unknown ${what} ${JSON.stringify(s.slice(0, 64))}`);
  return s as T;
}

function asUint(v: unknown, path: string, max: bigint): bigint {
  let value: bigint;
  if (typeof v === 'number') {
    // Without a fraction or exponent in the text (or numbers would be ExactNumbers) only a literal of 16+ digits can be unsafe.
    if (!Number.isSafeInteger(v)) throw new RoundedNumber();
    if (v < 0) throw invalid(path, `must be an unsigned integer, got ${v}`);
    value = BigInt(v);
  } else if (v instanceof ExactNumber) {
    if (!UINT_RE.test(v.literal)) throw invalid(path, `must be an unsigned integer, got ${v.literal.slice(0, 40)}`);
    value = BigInt(v.literal);
  } else {
    throw invalid(path, `must be an unsigned integer, got ${describe(v)}`);
  }
  if (value > max) throw invalid(path, `${value} is out of range (max ${max})`);
  return value;
}

/** Refuses members outside `known`; null members are absent, as in Go's encoding/json. */
function members(obj: JsonObject, path: string, known: readonly string[]): Map<string, unknown> {
  const present = new Map<string, unknown>();
  for (const [key, value] of Object.entries(obj)) {
    const at = memberPath(path, key);
    if (!known.includes(key)) throw invalid(at, 'unknown member');
    if (value !== null) present.set(key, value);
  }
  return present;
}

function required(m: Map<string, unknown>, key: string, path: string): unknown {
  const v = m.get(key);
  if (v === undefined) throw invalid(memberPath(path, key), 'required member missing');
  return v;
}

const PROFILE_MEMBERS = ['defaultAction', 'defaultErrnoRet', 'architectures', 'flags', 'listenerPath', 'listenerMetadata', 'syscalls'];
const SYSCALL_MEMBERS = ['names', 'action', 'errnoRet', 'args'];
const ARG_MEMBERS = ['index', 'value', 'valueTwo', 'op'];

function decodeArg(v: unknown, path: string): SeccompArg {
  const m = members(asObject(v, path), path, ARG_MEMBERS);
  const arg: SeccompArg = {
    index: Number(asUint(required(m, 'index', path), `${path}.index`, MAX_UINT32)),
    value: asUint(required(m, 'value', path), `${path}.value`, MAX_UINT64),
    op: asEnum(required(m, 'op', path), `${path}.op`, SECCOMP_OPERATORS, 'operator'),
  };
  if (m.has('valueTwo')) arg.valueTwo = asUint(m.get('valueTwo'), `${path}.valueTwo`, MAX_UINT64);
  return arg;
}

/** The general decoder of one entry: every check, with the path in each error. */
function decodeSyscallChecked(v: unknown, path: string): SeccompSyscall {
  const m = members(asObject(v, path), path, SYSCALL_MEMBERS);
  const names = asArray(required(m, 'names', path), `${path}.names`).map((n, j) => asString(n, `${path}.names[${j}]`));
  const syscall: SeccompSyscall = { names, action: asEnum(required(m, 'action', path), `${path}.action`, SECCOMP_ACTIONS, 'action') };
  if (m.has('errnoRet')) syscall.errnoRet = Number(asUint(m.get('errnoRet'), `${path}.errnoRet`, MAX_UINT32));
  if (m.has('args')) syscall.args = asArray(m.get('args'), `${path}.args`).map((a, k) => decodeArg(a, `${path}.args[${k}]`));
  return syscall;
}

function decodeSyscall(v: unknown, i: number, fast: boolean): SeccompSyscall {
  return (fast ? plainSyscall(v) : undefined) ?? decodeSyscallChecked(v, `syscalls[${i}]`);
}

/**
 * Bytes → SeccompProfile, or SecurityProfileInvalid naming the JSON path at fault. A document in
 * the plain subset of decode-scan.ts is read in one pass; any other goes to readSeccomp.
 */
export function decodeSeccomp(bytes: Uint8Array): SeccompProfile {
  return scanPlainSeccomp(bytes) ?? readSeccomp(decodeUtf8Strict(bytes, WHAT));
}

/**
 * The general reading of a decoded text: every document, every error. Numbers are read from JS
 * numbers unless the text needs the exact reading, and the document is read again exactly if a
 * value turns out to need it (RoundedNumber).
 */
export function readSeccomp(text: string): SeccompProfile {
  if (!needsExactReading(text)) {
    try {
      return decodeDocument(parseStrictJson(text, WHAT));
    } catch (e) {
      if (!(e instanceof RoundedNumber)) throw e;
    }
  }
  return decodeDocument(parseExact(text, WHAT));
}

function decodeDocument(document: unknown): SeccompProfile {
  const m = members(asObject(document, '(document)'), '', PROFILE_MEMBERS);
  const profile: SeccompProfile = { defaultAction: asEnum(required(m, 'defaultAction', ''), 'defaultAction', SECCOMP_ACTIONS, 'action') };
  if (m.has('defaultErrnoRet')) profile.defaultErrnoRet = Number(asUint(m.get('defaultErrnoRet'), 'defaultErrnoRet', MAX_UINT32));
  if (m.has('architectures')) {
    profile.architectures = asArray(m.get('architectures'), 'architectures').map((a, i) =>
      asEnum(a, `architectures[${i}]`, SECCOMP_ARCHITECTURES, 'architecture'),
    );
  }
  if (m.has('flags')) {
    profile.flags = asArray(m.get('flags'), 'flags').map((f, i) => asEnum(f, `flags[${i}]`, SECCOMP_FLAGS, 'flag'));
  }
  if (m.has('listenerPath')) profile.listenerPath = asString(m.get('listenerPath'), 'listenerPath');
  if (m.has('listenerMetadata')) profile.listenerMetadata = asString(m.get('listenerMetadata'), 'listenerMetadata');
  if (m.has('syscalls')) {
    const fast = prototypeIsClean();
    // Decoded in place: the parsed array is ours alone, and each parsed entry is garbage once read.
    const syscalls = asArray(m.get('syscalls'), 'syscalls');
    for (let i = 0; i < syscalls.length; i++) syscalls[i] = decodeSyscall(syscalls[i], i, fast);
    profile.syscalls = syscalls as SeccompSyscall[];
  }
  return profile;
}
