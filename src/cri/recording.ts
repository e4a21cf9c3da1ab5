// Recording (docs/recording.md): pods the controller's pod webhook marked for a ProfileRecording
// run their selected containers under the logging profile (the node baseline with SCMP_ACT_LOG
// for what it lets through: logging-profile.ts), so that `spoke recorder` can read their
// syscalls from the kernel's audit records. The names are
// repeated from src/controller/recording.ts because cri/ may not import controller/:
//   recording.spoke.dev/name        the recording; its presence (non-empty) marks the pod
//   recording.spoke.dev/containers  optional, `a,b`: only these containers are recorded;
//                                   absent: every container and init container of the pod
//   recording.spoke.dev/proof       the controller's HMAC over namespace, pod, recording,
//                                   containers and expiry (src/core/recording-proof.ts)
// The logging profile is as loose as the baseline, which may be looser than RuntimeDefault, so
// this is opt-in on the node:
// `spoke shim --recording`, which refuses to start without the cluster's recording key. Without
// --recording the annotations are ignored (logged at info per container). With it, a marking
// whose proof is missing, does not verify under the key, or has expired is ignored and logged
// (warn, RECORDING_UNPROVEN): the container keeps the profile it asked for, which is never looser
// than RuntimeDefault, and a pod author cannot obtain the logging profile by annotating a pod.
// A proven, selected container whose effective seccomp profile (its own, else the pod's) is
// unset or RuntimeDefault, or, when the marking lists the containers, is the container's own OCI
// profile or own spoke annotation (the binding the webhook wrote: rewrite-recording.ts), gets
// Localhost = <store>/recording/log-<sha256>.json, written by the shim itself (no "profile not
// found" race), outside the kubelet's seccomp root so that no pod can name it as its own
// Localhost profile. Everything else explicit stays as it is, with a log line: Localhost,
// Unconfined, a profile or annotation inherited from the pod, a privileged container. A
// malformed annotation records nothing (warn): failing to record only keeps the pod stricter.
// The sandbox (pause) is never recorded.

import { join } from 'node:path';
import { readFile } from 'node:fs/promises';
import { EFFECTIVE_SECCOMP_DIR } from '../core/constants.js';
import { SpokeError } from '../core/errors.js';
import { MAX_RECORDING_KEY_BYTES, parseRecordingKey, RECORDING_PROOF_ANNOTATION, verifyRecordingProof, type ProofCheck } from '../core/recording-proof.js';
import type { LogLevel } from '../core/runtime.js';
import { LOGGING_PROFILE_NAME, loggingProfileBytes } from '../profiles/seccomp/recorded.js';
import { readFileUpTo, type BoundedRead } from '../registry/credentials.js';
import { removeIfExists, writeFileAtomic } from '../store/fsutil.js';
import { SANDBOX_ANNOTATIONS, SANDBOX_METADATA } from './messages.js';
import { getMergedMessage, getString } from './wire.js';
import { getStringMap } from './wire-map.js';

