// What a profile update changes, judged by behaviour (docs/diff.md): for every syscall, and every
// region of argument space the two profiles' conditions cut it into, the verdict OLD gives next to
// the verdict NEW gives. Key order, whitespace, entry grouping and names listed twice never show.
// A verdict later in the KEP-6061 §4 action order (KILL … ERRNO … LOG, ALLOW) is looser.

import { actionRank, sameVerdict } from './actions.js';
import { conjunctionKey, formatConjunction } from './conditions.js';
import { cellsOf, decisionFor, partition, ProductBudget, readOf, readProfile, type Decision, type ReadProfile } from './decision.js';
import { callTable, ENOSYS_OUTCOME, ENOSYS_VERDICT, RULE_OUTCOME, stubbable, stubOutcomes, type StubOutcome } from './enosys.js';
import type { SeccompArchitecture, SeccompFlag, SeccompProfile, Verdict } from './types.js';

/** Bounds the argument regions compared per syscall; beyond it one summary entry is reported. */
const MAX_CASES_PER_SYSCALL = 4096;

/** The name used for "every syscall neither profile names" (the default action). */
export const OTHER_SYSCALLS = '*';

/** Flags that weaken the filter's protection when set (Spectre mitigations off). */
const LOOSENING_FLAGS: ReadonlySet<SeccompFlag> = new Set(['SECCOMP_FILTER_FLAG_SPEC_ALLOW']);

export type ChangeDirection = 'loosened' | 'tightened' | 'changed';

export type ProfileChange =
  | {
      kind: 'syscall';
      syscall: string;
      /** The architectures the verdicts hold for: those both profiles load (`native` when neither lists any). */
      architectures: string[];
      /** The argument condition of this case, when the profiles treat arguments differently. */
      args?: string;
      old: Verdict;
      new: Verdict;
    }
  | {
      /**
       * Calls of one architecture whose verdict changes because runc's ENOSYS threshold moved
       * (enosys.ts): on that architecture these verdicts stand for those calls under runc.
       */
      kind: 'enosys';
      architecture: string;
      syscalls: string[];
      old: Verdict;
      new: Verdict;
    }
  | {
      /**
       * runc's ENOSYS threshold may move on an architecture whose call numbers spoke does not
       * know, as the names that may set it differ (docs/diff.md): the calls it moves are not listed.
       */
      kind: 'enosys-unnumbered';
      architecture: string;
      /** Names NEW has and OLD not. */
      added: string[];
      /** Names OLD has and NEW not. */
      removed: string[];
    }
  | { kind: 'architecture'; architecture: string; old: 'absent' | 'present'; new: 'absent' | 'present' }
  | { kind: 'flag'; flag: string; old: 'unset' | 'set'; new: 'unset' | 'set' };

export interface ProfileComparison {
  loosened: ProfileChange[];
  tightened: ProfileChange[];
  /** Same strictness, different behaviour: another errno for the same action, a logging flag. */
  changed: ProfileChange[];
}

function direction(oldVerdict: Verdict, newVerdict: Verdict): ChangeDirection {
  const o = actionRank(oldVerdict.action);
  const n = actionRank(newVerdict.action);
  return n > o ? 'loosened' : n < o ? 'tightened' : 'changed';
}

function syscallChanges(name: string, older: Decision, newer: Decision, architectures: string[], budget: ProductBudget, push: (d: ChangeDirection, c: ProfileChange) => void): void {
  const visit = (args: string | undefined, o: Verdict, n: Verdict): void => {
    if (sameVerdict(o, n)) return;
    push(direction(o, n), { kind: 'syscall', syscall: name, architectures, ...(args === undefined ? {} : { args }), old: o, new: n });
  };
  const cells = partition([older, newer], MAX_CASES_PER_SYSCALL, budget);
  if (cells === undefined) {
    // Too many regions to compare one by one. Comparing only the strictness extremes hides a
    // loosening in between (a NEW allowing more argument cases, at the same extremes): any
    // difference in the two decisions counts as loosened, which a reviewer then reads.
    const shape = (d: Decision) => cellsOf(d).map((c) => `${conjunctionKey(c.conj)}=${c.verdict.action}/${c.verdict.errno ?? ''}`).join('|');
    if (shape(older) === shape(newer)) return;
    const loosest = (d: Decision) => cellsOf(d).map((c) => c.verdict).reduce((a, b) => (actionRank(b.action) > actionRank(a.action) ? b : a));
    push('loosened', { kind: 'syscall', syscall: name, architectures, args: '(too many argument cases to compare one by one; the rules differ)', old: loosest(older), new: loosest(newer) });
    return;
  }
  for (const { conj, verdicts } of cells) visit(conj.length === 0 ? undefined : formatConjunction(conj), verdicts[0]!, verdicts[1]!);
}

/**
 * A flag that loosens when set, read as each runtime reads the profile, OLD and NEW under the
 * same runtime: without a `flags` member crun and runc 1.2 set SPEC_ALLOW, older runc sets
 * nothing (docs/diff.md). Loosened when some runtime sets it for NEW only; else tightened when
 * some runtime sets it for OLD only.
 */
