// Calls an OCI runtime makes under the container's own filter before it starts the container's
// process, and whose failure it does not take for a failure. runc and crun load the filter before
// they drop privileges when no_new_privs is off (the Kubernetes default without
// allowPrivilegeEscalation: false), so a verdict that only refuses such a call can make a security
// step of the runtime silently do nothing (docs/security-model.md#only-tighter). Checked on each
// pulled artifact, pod base and baseline. Pure.

import { decisionFor, decisionVerdict, readProfile } from './decision.js';
import type { SeccompProfile } from './types.js';

const PR_CAPBSET_DROP = 24n;
const EINVAL = 22;
/** Capability numbers a runtime may drop from the bounding set (cap_last_cap is below 64). */
const CAPABILITIES = 64n;

/**
 * Where `p` answers prctl(PR_CAPBSET_DROP, cap) with EINVAL for some capability: the runtime's
 * capability library reads EINVAL as "this kernel has no such capability" and keeps it in the
 * bounding set, so a process that gains root (uid 0, or a setuid binary) gets every capability
 * not dropped. Checked under runc 1.1.5 and crun 1.8.1: EPERM or ENOSYS fails the create instead.
 * Returns the JSON path of the verdict at fault, or undefined.
 */
export function capabilityDropIgnored(p: SeccompProfile): string | undefined {
  // Only the entries naming prctl decide it: read apart, so a large profile costs a scan of names.
  const entries: number[] = [];
  const all = p.syscalls ?? [];
  for (let i = 0; i < all.length; i++) if (all[i]!.names.includes('prctl')) entries.push(i);
  const prctlOnly: SeccompProfile = {
    defaultAction: p.defaultAction,
    ...(p.defaultErrnoRet === undefined ? {} : { defaultErrnoRet: p.defaultErrnoRet }),
    syscalls: entries.map((i) => ({ ...all[i]!, names: ['prctl'] })),
  };
  const decision = decisionFor(readProfile(prctlOnly), 'prctl');
  for (let cap = 0n; cap < CAPABILITIES; cap++) {
    const v = decisionVerdict(decision, [PR_CAPBSET_DROP, cap, 0n, 0n, 0n, 0n]);
    if (v.action !== 'SCMP_ACT_ERRNO' || v.errno !== EINVAL) continue;
    // The first entry that can give that verdict, or the default.
    const at = entries.find((i) => all[i]!.action === 'SCMP_ACT_ERRNO' && all[i]!.errnoRet === EINVAL);
    return at === undefined ? 'defaultErrnoRet' : `syscalls[${at}].errnoRet`;
  }
  return undefined;
}
