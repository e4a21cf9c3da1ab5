// The three validation levels of KEP-6061 §4, each a superset of the one before:
//   validate          what runc loads, plus the rules the KEP applies everywhere
//   validateArtifact  what a pulled artifact must satisfy (listener and its flag, errno, shapes, limits)
//   validateStrict    artifact rules plus duplicate syscall names and unused valueTwo
// The first failure is reported, in document order, as SecurityProfileInvalid with the JSON path.

import { SpokeError } from '../../core/errors.js';
import { MAX_ERRNO, sameVerdict, takesErrno, verdictKey, verdictOf } from './actions.js';
import { ARCHS_32_BIT, atomOfArg, isWideArg, MAX_ARG_INDEX, MAX_UINT32, type Conjunction } from './conditions.js';
import { ArgConditions, clauseOf, decide, entryConjunctions, type Clause } from './decision.js';
import { isNormalArg, normalize } from './normal-form.js';
import { capabilityDropIgnored } from './runtime-init.js';
import type { SeccompArg, SeccompProfile, SeccompSyscall, Verdict } from './types.js';

/** KEP-6061 §4 artifact limits (MaxArtifact*). */
export const MAX_ENTRIES_PER_SYSCALL = 128;
export const MAX_CLAUSES_PER_SYSCALL = 256;
export const MAX_NAMES_PER_ENTRY = 1024;
export const MAX_CLAUSES = 16384;
/**
 * Conditions one entry may list: crun 1.8.1 reads at most 6 (then ignores the rest) where runc
 * reads them all, so an entry with more is enforced differently by the runtimes; more than 6 on
 * distinct arguments cannot exist (a call has 6), so it repeats an argument.
 */
export const MAX_ARGS_PER_ENTRY = 6;

/** Kernel syscall names: lowercase, digits, underscores (`_llseek`, `arm_fadvise64_64`). */
const SYSCALL_NAME_RE = /^[a-z_][a-z0-9_]{0,63}$/;

enum Level {
  Runtime,
  Artifact,
  Strict,
}

function fail(path: string, message: string, context: Record<string, unknown> = {}, reason: 'PROFILE_INVALID' | 'LIMIT_EXCEEDED' = 'PROFILE_INVALID'): never {
  throw new SpokeError('SecurityProfileInvalid', `seccomp profile: ${path}: ${message}`, { path, ...context }, { reason });
}

/** runc: alternatives for repeated indices, one rule otherwise. */
function clauseCount(args: readonly SeccompArg[]): number {
  if (args.length <= 1) return 1;
  return new Set(args.map((a) => a.index)).size === args.length ? 1 : args.length;
}

/**
 * ERRNO(0) skips the call and reports success. runc and crun load the filter before they drop
 * privileges when no_new_privs is off (the Kubernetes default), so ERRNO(0) on setuid, setgroups
 * or capset would leave the container with uid 0 and every capability while the runtime believed
 * it had dropped them (docs/security-model.md#only-tighter). Refused in artifacts, pod bases and
 * baselines: a merge keeps the stricter verdict, and ERRNO(0) counts as stricter than ALLOW.
 */
function checkSilentSuccess(errno: number | undefined, action: SeccompProfile['defaultAction'], path: string): void {
  // Read as libseccomp reads it (verdictOf: the low 16 bits), so 65536 is ERRNO(0) too: a
  // runtime-level baseline's errno is not range-checked.
  const v = verdictOf(action, errno);
  if (v.action === 'SCMP_ACT_ERRNO' && v.errno === 0) {
    fail(path, 'errno 0 with SCMP_ACT_ERRNO makes a refused call report success (a runtime dropping privileges would keep them)', { actual: 0 });
  }
}

/**
 * The rules on what the runtime does under the filter (checkSilentSuccess, checkCapabilityDrop),
 * for a profile checked only at the runtime level that is merged all the same: a notify-listener
 * baseline, the runtime's default as a base.
 */
