// The pure mutation core of the ProfileBinding webhook (docs/binding.md), shared by the webhook and
// `spoke binding apply`. Given a Pod and the ProfileBindings of its namespace it answers with
// an RFC 6902 patch and admission warnings, or with a denial. No I/O.
//
// Rules, per container, init container and ephemeral container (rule 9), per kind:
//  1. Candidates: bindings of the kind whose `image`, `podSelector` and `containers` select it.
//  2. Most specific wins. Specificity is the tuple (image, podSelector, containers), compared
//     lexicographically, higher first:
//       image:       digest (repo@sha256:…) 3 > tag (repo:tag) 2 > repository (any tag/digest) 1 > `*` 0
//       podSelector: present with at least one requirement 1 > absent or `{}` 0
//       containers:  list present 1 > absent 0
//     Two candidates with equal tuples at the top are a tie: the pod is denied, naming both.
//  3. Never loosens. The effective profile is a spoke annotation on the pod (the container's, or
//     the pod-wide `<prefix>pod` the shim applies to every container), else the container's
//     field, else its legacy annotation, else the pod's field (`spec.securityContext`), else the
//     pod's legacy seccomp annotation (binding-match.ts effectiveProfile):
//       unset or RuntimeDefault → replaced by the binding's OCI profile (and the container's
//         legacy annotation removed: the API server requires it to agree with the field);
//       Localhost or OCI (or a spoke annotation) → left alone, with a warning naming the
//         container (but rule 6);
//       Unconfined → replaced only when the winning binding has `override: true`; otherwise the
//         container is left alone, with a warning naming it and the binding, and counted in the
//         binding's status (a binding is not a gate: Pod Security denies Unconfined where wanted).
//  4. Privileged containers get no OCI profile (KEP-6061 rejects them; the runtime ignores
//     seccomp for them): left alone, warned and counted like Unconfined.
//  5. Profiles are always set per container (`containers[i].securityContext`), never at pod
//     level: a pod-level OCI profile would also reach containers no binding selected and
//     ephemeral debug containers added later (rule 9 binds those by their own image). A
//     pod-level RuntimeDefault or unset profile is therefore overridden container by container;
//     a pod-level Localhost/OCI is kept.
//  6. Idempotent: a container that already carries exactly the winner's profile (our own patch,
//     seen again under reinvocationPolicy IfNeeded) is left alone without a warning. One that
//     carries exactly the profile of another binding that selects it (our patch of an earlier
//     pass, before a webhook after this one changed its image) gets the winner's, with a warning:
//     the exception to rule 3's "OCI is left alone" (not for a running pod's annotations).
//  7. `annotations` mode: instead of the KEP field, the annotation
//     `seccomp.profiles.spoke.dev/<container>` (or `apparmor.…`) = reference is added, and the
//     container's field is set to RuntimeDefault, so a node without the shim still runs the
//     container confined. The shim merges an annotation's profile with the node baseline only
//     and refuses a Localhost field next to an annotation (a conflict), so a binding's
//     Localhost baseProfile cannot travel in this mode: it is dropped with a warning.
//  8. Pod Security: where the namespace's enforce level rejects the field for a kind, that kind
//     is bound in `annotations` mode instead, with a warning (pod-security.ts).
//  9. Ephemeral containers (`kubectl debug`, a pods/ephemeralcontainers update) get the same
//     rules, each only the containers the update adds. In `annotations` mode (or where Pod
//     Security rejects the field) one a binding would bind is denied: a running pod's
//     annotations cannot change, and the container would run looser than its bindings say.
// 10. Windows pods (`spec.os.name: windows`, binding-match.ts isWindowsPod) are left alone as a
//     whole: the API server refuses seccomp and AppArmor profiles, pod and container level, on
//     them, so a profile would make the pod impossible to create. Each container a binding
//     selects is counted (reason Windows) and the pod gets one warning naming the bindings; no
//     binding's configuration denies it (rules 1 to 9 are not applied), nor does a recording
//     mark it (recording-mark.ts R7).
// Only an admin's configuration errors deny a pod: a tie (rule 2), or an invalid binding, which
// the validating webhook should have kept out, that may select it (its image target does not
// parse or matches one of the pod's images): an admin's binding is never silently skipped.
//
// Recording (R1 to R6), when the caller passes the ProfileRecordings of the namespace:
// recording-mark.ts. Selection: binding-match.ts; the patch: binding-patch.ts.

