// Audit mode (docs/audit-mode.md): the effective profile of an artifact admitted by a policy
// rule with `mode: audit`. The node baseline and the pod's base are enforced as usual; where only
// the artifact would deny a call, the call is logged (SCMP_ACT_LOG) and let through.
//
// Why relaxing the artifact alone is exact: per call, let T be the stricter of baseline and base
// and A the artifact's verdict; intersect gives the stricter of T and A (on equal actions the
// earlier input's errno). With A' = LOG wherever A is stricter than LOG (else A' = A):
//   - A no stricter than LOG: A' = A, the enforcing result.
//   - A stricter than LOG and than T: the result is the stricter of T and LOG, i.e. LOG when T
//     lets the call through (ALLOW or LOG), and T itself otherwise: the call is logged exactly
//     where only the artifact would deny it.
//   - A stricter than LOG, T at least as strict as A: T is stricter than LOG, so the result is
//     T, as when enforcing.
// That is the reading per call; where the merged regions have no form runc loads exactly, the
// merge writes the most restrictive verdict involved, as in enforce mode (KEP §4). Either way the
// result is never looser than baseline ∩ base. Architectures and flags are the artifact's,
// unchanged: a call on an architecture the artifact leaves out is killed by the filter's
// bad-arch action, which has no logging form.

import { actionRank } from './actions.js';
import { canonicalize, intersect } from './intersect.js';
import type { MergeResult, SeccompAction, SeccompProfile } from './types.js';

const LOG_RANK = actionRank('SCMP_ACT_LOG');

/** LOG for any action stricter than LOG (the KEP's order, actions.ts), else the action itself. */
function relaxed(action: SeccompAction): SeccompAction {
  return actionRank(action) < LOG_RANK ? 'SCMP_ACT_LOG' : action;
}

/**
 * The artifact with every verdict stricter than SCMP_ACT_LOG replaced by SCMP_ACT_LOG (errnos
 * dropped with it). Rewritten on the canonical form, where each syscall is one unconditional rule
 * or one of the safe shapes: in the text as written, an entry whose relaxed verdict equals the
 * relaxed default would be skipped by the reader and could uncover a looser entry it was
 * conflicting with (write ERRNO + write ALLOW under default KILL must log, not allow).
 */
export function relaxToLog(written: SeccompProfile): SeccompProfile {
  const artifact = canonicalize(written);
  const relaxedProfile: SeccompProfile = { ...artifact, defaultAction: relaxed(artifact.defaultAction) };
  if (relaxedProfile.defaultAction !== artifact.defaultAction) delete relaxedProfile.defaultErrnoRet;
  if (artifact.syscalls !== undefined) {
    relaxedProfile.syscalls = artifact.syscalls.map((s) => {
      const action = relaxed(s.action);
      if (action === s.action) return s;
      const entry = { ...s, action };
      delete entry.errnoRet;
      return entry;
    });
  }
  return relaxedProfile;
}

/**
 * Effective profile in audit mode: baseline ∩ base ∩ relaxToLog(artifact) (see the header),
 * with the constraint log of the enforcing merge's form (against the relaxed artifact).
 */
export function auditIntersect(baseline: SeccompProfile, base: SeccompProfile | undefined, artifact: SeccompProfile): MergeResult {
  return intersect(baseline, base, relaxToLog(artifact));
}
