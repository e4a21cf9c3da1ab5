// The intersection merge, KEP-6061 §4: the effective profile permits a call only if every input
// does. Inputs come in trust order (baseline, pod base, artifact); actions are order-independent,
// errno and listener ties go to the earlier input. Each syscall is merged on its own
// (merge-syscall.ts); architectures and flags here.

import { sha256Digest } from '../../core/digest.js';
import { SpokeError } from '../../core/errors.js';
import { actionRank, stricter } from './actions.js';
import { encodeCanonical, buildProfile } from './canonical.js';
import { ARCHS_32_BIT, comparesWideValue, isWide, type Conjunction } from './conditions.js';
import { decisionFor, ProductBudget, readOf, readProfile, type Clause, type ReadProfile, type Rule } from './decision.js';
import { diffReads } from './diff.js';
import { mergeSyscall } from './merge-syscall.js';
import type { MergeResult, SeccompArchitecture, SeccompFlag, SeccompProfile, Verdict } from './types.js';

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

/** Whether socket and SysV IPC calls may arrive on `arch` multiplexed through socketcall(2)/ipc(2). */
export function multiplexesSocketCalls(arch: SeccompArchitecture): boolean {
  return MULTIPLEXING_ARCHS.has(arch);
}

/**
 * The socket and SysV IPC calls that `profile` filters by their arguments. libseccomp writes such
 * a rule for socketcall(2) and ipc(2) too, without the argument test, which it cannot see there:
 * on a multiplexing architecture the rule then applies to every call of that kind.
 */
export function multiplexedConditions(profile: SeccompProfile): string[] {
  const names = new Set<string>();
  for (const s of profile.syscalls ?? []) {
    if ((s.args ?? []).length === 0) continue;
    for (const name of s.names) if (MULTIPLEXED_SYSCALLS.has(name)) names.add(name);
  }
  return [...names].sort();
}

/** The calls socketcall(2) and ipc(2) carry on the multiplexing architectures (linux/net.h, linux/ipc.h). */
const CARRIED: ReadonlyMap<string, ReadonlySet<string>> = new Map([
  ['socketcall', new Set([
    'socket', 'bind', 'connect', 'listen', 'accept', 'accept4', 'getsockname', 'getpeername', 'socketpair',
    'send', 'recv', 'sendto', 'recvfrom', 'shutdown', 'setsockopt', 'getsockopt', 'sendmsg', 'recvmsg',
    'recvmmsg', 'sendmmsg',
  ])],
  ['ipc', new Set(['semop', 'semget', 'semctl', 'semtimedop', 'msgsnd', 'msgrcv', 'msgget', 'msgctl', 'shmat', 'shmdt', 'shmget', 'shmctl'])],
]);

/** Calls whose arguments a filter cannot see when they go through socketcall(2) or ipc(2). */
const MULTIPLEXED_SYSCALLS: ReadonlySet<string> = new Set([...CARRIED.values()].flatMap((calls) => [...calls]));

/**
 * Whether a profile, as `verdictOf` reads it, gives each carrier (socketcall, ipc) and every call
 * it carries one and the same action, unconditionally: only then is a call made through the
 * carrier judged on a multiplexing architecture as the profile means it. libseccomp writes a rule
 * on a carried call for its carrier too (`ERRNO socket` also as `socketcall(SYS_SOCKET, …)`), but
 * a rule on the carrier itself overrides it, a carried call at the default action gets none, and
 * the kernel ignores the version bits of ipc(2)'s call number that the written rule compares
 * (`ipc(SHMGET | 1 << 16)` passed an `ERRNO shmget` rule). Checked on the kernel here with
 * int 0x80: "ALLOW socketcall, ERRNO socket" made a socket, and so did "ALLOW ipc, semop" under
 * "ERRNO ipc" once merged. `verdictOf` answers undefined for a call with conditional rules.
 */