export function validateRuntimeSteps(p: SeccompProfile): void {
  checkSilentSuccess(p.defaultErrnoRet, p.defaultAction, 'defaultErrnoRet');
  // runc decides on its ENOSYS stub by defaultErrnoRet before it looks at the action: with its
  // own ERRNO(ENOSYS) word there (327718) a KILL default keeps no stub, while the merge, which
  // drops an errno the action ignores, gives the effective profile one (crun refuses it anyway).
  if (p.defaultErrnoRet !== undefined && !takesErrno(p.defaultAction)) fail('defaultErrnoRet', `errno is only allowed with SCMP_ACT_ERRNO or SCMP_ACT_TRACE, not ${p.defaultAction} (runc and crun read it differently)`);
  const entries = p.syscalls ?? [];
  for (let i = 0; i < entries.length; i++) checkSilentSuccess(entries[i]!.errnoRet, entries[i]!.action, `syscalls[${i}].errnoRet`);
  // The merge reads conditions normalised (a comparison that never matches dropped, `>= 2^32` as
  // `> 0xffffffff`); libseccomp builds them as written, and for these shapes wrongly: what the
  // merge made of them would be looser than what the kernel enforced for the input.
  const defaultVerdict = verdictOf(p.defaultAction, p.defaultErrnoRet);
  const written = new Map<string, WrittenConditions>();
  for (let i = 0; i < entries.length; i++) {
    const s = entries[i]!;
    if (s.args === undefined || s.args.length === 0 || sameVerdict(verdictOf(s.action, s.errnoRet), defaultVerdict)) continue;
    checkNeverMatching(s.args, i);
    for (const name of s.names) {
      let w = written.get(name);
      if (w === undefined) written.set(name, (w = new Map()));
      noteWritten(w, s.args, i);
    }
  }
  for (const [name, w] of written) checkWritten(name, w);
  checkCapabilityDrop(p);
}

function checkErrno(errno: number | undefined, action: SeccompProfile['defaultAction'], path: string): void {
  if (errno === undefined) return;
  checkSilentSuccess(errno, action, path);
  if (!takesErrno(action)) fail(path, `errno is only allowed with SCMP_ACT_ERRNO or SCMP_ACT_TRACE, not ${action} (crun refuses it)`);
  if (errno > MAX_ERRNO) fail(path, `errno ${errno} is above ${MAX_ERRNO}`, { limit: MAX_ERRNO, actual: errno });
  // libseccomp refuses ERRNO(4095) (an action's data must be below it), so runc and crun would
  // fail every create of the pod; TRACE(4095) loads.
  if (action === 'SCMP_ACT_ERRNO' && errno > MAX_ERRNO - 1) fail(path, `errno ${errno} is above ${MAX_ERRNO - 1} for SCMP_ACT_ERRNO (libseccomp refuses it)`, { limit: MAX_ERRNO - 1, actual: errno });
}

function checkUnique<T>(values: readonly T[] | undefined, path: string, what: string): void {
  const seen = new Set<T>();
  (values ?? []).forEach((v, i) => {
    if (seen.has(v)) fail(`${path}[${i}]`, `duplicate ${what} ${String(v)}`);
    seen.add(v);
  });
}

interface SyscallTally {
  entries: number;
  rulesCount: number;
  /** verdict + filter of each entry naming it, for strict duplicate detection. */
  rules: Set<string> | undefined;
  /**
   * While every entry naming it either gives the default verdict or has one condition already in
   * normal form, the one verdict of those conditions (null before the first): decide() can then
   * only find no rule, a single rule or an or-set, none of them a problem. False otherwise.
   */
  orSet: Verdict | null | false;
  /**
   * The one verdict of the entries naming it that decide() does not skip (null before the first,
   * false once two differ), and whether one of them is unconditional: with an unconditional rule
   * among them and one verdict, decide() reads the syscall as that verdict, never a conflict.
   */
  verdict: Verdict | null | false;
  unconditional: boolean;
  written: WrittenConditions | undefined;
}

/** Per argument index, the conditions written on it by entries libseccomp loads (noteWritten), and where the last is. */
type WrittenConditions = Map<number, { conditions: ArgConditions; entry: number; arg: number }>;

/**
 * Notes what entry `i` writes on each argument of a syscall. libseccomp 2.5 builds wrong BPF for
 * two or more conditions on one argument with a range comparison and a value above 32 bits among
 * them, as written: a boundary spelled `>= 2^32`, a condition that never or always matches, all
 * reach it unnormalised (checked under runc). Such a syscall is refused in artifacts and
 * baselines and in the runtime-level profiles a merge takes (validateRuntimeSteps), so that
 * whatever spoke accepts is enforced as spoke reads it (decision.ts misbuiltOrSet judges the
 * normalised forms a merge writes).
 */
function noteWritten(written: WrittenConditions, args: readonly SeccompArg[], i: number): void {
  for (let k = 0; k < args.length; k++) {
    const a = args[k]!;
    let w = written.get(a.index);
    if (w === undefined) written.set(a.index, (w = { conditions: new ArgConditions(), entry: 0, arg: 0 }));
    w.conditions.add(a.op, a.value, a.valueTwo);
    // Where, as numbers: the path is written only for a failure.
    w.entry = i;
    w.arg = k;
  }
}

