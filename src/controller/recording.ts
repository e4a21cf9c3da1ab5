// ProfileRecording (spoke.dev/v1alpha1, namespaced) and ProfileRecordingResult: the CRDs'
// TypeScript shapes and the pure half of the recording controller (issue 8 "Recording").
// Schemas: deploy/crds/profilerecording.yaml.
//
//  - Node recorders (`spoke recorder`) report one ProfileRecordingResult per container that ran
//    in a pod carrying the annotation `recording.spoke.dev/name: <recording>`, owned by the
//    recording (garbage-collected with it).
//  - The user finalizes a recording by annotating it `recording.spoke.dev/finalize: <token>`
//    (any non-empty value). The reconciler then unions the results per `mergeStrategy` — None:
//    one profile per container name; Containers: one profile for every container — builds each
//    profile with `buildRecordedProfile` (deterministic bytes, validated as an artifact),
//    pushes, signs, writes the references to status and, with `bind: true`, creates bindings.
//    A finalized recording is a snapshot: later results are counted but change nothing until
//    the annotation is given a new value.
//
// Everything here is pure: the reconciler (recording-reconciler.ts) does the I/O.

import { sha256Digest } from '../core/digest.js';
import { SpokeError } from '../core/errors.js';
import { RECORDING_PROOF_ANNOTATION, verifyRecordingProof } from '../core/recording-proof.js';
import { parseRepositoryRef, type RepositoryRef } from '../core/reference.js';
import { buildRecordedProfile, RUNTIME_STARTUP_SYSCALLS, X86_SYSCALL_NAMES, type OciRuntime, type SeccompProfile } from '../profiles/seccomp/index.js';
import { ImageParseError, parseImage } from './image.js';
import { selectorProblems } from './selector.js';
import { API_VERSION, BINDING_KIND, type Condition, type LabelSelector, type ObjectMeta, type Pod, type ProfileBinding } from './types.js';
import { validateBinding } from './validate.js';

export const RECORDING_KIND = 'ProfileRecording';
export const RECORDING_PLURAL = 'profilerecordings';
export const RESULT_KIND = 'ProfileRecordingResult';
export const RESULT_PLURAL = 'profilerecordingresults';

/** On pods (set by the binding webhook or by hand): the recording the pod's containers are recorded for. */
export const POD_RECORDING_ANNOTATION = 'recording.spoke.dev/name';
/** On pods (set by the binding webhook when not every container is recorded): `a,b`, the containers the shim records. */
export const POD_RECORDING_CONTAINERS_ANNOTATION = 'recording.spoke.dev/containers';
/** On pods (set by the binding webhook): its HMAC over the marking (src/core/recording-proof.ts); the shim verifies it. */
export const POD_RECORDING_PROOF_ANNOTATION = RECORDING_PROOF_ANNOTATION;
/** Every pod annotation under this prefix is the controller's: the webhook removes any it did not set. */
export const POD_RECORDING_PREFIX = 'recording.spoke.dev/';
/** How long a proof lets the node start a marked pod's containers under the logging profile (default). */
export const DEFAULT_PROOF_TTL_SECONDS = 3600;
/** On recordings (set by the user): finalize now; a new value finalizes again. */
export const FINALIZE_ANNOTATION = 'recording.spoke.dev/finalize';
/** On results, created bindings and marked pods: the recording they belong to (recordingLabelValue). */
export const RECORDING_LABEL = 'recording.spoke.dev/name';

