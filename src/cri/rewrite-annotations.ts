// Annotation precedence (annotation mode only; per kind, seccomp and AppArmor alike). The
// container's KEP profile is its own SecurityProfile, or, when it has none, the pod-level one
// from sandbox_config (what it inherits). The applicable annotation is the container's own
// (`<prefix><container>`), else the pod's (`<prefix>pod`). A profile an older kubelet gives only
// in the deprecated string field (`seccomp_profile_path`, `apparmor_profile`) is the KEP profile
// there too: the runtime reads it when the message is absent, and an edit that set the message
// would replace it (messages.ts profileAt); a string that names no profile is a conflict (rule 3).
//   1. KEP profile OCI            → the OCI profile wins; the annotation is ignored (logged).
//   2. privileged container       → conflict: the call fails InvalidArgument naming the
//                                   annotation (a privileged container runs unconfined; spoke
//                                   will not pretend otherwise).
//   3. KEP profile Localhost      → conflict: InvalidArgument naming the annotation (two
//                                   explicit profiles; spoke will not pick one).
//   4. RuntimeDefault, Unconfined or unset → replaced by the annotation's profile, applied like
//                                   an OCI profile: node baseline ∩ artifact, and when the
//                                   replaced profile is RuntimeDefault it stays as the base
//                                   (baseline ∩ runtime default ∩ artifact), so the annotation
//                                   never runs looser than what the pod asked for.
// InvalidArgument (gRPC INVALID_ARGUMENT) rather than FAILED_PRECONDITION for 2–3: the request
// itself is contradictory and no change of node state makes it succeed.
// RunPodSandbox: the pod-level seccomp annotation is applied to the sandbox (pause) too, as a
// KEP pod-level profile is, with the same rules (privileged = the sandbox's privileged flag).
// AppArmor annotations are applied per container only (the runtime confines containers, not the
// sandbox, with AppArmor); a pod-level AppArmor OCI *field* is still resolved at RunPodSandbox,
// since OCI never reaches the upstream.
// An annotation's reference is pulled first (node policy, node credentials, the pipeline's
// single-flight, cache, signature and failure rules), then applied; any failure fails the call
// with a message naming the annotation and keeping the pull's error code. A request's
// annotations (seccomp and AppArmor) are all pulled before any of its profiles is applied
// (pullAnnotated).
//
// The rewrite itself and its fail-closed rules: rewrite.ts.

import type { ProfileKind } from '../core/constants.js';
import { SpokeError } from '../core/errors.js';
import type { LogLevel } from '../core/runtime.js';
import { annotationError, type ProfileAnnotation } from './annotations.js';
import type { ApplyContext } from './apply.js';
import { BASE_RUNTIME_DEFAULT, PROFILE_LOCALHOST, PROFILE_OCI, PROFILE_RUNTIME_DEFAULT, PROFILE_UNCONFINED, PROFILE_UNREADABLE, type SecurityProfileMsg } from './messages.js';

export interface AnnotationDeps {
  /** Pulls an annotation's reference under the node policy with the node's credentials. */
  pull(req: { reference: string; kind: ProfileKind; namespace?: string; signal?: AbortSignal | (() => AbortSignal) }): Promise<unknown>;
  /** Throws when annotations of `kind` cannot be honoured here (AppArmor off), before any pull. */
  ready?(kind: ProfileKind, ctx: ApplyContext): Promise<void>;
  log?(level: LogLevel, msg: string, fields: Record<string, unknown>): void;
}

/** Profile type names for messages. */
export const TYPE_NAMES: Readonly<Record<number, string>> = {
  [PROFILE_RUNTIME_DEFAULT]: 'RuntimeDefault',
  [PROFILE_UNCONFINED]: 'Unconfined',
  [PROFILE_LOCALHOST]: 'Localhost',
  [PROFILE_OCI]: 'OCI',
};

/**
 * Precedence rules 2–3 (see above) for an annotation that applies: throws InvalidArgument
 * naming it on a conflict. `kep` is the KEP profile in effect (never OCI here: rule 1 is the
 * caller's).
 */
