// Path intersection for the AppArmor merge (intersect.ts, KEP-6061 §4): two maps of path →
// permission bits, `base` trusted, `art` the artifact. A pair matches when both are the same
// path; when one is a literal the other's glob matches (the literal is kept); when both are the
// same glob; or when one is `<prefix>/**` and the other a glob inside it (the narrower glob is
// kept). Anything else intersects to nothing (conservative, never wider than an input). Bits from
// several pairs landing on one entry are ORed, as AppArmor ORs the rules that match a name.

import { narrowsStarStar, tryCompileGlob, type CompiledGlob } from './glob.js';
import type { MatchBudget } from './glob-nfa.js';

interface Entry {
  path: string;
  glob: CompiledGlob;
  bits: number;
}

interface Side {
  literals: Entry[];
  globs: Map<string, Entry>;
  starStar: Entry[];
}

function sideOf(perms: ReadonlyMap<string, number>): Side {
  const side: Side = { literals: [], globs: new Map(), starStar: [] };
  for (const [path, bits] of perms) {
    const glob = tryCompileGlob(path);
    if (glob === undefined || bits === 0) continue; // never matches: contributes nothing
    const e = { path, glob, bits };
    if (!glob.isGlob) side.literals.push(e);
    else {
      side.globs.set(path, e);
      if (glob.starStarOnly) side.starStar.push(e);
    }
  }
  return side;
}

/** effective path → granted bits, and the artifact entries it came from. */
export type Merged = Map<string, { bits: number; from: Set<string> }>;

function add(merged: Merged, key: string, bits: number, from: string): void {
  if (bits === 0) return;
  const m = merged.get(key);
  if (m === undefined) merged.set(key, { bits, from: new Set([from]) });
  else {
    m.bits |= bits;
    m.from.add(from);
  }
}

/**
 * NFA state visits one merge may spend matching names against globs (about a second). Realistic
 * profiles use a tiny fraction; a pair of inputs built to blow up the matching is refused, the
 * same way every time (a count, not a clock).
 */
export const MERGE_MATCH_BUDGET = 40_000_000;

/** Intersects two path → bits maps (`base` trusted, `art` the artifact). */
export function intersectPathSets(base: ReadonlyMap<string, number>, art: ReadonlyMap<string, number>, budget: MatchBudget = { left: MERGE_MATCH_BUDGET }): Merged {
  const merged: Merged = new Map();
  const b = sideOf(base);
  const a = sideOf(art);
  const literalBytes = (e: Entry) => e.glob.literalPrefix;
  // literal ∩ literal
  const baseLiterals = new Map(b.literals.map((e) => [e.path, e]));
  for (const e of a.literals) {
    const o = baseLiterals.get(e.path);
    if (o !== undefined) add(merged, e.path, e.bits & o.bits, e.path);
  }
  // literal ∩ glob of the other side: the literal survives with the shared bits
  for (const e of a.literals) {
    const name = literalBytes(e);
    for (const g of b.globs.values()) if (g.glob.matches(name, true, budget)) add(merged, e.path, e.bits & g.bits, e.path);
  }
  for (const e of b.literals) {
    const name = literalBytes(e);
    for (const g of a.globs.values()) if (g.glob.matches(name, true, budget)) add(merged, e.path, e.bits & g.bits, g.path);
  }
  // glob ∩ glob: identical, or one inside the other's `<prefix>/**`
  for (const g of a.globs.values()) {
    const same = b.globs.get(g.path);
    if (same !== undefined) add(merged, g.path, g.bits & same.bits, g.path);
    for (const w of b.starStar) if (narrowsStarStar(w.glob, g.glob, budget)) add(merged, g.path, g.bits & w.bits, g.path);
  }
  for (const g of b.globs.values()) {
    for (const w of a.starStar) if (narrowsStarStar(w.glob, g.glob, budget)) add(merged, g.path, g.bits & w.bits, w.path);
  }
  return merged;
}
