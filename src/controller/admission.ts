// admission.k8s.io/v1 AdmissionReview in, AdmissionReview out: the webhook's two handlers
// without the HTTP. `reviewPod` is the mutating webhook (pods, CREATE only), `reviewBinding`
// the validating webhook for ProfileBinding objects.

import { ANNOTATION_PREFIX, PROFILE_KINDS } from '../core/constants.js';
import { enforceLevel, imageIdDenials, mutatePod, reviewLimitDenial, type AppliedBinding, type BindingMode, type MutateOptions, type SkippedBinding } from './binding.js';
import { addedEphemeralSlots, invalidBindingDenials, isWindowsPod, podSelected, profilesMovedByImages, slotsOf } from './binding-match.js';
import type { BindingSource, NamespaceSource, RecordingSource } from './source.js';
import { API_VERSION, BINDING_KIND, GROUP, namespaceOptedIn, notOptedInMessage, type Pod, type ProfileBinding } from './types.js';
import { validateBinding } from './validate.js';
import { DEFAULT_PROOF_TTL_SECONDS, POD_RECORDING_PREFIX, RESULT_KIND, type ProfileRecordingResult } from './recording.js';

export const ADMISSION_API_VERSION = 'admission.k8s.io/v1';

export interface AdmissionRequest {
  uid: string;
  kind?: { group?: string; version?: string; kind?: string };
  resource?: { group?: string; version?: string; resource?: string };
  subResource?: string;
  name?: string;
  namespace?: string;
  operation?: string;
  dryRun?: boolean;
  object?: unknown;
  oldObject?: unknown;
  [k: string]: unknown;
}

export interface AdmissionResponse {
  uid: string;
  allowed: boolean;
  status?: { code: number; reason?: string; message: string };
  patchType?: 'JSONPatch';
  patch?: string; // base64 of the JSON Patch document
  warnings?: string[];
}

export interface AdmissionReview {
  apiVersion: typeof ADMISSION_API_VERSION;
  kind: 'AdmissionReview';
  response: AdmissionResponse;
}

/** A request body that is not an AdmissionReview: answered with HTTP 400. */
export class BadReview extends Error {}

export function parseReview(body: unknown): AdmissionRequest {
  if (body === null || typeof body !== 'object') throw new BadReview('body is not a JSON object');
  const b = body as { apiVersion?: unknown; kind?: unknown; request?: unknown };
  if (b.kind !== 'AdmissionReview') throw new BadReview('kind must be AdmissionReview');
  if (b.apiVersion !== ADMISSION_API_VERSION) throw new BadReview(`apiVersion must be ${ADMISSION_API_VERSION} (configure admissionReviewVersions: [v1])`);
  const r = b.request as AdmissionRequest | undefined;
  if (r === null || typeof r !== 'object' || typeof r.uid !== 'string' || r.uid === '') throw new BadReview('request.uid is required');
  return r;
}

function review(response: AdmissionResponse): AdmissionReview {
  return { apiVersion: ADMISSION_API_VERSION, kind: 'AdmissionReview', response };
}

/** The workload a pod belongs to: its controlling owner, else the pod itself. */
export function workloadOf(pod: Pod, requestName: string | undefined): { kind: string; name: string } {
  const owner = pod.metadata?.ownerReferences?.find((o) => o.controller === true) ?? pod.metadata?.ownerReferences?.[0];
  if (owner?.kind && owner.name) return { kind: owner.kind, name: owner.name };
  const name = requestName || pod.metadata?.name || (pod.metadata?.generateName ? `${pod.metadata.generateName}*` : '(unnamed)');
  return { kind: 'Pod', name };
}

export interface PodMatch {
  namespace: string;
  workload: { kind: string; name: string };
  applied: AppliedBinding[];
  skipped: SkippedBinding[];
}

export interface PodReviewOptions {
  mode?: BindingMode;
  /** Called after an allowed, non-dry-run admission that applied or skipped bindings (status tracking). */
  onApplied?: (m: PodMatch) => void;
  /** Namespace labels, for the Pod Security enforce level (binding.ts rule 8). Absent: `podSecurityDefault` applies. */
  namespaces?: NamespaceSource;
  /** The cluster's default enforce level (its PodSecurity admission configuration); default `privileged`. */
  podSecurityDefault?: string;
  /** ProfileRecordings: pods they select are annotated for recording (binding.ts R1–R6). */
  recordings?: RecordingSource;
  /** The cluster's recording key: markings are signed with it (binding.ts R4); undefined: nothing is marked. */
  recordingKey?: Buffer;
  /** How long a marking's proof lets nodes start the pod's containers for recording (default 1 h). */
  proofTtlSeconds?: number;
  /** Unix milliseconds; default Date.now. */
  now?: () => number;
}

