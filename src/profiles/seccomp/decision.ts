// How runc + libseccomp read a profile, per syscall (KEP-6061 §4 "Evaluation model"): entries
// whose verdict equals the default are skipped; an entry with several conditions on one index
// becomes one alternative per condition; an unconditional rule hides the conditional ones; only
// the KEP's "safe shapes" have a defined meaning, any other clause set is read as its most
// restrictive verdict. Shared by evaluate, validate and intersect so all three agree.

import { sameVerdict, stricter, verdictCode, verdictOf, type Sourced } from './actions.js';
import { atomOfArg, conjunctionKey, conjunctionMatches, MAX_UINT32, negate, type AtomKey, type Conjunction } from './conditions.js';
import { conjoin, normalize } from './normal-form.js';
import type { SeccompArg, SeccompProfile, Verdict } from './types.js';

export interface Clause {
  conj: Conjunction;
  verdict: Verdict;
  /** Where it was written: syscalls[entry].names[name]. */
  entry: number;
  name: number;
  /**
   * Written with conditions that always match (`arg0 <= 2^64-1`, a mask of 0): `conj` is empty,
   * but libseccomp loads a conditional rule, which hides no other rule (decide()).
   */
  alwaysMatches?: true;
}

/**
 * - uniform: no conditional behaviour (no clause, or an unconditional one hiding the rest)
 * - conflict: unconditional clauses that disagree with other clauses (uniform, most restrictive)
 * - single: one conditional clause
 * - eq-set: single-EQ clauses on one index with distinct low-32-bit values
 * - or-set: single-condition clauses sharing one verdict
 * - complement: two complementary conditions on one index and value
 * - unsafe: anything else (uniform, most restrictive including the default)
 */
export type Shape = 'uniform' | 'conflict' | 'single' | 'eq-set' | 'or-set' | 'complement' | 'unsafe';

export interface Rule {
  conj: Conjunction;
  verdict: Verdict;
}

/** Rules are disjoint or share one verdict, so the first match is the match; `otherwise` when none. */
export interface Decision {
  shape: Shape;
  rules: readonly Rule[];
  otherwise: Verdict;
  /** The clause that makes a conflict or unsafe shape, for error paths. */
  culprit?: Clause;
  /** cellsOf(), filled on first use (the merge and the diff both need it). */
  cells?: readonly Rule[];
}

export interface ReadProfile {
  defaultVerdict: Verdict;
  /** Clauses per syscall name, in document order; never-matching clauses are already gone. */
  clauses: Map<string, Clause[]>;
  /** decide() per syscall name, filled on first use. */
  decisions: Map<string, Decision>;
  /** The decision for every syscall the profile does not name. */
  unnamed: Decision;
}

/** The decision for one syscall (the default for syscalls the profile does not name). */
export function decisionFor(read: ReadProfile, name: string): Decision {
  const clauses = read.clauses.get(name);
  if (clauses === undefined) return read.unnamed;
  let d = read.decisions.get(name);
  if (d === undefined) read.decisions.set(name, (d = decide(clauses, read.defaultVerdict)));
  return d;
}

export function readProfile(p: SeccompProfile): ReadProfile {
  const clauses = new Map<string, Clause[]>();
  const entries = p.syscalls ?? [];
  // Consecutive entries mostly share action and errno: one verdict object for them.
  let verdict: Verdict | undefined;
  let lastAction: string | undefined;
  let lastErrno: number | undefined;
  for (let entry = 0; entry < entries.length; entry++) {
    const s = entries[entry]!;
    if (verdict === undefined || s.action !== lastAction || s.errnoRet !== lastErrno) {
      verdict = verdictOf(s.action, s.errnoRet);
      lastAction = s.action;
      lastErrno = s.errnoRet;
    }
    const args = s.args ?? [];
    // One argument, the common case: its conjunction without the list around it.
    const one = args.length === 1 ? normalize([atomOfArg(args[0]!)]) : undefined;
    const conjs = args.length === 1 ? undefined : entryConjunctions(args);
    for (let name = 0; name < s.names.length; name++) {
      let list = clauses.get(s.names[name]!);
      if (list === undefined) clauses.set(s.names[name]!, (list = []));
      if (conjs === undefined) {
        if (one !== null && one !== undefined) list.push(clauseOf(one, verdict, entry, name, true));
      } else for (const conj of conjs) list.push(clauseOf(conj, verdict, entry, name, args.length > 0));
    }
  }
  return readOf(verdictOf(p.defaultAction, p.defaultErrnoRet), clauses);
}

