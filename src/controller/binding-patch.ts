// The ProfileBinding webhook's answer as an RFC 6902 patch (docs/binding.md): the planned
// securityContext fields per container slot, annotation changes and the recording label, and
// the warnings bounded for the API server.

import { escapePointer, type JsonPatchOp } from './jsonpatch.js';
import type { Slot } from './binding-match.js';
import type { Pod, SeccompProfile } from './types.js';

export const MAX_WARNINGS = 32;
export const MAX_WARNING_LENGTH = 256;

/** What mutatePod decided to change. */
export interface PodChanges {
  /** Per slot: the new values of securityContext fields. */
  fields: Map<Slot, Partial<Record<'seccompProfile' | 'appArmorProfile', SeccompProfile>>>;
  annotationSets: Map<string, string>;
  annotationRemovals: Set<string>;
  /** The pod label the controller's pod cache selects on, when the pod is marked for recording. */
  label?: [string, string];
}

export function truncate(s: string, n: number): string {
  return s.length <= n ? s : s.slice(0, n - 1) + '…';
}

/** The patch for `changes` against `pod`: add where absent, replace where present; keys sorted. */
export function buildPatch(pod: Pod, changes: PodChanges): JsonPatchOp[] {
  const { fields: fieldChanges, annotationSets, annotationRemovals } = changes;
  const patch: JsonPatchOp[] = [];
  for (const [slot, slotChanges] of fieldChanges) {
    const base = `/spec/${slot.list}/${slot.index}/securityContext`;
    const sc = slot.container.securityContext;
    if (sc === undefined || sc === null) {
      patch.push({ op: 'add', path: base, value: slotChanges });
      continue;
    }
    for (const [field, value] of Object.entries(slotChanges)) {
      patch.push({ op: sc[field] === undefined ? 'add' : 'replace', path: `${base}/${field}`, value });
    }
  }
  const existing = pod.metadata?.annotations;
  if (annotationSets.size > 0 || annotationRemovals.size > 0) {
    if (existing === undefined || existing === null) {
      const value = Object.fromEntries([...annotationSets].sort());
      patch.push(pod.metadata ? { op: 'add', path: '/metadata/annotations', value } : { op: 'add', path: '/metadata', value: { annotations: value } });
    } else {
      for (const key of [...annotationRemovals].sort()) patch.push({ op: 'remove', path: `/metadata/annotations/${escapePointer(key)}` });
      for (const [key, value] of [...annotationSets].sort()) {
        patch.push({ op: existing[key] === undefined ? 'add' : 'replace', path: `/metadata/annotations/${escapePointer(key)}`, value });
      }
    }
  }
  if (changes.label) {
    const [key, value] = changes.label;
    const labels = pod.metadata?.labels;
    if (labels === undefined || labels === null) patch.push({ op: 'add', path: '/metadata/labels', value: { [key]: value } });
    else if (labels[key] !== value) patch.push({ op: labels[key] === undefined ? 'add' : 'replace', path: `/metadata/labels/${escapePointer(key)}`, value });
  }
  return patch;
}

/** At most MAX_WARNINGS warnings of at most MAX_WARNING_LENGTH characters; the last one counts the rest. */
export function boundWarnings(warnings: readonly string[]): string[] {
  const boundedWarnings = warnings.slice(0, MAX_WARNINGS).map((w) => truncate(w, MAX_WARNING_LENGTH));
  if (warnings.length > MAX_WARNINGS) boundedWarnings[MAX_WARNINGS - 1] = `${warnings.length - MAX_WARNINGS + 1} more warnings not shown`;
  return boundedWarnings;
}
