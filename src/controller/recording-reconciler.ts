// The ProfileRecording reconciler (issue 8 "Recording", cluster side). Reads recordings,
// their results and the bindings from list/watch caches (recording-kube.ts; no `get`
// permission needed), and per recording:
//   no finalize annotation   → phase Recording, status.results = the results seen so far
//   finalize annotation set  → union per mergeStrategy → buildRecordedProfile → push with the
//                              controller's own credentials → sign (spec.publish.signWith) →
//                              status.profiles[].reference → with bind: create ProfileBinding(s)
//                              → phase Completed, status.finalizeToken = the annotation value
//   token already processed  → nothing (a second reconcile writes, pushes and creates nothing)
// Permanent problems (incomplete results, repository not allowed, unknown signing key, invalid
// spec) end in phase Failed with a condition naming them; transient ones (registry, API) keep
// phase Finalizing and are retried with backoff; finalizing before any result arrived keeps
// phase Finalizing (WaitingForResults) until one does — never an empty profile. Status is written with the object's
// resourceVersion (PUT …/status) and retried on 409 Conflict from a fresh read. Pushes and
// signatures are remembered per digest, so a retry after a conflict does not push again.
// Bindings are created, never updated or deleted (RBAC: create only): one that exists with the
// same reference is kept; one with another reference makes Bound=False (BindingExists).
// Results count only from the node that runs the pod they name (resultNodeProblem): the verdict
// is taken while the pod is in the pod cache and remembered (by result uid), so a pod deleted
// after its result arrived still counts; results judged never are ignored, and every ignored
// result is named in the ResultsAccepted condition and the log.

import type { KeyObject } from 'node:crypto';
import { sha256Digest, type Digest } from '../core/digest.js';
import { isSpokeError } from '../core/errors.js';
import { pushProfile } from '../publish/push.js';
import { signArtifact, type SignFormat } from '../publish/sign.js';
import {
  FINALIZE_ANNOTATION,
  RECORDING_LABEL,
  bindingFor,
  bindingImage,
  planProfiles,
  repositoryAllowed,
  resultBelongs,
  resultNodeProblem,
  sameStatus,
  validateRecording,
  type CompiledRecording,
  type PlannedProfile,
  type ProfileRecording,
  type ProfileRecordingResult,
  type ProfileRecordingStatus,
  type RecordedProfileStatus,
} from './recording.js';
import type { Pod, ProfileBinding } from './types.js';
import { codeOf, retryOnConflict } from './api-errors.js';
import { condition, withCondition } from './conditions.js';

/** The registry contract, as publish/ takes it (controller/ does not import registry/). */
export type PublishRegistry = Parameters<typeof pushProfile>[0];
export type PublishCredential = NonNullable<Parameters<typeof pushProfile>[5]>['credential'];

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
  /** Loads a signing key by its name in the controller's key directory; rejects when absent. */
  signingKey?: (name: string) => Promise<KeyObject | string>;
  signFormat?: SignFormat;
  now?: () => Date;
  log?: (event: Record<string, unknown>) => void;
  /** Re-read delay after a 409, times the attempt number (the cache catches up meanwhile). */
  conflictDelayMs?: number;
  backoffInitialMs?: number;
  backoffMaxMs?: number;
}

/** Pushes and signatures remembered (by digest) so retries do not repeat them. */
const MAX_REMEMBERED = 1024;

class Transient extends Error {}


function messageOf(e: unknown): string {
  return (e as Error)?.message ?? String(e);
}

export interface ReconcileOutcome {
  action: 'none' | 'status' | 'finalized' | 'failed' | 'deleted';
  pushed: number;
  bindingsCreated: number;
}

export class RecordingReconciler {
  private readonly pushed = new Map<string, { reference: string; manifest: Buffer; digest: Digest }>();
  private readonly signed = new Set<string>();
  private readonly queue = new Set<string>();
  private readonly failures = new Map<string, number>();
  /** Verdicts of resultNodeProblem by result uid, taken while the pod was in the cache ('' = accepted). */
  private readonly verdicts = new Map<string, string>();
  private readonly reported = new Set<string>();
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private running: Promise<void> | undefined;
  private stopped = false;
  private idleWaiters: (() => void)[] = [];
  /** Counters for tests and logs. */
  readonly stats = { reconciles: 0, pushes: 0, signatures: 0, bindingsCreated: 0, statusWrites: 0, conflicts: 0, errors: 0 };

  constructor(private readonly o: RecordingReconcilerOptions) {}

  private now(): string {
    return (this.o.now?.() ?? new Date()).toISOString().replace(/\.\d{3}Z$/, 'Z');
  }

  // ---- queue ----

