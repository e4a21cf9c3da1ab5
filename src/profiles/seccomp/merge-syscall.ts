// The merge of one syscall (KEP-6061 §4): the inputs' decisions multiplied into regions of
// argument space, each with the most restrictive verdict of the inputs there; the regions are
// then written back in one of the shapes runc loads exactly, or collapsed to the most restrictive
// verdict they contain.

import { actionRank, sameVerdict, stricter, verdictCode, type Sourced } from './actions.js';
import { conjunctionKey, isExpressible, MAX_UINT32, negate, type AtomKey, type Conjunction } from './conditions.js';
import { normalize } from './normal-form.js';
import { cellsOf, isComplementPair, misbuiltOrSet, partition, type Decision, type ProductBudget, type Rule } from './decision.js';
import type { Verdict } from './types.js';

/** Regions per syscall beyond which the product is not worth exact treatment (collapse instead). */
const MAX_REGIONS_PER_SYSCALL = 4096;

interface Region {
  conj: Conjunction;
  verdict: Sourced;
}

/** The most restrictive of verdicts listed in trust order, with its position: what reduce(stricter) gives, without the objects. */
function strictestSourced(verdicts: readonly Verdict[]): Sourced {
  let best = 0;
  let bestRank = actionRank(verdicts[0]!.action);
  for (let i = 1; i < verdicts.length; i++) {
    const rank = actionRank(verdicts[i]!.action);
    if (rank < bestRank) {
      best = i;
      bestRank = rank;
    }
  }
  return { verdict: verdicts[best]!, source: best };
}

/** Regions of argument space where every input's decision is constant, with the stricter verdict. */
function multiply(decisions: readonly Decision[], budget: ProductBudget): Region[] | undefined {
  const cells = partition(decisions, MAX_REGIONS_PER_SYSCALL, budget);
  return cells?.map((cell) => ({ conj: cell.conj, verdict: strictestSourced(cell.verdicts) }));
}

/** Used when the regions cannot be written exactly: the most restrictive verdict any input gives the syscall. */
function strictestOf(decisions: readonly Decision[]): Sourced {
  return decisions.flatMap((d, source) => cellsOf(d).map((cell) => ({ verdict: cell.verdict, source }))).reduce(stricter);
}

/** The effective rules of one syscall, in a shape runc loads exactly; products draw on the merge's `budget`. */
export function mergeSyscall(decisions: readonly Decision[], defaultVerdict: Sourced, budget: ProductBudget): Rule[] {
  let written: Rule[] | undefined;
  if (decisions.every((d) => d.rules.length === 0)) {
    const v = strictestSourced(decisions.map((d) => d.otherwise)).verdict;
    written = sameVerdict(v, defaultVerdict.verdict) ? [] : [{ conj: [], verdict: v }];
  } else {
    const groups = groupsOf(decisions, budget);
    written = groups === undefined ? undefined : express(groups, defaultVerdict);
    if (written === undefined) {
      // Inexpressible in runc: the whole syscall gets the most restrictive verdict involved (KEP §4).
      const strictest = groups === undefined ? strictestOf(decisions) : groups.map((g) => g.verdict).reduce(stricter);
      written = sameVerdict(strictest.verdict, defaultVerdict.verdict) ? [] : [{ conj: [], verdict: strictest.verdict }];
    }
  }
  return written;
}

interface Group {
  verdict: Sourced;
  conjs: Conjunction[];
}

/** Per verdict code, the group and, where regions may repeat a conjunction, the keys seen. */
type GroupMap = Map<number | string, { verdict: Sourced; conjs: Conjunction[]; keys: Set<AtomKey> | undefined }>;

/**
 * Adds a region to the group of its verdict; equal verdicts keep the earliest input's. With
 * `distinct` (the cells of one decision, which never repeat a conjunction) no keys are kept.
 */
function addRegion(groups: GroupMap, conj: Conjunction, verdict: Sourced, distinct: boolean): void {
  const code = verdictCode(verdict.verdict);
  const g = groups.get(code);
  if (g === undefined) {
    groups.set(code, { verdict, conjs: [conj], keys: distinct ? undefined : new Set([conjunctionKey(conj)]) });
    return;
  }
  g.verdict = stricter(g.verdict, verdict);
  if (g.keys !== undefined) {
    const key = conjunctionKey(conj);
    if (g.keys.has(key)) return;
    g.keys.add(key);
  }
  g.conjs.push(conj);
}

function finishGroups(groups: GroupMap): Group[] {
  return [...groups.values()].map((g) => ({ verdict: g.verdict, conjs: withoutSubsumed(g.conjs) }));
}

/** Regions with equal verdicts, their conjunctions deduplicated and with subsumed ones removed. */
function groupRegions(regions: readonly Region[]): Group[] {
  const groups: GroupMap = new Map();
  for (const r of regions) addRegion(groups, r.conj, r.verdict, false);
  return finishGroups(groups);
}

/**
 * groupRegions(multiply(decisions)) for decisions not all uniform. When only one has rules (the
 * usual case: baseline and base rarely filter arguments where the artifact does) the regions are
 * that decision's cells and the verdicts are picked exactly as strictestSourced would, without
 * building the cells.
 */
