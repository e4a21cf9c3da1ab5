// Marking pods for recording (docs/recording.md), the ProfileBinding webhook's second job, done
// only when the caller passes the ProfileRecordings of the namespace (MutateOptions.recordings):
//  R1. A recording selects the pod when it is valid, not finalized (no non-empty
//      `recording.spoke.dev/finalize` annotation: a finalized recording is a snapshot), its
//      podSelector matches and, when it lists `containers`, one of them is in the pod. Invalid
//      recordings select nothing (recording is not a confinement: missing one never loosens).
//  R2. Two recordings select the pod → denied, naming both. A pod already annotated
//      `recording.spoke.dev/name` with another recording is denied the same way.
//  R3. The recorded containers: those the recording selects (all containers and init
//      containers, or its `containers`) that are not privileged (warning: a privileged
//      container runs unconfined and cannot be recorded) and whose seccomp profile is unset,
//      RuntimeDefault or given by their binding (already, as on reinvocation, or now: Unconfined
//      under an override binding); warning otherwise: the node keeps an explicit profile, so
//      they would not be recorded. None left → nothing is marked.
//  R4. The pod gets `recording.spoke.dev/name: <recording>`, the recorded containers
//      `recording.spoke.dev/containers: a,b` (sorted; always listed, also when every container is
//      recorded, so that the proof never covers a container added later, such as an ephemeral
//      debug container the webhook never saw), and `recording.spoke.dev/proof`,
//      the HMAC the shim verifies (src/core/recording-proof.ts: namespace, pod name or
//      generateName, recording, containers, expiry), plus the label `recording.spoke.dev/name`
//      the controller's pod cache selects on. Without the recording key nothing is marked
//      (warning). A still-valid proof for the same marking is kept (reinvocation).
//  R5. Recorded containers are bound as usual (warning naming both): the node runs them under
//      the logging profile while the marking's proof is valid (`spoke shim --recording`), and
//      under their binding once it has expired, or on a node that does not record. So a
//      recording loosens a container for its proof's lifetime only, never for the pod's.
//  R6. Only the controller marks pods: every `recording.spoke.dev/*` annotation it does not set
//      is removed, with a warning, whether or not recordings are considered (a pod author must
//      not carry a marking, or a proof copied from another pod, past the webhook).
//  R7. A Windows pod (binding-match.ts isWindowsPod) is never marked, whatever selects it, and
//      never denied for two recordings (warning instead): the API server refuses seccomp
//      profiles on it, so it runs under none and the logging profile could not reach it
//      (docs/recording.md). R6 still holds for it.


import { signRecordingProof, verifyRecordingProof } from '../core/recording-proof.js';
import { effectiveProfile, describeSlot, isWindowsPod, type Slot } from './binding-match.js';
import {
  FINALIZE_ANNOTATION,
  POD_RECORDING_ANNOTATION,
  POD_RECORDING_CONTAINERS_ANNOTATION,
  POD_RECORDING_PREFIX,
  POD_RECORDING_PROOF_ANNOTATION,
  RECORDING_LABEL,
  recordingLabelValue,
  validateRecording,
  type CompiledRecording,
} from './recording.js';
import { selectorMatches } from './selector.js';
import type { Pod } from './types.js';

export interface RecordingProofOptions {
  /** The cluster's recording key (controller --recording-key), shared with the nodes. */
  key: Buffer;
  /** The admission request's namespace (the pod's own may be empty at admission). */
  namespace: string;
  /** The admission request's name, when the API server already knows it. */
  name?: string;
  /** Unix seconds. */
  now: number;
  /** How long the node may start the pod's containers under the logging profile. */
  ttlSeconds: number;
}

export interface RecordingPlan {
  name: string;
  recorded: Set<Slot>;
  annotations: Map<string, string>;
  /** The pod label the controller's pod cache selects on, when the pod is marked. */
  label?: [string, string];
  denials: string[];
  warnings: string[];
}

function finalized(raw: unknown): boolean {
  const v = (raw as { metadata?: { annotations?: Record<string, unknown> } })?.metadata?.annotations?.[FINALIZE_ANNOTATION];
  return typeof v === 'string' && v !== '';
}

