// What a profile update changes, judged by behaviour (docs/diff.md): for every syscall, and every
// region of argument space the two profiles' conditions cut it into, the verdict OLD gives next to
// the verdict NEW gives. Key order, whitespace, entry grouping and names listed twice never show.
// A verdict later in the KEP-6061 §4 action order (KILL … ERRNO … LOG, ALLOW) is looser.

import { actionRank, sameVerdict } from './actions.js';
import { conjunctionKey, formatConjunction } from './conditions.js';
import { cellsOf, decisionFor, partition, ProductBudget, readOf, readProfile, type Decision, type ReadProfile } from './decision.js';
import { callNumbers, ENOSYS_VERDICT, enosysThreshold } from './enosys.js';
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

/**
 * The calls of `architecture` whose verdict under runc differs because its ENOSYS stub covers
 * them in one profile and not the other (enosys.ts). Calls both profiles decide by their
 * arguments are compared case by case, as syscallChanges does; the others are grouped by their
 * pair of verdicts.
 */
function enosysChanges(architecture: string, older: SeccompProfile, newer: SeccompProfile, o: ReadProfile, n: ReadProfile, budget: ProductBudget, push: (d: ChangeDirection, c: ProfileChange) => void): void {
  const numbers = callNumbers(architecture);
  if (numbers === undefined) return;
  const oldThreshold = enosysThreshold(older, numbers.byName);
  const newThreshold = enosysThreshold(newer, numbers.byName);
  if (oldThreshold === newThreshold) return;
  // Past its threshold a profile names no call, so the stub answers for every call there.
  const stubbed = (threshold: number | undefined, nr: number) => threshold !== undefined && nr > threshold;
  const groups = new Map<string, { direction: ChangeDirection; change: ProfileChange & { kind: 'enosys' } }>();
  for (const [nr, name] of numbers.byNumber) {
    const oldStub = stubbed(oldThreshold, nr);
    const newStub = stubbed(newThreshold, nr);
    if (oldStub === newStub) continue;
    const oldDecision = oldStub ? ENOSYS_EVERYWHERE : decisionFor(o, name);
    const newDecision = newStub ? ENOSYS_EVERYWHERE : decisionFor(n, name);
    const oldCells = cellsOf(oldDecision);
    const newCells = cellsOf(newDecision);
    if (oldCells.length !== 1 || newCells.length !== 1) {
      syscallChanges(name, oldDecision, newDecision, [architecture], budget, push);
      continue;
    }
    const [ov, nv] = [oldCells[0]!.verdict, newCells[0]!.verdict];
    if (sameVerdict(ov, nv)) continue;
    const key = `${ov.action}/${ov.errno ?? ''}>${nv.action}/${nv.errno ?? ''}`;
    const group = groups.get(key);
    if (group !== undefined) group.change.syscalls.push(name);
    else groups.set(key, { direction: direction(ov, nv), change: { kind: 'enosys', architecture, syscalls: [name], old: ov, new: nv } });
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
  for (const a of newArchs) if (!oldArchs.includes(a)) push('loosened', { kind: 'architecture', architecture: a, old: 'absent', new: 'present' });
  for (const a of oldArchs) if (!newArchs.includes(a)) push('tightened', { kind: 'architecture', architecture: a, old: 'present', new: 'absent' });
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
  for (const a of architectures) enosysChanges(a === 'native' ? (native ?? a) : a, older, newer, o, n, budget, push);
  return out;
}
