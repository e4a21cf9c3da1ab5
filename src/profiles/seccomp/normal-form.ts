// The normal form the merge reasons in (KEP-6061 §4 "Argument filters"): per argument index one
// interval, the excluded points, and masked comparisons; provably empty conjunctions become null.

import { compareAtoms, makeAtom, maskedDatum, MAX_UINT32, MAX_UINT64, type Atom, type AtomOp, type Conjunction } from './conditions.js';
import type { SeccompArg } from './types.js';

interface Masked {
  mask: bigint;
  datum: bigint;
  positive: boolean;
}

/** NE atoms by value, ascending, the first of each value only (they mostly come sorted already). */
function distinctValues(nes: Atom[]): Atom[] {
  let sorted = true;
  for (let i = 1; i < nes.length && sorted; i++) sorted = nes[i - 1]!.value < nes[i]!.value;
  if (sorted) return nes;
  // Stable: the first atom of each value stays first.
  const byValue = nes.sort((a, b) => (a.value < b.value ? -1 : a.value > b.value ? 1 : 0));
  return byValue.filter((a, i) => i === 0 || byValue[i - 1]!.value !== a.value);
}

/** Normal form of the atoms on one index, or null when no value satisfies them all. */
function normalizeIndex(index: number, atoms: readonly Atom[]): Atom[] | null {
  let lo = 0n;
  let hi = MAX_UINT64;
  /** The NE atoms: the excluded values. */
  const nes: Atom[] = [];
  const masked: Masked[] = [];
  const maskedKeys = new Set<string>();
  for (const a of atoms) {
    switch (a.op) {
      case 'SCMP_CMP_EQ':
        if (a.value > lo) lo = a.value;
        if (a.value < hi) hi = a.value;
        break;
      case 'SCMP_CMP_NE':
        nes.push(a);
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
        // A set, not a scan: a conjunction may hold hundreds of masked atoms (an or-set's complement).
        const key = `${positive ? '+' : '-'}${a.value}:${a.valueTwo}`;
        if (!maskedKeys.has(key)) {
          maskedKeys.add(key);
          masked.push({ mask: a.value, datum: a.valueTwo, positive });
        }
      }
    }
  }
  const excluded = distinctValues(nes);
  // The excluded values within [lo, hi] are excluded[first..last].
  let first = 0;
  let last = excluded.length - 1;
  while (first <= last && excluded[first]!.value < lo) first++;
  while (first <= last && excluded[last]!.value > hi) last--;
  // An excluded end point narrows the interval (NE 0 is GE 1), so equal sets have one form.
  while (lo <= hi && first <= last && excluded[first]!.value === lo && lo < MAX_UINT64) {
    lo++;
    first++;
  }
  while (lo <= hi && first <= last && excluded[last]!.value === hi && hi > 0n) {
    hi--;
    last--;
  }
  if (lo > hi) return null;
  if (lo === hi) {
    if (first <= last) return null;
    if (masked.some((m) => ((lo & m.mask) === m.datum) !== m.positive)) return null;
    return [makeAtom(index, 'SCMP_CMP_EQ', lo)];
  }
  if (BigInt(last - first + 1) >= hi - lo + 1n) return null;
  // Linear, not pairwise: the positive atoms fix bits (their masks) to values (their data), and
  // they conflict exactly when two of them fix one bit differently, which the bits fixed so far
  // show; an atom and its own negation conflict.
  let fixedMask = 0n;
  let fixedBits = 0n;
  for (const p of masked) {
    if (!p.positive) continue;
    if (((fixedBits ^ p.datum) & fixedMask & p.mask) !== 0n || maskedKeys.has(`-${p.mask}:${p.datum}`)) return null;
    fixedMask |= p.mask;
    fixedBits |= p.datum;
  }
  const out: Atom[] = [];
  if (lo > 0n) {
    // GT keeps the written value within 32 bits where GE would need a 33rd.
    out.push(lo > MAX_UINT32 && lo - 1n <= MAX_UINT32 ? makeAtom(index, 'SCMP_CMP_GT', lo - 1n) : makeAtom(index, 'SCMP_CMP_GE', lo));
  }
  if (hi < MAX_UINT64) out.push(makeAtom(index, 'SCMP_CMP_LE', hi));
  // An NE atom with no datum is reused for the output.
  for (let i = first; i <= last; i++) out.push(excluded[i]!.valueTwo === 0n ? excluded[i]! : makeAtom(index, 'SCMP_CMP_NE', excluded[i]!.value));
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
  return isNormalCondition(arg.op, arg.value, maskedDatum(arg));
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
    // All on one index (the complement of an or-set, say): one group, no regrouping. (Two go the
    // general way below, which has a shortcut for two EQs.)
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
