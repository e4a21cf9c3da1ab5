// The intersection merge, KEP-6061 §4: the effective profile permits a call only if every input
// does. Inputs come in trust order (baseline, pod base, artifact); actions are order-independent,
// errno and listener ties go to the earlier input. Per syscall the inputs' decisions are
// multiplied into regions of argument space; the regions are then written back in one of the
// shapes runc loads exactly, or collapsed to the most restrictive verdict they contain.

import { sha256Digest } from '../../core/digest.js';
import { SpokeError } from '../../core/errors.js';
import { actionRank, sameVerdict, stricter, verdictCode, type Sourced } from './actions.js';
import { encodeCanonical, buildProfile } from './canonical.js';
import { ARCHS_32_BIT, conjunctionKey, isExpressible, isWide, MAX_UINT32, negate, normalize, type AtomKey, type Conjunction } from './conditions.js';
import { cellsOf, decisionFor, isComplementPair, partition, readOf, readProfile, type Clause, type Decision, type ReadProfile, type Rule } from './decision.js';
import { diffReads } from './diff.js';
import type { MergeResult, SeccompArchitecture, SeccompFlag, SeccompProfile, Verdict } from './types.js';

/** Regions per syscall beyond which the product is not worth exact treatment (collapse instead). */
const MAX_REGIONS_PER_SYSCALL = 4096;

/** Architectures where socket and SysV IPC calls may arrive multiplexed through socketcall(2)/ipc(2). */
const MULTIPLEXING_ARCHS: ReadonlySet<SeccompArchitecture> = new Set([
  'SCMP_ARCH_X86',
  'SCMP_ARCH_S390',
  'SCMP_ARCH_S390X',
  'SCMP_ARCH_PPC',
  'SCMP_ARCH_PPC64',
  'SCMP_ARCH_PPC64LE',
  'SCMP_ARCH_MIPS',
  'SCMP_ARCH_MIPSEL',
  'SCMP_ARCH_M68K',
  'SCMP_ARCH_SH',
  'SCMP_ARCH_SHEB',
]);

/** Calls whose arguments a filter cannot see when they go through socketcall(2) or ipc(2). */
const MULTIPLEXED_SYSCALLS: ReadonlySet<string> = new Set([
  'socket', 'bind', 'connect', 'listen', 'accept', 'accept4', 'getsockname', 'getpeername', 'socketpair',
  'send', 'recv', 'sendto', 'recvfrom', 'shutdown', 'setsockopt', 'getsockopt', 'sendmsg', 'recvmsg',
  'recvmmsg', 'sendmmsg', 'semop', 'semget', 'semctl', 'semtimedop', 'msgsnd', 'msgrcv', 'msgget',
  'msgctl', 'shmat', 'shmdt', 'shmget', 'shmctl',
]);

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
function multiply(decisions: readonly Decision[]): Region[] | undefined {
  const cells = partition(decisions, MAX_REGIONS_PER_SYSCALL);
  return cells?.map((cell) => ({ conj: cell.conj, verdict: strictestSourced(cell.verdicts) }));
}

/** Used when the regions cannot be written exactly: the most restrictive verdict any input gives the syscall. */
function strictestOf(decisions: readonly Decision[]): Sourced {
  return decisions.flatMap((d, source) => cellsOf(d).map((cell) => ({ verdict: cell.verdict, source }))).reduce(stricter);
}