function flagChange(flag: SeccompFlag, older: readonly SeccompFlag[] | undefined, newer: readonly SeccompFlag[] | undefined, push: (d: ChangeDirection, c: ProfileChange) => void): void {
  const readings = [(flags: readonly SeccompFlag[] | undefined) => flags?.includes(flag) === true];
  if (flag === 'SECCOMP_FILTER_FLAG_SPEC_ALLOW') readings.push((flags) => flags === undefined || flags.includes(flag));
  if (readings.some((set) => set(newer) && !set(older))) push('loosened', { kind: 'flag', flag, old: 'unset', new: 'set' });
  else if (readings.some((set) => set(older) && !set(newer))) push('tightened', { kind: 'flag', flag, old: 'set', new: 'unset' });
}

const ENOSYS_EVERYWHERE: Decision = readOf(ENOSYS_VERDICT, new Map()).unnamed;

/** The one verdict of a decision that does not look at arguments, else undefined. */
function uniformVerdict(d: Decision): Verdict | undefined {
  const cells = cellsOf(d);
  return cells.length === 1 ? cells[0]!.verdict : undefined;
}

/**
 * Whether the reading without the stub already reports this call as changed in `d`, as a
 * whole: a stubbed reading of the same direction (only the errno of the old verdict differs,
 * say) adds nothing a reviewer needs.
 */
function reportedAs(older: Decision, newer: Decision, d: ChangeDirection): boolean {
  const [ov, nv] = [uniformVerdict(older), uniformVerdict(newer)];
  return ov !== undefined && nv !== undefined && !sameVerdict(ov, nv) && direction(ov, nv) === d;
}

/** The same decision, or two that give one verdict whatever the arguments. */
function sameDecision(a: Decision, b: Decision): boolean {
  if (a === b) return true;
  const [va, vb] = [uniformVerdict(a), uniformVerdict(b)];
  return va !== undefined && vb !== undefined && sameVerdict(va, vb);
}

/**
 * Where the call numbers are not known here, any name either profile has alone may set runc's
 * threshold in some library (known or not, numbered highest or not), and a moved threshold may
 * loosen whatever the actions: reported loosened, so that a human reviews it (docs/diff.md). The
 * same names give both profiles the same threshold under every library.
 */
function unnumberedChange(architecture: SeccompArchitecture, o: ReadProfile, n: ReadProfile, push: (d: ChangeDirection, c: ProfileChange) => void): void {
  const added = [...n.clauses.keys()].filter((name) => !o.clauses.has(name)).sort();
  const removed = [...o.clauses.keys()].filter((name) => !n.clauses.has(name)).sort();
  if (added.length + removed.length > 0) push('loosened', { kind: 'enosys-unnumbered', architecture, added, removed });
}

/**
 * The calls of `architecture` whose verdict under runc differs from the reading above (every
 * name known, no stub) in some runtime a node may have: any libseccomp from 2.3.1 (what it knows,
 * how it numbers 32-bit x86's socket and IPC calls: stubOutcomes), and a runc that stubs the
 * node's own architecture even where a profile does not list it (1.1.15 and later) or not. Each
 * pair of verdicts is reported once, with every call it holds for; calls decided by their
 * arguments are compared case by case, as syscallChanges does.
 */
