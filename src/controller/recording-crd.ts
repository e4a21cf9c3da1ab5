// ProfileRecording (spoke.dev/v1alpha1, namespaced) and ProfileRecordingResult: the CRDs'
// TypeScript shapes and the annotations and labels of recording (docs/recording.md). Schemas,
// with the limits (1024 syscalls per result, the node recorder's own cap): deploy/crds/profilerecording.yaml.

import { RECORDING_PROOF_ANNOTATION } from '../core/recording-proof.js';
import type { RepositoryRef } from '../core/reference.js';
import type { OciRuntime } from '../profiles/seccomp/index.js';
import type { Condition, LabelSelector, ObjectMeta } from './types.js';

export const RECORDING_KIND = 'ProfileRecording';
export const RECORDING_PLURAL = 'profilerecordings';
export const RESULT_KIND = 'ProfileRecordingResult';
export const RESULT_PLURAL = 'profilerecordingresults';

/** On pods (set by the binding webhook, with its proof; a marking set by hand is ignored): the recording the pod's containers are recorded for. */
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
  /**
   * Whether any was a 32-bit (ia32) call, so the profile opens the i386 ABI. Absent (a result
   * of a recorder before the field): taken as true, as profiles were built then.
   */
  ia32?: boolean;
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

// The validated spec (recording-validate.ts).
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