  /** Queues a recording (`namespace/name`); processed one at a time, deduplicated. */
  enqueue(key: string): void {
    if (this.stopped) return;
    this.queue.add(key);
    if (!this.running) this.running = this.drain().finally(() => (this.running = undefined));
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
    if (!this.running && this.queue.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  stop(): void {
    this.stopped = true;
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
    this.queue.clear();
  }

  private async drain(): Promise<void> {
    while (this.queue.size > 0 && !this.stopped) {
      const key = this.queue.values().next().value as string;
      this.queue.delete(key);
      const [namespace, name] = key.split('/') as [string, string];
      try {
        await this.reconcile(namespace, name);
        this.failures.delete(key);
      } catch (e) {
        this.stats.errors++;
        const n = (this.failures.get(key) ?? 0) + 1;
        this.failures.set(key, n);
        const delay = Math.min((this.o.backoffInitialMs ?? 1000) * 2 ** (n - 1), this.o.backoffMaxMs ?? 300_000);
        this.o.log?.({ msg: 'reconcile failed; retrying', recording: key, error: messageOf(e), code: codeOf(e), retryInMs: delay });
        const old = this.timers.get(key);
        if (old) clearTimeout(old);
        const t = setTimeout(() => {
          this.timers.delete(key);
          this.enqueue(key);
        }, delay);
        t.unref();
        this.timers.set(key, t);
      }
    }
    for (const w of this.idleWaiters.splice(0)) w();
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
    const { results, ignored } = this.acceptedResults(namespace, name, uid);
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
      const status: ProfileRecordingStatus = {
        ...old,
        phase: 'Recording',
        results: results.length,
        observedGeneration: generation,
        conditions: withCondition(
          conds,
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
        const r = await this.ensureBindings(compiled, old.profiles ?? [], old, now, generation);
        out.bindingsCreated = r.created;
        status = { ...status, profiles: r.profiles, conditions: withCondition(conds, r.condition) };
      }
      if (await this.writeStatus(rec, status)) out.action = 'status';
      return out;
    }

    // Finalize.
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
      await this.writeStatus(rec, status);
      this.o.log?.({ msg: 'recording failed', recording: `${namespace}/${name}`, reason, message });
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
        if (await this.writeStatus(rec, status)) out.action = 'status';
        return out;
      }
      return fail('IncompleteRecording', e.message);
    }
    if (!repositoryAllowed(compiled.repository, namespace, this.o.allowedRepositories)) {
      return fail(
        'RepositoryNotAllowed',
        `the controller may not publish to ${compiled.repository.registry}/${compiled.repository.repository} for namespace ${namespace} (allowed: ${this.o.allowedRepositories.join(', ') || 'none; see spoke controller --recording-repositories'})`,
      );
    }
    let key: KeyObject | string | undefined;
    if (compiled.signWith !== undefined) {
      if (!this.o.signingKey) return fail('SigningKeyUnavailable', `spec.publish.signWith ${compiled.signWith}: the controller has no signing keys (--signing-keys)`);
      try {
        key = await this.o.signingKey(compiled.signWith);
      } catch (e) {
        return fail('SigningKeyUnavailable', `spec.publish.signWith ${compiled.signWith}: ${messageOf(e)}`);
      }
    }

    let profiles: RecordedProfileStatus[];
    try {
      profiles = [];
      for (const p of planned) {
        const r = await this.publish(compiled, p, key);
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
      await this.writeStatus(rec, status).catch(() => false);
      throw new Transient(messageOf(e));
    }

    let conditions = withCondition(
      conds,
      condition(old.conditions, 'Finalized', 'True', 'Published', `${profiles.length} profile(s) from ${results.length} result(s) pushed to ${compiled.repository.registry}/${compiled.repository.repository}`, now, generation),
    );
    if (compiled.bind) {
      const r = await this.ensureBindings(compiled, profiles, old, now, generation);
      profiles = r.profiles;
      out.bindingsCreated = r.created;
      conditions = withCondition(conditions, r.condition);
    } else conditions = conditions.filter((c) => c.type !== 'Bound');
    const status: ProfileRecordingStatus = { phase: 'Completed', observedGeneration: generation, results: results.length, finalizeToken: token, profiles, conditions };
    await this.writeStatus(rec, status, token);
    this.o.log?.({ msg: 'recording finalized', recording: `${namespace}/${name}`, profiles: profiles.map((p) => p.reference) });
    return { ...out, action: 'finalized' };
  }

  /** The recording's results, split by resultNodeProblem (class header). */
  private acceptedResults(namespace: string, name: string, uid: string | undefined): { results: ProfileRecordingResult[]; ignored: string[] } {
    const results: ProfileRecordingResult[] = [];
    const ignored: string[] = [];
    for (const r of this.o.caches.results(namespace)) {
      if (!resultBelongs(r, { namespace, name, uid })) continue;
      const id = r.metadata.uid ?? `${namespace}/${r.metadata.name}`;
      let verdict = this.verdicts.get(id);
      if (verdict === undefined) {
        const pod = this.o.caches.pod(namespace, typeof r.spec?.pod === 'string' ? r.spec.pod : '');
        verdict = resultNodeProblem(r, { namespace, name }, pod, this.o.recordingKey) ?? '';
        // Remembered once the pod is cached and scheduled: a cache that lags the scheduler is asked again.
        if (pod?.spec?.nodeName) {
          if (this.verdicts.size >= MAX_REMEMBERED * 16) this.verdicts.delete(this.verdicts.keys().next().value as string);
          this.verdicts.set(id, verdict);
        }
      }
      if (verdict === '') results.push(r);
      else {
        ignored.push(`${r.metadata.name}: ${verdict}`);
        if (!this.reported.has(id)) {
          if (this.reported.size >= MAX_REMEMBERED * 16) this.reported.delete(this.reported.values().next().value as string);
          this.reported.add(id);
          this.o.log?.({ msg: 'recording result ignored', recording: `${namespace}/${name}`, result: r.metadata.name, reason: verdict });
        }
      }
    }
    return { results, ignored: ignored.sort() };
  }

  private async publish(rec: CompiledRecording, p: PlannedProfile, key: KeyObject | string | undefined): Promise<{ reference: string; pushedNow: boolean }> {
    const repo = { registry: rec.repository.registry, repository: rec.repository.repository };
    const memo = `${repo.registry}/${repo.repository}:${p.tag}@${sha256Digest(p.bytes)}`;
    let pushed = this.pushed.get(memo);
    let pushedNow = false;
    if (!pushed) {
      const r = await pushProfile(this.o.registry, repo, p.tag, p.bytes, 'seccomp', { credential: this.o.credential });
      this.stats.pushes++;
      pushedNow = true;
      pushed = { reference: r.reference, manifest: r.packed.manifest, digest: r.digest };
      if (this.pushed.size >= MAX_REMEMBERED) this.pushed.delete(this.pushed.keys().next().value as string);
      this.pushed.set(memo, pushed);
    }
    if (key !== undefined && !this.signed.has(`${rec.signWith}|${pushed.reference}`)) {
      await signArtifact({ registry: this.o.registry, repo, digest: pushed.digest, manifestBytes: pushed.manifest, key, format: this.o.signFormat ?? 'bundle', credential: this.o.credential });
      this.stats.signatures++;
      if (this.signed.size >= MAX_REMEMBERED) this.signed.delete(this.signed.values().next().value as string);
      this.signed.add(`${rec.signWith}|${pushed.reference}`);
    }
    return { reference: pushed.reference, pushedNow };
  }

  private async ensureBindings(
    rec: CompiledRecording,
    profiles: readonly RecordedProfileStatus[],
    old: ProfileRecordingStatus,
    now: string,
    generation: number | undefined,
  ): Promise<{ profiles: RecordedProfileStatus[]; created: number; condition: ReturnType<typeof condition> }> {
    const out: RecordedProfileStatus[] = [];
    const problems: string[] = [];
    let created = 0;
    for (const prof of profiles) {
      const key = rec.mergeStrategy === 'Containers' ? '*' : (prof.containers[0] as string);
      const want = bindingFor(rec, { key, containers: prof.containers, image: prof.image }, prof.reference);
      const bname = want.metadata.name as string;
      const existing = this.o.caches.binding(rec.namespace, bname);
      if (existing) {
        if (existing.spec?.reference === prof.reference) out.push({ ...prof, binding: bname });
        else {
          problems.push(`ProfileBinding ${rec.namespace}/${bname} exists with reference ${existing.spec?.reference}; delete it to bind ${prof.reference}`);
          out.push(prof);
        }
        continue;
      }
      try {
        await this.o.api.createBinding(rec.namespace, want);
        created++;
        this.stats.bindingsCreated++;
        out.push({ ...prof, binding: bname });
      } catch (e) {
        if (codeOf(e) === 409) {
          // Created meanwhile (another replica, or our own earlier attempt): the cache will tell which reference it has.
          throw new Transient(`ProfileBinding ${rec.namespace}/${bname} already exists; waiting for the cache to compare it`);
        }
        if (codeOf(e) === 403 || codeOf(e) === 422 || codeOf(e) === 400) {
          problems.push(`creating ProfileBinding ${rec.namespace}/${bname}: ${messageOf(e)}`);
          out.push(prof);
          continue;
        }
        throw e;
      }
    }
    const cond =
      problems.length === 0
        ? condition(old.conditions, 'Bound', 'True', 'BindingsCreated', `ProfileBinding(s) ${out.map((p) => p.binding).join(', ')} (label ${RECORDING_LABEL})`, now, generation)
        : condition(old.conditions, 'Bound', 'False', 'BindingExists', problems.join('; '), now, generation);
    return { profiles: out, created, condition: cond };
  }

  /**
   * Writes `status` unless it equals what is there. On 409 re-reads the object (after a delay,
   * so the cache can catch up) and tries again with the fresh resourceVersion, keeping the
   * status computed here — unless the finalize annotation changed meanwhile, in which case the
   * recording is reconciled again from the start. Returns whether it wrote.
   */
  private async writeStatus(rec: ProfileRecording, status: ProfileRecordingStatus, token?: string): Promise<boolean> {
    const ns = rec.metadata.namespace as string;
    const name = rec.metadata.name as string;
    let current = rec;
    return retryOnConflict(
      async (attempt) => {
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
