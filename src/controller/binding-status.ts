// ProfileBinding status: which workloads a binding was applied to (bounded), a counter of
// admitted pods, counters of the containers it selected but left alone (Unconfined without
// override, privileged, Windows pods), a `Valid` condition, and a `NamespaceOptedIn` condition (a valid
// binding in a namespace without the opt-in label binds nothing). Matches are recorded in
// memory, from authenticated admission calls (never dry runs) or from the pod informer
// (webhook.ts); a timer flushes them with get → merge → PUT /status carrying the
// resourceVersion, retrying on 409 Conflict (api-errors.ts), so concurrent replicas never lose
// each other's entries. The merge itself is pure (`mergeStatus`).

import type { PodMatch } from './admission.js';
import { retryOnConflict } from './api-errors.js';
import type { SkipReason } from './binding.js';
import { condition, withCondition } from './conditions.js';
import type { NamespaceSource } from './source.js';
import { MAX_MATCHED_WORKLOADS, NAMESPACE_OPT_IN_LABEL, NAMESPACE_OPT_IN_VALUE, namespaceOptedIn, notOptedInMessage, type Condition, type MatchedWorkload, type ProfileBinding, type ProfileBindingStatus } from './types.js';
import { validateBinding } from './validate.js';

export interface StatusClient {
  /** The current object (the controller reads its informer cache: no `get` permission needed). Rejects with `{code: 404}` when gone. */
  get(namespace: string, name: string): Promise<ProfileBinding>;
  /** PUT …/status with `obj.metadata.resourceVersion`; rejects with `{code: 409}` on conflict, `{code: 404}` when gone. */
  replaceStatus(namespace: string, name: string, obj: ProfileBinding): Promise<ProfileBinding>;
}

interface Skipped {
  unconfined: number;
  privileged: number;
  windows: number;
}

interface Pending {
  workloads: Map<string, MatchedWorkload>;
  pods: number;
  skipped: Skipped;
}

const SKIP_FIELD: Record<SkipReason, keyof Skipped> = { Unconfined: 'unconfined', Privileged: 'privileged', Windows: 'windows' };
const SKIP_FIELDS = Object.values(SKIP_FIELD);

function noneSkipped(): Skipped {
  return { unconfined: 0, privileged: 0, windows: 0 };
}

/** `into` plus `add`, counter by counter. */
function addSkipped(into: Readonly<Partial<Skipped>>, add: Readonly<Skipped>): Skipped {
  const sum = noneSkipped();
  for (const field of SKIP_FIELDS) sum[field] = (into[field] ?? 0) + add[field];
  return sum;
}

export const MAX_PENDING_BINDINGS = 1024;

function emptyPending(): Pending {
  return { workloads: new Map(), pods: 0, skipped: noneSkipped() };
}

/** The `Valid` condition for a binding, from the same validation as the webhooks. */
export function validCondition(b: ProfileBinding, now: string, previous: Condition | undefined): Condition {
  const v = validateBinding(b);
  const message = v.ok ? 'reference, image and selectors are valid' : v.problems.join('; ');
  const generation = typeof b.metadata.generation === 'number' ? b.metadata.generation : undefined;
  return condition(previous ? [previous] : undefined, 'Valid', v.ok ? 'True' : 'False', v.ok ? 'Validated' : 'Invalid', message, now, generation);
}

const NAMESPACE_CONDITION = 'NamespaceOptedIn';

/** The `NamespaceOptedIn` condition for a binding whose namespace has these labels. */
function namespaceCondition(b: ProfileBinding, labels: Readonly<Record<string, string>>, now: string, previous: readonly Condition[] | undefined): Condition {
  const namespace = b.metadata.namespace ?? '';
  const generation = typeof b.metadata.generation === 'number' ? b.metadata.generation : undefined;
  return namespaceOptedIn(labels)
    ? condition(previous, NAMESPACE_CONDITION, 'True', 'Labelled', `namespace ${namespace} is labelled ${NAMESPACE_OPT_IN_LABEL}=${NAMESPACE_OPT_IN_VALUE}: the pod webhook binds its pods`, now, generation)
    : condition(previous, NAMESPACE_CONDITION, 'False', 'NotLabelled', notOptedInMessage(namespace), now, generation);
}

/** Whether a binding's status says otherwise than these labels of its namespace (or nothing) about opting in; undefined labels: not known, never stale. */
export function namespaceConditionStale(b: ProfileBinding, labels: Readonly<Record<string, string>> | undefined): boolean {
  if (labels === undefined) return false;
  const said = b.status?.conditions?.find((c) => c.type === NAMESPACE_CONDITION)?.status;
  return said !== (namespaceOptedIn(labels) ? 'True' : 'False');
}

/**
 * Merges new matches into a status: newest first, one entry per workload, at most
 * MAX_MATCHED_WORKLOADS. `namespaceLabels`: the binding's namespace's, when known (else its
 * NamespaceOptedIn condition stays as it was).
 */
