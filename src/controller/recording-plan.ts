// The pure half of finalizing a recording (docs/recording.md): the results unioned per
// mergeStrategy into deterministic profiles, where they may be published, and the
// ProfileBindings created for them. The reconciler (recording-reconciler.ts) does the I/O.

import { sha256Digest } from '../core/digest.js';
import { SpokeError } from '../core/errors.js';
import type { RepositoryRef } from '../core/reference.js';
import { buildRecordedProfile, RUNTIME_STARTUP_SYSCALLS, type OciRuntime, type SeccompProfile } from '../profiles/seccomp/index.js';
import { ImageParseError, parseImage } from './image.js';
import {
  MAX_RESULTS_PER_RECORDING,
  POD_RECORDING_ANNOTATION,
  RECORDING_LABEL,
  type CompiledRecording,
  type ProfileRecordingResult,
} from './recording-crd.js';
import { resultBelongs, resultProblems } from './recording-validate.js';
import { API_VERSION, BINDING_KIND, type ProfileBinding } from './types.js';
import { validateBinding } from './validate.js';

const MAX_NAME = 253;
const MAX_TAG = 128;

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
    // The i386 ABI when any result saw a 32-bit call (or predates the field, which is read as true).
    const { profile, bytes } = buildRecordedProfile(withStartup, runtimes[0] as OciRuntime, { ia32: rs.some((r) => r.spec.ia32 !== false) });
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
