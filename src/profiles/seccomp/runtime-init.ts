// Calls an OCI runtime makes under the container's own filter before it starts the container's
// process, and whose failure it does not take for a failure. runc and crun load the filter before
// they drop privileges when no_new_privs is off (the Kubernetes default without
// allowPrivilegeEscalation: false), so a verdict that only refuses such a call can make a security
// step of the runtime silently do nothing (docs/security-model.md#only-tighter). Checked on each
// pulled artifact, pod base and baseline. Pure.

import { atomMatches, atomOfArg } from './conditions.js';
import type { SeccompArg, SeccompProfile, SeccompSyscall } from './types.js';

const PR_CAPBSET_DROP = 24n;
const EINVAL = 22;

/** The errno a runtime passes on for an errnoRet: libseccomp keeps its low 16 bits (actions.ts verdictOf). */
function errnoOf(errnoRet: number | undefined): number {
  return (errnoRet ?? 1) & 0xffff;
}

/**
 * Whether the entry's conditions on prctl's option (argument 0) let PR_CAPBSET_DROP through.
 * runc reads repeated indices as alternatives, so any one of them matching is enough; conditions
 * on the other arguments are taken to match: the kernel ignores arguments 2–5 of this option, so
 * their registers hold whatever the runtime's libc left there.
 */
function optionMayBeCapbsetDrop(args: readonly SeccompArg[] | undefined): boolean {
  const onOption = (args ?? []).filter((a) => a.index === 0);
  return onOption.length === 0 || onOption.some((a) => atomMatches(atomOfArg(a), PR_CAPBSET_DROP));
}

/** Whether `s` decides every prctl(PR_CAPBSET_DROP, …) call, whatever its other arguments. */
function takesEveryCapbsetDrop(s: SeccompSyscall): boolean {
  return (s.args ?? []).every((a) => a.index === 0) && optionMayBeCapbsetDrop(s.args);
}

/**
 * Where `p` may answer prctl(PR_CAPBSET_DROP, cap) with EINVAL: the runtime's capability library
 * reads EINVAL as "this kernel has no such capability" and keeps it in the bounding set, so a
 * process that gains root (uid 0, or a setuid binary) gets every capability not dropped. Checked
 * under runc 1.1.5 and crun 1.8.1; EPERM or ENOSYS fails the create instead. Judged
 * conservatively, without the evaluator: an EINVAL rule on prctl whose option condition admits
 * PR_CAPBSET_DROP, or an EINVAL default that no rule on the option alone takes from such calls.
 * Returns the JSON path of the verdict at fault, or undefined.
 */
export function capabilityDropIgnored(p: SeccompProfile): string | undefined {
  const entries = p.syscalls ?? [];
  let covered = false;
  for (let i = 0; i < entries.length; i++) {
    const s = entries[i]!;
    if (!s.names.includes('prctl')) continue;
    if (s.action === 'SCMP_ACT_ERRNO' && errnoOf(s.errnoRet) === EINVAL && optionMayBeCapbsetDrop(s.args)) return `syscalls[${i}].errnoRet`;
    covered ||= takesEveryCapbsetDrop(s);
  }
  if (p.defaultAction === 'SCMP_ACT_ERRNO' && errnoOf(p.defaultErrnoRet) === EINVAL && !covered) return 'defaultErrnoRet';
  return undefined;
}