/** A clause of an entry; `conditional`: the entry has args (see Clause.alwaysMatches). */
export function clauseOf(conj: Conjunction, verdict: Verdict, entry: number, name: number, conditional: boolean): Clause {
  return conj.length === 0 && conditional ? { conj, verdict, entry, name, alwaysMatches: true } : { conj, verdict, entry, name };
}

const ALWAYS: readonly Conjunction[] = [[]];
/** The dedup key of clauses whose written conditions always match (no conjunction's key). */
const ALWAYS_MATCHING_KEY = '!always';

/** runc: several conditions on one index cannot be ANDed, so each becomes its own rule. Never-matching ones are dropped. */
export function entryConjunctions(args: readonly SeccompArg[]): readonly Conjunction[] {
  if (args.length === 0) return ALWAYS;
  if (args.length === 1) {
    const conj = normalize([atomOfArg(args[0]!)]);
    return conj === null ? [] : [conj];
  }
  const indices = new Set(args.map((a) => a.index));
  const conjs = indices.size === args.length ? [normalize(args.map(atomOfArg))] : args.map((a) => normalize([atomOfArg(a)]));
  return conjs.filter((c): c is Conjunction => c !== null);
}

export function readOf(defaultVerdict: Verdict, clauses: Map<string, Clause[]>): ReadProfile {
  return { defaultVerdict, clauses, decisions: new Map(), unnamed: uniform(defaultVerdict) };
}

function strictest(verdicts: readonly Verdict[]): Verdict {
  let best: Sourced = { verdict: verdicts[0]!, source: 0 };
  for (const v of verdicts) best = stricter(best, { verdict: v, source: 0 });
  return best.verdict;
}

const uniform = (v: Verdict): Decision => ({ shape: 'uniform', rules: [], otherwise: v });

/**
 * True when the clauses share one verdict and each is one atom with a numeric key, keys strictly
 * increasing: no two are alike. (Canonical profiles, and generated ones, list them so.)
 */
function distinctSingles(clauses: readonly Clause[]): boolean {
  const verdict = clauses[0]!.verdict;
  let last = -1;
  for (let i = 0; i < clauses.length; i++) {
    const c = clauses[i]!;
    if (c.conj.length !== 1) return false;
    const key = c.conj[0]!.key;
    if (typeof key !== 'number' || key <= last || (c.verdict !== verdict && !sameVerdict(c.verdict, verdict))) return false;
    last = key;
  }
  return true;
}

const RANGE_OPS: ReadonlySet<string> = new Set(['SCMP_CMP_LT', 'SCMP_CMP_LE', 'SCMP_CMP_GT', 'SCMP_CMP_GE']);

/**
 * The conditions on one argument of one syscall. libseccomp 2.5 builds wrong BPF for two or more
 * of them with a range comparison (LT, LE, GT, GE) and a value of 2^32 or more among them:
 * libseccomp 2.5.4 under runc enforced `ALLOW kill if arg0 < 40, ALLOW kill if arg0 >= 2^32 + 5`
 * as allowing kill(40, …) (misbuilt()).
 */
export class ArgConditions {
  private count = 0;
  private range = false;
  private wide = false;

  add(op: string, value: bigint, valueTwo = 0n): void {
    this.count++;
    if (RANGE_OPS.has(op)) this.range = true;
    if (value > MAX_UINT32 || valueTwo > MAX_UINT32) this.wide = true;
  }

  get size(): number {
    return this.count;
  }

  misbuilt(): boolean {
    return this.count > 1 && this.range && this.wide;
  }
}

/**
 * Whether libseccomp may build wrong BPF for these alternatives (an or-set; see ArgConditions).
 * Such a set is not a safe shape: it is read as its most restrictive verdict, and never written
 * by a merge (validate.ts refuses the conditions as an artifact or baseline writes them).
 */
export function misbuiltOrSet(rules: readonly { conj: Conjunction }[]): boolean {
  const byIndex = new Map<number, ArgConditions>();
  for (const { conj } of rules) {
    for (const a of conj) {
      let t = byIndex.get(a.index);
      if (t === undefined) byIndex.set(a.index, (t = new ArgConditions()));
      t.add(a.op, a.value);
    }
  }
  for (const t of byIndex.values()) if (t.misbuilt()) return true;
  return false;
}