import { ANNOTATION_PREFIX, POD_ANNOTATION, type ProfileKind } from '../core/constants.js';
import {
  FIELD,
  alreadyBound,
  candidatesFor,
  compareSpecificity,
  describeSlot,
  describeSpecificity,
  effectiveProfile,
  invalidBindingDenials,
  isWindowsPod,
  legacyContainerAnnotation,
  podSelected,
  slotsOf,
  type BindingMode,
  type Slot,
} from './binding-match.js';
import { boundWarnings, buildPatch, truncate, type PodChanges } from './binding-patch.js';
import { isImageId } from './image.js';
import type { JsonPatchOp } from './jsonpatch.js';
import { fieldRejected, podSecurityWarning } from './pod-security.js';
import { foreignMarkings, planRecording, type RecordingProofOptions } from './recording-mark.js';
import type { Pod, ProfileOCI, SeccompProfile } from './types.js';
import type { CompiledBinding } from './validate.js';

export type { JsonPatchOp } from './jsonpatch.js';
export { compareSpecificity, describeSpecificity, type BindingMode } from './binding-match.js';
export { MAX_WARNINGS, MAX_WARNING_LENGTH } from './binding-patch.js';
export { enforceLevel, POD_SECURITY_ENFORCE_LABEL, POD_SECURITY_LEVELS } from './pod-security.js';
export type { RecordingProofOptions } from './recording-mark.js';

export interface MutateOptions {
  /** `field` (default): the KEP API field. `annotations`: the shim's per-container annotations. */
  mode?: BindingMode;
  /** The ProfileRecordings of the pod's namespace (raw objects); undefined: recording is not considered. */
  recordings?: readonly unknown[];
  /** The namespace's Pod Security enforce level (`enforceLevel`); undefined: none, the field is admitted. */
  podSecurity?: string;
  /** How markings are signed (R4); undefined: recordings mark nothing. */
  recordingProof?: RecordingProofOptions;
  /**
   * A pods/ephemeralcontainers update: only these containers (binding-match.ts
   * addedEphemeralSlots) are bound, since nothing else of the pod may change then, its
   * annotations included; recordings are not considered (rule 9).
   */
  ephemeral?: Slot[];
}

/** Why a binding that selects a container did not bind it (counted in the binding's status). */
export type SkipReason = 'Unconfined' | 'Privileged' | 'Windows';

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
      /** Containers a binding selects but leaves alone (rules 3, 4 and 10). */
      skipped: SkippedBinding[];
    }
  /** `limit`: denied for a size limit (reviewLimitDenial), not for the bindings' configuration. */
  | { denied: string; limit?: true };

const MAX_DENIALS_SHOWN = 5;

/**
 * Containers (init ones counted) of a pod spoke binds: every binding is matched against each and
 * the patch has an operation per container; a review of ~14,000 containers took 0.3 s of the
 * controller. A pod with more is denied, not bound in part (docs/binding.md).
 */
export const MAX_POD_CONTAINERS = 256;

/**
 * ProfileBindings of one namespace the webhook matches a pod against: each selecting binding is
 * matched against each container at every review of the namespace's pods. A namespace with
 * more has its pods denied (its own users made them), so no namespace can make the webhook's
 * reviews of every other namespace wait on its own (docs/binding.md).
 */
export const MAX_NAMESPACE_BINDINGS = 512;
/** ProfileRecordings of one namespace, matched at every review of its pods likewise. */
export const MAX_NAMESPACE_RECORDINGS = 512;

/**
 * Why spoke will not review `pod`: more containers or more bindings in its namespace than it
 * matches; undefined when within both limits. Cheap: counts only. `ephemeral`: a review of
 * pods/ephemeralcontainers, whose ephemeral containers count too (one such update may add
 * thousands); elsewhere they are not reviewed, so a pod that gathered many is not held to it.
 */
export function reviewLimitDenial(pod: Pod, bindings: number, ephemeral: boolean, recordings = 0): string | undefined {
  const count = (list: unknown) => (Array.isArray(list) ? list.length : 0);
  const containers = count(pod.spec?.initContainers) + count(pod.spec?.containers) + (ephemeral ? count(pod.spec?.ephemeralContainers) : 0);
  if (containers > MAX_POD_CONTAINERS) return `the pod has ${containers} containers; spoke binds pods of at most ${MAX_POD_CONTAINERS}`;
  if (bindings > MAX_NAMESPACE_BINDINGS) return `the namespace has ${bindings} ProfileBindings; spoke reviews pods of namespaces with at most ${MAX_NAMESPACE_BINDINGS}: delete some`;
  if (recordings > MAX_NAMESPACE_RECORDINGS) return `the namespace has ${recordings} ProfileRecordings; spoke reviews pods of namespaces with at most ${MAX_NAMESPACE_RECORDINGS}: delete finished ones`;
  return undefined;
}

/**
 * A runtime runs an image ID as the local image it names, whatever its repository: a binding
 * that names images cannot tell whether it selects it, so such a container is refused rather
 * than run unbound (a `*` binding still binds it). At creation, and when an update changes a
 * container's image (admission.ts reviewPodUpdate). `selected`: the bindings selecting the pod.
 */