/** Refuses what noteWritten found libseccomp would build wrong for `name`. */
function checkWritten(name: string, written: WrittenConditions): void {
  for (const [index, w] of written) {
    if (w.conditions.misbuilt()) fail(`syscalls[${w.entry}].args[${w.arg}]`, `rules for ${name} compare argument ${index} ${w.conditions.size} times with a range comparison and a value wider than 32 bits, which libseccomp builds wrong filters for`, { syscall: name });
  }
}

/**
 * Refuses a condition of entry `i` that can never match (`arg0 < 0`, `arg0 > 2^64 - 1`; a masked
 * comparison always can, libseccomp masking its datum too), which the merge reads as no rule at all: libseccomp compiles it as written,
 * and it is not inert there. For the socketcall and ipc subcalls of 32-bit x86 libseccomp
 * replaces argument 0's condition with the subcall number, so `socket ERRNO if arg0 < 0` refuses
 * every socketcall(SYS_SOCKET); and a never-matching chain beside another rule of the syscall can
 * send calls that rule allows to the default (both shown under runc and crun). Only entries
 * libseccomp sees are asked: runc skips one whose verdict is the default's.
 */
function checkNeverMatching(args: readonly SeccompArg[], i: number): void {
  for (let k = 0; k < args.length; k++) {
    // Alone, only a bound below 0 or above 2^64 - 1 leaves no value (a masked comparison's datum
    // is masked too): the others are not normalised, one entry per condition of a large artifact.
    const op = args[k]!.op;
    if (op !== 'SCMP_CMP_LT' && op !== 'SCMP_CMP_GT') continue;
    if (normalize([atomOfArg(args[k]!)]) === null) fail(`syscalls[${i}].args[${k}]`, `the condition ${args[k]!.op} ${args[k]!.value} on argument ${args[k]!.index} can never match; libseccomp compiles it anyway, with effects on other calls`);
  }
}

/**
 * How runc reads the entries naming each syscall that needs a decision (needsDecision), as readProfile()
 * would give them (one pass, so the cost follows the profile's size whatever the mix).
 */
function clausesOf(entries: readonly SeccompSyscall[], tallies: ReadonlyMap<string, SyscallTally>): Map<SyscallTally, Clause[]> {
  const clauses = new Map<SyscallTally, Clause[]>();
  for (let entry = 0; entry < entries.length; entry++) {
    const s = entries[entry]!;
    let conjs: readonly Conjunction[] | undefined;
    let verdict: Verdict | undefined;
    for (let name = 0; name < s.names.length; name++) {
      const tally = tallies.get(s.names[name]!)!;
      if (!needsDecision(tally)) continue;
      conjs ??= entryConjunctions(s.args ?? []);
      verdict ??= verdictOf(s.action, s.errnoRet);
      let list = clauses.get(tally);
      if (list === undefined) clauses.set(tally, (list = []));
      for (const conj of conjs) list.push(clauseOf(conj, verdict, entry, name, (s.args ?? []).length > 0));
    }
  }
  return clauses;
}

/** Whether only decide() can tell that a syscall's rules are a safe shape (SyscallTally.orSet, .verdict). */
function needsDecision(tally: SyscallTally): boolean {
  return tally.orSet === false && !(tally.unconditional && tally.verdict !== false);
}

