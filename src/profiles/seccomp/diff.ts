// What the merge made stricter than the artifact asked for (KEP-6061 §4 Diff, §7 constraint
// log): the default action, each syscall and argument case, dropped architectures and flags.

import { formatVerdict, sameVerdict, verdictKey } from './actions.js';
import { conjunctionKey, formatConjunction, type Conjunction } from './conditions.js';
import { cellsOf, decisionFor, partition, ProductBudget, readProfile, type Decision, type ReadProfile } from './decision.js';
import type { ConstrainedBy, Constraint, SeccompProfile, Verdict } from './types.js';

/** Bounds the cases listed per syscall; beyond it one summary case is reported. */
const MAX_CASES_PER_SYSCALL = 4096;

export interface TrustedInputs {
  baseline: SeccompProfile;
  base?: SeccompProfile | undefined;
}

interface Labelled<T> {
  by: ConstrainedBy;
  value: T;
}

/** The first trusted input giving the effective verdict decided the case; none = inexpressible. */
function attribute(effective: Verdict, candidates: readonly Labelled<Verdict>[] | undefined): { by?: ConstrainedBy } {
  if (candidates === undefined) return {};
  return { by: candidates.find((c) => sameVerdict(c.value, effective))?.by ?? 'inexpressible' };
}

/** The first trusted input lacking what the artifact had dropped it; none = a merge rule did. */
function attributeMissing<T>(missing: T, lists: readonly Labelled<readonly T[]>[] | undefined): { by?: ConstrainedBy } {
  if (lists === undefined) return {};
  return { by: lists.find((l) => !l.value.includes(missing))?.by ?? 'inexpressible' };
}

/**
 * Equal decisions behave equally on every argument vector: same otherwise, same set of rules
 * (decide() leaves no duplicate rules, so different counts mean different sets).
 */
function sameDecision(a: Decision, e: Decision): boolean {
  if (a === e) return true;
  if (!sameVerdict(a.otherwise, e.otherwise) || a.rules.length !== e.rules.length) return false;
  return a.rules.length === 0 || decisionKey(a) === decisionKey(e);
}

/** Equal keys mean equal behaviour on every argument vector. */
function decisionKey(d: Decision): string {
  return `${d.rules.map((r) => `${conjunctionKey(r.conj)}>${verdictKey(r.verdict)}`).sort().join(',')}|${verdictKey(d.otherwise)}`;
}

/** A profile with its reading, so callers that have read it already do not read it again. */
export interface ReadInput {
  profile: SeccompProfile;
  read: ReadProfile;
}

function syscallConstraints(name: string, artifact: ReadProfile, effective: ReadProfile, trusted: readonly Labelled<ReadProfile>[] | undefined, budget: ProductBudget): Constraint[] {
  const a = decisionFor(artifact, name);
  const e = decisionFor(effective, name);
  if (sameDecision(a, e)) return [];
  const decisions = [a, e, ...(trusted ?? []).map((t) => decisionFor(t.value, name))];
  // Cases keyed by what they say: cells of a partition may repeat one. (The cells of one decision
  // never repeat a conjunction, so there every case is new and goes straight to the list.)
  const out = new Map<string, Constraint>();
  const list: Constraint[] = [];
  let distinct = false;
  const visit = (conj: Conjunction, verdicts: readonly Verdict[]): void => {
    const av = verdicts[0]!;
    const ev = verdicts[1]!;
    if (sameVerdict(av, ev)) return;
    const labelled = trusted?.map((t, i) => ({ by: t.by, value: verdicts[2 + i]! }));
    const c: Constraint = {
      kind: 'syscall',
      syscall: name,
      ...(conj.length === 0 ? {} : { args: formatConjunction(conj) }),
      artifact: av,
      effective: ev,
      ...attribute(ev, labelled),
    };
    if (distinct) list.push(c);
    else out.set(`${c.args ?? ''}|${verdictKey(av)}|${verdictKey(ev)}|${c.by ?? ''}`, c);
  };
  const tooMany = (): Constraint[] => [{ kind: 'syscall', syscall: name, args: '(too many argument cases to list)', artifact: a.otherwise, effective: e.otherwise }];
  const withRules = decisions.filter((d) => d.rules.length > 0);
  if (withRules.length <= 1) {
    // At most one decision has rules: the cases are its cells (what partition would give), the
    // other decisions add their one verdict each.
    const verdicts = decisions.map((d) => d.otherwise);
    const k = decisions.findIndex((d) => d.rules.length > 0);
    distinct = true;
    if (k < 0) visit([], verdicts);
    else {
      const regions = cellsOf(decisions[k]!);
      if (regions.length > MAX_CASES_PER_SYSCALL) return tooMany();
      for (const region of regions) {
        verdicts[k] = region.verdict;
        visit(region.conj, verdicts);
      }
    }
  } else {
    const cells = partition(decisions, MAX_CASES_PER_SYSCALL, budget);
    if (cells === undefined) return tooMany();
    for (const { conj, verdicts } of cells) visit(conj, verdicts);
  }
  return distinct ? list : [...out.values()];
}