type NamespaceOptions = Pick<PodReviewOptions, 'mode' | 'namespaces' | 'podSecurityDefault'>;

function namespaceLabels(namespace: string, opts: NamespaceOptions): Readonly<Record<string, string>> | undefined {
  return opts.namespaces?.synced() ? opts.namespaces.labels(namespace) : undefined;
}

/** The binding mode and the Pod Security level a pod of `namespace` is bound under (binding.ts rule 8). */
function namespaceOptions(namespace: string, opts: NamespaceOptions): MutateOptions {
  const labels = namespaceLabels(namespace, opts);
  // A namespace not in the cache yet (just created, or the cache is behind) is taken as
  // restricted: annotations are admitted at every level, so the pod is created either way.
  const podSecurity = opts.namespaces !== undefined && labels === undefined ? 'unknown' : enforceLevel(labels, opts.podSecurityDefault);
  return { mode: opts.mode ?? 'field', podSecurity };
}

/**
 * Binding status from a pod as the API server stored it (the pod informer, used where admission
 * calls cannot be authenticated): the containers that carry their winning binding's profile and
 * those a binding selects but left alone. Undefined when no binding concerns the pod, or its
 * namespace has not opted in (the webhook never saw it).
 */
export function matchOfStoredPod(pod: Pod, source: BindingSource, opts: NamespaceOptions): PodMatch | undefined {
  const namespace = pod.metadata?.namespace;
  const labels = namespace ? namespaceLabels(namespace, opts) : undefined;
  if (!namespace || !labels || !namespaceOptedIn(labels)) return undefined;
  const result = mutatePod(pod, source.list(namespace), namespaceOptions(namespace, opts));
  if ('denied' in result || (result.bound.length === 0 && result.skipped.length === 0)) return undefined;
  return { namespace, workload: workloadOf(pod, pod.metadata?.name), applied: result.bound, skipped: result.skipped };
}

export function reviewPod(body: unknown, source: BindingSource, opts: PodReviewOptions = {}): AdmissionReview {
  const req = parseReview(body);
  const allow = (): AdmissionReview => review({ uid: req.uid, allowed: true });
  const isPods = req.kind?.kind === 'Pod' && (req.kind?.group ?? '') === '' && req.resource?.resource === 'pods';
  // Not ours otherwise: the configuration sends pods CREATE and pods/ephemeralcontainers UPDATE.
  const ephemeral = isPods && req.subResource === 'ephemeralcontainers' && req.operation === 'UPDATE';
  if (!ephemeral && (!isPods || req.subResource || req.operation !== 'CREATE')) return allow();
  const sent = req.object as Pod | undefined;
  if (sent === null || typeof sent !== 'object') throw new BadReview(`request.object is required for ${req.operation}`);
  const stored = req.oldObject as Pod | undefined;
  if (ephemeral && (stored === null || typeof stored !== 'object')) throw new BadReview('request.oldObject is required for a pods/ephemeralcontainers UPDATE');
  // Of a pods/ephemeralcontainers update the API server keeps spec.ephemeralContainers only and
  // drops every other change after admission: the pod is judged as stored (its labels,
  // annotations, pod-level profile), never as the request body claims it (docs/binding.md).
  const pod: Pod = ephemeral ? { ...stored!, spec: { ...stored!.spec, ephemeralContainers: sent.spec?.ephemeralContainers ?? [] } } : sent;
  const namespace = req.namespace || pod.metadata?.namespace;
  if (!namespace) throw new BadReview('request.namespace is required for a namespaced pod');
  // binding.ts rule 9: only the ephemeral containers this update adds.
  const added = ephemeral ? addedEphemeralSlots(pod, stored) : undefined;
  if (added?.length === 0) return allow();
  // Counted before any binding is matched (a pods/ephemeralcontainers update may add thousands).
  const limit = reviewLimitDenial(pod, 0, ephemeral);
  if (limit !== undefined) return review({ uid: req.uid, allowed: false, status: { code: 403, reason: 'Forbidden', message: `spoke: ${limit}` } });
  if (!source.synced()) return notSynced(req.uid);
  // An unsynced recording cache does not hold pods back: a pod not marked for recording only
  // stays under its bindings (never looser), so it is admitted with a warning.
  const recordingsReady = !ephemeral && opts.recordings?.synced() === true;
  const recordingProof = opts.recordingKey
    ? { key: opts.recordingKey, namespace, ...(req.name ? { name: req.name } : {}), now: Math.floor((opts.now ?? Date.now)() / 1000), ttlSeconds: opts.proofTtlSeconds ?? DEFAULT_PROOF_TTL_SECONDS }
    : undefined;
  const result = mutatePod(pod, source.list(namespace), {
    ...namespaceOptions(namespace, opts),
    ...(recordingsReady ? { recordings: opts.recordings!.list(namespace) } : {}),
    ...(recordingProof ? { recordingProof } : {}),
    ...(added ? { ephemeral: added } : {}),
  });
  if ('denied' in result) {
    return review({ uid: req.uid, allowed: false, status: { code: 403, reason: 'Forbidden', message: `spoke: ${result.denied}` } });
  }
  const response: AdmissionResponse = { uid: req.uid, allowed: true };
  if (result.patch.length > 0) {
    response.patchType = 'JSONPatch';
    response.patch = Buffer.from(JSON.stringify(result.patch)).toString('base64');
  }
  const warnings = opts.recordings && !recordingsReady && !ephemeral ? [...result.warnings, 'spoke: ProfileRecording cache not synced yet; the pod was not checked for recording'] : result.warnings;
  if (warnings.length > 0) response.warnings = warnings;
  if ((result.applied.length > 0 || result.skipped.length > 0) && req.dryRun !== true && opts.onApplied) {
    opts.onApplied({ namespace, workload: workloadOf(pod, req.name), applied: result.applied, skipped: result.skipped });
  }
  return review(response);
}