export function checkConflict(ann: ProfileAnnotation, kep: SecurityProfileMsg | undefined, privileged: boolean, who: string): void {
  if (privileged) {
    throw new SpokeError(
      'InvalidArgument',
      `${who}: annotation ${ann.key} conflicts with a privileged ${who.startsWith('sandbox') ? 'sandbox' : 'container'}: privileged containers run without a ${ann.kind} profile`,
      { annotation: ann.key },
      { reason: 'PRIVILEGED_CONTAINER' },
    );
  }
  if (kep?.profileType === PROFILE_LOCALHOST) {
    throw new SpokeError(
      'InvalidArgument',
      `${who}: annotation ${ann.key} conflicts with the explicit Localhost ${ann.kind} profile ${JSON.stringify(kep.localhostRef.slice(0, 200))}; set one or the other`,
      { annotation: ann.key },
      { reason: 'ANNOTATION_CONFLICT' },
    );
  }
  if (kep?.profileType === PROFILE_UNREADABLE) {
    throw new SpokeError(
      'InvalidArgument',
      `${who}: annotation ${ann.key} and the deprecated ${ann.kind} profile string ${JSON.stringify(kep.localhostRef.slice(0, 200))}, which names no profile a runtime reads`,
      { annotation: ann.key },
      { reason: 'ANNOTATION_CONFLICT' },
    );
  }
}

/** An annotation whose reference has been pulled (pullAnnotated): what applyPulled applies. */
export interface PulledAnnotation {
  ann: ProfileAnnotation;
  deps: AnnotationDeps;
  /** The request's object (`container <ns>/<pod>/<name>`, `sandbox <ns>/<pod>`). */
  who: string;
  namespace: string | undefined;
}

/** What a pull and a merge for `ann` report as their object. */
function contextOf(ann: ProfileAnnotation, who: string, namespace: string | undefined): ApplyContext {
  return { who: `${who} (annotation ${ann.key})`, namespace };
}

/**
 * Pulls an annotation's reference (after `ready`); any failure names the annotation. Every
 * annotation of a request is pulled before any of its profiles is applied: applying takes the
 * create's gc lease (edited.ts), which must not span a registry that may never answer
 * (docs/gc.md#cost).
 */
export async function pullAnnotated(deps: AnnotationDeps | undefined, ann: ProfileAnnotation, namespace: string | undefined, who: string): Promise<PulledAnnotation> {
  // A shim that does not apply annotations refuses the call rather than run it without the
  // profile: the controller binds by annotation where the field cannot carry it (docs/binding.md).
  if (deps === undefined) {
    throw new SpokeError('FailedPrecondition', `${who}: annotation ${ann.key} names a ${ann.kind} profile, but this node's shim does not apply profile annotations (annotations: true in its node config)`, { annotation: ann.key }, { reason: 'ANNOTATIONS_OFF' });
  }
  const ctx = contextOf(ann, who, namespace);
  await naming(deps, ann, who, async () => {
    await deps.ready?.(ann.kind, ctx);
    await deps.pull({ reference: ann.reference, kind: ann.kind, ...(namespace !== undefined ? { namespace } : {}) });
  });
  return { ann, deps, who, namespace };
}

/**
 * Applies a pulled annotation's profile; any failure names the annotation. `kep` is the KEP
 * profile the annotation replaces (rule 4): a RuntimeDefault one stays as the base.
 */
export function applyPulled<T>(pulled: PulledAnnotation, kep: SecurityProfileMsg | undefined, resolve: (profile: SecurityProfileMsg, ctx: ApplyContext) => Promise<T>): Promise<T> {
  const { ann, deps, who, namespace } = pulled;
  const base = kep?.profileType === PROFILE_RUNTIME_DEFAULT ? { type: BASE_RUNTIME_DEFAULT, localhostRef: '' } : undefined;
  return naming(deps, ann, who, () => resolve({ profileType: PROFILE_OCI, localhostRef: '', ociRef: ann.reference, base }, contextOf(ann, who, namespace)));
}

/** `step`, its failure named after the annotation and logged. */
async function naming<T>(deps: AnnotationDeps, ann: ProfileAnnotation, who: string, step: () => Promise<T>): Promise<T> {
  try {
    return await step();
  } catch (e) {
    const err = annotationError(ann.key, e);
    deps.log?.(err.code === 'PermissionDenied' ? 'warn' : 'error', 'profile annotation refused', { who, annotation: ann.key, reference: ann.reference, code: err.code, error: err.message, registrySaid: err.registryText });
    throw err;
  }
}

/** Rule 1: the KEP OCI profile wins; an applicable annotation (even a malformed one) is only logged. */
export function ignored(deps: AnnotationDeps | undefined, read: () => ProfileAnnotation | undefined, who: string): void {
  if (!deps) return;
  let ann: ProfileAnnotation | undefined;
  try {
    ann = read();
  } catch (e) {
    const err = e as SpokeError;
    deps.log?.('info', 'profile annotation ignored: the request carries a KEP OCI profile, which wins', { who, annotation: err.context?.annotation, error: err.message });
    return;
  }
  if (ann) deps.log?.('info', 'profile annotation ignored: the request carries a KEP OCI profile, which wins', { who, annotation: ann.key, reference: ann.reference });
}