function groupsOf(decisions: readonly Decision[], budget: ProductBudget): Group[] | undefined {
  let k = -1;
  for (let i = 0; i < decisions.length; i++) {
    if (decisions[i]!.rules.length === 0) continue;
    if (k >= 0) {
      const regions = multiply(decisions, budget);
      return regions === undefined ? undefined : groupRegions(regions);
    }
    k = i;
  }
  const regions = cellsOf(decisions[k]!);
  if (regions.length > MAX_REGIONS_PER_SYSCALL) return undefined;
  // The strictest uniform verdict before and after k (first of equal ranks), ranked in the order
  // strictestSourced ranks a cell's verdicts, so an unknown action fails the same way.
  let before = -1;
  let beforeRank = Infinity;
  for (let i = 0; i < k; i++) {
    const rank = actionRank(decisions[i]!.otherwise.action);
    if (rank < beforeRank) {
      before = i;
      beforeRank = rank;
    }
  }
  let after = -1;
  let afterRank = Infinity;
  let afterRanked = false;
  const groups: GroupMap = new Map();
  // Cells mostly share verdict objects: one Sourced per verdict and source, not per cell.
  let lastVerdict: Verdict | undefined;
  let lastSourced: Sourced | undefined;
  for (const region of regions) {
    if (region.verdict !== lastVerdict || lastSourced === undefined) {
      const rank = actionRank(region.verdict.action);
      if (!afterRanked) {
        for (let i = k + 1; i < decisions.length; i++) {
          const r = actionRank(decisions[i]!.otherwise.action);
          if (r < afterRank) {
            after = i;
            afterRank = r;
          }
        }
        afterRanked = true;
      }
      const source = beforeRank <= rank && beforeRank <= afterRank ? before : rank <= afterRank ? k : after;
      lastVerdict = region.verdict;
      lastSourced = { verdict: source === k ? region.verdict : decisions[source]!.otherwise, source };
    }
    addRegion(groups, region.conj, lastSourced, true);
  }
  return finishGroups(groups);
}

/** Drops conjunctions that contain all atoms of another one (their region lies inside it). Skipped for large sets. */
function withoutSubsumed(conjs: Conjunction[]): Conjunction[] {
  if (conjs.length > 64) return conjs;
  // Only a strictly shorter conjunction can subsume another one.
  if (conjs.every((c) => c.length === conjs[0]!.length)) return conjs;
  const keys = conjs.map((c) => new Set(c.map((a) => a.key)));
  return conjs.filter((_, i) => !keys.some((other, j) => j !== i && other.size < keys[i]!.size && [...other].every((k) => keys[i]!.has(k))));
}

/**
 * Writes the groups in a shape runc loads exactly (KEP §4 "safe shapes"), given the effective
 * default; undefined when no such shape exists. Never mixes unconditional and conditional rules.
 */
function express(groups: readonly Group[], defaultVerdict: Sourced): Rule[] | undefined {
  if (groups.length === 1) {
    const v = groups[0]!.verdict.verdict;
    return sameVerdict(v, defaultVerdict.verdict) ? [] : [{ conj: [], verdict: v }];
  }
  const others = groups.filter((g) => !sameVerdict(g.verdict.verdict, defaultVerdict.verdict));
  if (others.length < groups.length) {
    if (others.length === 1 && others[0]!.conjs.length === 1 && isExpressible(others[0]!.conjs[0]!)) {
      return [{ conj: others[0]!.conjs[0]!, verdict: others[0]!.verdict.verdict }];
    }
    const singles = others.every((g) => g.conjs.every((c) => c.length === 1 && isExpressible(c)));
    if (!singles) return undefined;
    const rules = others.flatMap((g) => g.conjs.map((conj) => ({ conj, verdict: g.verdict.verdict })));
    if (others.length === 1) return misbuiltOrSet(rules) ? undefined : rules; // or-set: alternatives sharing one verdict
    const low = new Set<bigint>();
    const index = rules[0]!.conj[0]!.index;
    const eqSet = rules.every(({ conj: [a] }) => {
      if (a!.op !== 'SCMP_CMP_EQ' || a!.index !== index || low.has(a!.value & MAX_UINT32)) return false;
      low.add(a!.value & MAX_UINT32);
      return true;
    });
    return eqSet ? rules : undefined;
  }
  // No region keeps the default: only a complementary pair covers everything (P / not P).
  if (groups.length !== 2) return undefined;
  for (const [a, b] of [groups, [...groups].reverse()]) {
    const p = a!.conjs.length === 1 ? a!.conjs[0]! : undefined;
    const complement = p?.length === 1 ? normalize([negate(p[0]!)]) : null;
    if (p !== undefined && complement !== null && isComplementPair(p, complement)) {
      // A range comparison with a value of 2^32 or more, compared twice: validateRuntimeSteps
      // refuses such conditions in an effective profile (docs/security-model.md#only-tighter).
      if (misbuiltOrSet([{ conj: p }, { conj: complement }])) return undefined;
      return [
        { conj: p, verdict: a!.verdict.verdict },
        { conj: complement, verdict: b!.verdict.verdict },
      ];
    }
  }
  return undefined;
}