export const RECORDING_ANNOTATION = 'recording.spoke.dev/name';
export const RECORDING_CONTAINERS_ANNOTATION = 'recording.spoke.dev/containers';
const PREFIXES = ['recording.spoke.dev/'] as const;
const MAX_NAME = 253;
const MAX_CONTAINERS_VALUE = 4096;
const MAX_CONTAINERS = 64;
const CONTAINER_NAME_RE = /^[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?$/;

export interface RecordingDeps {
  /**
   * The logging profile's absolute path, written for the current baseline on first use
   * (logging-profile.ts); asked only for a container that is recorded, so a profile that cannot
   * be written fails only those creates. Undefined: `--recording` is off and the annotation is
   * ignored.
   */
  loggingProfile: (() => Promise<string>) | undefined;
  /** The cluster's recording key proofs are verified with; undefined: no marking is honoured. */
  key: Buffer | undefined;
  /** Unix milliseconds (proof expiry); default Date.now. */
  now?: () => number;
  log?(level: LogLevel, msg: string, fields: Record<string, unknown>): void;
}

export interface PodRecording {
  /** The recording's name (for logs), at most 253 characters. */
  name: string;
  /** Listed containers; undefined: all. */
  containers: ReadonlySet<string> | undefined;
  /** Set when the annotations are malformed: nothing is recorded. */
  problem?: string;
  /** The sandbox's namespace and pod name (PodSandboxMetadata) and the proof annotation, for verifyPodRecording. */
  namespace: string;
  pod: string;
  proof: string | undefined;
}

/** The recording annotations of a PodSandboxConfig; undefined when the pod is not marked. Throws WireError when malformed protobuf. */
export function readRecording(podSandboxConfig: Uint8Array | undefined): PodRecording | undefined {
  if (podSandboxConfig === undefined) return undefined;
  const m = getStringMap(podSandboxConfig, SANDBOX_ANNOTATIONS, PREFIXES);
  const name = m.get(RECORDING_ANNOTATION);
  if (name === undefined || name === '') return undefined;
  const meta = getMergedMessage(podSandboxConfig, SANDBOX_METADATA);
  const who = { namespace: meta ? getString(meta, 3) : '', pod: meta ? getString(meta, 1) : '', proof: m.get(RECORDING_PROOF_ANNOTATION) };
  const shown = name.slice(0, MAX_NAME);
  if (name.length > MAX_NAME) return { name: shown, containers: undefined, ...who, problem: `${RECORDING_ANNOTATION} is longer than ${MAX_NAME} characters` };
  const list = m.get(RECORDING_CONTAINERS_ANNOTATION);
  if (list === undefined) return { name, containers: undefined, ...who };
  if (list.length > MAX_CONTAINERS_VALUE) return { name, containers: undefined, ...who, problem: `${RECORDING_CONTAINERS_ANNOTATION} is longer than ${MAX_CONTAINERS_VALUE} characters` };
  const names = list
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  const bad = names.find((n) => !CONTAINER_NAME_RE.test(n));
  if (bad !== undefined) return { name, containers: undefined, ...who, problem: `${RECORDING_CONTAINERS_ANNOTATION}: ${JSON.stringify(bad.slice(0, 64))} is not a container name` };
  if (names.length === 0 || names.length > MAX_CONTAINERS) {
    return { name, containers: undefined, ...who, problem: `${RECORDING_CONTAINERS_ANNOTATION} must list 1 to ${MAX_CONTAINERS} container names` };
  }
  return { name, containers: new Set(names), ...who };
}

/** Whether the controller signed this very marking (namespace, pod, recording, containers) and it has not expired. */
export function verifyPodRecording(rec: PodRecording, key: Buffer, nowMs: number): ProofCheck {
  const seen = { namespace: rec.namespace, podName: rec.pod, recording: rec.name, containers: rec.containers ? [...rec.containers] : undefined };
  return verifyRecordingProof(key, rec.proof, seen, Math.floor(nowMs / 1000));
}

export function recordingSelects(rec: PodRecording, container: string): boolean {
  return rec.containers === undefined || rec.containers.has(container);
}

/**
 * Writes the allow-all logging profile `spoke record` runs its own command under to
 * `<dir>/spoke-record-log.json` (atomically; kept when the bytes are already there) and returns
 * its path. `dir` is the run's own directory, never the kubelet's seccomp root: a pod's
 * `localhostProfile` is a path under that root, so no pod can name it (docs/recording.md). The
 * copy an earlier version kept at `<kubeletSeccompRoot>/spoke/spoke-record-log.json` is removed.
 * The shim's recorded pods run under a baseline-bounded one instead (logging-profile.ts).
 */
export async function installLoggingProfile(dir: string, kubeletSeccompRoot: string): Promise<string> {
  removeIfExists(join(kubeletSeccompRoot, EFFECTIVE_SECCOMP_DIR, LOGGING_PROFILE_NAME));
  const path = join(dir, LOGGING_PROFILE_NAME);
  const bytes = loggingProfileBytes();
  const current = await readFile(path).catch(() => undefined);
  if (current === undefined || !current.equals(bytes)) await writeFileAtomic(path, bytes, join(dir, '.tmp'), { mode: 0o644 });
  return path;
}

/**
 * The recording key a shim reads at its start: with `recording`, the key `file` holds
 * (readRecordingKey); without, none, and the file is not read. Recording without a key file is
 * refused (unkeyedRecording). `spoke shim` and `spoke status --recording` both check it by this.
 */
export function shimRecordingKey(recording: boolean, file: string | undefined, read?: BoundedRead): Buffer | undefined {
  if (!recording) return undefined;
  if (file === undefined) throw unkeyedRecording();
  return readRecordingKey(file, read);
}

/** Recording without the cluster recording key: refused at start, since any pod could then ask for the logging profile. */
export function unkeyedRecording(): SpokeError {
  return new SpokeError('FailedPrecondition', 'recording needs the cluster recording key (config recordingKey, flag --recording-key): without it any pod could ask for the logging profile', {}, { reason: 'RECORDING_UNPROVEN' });
}

/**
 * Reads the cluster's recording key file (the shim's recordingKey, the controller's
 * --recording-key); its bytes are the key. One read through one descriptor (`read`, the shim's
 * trusted read or readFileUpTo) of at most one byte past the longest key, so a file that grows
 * while it is read, or a device such as /dev/zero, is refused by the key's size check
 * (KEY_INVALID), never read whole; the shim's trusted read refuses a FIFO before reading, where
 * the controller's reads one as any other input, up to that size. Throws SpokeError:
 * InvalidArgument FILE_UNREADABLE when it cannot be read or KEY_INVALID, or what `read` refuses
 * it with.
 */
export function readRecordingKey(path: string, read: BoundedRead = readFileUpTo): Buffer {
  let bytes: Buffer;
  try {
    bytes = read(path, MAX_RECORDING_KEY_BYTES + 1);
  } catch (e) {
    if (e instanceof SpokeError) throw e;
    throw new SpokeError('InvalidArgument', `recording key ${path}: cannot read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, { file: path }, { cause: e, reason: 'FILE_UNREADABLE' });
  }
  return parseRecordingKey(bytes, path);
}
