// Validation of ProfileRecordings and of their results: a recording's spec, whether a result
// belongs to a recording, whether its node may report it, and whether it is complete.

import { verifyRecordingProof } from '../core/recording-proof.js';
import { parseRepositoryRef, type RepositoryRef } from '../core/reference.js';
import { X86_SYSCALL_NAMES } from '../profiles/seccomp/index.js';
import {
  POD_RECORDING_ANNOTATION,
  POD_RECORDING_CONTAINERS_ANNOTATION,
  POD_RECORDING_PROOF_ANNOTATION,
  RECORDING_KIND,
  type CompiledRecording,
  type ProfileRecording,
  type ProfileRecordingResult,
} from './recording-crd.js';
import { memoByObject } from './memo.js';
import { crdProblem } from './schema.js';
import { selectorProblems } from './selector.js';
import type { Pod } from './types.js';

export type RecordingValidation = { ok: true; recording: CompiledRecording } | { ok: false; problems: string[] };

/**
 * The CRD schema first (deploy/crds/profilerecording.yaml: fields, types, enums, bounds), then
 * what it cannot say: the selector's label syntax and the repository through the node's parser.
 * Once per object (memo.ts).
 */
export const validateRecording: (obj: unknown) => RecordingValidation = memoByObject(validateRecordingUncached);

function validateRecordingUncached(obj: unknown): RecordingValidation {
  const shape = crdProblem('ProfileRecording', obj);
  if (shape !== undefined) return { ok: false, problems: [shape] };
  const { metadata: meta, spec } = obj as ProfileRecording;
  const problems: string[] = [];
  const bad = (path: string, why: string) => problems.push(`${path}: ${why}`);
  // The API server always sets it; an object from elsewhere may not.
  if (typeof meta?.name !== 'string' || meta.name === '') bad('metadata.name', 'required');
  problems.push(...selectorProblems(spec.podSelector, 'spec.podSelector'));
  let repository: RepositoryRef | undefined;
  try {
    repository = parseRepositoryRef(spec.publish.repository);
    if (repository.tag !== undefined) {
      bad('spec.publish.repository', 'a repository, without tag (the controller tags each profile <recording>[-<container>])');
      repository = undefined;
    }
  } catch (e) {
    bad('spec.publish.repository', (e as Error).message);
  }
  if (problems.length > 0 || repository === undefined) return { ok: false, problems };
  return {
    ok: true,
    recording: {
      namespace: meta.namespace ?? '',
      name: meta.name as string,
      uid: meta.uid,
      podSelector: spec.podSelector,
      containers: spec.containers === undefined ? undefined : new Set(spec.containers),
      mergeStrategy: spec.mergeStrategy ?? 'None',
      repository,
      signWith: spec.publish.signWith,
      bind: spec.bind === true,
    },
  };
}

/**
 * Whether a result belongs to the recording: same namespace and name, and owned by this very
 * object (uid). Recorders always set the owner; an unowned result would count for every
 * recording of that name and never be garbage-collected with one.
 */
export function resultBelongs(r: ProfileRecordingResult, rec: { namespace: string; name: string; uid: string | undefined }): boolean {
  if ((r.metadata?.namespace ?? '') !== rec.namespace || r.spec?.recording !== rec.name) return false;
  const mine = (r.metadata.ownerReferences ?? []).filter((o) => o.kind === RECORDING_KIND);
  if (mine.length === 0) return false;
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

/** Problems with one result (its CRD schema, names in the x86 tables, completeness). */
export function resultProblems(r: ProfileRecordingResult): ResultProblem[] {
  const name = r.metadata?.name ?? '(unnamed)';
  if (r.spec === null || typeof r.spec !== 'object') return [{ text: `${name}: spec required`, malformed: false }];
  const shape = crdProblem('ProfileRecordingResult', r);
  if (shape !== undefined) return [{ text: `${name}: ${shape}`, malformed: true }];
  const out: ResultProblem[] = [];
  const add = (text: string, malformed: boolean) => out.push({ text: `${name}: ${text}`, malformed });
  const s = r.spec;
  const unknown = s.syscalls.filter((n) => !X86_SYSCALL_NAMES.has(n));
  if (unknown.length > 0) add(`not x86 syscall names: ${unknown.slice(0, 5).map((n) => JSON.stringify(n)).join(', ')}`, true);
  if (s.syscalls.length === 0) add('no syscalls were recorded (the container did not run under the logging profile?)', false);
  if (s.lostRecords !== undefined && s.lostRecords > 0) add(`the kernel lost ${s.lostRecords} audit record(s) while it ran`, false);
  if (s.unnamedCalls !== undefined && s.unnamedCalls.length > 0) add(`calls spoke cannot name (${s.unnamedCalls.slice(0, 8).join(', ')})`, false);
  return out;
}
