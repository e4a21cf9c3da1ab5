// The pure mutation core of the ProfileBinding webhook (docs/binding.md), shared by the webhook and
// `spoke binding apply`. Given a Pod and the ProfileBindings of its namespace it answers with
// an RFC 6902 patch and admission warnings, or with a denial. No I/O.
//
// Rules, per container and init container (ephemeral containers are never touched), per kind:
//  1. Candidates: bindings of the kind whose `image`, `podSelector` and `containers` select it.
//  2. Most specific wins. Specificity is the tuple (image, podSelector, containers), compared
//     lexicographically, higher first:
//       image:       digest (repo@sha256:…) 3 > tag (repo:tag) 2 > repository (any tag/digest) 1 > `*` 0
//       podSelector: present with at least one requirement 1 > absent or `{}` 0
//       containers:  list present 1 > absent 0
//     Two candidates with equal tuples at the top are a tie: the pod is denied, naming both.
//  3. Never loosens. The effective profile is the container's own, else the pod's
//     (`spec.securityContext`), else, for AppArmor, the legacy annotation:
//       unset or RuntimeDefault → replaced by the binding's OCI profile;
//       Localhost or OCI (or a spoke annotation already on the pod) → left alone, with a warning
//         naming the container;
//       Unconfined → replaced only when the winning binding has `override: true`; otherwise the
//         container is left alone, with a warning naming it and the binding, and counted in the
//         binding's status (a binding is not a gate: Pod Security denies Unconfined where wanted).
//  4. Privileged containers get no OCI profile (KEP-6061 rejects them; the runtime ignores
//     seccomp for them): left alone, warned and counted like Unconfined.
//  5. Profiles are always set per container (`containers[i].securityContext`), never at pod
//     level: a pod-level OCI profile would also reach containers no binding selected and
//     ephemeral debug containers added later. A pod-level RuntimeDefault or unset profile is
//     therefore overridden container by container; a pod-level Localhost/OCI is kept.
//  6. Idempotent: a container that already carries exactly the winner's profile (our own patch,
//     seen again under reinvocationPolicy IfNeeded) is left alone without a warning.
//  7. `annotations` mode: instead of the KEP field, the annotation
//     `seccomp.profiles.spoke.dev/<container>` (or `apparmor.…`) = reference is added, and the
//     container's field is set to RuntimeDefault, so a node without the shim still runs the
//     container confined. The shim merges an annotation's profile with the node baseline only
//     and refuses a Localhost field next to an annotation (docs/annotation-mode.md: a conflict), so a binding's
//     Localhost baseProfile cannot travel in this mode: it is dropped with a warning.
//  8. Pod Security: in alpha, `restricted` rejects seccomp type OCI and `baseline` (like
//     `restricted`) allows AppArmor types RuntimeDefault and Localhost only. Where the
//     namespace's enforce level rejects the field for a kind, that kind is bound in
//     `annotations` mode instead, with a warning: the pod is created, and confined by the shim.
//     A level not known here is taken as `restricted`.
// Only an admin's configuration errors deny a pod: a tie (rule 2), or an invalid binding, which
// the validating webhook should have kept out, that may select it (its image target does not
// parse or matches one of the pod's images): an admin's binding is never silently skipped.
//
// Recording (docs/recording.md), only when the caller passes the ProfileRecordings of the namespace:
//  R1. A recording selects the pod when it is valid, not finalized (no non-empty
//      `recording.spoke.dev/finalize` annotation: a finalized recording is a snapshot), its
//      podSelector matches and, when it lists `containers`, one of them is in the pod. Invalid
//      recordings select nothing (recording is not a confinement: missing one never loosens).
//  R2. Two recordings select the pod → denied, naming both. A pod already annotated
//      `recording.spoke.dev/name` with another recording is denied the same way.
//  R3. The recorded containers: those the recording selects (all containers and init
//      containers, or its `containers`) that are not privileged (warning: a privileged
//      container runs unconfined and cannot be recorded) and whose seccomp profile is unset or
//      RuntimeDefault (warning otherwise: the node keeps an explicit profile, so they would not
//      be recorded). None left → nothing is marked.
//  R4. The pod gets `recording.spoke.dev/name: <recording>`, when not every container is
//      recorded `recording.spoke.dev/containers: a,b` (sorted), and `recording.spoke.dev/proof`,
//      the HMAC the shim verifies (src/core/recording-proof.ts: namespace, pod name or
//      generateName, recording, containers, expiry), plus the label `recording.spoke.dev/name`
//      the controller's pod cache selects on. Without the recording key nothing is marked
//      (warning). A still-valid proof for the same marking is kept (reinvocation).
//  R5. Recording wins over binding for the recorded containers' seccomp profile: the binding
//      is not applied to them (warning naming both), the node runs them under the logging
//      profile (`spoke shim --recording`). Every other container, and AppArmor, is bound as
//      usual: nothing else is loosened.
//  R6. Only the controller marks pods: every `recording.spoke.dev/*` annotation it does not set
//      is removed, with a warning, whether or not recordings are considered (a pod author must
//      not carry a marking, or a proof copied from another pod, past the webhook).

