// Strict decode of a runtime-spec LinuxSeccomp document (KEP-6061 §4 UnmarshalStrict): valid
// UTF-8, one JSON value, no duplicate members, no unknown members, exact types. Argument values
// are uint64, beyond the precision of a JS number, so number literals are carried through
// JSON.parse as tagged strings and read exactly as bigint (no JSON library here keeps uint64
// exact and refuses duplicate members as well).

import { decodeUtf8Strict, parseStrictJson } from '../../core/json.js';
import { SpokeError } from '../../core/errors.js';
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
const STRING_TAG = 's';
const NUMBER_TAG = 'n';
const JSON_NUMBER_RE = /^-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?$/;
/** A fraction or exponent: a literal that JSON.parse may turn into an integer it does not spell. */
const FRACTION_OR_EXPONENT_RE = /[0-9][.eE]/;
/** An integer of 16+ digits, which a JS number may not hold exactly. */
const LONG_INTEGER_RE = /[0-9]{16}/;
const UINT_RE = /^(?:0|[1-9][0-9]{0,19})$/;
const MAX_UINT64 = (1n << 64n) - 1n;
const MAX_UINT32 = 0xffff_ffffn;

/** A number literal kept as written, for values beyond a JS number's exact range. */
class ExactNumber {
  constructor(readonly literal: string) {}
}

/**
 * Thrown, and caught in decodeSeccomp, when a value is read from a JS number JSON.parse may have
 * rounded (16+ digits): the document is then read again with every literal exact.
 */
class RoundedNumber {}

function invalid(path: string, message: string): SpokeError {
  return new SpokeError('SecurityProfileInvalid', `${WHAT}: ${path}: ${message}`, { path }, { reason: 'PROFILE_INVALID' });
}

function isNumberChar(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || c === 0x2d || c === 0x2b || c === 0x2e || c === 0x45 || c === 0x65;
}

function isJsonSpace(c: number): boolean {
  return c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
}

/**
 * Rewrites number literals to `"n<literal>"` and string values to `"s<string>"` (member names
 * stay as they are) so that JSON.parse keeps every number's exact text and a string can never
 * pass for a number. Returns undefined if the text is not well-formed enough to rewrite; the
 * caller then lets the plain strict parser produce the precise error.
 */
function tagScalars(text: string): string | undefined {
  const out: string[] = [];
  let copied = 0;
  let i = 0;
  const n = text.length;
  while (i < n) {
    const c = text.charCodeAt(i);
    if (c === 0x22) {
      let end = i + 1;
      for (;;) {
        end = text.indexOf('"', end);
        if (end < 0) return undefined;
        let backslashes = 0;
        while (text.charCodeAt(end - 1 - backslashes) === 0x5c) backslashes++;
        if (backslashes % 2 === 0) break;
        end++;
      }
      let next = end + 1;
      while (next < n && isJsonSpace(text.charCodeAt(next))) next++;
      if (text.charCodeAt(next) !== 0x3a /* : */) {
        out.push(text.slice(copied, i + 1), STRING_TAG);
        copied = i + 1;
      }
      i = end + 1;
    } else if (c === 0x2d || (c >= 0x30 && c <= 0x39)) {
      let end = i + 1;
      while (end < n && isNumberChar(text.charCodeAt(end))) end++;
      const literal = text.slice(i, end);
      if (literal.length > 400 || !JSON_NUMBER_RE.test(literal)) return undefined;
      out.push(text.slice(copied, i), `"${NUMBER_TAG}${literal}"`);
      copied = end;
      i = end;
    } else {
      i++;
    }
  }
  out.push(text.slice(copied));
  return out.join('');
}

/** Turns tagged strings back into strings and ExactNumbers. */
function untag(v: unknown): unknown {
  if (typeof v === 'string') return v.startsWith(NUMBER_TAG) ? new ExactNumber(v.slice(1)) : v.slice(1);
  if (Array.isArray(v)) return v.map(untag);
  if (typeof v === 'object' && v !== null) {
    const out: Record<string, unknown> = {};
    for (const [k, value] of Object.entries(v)) out[k] = untag(value);
    return out;
  }
  return v;
}