/**
 * Validating webhook for ProfileBinding CREATE and UPDATE. A binding in a namespace that has not
 * opted in is admitted (the label may be set later) with a warning that it binds nothing yet.
 */
export function reviewBinding(body: unknown, namespaces?: NamespaceSource): AdmissionReview {
  const req = parseReview(body);
  const ours = req.kind?.group === GROUP && req.kind?.kind === BINDING_KIND;
  if (!ours || (req.operation !== 'CREATE' && req.operation !== 'UPDATE') || req.subResource) return review({ uid: req.uid, allowed: true });
  const obj = req.object as ProfileBinding | undefined;
  if (obj === null || typeof obj !== 'object') throw new BadReview('request.object is required');
  if (obj.metadata && !obj.metadata.namespace && req.namespace) obj.metadata.namespace = req.namespace;
  const v = validateBinding(obj);
  if (!v.ok) {
    return review({
      uid: req.uid,
      allowed: false,
      status: { code: 422, reason: 'Invalid', message: `ProfileBinding ${v.name} (${API_VERSION}) is invalid: ${v.problems.join('; ')}` },
    });
  }
  const warnings: string[] = [];
  const b = v.binding;
  if (b.target.kind === 'repository' && b.target.ref) {
    warnings.push(`image ${JSON.stringify(b.target.text)} selects every tag and digest of ${b.target.ref.repository}`);
  }
  const namespace = req.namespace ?? obj.metadata?.namespace;
  if (b.target.kind === 'any' && b.rank[1] === 0 && b.rank[2] === 0) {
    warnings.push(`image "*" without podSelector or containers selects every container of every pod in namespace ${namespace ?? '(unknown)'}`);
  }
  // A namespace the cache does not hold (yet) gets no word either way.
  const labels = namespace && namespaces?.synced() ? namespaces.labels(namespace) : undefined;
  if (namespace && labels && !namespaceOptedIn(labels)) warnings.push(notOptedInMessage(namespace));
  return review({ uid: req.uid, allowed: true, ...(warnings.length ? { warnings } : {}) });
}

/** The node a ServiceAccount token was bound to (pod-bound tokens, Kubernetes 1.30+), as the API server authenticated it. */
export const NODE_NAME_EXTRA = 'authentication.kubernetes.io/node-name';

/**
 * The node recorders' ServiceAccount, NAMESPACE:NAME: the one deploy/controller/rbac.yaml binds
 * the ClusterRole spoke-recorder (profilerecordingresults create and get) to.
 */
export const RECORDER_SERVICE_ACCOUNT = 'spoke-system:spoke-recorder';

/** The username the API server authenticates the tokens of ServiceAccount NAMESPACE:NAME as. */
export function serviceAccountUser(account: string): string {
  return `system:serviceaccount:${account}`;
}

/** Longest username a denial shows: a ServiceAccount's is at most 22 + 63 + 1 + 253 characters. */
const MAX_SHOWN_USER_CHARS = 339;

