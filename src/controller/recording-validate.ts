// Validation of ProfileRecordings and of their results: a recording's spec, whether a result
// belongs to a recording, whether its node may report it, and whether it is complete.

import { verifyRecordingProof } from '../core/recording-proof.js';
import { parseRepositoryRef, type RepositoryRef } from '../core/reference.js';
import { X86_SYSCALL_NAMES, type OciRuntime } from '../profiles/seccomp/index.js';
import {
  MAX_CONTAINERS_PER_RECORDING,
  MAX_SYSCALLS_PER_RESULT,
  POD_RECORDING_ANNOTATION,
  POD_RECORDING_CONTAINERS_ANNOTATION,
  POD_RECORDING_PROOF_ANNOTATION,
  RECORDING_KIND,
  type CompiledRecording,
  type MergeStrategy,
  type ProfileRecordingResult,
  type ProfileRecordingResultSpec,
} from './recording-crd.js';
import { selectorProblems } from './selector.js';
import type { LabelSelector, ObjectMeta, Pod } from './types.js';

const CONTAINER_NAME_RE = /^[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?$/;
const SIGN_WITH_RE = /^[A-Za-z0-9][-._A-Za-z0-9]{0,252}$/;
const RUNTIMES: readonly OciRuntime[] = ['runc', 'crun'];

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
