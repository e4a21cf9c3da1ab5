// The three validation levels of KEP-6061 §4, each a superset of the one before:
//   validate          what runc loads, plus the rules the KEP applies everywhere
//   validateArtifact  what a pulled artifact must satisfy (listener, errno, shapes, limits)
//   validateStrict    artifact rules plus duplicate syscall names and unused valueTwo
// The first failure is reported, in document order, as SecurityProfileInvalid with the JSON path.

import { SpokeError } from '../../core/errors.js';
import { MAX_ERRNO, takesErrno, verdictKey, verdictOf } from './actions.js';
import { ARCHS_32_BIT, MAX_ARG_INDEX, MAX_UINT32 } from './conditions.js';
import { decide, readProfile } from './decision.js';
import type { SeccompProfile, SeccompSyscall } from './types.js';

/** KEP-6061 §4 artifact limits (MaxArtifact*). */
export const MAX_ENTRIES_PER_SYSCALL = 128;
export const MAX_CLAUSES_PER_SYSCALL = 256;
export const MAX_NAMES_PER_ENTRY = 1024;
export const MAX_CLAUSES = 16384;

/** Kernel syscall names: lowercase, digits, underscores (`_llseek`, `arm_fadvise64_64`). */
const SYSCALL_NAME_RE = /^[a-z_][a-z0-9_]{0,63}$/;

enum Level {
  Runtime,
  Artifact,
  Strict,
}

function fail(path: string, message: string, context: Record<string, unknown> = {}): never {
  throw new SpokeError('SecurityProfileInvalid', `seccomp profile: ${path}: ${message}`, { path, ...context });
}

/** runc: alternatives for repeated indices, one rule otherwise. */
function clauseCount(s: SeccompSyscall): number {
  const args = s.args ?? [];
  return new Set(args.map((a) => a.index)).size === args.length ? 1 : args.length;
}

function checkErrno(errno: number | undefined, action: SeccompProfile['defaultAction'], path: string): void {
  if (errno === undefined) return;
  if (!takesErrno(action)) fail(path, `errno is only allowed with SCMP_ACT_ERRNO or SCMP_ACT_TRACE, not ${action} (crun refuses it)`);
  if (errno > MAX_ERRNO) fail(path, `errno ${errno} is above ${MAX_ERRNO}`, { limit: MAX_ERRNO, actual: errno });
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
  clauses: number;
  /** verdict + filter of each entry naming it, for strict duplicate detection. */
  rules: Set<string>;
}

function check(p: SeccompProfile, level: Level): void {
  if (p.defaultAction === 'SCMP_ACT_NOTIFY') fail('defaultAction', 'SCMP_ACT_NOTIFY cannot be the default action');
  const artifact = level >= Level.Artifact;
  const strict = level >= Level.Strict;
  if (artifact) {
    checkErrno(p.defaultErrnoRet, p.defaultAction, 'defaultErrnoRet');
    checkUnique(p.architectures, 'architectures', 'architecture');
    checkUnique(p.flags, 'flags', 'flag');
    if (p.listenerPath !== undefined) fail('listenerPath', 'artifacts may not set a seccomp notify listener');
    if (p.listenerMetadata !== undefined) fail('listenerMetadata', 'artifacts may not set a seccomp notify listener');
  }
  const narrowArchs = (p.architectures ?? []).some((a) => ARCHS_32_BIT.has(a));
  const tallies = new Map<string, SyscallTally>();
  let totalClauses = 0;
  const entries = p.syscalls ?? [];
  for (let i = 0; i < entries.length; i++) {
    const s = entries[i]!;
    const at = `syscalls[${i}]`;
    if (s.names.length === 0) fail(`${at}.names`, 'names no syscall');
    if (artifact && s.names.length > MAX_NAMES_PER_ENTRY) fail(`${at}.names`, `more than ${MAX_NAMES_PER_ENTRY} names`, { limit: MAX_NAMES_PER_ENTRY, actual: s.names.length });
    if (s.action === 'SCMP_ACT_NOTIFY') {
      if (artifact) fail(`${at}.action`, 'artifacts may not use SCMP_ACT_NOTIFY');
      if (p.listenerPath === undefined || p.listenerPath === '') fail(`${at}.action`, 'SCMP_ACT_NOTIFY needs listenerPath');
    }
    if (artifact) checkErrno(s.errnoRet, s.action, `${at}.errnoRet`);
    const args = s.args ?? [];
    args.forEach((a, k) => {
      if (a.index > MAX_ARG_INDEX) fail(`${at}.args[${k}].index`, `argument index ${a.index} is above ${MAX_ARG_INDEX}`, { limit: MAX_ARG_INDEX, actual: a.index });
      if (artifact && narrowArchs && (a.value > MAX_UINT32 || (a.op === 'SCMP_CMP_MASKED_EQ' && (a.valueTwo ?? 0n) > MAX_UINT32))) {
        fail(`${at}.args[${k}].value`, 'value wider than 32 bits compares differently on the 32-bit architectures listed');
      }
      if (strict && a.op !== 'SCMP_CMP_MASKED_EQ' && a.valueTwo !== undefined && a.valueTwo !== 0n) {
        fail(`${at}.args[${k}].valueTwo`, `valueTwo is unused with ${a.op}`);
      }
    });
    const clauses = clauseCount(s);
    const ruleKey = strict ? `${verdictKey(verdictOf(s.action, s.errnoRet))}|${args.map((a) => `${a.index}:${a.op}:${a.value}:${a.op === 'SCMP_CMP_MASKED_EQ' ? (a.valueTwo ?? 0n) : 0n}`).sort().join('&')}` : '';
    const namesHere = new Set<string>();
    for (let j = 0; j < s.names.length; j++) {
      const name = s.names[j]!;
      const path = `${at}.names[${j}]`;
      if (name === '') fail(path, 'empty syscall name');
      if (s.action === 'SCMP_ACT_NOTIFY' && name === 'write') fail(path, 'SCMP_ACT_NOTIFY on write would deadlock the notify listener');
      if (artifact && !SYSCALL_NAME_RE.test(name)) fail(path, `${JSON.stringify(name.slice(0, 80))} is not a syscall name`);
      if (!artifact) continue;
      if (strict && namesHere.has(name)) fail(path, `duplicate syscall name ${name}`);
      namesHere.add(name);
      let tally = tallies.get(name);
      if (tally === undefined) tallies.set(name, (tally = { entries: 0, clauses: 0, rules: new Set() }));
      if (strict) {
        if (tally.rules.has(ruleKey)) fail(path, `duplicate rule for ${name}`);
        tally.rules.add(ruleKey);
      }
      tally.entries++;
      tally.clauses += clauses;
      totalClauses += clauses;
      if (tally.entries > MAX_ENTRIES_PER_SYSCALL) fail(path, `more than ${MAX_ENTRIES_PER_SYSCALL} entries for ${name}`, { limit: MAX_ENTRIES_PER_SYSCALL });
      if (tally.clauses > MAX_CLAUSES_PER_SYSCALL) fail(path, `more than ${MAX_CLAUSES_PER_SYSCALL} rules for ${name}`, { limit: MAX_CLAUSES_PER_SYSCALL });
      if (totalClauses > MAX_CLAUSES) fail(path, `more than ${MAX_CLAUSES} rules in total`, { limit: MAX_CLAUSES });
    }
  }
  if (!artifact) return;
  const read = readProfile(p);
  for (const [name, clauses] of read.clauses) {
    const d = decide(clauses, read.defaultVerdict);
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
  if (p.listenerPath !== undefined && p.listenerPath !== '') validate(p);
  else validateStrict(p);
}
