// Finalizing a ProfileRecording (docs/recording.md) once its finalize annotation is set: union
// the results per mergeStrategy → buildRecordedProfile → check the repository → load the signing
// key → push and sign each profile (recording-publish.ts) → with bind, create the
// ProfileBinding(s) → phase Completed, status.finalizeToken = the annotation value. Permanent
// problems end in phase Failed with a condition naming them; a registry failure keeps phase
// Finalizing and throws Transient (the reconciler retries with backoff); finalizing before any
// result arrived keeps phase Finalizing (WaitingForResults) until one does — never an empty profile.

import type { KeyObject } from 'node:crypto';
import { isSpokeError, SpokeError } from '../core/errors.js';
import { condition, withCondition } from './conditions.js';
import { messageOf, Transient, type RecordingPublisher } from './recording-publish.js';
import {
  bindingImage,
  planProfiles,
  repositoryAllowed,
  type CompiledRecording,
  type PlannedProfile,
  type ProfileRecording,
  type ProfileRecordingResult,
  type ProfileRecordingStatus,
  type RecordedProfileStatus,
} from './recording.js';
import type { Condition } from './types.js';

export interface ReconcileOutcome {
  action: 'none' | 'status' | 'finalized' | 'failed' | 'deleted';
  pushed: number;
  bindingsCreated: number;
}

export interface FinalizeDeps {
  publisher: RecordingPublisher;
  /** Repository patterns recordings may publish to (see repositoryAllowed). */
  allowedRepositories: readonly string[];
  /**
   * Loads a signing key by its name in the controller's key directory for a recording in
   * `namespace`; rejects when absent, and with KEY_NOT_ALLOWED when the key may not sign there.
   */
  signingKey?: ((name: string, namespace: string) => Promise<KeyObject | string>) | undefined;
  log?: ((event: Record<string, unknown>) => void) | undefined;
  /** How long publishing one recording's profiles may take, every request included (PUBLISH_TIMEOUT_MS). */
  publishTimeoutMs: number;
  /**
   * Whether `rec` is still what is being finalized: the same object (uid) with the finalize
   * annotation still `token`, as the cache has it now, and by this replica (it holds the Lease).
   * A publish takes a while; a recording deleted, re-created or finalized again meanwhile must
   * not be bound from the old snapshot, nor one that another replica now publishes.
   */
  stillFinalizing(rec: ProfileRecording, token: string): boolean;
  /** Aborted when this replica stops leading (the reconciler's pause()): the publish under way ends at once. */
  leadership?: () => AbortSignal;
  /** The reconciler's status write (retried on conflict; with `token`, only while the annotation still has it). */
  writeStatus(rec: ProfileRecording, status: ProfileRecordingStatus, token?: string): Promise<boolean>;
}

/** A recording to finalize, as the reconciler read it: spec validated, results accepted, conditions so far. */
export interface Finalizing {
  rec: ProfileRecording;
  namespace: string;
  name: string;
  /** The finalize annotation's value. */
  token: string;
  old: ProfileRecordingStatus;
  compiled: CompiledRecording;
  results: readonly ProfileRecordingResult[];
  /** Results named for the recording that did not count (ResultsAccepted says which and why). */
  ignored: number;
  conds: Condition[];
  now: string;
  generation: number | undefined;
}

