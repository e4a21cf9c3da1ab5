// Status conditions (metav1.Condition), shared by the ProfileBinding and ProfileRecording
// status writers: lastTransitionTime moves only when a condition's status does, so a
// recomputed status equals the stored one (sameStatus) and is not written again.

import type { Condition } from './types.js';

/** A condition, keeping lastTransitionTime when the status did not change. */
export function condition(previous: readonly Condition[] | undefined, type: string, status: Condition['status'], reason: string, message: string, now: string, generation?: number): Condition {
  const prev = previous?.find((c) => c.type === type);
  const c: Condition = { type, status, reason, message: message.slice(0, 1024), lastTransitionTime: prev && prev.status === status ? prev.lastTransitionTime : now };
  if (generation !== undefined) c.observedGeneration = generation;
  return c;
}

export function withCondition(list: readonly Condition[] | undefined, c: Condition): Condition[] {
  return [...(list ?? []).filter((x) => x.type !== c.type), c].sort((a, b) => (a.type < b.type ? -1 : a.type > b.type ? 1 : 0));
}

/**
 * Status equality, whatever order the members come in: the API server serves a custom resource's
 * members sorted by name, not in the order they were written.
 */
export function sameStatus<T extends object>(a: T | undefined, b: T | undefined): boolean {
  return JSON.stringify(sortedMembers(a ?? {})) === JSON.stringify(sortedMembers(b ?? {}));
}

function sortedMembers(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortedMembers);
  if (v === null || typeof v !== 'object') return v;
  return Object.fromEntries(
    Object.entries(v)
      .sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0))
      .map(([k, x]) => [k, sortedMembers(x)]),
  );
}