export const MAX_RESULTS_PER_RECORDING = 1000;
/** The node recorder's own cap (DEFAULT_LIMITS.maxSyscallsPerContainer); the CRD says the same. */
export const MAX_SYSCALLS_PER_RESULT = 1024;
export const MAX_UNNAMED_CALLS = 64;
export const MAX_CONTAINERS_PER_RECORDING = 64;
const MAX_NAME = 253;
const MAX_TAG = 128;
const CONTAINER_NAME_RE = /^[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?$/;
const SIGN_WITH_RE = /^[A-Za-z0-9][-._A-Za-z0-9]{0,252}$/;
const RUNTIMES: readonly OciRuntime[] = ['runc', 'crun'];

export type MergeStrategy = 'None' | 'Containers';
export type RecordingPhase = 'Recording' | 'Finalizing' | 'Completed' | 'Failed';

export interface ProfileRecordingSpec {
  podSelector: LabelSelector;
  /** Container names to record; all containers when absent. */
  containers?: string[];
  mergeStrategy?: MergeStrategy;
  publish: {
    /** `host[:port]/path`, no tag or digest; must be allowed by the controller (--recording-repositories). */
    repository: string;
    /** Name of a key file in the controller's signing-key directory (a mounted Secret's key). */
    signWith?: string;
  };
  bind?: boolean;
}

export interface RecordedProfileStatus {
  /** The container names the profile was built for (one with mergeStrategy None). */
  containers: string[];
  reference: string;
  syscalls: number;
  results: number;
  signed?: boolean;
  /** The binding `image` derived from the recorded images (see bindingImage). */
  image: string;
  /** The ProfileBinding created for it (bind: true). */
  binding?: string;
}

export interface ProfileRecordingStatus {
  phase?: RecordingPhase;
  observedGeneration?: number;
  /** Results seen for this recording. */
  results?: number;
  /** The finalize annotation value the profiles were built for. */
  finalizeToken?: string;
  profiles?: RecordedProfileStatus[];
  conditions?: Condition[];
}

export interface ProfileRecording {
  apiVersion?: string;
  kind?: string;
  metadata: ObjectMeta;
  spec: ProfileRecordingSpec;
  status?: ProfileRecordingStatus;
}

export interface ProfileRecordingResultSpec {
  recording: string;
  pod: string;
  container: string;
  containerID?: string;
  /** The image the container ran (as the runtime reports it). */
  image?: string;
  runtime: OciRuntime;
  node: string;
  /** Recorded syscall names, sorted. */
  syscalls: string[];
  /** Audit records the kernel reported lost while the container ran: > 0 makes the result incomplete. */
  lostRecords?: number;
  /** `arch:number` of calls the recorder could not name: non-empty makes the result incomplete. */
  unnamedCalls?: string[];
}

export interface ProfileRecordingResult {
  apiVersion?: string;
  kind?: string;
  metadata: ObjectMeta;
  spec: ProfileRecordingResultSpec;
}

// ---- validation ----

export interface CompiledRecording {
  namespace: string;
  name: string;
  uid: string | undefined;
  podSelector: LabelSelector;
  containers: ReadonlySet<string> | undefined;
  mergeStrategy: MergeStrategy;
  repository: RepositoryRef;
  signWith: string | undefined;
  bind: boolean;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

export type RecordingValidation = { ok: true; recording: CompiledRecording } | { ok: false; problems: string[] };

export function validateRecording(obj: unknown): RecordingValidation {
  const problems: string[] = [];
  const bad = (path: string, why: string) => problems.push(`${path}: ${why}`);
  if (!isObject(obj) || !isObject(obj.metadata)) return { ok: false, problems: ['not an object with metadata'] };
  const meta = obj.metadata as ObjectMeta;
  if (typeof meta.name !== 'string' || meta.name === '') bad('metadata.name', 'required');
  const spec = obj.spec;
  if (!isObject(spec)) return { ok: false, problems: [...problems, 'spec: required'] };
  for (const k of Object.keys(spec)) if (!['podSelector', 'containers', 'mergeStrategy', 'publish', 'bind'].includes(k)) bad(`spec.${k}`, 'unknown field');
  if (spec.podSelector === undefined) bad('spec.podSelector', 'required');
  else problems.push(...selectorProblems(spec.podSelector, 'spec.podSelector'));
  let containers: Set<string> | undefined;
  if (spec.containers !== undefined) {
    if (!Array.isArray(spec.containers) || spec.containers.length === 0 || spec.containers.length > MAX_CONTAINERS_PER_RECORDING) {
      bad('spec.containers', `must be a list of 1 to ${MAX_CONTAINERS_PER_RECORDING} container names (omit it for all containers)`);
    } else {
      containers = new Set();
      for (const c of spec.containers as unknown[]) {
        if (typeof c !== 'string' || !CONTAINER_NAME_RE.test(c)) bad('spec.containers', `${JSON.stringify(c)} is not a container name (DNS label)`);
        else containers.add(c);
      }
    }
  }
  const strategy = spec.mergeStrategy ?? 'None';
  if (strategy !== 'None' && strategy !== 'Containers') bad('spec.mergeStrategy', 'must be None or Containers');
  let repository: RepositoryRef | undefined;
  let signWith: string | undefined;
  if (!isObject(spec.publish)) bad('spec.publish', 'required: {repository, signWith?}');
  else {
    for (const k of Object.keys(spec.publish)) if (k !== 'repository' && k !== 'signWith') bad(`spec.publish.${k}`, 'unknown field');
    const r = spec.publish.repository;
    if (typeof r !== 'string' || r === '') bad('spec.publish.repository', 'required: host[:port]/path');
    else if (r.includes('@')) bad('spec.publish.repository', 'a repository, without digest');
    else {
      try {
        repository = parseRepositoryRef(r);
        if (repository.tag !== undefined) {
          bad('spec.publish.repository', 'a repository, without tag (the controller tags each profile <recording>[-<container>])');
          repository = undefined;
        }
      } catch (e) {
        bad('spec.publish.repository', (e as Error).message);
      }
    }
    const s = spec.publish.signWith;
    if (s !== undefined) {
      if (typeof s !== 'string' || !SIGN_WITH_RE.test(s) || s === '.' || s === '..') bad('spec.publish.signWith', 'must be a key name of the signing-key Secret (letters, digits, -, _, .)');
      else signWith = s;
    }
  }
  if (spec.bind !== undefined && typeof spec.bind !== 'boolean') bad('spec.bind', 'must be true or false');
  if (problems.length > 0 || repository === undefined) return { ok: false, problems };
  return {
    ok: true,
    recording: {
      namespace: meta.namespace ?? '',
      name: meta.name as string,
      uid: meta.uid,
      podSelector: spec.podSelector as LabelSelector,
      containers,
      mergeStrategy: strategy as MergeStrategy,
      repository,
      signWith,
      bind: spec.bind === true,
    },
  };
}

/** Whether a result belongs to the recording: same namespace and name, and (when set) owned by this very object (uid). */
export function resultBelongs(r: ProfileRecordingResult, rec: { namespace: string; name: string; uid: string | undefined }): boolean {
  if ((r.metadata?.namespace ?? '') !== rec.namespace || r.spec?.recording !== rec.name) return false;
  const owners = r.metadata.ownerReferences ?? [];
  const mine = owners.filter((o) => o.kind === RECORDING_KIND);
  if (mine.length === 0) return true;
  return rec.uid === undefined || mine.some((o) => o.uid === rec.uid);
}

/**
 * Why a result is not accepted from its node, or undefined when it is. A node recorder can
 * post any result; the controller takes it only for a pod the webhook marked for this very
 * recording (the marking's proof verifies under the recording key; its expiry does not matter
 * here, the pod was admitted), that the pod cache shows scheduled on the node the result names,
 * for a container the marking records. So one node cannot add calls to a recording through
 * pods that run elsewhere. `pod` is the controller's cached view of `spec.pod`.
 */
export function resultNodeProblem(r: ProfileRecordingResult, rec: { namespace: string; name: string }, pod: Pod | undefined, key: Buffer | undefined): string | undefined {
  const podName = typeof r.spec?.pod === 'string' ? r.spec.pod : '';
  const what = `pod ${rec.namespace}/${podName.slice(0, 253)}`;
  if (key === undefined) return 'the controller has no recording key (--recording-key), so no pod is marked for recording';
  if (pod === undefined) return `${what} is not a pod marked for recording in the controller's view`;
  const ann = pod.metadata?.annotations ?? {};
  if (ann[POD_RECORDING_ANNOTATION] !== rec.name) return `${what} is not marked for recording ${rec.name}`;
  const list = ann[POD_RECORDING_CONTAINERS_ANNOTATION];
  const containers = list === undefined ? undefined : list.split(',').map((c) => c.trim()).filter((c) => c !== '');
  const seen = { namespace: rec.namespace, podName, recording: rec.name, containers };
  if (!verifyRecordingProof(key, ann[POD_RECORDING_PROOF_ANNOTATION], seen, 0, { ignoreExpiry: true }).ok) return `${what} carries no valid marking from the webhook`;
  const nodeName = pod.spec?.nodeName;
  if (typeof nodeName !== 'string' || nodeName === '' || nodeName !== r.spec.node) {
    return `reported by node ${JSON.stringify(String(r.spec.node).slice(0, 253))}, but ${what} ${typeof nodeName === 'string' && nodeName !== '' ? `runs on node ${nodeName}` : 'is not scheduled'}`;
  }
  const inPod = [...(pod.spec?.containers ?? []), ...(pod.spec?.initContainers ?? [])].some((c) => c.name === r.spec.container);
  if (!inPod || (containers !== undefined && !containers.includes(r.spec.container))) return `${what} does not record a container named ${JSON.stringify(String(r.spec.container).slice(0, 64))}`;
  return undefined;
}

/** A problem with one result; `malformed` when the result itself is wrong, not just incomplete. */
export interface ResultProblem {
  text: string;
  malformed: boolean;
}

/** Problems with one result (shape, names in the x86 tables, caps, completeness). */
export function resultProblems(r: ProfileRecordingResult): ResultProblem[] {
  const name = r.metadata?.name ?? '(unnamed)';
  const out: ResultProblem[] = [];
  const add = (text: string, malformed: boolean) => out.push({ text: `${name}: ${text}`, malformed });
  const s = r.spec as Partial<ProfileRecordingResultSpec> | undefined;
  if (!isObject(s)) return [{ text: `${name}: spec required`, malformed: false }];
  if (typeof s.container !== 'string' || !CONTAINER_NAME_RE.test(s.container)) add('spec.container is not a container name', true);
  if (!RUNTIMES.includes(s.runtime as OciRuntime)) add('spec.runtime must be runc or crun', true);
  if (!Array.isArray(s.syscalls) || s.syscalls.length > MAX_SYSCALLS_PER_RESULT) add(`spec.syscalls must be a list of at most ${MAX_SYSCALLS_PER_RESULT} names`, true);
  else {
    const unknown = s.syscalls.filter((n) => typeof n !== 'string' || !X86_SYSCALL_NAMES.has(n));
    if (unknown.length > 0) add(`not x86 syscall names: ${unknown.slice(0, 5).map((n) => JSON.stringify(String(n).slice(0, 64))).join(', ')}`, true);
    if (s.syscalls.length === 0) add('no syscalls were recorded (the container did not run under the logging profile?)', false);
  }
  if (typeof s.lostRecords === 'number' && s.lostRecords > 0) add(`the kernel lost ${s.lostRecords} audit record(s) while it ran`, false);
  if (Array.isArray(s.unnamedCalls) && s.unnamedCalls.length > 0) add(`calls spoke cannot name (${s.unnamedCalls.slice(0, 8).join(', ')})`, false);
  return out;
}

// ---- union and build ----

export interface PlannedProfile {
  /** Container name (None) or `*` (Containers). */
  key: string;
  containers: string[];
  images: string[];
  runtimes: OciRuntime[];
  /** Names of the results that went in, sorted. */
  results: string[];
  syscalls: string[];
  /** Tag the profile is pushed under. */
  tag: string;
  profile: SeccompProfile;
  bytes: Buffer;
}

function hashSuffix(text: string, n = 8): string {
  return sha256Digest(text).slice('sha256:'.length, 'sha256:'.length + n);
}

/** `<base>-<suffix>` within `max` characters: the base is shortened and a hash keeps names distinct. */
export function childName(base: string, suffix: string | undefined, max = MAX_NAME): string {
  const full = suffix === undefined ? base : `${base}-${suffix}`;
  if (full.length <= max) return full;
  const h = hashSuffix(full);
  const tail = suffix === undefined ? h : `${h}-${suffix}`;
  return `${base.slice(0, Math.max(1, max - tail.length - 1)).replace(/[-.]+$/, '')}-${tail}`;
}

/**
 * Unions the results per strategy and builds one profile per group. Throws SpokeError
 * FailedPrecondition when there is nothing to build from (no results, or none for the listed
 * containers) or when a result is incomplete, InvalidArgument for a malformed result.
 * Deterministic: the same results in any order give the same bytes.
 */
export function planProfiles(rec: CompiledRecording, all: readonly ProfileRecordingResult[]): PlannedProfile[] {
  const results = all.filter((r) => resultBelongs(r, rec)).filter((r) => !rec.containers || rec.containers.has(r.spec?.container));
  if (results.length === 0) {
    throw new SpokeError('FailedPrecondition', `no recording results for ${rec.namespace}/${rec.name}${rec.containers ? ` (containers ${[...rec.containers].join(', ')})` : ''}: refusing to build an empty profile`, {
      rule: 'empty-recording',
    }, { reason: 'RECORDING_EMPTY' });
  }
  if (results.length > MAX_RESULTS_PER_RECORDING) throw new SpokeError('FailedPrecondition', `${results.length} results: more than ${MAX_RESULTS_PER_RECORDING}`, { limit: MAX_RESULTS_PER_RECORDING }, { reason: 'LIMIT_EXCEEDED' });
  const found = results.flatMap(resultProblems);
  if (found.length > 0) {
    const malformed = found.some((p) => p.malformed);
    const problems = found.map((p) => p.text).sort();
    throw new SpokeError(
      malformed ? 'InvalidArgument' : 'FailedPrecondition',
      `incomplete or invalid recording results: ${problems.slice(0, 8).join('; ')}${problems.length > 8 ? ` (and ${problems.length - 8} more)` : ''}`,
      { rule: 'incomplete-recording' },
      { reason: 'RECORDING_INVALID' },
    );
  }
  const groups = new Map<string, ProfileRecordingResult[]>();
  for (const r of results) {
    const key = rec.mergeStrategy === 'Containers' ? '*' : r.spec.container;
    groups.set(key, [...(groups.get(key) ?? []), r]);
  }
  const out: PlannedProfile[] = [];
  for (const key of [...groups.keys()].sort()) {
    const rs = groups.get(key) as ProfileRecordingResult[];
    const syscalls = new Set<string>();
    for (const r of rs) for (const s of r.spec.syscalls) syscalls.add(s);
    const runtimes = [...new Set(rs.map((r) => r.spec.runtime))].sort();
    // Mixed runtimes (nodes with runc and crun): the first builds, the others' start-up sets join the recorded calls.
    const withStartup = new Set(syscalls);
    for (const rt of runtimes.slice(1)) for (const s of RUNTIME_STARTUP_SYSCALLS[rt]) withStartup.add(s);
    const { profile, bytes } = buildRecordedProfile(withStartup, runtimes[0] as OciRuntime);
    const containers = [...new Set(rs.map((r) => r.spec.container))].sort();
    out.push({
      key,
      containers,
      images: [...new Set(rs.map((r) => r.spec.image).filter((i): i is string => typeof i === 'string' && i !== ''))].sort(),
      runtimes,
      results: rs.map((r) => r.metadata.name ?? '').sort(),
      syscalls: [...syscalls].sort(),
      tag: childName(rec.name, key === '*' ? undefined : key, MAX_TAG),
      profile,
      bytes,
    });
  }
  return out;
}

// ---- publishing and binding ----

/**
 * Whether the controller may push to `repository` for a recording in `namespace`. Patterns come
 * from the controller's --recording-repositories; `{namespace}` is replaced by the recording's
 * namespace; a pattern ending in `/` allows every repository below it, otherwise it is exact.
 */
export function repositoryAllowed(repo: RepositoryRef, namespace: string, patterns: readonly string[]): boolean {
  const name = `${repo.registry}/${repo.repository}`;
  for (const p of patterns) {
    const pat = p.split('{namespace}').join(namespace);
    if (pat.endsWith('/') ? name.startsWith(pat) && name.length > pat.length : name === pat) return true;
  }
  return false;
}

/**
 * The binding `image` for a profile: the recorded image when there is one and it has a tag
 * (that tag); its repository when only a digest is known or several tags of one repository were
 * recorded; `*` when several repositories were (podSelector and containers still narrow it).
 */
export function bindingImage(images: readonly string[]): string {
  const parsed = [];
  for (const i of images) {
    try {
      parsed.push(parseImage(i));
    } catch (e) {
      if (!(e instanceof ImageParseError)) throw e;
    }
  }
  if (parsed.length === 0) return '*';
  const repos = new Set(parsed.map((p) => p.repository));
  if (repos.size > 1) return '*';
  const first = parsed[0]!;
  const tags = new Set(parsed.map((p) => p.tag ?? (p.digest === undefined ? 'latest' : '')));
  if (tags.size === 1 && !tags.has('')) return `${first.repository}:${[...tags][0]}`;
  return first.repository;
}

/** RECORDING_LABEL's value: the name when it fits a label value, else a hash of it. */
export function recordingLabelValue(name: string): string {
  return name.length <= 63 ? name : hashSuffix(name, 16);
}

export function bindingName(rec: { name: string }, p: Pick<PlannedProfile, 'key'>): string {
  return childName(rec.name, p.key === '*' ? undefined : p.key);
}

/** The ProfileBinding for a published profile; validated with the webhook's own validation. */
export function bindingFor(rec: CompiledRecording, p: { key: string; containers: readonly string[]; image: string }, reference: string): ProfileBinding {
  const b: ProfileBinding = {
    apiVersion: API_VERSION,
    kind: BINDING_KIND,
    metadata: {
      name: bindingName(rec, p),
      namespace: rec.namespace,
      labels: { [RECORDING_LABEL]: recordingLabelValue(rec.name) },
      annotations: { [POD_RECORDING_ANNOTATION]: rec.name },
    },
    spec: {
      kind: 'seccomp',
      reference,
      image: p.image,
      podSelector: rec.podSelector,
      containers: [...p.containers],
    },
  };
  const v = validateBinding(b);
  if (!v.ok) throw new SpokeError('Internal', `generated binding ${b.metadata.name} is invalid: ${v.problems.join('; ')}`, {}, { reason: 'INVARIANT' });
  return b;
}

/** Status equality that ignores lastTransitionTime-only differences from a recomputation. */
export function sameStatus(a: ProfileRecordingStatus | undefined, b: ProfileRecordingStatus | undefined): boolean {
  return JSON.stringify(a ?? {}) === JSON.stringify(b ?? {});
}