import type { ProfileKind } from '../core/constants.js';
import { imageMatches, parseImage, parseImageTarget, type ImageRef } from './image.js';
import { escapePointer, type JsonPatchOp } from './jsonpatch.js';
import { selectorMatches } from './selector.js';
import {
  ANNOTATION_PREFIX,
  LEGACY_APPARMOR_ANNOTATION_PREFIX,
  type Container,
  type Pod,
  type ProfileOCI,
  type SeccompProfile,
} from './types.js';
import { validateBinding, type CompiledBinding } from './validate.js';
import { signRecordingProof, verifyRecordingProof } from '../core/recording-proof.js';
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

export type { JsonPatchOp } from './jsonpatch.js';

export type BindingMode = 'field' | 'annotations';

export interface MutateOptions {
  /** `field` (default): the KEP API field. `annotations`: the shim's per-container annotations. */
  mode?: BindingMode;
  /** The ProfileRecordings of the pod's namespace (raw objects); undefined: recording is not considered. */
  recordings?: readonly unknown[];
  /** The namespace's Pod Security enforce level (`enforceLevel`); undefined: none, the field is admitted. */
  podSecurity?: string;
  /** How markings are signed (R4); undefined: recordings mark nothing. */
  recordingProof?: RecordingProofOptions;
}

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

/** Pod Security admission's levels, loosest first. */
export const POD_SECURITY_LEVELS: readonly string[] = ['privileged', 'baseline', 'restricted'];

/** The Pod Security admission label that decides whether a pod is rejected. */
export const POD_SECURITY_ENFORCE_LABEL = 'pod-security.kubernetes.io/enforce';

/** A namespace's Pod Security enforce level: its label, else the cluster's default level. */
export function enforceLevel(labels: Readonly<Record<string, string>> | undefined, clusterDefault = 'privileged'): string {
  return labels?.[POD_SECURITY_ENFORCE_LABEL] ?? clusterDefault;
}

/** Rule 8: whether Pod Security at `level` rejects `type: OCI` for `kind` (unknown levels: as restricted). */
function fieldRejected(kind: ProfileKind, level: string | undefined): boolean {
  if (level === undefined || level === 'privileged') return false;
  if (level === 'baseline') return kind === 'apparmor';
  return true;
}

/** Why a binding that selects a container did not bind it (counted in the binding's status). */
export type SkipReason = 'Unconfined' | 'Privileged';

export interface SkippedBinding {
  binding: string;
  kind: ProfileKind;
  container: string;
  reason: SkipReason;
}

export interface AppliedBinding {
  binding: string;
  kind: ProfileKind;
  container: string;
  reference: string;
}

export type MutationResult =
  | {
      patch: JsonPatchOp[];
      warnings: string[];
      /** Containers this answer binds. */
      applied: AppliedBinding[];
      /** Containers that already carry exactly their winning binding's profile (a pod as stored, or re-invocation). */
      bound: AppliedBinding[];
      /** Containers a binding selects but leaves alone (rules 3 and 4). */
      skipped: SkippedBinding[];
    }
  | { denied: string };

export const MAX_WARNINGS = 32;
export const MAX_WARNING_LENGTH = 256;
const MAX_DENIALS_SHOWN = 5;

const FIELD: Record<ProfileKind, 'seccompProfile' | 'appArmorProfile'> = { seccomp: 'seccompProfile', apparmor: 'appArmorProfile' };
const IMAGE_RANK_NAME = ['image "*"', 'image repository', 'image tag', 'image digest'];

/** Compares two specificity tuples: > 0 when a is more specific. */
export function compareSpecificity(a: readonly number[], b: readonly number[]): number {
  for (let i = 0; i < a.length; i++) if ((a[i] as number) !== (b[i] as number)) return (a[i] as number) - (b[i] as number);
  return 0;
}

export function describeSpecificity(rank: readonly [number, number, number]): string {
  return `${IMAGE_RANK_NAME[rank[0]]}, ${rank[1] ? 'with' : 'without'} podSelector, ${rank[2] ? 'with' : 'without'} containers list`;
}