/** Rules R1–R4 and R7 (header): which recording marks the pod and which containers it records. */
export function planRecording(
  pod: Pod,
  slots: Slot[],
  rawRecordings: readonly unknown[],
  proof: RecordingProofOptions | undefined,
  boundByItsBinding: (slot: Slot) => boolean,
): RecordingPlan | undefined {
  const labels = pod.metadata?.labels;
  const selecting: CompiledRecording[] = [];
  for (const raw of rawRecordings) {
    if (finalized(raw)) continue;
    const v = validateRecording(raw);
    if (!v.ok) continue;
    const r = v.recording;
    if (!selectorMatches(r.podSelector, labels)) continue;
    if (r.containers && !slots.some((s) => r.containers!.has(s.container.name))) continue;
    selecting.push(r);
  }
  if (selecting.length === 0) return undefined;
  selecting.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const rec = selecting[0] as CompiledRecording;
  const plan: RecordingPlan = { name: rec.name, recorded: new Set(), annotations: new Map(), denials: [], warnings: [] };
  if (isWindowsPod(pod)) {
    const names = selecting.map((r) => r.name);
    plan.warnings.push(`the pod is a Windows pod (spec.os.name: windows), which runs no seccomp profile: ProfileRecording${names.length > 1 ? 's' : ''} ${names.join(', ')} ${names.length > 1 ? 'do' : 'does'} not record it`);
    return plan;
  }
  if (selecting.length > 1) {
    plan.denials.push(`the pod is selected by ProfileRecordings ${selecting.map((r) => r.name).join(' and ')}; a pod can be recorded for one recording only: narrow their podSelectors`);
    return plan;
  }
  const existing = pod.metadata?.annotations?.[POD_RECORDING_ANNOTATION];
  if (existing !== undefined && existing !== '' && existing !== rec.name) {
    plan.denials.push(`the pod is annotated ${POD_RECORDING_ANNOTATION}: ${JSON.stringify(existing.slice(0, 253))} but selected by ProfileRecording ${rec.name}; remove the annotation or narrow the recording's podSelector`);
    return plan;
  }
  for (const slot of slots) {
    const c = slot.container;
    if (rec.containers && !rec.containers.has(c.name)) continue;
    const what = describeSlot(slot);
    if (c.securityContext?.privileged === true) {
      plan.warnings.push(`${what} is privileged and runs unconfined: ProfileRecording ${rec.name} cannot record it`);
      continue;
    }
    const current = effectiveProfile('seccomp', pod, c);
    if (current.type !== 'unset' && current.type !== 'RuntimeDefault' && !boundByItsBinding(slot)) {
      plan.warnings.push(`${what} keeps its seccomp profile ${current.type === 'annotation' ? 'OCI' : current.type} (${current.where}); ProfileRecording ${rec.name} does not record it`);
      continue;
    }
    plan.recorded.add(slot);
  }
  if (plan.recorded.size === 0) return plan;
  const name = proof?.name || pod.metadata?.name;
  const generateName = pod.metadata?.generateName;
  if (proof === undefined || (!name && !generateName)) {
    plan.warnings.push(`the pod is selected by ProfileRecording ${rec.name} but not marked: ${proof === undefined ? 'the controller has no recording key (--recording-key)' : 'it has neither name nor generateName'}`);
    plan.recorded.clear();
    return plan;
  }
  const containers = [...new Set([...plan.recorded].map((s) => s.container.name))].sort();
  plan.annotations.set(POD_RECORDING_ANNOTATION, rec.name);
  plan.annotations.set(POD_RECORDING_CONTAINERS_ANNOTATION, containers.join(','));
  const subject = { namespace: proof.namespace, pod: name ? { name } : { generateName: generateName as string }, recording: rec.name, containers };
  // Reinvocation: our own still-valid proof for this very marking stays, so the patch is empty.
  const ours = pod.metadata?.annotations?.[POD_RECORDING_PROOF_ANNOTATION];
  const kept = ours !== undefined && name && verifyRecordingProof(proof.key, ours, { ...subject, podName: name }, proof.now).ok;
  plan.annotations.set(POD_RECORDING_PROOF_ANNOTATION, kept ? ours : signRecordingProof(proof.key, subject, proof.now + proof.ttlSeconds));
  plan.label = [RECORDING_LABEL, recordingLabelValue(rec.name)];
  return plan;
}

/** R6: the pod's `recording.spoke.dev/*` annotations that `plan` does not set, sorted. */
export function foreignMarkings(pod: Pod, plan: RecordingPlan | undefined): string[] {
  return Object.keys(pod.metadata?.annotations ?? {})
    .sort()
    .filter((key) => key.startsWith(POD_RECORDING_PREFIX) && !plan?.annotations.has(key));
}
