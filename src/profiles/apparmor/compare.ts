// What an AppArmor profile update changes, by path and permission (docs/diff.md). The merge
// already answers the question: OLD ∩ NEW, with OLD in the baseline's place, constrains exactly
// what NEW grants beyond OLD (the loosenings), and NEW ∩ OLD exactly what OLD granted that NEW no
// longer does (the tightenings). Globs are compared with the merge's own apparmor_parser semantics.

import { intersectAppArmor } from './intersect.js';
import type { AppArmorConstraint, AppArmorProfile, NetworkPermission, PathAccess, PathList } from './types.js';

/** One permission that differs: what OLD granted next to what NEW grants. */
export type AppArmorChange =
  | { kind: 'capability'; capability: string; old: 'denied' | 'allowed'; new: 'denied' | 'allowed' }
  | { kind: 'network'; permission: NetworkPermission; old: boolean; new: boolean }
  | { kind: 'path'; list: PathList; path: string; old: PathAccess; new: PathAccess };

export interface AppArmorComparison {
  loosened: AppArmorChange[];
  tightened: AppArmorChange[];
}

/** A constraint of `granter ∩ other` as a change; `grantedByNew` says which side granted more. */
function change(c: AppArmorConstraint, grantedByNew: boolean): AppArmorChange {
  const pick = <T>(granted: T, kept: T) => (grantedByNew ? { old: kept, new: granted } : { old: granted, new: kept });
  switch (c.kind) {
    case 'capability':
      return { kind: 'capability', capability: c.capability, ...pick<'denied' | 'allowed'>('allowed', 'denied') };
    case 'network':
      return { kind: 'network', permission: c.permission, ...pick(true, false) };
    case 'path':
      return { kind: 'path', list: c.list, path: c.path, ...pick(c.artifact, c.effective) };
  }
}

export function compareAppArmor(older: AppArmorProfile, newer: AppArmorProfile): AppArmorComparison {
  return {
    loosened: intersectAppArmor(older, newer).constrained.map((c) => change(c, true)),
    tightened: intersectAppArmor(newer, older).constrained.map((c) => change(c, false)),
  };
}

export function formatAppArmorChange(c: AppArmorChange): string {
  switch (c.kind) {
    case 'capability':
      return `capability ${c.capability}: ${c.old} → ${c.new}`;
    case 'network':
      return `network ${c.permission}: ${c.old} → ${c.new}`;
    case 'path':
      return `${c.list} ${c.path}: ${c.old} → ${c.new}`;
  }
}