function carriesExactly(verdictOf: (name: string) => Verdict | undefined): boolean {
  for (const [carrier, carried] of CARRIED) {
    const first = verdictOf(carrier);
    if (first === undefined) return false;
    const rank = actionRank(first.action);
    for (const call of carried) {
      const v = verdictOf(call);
      if (v === undefined || actionRank(v.action) !== rank) return false;
    }
  }
  return true;
}

/** carriesExactly of a profile as runc loads it (the shim's check on a node that multiplexes natively). */
export function carriesExactlyIn(profile: SeccompProfile): boolean {
  const read = readProfile(profile);
  return carriesExactly((name) => {
    const d = decisionFor(read, name);
    return d.shape === 'uniform' ? d.otherwise : undefined;
  });
}

function intersectArchitectures(inputs: readonly SeccompProfile[], reads: readonly ReadProfile[], output: ReadonlyMap<string, Rule[]>, defaultVerdict: Verdict): SeccompArchitecture[] {
  let archs = new Set<SeccompArchitecture>(inputs[0]!.architectures ?? []);
  for (const p of inputs.slice(1)) archs = new Set((p.architectures ?? []).filter((a) => archs.has(a)));
  // Whether any input or the output compares values wider than 32 bits, or filters a call that
  // may arrive multiplexed; both are known as soon as one conjunction says so. An input's values
  // as written count too: normalising takes `arg >= 2^32` to `arg > 0xffffffff`, which is not
  // wide, where libseccomp on a 32-bit architecture compares the written value's low word
  // (`arg >= 0`: every call).
  let wide = inputs.some(comparesWideValue);
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
  // The output must judge calls through a carrier as it judges the calls (carriesExactly). Its
  // verdict for each name is at least each input's, so one verdict for a whole family is at least
  // what any input means for a call through its carrier.
  multiplexed ||= !carriesExactly((name) => {
    const list = output.get(name);
    if (list === undefined || list.length === 0) return defaultVerdict;
    return list.length === 1 && list[0]!.conj.length === 0 ? list[0]!.verdict : undefined;
  });
  // x32 never: libseccomp 2.5.4 built the x86_64 branch of an x86_64 + x32 filter without loading
  // the syscall number once it held a rule on a name x86_64 lacks (ipc, send) beside a conditional
  // rule, and every x86_64 call then got the default action: a deny-list baseline denying ipc,
  // merged with an artifact denying socket(AF_UNSPEC), let socket(AF_UNSPEC) through on the
  // kernel here. An x32 call then meets the bad-architecture action (docs/security-model.md).
  return [...archs].filter((a) => a !== 'SCMP_ARCH_X32' && !(wide && ARCHS_32_BIT.has(a)) && !(multiplexed && MULTIPLEXING_ARCHS.has(a)));
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
  const budget = new ProductBudget();
  for (const name of names) {
    const written = mergeSyscall(
      reads.map((r) => decisionFor(r, name)),
      defaultVerdict,
      budget,
    );
    if (written.length > 0) rules.set(name, written);
  }
  // runc answers ENOSYS to a call numbered above the highest one a profile names, unless its
  // default action allows: naming every call an input names keeps that threshold no lower than
  // any input's, so a call the inputs refuse or kill is not answered ENOSYS instead
  // (docs/security-model.md#only-tighter).
  const atDefault: string[] = [];
  for (const name of names) if (!rules.has(name)) atDefault.push(name);
  const listenerSource = inputs.find((p) => p.listenerPath !== undefined && p.listenerPath !== '');
  const profile = buildProfile({
    defaultVerdict: defaultVerdict.verdict,
    architectures: intersectArchitectures(inputs, reads, rules, defaultVerdict.verdict),
    flags: intersectFlags(inputs, listenerSource),
    listenerPath: listenerSource?.listenerPath,
    listenerMetadata: listenerSource?.listenerMetadata,
    rules,
    atDefault,
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

/** The profile in canonical form: itself as runc reads it, written the canonical way (without x32, which no merge keeps). */
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