/** Strict JSON with every number literal an ExactNumber. */
function parseExact(text: string): unknown {
  const tagged = tagScalars(text);
  if (tagged !== undefined) {
    try {
      return untag(parseStrictJson(tagged, WHAT));
    } catch (e) {
      // Duplicate members carry the right path already; syntax errors are re-reported below
      // against the original text so positions in the message are the user's.
      if (e instanceof SpokeError && e.context.path !== undefined) throw e;
    }
  }
  parseStrictJson(text, WHAT);
  throw new SpokeError('SecurityProfileInvalid', `${WHAT}: not valid JSON`, {}, { reason: 'JSON_INVALID' });
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
    const at = path === '' ? key : `${path}.${key}`;
    if (!known.includes(key)) throw invalid(at, 'unknown member');
    if (value !== null) present.set(key, value);
  }
  return present;
}

function required(m: Map<string, unknown>, key: string, path: string): unknown {
  const v = m.get(key);
  if (v === undefined) throw invalid(path === '' ? key : `${path}.${key}`, 'required member missing');
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

// The fast path below decodes well-formed entries without building paths or maps; anything it
// does not plainly accept goes to the checked decoder above, which gives the same result or the
// precise error. So both paths accept exactly the same documents with the same values.

const ACTION_SET: ReadonlySet<string> = new Set(SECCOMP_ACTIONS);
const OPERATOR_SET: ReadonlySet<string> = new Set(SECCOMP_OPERATORS);

function isObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof ExactNumber);
}

/** asUint's value when it accepts `v` without complaint, else undefined. */
function plainUint(v: unknown, max: bigint): bigint | undefined {
  let value: bigint;
  if (typeof v === 'number') {
    if (!Number.isSafeInteger(v) || v < 0) return undefined;
    value = BigInt(v);
  } else if (v instanceof ExactNumber) {
    if (!UINT_RE.test(v.literal)) return undefined;
    value = BigInt(v.literal);
  } else return undefined;
  return value <= max ? value : undefined;
}

/** Number(asUint(v, path, MAX_UINT32)) when that succeeds, else -1. */
function plainUint32(v: unknown): number {
  if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 && v <= 0xffff_ffff) return v === 0 ? 0 : v; // never -0, as Number(0n)
  const value = plainUint(v, MAX_UINT32);
  return value === undefined ? -1 : Number(value);
}

/**
 * The decoded condition. With `reuse` (nothing can fail after it) the parsed object itself
 * becomes it when its members come in the order the built one would have.
 */
function plainArg(v: unknown, reuse: boolean): SeccompArg | undefined {
  if (!isObject(v)) return undefined;
  let index: unknown, value: unknown, valueTwo: unknown, op: unknown;
  let rank = 0;
  let inOrder = true;
  // for-in: no key array (only used while Object.prototype has no enumerable property).
  for (const key in v) {
    const x = v[key];
    let r: number;
    if (key === 'index') {
      index = x;
      r = 1;
    } else if (key === 'value') {
      value = x;
      r = 2;
    } else if (key === 'op') {
      op = x;
      r = 3;
    } else if (key === 'valueTwo') {
      valueTwo = x;
      r = 4;
    } else return undefined;
    if (r < rank) inOrder = false;
    rank = r;
  }
  const i = plainUint32(index);
  const val = plainUint(value, MAX_UINT64);
  if (i < 0 || val === undefined || typeof op !== 'string' || !OPERATOR_SET.has(op)) return undefined;
  let two: bigint | undefined;
  if (valueTwo !== undefined && valueTwo !== null) {
    two = plainUint(valueTwo, MAX_UINT64);
    if (two === undefined) return undefined;
  }
  const arg: SeccompArg = reuse && inOrder && valueTwo !== null ? (v as unknown as SeccompArg) : { index: i, value: val, op: op as SeccompArg['op'] };
  arg.index = i;
  arg.value = val;
  if (two !== undefined) arg.valueTwo = two;
  return arg;
}

