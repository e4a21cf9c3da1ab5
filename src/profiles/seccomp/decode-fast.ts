// The seccomp decoder's fast path (decode.ts): well-formed entries decoded without building paths
// or maps. Anything it does not plainly accept goes to the checked decoder, which gives the same
// result or the precise error, so both paths accept exactly the same documents with the same
// values.

import { MAX_UINT32, MAX_UINT64 } from './conditions.js';
import { ExactNumber, UINT_RE } from './decode-numbers.js';
import { SECCOMP_ACTIONS, SECCOMP_OPERATORS, type SeccompArg, type SeccompSyscall } from './types.js';

type JsonObject = Record<string, unknown>;

const ACTION_SET: ReadonlySet<string> = new Set(SECCOMP_ACTIONS);
const OPERATOR_SET: ReadonlySet<string> = new Set(SECCOMP_OPERATORS);

function isObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof ExactNumber);
}

/** decode.ts asUint's value when it accepts `v` without complaint, else undefined. */
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
  if (reuse && inOrder && valueTwo !== null) {
    // The same members in the same order as the object built below would have: the parsed one (ours alone) becomes it.
    const parsed = v as unknown as SeccompArg;
    parsed.index = i;
    parsed.value = val;
    if (two !== undefined) parsed.valueTwo = two;
    return parsed;
  }
  const arg: SeccompArg = { index: i, value: val, op: op as SeccompArg['op'] };
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
 * The checked decoder's result when it would accept `v` without complaint, else undefined. The
 * parsed object itself becomes the result when its members come in the order the built one
 * would have (names, action, errnoRet, args) and none is null: nothing can tell the two apart.
 */
export function plainSyscall(v: unknown): SeccompSyscall | undefined {
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
export function prototypeIsClean(): boolean {
  return Object.keys(Object.prototype).length === 0;
}
