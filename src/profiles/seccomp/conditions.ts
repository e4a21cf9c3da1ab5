// Argument conditions as libseccomp evaluates them (64-bit unsigned comparisons), conjunctions
// of them, and the normal form the merge reasons in: per argument index one interval, the
// excluded points, and masked comparisons; provably empty conjunctions become null
// (KEP-6061 §4 "Argument filters").

import type { SeccompArchitecture, SeccompArg, SeccompOperator } from './types.js';

export const MAX_UINT64 = (1n << 64n) - 1n;
export const MAX_UINT32 = 0xffff_ffffn;
/** libseccomp: syscalls have six arguments, index 0..5. */
export const MAX_ARG_INDEX = 5;

/** MASKED_NE only arises as the negation of MASKED_EQ; no runtime can load it. */
export type AtomOp = SeccompOperator | 'MASKED_NE';

/**
 * Identity of an atom: a number for the common case (index < 8, value within 32 bits, no datum),
 * a string otherwise. Equal keys ⇔ equal atoms; the two kinds never compare equal.
 */
export type AtomKey = number | string;

export interface Atom {
  readonly index: number;
  readonly op: AtomOp;
  /** The compared value, or the mask for the masked operators. */
  readonly value: bigint;
  /** The datum for the masked operators, 0 otherwise. */
  readonly valueTwo: bigint;
  /** Identity, computed once: the merge compares atoms by it many times. */
  readonly key: AtomKey;
}

/** Operators in canonical order: EQ NE GE GT LE LT MASKED_EQ MASKED_NE. */
const OP_CODE: Readonly<Record<AtomOp, number>> = {
  SCMP_CMP_EQ: 0,
  SCMP_CMP_NE: 1,
  SCMP_CMP_GE: 2,
  SCMP_CMP_GT: 3,
  SCMP_CMP_LE: 4,
  SCMP_CMP_LT: 5,
  SCMP_CMP_MASKED_EQ: 6,
  MASKED_NE: 7,
};

export function makeAtom(index: number, op: AtomOp, value: bigint, valueTwo = 0n): Atom {
  // (value * 8 + op) * 8 + index < 2^38: exact as a number, and injective.
  const key =
    (index & 7) === index && valueTwo === 0n && value >= 0n && value <= MAX_UINT32
      ? (Number(value) * 8 + OP_CODE[op]) * 8 + index
      : `${index}:${op}:${value}:${valueTwo}`;
  return { index, op, value, valueTwo, key };
}

/** Atoms ANDed, in canonical order; [] is "always". */
export type Conjunction = readonly Atom[];

const NEGATION: Readonly<Record<AtomOp, AtomOp>> = {
  SCMP_CMP_EQ: 'SCMP_CMP_NE',
  SCMP_CMP_NE: 'SCMP_CMP_EQ',
  SCMP_CMP_LT: 'SCMP_CMP_GE',
  SCMP_CMP_GE: 'SCMP_CMP_LT',
  SCMP_CMP_LE: 'SCMP_CMP_GT',
  SCMP_CMP_GT: 'SCMP_CMP_LE',
  SCMP_CMP_MASKED_EQ: 'MASKED_NE',
  MASKED_NE: 'SCMP_CMP_MASKED_EQ',
};

const isMasked = (op: AtomOp): boolean => op === 'SCMP_CMP_MASKED_EQ' || op === 'MASKED_NE';

export function atomOfArg(arg: SeccompArg): Atom {
  return makeAtom(arg.index, arg.op, arg.value, isMasked(arg.op) ? (arg.valueTwo ?? 0n) : 0n);
}

export function argOfAtom(atom: Atom): SeccompArg {
  if (atom.op === 'MASKED_NE') throw new Error('internal: MASKED_NE has no runtime-spec form');
  const arg: SeccompArg = { index: atom.index, value: atom.value, op: atom.op };
  if (atom.op === 'SCMP_CMP_MASKED_EQ' && atom.valueTwo !== 0n) arg.valueTwo = atom.valueTwo;
  return arg;
}

export function negate(atom: Atom): Atom {
  return makeAtom(atom.index, NEGATION[atom.op], atom.value, atom.valueTwo);
}

