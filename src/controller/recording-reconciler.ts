// The ProfileRecording reconciler (docs/recording.md, cluster side): the finalize state
// machine. Reads recordings, their results and the bindings from list/watch caches
// (recording-kube.ts; no `get` permission needed), and per recording:
//   no finalize annotation   → phase Recording, status.results = the results seen so far
//   finalize annotation set  → union per mergeStrategy → buildRecordedProfile → push with the
//                              controller's own credentials → sign (spec.publish.signWith) →
//                              status.profiles[].reference → with bind: create ProfileBinding(s)
//                              → phase Completed, status.finalizeToken = the annotation value
//   token already processed  → nothing (a second reconcile writes, pushes and creates nothing)
// Finalizing (recording-finalize.ts): permanent problems end in phase Failed, transient ones
// (registry, API) keep phase Finalizing and are retried with backoff (work-queue.ts).
// Status is written with the object's resourceVersion (PUT …/status) and retried on 409
// Conflict from a fresh read (api-errors.ts). Pushing, signing and creating bindings:
// recording-publish.ts; which results count: recording-results.ts.

import type { KeyObject } from 'node:crypto';
import type { SignFormat } from '../publish/signing.js';
import { SpokeError } from '../core/errors.js';
import { codeOf, retryOnConflict } from './api-errors.js';
import { condition, withCondition } from './conditions.js';
import { finalizeRecording, loadSigningKey, signingKeyCondition, type FinalizeDeps, type ReconcileOutcome } from './recording-finalize.js';
import { messageOf, RecordingPublisher, Transient, type PublishCredential, type PublishRegistry } from './recording-publish.js';
import { ResultGate } from './recording-results.js';
import { FINALIZE_ANNOTATION, sameStatus, validateRecording, type ProfileRecording, type ProfileRecordingResult, type ProfileRecordingStatus } from './recording.js';
import type { Pod, ProfileBinding } from './types.js';
import { WorkQueue } from './work-queue.js';

export interface RecordingCaches {
  recording(namespace: string, name: string): ProfileRecording | undefined;
  recordings(): readonly ProfileRecording[];
  results(namespace: string): readonly ProfileRecordingResult[];
  binding(namespace: string, name: string): ProfileBinding | undefined;
  /** A pod marked for recording (the controller's label-selected pod cache). */
  pod(namespace: string, name: string): Pod | undefined;
}

export interface RecordingApi {
  /** PUT …/profilerecordings/NAME/status with metadata.resourceVersion; rejects {code: 409} on conflict, {code: 404} when gone. */
  replaceRecordingStatus(namespace: string, name: string, obj: ProfileRecording): Promise<ProfileRecording>;
  /** POST …/profilebindings; rejects {code: 409} when it exists. */
  createBinding(namespace: string, obj: ProfileBinding): Promise<ProfileBinding>;
}

export interface RecordingReconcilerOptions {
  caches: RecordingCaches;
  api: RecordingApi;
  registry: PublishRegistry;
  credential?: PublishCredential;
  /** Repository patterns recordings may publish to (see repositoryAllowed); none → every recording fails. */
  allowedRepositories: readonly string[];
  /** The cluster's recording key: results count only for pods the webhook marked with it; none → no result counts. */
  recordingKey?: Buffer;
  /** FinalizeDeps.signingKey: a key by its name, for a recording in `namespace`. */
  signingKey?: (name: string, namespace: string) => Promise<KeyObject | string>;
  signFormat?: SignFormat;
  now?: () => Date;
  log?: (event: Record<string, unknown>) => void;
  /** Re-read delay after a 409, times the attempt number (the cache catches up meanwhile). */
  conflictDelayMs?: number;
  backoffInitialMs?: number;
  backoffMaxMs?: number;
  /** How long publishing one recording may take, every request included; default PUBLISH_TIMEOUT_MS. */
  publishTimeoutMs?: number;
}

/**
 * A recording's whole publish (its profiles pushed and signed): ten minutes, twice the transport's
 * deadline for one request (src/registry/options.ts), and minutes more than any registry takes for
 * a few small pushes.
 */
export const PUBLISH_TIMEOUT_MS = 10 * 60_000;

export class RecordingReconciler {
  /** Counters for tests and logs. */
  readonly stats = { reconciles: 0, pushes: 0, signatures: 0, bindingsCreated: 0, statusWrites: 0, conflicts: 0, errors: 0 };

  private readonly queue: WorkQueue;
  private readonly publisher: RecordingPublisher;
  private readonly gate: ResultGate;
  private readonly finalizer: FinalizeDeps;
  /** False while another replica holds the Lease (lease.ts): nothing is queued, and a publish under way pushes and binds nothing more. */
  private active = true;
  /** Aborted when this replica stops leading: ends the publish under way (its requests included). */
  private leadership = new AbortController();

