// Wire-level edits of RunPodSandbox / CreateContainer requests that carry an OCI security profile
// (KEP-6061 §2: RunPodSandbox carries the pod-level profile; CreateContainer carries the
// container-level or inherited pod-level one in ContainerConfig, and repeats the pod config in
// sandbox_config), or, in annotation mode, whose pod has spoke profile annotations. Only the
// SecurityProfile messages change; everything else is kept byte for byte. Requests with nothing
// to do are not touched at all (the caller forwards the original).
//
// Fail-closed rules: profile type OCI never reaches the upstream (seccomp and AppArmor alike;
// AppArmor fails FailedPrecondition, APPARMOR_UNAVAILABLE, where the kernel has no AppArmor). A privileged container
// whose effective profile (its own, else the pod-level one it inherits) is OCI, and a privileged
// sandbox with a pod-level OCI profile, are refused InvalidArgument (reason
// PRIVILEGED_CONTAINER) before anything is resolved: containerd runs privileged containers
// without seccomp or AppArmor, so the profile would be recorded and logged as applied while
// nothing enforces it (KEP-6061 §1 rejects such containers at validation). A path whose messages
// occur more than once (legal protobuf, merged by the receiver, never sent by the kubelet) is
// refused when the merged profile or any occurrence is OCI, rather than guessing which bytes to
// edit; an annotation edit on such a path is refused the same way (WireError → InvalidArgument).
//
// Annotation precedence (annotation mode): rewrite-annotations.ts. InvalidArgument (gRPC
// INVALID_ARGUMENT) rather than FAILED_PRECONDITION for its conflicts: the request itself is
// contradictory and no change of node state makes it succeed.
//
// Localhost profiles naming spoke's own merge results are refused first: reserved-profile.ts.
// Recording (`spoke shim --recording`): rewrite-recording.ts decides when a container runs
// under the logging profile instead.

import type { ProfileKind } from '../core/constants.js';
import { SpokeError } from '../core/errors.js';
import { ProfileAnnotations, type ProfileAnnotation } from './annotations.js';
import type { AppArmorPrepared, Applied, ApplyContext } from './apply.js';
import {
  CONTAINER_ANNOTATIONS,
  CONTAINER_METADATA,
  CREATE_CONFIG,
  CREATE_POD_SANDBOX_ID,
  CREATE_SANDBOX_CONFIG,
  CTR_APPARMOR_IN_CREATE,
  CTR_PRIVILEGED,
  CTR_SECCOMP_IN_CREATE,
  CTR_SECCTX_IN_CREATE,
  decodeSecurityProfile,
  deprecatedProfileAt,
  POD_APPARMOR_IN_CREATE,
  POD_APPARMOR_IN_RUN,
  POD_PRIVILEGED,
  POD_SECCOMP_IN_CREATE,
  POD_SECCOMP_IN_RUN,
  POD_SECCTX_IN_RUN,
  PROFILE_OCI,
  PROFILE_RUNTIME_DEFAULT,
  replaceProfileAt,
  RUN_CONFIG,
  RUN_RUNTIME_HANDLER,
  SANDBOX_ANNOTATIONS,
  SANDBOX_METADATA,
  type SecurityProfileMsg,
} from './messages.js';
import { readRecording, type RecordingDeps } from './recording.js';
import { applyPulled, checkConflict, ignored, pullAnnotated, type AnnotationDeps, type PulledAnnotation } from './rewrite-annotations.js';
import { recordsContainer } from './rewrite-recording.js';
import { refuseReserved } from './reserved-profile.js';
import { enumValue, FieldCursor, getMergedAt, getMergedMessage, getString, getVarint, pathOccurrences } from './wire.js';
import { getStringMap } from './wire-map.js';
import { refuseFilterAnnotations, refuseHandler, RUNTIME_ANNOTATION_KEYS } from './runtime-annotations.js';
import type { SandboxRecord } from './sandbox-handlers.js';

export type { AnnotationDeps } from './rewrite-annotations.js';

export type Resolver = (profile: SecurityProfileMsg, ctx: ApplyContext) => Promise<Applied>;
export type AppArmorResolver = (profile: SecurityProfileMsg, ctx: ApplyContext) => Promise<AppArmorPrepared>;