export function atomMatches(atom: Atom, x: bigint): boolean {
  switch (atom.op) {
    case 'SCMP_CMP_EQ':
      return x === atom.value;
    case 'SCMP_CMP_NE':
      return x !== atom.value;
    case 'SCMP_CMP_LT':
      return x < atom.value;
    case 'SCMP_CMP_LE':
      return x <= atom.value;
    case 'SCMP_CMP_GE':
      return x >= atom.value;
    case 'SCMP_CMP_GT':
      return x > atom.value;
    case 'SCMP_CMP_MASKED_EQ':
      return (x & atom.value) === atom.valueTwo;
    case 'MASKED_NE':
      return (x & atom.value) !== atom.valueTwo;
  }
}

export function conjunctionMatches(conj: Conjunction, args: readonly bigint[]): boolean {
  return conj.every((a) => atomMatches(a, args[a.index] ?? 0n));
}

/** Architectures whose argument registers are 32 bits wide in libseccomp (arch-*.c `size`). */
export const ARCHS_32_BIT: ReadonlySet<SeccompArchitecture> = new Set([
  'SCMP_ARCH_X86',
  'SCMP_ARCH_X32',
  'SCMP_ARCH_ARM',
  'SCMP_ARCH_MIPS',
  'SCMP_ARCH_MIPSEL',
  'SCMP_ARCH_MIPS64N32',
  'SCMP_ARCH_MIPSEL64N32',
  'SCMP_ARCH_PPC',
  'SCMP_ARCH_S390',
  'SCMP_ARCH_PARISC',
  'SCMP_ARCH_M68K',
  'SCMP_ARCH_SH',
  'SCMP_ARCH_SHEB',
]);

/** Values that behave differently when a 32-bit architecture compares only the low word. */
export function isWide(atom: Atom): boolean {
  // A numeric key means value and datum fit 32 bits.
  return typeof atom.key !== 'number' && (atom.value > MAX_UINT32 || atom.valueTwo > MAX_UINT32);
}

/** Identity of a conjunction: its atom's key when it has one atom, the keys joined otherwise. */
export function conjunctionKey(conj: Conjunction): AtomKey {
  if (conj.length === 1) return conj[0]!.key;
  let key = '';
  for (let i = 0; i < conj.length; i++) key += i === 0 ? `${conj[i]!.key}` : `&${conj[i]!.key}`;
  return key;
}

export function compareAtoms(a: Atom, b: Atom): number {
  const ka = a.key;
  const kb = b.key;
  if (typeof ka === 'number' && typeof kb === 'number') {
    // Numeric keys hold (value, op, index) exactly, value within 32 bits and no datum (makeAtom).
    if (ka % 8 !== kb % 8) return (ka % 8) - (kb % 8);
    const oa = Math.floor(ka / 8) % 8;
    const ob = Math.floor(kb / 8) % 8;
    return oa !== ob ? oa - ob : Math.floor(ka / 64) - Math.floor(kb / 64);
  }
  if (a.index !== b.index) return a.index - b.index;
  if (a.op !== b.op) return OP_CODE[a.op] - OP_CODE[b.op];
  if (a.value !== b.value) return a.value < b.value ? -1 : 1;
  return a.valueTwo === b.valueTwo ? 0 : a.valueTwo < b.valueTwo ? -1 : 1;
}

/** Lexicographic by atoms, shorter first on a common prefix. */
export function compareConjunctions(a: Conjunction, b: Conjunction): number {
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    const c = compareAtoms(a[i]!, b[i]!);
    if (c !== 0) return c;
  }
  return a.length - b.length;
}

interface Masked {
  mask: bigint;
  datum: bigint;
  positive: boolean;
}

