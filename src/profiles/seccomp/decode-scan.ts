// A direct reading of the seccomp documents spoke meets almost always, for speed (docs/benchmarks.md):
// one pass over the bytes builds the decoded profile, without a decoded text, JSON.parse's tree,
// a second walk over it, or the counts that prove no member is repeated. It reads a plain subset
// of strict JSON only: ASCII throughout, strings without escapes, unsigned integers without sign,
// fraction or exponent, no null, no repeated member, and the members decode.ts knows except the
// notify listener's. Past that subset it answers undefined and decode.ts decodes the text and
// reads the document the general way, which gives the result or the precise error. So the scan
// never decides an error, and whatever it accepts the general reading accepts with the same
// values (test/unit/profiles/seccomp-decode-scan.test.ts compares the two on generated documents).
// Every byte it accepts is ASCII, whose UTF-8 reading is the text the general reading would see.

import { MAX_UINT64 } from './conditions.js';
import {
  SECCOMP_ACTIONS,
  SECCOMP_ARCHITECTURES,
  SECCOMP_FLAGS,
  SECCOMP_OPERATORS,
  type SeccompAction,
  type SeccompArchitecture,
  type SeccompArg,
  type SeccompFlag,
  type SeccompOperator,
  type SeccompProfile,
  type SeccompSyscall,
} from './types.js';

/** Thrown inside a scan when the text leaves the plain subset; caught in scanPlainSeccomp. */
class NotPlain {}
const NOT_PLAIN = new NotPlain();

/**
 * Each kind's names, mapped to the constants themselves: those the profile keeps, so that later
 * comparisons with the constants meet the same string.
 */
const canonical = <T extends string>(values: readonly T[]): ReadonlyMap<string, T> => new Map(values.map((v) => [v, v]));
const ACTIONS = canonical(SECCOMP_ACTIONS);
const OPERATORS = canonical(SECCOMP_OPERATORS);
const ARCHITECTURES = canonical(SECCOMP_ARCHITECTURES);
const FLAGS = canonical(SECCOMP_FLAGS);

const PROFILE_MEMBERS = ['defaultAction', 'defaultErrnoRet', 'architectures', 'flags', 'syscalls'] as const;
const SYSCALL_MEMBERS = ['names', 'action', 'errnoRet', 'args'] as const;
const ARG_MEMBERS = ['index', 'value', 'valueTwo', 'op'] as const;

const QUOTE = 0x22;
const COMMA = 0x2c;
const COLON = 0x3a;
const OPEN_ARRAY = 0x5b;
const CLOSE_ARRAY = 0x5d;
const OPEN_OBJECT = 0x7b;
const CLOSE_OBJECT = 0x7d;
const ZERO = 0x30;
const NINE = 0x39;

/** Condition values below this are shared BigInts (most are small: a descriptor, flags, a family). */
const SHARED_BIGINTS = 4096;
const sharedBigInts: bigint[] = [];
const smallBigInt = (n: number): bigint => (sharedBigInts[n] ??= BigInt(n));

class Scanner {
  private pos = 0;
  /**
   * Syscall names read so far, by a hash of their bytes: a large profile names the same few
   * hundred calls again and again, and a name found here (its bytes compared) is not sliced again.
   */
  private readonly nameCache = new Map<number, string>();
  /** The last enumerated value read, per kind: entries mostly repeat the one before. */
  private lastAction = '';
  private lastOperator = '';
  /** Where the literal digits() read last starts. */
  private digitsFrom = 0;

  /** The same bytes as a Buffer, for slicing names out as text. */
  private readonly buffer: Buffer;

