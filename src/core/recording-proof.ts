// The recording proof (docs/recording.md): the controller's pod webhook marks a pod for a
// ProfileRecording and signs the marking with HMAC-SHA256 under a per-cluster key that the nodes
// hold too; the shim runs a container under the logging profile only when the proof verifies
// over what the kubelet sends in the PodSandboxConfig (namespace and name from its metadata, the
// recording annotations) and has not expired (nor expires later than a controller with a right
// clock could have set). A pod author without the key cannot make a proof, and a proof copied
// from another pod names that pod's namespace and name (or, for a pod whose name the API server
// generates, its generateName prefix).
//
// Annotation value: `v1.<n|g>.<expiry unix seconds>.<base64url HMAC>`; `n`: the HMAC covers the
// pod's name; `g`: its generateName, as the API server truncates it, and the name must be that
// prefix plus the 5 characters the API server appends. The HMAC input is the JSON array
// ["spoke.dev/recording-proof/v1", namespace, n|g, name or prefix, recording, containers or
// null (all), expiry]: JSON strings cannot run into each other, so no two subjects share bytes.

import { createHmac, timingSafeEqual } from 'node:crypto';
import { SpokeError } from './errors.js';

export const RECORDING_PROOF_ANNOTATION = 'recording.spoke.dev/proof';
/** Shortest key accepted: the HMAC-SHA256 output size. */
export const MIN_RECORDING_KEY_BYTES = 32;
export const MAX_RECORDING_KEY_BYTES = 4096;
/** The longest lifetime the controller gives a proof (the bound of --recording-proof-ttl). */
export const MAX_RECORDING_PROOF_TTL_SECONDS = 7 * 86_400;
/**
 * How far the controller's clock may run ahead of a node's: a proof that expires later than
 * MAX_RECORDING_PROOF_TTL_SECONDS plus this from the node's now was not signed by a controller
 * whose clock was right, and would keep a re-created pod under the logging profile for as long.
 */
const CLOCK_SKEW_SECONDS = 300;
/** The API server keeps at most 58 characters of generateName (63 minus the random suffix). */
const MAX_GENERATE_NAME = 58;
/** The alphabet of the API server's generated-name suffix (k8s.io/apimachinery/pkg/util/rand). */
const GENERATED_SUFFIX_RE = /^[bcdfghjklmnpqrstvwxz2456789]{5}$/;
const PROOF_RE = /^v1\.([ng])\.([0-9]{1,12})\.([A-Za-z0-9_-]{43})$/;
const MAX_PROOF = 64;
const DOMAIN = 'spoke.dev/recording-proof/v1';

export interface ProofSubject {
  namespace: string;
  /** The pod's name when the admission request has one, else its generateName. */
  pod: { name: string } | { generateName: string };
  recording: string;
  /** The recorded containers; undefined: every container of the pod. */
  containers: readonly string[] | undefined;
}

/** What the node sees of a pod: the sandbox's namespace and name and its recording annotations. */
export interface ProofSeen {
  namespace: string;
  podName: string;
  recording: string;
  containers: readonly string[] | undefined;
}

export type ProofFailure = 'missing' | 'malformed' | 'expired' | 'too-long' | 'mismatch';
export type ProofCheck = { ok: true; expiresAt: number } | { ok: false; failure: ProofFailure; detail: string };

/**
 * Checks a key's bytes (a file the controller and every node share). Throws SpokeError
 * InvalidArgument. A reader stops one byte past MAX_RECORDING_KEY_BYTES, so a longer key is
 * told only as longer.
 */
export function parseRecordingKey(bytes: Uint8Array, source: string): Buffer {
  if (bytes.length < MIN_RECORDING_KEY_BYTES || bytes.length > MAX_RECORDING_KEY_BYTES) {
    const long = bytes.length > MAX_RECORDING_KEY_BYTES;
    const size = long ? `more than ${MAX_RECORDING_KEY_BYTES}` : `${bytes.length}`;
    throw new SpokeError('InvalidArgument', `recording key ${source}: ${size} bytes; it must hold ${MIN_RECORDING_KEY_BYTES} to ${MAX_RECORDING_KEY_BYTES} bytes (e.g. head -c 32 /dev/urandom)`, {
      file: source,
      expected: `${MIN_RECORDING_KEY_BYTES}..${MAX_RECORDING_KEY_BYTES}`,
      ...(long ? {} : { actual: bytes.length }),
    }, { reason: 'KEY_INVALID' });
  }
  return Buffer.from(bytes);
}