/** The effective rules of one syscall, in a shape runc loads exactly. */
function mergeSyscall(decisions: readonly Decision[], defaultVerdict: Sourced): Rule[] {
  let written: Rule[] | undefined;
  if (decisions.every((d) => d.rules.length === 0)) {
    const v = strictestSourced(decisions.map((d) => d.otherwise)).verdict;
    written = sameVerdict(v, defaultVerdict.verdict) ? [] : [{ conj: [], verdict: v }];
  } else {
    const groups = groupsOf(decisions);
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
function groupsOf(decisions: readonly Decision[]): Group[] | undefined {
  let k = -1;
  for (let i = 0; i < decisions.length; i++) {
    if (decisions[i]!.rules.length === 0) continue;
    if (k >= 0) {
      const regions = multiply(decisions);
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
    if (others.length === 1) return rules; // or-set: alternatives sharing one verdict
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
      return [
        { conj: p, verdict: a!.verdict.verdict },
        { conj: complement, verdict: b!.verdict.verdict },
      ];
    }
  }
  return undefined;
}

function intersectArchitectures(inputs: readonly SeccompProfile[], reads: readonly ReadProfile[], output: ReadonlyMap<string, Rule[]>): SeccompArchitecture[] {
  let archs = new Set<SeccompArchitecture>(inputs[0]!.architectures ?? []);
  for (const p of inputs.slice(1)) archs = new Set((p.architectures ?? []).filter((a) => archs.has(a)));
  // Whether any input or the output compares values wider than 32 bits, or filters a call that
  // may arrive multiplexed; both are known as soon as one conjunction says so.
  let wide = false;
  let multiplexed = false;
  const see = (name: string, list: readonly { conj: Conjunction }[]): boolean => {
    let mux = !multiplexed && MULTIPLEXED_SYSCALLS.has(name);
    for (let i = 0; i < list.length && (mux || !wide); i++) {
      const conj = list[i]!.conj;
      if (conj.length === 0) continue;
      if (mux) multiplexed = true;
      mux = false;
      for (let k = 0; k < conj.length && !wide; k++) wide = isWide(conj[k]!);
    }
    return wide && multiplexed;
  };
  scan: {
    for (const r of reads) for (const [name, clauses] of r.clauses) if (see(name, clauses)) break scan;
    for (const [name, list] of output) if (see(name, list)) break scan;
  }
  return [...archs].filter((a) => !(wide && ARCHS_32_BIT.has(a)) && !(multiplexed && MULTIPLEXING_ARCHS.has(a)));
}

function intersectFlags(inputs: readonly SeccompProfile[], listenerSource: SeccompProfile | undefined): SeccompFlag[] | undefined {
  if (inputs.every((p) => p.flags === undefined)) return undefined;
  const has = (p: SeccompProfile, f: SeccompFlag) => p.flags?.includes(f) === true;
  const flags: SeccompFlag[] = [];
  if (inputs.some((p) => has(p, 'SECCOMP_FILTER_FLAG_TSYNC')) && listenerSource === undefined) flags.push('SECCOMP_FILTER_FLAG_TSYNC');
  if (inputs.some((p) => has(p, 'SECCOMP_FILTER_FLAG_LOG'))) flags.push('SECCOMP_FILTER_FLAG_LOG');
  if (inputs.every((p) => has(p, 'SECCOMP_FILTER_FLAG_SPEC_ALLOW'))) flags.push('SECCOMP_FILTER_FLAG_SPEC_ALLOW');
  if (listenerSource !== undefined && has(listenerSource, 'SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV')) flags.push('SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV');
  return flags;
}

/** The effective profile of inputs in trust order (earliest most trusted), in canonical form. */
function mergeReads(inputs: readonly SeccompProfile[], reads: readonly ReadProfile[]): { profile: SeccompProfile; effective: ReadProfile } {
  const defaultVerdict = reads.map((r, source) => ({ verdict: r.defaultVerdict, source })).reduce(stricter);
  const names = new Set<string>();
  for (const r of reads) for (const name of r.clauses.keys()) names.add(name);
  const rules = new Map<string, Rule[]>();
  for (const name of names) {
    const written = mergeSyscall(
      reads.map((r) => decisionFor(r, name)),
      defaultVerdict,
    );
    if (written.length > 0) rules.set(name, written);
  }
  const listenerSource = inputs.find((p) => p.listenerPath !== undefined && p.listenerPath !== '');
  const profile = buildProfile({
    defaultVerdict: defaultVerdict.verdict,
    architectures: intersectArchitectures(inputs, reads, rules),
    flags: intersectFlags(inputs, listenerSource),
    listenerPath: listenerSource?.listenerPath,
    listenerMetadata: listenerSource?.listenerMetadata,
    rules,
  });
  const clauses = new Map<string, Clause[]>();
  for (const [name, list] of rules) clauses.set(name, list.map((r) => ({ conj: r.conj, verdict: r.verdict, entry: 0, name: 0 })));
  const effective = readOf(defaultVerdict.verdict, clauses);
  // What decide() makes of one unconditional rule (never the default here), known already.
  for (const [name, list] of rules) if (list.length === 1 && list[0]!.conj.length === 0) effective.decisions.set(name, { shape: 'uniform', rules: [], otherwise: list[0]!.verdict });
  return { profile, effective };
}

/** The effective profile of inputs in trust order (earliest most trusted), in canonical form. */
export function mergeProfiles(inputs: readonly SeccompProfile[]): SeccompProfile {
  if (inputs.length === 0) throw new Error('internal: mergeProfiles needs at least one input');
  return mergeReads(inputs, inputs.map(readProfile)).profile;
}

/** The profile in canonical form: itself as runc reads it, written the canonical way. */
export function canonicalize(p: SeccompProfile): SeccompProfile {
  return mergeProfiles([p]);
}

/**
 * Effective profile = baseline ∩ base ∩ artifact (KEP-6061 §4), with its canonical bytes, digest
 * and everything the merge made stricter than the artifact asked for.
 */
export function intersect(baseline: SeccompProfile, base: SeccompProfile | undefined, artifact: SeccompProfile): MergeResult {
  if (baseline === undefined || baseline === null || artifact === undefined || artifact === null) {
    throw new SpokeError('SecurityProfileInvalid', 'intersect: baseline and artifact profiles are required', {}, { reason: 'PROFILE_INVALID' });
  }
  const inputs = base === undefined ? [baseline, artifact] : [baseline, base, artifact];
  const reads = inputs.map(readProfile);
  const { profile, effective } = mergeReads(inputs, reads);
  const bytes = encodeCanonical(profile);
  const trusted = [
    { by: 'baseline' as const, profile: baseline, read: reads[0]! },
    ...(base === undefined ? [] : [{ by: 'base' as const, profile: base, read: reads[1]! }]),
  ];
  const constrained = diffReads({ profile: artifact, read: reads[reads.length - 1]! }, { profile, read: effective }, trusted);
  return { profile, bytes, digest: sha256Digest(bytes), constrained };
}