export interface RewriteDeps {
  seccomp: Resolver;
  /** Undefined: AppArmor profiles of type OCI fail with FailedPrecondition. */
  appArmor?: AppArmorResolver;
  /** Annotation mode; undefined: annotations are not read at all. */
  annotations?: AnnotationDeps;
  /** Recording annotations; undefined: not read at all (see recording.ts for --recording off). */
  recording?: RecordingDeps;
  /**
   * Where the shim writes its merge results (`<seccompRoot>/spoke`, and the same through the
   * root's real path): a Localhost seccomp profile under one of them is refused (reserved-profile.ts).
   */
  reservedSeccompDirs?: readonly string[];
  /** Runtime handlers that enforce the profiles spoke applies; undefined: not checked (tests of other rules). */
  runtimeHandler?: RuntimeHandlerCheck;
  /**
   * Counts the request's body as its pod's namespace's while the call waits (unary.ts
   * namespaceShare); throws when that namespace's waiting calls hold half the body budget. Called
   * once a request is the shim's to edit, before its first wait (the runtime handler's lookup, a
   * pull, a merge): a tenant's stalled pulls would otherwise hold bodies no namespace is charged
   * for (docs/shim.md#connections). Undefined: nothing is counted (tests of other rules).
   */
  namespaceShare?: (namespace: string | undefined) => void;
}

export interface RuntimeHandlerCheck {
  allowed: ReadonlySet<string>;
  /** The handler a pod sandbox runs under and the annotations the runtime recorded for it (sandbox-handlers.ts). */
  ofSandbox(id: string): Promise<SandboxRecord>;
}

export interface RewriteResult {
  /** The request to forward (the original buffer when nothing changed). */
  payload: Buffer;
  edited: boolean;
  /** The seccomp artifact the created object holds (sandbox: pod-level; container: its own or inherited). */
  holds: Applied | undefined;
  /** The AppArmor profiles this request resolved (the created object holds them all). */
  appArmor: AppArmorPrepared[];
}

interface Site {
  profile: SecurityProfileMsg | undefined;
  oci: boolean;
}

/**
 * Whether any occurrence of profile_type is OCI or a type spoke does not know (inspect refuses
 * the latter); throws on one that is not an int32 varint, as decodeSecurityProfile does.
 */
function anyTypeForTheShim(profileBytes: Uint8Array): boolean {
  for (const f = new FieldCursor(profileBytes); f.next(); ) if (f.field === 1 && enumValue(f) >= PROFILE_OCI) return true;
  return false;
}

/**
 * The runtimes disagree on a type they do not know: containerd refuses the call, CRI-O applies
 * its localhost_ref. A shim that forwarded one would leave the outcome to the runtime, so it
 * refuses (docs/shim.md#wire-level-rewrites-only-when-needed).
 */
function unknownType(profile: SecurityProfileMsg, what: string): SpokeError | undefined {
  const t = profile.profileType;
  if (t >= PROFILE_RUNTIME_DEFAULT && t <= PROFILE_OCI) return undefined;
  return new SpokeError('InvalidArgument', `${what}: security profile type ${t} is not one this shim knows (RuntimeDefault, Unconfined, Localhost, OCI)`, { actual: t }, { reason: 'PROFILE_TYPE_UNKNOWN' });
}

/** The profile at `path` as the runtime would read it (messages.ts profileAt), and whether it is OCI. */
function inspect(payload: Buffer, path: readonly number[], what: string, merged = getMergedAt(payload, path)): Site {
  // No message: the deprecated string beside it, if any, is what the runtime applies (never OCI).
  if (merged === undefined) return { profile: deprecatedProfileAt(payload, path), oci: false };
  const profile = decodeSecurityProfile(merged);
  const unknown = unknownType(profile, what);
  if (unknown) throw unknown;
  const duplicated = pathOccurrences(payload, path).some((n) => n > 1);
  if (duplicated && anyTypeForTheShim(merged)) {
    throw new SpokeError('InvalidArgument', `${what}: the message path to an OCI security profile occurs more than once; refusing to guess`, {}, { reason: 'WIRE_INVALID' });
  }
  return { profile, oci: profile.profileType === PROFILE_OCI };
}

/** The annotations of `message` (a PodSandboxConfig or ContainerConfig) that runtime-annotations.ts checks. */
function runtimeAnnotations(message: Uint8Array | undefined, field: number): ReadonlyMap<string, string> {
  return message === undefined ? NO_ANNOTATIONS : getStringMap(message, field, RUNTIME_ANNOTATION_KEYS);
}
const NO_ANNOTATIONS: ReadonlyMap<string, string> = new Map();


const RUN_SITES = [
  ['seccomp', POD_SECCOMP_IN_RUN],
  ['apparmor', POD_APPARMOR_IN_RUN],
] as const;
const CREATE_SITES = [
  ['seccomp', CTR_SECCOMP_IN_CREATE],
  ['seccomp', POD_SECCOMP_IN_CREATE],
  ['apparmor', CTR_APPARMOR_IN_CREATE],
  ['apparmor', POD_APPARMOR_IN_CREATE],
] as const;