  constructor(private readonly o: RecordingReconcilerOptions) {
    // setTimeout reads a missing or bad value as "at once": every publish would fail.
    if (o.publishTimeoutMs !== undefined && (!Number.isSafeInteger(o.publishTimeoutMs) || o.publishTimeoutMs < 1)) {
      throw new SpokeError('InvalidArgument', `publish timeout must be a positive number of milliseconds, got ${String(o.publishTimeoutMs)}`, {}, { reason: 'OPTION_INVALID' });
    }
    this.queue = new WorkQueue(
      (key) => {
        const [namespace, name] = key.split('/') as [string, string];
        return this.reconcile(namespace, name);
      },
      {
        backoffInitialMs: o.backoffInitialMs,
        backoffMaxMs: o.backoffMaxMs,
        onError: (key, e, retryInMs) => {
          this.stats.errors++;
          this.o.log?.({ msg: 'reconcile failed; retrying', recording: key, error: messageOf(e), code: codeOf(e), retryInMs });
        },
      },
    );
    this.publisher = new RecordingPublisher({
      registry: o.registry,
      credential: o.credential,
      signFormat: o.signFormat,
      binding: (namespace, name) => o.caches.binding(namespace, name),
      createBinding: (namespace, obj) => o.api.createBinding(namespace, obj),
      stats: this.stats,
    });
    this.gate = new ResultGate({ results: (ns) => o.caches.results(ns), pod: (ns, name) => o.caches.pod(ns, name), recordingKey: o.recordingKey, log: o.log });
    this.finalizer = {
      publisher: this.publisher,
      allowedRepositories: o.allowedRepositories,
      signingKey: o.signingKey,
      log: o.log,
      publishTimeoutMs: o.publishTimeoutMs ?? PUBLISH_TIMEOUT_MS,
      leadership: () => this.leadership.signal,
      stillFinalizing: (r, token) => {
        if (!this.active) return false;
        const fresh = o.caches.recording(r.metadata.namespace as string, r.metadata.name as string);
        return fresh !== undefined && fresh.metadata.uid === r.metadata.uid && (fresh.metadata.annotations?.[FINALIZE_ANNOTATION] ?? '') === token;
      },
      writeStatus: (r, s, t) => this.writeStatus(r, s, t),
    };
  }

  private now(): string {
    return (this.o.now?.() ?? new Date()).toISOString().replace(/\.\d{3}Z$/, 'Z');
  }

  // ---- queue ----

  /** Queues a recording (`namespace/name`); processed one at a time, deduplicated. */
  enqueue(key: string): void {
    if (this.active) this.queue.add(key);
  }

  /** Queues the recording a result belongs to. */
  enqueueResult(r: ProfileRecordingResult): void {
    const ns = r.metadata?.namespace;
    const rec = r.spec?.recording;
    if (ns && typeof rec === 'string' && rec !== '') this.enqueue(`${ns}/${rec}`);
  }

  enqueueAll(): void {
    for (const r of this.o.caches.recordings()) this.enqueue(`${r.metadata.namespace}/${r.metadata.name}`);
  }

  /** Resolves when the queue is empty and nothing runs (retries scheduled for later do not count). */
  idle(): Promise<void> {
    return this.queue.idle();
  }

  stop(): void {
    this.queue.stop();
  }

  /**
   * Reconciles nothing more until resume(): another replica does (it holds the Lease). The publish
   * under way is aborted, not left to finish: the new leader publishes the recording too, and two
   * would push and sign it twice. Resolves once the reconcile under way has ended, so the Lease is
   * given up only after this replica stopped writing.
   */
  pause(): Promise<void> {
    this.active = false;
    this.leadership.abort(new SpokeError('Unavailable', 'this replica stopped leading: another one publishes the recording', {}, { reason: 'CANCELLED' }));
    this.queue.stop();
    return this.queue.idle();
  }

  resume(): void {
    if (!this.active) this.leadership = new AbortController();
    this.active = true;
    this.queue.resume();
  }

  // ---- one recording ----