  constructor(private readonly bytes: Uint8Array) {
    this.buffer = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  profile(): SeccompProfile {
    let defaultAction: SeccompAction | undefined;
    let defaultErrnoRet = -1;
    let architectures: SeccompArchitecture[] | undefined;
    let flags: SeccompFlag[] | undefined;
    let syscalls: SeccompSyscall[] | undefined;
    let seen = 0;
    this.expect(OPEN_OBJECT);
    do {
      const member = this.memberName(PROFILE_MEMBERS, seen);
      seen |= 1 << member;
      if (member === 0) defaultAction = this.action();
      else if (member === 1) defaultErrnoRet = this.uint32();
      else if (member === 2) architectures = this.strings(ARCHITECTURES) as SeccompArchitecture[];
      else if (member === 3) flags = this.strings(FLAGS) as SeccompFlag[];
      else {
        syscalls = [];
        if (this.arrayStart()) do syscalls.push(this.syscall());
        while (this.arrayNext());
      }
    } while (this.objectNext());
    this.next();
    if (this.pos !== this.bytes.length || defaultAction === undefined) throw NOT_PLAIN;
    // Members in the order decode.ts builds them.
    const profile: SeccompProfile = { defaultAction };
    if (defaultErrnoRet >= 0) profile.defaultErrnoRet = defaultErrnoRet;
    if (architectures !== undefined) profile.architectures = architectures;
    if (flags !== undefined) profile.flags = flags;
    if (syscalls !== undefined) profile.syscalls = syscalls;
    return profile;
  }

  private syscall(): SeccompSyscall {
    let names: string[] | undefined;
    let action: SeccompAction | undefined;
    let errnoRet = -1;
    let args: SeccompArg[] | undefined;
    let seen = 0;
    this.expect(OPEN_OBJECT);
    do {
      const member = this.memberName(SYSCALL_MEMBERS, seen);
      seen |= 1 << member;
      if (member === 0) names = this.syscallNames();
      else if (member === 1) action = this.action();
      else if (member === 2) errnoRet = this.uint32();
      else args = this.args();
    } while (this.objectNext());
    if (names === undefined || action === undefined) throw NOT_PLAIN;
    const syscall: SeccompSyscall = { names, action };
    if (errnoRet >= 0) syscall.errnoRet = errnoRet;
    if (args !== undefined) syscall.args = args;
    return syscall;
  }

  private args(): SeccompArg[] {
    if (!this.arrayStart()) return [];
    const first = this.arg();
    // One condition is the usual case: an array of exactly that size.
    if (!this.arrayNext()) return [first];
    const args = [first];
    do args.push(this.arg());
    while (this.arrayNext());
    return args;
  }

  private arg(): SeccompArg {
    let index = -1;
    let value: bigint | undefined;
    let valueTwo: bigint | undefined;
    let op: SeccompOperator | undefined;
    let seen = 0;
    this.expect(OPEN_OBJECT);
    do {
      const member = this.memberName(ARG_MEMBERS, seen);
      seen |= 1 << member;
      if (member === 0) index = this.uint32();
      else if (member === 1) value = this.uint64();
      else if (member === 2) valueTwo = this.uint64();
      else op = this.operator();
    } while (this.objectNext());
    if (index < 0 || value === undefined || op === undefined) throw NOT_PLAIN;
    const arg: SeccompArg = { index, value, op };
    if (valueTwo !== undefined) arg.valueTwo = valueTwo;
    return arg;
  }

  /** Skips JSON whitespace; the byte there (undefined at the end, equal to no byte). */
  private next(): number {
    const bytes = this.bytes;
    let c = bytes[this.pos]!;
    while (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) c = bytes[++this.pos]!;
    return c;
  }

  private expect(c: number): void {
    if (this.next() !== c) throw NOT_PLAIN;
    this.pos++;
  }

  /** Consumes `[`; true when an element follows (false: `]` consumed too). */
  private arrayStart(): boolean {
    this.expect(OPEN_ARRAY);
    if (this.next() !== CLOSE_ARRAY) return true;
    this.pos++;
    return false;
  }

  /** After an element of an array or a member of an object: true past a `,`, false past `close`. */
  private more(close: number): boolean {
    const c = this.next();
    this.pos++;
    if (c === COMMA) return true;
    if (c === close) return false;
    throw NOT_PLAIN;
  }

  private arrayNext(): boolean {
    return this.more(CLOSE_ARRAY);
  }

  private objectNext(): boolean {
    return this.more(CLOSE_OBJECT);
  }

  /** The end of the string opening at `pos` (its closing quote), once it is known to hold no escape, control or non-ASCII byte. */
  private stringEnd(): number {
    if (this.next() !== QUOTE) throw NOT_PLAIN;
    const bytes = this.bytes;
    const end = bytes.indexOf(QUOTE, this.pos + 1);
    if (end < 0) throw NOT_PLAIN;
    for (let i = this.pos + 1; i < end; i++) {
      const c = bytes[i]!;
      if (c < 0x20 || c === 0x5c || c > 0x7f) throw NOT_PLAIN;
    }
    return end;
  }

  /** Whether `word` is written at `start`, followed by a quote. */
  private quotedAt(word: string, start: number): boolean {
    const bytes = this.bytes;
    for (let i = 0; i < word.length; i++) if (bytes[start + i] !== word.charCodeAt(i)) return false;
    return bytes[start + word.length] === QUOTE;
  }

  /** The position in `names` of the member name that follows, `:` consumed; not one of the bits `seen` (a repeated member). */
  private memberName(names: readonly string[], seen: number): number {
    if (this.next() !== QUOTE) throw NOT_PLAIN;
    const start = this.pos + 1;
    // A name with an escape never matches one of `names` as written: it is left to decode.ts.
    for (let i = 0; i < names.length; i++) {
      const name = names[i]!;
      if (this.quotedAt(name, start)) {
        if ((seen & (1 << i)) !== 0) throw NOT_PLAIN;
        this.pos = start + name.length + 1;
        this.expect(COLON);
        return i;
      }
    }
    throw NOT_PLAIN;
  }

  private string(): string {
    const end = this.stringEnd();
    const s = this.buffer.toString('latin1', this.pos + 1, end);
    this.pos = end + 1;
    return s;
  }

  /** A syscall name: as `string()`, the same string for the same bytes. */
  private name(): string {
    if (this.next() !== QUOTE) throw NOT_PLAIN;
    const bytes = this.bytes;
    const start = this.pos + 1;
    let i = start;
    let hash = 0;
    for (let c = bytes[i]!; c !== QUOTE; c = bytes[++i]!) {
      // The end of the bytes (undefined) fails the range check too.
      if (!(c >= 0x20 && c <= 0x7f) || c === 0x5c) throw NOT_PLAIN;
      hash = (Math.imul(hash, 31) + c) | 0;
    }
    this.pos = i + 1;
    const length = i - start;
    const key = hash ^ (length << 24);
    const known = this.nameCache.get(key);
    if (known !== undefined && known.length === length && this.quotedAt(known, start)) return known;
    const name = this.buffer.toString('latin1', start, i);
    if (known === undefined) this.nameCache.set(key, name);
    return name;
  }

  /** A syscall entry's names. */
  private syscallNames(): string[] {
    if (!this.arrayStart()) return [];
    const first = this.name();
    // One name is the usual case: an array of exactly that size.
    if (!this.arrayNext()) return [first];
    const out = [first];
    do out.push(this.name());
    while (this.arrayNext());
    return out;
  }

  /** An array of strings, each read as one of `known`'s. */
  private strings(known: ReadonlyMap<string, string>): string[] {
    if (!this.arrayStart()) return [];
    const out = [this.known(known)];
    while (this.arrayNext()) out.push(this.known(known));
    return out;
  }

  /** The string that follows, as the constant of `known` it spells. */
  private known<T extends string>(known: ReadonlyMap<string, T>): T {
    const s = known.get(this.string());
    if (s === undefined) throw NOT_PLAIN;
    return s;
  }

  /** Whether the string that follows is `last`; if so, `pos` is past it. */
  private repeated(last: string): boolean {
    if (this.next() !== QUOTE || last === '' || !this.quotedAt(last, this.pos + 1)) return false;
    this.pos += last.length + 2;
    return true;
  }

  private action(): SeccompAction {
    if (!this.repeated(this.lastAction)) this.lastAction = this.known(ACTIONS);
    return this.lastAction as SeccompAction;
  }

  private operator(): SeccompOperator {
    if (!this.repeated(this.lastOperator)) this.lastOperator = this.known(OPERATORS);
    return this.lastOperator as SeccompOperator;
  }

  /**
   * An unsigned integer literal without a leading zero, `pos` past it: its value, exact up to 15
   * digits; `digitsFrom` is where it starts.
   */
  private digits(): number {
    const bytes = this.bytes;
    this.next();
    this.digitsFrom = this.pos;
    let c = bytes[this.pos]!;
    // Written so that the end of the bytes (undefined) fails it too.
    if (!(c >= ZERO && c <= NINE)) throw NOT_PLAIN;
    let value = c - ZERO;
    c = bytes[++this.pos]!;
    if (value !== 0) {
      while (c >= ZERO && c <= NINE) {
        value = value * 10 + (c - ZERO);
        c = bytes[++this.pos]!;
      }
    }
    // What follows must be a delimiter (the caller's arrayNext or objectNext), so a fraction, an
    // exponent or a digit after a leading zero leaves the plain subset there.
    return value;
  }

  private uint32(): number {
    const value = this.digits();
    if (value > 0xffff_ffff) throw NOT_PLAIN;
    return value;
  }

  private uint64(): bigint {
    const value = this.digits();
    const length = this.pos - this.digitsFrom;
    if (length <= 15) return value < SHARED_BIGINTS ? smallBigInt(value) : BigInt(value);
    if (length > 20) throw NOT_PLAIN;
    const exact = BigInt(this.buffer.toString('latin1', this.digitsFrom, this.pos));
    if (exact > MAX_UINT64) throw NOT_PLAIN;
    return exact;
  }
}

/** The decoded profile when `bytes` lie in the plain subset described above, else undefined. */
export function scanPlainSeccomp(bytes: Uint8Array): SeccompProfile | undefined {
  try {
    return new Scanner(bytes).profile();
  } catch (e) {
    if (e === NOT_PLAIN) return undefined;
    throw e;
  }
}