function canonicalContainers(c: readonly string[] | undefined): string[] | null {
  return c === undefined ? null : [...new Set(c)].sort();
}

function mac(key: Buffer, namespace: string, mode: 'n' | 'g', who: string, recording: string, containers: readonly string[] | undefined, expiresAt: number): Buffer {
  const input = JSON.stringify([DOMAIN, namespace, mode, who, recording, canonicalContainers(containers), expiresAt]);
  return createHmac('sha256', key).update(input, 'utf8').digest();
}

/** The proof annotation value for `subject`, valid until `expiresAt` (unix seconds). */
export function signRecordingProof(key: Buffer, subject: ProofSubject, expiresAt: number): string {
  if (!Number.isSafeInteger(expiresAt) || expiresAt < 0 || expiresAt > 999_999_999_999) throw new SpokeError('InvalidArgument', 'recording proof expiry must be unix seconds', {}, { reason: 'OPTION_INVALID' });
  const [mode, who] = 'name' in subject.pod ? (['n', subject.pod.name] as const) : (['g', subject.pod.generateName.slice(0, MAX_GENERATE_NAME)] as const);
  return `v1.${mode}.${expiresAt}.${mac(key, subject.namespace, mode, who, subject.recording, subject.containers, expiresAt).toString('base64url')}`;
}

/**
 * Verifies a proof against what the node sees, at `nowSeconds`. Every failure is a refusal
 * (never an exception): the caller keeps the pod's own profile. `ignoreExpiry` checks the mac
 * only, neither expiry bound.
 */
export function verifyRecordingProof(key: Buffer, value: string | undefined, seen: ProofSeen, nowSeconds: number, opts: { ignoreExpiry?: boolean } = {}): ProofCheck {
  if (value === undefined || value === '') return { ok: false, failure: 'missing', detail: `no ${RECORDING_PROOF_ANNOTATION} annotation` };
  const m = value.length <= MAX_PROOF ? PROOF_RE.exec(value) : null;
  if (!m) return { ok: false, failure: 'malformed', detail: `${RECORDING_PROOF_ANNOTATION} is not v1.<n|g>.<expiry>.<hmac>` };
  const mode = m[1] as 'n' | 'g';
  const expiresAt = Number(m[2]);
  let who = seen.podName;
  if (mode === 'g') {
    const suffix = seen.podName.slice(-5);
    if (seen.podName.length <= 5 || !GENERATED_SUFFIX_RE.test(suffix)) return { ok: false, failure: 'mismatch', detail: 'the proof is for a generated pod name and this name was not generated' };
    who = seen.podName.slice(0, -5);
  }
  const want = mac(key, seen.namespace, mode, who, seen.recording, seen.containers, expiresAt);
  const got = Buffer.from(m[3] as string, 'base64url');
  if (got.length !== want.length || !timingSafeEqual(got, want)) {
    return { ok: false, failure: 'mismatch', detail: 'the proof does not verify for this namespace, pod, recording and containers under the node key' };
  }
  if (opts.ignoreExpiry) return { ok: true, expiresAt };
  const expiry = new Date(expiresAt * 1000).toISOString();
  if (nowSeconds >= expiresAt) return { ok: false, failure: 'expired', detail: `the proof expired at ${expiry}` };
  if (expiresAt - nowSeconds > MAX_RECORDING_PROOF_TTL_SECONDS + CLOCK_SKEW_SECONDS) {
    return { ok: false, failure: 'too-long', detail: `the proof expires at ${expiry}, more than the longest --recording-proof-ttl (${MAX_RECORDING_PROOF_TTL_SECONDS} s) and ${CLOCK_SKEW_SECONDS} s of clock skew from now` };
  }
  return { ok: true, expiresAt };
}
