// Binding selection for the ProfileBinding webhook (rules 1 to 3 and 6 of binding.ts,
// docs/binding.md): the pod's container slots, which bindings select a slot and how specific
// they are, the profile a container runs under today, and whether our own patch is already there.

import { ANNOTATION_PREFIX, POD_ANNOTATION, type ProfileKind } from '../core/constants.js';
import { imageMatches, isImageId, parseImage, parseImageTarget, type ImageRef } from './image.js';
import { selectorMatches } from './selector.js';
import { LEGACY_APPARMOR_ANNOTATION_PREFIX, LEGACY_SECCOMP_ANNOTATION_PREFIX, LEGACY_SECCOMP_POD_ANNOTATION, type Container, type Pod } from './types.js';
import { validateBinding, type CompiledBinding } from './validate.js';

export type BindingMode = 'field' | 'annotations';

export const FIELD: Record<ProfileKind, 'seccompProfile' | 'appArmorProfile'> = { seccomp: 'seccompProfile', apparmor: 'appArmorProfile' };
const IMAGE_RANK_NAME = ['image "*"', 'image repository', 'image tag', 'image digest'];

/** Compares two specificity tuples: > 0 when a is more specific. */
export function compareSpecificity(a: readonly number[], b: readonly number[]): number {
  for (let i = 0; i < a.length; i++) if ((a[i] as number) !== (b[i] as number)) return (a[i] as number) - (b[i] as number);
  return 0;
}

export function describeSpecificity(rank: readonly [number, number, number]): string {
  return `${IMAGE_RANK_NAME[rank[0]]}, ${rank[1] ? 'with' : 'without'} podSelector, ${rank[2] ? 'with' : 'without'} containers list`;
}

/** Rule 2: the bindings of `kind` that select the slot, most specific first (ties by name). */
export function candidatesFor(bindings: readonly CompiledBinding[], kind: ProfileKind, slot: Slot): CompiledBinding[] {
  return bindings
    .filter((b) => b.kind === kind && imageMatches(b.target, slot.image) && (b.containers === undefined || b.containers.has(slot.container.name)))
    .sort((a, b) => compareSpecificity(b.rank, a.rank) || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

export interface Effective {
  type: string; // RuntimeDefault | Localhost | Unconfined | OCI | unset | annotation
  where: string; // human: "set on the container", "inherited from the pod", …
}

/** A legacy annotation's value as the profile type the API server gives the field from it. */
function legacyType(kind: ProfileKind, value: string): string {
  if (value === 'runtime/default' || (kind === 'seccomp' && value === 'docker/default')) return 'RuntimeDefault';
  if (value === 'unconfined') return 'Unconfined';
  if (value.startsWith('localhost/')) return 'Localhost';
  return `unknown (${value})`;
}

/** The legacy annotation that gives a container's `kind` field (seccomp and AppArmor alike). */
export function legacyContainerAnnotation(kind: ProfileKind, container: string): string {
  return (kind === 'seccomp' ? LEGACY_SECCOMP_ANNOTATION_PREFIX : LEGACY_APPARMOR_ANNOTATION_PREFIX) + container;
}

/**
 * The profile a container will run under, as the shim and the API server read the pod: a spoke
 * annotation (the container's own, else the pod-wide one the shim applies to every container),
 * then the container's field, then its legacy annotation, then the pod's field, then (seccomp)
 * the pod's legacy annotation. A legacy annotation fills only an empty field (the API server's
 * copy after admission), so each comes after the field it would fill.
 */
export function effectiveProfile(kind: ProfileKind, pod: Pod, c: Container, spokeAnnotations = true): Effective {
  const annotations = pod.metadata?.annotations ?? {};
  const has = (key: string) => Object.prototype.hasOwnProperty.call(annotations, key);
  // Without spoke's annotations: what a node without the shim runs.
  for (const key of spokeAnnotations ? [ANNOTATION_PREFIX[kind] + c.name, ANNOTATION_PREFIX[kind] + POD_ANNOTATION] : []) {
    if (has(key)) return { type: 'annotation', where: `by annotation ${key}` };
  }
  const legacy = (key: string): Effective | undefined => {
    const value = annotations[key];
    // `localhost/` names no file: the API server sets no seccomp field from it.
    if (typeof value !== 'string' || (kind === 'seccomp' && value === 'localhost/')) return undefined;
    return { type: legacyType(kind, value), where: `by annotation ${key}` };
  };
  const own = c.securityContext?.[FIELD[kind]];
  if (own?.type) return { type: own.type, where: 'set on the container' };
  const ownLegacy = legacy(legacyContainerAnnotation(kind, c.name));
  if (ownLegacy) return ownLegacy;
  const podLevel = pod.spec?.securityContext?.[FIELD[kind]];
  if (podLevel?.type) return { type: podLevel.type, where: 'inherited from the pod' };
  return (kind === 'seccomp' ? legacy(LEGACY_SECCOMP_POD_ANNOTATION) : undefined) ?? { type: 'unset', where: 'not set' };
}

/** True when the container already carries exactly what `winner` would set (reinvocationPolicy: IfNeeded). */
export function alreadyBound(kind: ProfileKind, pod: Pod, c: Container, winner: CompiledBinding, mode: BindingMode): boolean {
  // Our annotations-mode patch sets both: the annotation alone may be the pod author's, beside a
  // field a node without the shim runs as it is.
  if (mode === 'annotations') return pod.metadata?.annotations?.[ANNOTATION_PREFIX[kind] + c.name] === winner.reference && c.securityContext?.[FIELD[kind]]?.type === 'RuntimeDefault';
  const own = c.securityContext?.[FIELD[kind]];
  if (own?.type !== 'OCI' || own.oci?.reference !== winner.reference) return false;
  return sameMembers(own.oci.baseProfile, winner.baseProfile);
}

/**
 * Two baseProfiles with the same members, in whatever order: the API server serves a custom
 * resource's members sorted by name and a pod's in its type's order.
 */
function sameMembers(a: object | undefined, b: object | undefined): boolean {
  const sorted = (o: object | undefined) => JSON.stringify(o === undefined || o === null ? null : Object.entries(o).sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0)));
  return sorted(a) === sorted(b);
}