function podName(sandboxConfig: Buffer | undefined): string {
  if (!sandboxConfig) return 'pod';
  const meta = getMergedMessage(sandboxConfig, SANDBOX_METADATA);
  if (!meta) return 'pod';
  return `${getString(meta, 3)}/${getString(meta, 1)}`;
}

function namespaceOf(sandboxConfig: Buffer | undefined): string | undefined {
  const meta = sandboxConfig ? getMergedMessage(sandboxConfig, SANDBOX_METADATA) : undefined;
  const ns = meta ? getString(meta, 3) : '';
  return ns === '' ? undefined : ns;
}

function privilegedAt(payload: Buffer, secctx: readonly number[], field: number): boolean {
  const sc = getMergedAt(payload, secctx);
  return sc !== undefined && getVarint(sc, field) !== 0;
}

function toDeps(r: Resolver | RewriteDeps): RewriteDeps {
  return typeof r === 'function' ? { seccomp: r } : r;
}

function appArmorResolver(deps: RewriteDeps): AppArmorResolver {
  return (
    deps.appArmor ??
    (async (_p, ctx) => {
      throw new SpokeError('FailedPrecondition', `${ctx.who}: AppArmor is not enabled on this node; refusing the OCI AppArmor profile`, {}, { reason: 'APPARMOR_UNAVAILABLE' });
    })
  );
}

/** A KEP OCI profile on a privileged container or sandbox (header): InvalidArgument naming it. */
function privilegedOci(who: string, kind: ProfileKind): SpokeError {
  const what = who.startsWith('sandbox') ? 'sandbox' : 'container';
  return new SpokeError('InvalidArgument', `${who}: a privileged ${what} runs without a ${kind} profile; refusing its ${kind} profile of type OCI`, {}, { reason: 'PRIVILEGED_CONTAINER' });
}

/** RunPodSandboxRequest. */
export async function rewriteRunPodSandbox(payload: Buffer, resolver: Resolver | RewriteDeps): Promise<RewriteResult> {
  const deps = toDeps(resolver);
  const config = getMergedMessage(payload, RUN_CONFIG);
  const who = `sandbox ${podName(config)}`;
  const messages = RUN_SITES.map(([, path]) => getMergedAt(payload, path));
  refuseReserved(payload, RUN_SITES, messages, deps.reservedSeccompDirs ?? [], who);
  const namespace = namespaceOf(config);
  const aa = inspect(payload, POD_APPARMOR_IN_RUN, who, messages[1]);
  const site = inspect(payload, POD_SECCOMP_IN_RUN, who, messages[0]);
  // Read in either mode: one that would apply is refused where the shim does not apply them (pullAnnotated).
  const annotations = ProfileAnnotations.read(config);
  const ann = annotations.size > 0 && !site.oci ? annotations.forPod('seccomp') : undefined;
  if (!aa.oci && !site.oci && ann === undefined) return { payload, edited: false, holds: undefined, appArmor: [] };
  deps.namespaceShare?.(namespace);
  const privileged = privilegedAt(payload, POD_SECCTX_IN_RUN, POD_PRIVILEGED);
  if (privileged && (site.oci || aa.oci)) throw privilegedOci(who, site.oci ? 'seccomp' : 'apparmor');

  const podAnnotations = [runtimeAnnotations(config, SANDBOX_ANNOTATIONS)];
  if (deps.runtimeHandler) refuseHandler(deps.runtimeHandler.allowed, getString(payload, RUN_RUNTIME_HANDLER), podAnnotations, who);
  if (site.oci || ann !== undefined) refuseFilterAnnotations(who, podAnnotations);
  let out = payload;
  let holds: Applied | undefined;
  if (site.oci) {
    if (annotations.size > 0) ignored(deps.annotations, () => annotations.forPod('seccomp'), who);
    holds = await deps.seccomp(site.profile!, { who, namespace });
  } else if (ann !== undefined) {
    checkConflict(ann, site.profile, privileged, who);
    // Pulled before the first profile is applied, as in a create (pullAnnotated).
    holds = await applyPulled(await pullAnnotated(deps.annotations, ann, namespace, who), site.profile, deps.seccomp);
  }
  if (holds) out = replaceProfileAt(out, POD_SECCOMP_IN_RUN, holds.path);
  const appArmor: AppArmorPrepared[] = [];
  if (aa.oci) {
    const a = await appArmorResolver(deps)(aa.profile!, { who, namespace });
    appArmor.push(a);
    out = replaceProfileAt(out, POD_APPARMOR_IN_RUN, a.name);
  }
  return { payload: out, edited: true, holds, appArmor };
}