/**
 * Validating webhook for ProfileRecordingResult CREATE: the requester must be `recorderUser`
 * (the node recorders' ServiceAccount, `system:serviceaccount:NAMESPACE:NAME`), and the result's
 * `spec.node` the node its credentials are bound to (userInfo.extra, filled in by the API server
 * from the recorder pod's ServiceAccount token). A recorder can then only report for its own
 * node, and the reconciler accepts results only for pods scheduled there (docs/recording.md). The
 * node claim alone does not tell who asks: an authenticator or an impersonation grant can give
 * it to any identity.
 */
export function reviewResult(body: unknown, recorderUser: string): AdmissionReview {
  const req = parseReview(body);
  const ours = req.kind?.group === GROUP && req.kind?.kind === RESULT_KIND;
  if (!ours || req.operation !== 'CREATE' || req.subResource) return review({ uid: req.uid, allowed: true });
  const obj = req.object as ProfileRecordingResult | undefined;
  if (obj === null || typeof obj !== 'object') throw new BadReview('request.object is required');
  const userInfo = req.userInfo as { username?: unknown; extra?: Record<string, unknown> } | undefined;
  const deny = (message: string) => review({ uid: req.uid, allowed: false, status: { code: 403, reason: 'Forbidden', message: `spoke: ${message}` } });
  const user = userInfo?.username;
  if (user !== recorderUser) {
    const actual = typeof user === 'string' ? JSON.stringify(user.slice(0, MAX_SHOWN_USER_CHARS)) : 'no user';
    return deny(`a ProfileRecordingResult is created only by the node recorders' ServiceAccount ${JSON.stringify(recorderUser)}; this request is from ${actual}`);
  }
  const extra = userInfo?.extra?.[NODE_NAME_EXTRA];
  const nodes = Array.isArray(extra) ? extra.filter((n): n is string => typeof n === 'string' && n !== '') : [];
  const claimed = obj.spec?.node;
  if (nodes.length !== 1) return deny(`a ProfileRecordingResult is created by a node's recorder with a node-bound ServiceAccount token (userInfo.extra ${NODE_NAME_EXTRA}); this request has ${nodes.length === 0 ? 'none' : 'several'}`);
  if (claimed !== nodes[0]) return deny(`spec.node ${JSON.stringify(String(claimed).slice(0, 253))} is not the requester's node ${JSON.stringify(nodes[0]!.slice(0, 253))}`);
  return review({ uid: req.uid, allowed: true });
}

/**
 * Validating webhook for pod UPDATE. The kubelet builds each CreateContainer's sandbox config
 * from the current pod, so annotations changed after admission reach the shim at the next
 * container start:
 * - a `recording.spoke.dev/*` annotation may be removed but never added or changed: otherwise a
 *   pod author could copy a proof onto a pod the webhook saw without one (docs/recording.md);
 * - an annotation-mode profile annotation (`seccomp|apparmor.profiles.spoke.dev/*`) is never
 *   added, changed or removed: removing the one a binding wrote would start the container under
 *   plain RuntimeDefault, changing it would swap the bound profile (docs/annotation-mode.md);
 * - a container's image changes only where the bindings give the new image the profile the
 *   container carries: the profile decided at creation stays with the container whatever it
 *   runs (profilesMovedByImages); and, as at creation, never to an image ID where a binding
 *   names images. Not in a Windows pod: no binding gave it a profile nor may give it one
 *   (binding.ts rule 10), so its images change freely.
 */