/** Reads one syscall's clauses the way libseccomp loads them (see the header). */
export function decide(clauses: readonly Clause[] | undefined, defaultVerdict: Verdict): Decision {
  if (clauses === undefined) return uniform(defaultVerdict);
  if (clauses.length > 0 && distinctSingles(clauses)) {
    // What the general reading below gives them, without a set to find duplicates.
    if (sameVerdict(clauses[0]!.verdict, defaultVerdict)) return uniform(defaultVerdict);
    if (clauses.length === 1) return { shape: 'single', rules: clauses.slice(), otherwise: defaultVerdict };
    if (!misbuiltOrSet(clauses)) return { shape: 'or-set', rules: clauses.slice(), otherwise: defaultVerdict };
  }
  // Distinct (filter, verdict) pairs: conjunction keys per verdict code.
  const seen = new Map<number | string, Set<AtomKey>>();
  let lastCode: number | string | undefined;
  let lastSeen: Set<AtomKey> | undefined;
  // Clauses of one entry, and mostly of consecutive entries, share one verdict object.
  let lastVerdict: Verdict | undefined;
  let lastIsDefault = false;
  const live: Clause[] = [];
  let unconditional = false;
  let alwaysMatching = false;
  for (const c of clauses) {
    if (c.verdict !== lastVerdict) {
      lastVerdict = c.verdict;
      lastIsDefault = sameVerdict(c.verdict, defaultVerdict);
      const code = lastIsDefault ? undefined : verdictCode(c.verdict);
      if (code !== undefined && (code !== lastCode || lastSeen === undefined)) {
        lastCode = code;
        lastSeen = seen.get(code);
        if (lastSeen === undefined) seen.set(code, (lastSeen = new Set()));
      }
    }
    if (lastIsDefault || lastSeen === undefined) continue;
    // An always-matching clause is no duplicate of an unconditional one: it hides nothing.
    const key = c.alwaysMatches ? ALWAYS_MATCHING_KEY : conjunctionKey(c.conj);
    if (lastSeen.has(key)) continue;
    lastSeen.add(key);
    live.push(c);
    if (c.conj.length === 0) {
      if (c.alwaysMatches) alwaysMatching = true;
      else unconditional = true;
    }
  }
  if (live.length === 0) return uniform(defaultVerdict);
  if (unconditional) {
    // An always-matching clause is unconditional to libseccomp too (it drops a mask-0
    // comparison), which keeps the first such rule of a syscall: the strictest of them all
    // holds whatever their order.
    const v = strictest(live.filter((c) => c.conj.length === 0).map((c) => c.verdict));
    const culprit = live.find((c) => !sameVerdict(c.verdict, v));
    return culprit === undefined ? uniform(v) : { shape: 'conflict', rules: [], otherwise: v, culprit };
  }
  // A clause is a rule (conj, verdict) with its position; no copy needed.
  const rules: readonly Rule[] = live;
  if (live.length === 1) return { shape: 'single', rules, otherwise: defaultVerdict };
  let singles = true;
  let oneVerdict = true;
  const first = live[0]!;
  // Conditional rules, one of them always matching: with one verdict, that is the verdict of
  // every call; with several, which rule libseccomp applies where they overlap has no defined
  // meaning (not a safe shape).
  if (alwaysMatching) {
    const culprit = live.find((c) => !sameVerdict(c.verdict, first.verdict));
    return culprit === undefined ? uniform(first.verdict) : { shape: 'unsafe', rules: [], otherwise: strictest([...live.map((c) => c.verdict), defaultVerdict]), culprit };
  }
  for (const c of live) {
    if (c.conj.length !== 1) singles = false;
    else if (oneVerdict && !sameVerdict(c.verdict, first.verdict)) oneVerdict = false;
  }
  if (singles) {
    if (oneVerdict && !misbuiltOrSet(live)) return { shape: 'or-set', rules, otherwise: defaultVerdict };
    const index = first.conj[0]!.index;
    const low = new Set<number>();
    const eqSet = live.every((c) => {
      const a = c.conj[0]!;
      const lowWord = Number(a.value >= 0n && a.value <= MAX_UINT32 ? a.value : a.value & MAX_UINT32);
      if (a.op !== 'SCMP_CMP_EQ' || a.index !== index || low.has(lowWord)) return false;
      low.add(lowWord);
      return true;
    });
    if (eqSet) return { shape: 'eq-set', rules, otherwise: defaultVerdict };
    if (live.length === 2 && isComplementPair(first.conj, live[1]!.conj)) return { shape: 'complement', rules, otherwise: defaultVerdict };
  }
  return { shape: 'unsafe', rules: [], otherwise: strictest([...live.map((c) => c.verdict), defaultVerdict]), culprit: live[live.length - 1]! };
}

