// Pod Security (rule 8 of binding.ts, docs/binding.md): in alpha, `restricted` rejects seccomp
// type OCI and `baseline` (like `restricted`) allows AppArmor types RuntimeDefault and Localhost
// only. Where the namespace's enforce level rejects the field for a kind, that kind is bound in
// `annotations` mode instead, with a warning: the pod is created, and confined by the shim. A
// level not known here is taken as `restricted`.

import type { ProfileKind } from '../core/constants.js';

/** Pod Security admission's levels, loosest first. */
export const POD_SECURITY_LEVELS: readonly string[] = ['privileged', 'baseline', 'restricted'];

/** The Pod Security admission label that decides whether a pod is rejected. */
export const POD_SECURITY_ENFORCE_LABEL = 'pod-security.kubernetes.io/enforce';

/** A namespace's Pod Security enforce level: its label, else the cluster's default level. */
export function enforceLevel(labels: Readonly<Record<string, string>> | undefined, clusterDefault = 'privileged'): string {
  return labels?.[POD_SECURITY_ENFORCE_LABEL] ?? clusterDefault;
}

/** Rule 8: whether Pod Security at `level` rejects `type: OCI` for `kind` (unknown levels: as restricted). */
export function fieldRejected(kind: ProfileKind, level: string | undefined): boolean {
  if (level === undefined || level === 'privileged') return false;
  if (level === 'baseline') return kind === 'apparmor';
  return true;
}

/** The warning for a kind bound by annotation because the namespace's level rejects its field. */
export function podSecurityWarning(kind: ProfileKind, level: string): string {
  const why = level === 'restricted' || level === 'baseline' ? 'rejects' : 'is not known and is taken as restricted, which rejects';
  return `namespace Pod Security level ${JSON.stringify(level)} ${why} ${kind} type OCI in alpha: bound by annotation (spoke shim) with RuntimeDefault in the field`;
}