function check(p: SeccompProfile, level: Level): void {
  if (p.defaultAction === 'SCMP_ACT_NOTIFY') fail('defaultAction', 'SCMP_ACT_NOTIFY cannot be the default action');
  const artifact = level >= Level.Artifact;
  const strict = level >= Level.Strict;
  if (artifact) {
    checkErrno(p.defaultErrnoRet, p.defaultAction, 'defaultErrnoRet');
    checkUnique(p.architectures, 'architectures', 'architecture');
    checkUnique(p.flags, 'flags', 'flag');
    // A notify-listener flag: it only changes how a listener receives notifications (KEP-6061 §4
    // keeps listeners out of artifacts, like listenerPath and SCMP_ACT_NOTIFY).
    const listenerFlag = (p.flags ?? []).indexOf('SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV');
    if (listenerFlag >= 0) fail(`flags[${listenerFlag}]`, 'artifacts may not set the notify listener flag SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV');
    if (p.listenerPath !== undefined) fail('listenerPath', 'artifacts may not set a seccomp notify listener');
    if (p.listenerMetadata !== undefined) fail('listenerMetadata', 'artifacts may not set a seccomp notify listener');
  }
  const narrowArchs = (p.architectures ?? []).some((a) => ARCHS_32_BIT.has(a));
  const defaultVerdict = verdictOf(p.defaultAction, p.defaultErrnoRet);
  const tallies = new Map<string, SyscallTally>();
  let totalClauses = 0;
  const entries = p.syscalls ?? [];
  // Consecutive entries mostly share action and errno: one verdict for them.
  let verdict: Verdict | undefined;
  let lastAction: string | undefined;
  let lastErrno: number | undefined;
  for (let i = 0; i < entries.length; i++) {
    const s = entries[i]!;
    if (s.names.length === 0) fail(`syscalls[${i}].names`, 'names no syscall');
    if (artifact && s.names.length > MAX_NAMES_PER_ENTRY) fail(`syscalls[${i}].names`, `more than ${MAX_NAMES_PER_ENTRY} names`, { limit: MAX_NAMES_PER_ENTRY, actual: s.names.length }, 'LIMIT_EXCEEDED');
    if (s.action === 'SCMP_ACT_NOTIFY') {
      if (artifact) fail(`syscalls[${i}].action`, 'artifacts may not use SCMP_ACT_NOTIFY');
      if (p.listenerPath === undefined || p.listenerPath === '') fail(`syscalls[${i}].action`, 'SCMP_ACT_NOTIFY needs listenerPath');
    }
    if (artifact) checkErrno(s.errnoRet, s.action, `syscalls[${i}].errnoRet`);
    const args = s.args ?? [];
    if (args.length > MAX_ARGS_PER_ENTRY) {
      fail(`syscalls[${i}].args`, `more than ${MAX_ARGS_PER_ENTRY} conditions, which crun reads only the first ${MAX_ARGS_PER_ENTRY} of; write the rest in another entry`, { limit: MAX_ARGS_PER_ENTRY, actual: args.length }, 'LIMIT_EXCEEDED');
    }
    for (let k = 0; k < args.length; k++) {
      const a = args[k]!;
      if (a.index > MAX_ARG_INDEX) fail(`syscalls[${i}].args[${k}].index`, `argument index ${a.index} is above ${MAX_ARG_INDEX}`, { limit: MAX_ARG_INDEX, actual: a.index });
      if (artifact && narrowArchs && isWideArg(a)) {
        fail(`syscalls[${i}].args[${k}].value`, 'value wider than 32 bits compares differently on the 32-bit architectures listed');
      }
      if (strict && a.op !== 'SCMP_CMP_MASKED_EQ' && a.valueTwo !== undefined && a.valueTwo !== 0n) {
        fail(`syscalls[${i}].args[${k}].valueTwo`, `valueTwo is unused with ${a.op}`);
      }
    }
    if (!artifact) {
      for (let j = 0; j < s.names.length; j++) {
        const name = s.names[j]!;
        if (name === '') fail(`syscalls[${i}].names[${j}]`, 'empty syscall name');
        if (s.action === 'SCMP_ACT_NOTIFY' && name === 'write') fail(`syscalls[${i}].names[${j}]`, 'SCMP_ACT_NOTIFY on write would deadlock the notify listener');
      }
      continue;
    }
    const clauses = clauseCount(args);
    const ruleKey = strict ? `${verdictKey(verdictOf(s.action, s.errnoRet))}|${args.map((a) => `${a.index}:${a.op}:${a.value}:${a.op === 'SCMP_CMP_MASKED_EQ' ? (a.valueTwo ?? 0n) : 0n}`).sort().join('&')}` : '';
    if (verdict === undefined || s.action !== lastAction || s.errnoRet !== lastErrno) {
      verdict = verdictOf(s.action, s.errnoRet);
      lastAction = s.action;
      lastErrno = s.errnoRet;
    }
    // The verdict this entry adds to an or-set, null when decide() skips it (the default), false
    // when it may be anything else, or when a value of 2^32 or more may make the set one
    // libseccomp misbuilds (decide() judges that: misbuiltOrSet).
    const orSetVerdict = sameVerdict(verdict, defaultVerdict) ? null : args.length === 1 && isNormalArg(args[0]!) && args[0]!.value <= MAX_UINT32 ? verdict : false;
    if (orSetVerdict !== null) checkNeverMatching(args, i);
    const namesHere = strict ? new Set<string>() : undefined;
    for (let j = 0; j < s.names.length; j++) {
      const name = s.names[j]!;
      if (name === '') fail(`syscalls[${i}].names[${j}]`, 'empty syscall name');
      if (s.action === 'SCMP_ACT_NOTIFY' && name === 'write') fail(`syscalls[${i}].names[${j}]`, 'SCMP_ACT_NOTIFY on write would deadlock the notify listener');
      let tally = tallies.get(name);
      if (tally === undefined) {
        // A name with a tally has passed this check already.
        if (!SYSCALL_NAME_RE.test(name)) fail(`syscalls[${i}].names[${j}]`, `${JSON.stringify(name.slice(0, 80))} is not a syscall name`);
        tallies.set(name, (tally = { entries: 0, rulesCount: 0, rules: strict ? new Set() : undefined, orSet: null, verdict: null, unconditional: false, written: undefined }));
      }
      if (namesHere !== undefined) {
        if (namesHere.has(name)) fail(`syscalls[${i}].names[${j}]`, `duplicate syscall name ${name}`);
        namesHere.add(name);
      }
      if (tally.rules !== undefined) {
        if (tally.rules.has(ruleKey)) fail(`syscalls[${i}].names[${j}]`, `duplicate rule for ${name}`);
        tally.rules.add(ruleKey);
      }
      tally.entries++;
      tally.rulesCount += clauses;
      totalClauses += clauses;
      if (tally.entries > MAX_ENTRIES_PER_SYSCALL) fail(`syscalls[${i}].names[${j}]`, `more than ${MAX_ENTRIES_PER_SYSCALL} entries for ${name}`, { limit: MAX_ENTRIES_PER_SYSCALL }, 'LIMIT_EXCEEDED');
      if (tally.rulesCount > MAX_CLAUSES_PER_SYSCALL) fail(`syscalls[${i}].names[${j}]`, `more than ${MAX_CLAUSES_PER_SYSCALL} rules for ${name}`, { limit: MAX_CLAUSES_PER_SYSCALL }, 'LIMIT_EXCEEDED');
      if (totalClauses > MAX_CLAUSES) fail(`syscalls[${i}].names[${j}]`, `more than ${MAX_CLAUSES} rules in total`, { limit: MAX_CLAUSES }, 'LIMIT_EXCEEDED');
      // runc skips an entry whose verdict is the default: libseccomp never sees it.
      if (artifact && args.length > 0 && orSetVerdict !== null) noteWritten((tally.written ??= new Map()), args, i);
      if (orSetVerdict !== null) {
        tally.verdict = tally.verdict === null || (tally.verdict !== false && sameVerdict(tally.verdict, verdict)) ? verdict : false;
        if (args.length === 0) tally.unconditional = true;
      }
      if (orSetVerdict === false) tally.orSet = false;
      else if (orSetVerdict !== null && tally.orSet !== false) tally.orSet = tally.orSet === null || sameVerdict(tally.orSet, orSetVerdict) ? orSetVerdict : false;
    }
  }
  if (!artifact) return;
  for (const [name, tally] of tallies) if (tally.written !== undefined) checkWritten(name, tally.written);
  const clauses = clausesOf(entries, tallies);
  for (const [name, tally] of tallies) {
    const list = clauses.get(tally);
    if (list === undefined) continue;
    const d = decide(list, defaultVerdict);
    if (d.culprit === undefined) continue;
    const path = `syscalls[${d.culprit.entry}].names[${d.culprit.name}]`;
    fail(
      path,
      d.shape === 'conflict'
        ? `rules for ${name} conflict: an unconditional rule and another rule give different results`
        : `rules for ${name} have no defined meaning in runc (not one of the KEP's safe shapes)`,
      { syscall: name },
    );
  }
  checkCapabilityDrop(p);
}