function enosysChanges(architecture: SeccompArchitecture, isNative: boolean, older: SeccompProfile, newer: SeccompProfile, o: ReadProfile, n: ReadProfile, budget: ProductBudget, push: (d: ChangeDirection, c: ProfileChange) => void): void {
  if (!stubbable(older) && !stubbable(newer)) return;
  const listed = (p: SeccompProfile) => (p.architectures ?? []).includes(architecture);
  // Whether each runc reading stubs this architecture for a profile: listed, or (1.1.15+) the node's.
  const readings = isNative && !(listed(older) && listed(newer)) ? [false, true] : [true];
  const table = callTable(architecture);
  if (table === undefined) {
    const stubbedSomewhere = readings.some((nativeStub) => [older, newer].some((p) => stubbable(p) && (listed(p) || nativeStub)));
    if (stubbedSomewhere) unnumberedChange(architecture, o, n, push);
    return;
  }
  const groups = new Map<string, { direction: ChangeDirection; change: ProfileChange & { kind: 'enosys' } }>();
  const compared = new Set<string>();
  const ids = new Map<Decision, number>();
  const id = (d: Decision) => ids.get(d) ?? (ids.set(d, ids.size), ids.size - 1);
  const outcomes = new Map<string, number>();
  for (const nativeStub of readings) {
    const stubbed = (p: SeccompProfile) => stubbable(p) && (listed(p) || nativeStub);
    const found = stubOutcomes(table, { names: new Set(o.clauses.keys()), stubbed: stubbed(older) }, { names: new Set(n.clauses.keys()), stubbed: stubbed(newer) });
    for (const [name, pairs] of found) outcomes.set(name, (outcomes.get(name) ?? 0) | pairs);
  }
  const decisionOf = (rp: ReadProfile, name: string, outcome: StubOutcome): Decision =>
    outcome === ENOSYS_OUTCOME ? ENOSYS_EVERYWHERE : outcome === RULE_OUTCOME ? decisionFor(rp, name) : rp.unnamed;
  // In the order of the calls' numbers, newer calls last, so that a group lists its calls so.
  const order = (name: string) => table.byName.get(name) ?? Infinity;
  for (const [name, pairs] of [...outcomes].sort(([a], [b]) => order(a) - order(b) || (a < b ? -1 : 1))) {
    for (let bit = 0; bit < 9; bit++) {
      if ((pairs & (1 << bit)) === 0) continue;
      const oldDecision = decisionOf(o, name, Math.floor(bit / 3) as StubOutcome);
      const newDecision = decisionOf(n, name, (bit % 3) as StubOutcome);
      // What the reading above compared already.
      if (sameDecision(oldDecision, decisionFor(o, name)) && sameDecision(newDecision, decisionFor(n, name))) continue;
      const key = `${name}:${id(oldDecision)}:${id(newDecision)}`;
      if (compared.has(key)) continue;
      compared.add(key);
      const [ov, nv] = [uniformVerdict(oldDecision), uniformVerdict(newDecision)];
      if (ov === undefined || nv === undefined) {
        syscallChanges(name, oldDecision, newDecision, [architecture], budget, push);
        continue;
      }
      if (sameVerdict(ov, nv) || reportedAs(decisionFor(o, name), decisionFor(n, name), direction(ov, nv))) continue;
      const pair = `${ov.action}/${ov.errno ?? ''}>${nv.action}/${nv.errno ?? ''}`;
      const group = groups.get(pair);
      if (group === undefined) groups.set(pair, { direction: direction(ov, nv), change: { kind: 'enosys', architecture, syscalls: [name], old: ov, new: nv } });
      else if (!group.change.syscalls.includes(name)) group.change.syscalls.push(name);
    }
  }
  for (const { direction: d, change } of groups.values()) push(d, change);
}

/**
 * Every behaviour in which NEW differs from OLD, sorted by syscall, each under its direction.
 * `native`: the architecture a profile without an architecture list runs on (the node's), for
 * runc's ENOSYS threshold; unknown, that threshold is not compared for such profiles.
 */
export function compareProfiles(older: SeccompProfile, newer: SeccompProfile, native?: SeccompArchitecture): ProfileComparison {
  const out: ProfileComparison = { loosened: [], tightened: [], changed: [] };
  const push = (d: ChangeDirection, c: ProfileChange) => out[d].push(c);
  const oldArchs = older.architectures ?? [];
  const newArchs = newer.architectures ?? [];
  for (const a of newArchs) if (!oldArchs.includes(a) && a !== native) push('loosened', { kind: 'architecture', architecture: a, old: 'absent', new: 'present' });
  // A dropped architecture's calls meet libseccomp's bad-architecture action, which runc and crun
  // keep: the calling thread is killed (docs/security-model.md). Looser than OLD where OLD killed
  // the whole process there, by its default or a rule. Not the node's own: libseccomp filters it
  // whatever the list says.
  const killsProcess = older.defaultAction === 'SCMP_ACT_KILL_PROCESS' || (older.syscalls ?? []).some((e) => e.action === 'SCMP_ACT_KILL_PROCESS');
  for (const a of oldArchs) if (!newArchs.includes(a) && a !== native) push(killsProcess ? 'loosened' : 'tightened', { kind: 'architecture', architecture: a, old: 'present', new: 'absent' });
  const oldFlags = older.flags ?? [];
  const newFlags = newer.flags ?? [];
  for (const f of newFlags) if (!oldFlags.includes(f) && !LOOSENING_FLAGS.has(f)) push('changed', { kind: 'flag', flag: f, old: 'unset', new: 'set' });
  for (const f of oldFlags) if (!newFlags.includes(f) && !LOOSENING_FLAGS.has(f)) push('changed', { kind: 'flag', flag: f, old: 'set', new: 'unset' });
  for (const f of LOOSENING_FLAGS) flagChange(f, older.flags, newer.flags, push);

  const shared = oldArchs.filter((a) => newArchs.includes(a));
  const architectures = shared.length > 0 ? shared : oldArchs.length + newArchs.length === 0 ? ['native'] : [...new Set([...oldArchs, ...newArchs])];
  const o = readProfile(older);
  const n = readProfile(newer);
  const budget = new ProductBudget();
  syscallChanges(OTHER_SYSCALLS, o.unnamed, n.unnamed, architectures, budget, push);
  const names = [...new Set([...o.clauses.keys(), ...n.clauses.keys()])].sort();
  for (const name of names) syscallChanges(name, decisionFor(o, name), decisionFor(n, name), architectures, budget, push);
  // runc's stub, on the architectures both profiles are filtered for: those both list, and the node's.
  for (const a of new Set([...shared, ...(native === undefined ? [] : [native])])) enosysChanges(a, a === native, older, newer, o, n, budget, push);
  return out;
}