/** The container names `reference` as its profile of `kind`, by field or by its own annotation, whatever the base beside it. */
function carriesReference(kind: ProfileKind, pod: Pod, c: Container, reference: string): boolean {
  const own = c.securityContext?.[FIELD[kind]];
  return (own?.type === 'OCI' && own.oci?.reference === reference) || pod.metadata?.annotations?.[ANNOTATION_PREFIX[kind] + c.name] === reference;
}

/**
 * A pod the API server refuses every seccomp and AppArmor profile on, pod and container level
 * (its validation of `spec.os.name: windows`): no binding or recording may give it one, or it
 * could not be created (docs/binding.md). Only spec.os.name decides: a pod without spec.os is a
 * Linux pod to the API server, and hostProcess alone does not make it refuse the fields.
 */
export function isWindowsPod(pod: Pod | undefined): boolean {
  return pod?.spec?.os?.name === 'windows';
}

/** The valid bindings among `rawBindings` whose podSelector selects `pod` (invalid ones: invalidBindingDenials). */
export function podSelected(pod: Pod, rawBindings: readonly unknown[]): CompiledBinding[] {
  const out: CompiledBinding[] = [];
  for (const raw of rawBindings) {
    const v = validateBinding(raw);
    if (v.ok && selectorMatches(v.binding.podSelector, pod.metadata?.labels)) out.push(v.binding);
  }
  return out;
}

/**
 * The containers among `changed` (`<list>/<name>`, whose image differs from `before` to `after`)
 * that the bindings would give, for their new image, a profile other than the one they carry:
 * a pod's profiles are fixed at its creation, so a new image may take only the profile it would
 * be given. Per kind, the container must carry exactly the new winner's profile (by field, or by
 * its annotation beside RuntimeDefault: either mode); where no binding selects the new image,
 * none may have selected the old one, and the container may name no binding's reference (the
 * pod's labels, or the binding's base, may have changed since it was given one).
 */