/** EQ/NE, LT/GE, LE/GT on one index and value (masked comparisons have no loadable complement). */
export function isComplementPair(a: Conjunction, b: Conjunction): boolean {
  if (a.length !== 1 || b.length !== 1 || a[0]!.op === 'SCMP_CMP_MASKED_EQ' || a[0]!.op === 'MASKED_NE') return false;
  const negated = normalize([negate(a[0]!)]);
  return negated !== null && conjunctionKey(negated) === conjunctionKey(b);
}

export function decisionVerdict(d: Decision, args: readonly bigint[]): Verdict {
  for (const r of d.rules) if (conjunctionMatches(r.conj, args)) return r.verdict;
  return d.otherwise;
}

/** The decision as regions that together cover every argument vector, each with its verdict. */
export function cellsOf(d: Decision): readonly Rule[] {
  if (d.cells !== undefined) return d.cells;
  if (d.rules.length === 0) return (d.cells = [{ conj: [], verdict: d.otherwise }]);
  const cells: Rule[] = [...d.rules];
  if (d.rules.every((r) => r.conj.length === 1)) {
    const none = normalize(d.rules.map((r) => negate(r.conj[0]!)));
    if (none !== null) cells.push({ conj: none, verdict: d.otherwise });
  } else {
    // One clause K = k1 && k2 ...: outside it, at least one atom fails.
    for (const atom of d.rules[0]!.conj) {
      const outside = normalize([negate(atom)]);
      if (outside !== null) cells.push({ conj: outside, verdict: d.otherwise });
    }
  }
  return (d.cells = cells);
}

/** A region of argument space on which each decision gives one verdict (in the decisions' order). */
export interface Cell {
  conj: Conjunction;
  verdicts: Verdict[];
}

/**
 * Atoms conjoined across every product of one merge, diff or comparison, at most: each product's
 * work is known before it is made (cells × regions, in atoms), and one that would pass the budget
 * is not made, as if it had too many cells (a merge then gives the syscall its strictest verdict,
 * KEP §4). Products of realistic profiles take a few hundred; without a budget, or-sets of 128
 * masked comparisons on each of 120 syscalls in an artifact and in a Localhost base once took
 * seconds of the shim's only thread (docs/decisions.md#merge-budget).
 */
const PRODUCT_ATOM_BUDGET = 100_000;

/** What is left of PRODUCT_ATOM_BUDGET for one merge, diff or comparison. */
export class ProductBudget {
  constructor(public remaining = PRODUCT_ATOM_BUDGET) {}
}

const atomsOf = (list: readonly { conj: Conjunction }[]): number => list.reduce((n, x) => n + x.conj.length, 0);

/**
 * The common refinement of the decisions' regions (empty intersections dropped), or undefined
 * when it would exceed `maxCells` or the budget, so a pathological input costs a bounded amount
 * of work.
 */
export function partition(decisions: readonly Decision[], maxCells: number, budget: ProductBudget): Cell[] | undefined {
  let cells: Cell[] = [{ conj: [], verdicts: [] }];
  for (const d of decisions) {
    if (d.rules.length === 0) {
      // One region covering everything: each cell keeps its conjunction (and is ours to extend).
      for (const cell of cells) cell.verdicts.push(d.otherwise);
      continue;
    }
    const regions = cellsOf(d);
    // Each conjoin reads both conjunctions' atoms (and costs one more for itself).
    const work = cells.length * (atomsOf(regions) + regions.length) + regions.length * atomsOf(cells);
    if (work > budget.remaining) return undefined;
    budget.remaining -= work;
    const next: Cell[] = [];
    for (const cell of cells) {
      for (const region of regions) {
        const conj = conjoin(cell.conj, region.conj);
        if (conj === null) continue;
        if (next.length === maxCells) return undefined;
        const verdicts = cell.verdicts.slice();
        verdicts.push(region.verdict);
        next.push({ conj, verdicts });
      }
    }
    cells = next;
  }
  return cells;
}