/** diff over profiles already read; `trusted` undefined = no attribution. */
export function diffReads(artifact: ReadInput, effective: ReadInput, trusted: readonly (ReadInput & { by: ConstrainedBy })[] | undefined): Constraint[] {
  const a = artifact.read;
  const e = effective.read;
  const t = trusted?.map((r) => ({ by: r.by, value: r.read }));
  const out: Constraint[] = [];
  if (!sameVerdict(a.defaultVerdict, e.defaultVerdict)) {
    out.push({
      kind: 'defaultAction',
      artifact: a.defaultVerdict,
      effective: e.defaultVerdict,
      ...attribute(e.defaultVerdict, t?.map((r) => ({ by: r.by, value: r.value.defaultVerdict }))),
    });
  }
  const archLists = trusted?.map((r) => ({ by: r.by, value: r.profile.architectures ?? [] }));
  for (const architecture of artifact.profile.architectures ?? []) {
    if (!(effective.profile.architectures ?? []).includes(architecture)) out.push({ kind: 'architecture', architecture, ...attributeMissing(architecture, archLists) });
  }
  const flagLists = trusted?.map((r) => ({ by: r.by, value: r.profile.flags ?? [] }));
  for (const flag of artifact.profile.flags ?? []) {
    if (!(effective.profile.flags ?? []).includes(flag)) out.push({ kind: 'flag', flag, ...attributeMissing(flag, flagLists) });
  }
  const names = new Set([...a.clauses.keys(), ...e.clauses.keys(), ...(t ?? []).flatMap((r) => [...r.value.clauses.keys()])]);
  const budget = new ProductBudget();
  for (const name of [...names].sort()) out.push(...syscallConstraints(name, a, e, t, budget));
  return out;
}

/**
 * Every case where `effective` does not do what `artifact` asks. With the trusted inputs of the
 * merge each case also names the input that decided it.
 */
export function diff(artifact: SeccompProfile, effective: SeccompProfile, trusted?: TrustedInputs): Constraint[] {
  const input = (profile: SeccompProfile) => ({ profile, read: readProfile(profile) });
  return diffReads(
    input(artifact),
    input(effective),
    trusted === undefined
      ? undefined
      : [{ by: 'baseline', ...input(trusted.baseline) }, ...(trusted.base === undefined ? [] : [{ by: 'base' as const, ...input(trusted.base) }])],
  );
}

const BY_TEXT: Readonly<Record<ConstrainedBy, string>> = {
  baseline: 'by the node baseline',
  base: 'by the pod base profile',
  inexpressible: 'because runc cannot load the exact result',
};

/** One line for logs and `spoke merge`. */
export function formatConstraint(c: Constraint): string {
  const by = c.by === undefined ? '' : ` (${BY_TEXT[c.by]})`;
  switch (c.kind) {
    case 'defaultAction':
      return `default action: artifact ${formatVerdict(c.artifact)}, effective ${formatVerdict(c.effective)}${by}`;
    case 'syscall':
      return `${c.syscall}${c.args === undefined ? '' : ` when ${c.args}`}: artifact ${formatVerdict(c.artifact)}, effective ${formatVerdict(c.effective)}${by}`;
    case 'architecture':
      return `architecture ${c.architecture} dropped${by}`;
    case 'flag':
      return `flag ${c.flag} dropped${by}`;
  }
}