  async reconcile(namespace: string, name: string): Promise<ReconcileOutcome> {
    this.stats.reconciles++;
    const out: ReconcileOutcome = { action: 'none', pushed: 0, bindingsCreated: 0 };
    const rec = this.o.caches.recording(namespace, name);
    if (!rec) return { ...out, action: 'deleted' };
    const generation = typeof rec.metadata.generation === 'number' ? rec.metadata.generation : undefined;
    const token = rec.metadata.annotations?.[FINALIZE_ANNOTATION] ?? '';
    const old = rec.status ?? {};
    const v = validateRecording(rec);
    const uid = rec.metadata.uid;
    const { results, ignored } = this.gate.accepted(namespace, name, uid);
    const now = this.now();
    const conds = withCondition(
      old.conditions,
      ignored.length === 0
        ? condition(old.conditions, 'ResultsAccepted', 'True', 'AllAccepted', `${results.length} result(s), each from the node that runs its marked pod`, now, generation)
        : condition(old.conditions, 'ResultsAccepted', 'False', 'ResultsIgnored', `${ignored.length} result(s) ignored: ${ignored.slice(0, 5).join('; ')}${ignored.length > 5 ? '; …' : ''}`, now, generation),
    );

    if (!v.ok) {
      const status: ProfileRecordingStatus = {
        ...old,
        phase: 'Failed',
        results: results.length,
        observedGeneration: generation,
        conditions: withCondition(conds, condition(old.conditions, 'Finalized', 'False', 'InvalidSpec', v.problems.join('; '), now, generation)),
      };
      if (await this.writeStatus(rec, status)) out.action = 'failed';
      return out;
    }
    const compiled = v.recording;

    if (token === '') {
      const keyConds = compiled.signWith === undefined ? conds : withCondition(conds, signingKeyCondition(await loadSigningKey(this.finalizer, compiled.signWith, namespace), compiled.signWith, namespace, old.conditions, now, generation));
      const status: ProfileRecordingStatus = {
        ...old,
        phase: 'Recording',
        results: results.length,
        observedGeneration: generation,
        conditions: withCondition(
          keyConds,
          condition(old.conditions, 'Finalized', 'False', 'Recording', `${results.length} result(s) so far; annotate ${FINALIZE_ANNOTATION}=<any value> to build and publish the profile(s)`, now, generation),
        ),
      };
      delete status.finalizeToken;
      delete status.profiles;
      if (await this.writeStatus(rec, status)) out.action = 'status';
      return out;
    }

    if (old.finalizeToken === token && (old.phase === 'Completed' || old.phase === 'Failed')) {
      // A snapshot already taken: only count new results, and retry bindings that could not be created.
      let status: ProfileRecordingStatus = { ...old, results: results.length, conditions: conds };
      if (old.phase === 'Completed' && compiled.bind && old.conditions?.find((c) => c.type === 'Bound')?.status !== 'True') {
        const r = await this.publisher.ensureBindings(compiled, old.profiles ?? [], old, now, generation, () => this.finalizer.stillFinalizing(rec, token));
        out.bindingsCreated = r.created;
        status = { ...status, profiles: r.profiles, conditions: withCondition(conds, r.condition) };
      }
      if (await this.writeStatus(rec, status)) out.action = 'status';
      return out;
    }

    return finalizeRecording(this.finalizer, { rec, namespace, name, token, old, compiled, results, ignored: ignored.length, conds, now, generation });
  }

  /**
   * Writes `status` unless it equals what is there. On 409 re-reads the object (after a delay,
   * so the cache can catch up) and tries again with the fresh resourceVersion, keeping the
   * status computed here — unless the finalize annotation changed meanwhile, in which case the
   * recording is reconciled again from the start. Nothing is written once this replica stopped
   * leading. Returns whether it wrote.
   */
  private async writeStatus(rec: ProfileRecording, status: ProfileRecordingStatus, token?: string): Promise<boolean> {
    const ns = rec.metadata.namespace as string;
    const name = rec.metadata.name as string;
    let current = rec;
    return retryOnConflict(
      async (attempt) => {
        // Asked before every attempt, a retry after a conflict included: a replica that stopped
        // leading meanwhile must not overwrite what the new leader writes.
        if (!this.active) return false;
        if (attempt > 0) {
          const fresh = this.o.caches.recording(ns, name);
          if (!fresh || fresh.metadata.uid !== rec.metadata.uid) return false;
          if (token !== undefined && (fresh.metadata.annotations?.[FINALIZE_ANNOTATION] ?? '') !== token) throw new Transient('finalize annotation changed while writing status');
          current = fresh;
        }
        if (sameStatus(current.status, status)) return false;
        try {
          await this.o.api.replaceRecordingStatus(ns, name, { ...current, status });
        } catch (e) {
          if (codeOf(e) === 404) return false;
          throw e;
        }
        this.stats.statusWrites++;
        return true;
      },
      { conflictDelayMs: this.o.conflictDelayMs, onConflict: () => this.stats.conflicts++ },
    );
  }
}