export function reviewPodUpdate(body: unknown, source: BindingSource): AdmissionReview {
  const req = parseReview(body);
  const annotations = (o: unknown): Record<string, unknown> => ((o as Pod | null | undefined)?.metadata?.annotations as Record<string, unknown> | undefined) ?? {};
  const isProfileKey = (k: string) => PROFILE_KINDS.some((kind) => k.startsWith(ANNOTATION_PREFIX[kind]));
  // A Binding (pods/binding, or the older bindings resource) merges its annotations into the pod.
  const isBinding = req.operation === 'CREATE' && (req.kind?.group ?? '') === '' && ((req.resource?.resource === 'pods' && req.subResource === 'binding') || (req.resource?.resource === 'bindings' && !req.subResource));
  if (isBinding) {
    const spoke = Object.keys(annotations(req.object)).filter((k) => k.startsWith(POD_RECORDING_PREFIX) || isProfileKey(k)).sort();
    return spoke.length > 0 ? refuseUpdate(req.uid, spoke, "a Binding's annotations join the pod's, and spoke's are set by its webhook when the pod is created, never later") : review({ uid: req.uid, allowed: true });
  }
  // pods/status too: a status update stores the annotations it carries (only spec is reset).
  const isPod = req.kind?.kind === 'Pod' && (req.kind?.group ?? '') === '' && req.resource?.resource === 'pods' && (!req.subResource || req.subResource === 'status');
  if (!isPod || req.operation !== 'UPDATE') return review({ uid: req.uid, allowed: true });
  const now = annotations(req.object);
  const before = annotations(req.oldObject);
  const recording = Object.keys(now)
    .filter((k) => k.startsWith(POD_RECORDING_PREFIX) && now[k] !== before[k])
    .sort();
  if (recording.length > 0) return refuseUpdate(req.uid, recording, "recording annotations are set by spoke's webhook when the pod is created, never later");
  const profile = [...new Set([...Object.keys(now), ...Object.keys(before)])]
    .filter((k) => isProfileKey(k) && now[k] !== before[k])
    .sort();
  if (profile.length > 0) return refuseUpdate(req.uid, profile, 'profile annotations are set when the pod is created, never changed later');
  // A container's image may change in place (the kubelet restarts it with the new one): the
  // profile it carries must be the one its bindings give the new image.
  const changed = imageChanges(req.oldObject as Pod | undefined, req.object as Pod | undefined);
  // A Windows pod as stored was created without a profile and may be given none (spec.os is
  // immutable, so the update's pod is one too).
  if (changed.length === 0 || isWindowsPod(req.oldObject as Pod | undefined)) return review({ uid: req.uid, allowed: true });
  const namespace = req.namespace || (req.object as Pod | undefined)?.metadata?.namespace;
  if (!namespace) throw new BadReview('request.namespace is required for a namespaced pod');
  if (!source.synced()) return notSynced(req.uid);
  const bindings = source.list(namespace);
  const after = req.object as Pod;
  // Each changed container is matched against every binding, as at creation.
  const limit = reviewLimitDenial(after, bindings.length, false);
  if (limit !== undefined) return review({ uid: req.uid, allowed: false, status: { code: 403, reason: 'Forbidden', message: `spoke: ${limit}` } });
  // Held to the rules a create is held to: an invalid binding that may select the new image (one
  // it names, an image ID), and an image ID where a binding names images.
  const changedSlots = slotsOf(after).filter((slot) => changed.includes(`${slot.list}/${slot.container.name}`));
  const byId = [...invalidBindingDenials(bindings, changedSlots), ...imageIdDenials(changedSlots, podSelected(after, bindings))];
  if (byId.length > 0) return review({ uid: req.uid, allowed: false, status: { code: 403, reason: 'Forbidden', message: `spoke: ${byId.join('; ')}` } });
  const moved = profilesMovedByImages(req.oldObject as Pod, after, bindings, changed);
  if (moved.length === 0) return review({ uid: req.uid, allowed: true });
  const shown = moved.slice(0, 5).map((slot) => `${slot.startsWith('initContainers/') ? 'init container' : 'container'} "${slot.slice(slot.indexOf('/') + 1).slice(0, 63)}"`);
  return review({
    uid: req.uid,
    allowed: false,
    status: { code: 403, reason: 'Forbidden', message: `spoke: ${shown.join(', ')}: its ProfileBindings give the new image another profile than the one it carries; recreate the pod instead (docs/binding.md)` },
  });
}

/** `<list>/<name>` of each container whose image differs between the two pods. */
function imageChanges(before: Pod | undefined, after: Pod | undefined): string[] {
  const images = (p: Pod | undefined) => new Map(slotsOf(p ?? {}).map((s) => [`${s.list}/${s.container.name}`, s.container.image]));
  const old = images(before);
  return [...images(after)].filter(([slot, image]) => old.has(slot) && old.get(slot) !== image).map(([slot]) => slot);
}

function notSynced(uid: string): AdmissionReview {
  return review({ uid, allowed: false, status: { code: 503, reason: 'ServiceUnavailable', message: 'spoke: ProfileBinding cache not synced yet; retry shortly' } });
}

function refuseUpdate(uid: string, keys: string[], why: string): AdmissionReview {
  const shown = keys.slice(0, 5).map((k) => k.slice(0, 80));
  return review({ uid, allowed: false, status: { code: 403, reason: 'Forbidden', message: `spoke: ${shown.join(', ')}${keys.length > 5 ? ', …' : ''}: ${why}` } });
}
