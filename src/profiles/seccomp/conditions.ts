// Argument conditions as libseccomp evaluates them (64-bit unsigned comparisons) and conjunctions
// of them (KEP-6061 §4 "Argument filters"); their normal form is in normal-form.ts.

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

export const isMasked = (op: AtomOp): boolean => op === 'SCMP_CMP_MASKED_EQ' || op === 'MASKED_NE';

/**
 * The datum a masked comparison tests, 0 for the others. libseccomp compares (x & mask) with
 * (datum & mask), dropping the datum's bits outside the mask (with mask 0 the rule applies to
 * every call), so that is what the model reads: a datum with such bits is not a rule that never
 * matches.
 */
export function maskedDatum(arg: SeccompArg): bigint {
  return isMasked(arg.op) ? (arg.valueTwo ?? 0n) & arg.value : 0n;
}

export function atomOfArg(arg: SeccompArg): Atom {
  return makeAtom(arg.index, arg.op, arg.value, maskedDatum(arg));
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

/**
 * A condition as written whose value (or masked datum) is wider than 32 bits: a 32-bit
 * architecture compares only its low word (`arg >= 2^32` is `arg >= 0` there).
 */
export function isWideArg(a: SeccompArg): boolean {
  return a.value > MAX_UINT32 || (a.op === 'SCMP_CMP_MASKED_EQ' && (a.valueTwo ?? 0n) > MAX_UINT32);
}

/** Whether a profile as written has a condition isWideArg: see isWide for its normal form. */
export function comparesWideValue(p: { syscalls?: readonly { args?: readonly SeccompArg[] }[] }): boolean {
  return p.syscalls?.some((s) => s.args?.some(isWideArg) === true) === true;
}

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