export async function finalizeRecording(deps: FinalizeDeps, f: Finalizing): Promise<ReconcileOutcome> {
  const { rec, namespace, name, token, old, compiled, results, now, generation } = f;
  let conds = f.conds;
  const out: ReconcileOutcome = { action: 'none', pushed: 0, bindingsCreated: 0 };
  const fail = async (reason: string, message: string) => {
    const status: ProfileRecordingStatus = {
      ...old,
      phase: 'Failed',
      finalizeToken: token,
      results: results.length,
      observedGeneration: generation,
      conditions: withCondition(conds, condition(old.conditions, 'Finalized', 'False', reason, message, now, generation)),
    };
    delete status.profiles;
    await deps.writeStatus(rec, status);
    deps.log?.({ msg: 'recording failed', recording: `${namespace}/${name}`, reason, message });
    return { ...out, action: 'failed' as const };
  };
  let planned: PlannedProfile[];
  try {
    planned = planProfiles(compiled, results);
  } catch (e) {
    if (!isSpokeError(e)) throw e;
    if (e.reason === 'RECORDING_EMPTY') {
      // Finalized before any result arrived: wait for one (result events reconcile again); never an empty profile.
      const status: ProfileRecordingStatus = {
        ...old,
        phase: 'Finalizing',
        results: results.length,
        observedGeneration: generation,
        conditions: withCondition(conds, condition(old.conditions, 'Finalized', 'False', 'WaitingForResults', e.message, now, generation)),
      };
      delete status.finalizeToken;
      delete status.profiles;
      if (await deps.writeStatus(rec, status)) out.action = 'status';
      return out;
    }
    return fail('IncompleteRecording', e.message);
  }
  if (!repositoryAllowed(compiled.repository, namespace, deps.allowedRepositories)) {
    return fail(
      'RepositoryNotAllowed',
      `the controller may not publish to ${compiled.repository.registry}/${compiled.repository.repository} for namespace ${namespace} (allowed: ${deps.allowedRepositories.join(', ') || 'none; see spoke controller --recording-repositories'})`,
    );
  }
  let key: KeyObject | string | undefined;
  if (compiled.signWith !== undefined) {
    const loaded = await loadSigningKey(deps, compiled.signWith, namespace);
    conds = withCondition(conds, signingKeyCondition(loaded, compiled.signWith, namespace, old.conditions, now, generation));
    if ('problem' in loaded) return fail(loaded.problem, loaded.message);
    key = loaded.key;
  }

  let profiles: RecordedProfileStatus[];
  // Each request has its own deadline, but a registry that answers slowly, never idle for long,
  // could hold one publish (and the controller's single work queue) for half an hour: the whole
  // publish has one too. Its end is a registry failure, retried with backoff like an outage.
  const deadline = new AbortController();
  const timer = setTimeout(
    () =>
      deadline.abort(
        new SpokeError('RegistryUnavailable', `publishing to ${compiled.repository.registry} took longer than ${deps.publishTimeoutMs / 1000} s`, { registry: compiled.repository.registry, limit: deps.publishTimeoutMs }, { reason: 'DEADLINE' }),
      ),
    deps.publishTimeoutMs,
  );
  // Losing the Lease ends the publish as its deadline does: the request under way is aborted, so
  // nothing more is pushed or signed by a replica the new leader publishes beside.
  const leadership = deps.leadership?.();
  const signal = leadership ? AbortSignal.any([deadline.signal, leadership]) : deadline.signal;
  const superseded = () => {
    deps.log?.({ msg: 'recording deleted, re-created or finalized again while publishing, or another replica took over; nothing more is pushed or bound from this snapshot', recording: `${namespace}/${name}`, token });
    return { ...out, action: 'none' as const };
  };
  try {
    profiles = [];
    for (const p of planned) {
      if (!deps.stillFinalizing(rec, token)) return superseded();
      const r = await deps.publisher.publish(compiled, p, key, signal);
      if (r.pushedNow) out.pushed++;
      profiles.push({
        containers: p.containers,
        reference: r.reference,
        image: bindingImage(p.images),
        syscalls: p.syscalls.length,
        results: p.results.length,
        ...(key !== undefined ? { signed: true } : {}),
      });
    }
  } catch (e) {
    // Aborted because another replica leads now: its status is not ours to write, nor a retry ours to schedule.
    if (leadership?.aborted) return superseded();
    if (isSpokeError(e) && (e.code === 'InvalidArgument' || e.code === 'SecurityProfileInvalid' || e.code === 'PermissionDenied' || e.code === 'Unauthenticated')) {
      return fail('PublishFailed', e.message);
    }
    // Registry down or similar: say so, and retry with backoff.
    const status: ProfileRecordingStatus = {
      ...old,
      phase: 'Finalizing',
      results: results.length,
      observedGeneration: generation,
      conditions: withCondition(conds, condition(old.conditions, 'Finalized', 'False', 'PublishFailed', `${messageOf(e)} (retrying)`, now, generation)),
    };
    await deps.writeStatus(rec, status).catch(() => false);
    throw new Transient(messageOf(e));
  } finally {
    clearTimeout(timer);
  }

  if (!deps.stillFinalizing(rec, token)) return superseded();
  let conditions = withCondition(
    conds,
    condition(
      old.conditions,
      'Finalized',
      'True',
      'Published',
      // Ignored results may be calls the workload made: the profile is built without them, and says so.
      `${profiles.length} profile(s) from ${results.length} result(s) pushed to ${compiled.repository.registry}/${compiled.repository.repository}${f.ignored > 0 ? `; ${f.ignored} result(s) ignored and not in the profile (condition ResultsAccepted)` : ''}`,
      now,
      generation,
    ),
  );
  if (compiled.bind) {
    const r = await deps.publisher.ensureBindings(compiled, profiles, old, now, generation, () => deps.stillFinalizing(rec, token));
    profiles = r.profiles;
    out.bindingsCreated = r.created;
    conditions = withCondition(conditions, r.condition);
  } else conditions = conditions.filter((c) => c.type !== 'Bound');
  const status: ProfileRecordingStatus = { phase: 'Completed', observedGeneration: generation, results: results.length, finalizeToken: token, profiles, conditions };
  await deps.writeStatus(rec, status, token);
  deps.log?.({ msg: 'recording finalized', recording: `${namespace}/${name}`, profiles: profiles.map((p) => p.reference) });
  return { ...out, action: 'finalized' };
}