export function imageIdDenials(slots: readonly Slot[], selected: readonly CompiledBinding[]): string[] {
  const denials: string[] = [];
  for (const slot of slots) {
    const image = slot.container.image;
    const naming = typeof image === 'string' && isImageId(image) ? selected.find((b) => b.target.kind !== 'any' && (b.containers === undefined || b.containers.has(slot.container.name))) : undefined;
    if (naming) denials.push(`${describeSlot(slot)}: image ${truncate(image as string, 80)} is an image ID, which no binding's image can be matched against (ProfileBinding ${naming.name} binds by image ${naming.target.text}); name the image by its repository`);
  }
  return denials;
}

/** Rule 10's warning: the bindings a Windows pod is left alone by, sorted. */
function windowsPodWarning(skipped: readonly SkippedBinding[]): string {
  const names = [...new Set(skipped.map((s) => s.binding))].sort();
  return `the pod is a Windows pod (spec.os.name: windows), on which the API server refuses seccomp and AppArmor profiles: ProfileBinding${names.length > 1 ? 's' : ''} ${names.join(', ')} not applied`;
}

/**
 * Computes the admission answer for `pod` given the bindings of its namespace (raw objects, as
 * listed: each is validated here). Pure and deterministic: same inputs, same patch.
 */
export function mutatePod(pod: Pod, rawBindings: readonly unknown[], options: MutateOptions = {}): MutationResult {
  const mode = options.mode ?? 'field';
  const limit = reviewLimitDenial(pod, rawBindings.length, options.ephemeral !== undefined, options.recordings?.length ?? 0);
  if (limit !== undefined) return { denied: limit, limit: true };
  const ephemeral = options.ephemeral !== undefined;
  const slots = options.ephemeral ?? slotsOf(pod);
  // Rule 10: nothing a binding says applies to a Windows pod, so none of them denies it either.
  const windows = isWindowsPod(pod);
  const denials: string[] = windows ? [] : invalidBindingDenials(rawBindings, slots);
  const selected = podSelected(pod, rawBindings);
  if (!windows) denials.push(...imageIdDenials(slots, selected));

  const warnings: string[] = [];
  const applied: AppliedBinding[] = [];
  const bound: AppliedBinding[] = [];
  const skipped: SkippedBinding[] = [];
  const modeOf = (kind: ProfileKind): BindingMode => (mode === 'field' && fieldRejected(kind, options.podSecurity) ? 'annotations' : mode);
  const switched = new Set<ProfileKind>();
  // Per slot: the new values of securityContext fields; per pod: annotation changes.
  const fieldChanges: PodChanges['fields'] = new Map();
  const annotationSets = new Map<string, string>();
  const annotationRemovals = new Set<string>();
  const setField = (slot: Slot, kind: ProfileKind, profile: SeccompProfile): void => {
    fieldChanges.set(slot, { ...fieldChanges.get(slot), [FIELD[kind]]: profile });
    // The API server requires a container's legacy annotation to agree with its field (an
    // ephemeral container has none: the legacy annotations predate them).
    const legacyKey = legacyContainerAnnotation(kind, slot.container.name);
    if (!ephemeral && pod.metadata?.annotations?.[legacyKey] !== undefined) annotationRemovals.add(legacyKey);
  };
  // R3: a container its seccomp binding gives its profile is recordable like an unset one: one
  // that carries a binding's already (this webhook's own patch, seen again on reinvocation: rule
  // 6), or an Unconfined one an override binding replaces below (so that reinvocation decides the
  // same).
  const boundByItsBinding = (slot: Slot): boolean => {
    const candidates = candidatesFor(selected, 'seccomp', slot);
    const winner = candidates[0];
    if (winner === undefined) return false;
    if (candidates.some((b) => alreadyBound('seccomp', pod, slot.container, b, modeOf('seccomp')))) return true;
    return winner.override && effectiveProfile('seccomp', pod, slot.container).type === 'Unconfined';
  };
  const recording = options.recordings && !ephemeral ? planRecording(pod, slots, options.recordings, options.recordingProof, boundByItsBinding) : undefined;
  if (recording) {
    denials.push(...recording.denials);
    warnings.push(...recording.warnings);
    for (const [k, v] of recording.annotations) if (pod.metadata?.annotations?.[k] !== v) annotationSets.set(k, v);
  }
  for (const key of ephemeral ? [] : foreignMarkings(pod, recording)) {
    annotationRemovals.add(key);
    warnings.push(`annotation ${truncate(key, 80)} removed: only spoke's webhook marks pods for recording (R6)`);
  }

  for (const slot of slots) {
    const c = slot.container;
    const what = describeSlot(slot);
    for (const kind of ['seccomp', 'apparmor'] as const) {
      const candidates = candidatesFor(selected, kind, slot);
      if (candidates.length === 0) continue;
      const winner = candidates[0] as CompiledBinding;
      if (windows) {
        skipped.push({ binding: winner.name, kind, container: c.name, reason: 'Windows' });
        continue;
      }
      if (kind === 'seccomp' && recording?.recorded.has(slot)) {
        warnings.push(`${what} is recorded by ProfileRecording ${recording.name}: it runs under the logging profile while the marking's proof is valid, then ProfileBinding ${winner.name} applies`);
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
      // Rule 6: the profile of a binding that selects the container but no longer wins (a webhook
      // after this one changed its image, and this is the reinvocation) is this webhook's own. Not
      // an annotation of a running pod's: that one was written when the pod was created.
      const mayBeOurs = (current.type === 'OCI' || current.type === 'annotation') && !(ephemeral && kindMode === 'annotations');
      const earlier = mayBeOurs ? candidates.find((b) => alreadyBound(kind, pod, c, b, kindMode)) : undefined;
      if (earlier === undefined && (current.type === 'Localhost' || current.type === 'OCI' || current.type === 'annotation')) {
        warnings.push(`${what} keeps its ${kind} profile ${current.type === 'annotation' ? 'OCI' : current.type} (${current.where}); ProfileBinding ${winner.name} not applied`);
        // The author's annotation stays, but an override binding's rule on Unconfined holds for
        // the field under it, which a node without the shim runs (docs/binding.md).
        const beneath = current.type === 'annotation' && winner.override ? effectiveProfile(kind, pod, c, false) : undefined;
        if (beneath?.type === 'Unconfined' && c.securityContext?.privileged !== true) {
          setField(slot, kind, { type: 'RuntimeDefault' });
          warnings.push(`${what}: ${kind} field Unconfined (${beneath.where}) set to RuntimeDefault by ProfileBinding ${winner.name} (override: true), under its annotation, whose profile the shim now also intersects with the runtime default`);
        }
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
      if (earlier === undefined && current.type !== 'unset' && current.type !== 'RuntimeDefault' && !unconfined) {
        warnings.push(`${what} keeps its ${kind} profile of unknown type ${current.type}; ProfileBinding ${winner.name} not applied`);
        continue;
      }
      if (earlier !== undefined) warnings.push(`${what}: ${kind} profile of ProfileBinding ${earlier.name} replaced by ProfileBinding ${winner.name}, the most specific for the container as it is now`);
      if (unconfined) warnings.push(`${what}: ${kind} profile Unconfined (${current.where}) replaced by ProfileBinding ${winner.name} (override: true)`);

      let profile: SeccompProfile;
      if (kindMode === 'field') {
        const oci: ProfileOCI = { reference: winner.reference };
        if (winner.baseProfile) oci.baseProfile = { ...winner.baseProfile };
        profile = { type: 'OCI', oci };
      } else {
        if (ephemeral) {
          denials.push(
            `${what}: ProfileBinding ${winner.name} binds its ${kind} profile, which annotation mode cannot give a container added to a running pod ` +
              `(the pod's annotations are fixed); bind this namespace in field mode, or narrow the binding (image, containers)`,
          );
          continue;
        }
        // The shim reads `<prefix>pod` as the pod-wide annotation, every container's profile.
        if (c.name === POD_ANNOTATION) {
          denials.push(`${what}: container "${POD_ANNOTATION}" cannot be bound by annotation: ${ANNOTATION_PREFIX[kind]}${POD_ANNOTATION} is the pod-wide key (docs/annotation-mode.md); rename the container or bind it in field mode`);
          continue;
        }
        if (mode === 'field') switched.add(kind);
        annotationSets.set(ANNOTATION_PREFIX[kind] + c.name, winner.reference);
        profile = { type: 'RuntimeDefault' };
        if (winner.baseProfile?.type === 'Localhost') {
          warnings.push(`${what}: ProfileBinding ${winner.name}'s Localhost baseProfile cannot be carried by annotations; the node baseline applies instead`);
        }
      }
      setField(slot, kind, profile);
      applied.push({ ...entry, reference: winner.reference });
    }
  }
  if (windows && skipped.length > 0) warnings.unshift(windowsPodWarning(skipped));
  warnings.unshift(
    ...(['seccomp', 'apparmor'] as const).filter((kind) => switched.has(kind)).map((kind) => podSecurityWarning(kind, options.podSecurity as string)),
  );

  if (denials.length > 0) {
    const shown = denials.slice(0, MAX_DENIALS_SHOWN);
    if (denials.length > shown.length) shown.push(`and ${denials.length - shown.length} more`);
    return { denied: shown.join('; ') };
  }

  const patch = buildPatch(pod, { fields: fieldChanges, annotationSets, annotationRemovals, label: recording?.label });
  return { patch, warnings: boundWarnings(warnings), applied, bound, skipped };
}