/** The decoded conditions; a single one (the usual case) in the parsed array, which is ours alone. */
function plainArgs(args: unknown[]): SeccompArg[] | undefined {
  if (args.length === 1) {
    const arg = plainArg(args[0], true);
    if (arg === undefined) return undefined;
    args[0] = arg;
    return args as SeccompArg[];
  }
  const out: SeccompArg[] = new Array<SeccompArg>(args.length);
  for (let k = 0; k < args.length; k++) {
    const arg = plainArg(args[k], false);
    if (arg === undefined) return undefined;
    out[k] = arg;
  }
  return out;
}

/**
 * decodeSyscallChecked's result when it would accept `v` without complaint, else undefined. The
 * parsed object itself becomes the result when its members come in the order the built one
 * would have (names, action, errnoRet, args) and none is null: nothing can tell the two apart.
 */
function plainSyscall(v: unknown): SeccompSyscall | undefined {
  if (!isObject(v)) return undefined;
  let names: unknown, action: unknown, errnoRet: unknown, args: unknown;
  let rank = 0;
  let inOrder = true;
  for (const key in v) {
    const x = v[key];
    let r: number;
    if (key === 'names') {
      names = x;
      r = 1;
    } else if (key === 'action') {
      action = x;
      r = 2;
    } else if (key === 'errnoRet') {
      errnoRet = x;
      r = 3;
    } else if (key === 'args') {
      args = x;
      r = 4;
    } else return undefined;
    if (r < rank) inOrder = false;
    rank = r;
  }
  if (!Array.isArray(names) || typeof action !== 'string' || !ACTION_SET.has(action)) return undefined;
  for (let j = 0; j < names.length; j++) if (typeof names[j] !== 'string') return undefined;
  let errno = -1;
  if (errnoRet !== undefined && errnoRet !== null) {
    errno = plainUint32(errnoRet);
    if (errno < 0) return undefined;
  }
  let decodedArgs: SeccompArg[] | undefined;
  if (args !== undefined && args !== null) {
    if (!Array.isArray(args)) return undefined;
    decodedArgs = plainArgs(args);
    if (decodedArgs === undefined) return undefined;
  }
  // The parsed names array is ours alone: no copy needed.
  const syscall: SeccompSyscall = inOrder && errnoRet !== null && args !== null ? (v as unknown as SeccompSyscall) : { names: names as string[], action: action as SeccompSyscall['action'] };
  if (errno >= 0) syscall.errnoRet = errno;
  if (decodedArgs !== undefined) syscall.args = decodedArgs;
  return syscall;
}

/** True unless something made a property of Object.prototype enumerable (for-in would see it). */
function prototypeIsClean(): boolean {
  return Object.keys(Object.prototype).length === 0;
}

function decodeSyscall(v: unknown, i: number, fast: boolean): SeccompSyscall {
  return (fast ? plainSyscall(v) : undefined) ?? decodeSyscallChecked(v, `syscalls[${i}]`);
}

/**
 * Bytes → SeccompProfile, or SecurityProfileInvalid naming the JSON path at fault. Numbers are
 * read from JS numbers while every literal is an integer (one regex pass: no fraction or
 * exponent), and the document is read again with exact literals only if a value needs it. A
 * literal "-0" is refused by the exact reading but read as 0 by the plain one, so a text with
 * both "-0" and a long integer goes the exact way from the start, as it always did.
 */
export function decodeSeccomp(bytes: Uint8Array): SeccompProfile {
  const text = decodeUtf8Strict(bytes, WHAT);
  if (!FRACTION_OR_EXPONENT_RE.test(text) && !(text.includes('-0') && LONG_INTEGER_RE.test(text))) {
    try {
      return decodeDocument(parseStrictJson(text, WHAT));
    } catch (e) {
      if (!(e instanceof RoundedNumber)) throw e;
    }
  }
  return decodeDocument(parseExact(text));
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