/** A recording's signing key, or why it cannot sign with it (a condition reason and message). */
export type LoadedSigningKey = { key: KeyObject | string } | { problem: 'SigningKeyNotAllowed' | 'SigningKeyInvalid' | 'SigningKeyUnavailable'; message: string };

/** The condition reason of a key that cannot be loaded, by the loader's error reason. */
function signingKeyProblem(e: unknown): 'SigningKeyNotAllowed' | 'SigningKeyInvalid' | 'SigningKeyUnavailable' {
  if (!isSpokeError(e)) return 'SigningKeyUnavailable';
  if (e.reason === 'KEY_NOT_ALLOWED') return 'SigningKeyNotAllowed';
  return e.reason === 'KEY_INVALID' ? 'SigningKeyInvalid' : 'SigningKeyUnavailable';
}

/** Loads the key `signWith` names for a recording in `namespace` (docs/recording.md#signing-keys). */
export async function loadSigningKey(deps: Pick<FinalizeDeps, 'signingKey'>, signWith: string, namespace: string): Promise<LoadedSigningKey> {
  if (!deps.signingKey) return { problem: 'SigningKeyUnavailable', message: `spec.publish.signWith ${signWith}: the controller has no signing keys (--signing-keys)` };
  try {
    return { key: await deps.signingKey(signWith, namespace) };
  } catch (e) {
    return { problem: signingKeyProblem(e), message: `spec.publish.signWith ${signWith}: ${messageOf(e)}` };
  }
}

/**
 * Condition SigningKeyUsable: whether the recording's key may sign for its namespace. Set while
 * it records, so that a key it cannot use is known before anyone finalizes, and at finalize.
 */
export function signingKeyCondition(loaded: LoadedSigningKey, signWith: string, namespace: string, previous: readonly Condition[] | undefined, now: string, generation: number | undefined): Condition {
  return 'problem' in loaded
    ? condition(previous, 'SigningKeyUsable', 'False', loaded.problem, loaded.message, now, generation)
    : condition(previous, 'SigningKeyUsable', 'True', 'Allowed', `signing key ${signWith} may sign for namespace ${namespace}`, now, generation);
}