interface KindSites<T> {
  kind: ProfileKind;
  ctrPath: readonly number[];
  podPath: readonly number[];
  resolve: (profile: SecurityProfileMsg, ctx: ApplyContext) => Promise<T>;
  localhostRef: (t: T) => string;
}

/** Where one kind's profiles are in a CreateContainerRequest. */
type SitesOfKind = Pick<KindSites<unknown>, 'kind' | 'ctrPath' | 'podPath'>;

interface KindContext {
  annotations: ProfileAnnotations;
  deps: RewriteDeps;
  container: string;
  namespace: string | undefined;
  privileged: boolean;
}

/**
 * The annotation of one kind a CreateContainerRequest's profile comes from, if any (precedence
 * in rewrite-annotations.ts): none where a KEP OCI profile wins, the container's own or the
 * pod-level one it inherits (rule 1, logged); throws on a conflict (rules 2–3).
 */
function annotationFor(payload: Buffer, s: SitesOfKind, who: string, ctx: KindContext): ProfileAnnotation | undefined {
  if (ctx.annotations.size === 0) return undefined;
  const ctr = inspect(payload, s.ctrPath, who);
  const pod = inspect(payload, s.podPath, who);
  const read = () => ctx.annotations.forContainer(s.kind, ctx.container);
  if (ctr.oci || (ctr.profile === undefined && pod.oci)) {
    ignored(ctx.deps.annotations, read, who);
    return undefined;
  }
  const ann = read();
  if (ann !== undefined) checkConflict(ann, ctr.profile ?? pod.profile, ctx.privileged, who);
  return ann;
}

/**
 * One kind in a CreateContainerRequest: the pod-level OCI profile in sandbox_config, the
 * container's own OCI profile or the inherited pod-level one, else the annotation `pulled` for
 * it (annotationFor, pullAnnotated). Returns the edited payload and what the container holds.
 */
async function containerKind<T>(payload: Buffer, s: KindSites<T>, who: string, namespace: string | undefined, pulled: PulledAnnotation | undefined): Promise<{ out: Buffer; held: T[] }> {
  const ctr = inspect(payload, s.ctrPath, who);
  const pod = inspect(payload, s.podPath, who);
  let out = payload;
  const held: T[] = [];
  let podApplied: T | undefined;
  if (pod.oci) {
    podApplied = await s.resolve(pod.profile!, { who: `${who} (pod-level)`, namespace });
    out = replaceProfileAt(out, s.podPath, s.localhostRef(podApplied));
  }
  if (ctr.oci) {
    const applied = await s.resolve(ctr.profile!, { who, namespace });
    held.push(applied);
    out = replaceProfileAt(out, s.ctrPath, s.localhostRef(applied));
    if (podApplied !== undefined && s.kind === 'apparmor') held.push(podApplied);
  } else if (ctr.profile === undefined && podApplied !== undefined) {
    // No container-level profile at all: the pod-level OCI profile is inherited (never Unconfined).
    held.push(podApplied);
    out = replaceProfileAt(out, s.ctrPath, s.localhostRef(podApplied));
  } else if (pulled !== undefined) {
    const applied = await applyPulled(pulled, ctr.profile ?? pod.profile, s.resolve);
    held.push(applied);
    out = replaceProfileAt(out, s.ctrPath, s.localhostRef(applied));
    if (podApplied !== undefined && s.kind === 'apparmor') held.push(podApplied);
  } else if (podApplied !== undefined && s.kind === 'apparmor') {
    held.push(podApplied);
  }
  return { out, held };
}