/** capabilityDropIgnored as a refusal (runtime-init.ts). */
function checkCapabilityDrop(p: SeccompProfile): void {
  const path = capabilityDropIgnored(p);
  if (path !== undefined) {
    fail(path, 'ERRNO(EINVAL) on prctl(PR_CAPBSET_DROP) makes runc and crun keep the capability in the bounding set (they read EINVAL as "no such capability")', { syscall: 'prctl' });
  }
}

/** What runc loads, plus NOTIFY never as default or on write (KEP-6061 §4). */
export function validate(p: SeccompProfile): void {
  check(p, Level.Runtime);
}

/** The rules a pulled artifact must satisfy (KEP-6061 §4 ValidateArtifact). */
export function validateArtifact(p: SeccompProfile): void {
  check(p, Level.Artifact);
}

/** Artifact rules plus duplicate syscall names and unused valueTwo (KEP-6061 §4 ValidateStrict). */
export function validateStrict(p: SeccompProfile): void {
  check(p, Level.Strict);
}

/** The node baseline: strict, or only runtime rules when it uses a notify listener (KEP-6061 §4). */
export function validateBaseline(p: SeccompProfile): void {
  if (p.listenerPath !== undefined && p.listenerPath !== '') {
    validate(p);
    validateRuntimeSteps(p);
  } else validateStrict(p);
}
