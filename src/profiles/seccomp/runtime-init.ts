// Calls an OCI runtime makes under the container's own filter before it starts the container's
// process, and whose failure it does not take for a failure. runc and crun load the filter before
// they drop privileges when no_new_privs is off (the Kubernetes default without
// allowPrivilegeEscalation: false), so a verdict that only refuses such a call can make a security
// step of the runtime silently do nothing (docs/security-model.md#only-tighter). Checked on each
// pulled artifact, pod base and baseline. Pure.

import { verdictOf } from './actions.js';
import { atomMatches, type Conjunction } from './conditions.js';
import { decisionFor, decisionVerdict, entryConjunctions, readProfile } from './decision.js';
import type { SeccompAction, SeccompProfile, SeccompSyscall } from './types.js';

const PR_CAPBSET_DROP = 24n;
const EINVAL = 22;
/** Capability numbers a runtime may drop from the bounding set (cap_last_cap is below 64). */
const CAPABILITIES = 64n;

/**
 * Whether one alternative of a rule (a conjunction, entryConjunctions) may match
 * prctl(PR_CAPBSET_DROP, …): its conditions on the option (argument 0) all admit it. Conditions on
 * the other arguments are taken to match: the kernel ignores arguments 2–5 of this option, so
 * their registers hold whatever the runtime's libc left there.
 */
function mayMatch(alternative: Conjunction): boolean {
  return alternative.every((atom) => atom.index !== 0 || atomMatches(atom, PR_CAPBSET_DROP));
}

/** Whether an alternative takes every prctl(PR_CAPBSET_DROP, …) call, whatever its other arguments. */
function takesEvery(alternative: Conjunction): boolean {
  return alternative.every((atom) => atom.index === 0 && atomMatches(atom, PR_CAPBSET_DROP));
}

/** Whether an action and errnoRet answer EINVAL, read as libseccomp reads an errno (verdictOf: its low 16 bits). */
function answersEinval(action: SeccompAction, errnoRet: number | undefined): boolean {
  const v = verdictOf(action, errnoRet);
  return v.action === 'SCMP_ACT_ERRNO' && v.errno === EINVAL;
}

const isEinval = (s: SeccompSyscall): boolean => answersEinval(s.action, s.errnoRet);

/**
 * Where `p` may answer prctl(PR_CAPBSET_DROP, cap) with EINVAL: the runtime's capability library
 * reads EINVAL as "this kernel has no such capability" and keeps it in the bounding set, so a
 * process that gains root (uid 0, or a setuid binary) gets every capability not dropped. Checked
 * under runc 1.1.5 and crun 1.8.1; EPERM or ENOSYS fails the create instead. Judged twice, and
 * either finding refuses: rule by rule, as runc reads a rule (repeated argument indices make each
 * condition a rule of its own), conservatively (an EINVAL rule that may match, an EINVAL default
 * that no rule takes such calls from whole); and as the merge and runc read the whole (a shape
 * with no defined meaning by its strictest verdict), for each capability with arguments 2–5 zero.
 * Returns the JSON path of the verdict at fault, or undefined.
 */
export function capabilityDropIgnored(p: SeccompProfile): string | undefined {
  const all = p.syscalls ?? [];
  const defaultEinval = answersEinval(p.defaultAction, p.defaultErrnoRet);
  const prctl: number[] = [];
  let einvalRule = false;
  let covered = false;
  for (let i = 0; i < all.length; i++) {
    const s = all[i]!;
    if (!s.names.includes('prctl')) continue;
    prctl.push(i);
    const einval = isEinval(s);
    einvalRule ||= einval;
    // Its conditions matter only to an EINVAL rule, or to a rule that may take the calls from an EINVAL default.
    if (!einval && (!defaultEinval || covered)) continue;
    const alternatives = entryConjunctions(s.args ?? []);
    if (einval && alternatives.some(mayMatch)) return `syscalls[${i}].errnoRet`;
    covered ||= alternatives.some(takesEvery);
  }
  if (defaultEinval && !covered) return 'defaultErrnoRet';
  // The whole reading gives each call the verdict of a rule naming prctl or the default
  // (decision.ts): with none of them EINVAL, no capability is answered EINVAL. The common case,
  // and the cheap one: a pulled artifact is judged on the shim's only thread.
  if (!einvalRule && !defaultEinval) return undefined;
  // Only the entries naming prctl decide it: read apart, so a large profile costs a scan of names.
  const prctlOnly: SeccompProfile = {
    defaultAction: p.defaultAction,
    ...(p.defaultErrnoRet === undefined ? {} : { defaultErrnoRet: p.defaultErrnoRet }),
    syscalls: prctl.map((i) => ({ ...all[i]!, names: ['prctl'] })),
  };
  const decision = decisionFor(readProfile(prctlOnly), 'prctl');
  for (let cap = 0n; cap < CAPABILITIES; cap++) {
    const v = decisionVerdict(decision, [PR_CAPBSET_DROP, cap, 0n, 0n, 0n, 0n]);
    if (v.action !== 'SCMP_ACT_ERRNO' || v.errno !== EINVAL) continue;
    const at = prctl.find((i) => isEinval(all[i]!));
    return at === undefined ? 'defaultErrnoRet' : `syscalls[${at}].errnoRet`;
  }
  return undefined;
}