export function profilesMovedByImages(before: Pod, after: Pod, rawBindings: readonly unknown[], changed: readonly string[]): string[] {
  const key = (slot: Slot) => `${slot.list}/${slot.container.name}`;
  const selectedBefore = podSelected(before, rawBindings);
  const selectedAfter = podSelected(after, rawBindings);
  const valid = rawBindings.flatMap((raw) => {
    const v = validateBinding(raw);
    return v.ok ? [v.binding] : [];
  });
  const carries = (kind: ProfileKind, c: Container, b: CompiledBinding) => alreadyBound(kind, after, c, b, 'field') || alreadyBound(kind, after, c, b, 'annotations');
  const oldSlots = new Map(slotsOf(before).map((slot) => [key(slot), slot]));
  const moved: string[] = [];
  for (const slot of slotsOf(after)) {
    const old = oldSlots.get(key(slot));
    if (old === undefined || !changed.includes(key(slot))) continue;
    const moves = (['seccomp', 'apparmor'] as const).some((kind) => {
      const winner = candidatesFor(selectedAfter, kind, slot)[0];
      if (winner === undefined) return candidatesFor(selectedBefore, kind, old)[0] !== undefined || valid.some((b) => b.kind === kind && carriesReference(kind, after, slot.container, b.reference));
      return !carries(kind, slot.container, winner);
    });
    if (moves) moved.push(key(slot));
  }
  return moved;
}

export interface Slot {
  list: 'containers' | 'initContainers' | 'ephemeralContainers';
  index: number;
  container: Container;
  image: ImageRef | undefined;
}

/** The containers and init containers of `pod`: those made with it, whose profiles it fixes. */
export function slotsOf(pod: Pod): Slot[] {
  return [...slotsIn(pod, 'initContainers'), ...slotsIn(pod, 'containers')];
}

/**
 * The ephemeral containers `pod` has that `before` had not: those a pods/ephemeralcontainers
 * update adds (`kubectl debug`), the only ones it may still change.
 */
export function addedEphemeralSlots(pod: Pod, before: Pod | undefined): Slot[] {
  const old = new Set((before?.spec?.ephemeralContainers ?? []).map((c) => c.name));
  // Only the added ones are parsed: an update may carry thousands (binding.ts reviewLimitDenial).
  return (pod.spec?.ephemeralContainers ?? []).flatMap((container, index) => (old.has(container.name) ? [] : [slotOf('ephemeralContainers', container, index)]));
}

function slotsIn(pod: Pod, list: Slot['list']): Slot[] {
  return (pod.spec?.[list] ?? []).map((container, index) => slotOf(list, container, index));
}

function slotOf(list: Slot['list'], container: Container, index: number): Slot {
  let image: ImageRef | undefined;
  try {
    image = typeof container.image === 'string' ? parseImage(container.image) : undefined;
  } catch {
    image = undefined; // the kubelet could not pull it either; only `*` selects it
  }
  return { list, index, container, image };
}

/** Invalid bindings deny pods they might select: unparseable target, or an image match. */
export function invalidBindingDenials(rawBindings: readonly unknown[], slots: Slot[]): string[] {
  const out: string[] = [];
  for (const raw of rawBindings) {
    const v = validateBinding(raw);
    if (v.ok) continue;
    const image = (raw as { spec?: { image?: unknown } })?.spec?.image;
    let hit: Slot | undefined;
    try {
      const target = parseImageTarget(typeof image === 'string' ? image : '');
      // An image ID may be any repository's image: a binding that names images may select it
      // (binding.ts imageIdDenials), so an invalid one is taken to.
      hit = slots.find((s) => imageMatches(target, s.image) || (typeof s.container.image === 'string' && isImageId(s.container.image)));
    } catch {
      hit = slots[0];
    }
    if (hit) {
      out.push(`ProfileBinding ${v.name} is invalid and may select container "${hit.container.name}": ${v.problems.join('; ')}`);
    }
  }
  return out;
}

/** "container \"a\"" or "init container \"a\"", for warnings and denials. */
export function describeSlot(slot: Slot): string {
  return `${slot.list === 'initContainers' ? 'init container' : slot.list === 'ephemeralContainers' ? 'ephemeral container' : 'container'} "${slot.container.name}"`;
}