/** Normal form of the atoms on one index, or null when no value satisfies them all. */
function normalizeIndex(index: number, atoms: readonly Atom[]): Atom[] | null {
  let lo = 0n;
  let hi = MAX_UINT64;
  /** Excluded values, each with an NE atom that says so when it has no datum (reused for the output). */
  const excluded = new Map<bigint, Atom | undefined>();
  const masked: Masked[] = [];
  for (const a of atoms) {
    switch (a.op) {
      case 'SCMP_CMP_EQ':
        if (a.value > lo) lo = a.value;
        if (a.value < hi) hi = a.value;
        break;
      case 'SCMP_CMP_NE':
        if (!excluded.has(a.value)) excluded.set(a.value, a.valueTwo === 0n ? a : undefined);
        break;
      case 'SCMP_CMP_LT':
        if (a.value === 0n) return null;
        if (a.value - 1n < hi) hi = a.value - 1n;
        break;
      case 'SCMP_CMP_LE':
        if (a.value < hi) hi = a.value;
        break;
      case 'SCMP_CMP_GT':
        if (a.value === MAX_UINT64) return null;
        if (a.value + 1n > lo) lo = a.value + 1n;
        break;
      case 'SCMP_CMP_GE':
        if (a.value > lo) lo = a.value;
        break;
      case 'SCMP_CMP_MASKED_EQ':
      case 'MASKED_NE': {
        const positive = a.op === 'SCMP_CMP_MASKED_EQ';
        // (x & mask) == datum: never true if datum has bits outside the mask; always true for
        // mask 0 and datum 0 (the KEP's "MASKED_EQ with empty mask is dropped").
        const satisfiable = (a.valueTwo & ~a.value) === 0n;
        if (a.value === 0n || !satisfiable) {
          if ((satisfiable && a.valueTwo === 0n) !== positive) return null;
          break;
        }
        if (!masked.some((m) => m.mask === a.value && m.datum === a.valueTwo && m.positive === positive)) {
          masked.push({ mask: a.value, datum: a.valueTwo, positive });
        }
      }
    }
  }
  // An excluded end point narrows the interval (NE 0 is GE 1), so equal sets have one form.
  while (lo <= hi && excluded.has(lo) && lo < MAX_UINT64) lo++;
  while (lo <= hi && excluded.has(hi) && hi > 0n) hi--;
  if (lo > hi) return null;
  if (lo === hi) {
    if (excluded.has(lo)) return null;
    if (masked.some((m) => ((lo & m.mask) === m.datum) !== m.positive)) return null;
    return [makeAtom(index, 'SCMP_CMP_EQ', lo)];
  }
  const inRange = [...excluded.keys()].filter((v) => v >= lo && v <= hi);
  if (BigInt(inRange.length) >= hi - lo + 1n) return null;
  for (const p of masked) {
    for (const q of masked) {
      if (p.positive && q.positive && ((p.datum ^ q.datum) & p.mask & q.mask) !== 0n) return null;
      if (p.positive && !q.positive && p.mask === q.mask && p.datum === q.datum) return null;
    }
  }
  const out: Atom[] = [];
  if (lo > 0n) {
    // GT keeps the written value within 32 bits where GE would need a 33rd.
    out.push(lo > MAX_UINT32 && lo - 1n <= MAX_UINT32 ? makeAtom(index, 'SCMP_CMP_GT', lo - 1n) : makeAtom(index, 'SCMP_CMP_GE', lo));
  }
  if (hi < MAX_UINT64) out.push(makeAtom(index, 'SCMP_CMP_LE', hi));
  for (const v of inRange) out.push(excluded.get(v) ?? makeAtom(index, 'SCMP_CMP_NE', v));
  for (const m of masked) out.push(makeAtom(index, m.positive ? 'SCMP_CMP_MASKED_EQ' : 'MASKED_NE', m.mask, m.datum));
  return out;
}

/** True when one condition alone is already in normal form (what normalizeIndex would return for it). */
function isNormalCondition(op: AtomOp, value: bigint, valueTwo: bigint): boolean {
  switch (op) {
    case 'SCMP_CMP_EQ':
      return true;
    case 'SCMP_CMP_NE':
      return value > 0n && value < MAX_UINT64;
    case 'SCMP_CMP_GE':
      return value > 0n && value < MAX_UINT64 && value !== MAX_UINT32 + 1n;
    case 'SCMP_CMP_GT':
      return value === MAX_UINT32;
    case 'SCMP_CMP_LE':
      return value > 0n && value < MAX_UINT64;
    case 'SCMP_CMP_LT':
      return false;
    default:
      return value !== 0n && (valueTwo & ~value) === 0n;
  }
}

function isNormalAlone(a: Atom): boolean {
  return isNormalCondition(a.op, a.value, a.valueTwo);
}