interface Effective {
  type: string; // RuntimeDefault | Localhost | Unconfined | OCI | unset | annotation
  where: string; // human: "set on the container", "inherited from the pod", …
}

function legacyAppArmor(value: string): string {
  if (value === 'runtime/default') return 'RuntimeDefault';
  if (value === 'unconfined') return 'Unconfined';
  if (value.startsWith('localhost/')) return 'Localhost';
  return `unknown (${value})`;
}

function effectiveProfile(kind: ProfileKind, pod: Pod, c: Container): Effective {
  const annotations = pod.metadata?.annotations ?? {};
  if (Object.prototype.hasOwnProperty.call(annotations, ANNOTATION_PREFIX[kind] + c.name)) {
    return { type: 'annotation', where: `by annotation ${ANNOTATION_PREFIX[kind]}${c.name}` };
  }
  const own = c.securityContext?.[FIELD[kind]];
  if (own?.type) return { type: own.type, where: 'set on the container' };
  if (kind === 'apparmor') {
    const legacy = annotations[LEGACY_APPARMOR_ANNOTATION_PREFIX + c.name];
    if (typeof legacy === 'string') return { type: legacyAppArmor(legacy), where: `by annotation ${LEGACY_APPARMOR_ANNOTATION_PREFIX}${c.name}` };
  }
  const podLevel = pod.spec?.securityContext?.[FIELD[kind]];
  if (podLevel?.type) return { type: podLevel.type, where: 'inherited from the pod' };
  return { type: 'unset', where: 'not set' };
}

/** True when the container already carries exactly what `winner` would set (reinvocationPolicy: IfNeeded). */
function alreadyBound(kind: ProfileKind, pod: Pod, c: Container, winner: CompiledBinding, mode: BindingMode): boolean {
  if (mode === 'annotations') return pod.metadata?.annotations?.[ANNOTATION_PREFIX[kind] + c.name] === winner.reference;
  const own = c.securityContext?.[FIELD[kind]];
  if (own?.type !== 'OCI' || own.oci?.reference !== winner.reference) return false;
  return JSON.stringify(own.oci.baseProfile ?? null) === JSON.stringify(winner.baseProfile ?? null);
}

function truncate(s: string, n: number): string {
  return s.length <= n ? s : s.slice(0, n - 1) + '…';
}

interface Slot {
  list: 'containers' | 'initContainers';
  index: number;
  container: Container;
  image: ImageRef | undefined;
}

function slotsOf(pod: Pod): Slot[] {
  const out: Slot[] = [];
  for (const list of ['initContainers', 'containers'] as const) {
    (pod.spec?.[list] ?? []).forEach((container, index) => {
      let image: ImageRef | undefined;
      try {
        image = typeof container.image === 'string' ? parseImage(container.image) : undefined;
      } catch {
        image = undefined; // the kubelet could not pull it either; only `*` selects it
      }
      out.push({ list, index, container, image });
    });
  }
  return out;
}

/** Invalid bindings deny pods they might select: unparseable target, or an image match. */
function invalidBindingDenials(rawBindings: readonly unknown[], slots: Slot[]): string[] {
  const out: string[] = [];
  for (const raw of rawBindings) {
    const v = validateBinding(raw);
    if (v.ok) continue;
    const image = (raw as { spec?: { image?: unknown } })?.spec?.image;
    let hit: Slot | undefined;
    try {
      const target = parseImageTarget(typeof image === 'string' ? image : '');
      hit = slots.find((s) => imageMatches(target, s.image));
    } catch {
      hit = slots[0];
    }
    if (hit) {
      out.push(`ProfileBinding ${v.name} is invalid and may select container "${hit.container.name}": ${v.problems.join('; ')}`);
    }
  }
  return out;
}

/**
 * Computes the admission answer for `pod` given the bindings of its namespace (raw objects, as
 * listed: each is validated here). Pure and deterministic: same inputs, same patch.
 */
