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

/** Status equality that ignores lastTransitionTime-only differences from a recomputation. */
export function sameStatus<T extends object>(a: T | undefined, b: T | undefined): boolean {
  return JSON.stringify(a ?? {}) === JSON.stringify(b ?? {});
}