/** normalize([atomOfArg(arg)]) is that one atom, without making it. */
export function isNormalArg(arg: SeccompArg): boolean {
  return isNormalCondition(arg.op, arg.value, isMasked(arg.op) ? (arg.valueTwo ?? 0n) : 0n);
}

/** AND of conjunctions already in normal form, or null when provably unsatisfiable. */
export function conjoin(...parts: Conjunction[]): Conjunction | null {
  if (parts.length === 2) {
    const [a, b] = parts as [Conjunction, Conjunction];
    if (b.length === 0) return a;
    if (a.length === 0) return b;
    return normalize([...a, ...b]);
  }
  const nonEmpty = parts.filter((p) => p.length > 0);
  if (nonEmpty.length === 0) return [];
  if (nonEmpty.length === 1) return nonEmpty[0]!;
  return normalize(nonEmpty.flat());
}

/** AND of arbitrary atoms in normal form, or null when provably unsatisfiable. */
export function normalize(atoms: readonly Atom[]): Conjunction | null {
  if (atoms.length === 1 && isNormalAlone(atoms[0]!)) return atoms;
  let oneIndex = true;
  for (let i = 1; i < atoms.length && oneIndex; i++) oneIndex = atoms[i]!.index === atoms[0]!.index;
  if (oneIndex && atoms.length > 2) {
    // All on one index (the complement of an or-set, say): one group, no regrouping.
    const normal = normalizeIndex(atoms[0]!.index, atoms);
    return normal === null ? null : sortAtoms(normal);
  }
  const sorted = [...atoms].sort((a, b) => a.index - b.index);
  const out: Atom[] = [];
  for (let start = 0; start < sorted.length; ) {
    let end = start + 1;
    while (end < sorted.length && sorted[end]!.index === sorted[start]!.index) end++;
    const first = sorted[start]!;
    if (end - start === 1 && isNormalAlone(first)) out.push(first);
    else {
      // Two different EQ values on one index, the common case when EQ rules are multiplied: no allocation.
      if (end - start === 2 && first.op === 'SCMP_CMP_EQ' && sorted[start + 1]!.op === 'SCMP_CMP_EQ' && first.value !== sorted[start + 1]!.value) return null;
      const normal = normalizeIndex(first.index, sorted.slice(start, end));
      if (normal === null) return null;
      out.push(...normal);
    }
    start = end;
  }
  return sortAtoms(out);
}

/** Sorts in canonical order, in place; atoms mostly arrive sorted already. */
function sortAtoms(atoms: Atom[]): Atom[] {
  for (let i = 1; i < atoms.length; i++) if (compareAtoms(atoms[i - 1]!, atoms[i]!) > 0) return atoms.sort(compareAtoms);
  return atoms;
}

/** True when the conjunction can be written as one runtime-spec entry: at most one loadable condition per index. */
export function isExpressible(conj: Conjunction): boolean {
  const seen = new Set<number>();
  for (const a of conj) {
    if (a.op === 'MASKED_NE' || seen.has(a.index)) return false;
    seen.add(a.index);
  }
  return true;
}

const SYMBOL: Readonly<Record<AtomOp, string>> = {
  SCMP_CMP_EQ: '==',
  SCMP_CMP_NE: '!=',
  SCMP_CMP_LT: '<',
  SCMP_CMP_LE: '<=',
  SCMP_CMP_GE: '>=',
  SCMP_CMP_GT: '>',
  SCMP_CMP_MASKED_EQ: '==',
  MASKED_NE: '!=',
};

export function formatConjunction(conj: Conjunction): string {
  const parts = new Array<string>(conj.length);
  for (let i = 0; i < conj.length; i++) {
    const a = conj[i]!;
    // A numeric key holds the value (within 32 bits): decimal without a bigint conversion.
    const value = typeof a.key === 'number' ? Math.floor(a.key / 64) : a.value;
    parts[i] = isMasked(a.op) ? `(arg${a.index} & 0x${a.value.toString(16)}) ${SYMBOL[a.op]} 0x${a.valueTwo.toString(16)}` : `arg${a.index} ${SYMBOL[a.op]} ${value}`;
  }
  // One flat string (repeated += would build a tree of pieces, flattened again when used as a key).
  return parts.join(' && ');
}