/** CreateContainerRequest. */
export async function rewriteCreateContainer(payload: Buffer, resolver: Resolver | RewriteDeps): Promise<RewriteResult> {
  const deps = toDeps(resolver);
  const sandboxConfig = getMergedMessage(payload, CREATE_SANDBOX_CONFIG);
  const config = getMergedMessage(payload, CREATE_CONFIG);
  const meta = config ? getMergedMessage(config, CONTAINER_METADATA) : undefined;
  const container = meta ? getString(meta, 1) : '';
  const who = `container ${podName(sandboxConfig)}/${container || '?'}`;
  const messages = CREATE_SITES.map(([, path]) => getMergedAt(payload, path));
  refuseReserved(payload, CREATE_SITES, messages, deps.reservedSeccompDirs ?? [], who);
  const annotations = ProfileAnnotations.read(sandboxConfig);
  const recording = deps.recording ? readRecording(sandboxConfig) : undefined;
  // Fast path: nothing OCI or unknown anywhere and no annotation → not ours.
  const forTheShim = messages.map((m) => m !== undefined && anyTypeForTheShim(m));
  const anyOci = forTheShim.includes(true);
  if (!anyOci && annotations.size === 0 && recording === undefined) return { payload, edited: false, holds: undefined, appArmor: [] };

  const ctx = { annotations, deps, container, namespace: namespaceOf(sandboxConfig), privileged: privilegedAt(payload, CTR_SECCTX_IN_CREATE, CTR_PRIVILEGED) };
  deps.namespaceShare?.(ctx.namespace);
  if (ctx.privileged) {
    for (const [kind, ctrPath, podPath] of [
      ['seccomp', CTR_SECCOMP_IN_CREATE, POD_SECCOMP_IN_CREATE],
      ['apparmor', CTR_APPARMOR_IN_CREATE, POD_APPARMOR_IN_CREATE],
    ] as const) {
      // The effective profile: the container's own, else the pod-level one it inherits.
      const own = inspect(payload, ctrPath, who);
      if (own.oci || (own.profile === undefined && inspect(payload, podPath, who).oci)) throw privilegedOci(who, kind);
    }
  }
  // Decided on the request as the kubelet sent it, before any edit.
  const logging = recording && recordsContainer(payload, recording, deps.recording!, deps.annotations !== undefined, ctx, who) ? await deps.recording!.loggingProfile!() : undefined;
  // Before anything is resolved, the checks of a profile spoke would apply: an OCI profile at any
  // site, or an annotation for this container, read only where no KEP OCI profile wins over it
  // (rule 1, rewrite-annotations.ts). Sites 0 and 1 are seccomp's (CREATE_SITES).
  const annotated = (kind: ProfileKind) => annotations.size > 0 && annotations.forContainer(kind, container) !== undefined;
  const seccompOci = forTheShim[0]! || forTheShim[1]!;
  const seccompAnnotation = !seccompOci && annotated('seccomp');
  if (anyOci || seccompAnnotation || annotated('apparmor')) {
    const sets = [runtimeAnnotations(sandboxConfig, SANDBOX_ANNOTATIONS), runtimeAnnotations(config, CONTAINER_ANNOTATIONS)];
    if (deps.runtimeHandler) {
      const sandbox = await deps.runtimeHandler.ofSandbox(getString(payload, CREATE_POD_SANDBOX_ID));
      sets.push(sandbox.annotations);
      refuseHandler(deps.runtimeHandler.allowed, sandbox.handler, sets, who);
    }
    if (seccompOci || seccompAnnotation) refuseFilterAnnotations(who, sets);
  }
  const seccompSites: KindSites<Applied> = { kind: 'seccomp', ctrPath: CTR_SECCOMP_IN_CREATE, podPath: POD_SECCOMP_IN_CREATE, resolve: deps.seccomp, localhostRef: (a) => a.path };
  const appArmorSites: KindSites<AppArmorPrepared> = { kind: 'apparmor', ctrPath: CTR_APPARMOR_IN_CREATE, podPath: POD_APPARMOR_IN_CREATE, resolve: appArmorResolver(deps), localhostRef: (a) => a.name };
  // Both kinds' annotations are pulled before any profile is applied: applying takes the create's
  // gc lease (edited.ts), which must not span a registry that may never answer (docs/gc.md#cost).
  const pullFor = async (s: SitesOfKind) => {
    const ann = annotationFor(payload, s, who, ctx);
    return ann === undefined ? undefined : pullAnnotated(deps.annotations, ann, ctx.namespace, who);
  };
  const seccompPulled = await pullFor(seccompSites);
  const appArmorPulled = await pullFor(appArmorSites);
  const sc = await containerKind(payload, seccompSites, who, ctx.namespace, seccompPulled);
  // A recorded container's own profile is replaced. What was resolved for it is the binding the
  // webhook wrote beside the marking (rewrite-recording.ts), held as usual: it applies once the
  // proof has expired. A pod-level OCI profile in sandbox_config may have been resolved too,
  // which the container overrides.
  const scOut = logging !== undefined ? replaceProfileAt(sc.out, CTR_SECCOMP_IN_CREATE, logging) : sc.out;
  const aa = await containerKind(scOut, appArmorSites, who, ctx.namespace, appArmorPulled);
  if (aa.out === payload) return { payload, edited: false, holds: undefined, appArmor: [] };
  return { payload: aa.out, edited: true, holds: sc.held[0], appArmor: aa.held };
}