export function mutatePod(pod: Pod, rawBindings: readonly unknown[], options: MutateOptions = {}): MutationResult {
  const mode = options.mode ?? 'field';
  const slots = slotsOf(pod);
  const denials: string[] = invalidBindingDenials(rawBindings, slots);
  const bindings: CompiledBinding[] = [];
  for (const raw of rawBindings) {
    const v = validateBinding(raw);
    if (v.ok) bindings.push(v.binding);
  }
  const labels = pod.metadata?.labels;
  const podSelected = bindings.filter((b) => selectorMatches(b.podSelector, labels));

  const warnings: string[] = [];
  const applied: AppliedBinding[] = [];
  const bound: AppliedBinding[] = [];
  const skipped: SkippedBinding[] = [];
  const modeOf = (kind: ProfileKind): BindingMode => (mode === 'field' && fieldRejected(kind, options.podSecurity) ? 'annotations' : mode);
  const switched = new Set<ProfileKind>();
  // Per slot: the new values of securityContext fields; per pod: annotation changes.
  const fieldChanges = new Map<Slot, Partial<Record<'seccompProfile' | 'appArmorProfile', SeccompProfile>>>();
  const annotationSets = new Map<string, string>();
  const annotationRemovals = new Set<string>();
  const recording = options.recordings ? planRecording(pod, slots, options.recordings, options.recordingProof) : undefined;
  if (recording) {
    denials.push(...recording.denials);
    warnings.push(...recording.warnings);
    for (const [k, v] of recording.annotations) if (pod.metadata?.annotations?.[k] !== v) annotationSets.set(k, v);
  }
  for (const key of Object.keys(pod.metadata?.annotations ?? {}).sort()) {
    if (!key.startsWith(POD_RECORDING_PREFIX) || recording?.annotations.has(key)) continue;
    annotationRemovals.add(key);
    warnings.push(`annotation ${truncate(key, 80)} removed: only spoke's webhook marks pods for recording (R6)`);
  }

  for (const slot of slots) {
    const c = slot.container;
    const what = `${slot.list === 'initContainers' ? 'init container' : 'container'} "${c.name}"`;
    for (const kind of ['seccomp', 'apparmor'] as const) {
      const candidates = podSelected
        .filter((b) => b.kind === kind && imageMatches(b.target, slot.image) && (b.containers === undefined || b.containers.has(c.name)))
        .sort((a, b) => compareSpecificity(b.rank, a.rank) || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
      if (candidates.length === 0) continue;
      const winner = candidates[0] as CompiledBinding;
      if (kind === 'seccomp' && recording?.recorded.has(slot)) {
        warnings.push(`${what} is recorded by ProfileRecording ${recording.name} and runs under the logging profile; ProfileBinding ${winner.name} not applied to this pod`);
        continue;
      }
      const second = candidates[1];
      if (second && compareSpecificity(winner.rank, second.rank) === 0) {
        denials.push(
          `${what}: ProfileBindings ${winner.name} and ${second.name} both bind a ${kind} profile with the same specificity ` +
            `(${describeSpecificity(winner.rank)}); make one more specific (image, podSelector, containers) or delete one`,
        );
        continue;
      }
      const current = effectiveProfile(kind, pod, c);
      const kindMode = modeOf(kind);
      const entry = { binding: winner.name, kind, container: c.name };
      if (alreadyBound(kind, pod, c, winner, kindMode)) {
        bound.push({ ...entry, reference: winner.reference });
        continue; // re-invocation, or a pod as stored: our own earlier patch, nothing to do
      }
      if (current.type === 'Localhost' || current.type === 'OCI' || current.type === 'annotation') {
        warnings.push(`${what} keeps its ${kind} profile ${current.type === 'annotation' ? 'OCI' : current.type} (${current.where}); ProfileBinding ${winner.name} not applied`);
        continue;
      }
      if (c.securityContext?.privileged === true) {
        warnings.push(`${what} is privileged and gets no OCI ${kind} profile (KEP-6061; the runtime ignores ${kind} for it); ProfileBinding ${winner.name} not applied`);
        skipped.push({ ...entry, reason: 'Privileged' });
        continue;
      }
      const unconfined = current.type === 'Unconfined';
      if (unconfined && !winner.override) {
        warnings.push(`${what} keeps its ${kind} profile Unconfined (${current.where}); ProfileBinding ${winner.name} not applied: set override: true on the binding to replace it`);
        skipped.push({ ...entry, reason: 'Unconfined' });
        continue;
      }
      if (current.type !== 'unset' && current.type !== 'RuntimeDefault' && !unconfined) {
        warnings.push(`${what} keeps its ${kind} profile of unknown type ${current.type}; ProfileBinding ${winner.name} not applied`);
        continue;
      }
      if (unconfined) warnings.push(`${what}: ${kind} profile Unconfined (${current.where}) replaced by ProfileBinding ${winner.name} (override: true)`);

      const changes = fieldChanges.get(slot) ?? {};
      if (kindMode === 'field') {
        const oci: ProfileOCI = { reference: winner.reference };
        if (winner.baseProfile) oci.baseProfile = { ...winner.baseProfile };
        changes[FIELD[kind]] = { type: 'OCI', oci };
      } else {
        if (mode === 'field') switched.add(kind);
        annotationSets.set(ANNOTATION_PREFIX[kind] + c.name, winner.reference);
        changes[FIELD[kind]] = { type: 'RuntimeDefault' };
        if (winner.baseProfile?.type === 'Localhost') {
          warnings.push(`${what}: ProfileBinding ${winner.name}'s Localhost baseProfile cannot be carried by annotations; the node baseline applies instead`);
        }
      }
      fieldChanges.set(slot, changes);
      // The API server requires the legacy AppArmor annotation to agree with the field.
      const legacyKey = LEGACY_APPARMOR_ANNOTATION_PREFIX + c.name;
      if (kind === 'apparmor' && pod.metadata?.annotations?.[legacyKey] !== undefined) annotationRemovals.add(legacyKey);
      applied.push({ ...entry, reference: winner.reference });
    }
  }
  warnings.unshift(
    ...(['seccomp', 'apparmor'] as const)
      .filter((kind) => switched.has(kind))
      .map((kind) => {
        const level = options.podSecurity as string;
        const why = level === 'restricted' || level === 'baseline' ? 'rejects' : 'is not known and is taken as restricted, which rejects';
        return `namespace Pod Security level ${JSON.stringify(level)} ${why} ${kind} type OCI in alpha: bound by annotation (spoke shim) with RuntimeDefault in the field`;
      }),
  );

  if (denials.length > 0) {
    const shown = denials.slice(0, MAX_DENIALS_SHOWN);
    if (denials.length > shown.length) shown.push(`and ${denials.length - shown.length} more`);
    return { denied: shown.join('; ') };
  }

  const patch: JsonPatchOp[] = [];
  for (const [slot, changes] of fieldChanges) {
    const base = `/spec/${slot.list}/${slot.index}/securityContext`;
    const sc = slot.container.securityContext;
    if (sc === undefined || sc === null) {
      patch.push({ op: 'add', path: base, value: changes });
      continue;
    }
    for (const [field, value] of Object.entries(changes)) {
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
  if (recording?.label) {
    const [key, value] = recording.label;
    const labels = pod.metadata?.labels;
    if (labels === undefined || labels === null) patch.push({ op: 'add', path: '/metadata/labels', value: { [key]: value } });
    else if (labels[key] !== value) patch.push({ op: labels[key] === undefined ? 'add' : 'replace', path: `/metadata/labels/${escapePointer(key)}`, value });
  }
  const boundedWarnings = warnings.slice(0, MAX_WARNINGS).map((w) => truncate(w, MAX_WARNING_LENGTH));
  if (warnings.length > MAX_WARNINGS) boundedWarnings[MAX_WARNINGS - 1] = `${warnings.length - MAX_WARNINGS + 1} more warnings not shown`;
  return { patch, warnings: boundedWarnings, applied, bound, skipped };
}

interface RecordingPlan {
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

/** Rules R1–R4 (header): which recording marks the pod and which containers it records. */
function planRecording(pod: Pod, slots: Slot[], rawRecordings: readonly unknown[], proof: RecordingProofOptions | undefined): RecordingPlan | undefined {
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
    const what = `${slot.list === 'initContainers' ? 'init container' : 'container'} "${c.name}"`;
    if (c.securityContext?.privileged === true) {
      plan.warnings.push(`${what} is privileged and runs unconfined: ProfileRecording ${rec.name} cannot record it`);
      continue;
    }
    const current = effectiveProfile('seccomp', pod, c);
    if (current.type !== 'unset' && current.type !== 'RuntimeDefault') {
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
  const containers = plan.recorded.size < slots.length ? [...new Set([...plan.recorded].map((s) => s.container.name))].sort() : undefined;
  plan.annotations.set(POD_RECORDING_ANNOTATION, rec.name);
  if (containers) plan.annotations.set(POD_RECORDING_CONTAINERS_ANNOTATION, containers.join(','));
  const subject = { namespace: proof.namespace, pod: name ? { name } : { generateName: generateName as string }, recording: rec.name, containers };
  // Reinvocation: our own still-valid proof for this very marking stays, so the patch is empty.
  const ours = pod.metadata?.annotations?.[POD_RECORDING_PROOF_ANNOTATION];
  const kept = ours !== undefined && name && verifyRecordingProof(proof.key, ours, { ...subject, podName: name }, proof.now).ok;
  plan.annotations.set(POD_RECORDING_PROOF_ANNOTATION, kept ? ours : signRecordingProof(proof.key, subject, proof.now + proof.ttlSeconds));
  plan.label = [RECORDING_LABEL, recordingLabelValue(rec.name)];
  return plan;
}