export function mergeStatus(b: ProfileBinding, add: { workloads: MatchedWorkload[]; pods: number; skipped?: Skipped }, now: string, namespaceLabels?: Readonly<Record<string, string>>): ProfileBindingStatus {
  const old = b.status ?? {};
  const byKey = new Map<string, MatchedWorkload>();
  const key = (w: MatchedWorkload) => `${w.kind}/${w.name}`;
  for (const w of [...add.workloads].sort((x, y) => (x.lastMatched < y.lastMatched ? 1 : -1))) if (!byKey.has(key(w))) byKey.set(key(w), w);
  for (const w of old.matchedWorkloads ?? []) {
    const k = key(w);
    const fresh = byKey.get(k);
    if (fresh) fresh.containers = [...new Set([...fresh.containers, ...w.containers])].sort().slice(0, 64);
    else byKey.set(k, w);
  }
  const matchedWorkloads = [...byKey.values()].slice(0, MAX_MATCHED_WORKLOADS);
  const previous = (old.conditions ?? []).find((c) => c.type === 'Valid');
  let conditions = withCondition(old.conditions, validCondition(b, now, previous));
  if (namespaceLabels) conditions = withCondition(conditions, namespaceCondition(b, namespaceLabels, now, old.conditions));
  const status: ProfileBindingStatus = { ...old, matchedWorkloads, matchedPods: (old.matchedPods ?? 0) + add.pods, conditions };
  const skipped = add.skipped;
  if (skipped && SKIP_FIELDS.some((field) => skipped[field] > 0)) status.skippedContainers = addSkipped(old.skippedContainers ?? {}, skipped);
  if (typeof b.metadata.generation === 'number') status.observedGeneration = b.metadata.generation;
  return status;
}

export interface StatusUpdaterOptions {
  /** Namespace labels, for the NamespaceOptedIn condition; without them it is not written. */
  namespaces?: NamespaceSource;
  flushIntervalMs?: number;
  /** Pause before re-reading after a 409, times the attempt number, so a cache-backed `get` can catch up. */
  conflictDelayMs?: number;
  now?: () => Date;
  log?: (event: Record<string, unknown>) => void;
}

export class StatusUpdater {
  private pending = new Map<string, Pending>();
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> | undefined;

  constructor(
    private readonly client: StatusClient,
    private readonly opts: StatusUpdaterOptions = {},
  ) {}

  private now(): string {
    return (this.opts.now?.() ?? new Date()).toISOString().replace(/\.\d{3}Z$/, 'Z');
  }

  /** Records an admission (the webhook's onApplied hook). Bounded: beyond MAX_PENDING_BINDINGS, new bindings wait for the next flush. */
  record(m: PodMatch): void {
    const now = this.now();
    const perBinding = new Map<string, string[]>();
    for (const a of m.applied) perBinding.set(a.binding, [...(perBinding.get(a.binding) ?? []), a.container]);
    for (const [binding, containers] of perBinding) {
      const p = this.pendingFor(binding);
      if (!p) continue;
      p.pods++;
      const k = `${m.workload.kind}/${m.workload.name}`;
      const prev = p.workloads.get(k);
      p.workloads.set(k, { ...m.workload, containers: [...new Set([...(prev?.containers ?? []), ...containers])].sort(), lastMatched: now });
      if (p.workloads.size > MAX_MATCHED_WORKLOADS) p.workloads.delete(p.workloads.keys().next().value as string);
    }
    for (const s of m.skipped) {
      const p = this.pendingFor(s.binding);
      if (p) p.skipped[SKIP_FIELD[s.reason]]++;
    }
  }

  private pendingFor(binding: string): Pending | undefined {
    let p = this.pending.get(binding);
    if (!p) {
      if (this.pending.size >= MAX_PENDING_BINDINGS) {
        this.opts.log?.({ msg: 'status backlog full; match not recorded', binding });
        return undefined;
      }
      p = emptyPending();
      this.pending.set(binding, p);
    }
    return p;
  }

  /** Marks a binding for a status write even without matches (e.g. to refresh its Valid condition). */
  touch(binding: string): void {
    if (!this.pending.has(binding) && this.pending.size < MAX_PENDING_BINDINGS) this.pending.set(binding, emptyPending());
  }

  start(): void {
    const every = this.opts.flushIntervalMs ?? 2000;
    this.timer = setInterval(() => void this.flush(), every);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.flush();
  }

  /** Writes everything pending; failed writes (other than 404) stay pending for the next flush. */
  flush(): Promise<void> {
    if (this.flushing) return this.flushing;
    this.flushing = this.doFlush().finally(() => (this.flushing = undefined));
    return this.flushing;
  }

  private async doFlush(): Promise<void> {
    const batch = this.pending;
    this.pending = new Map();
    for (const [binding, p] of batch) {
      const [namespace, name] = binding.split('/') as [string, string];
      try {
        await this.writeOne(namespace, name, p);
      } catch (e) {
        const code = (e as { code?: number }).code;
        if (code === 404) continue; // binding deleted meanwhile
        this.opts.log?.({ msg: 'status update failed; will retry', binding, error: (e as Error).message ?? String(e), code });
        const again = this.pending.get(binding);
        if (again) {
          again.pods += p.pods;
          again.skipped = addSkipped(again.skipped, p.skipped);
          for (const [k, w] of p.workloads) if (!again.workloads.has(k)) again.workloads.set(k, w);
        } else this.pending.set(binding, p);
      }
    }
  }

  private async writeOne(namespace: string, name: string, p: Pending): Promise<void> {
    await retryOnConflict(async () => {
      const current = await this.client.get(namespace, name);
      const labels = this.opts.namespaces?.synced() ? this.opts.namespaces.labels(namespace) : undefined;
      const status = mergeStatus(current, { workloads: [...p.workloads.values()], pods: p.pods, skipped: p.skipped }, this.now(), labels);
      await this.client.replaceStatus(namespace, name, { ...current, status });
    }, { conflictDelayMs: this.opts.conflictDelayMs });
  }
}
