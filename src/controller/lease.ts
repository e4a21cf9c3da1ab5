// One replica of `spoke controller` at a time does the work that must happen once in the
// cluster, not once per replica (docs/binding.md#replicas): binding status from the pod informer
// and the ProfileRecording reconciler. Which one is decided by a coordination.k8s.io/v1 Lease,
// as client-go's leaderelection package decides it
// (https://pkg.go.dev/k8s.io/client-go/tools/leaderelection):
//  - the holder renews spec.renewTime every retry period;
//  - another replica takes the Lease only after it has seen the same record (resourceVersion)
//    for spec.leaseDurationSeconds by its own clock, so no two machines' clocks are compared;
//  - a holder that has not renewed within the renew deadline, shorter than the lease duration,
//    stops leading before anyone else may start;
//  - a holder that stops releases the Lease (empty holderIdentity), so another takes it at its
//    next try instead of waiting for it to expire;
//  - every request carries a deadline (an AbortSignal): a try gives up after the retry period,
//    shorter than the renew deadline, and its requests still unanswered are aborted, so one the
//    API server took and never answers neither keeps a connection open nor holds the next try
//    back (docs/binding.md#replicas).
// Every write carries the resourceVersion it read: of two replicas racing for the Lease, one
// gets 409 Conflict.

import { SpokeError } from '../core/errors.js';
import { monotonicNow, type MonotonicNow } from '../core/runtime.js';
import { codeOf } from './api-errors.js';
import type { ObjectMeta } from './types.js';
import { Pause } from './pause.js';

export interface LeaseSpec {
  holderIdentity?: string;
  leaseDurationSeconds?: number;
  /** RFC 3339 with microseconds (metav1.MicroTime). */
  acquireTime?: string;
  renewTime?: string;
  leaseTransitions?: number;
}

export interface Lease {
  metadata: ObjectMeta;
  spec?: LeaseSpec;
}

/**
 * The calls on the one Lease the replicas share (RBAC: leases create, and get and update of that
 * name). Each takes the signal of its try: once it aborts, the request is given up (its
 * connection closed) and the call rejects.
 */
export interface LeaseClient {
  /** The Lease, or undefined when there is none. */
  get(signal: AbortSignal): Promise<Lease | undefined>;
  /** Creates it; rejects with `{code: 409}` when it exists. */
  create(spec: LeaseSpec, signal: AbortSignal): Promise<Lease>;
  /** PUT with `lease.metadata.resourceVersion`; rejects with `{code: 409}` on conflict. */
  replace(lease: Lease, signal: AbortSignal): Promise<Lease>;
}

export interface LeaseElectorOptions {
  client: LeaseClient;
  /** This replica's name in spec.holderIdentity: unique among the replicas. */
  identity: string;
  /** Default 15 s: how long others wait, after the holder's last renewal they saw, before taking the Lease. */
  leaseDurationMs?: number;
  /** Default 10 s: a holder that has not renewed for this long stops leading. Shorter than the lease duration. */
  renewDeadlineMs?: number;
  /** Default 2 s: how often the holder renews and the others try. */
  retryPeriodMs?: number;
  /** Starts the work only one replica does. Awaited before the next renewal. */
  onStartedLeading: () => void | Promise<void>;
  /** Stops that work. Awaited before this replica tries to lead again. */
  onStoppedLeading: () => void | Promise<void>;
  log?: (event: Record<string, unknown>) => void;
  /** The clock the renew deadline and the Lease's expiry are measured on; default monotonicNow. */
  monotonicNow?: MonotonicNow;
}

type Attempt = 'held' | 'other' | 'failed';

export class LeaseElector {
  private leading = false;
  private stopped = true;
  private loop: Promise<void> | undefined;
  private readonly pause = new Pause();
  /** The Lease record last seen and when (on `now`), for expiry. */
  private observed: { resourceVersion: string; at: number } | undefined;
  private lastRenewal = 0;
  /** Fires at the renew deadline: a holder whose requests hang stops at it, not when a try ends. */
  private deadlineTimer: NodeJS.Timeout | undefined;
  private deadlinePassed = false;
  /**
   * The try under way (0: none). A try that gives up aborts its requests, but the API server may
   * still answer one (or have applied a write) before the abort reaches it: what it answers later
   * must change nothing, since the try it belonged to already counted as failed and its reading
   * may be older than the ones after it.
   */
  private currentTry = 0;
  private tries = 0;
  /** Ends the try under way at once, as failed (renew deadline, stop). */
  private endTry: (() => void) | undefined;
  /** Requests of tries that ended, not yet settled (a client may not honour the abort at once): a write among them may yet land. */
  private readonly pending = new Set<Promise<unknown>>();
  private lastProblem = '';
  private readonly leaseDurationMs: number;
  private readonly renewDeadlineMs: number;
  private readonly retryPeriodMs: number;
  private readonly now: MonotonicNow;

  constructor(private readonly o: LeaseElectorOptions) {
    this.now = o.monotonicNow ?? monotonicNow;
    this.leaseDurationMs = o.leaseDurationMs ?? 15_000;
    this.renewDeadlineMs = o.renewDeadlineMs ?? 10_000;
    this.retryPeriodMs = o.retryPeriodMs ?? 2_000;
    if (!(this.retryPeriodMs > 0 && this.retryPeriodMs < this.renewDeadlineMs && this.renewDeadlineMs < this.leaseDurationMs)) {
      throw new SpokeError('InvalidArgument', 'Lease timing must be 0 < retry period < renew deadline < lease duration', {}, { reason: 'OPTION_INVALID' });
    }
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.loop = this.run();
  }

  /** Stops trying; a leader stops its work (onStoppedLeading) and then releases the Lease. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.endTry?.();
    this.pause.wake();
    await this.loop;
    if (this.leading) await this.stepDown('stopping');
    // A takeover write of a try that gave up can still land: looked at before it does, the Lease
    // would not be ours yet, and once it landed nobody would lead until it expired. Waited for
    // while its call is still under way (as long as the others would wait for an unrenewed Lease
    // at most), then released. An aborted call ends at once; a write the API server applies after
    // its abort and after this release read is left to expire, as a crashed holder's is.
    await this.settled(this.leaseDurationMs);
    await this.release();
  }

  /** Waits until no request of an ended try is outstanding, or `ms` passed. */
  private async settled(ms: number): Promise<void> {
    if (this.pending.size === 0) return;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), ms)));
    const all = Promise.allSettled([...this.pending]).then(() => 'settled' as const);
    const out = await Promise.race([all, timeout]);
    clearTimeout(timer);
    if (out === 'timeout') this.o.log?.({ msg: 'a Lease request is still unanswered at stop; if it took the Lease, the others take it once it expires', identity: this.o.identity, level: 'warning' });
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      // Where the deadline timer woke the loop from its sleep.
      if (this.leading && this.pastDeadline()) await this.stepDown(`not renewed for ${this.renewDeadlineMs} ms`);
      if (this.stopped) break;
      // The renew deadline counts from before the request: the others count the lease duration from
      // when they see the renewal, which is later.
      const started = this.now();
      const attempt = await this.tryAcquireOrRenew();
      if (this.stopped) break;
      if (attempt === 'held') {
        this.renewed(started);
        if (!this.leading) {
          this.leading = true;
          this.o.log?.({ msg: 'leading: this replica holds the Lease', identity: this.o.identity });
          await this.o.onStartedLeading();
        }
      }
      if (this.leading && (attempt === 'other' || this.pastDeadline())) {
        await this.stepDown(attempt === 'other' ? 'another replica holds the Lease' : `not renewed for ${this.renewDeadlineMs} ms`);
      }
      // Followers spread their tries (as client-go's jitter), so that they do not all ask at once.
      // A leader past its deadline (the timer fired while onStartedLeading ran) does not wait.
      if (!(this.leading && this.pastDeadline())) await this.pause.for(this.leading ? this.retryPeriodMs : this.retryPeriodMs * (1 + 0.2 * Math.random()));
    }
  }

  /**
   * A renewal whose try started at `started`. The deadline is measured from there, not from the
   * answer: the others count the lease duration from when they see the renewal, which is later.
   * It is watched by a timer, not only when a try ends: a try ends up to a retry period after the
   * deadline, and the holder must stop before anyone may start.
   */
  private renewed(started: number): void {
    this.lastRenewal = started;
    this.deadlinePassed = false;
    clearTimeout(this.deadlineTimer);
    this.deadlineTimer = setTimeout(
      () => {
        this.deadlinePassed = true;
        this.endTry?.();
        this.pause.wake();
      },
      Math.max(0, started + this.renewDeadlineMs - this.now()),
    );
  }

  private pastDeadline(): boolean {
    return this.deadlinePassed || this.now() - this.lastRenewal >= this.renewDeadlineMs;
  }

  private async stepDown(why: string): Promise<void> {
    clearTimeout(this.deadlineTimer);
    this.leading = false;
    this.o.log?.({ msg: 'stopped leading', why, identity: this.o.identity });
    await this.o.onStoppedLeading();
  }

  /**
   * One try: take the Lease where nobody holds it (or its holder's record has not changed for
   * its lease duration), renew it where we hold it. A try whose requests have not answered within
   * the retry period (shorter than the renew deadline) counts as failed, and so does one ended
   * by the renew deadline or stop(): its requests still unanswered are aborted then. The renew
   * deadline is measured from the last success.
   */
  private async tryAcquireOrRenew(): Promise<Attempt> {
    const id = ++this.tries;
    this.currentTry = id;
    const abort = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    const ended = new Promise<Attempt>((resolve) => {
      timer = setTimeout(() => {
        this.problem(this.noAnswer());
        resolve('failed');
      }, this.retryPeriodMs);
      this.endTry = () => resolve('failed');
    });
    const work = this.acquireOrRenew(() => this.currentTry === id, abort.signal);
    const outstanding = work.then(
      () => undefined,
      () => undefined,
    );
    this.pending.add(outstanding);
    void outstanding.then(() => this.pending.delete(outstanding));
    try {
      return await Promise.race([work, ended]);
    } catch (e) {
      this.problem(e);
      return 'failed';
    } finally {
      clearTimeout(timer);
      this.endTry = undefined;
      this.currentTry = 0;
      // Whatever is still unanswered belongs to a try that is over.
      abort.abort(new SpokeError('Unavailable', 'Lease request given up: its try ended', {}, { reason: 'CANCELLED' }));
    }
  }

  /** `live`: whether the try this belongs to is still under way; after it ended, nothing more is read into state or written. */
  private async acquireOrRenew(live: () => boolean, signal: AbortSignal): Promise<Attempt> {
    const seconds = Math.ceil(this.leaseDurationMs / 1000);
    const lease = await this.o.client.get(signal);
    if (!live()) return 'failed';
    // Taken once the GET answered: the record read may have been written any time until then,
    // and the lease duration counts from when it was seen, never from before.
    const now = this.now();
    const stamp = microTime(new Date());
    if (!lease) {
      const created = await this.write(live, () => this.o.client.create({ holderIdentity: this.o.identity, leaseDurationSeconds: seconds, acquireTime: stamp, renewTime: stamp, leaseTransitions: 0 }, signal));
      return created ? 'held' : 'failed';
    }
    const spec = lease.spec ?? {};
    const resourceVersion = lease.metadata.resourceVersion ?? '';
    if (this.observed?.resourceVersion !== resourceVersion) this.observed = { resourceVersion, at: now };
    const holder = spec.holderIdentity ?? '';
    const mine = holder === this.o.identity;
    const expired = now - this.observed.at >= (spec.leaseDurationSeconds ?? seconds) * 1000;
    if (holder !== '' && !mine && !expired) return 'other';
    const transitions = spec.leaseTransitions ?? 0;
    const next: LeaseSpec = {
      holderIdentity: this.o.identity,
      leaseDurationSeconds: seconds,
      acquireTime: mine && spec.acquireTime ? spec.acquireTime : stamp,
      renewTime: stamp,
      leaseTransitions: mine ? transitions : transitions + 1,
    };
    const written = await this.write(live, () => this.o.client.replace({ metadata: lease.metadata, spec: next }, signal));
    return written ? 'held' : 'failed';
  }

  /** A write of the Lease; false on 409 Conflict (another replica wrote it first), and when its try ended before it answered. */
  private async write(live: () => boolean, call: () => Promise<Lease>): Promise<boolean> {
    try {
      const out = await call();
      if (!live()) return false;
      this.observed = { resourceVersion: out.metadata.resourceVersion ?? '', at: this.now() };
      this.lastProblem = '';
      return true;
    } catch (e) {
      if (codeOf(e) === 409) return false;
      throw e;
    }
  }

  /**
   * Gives the Lease up: empty holder, so the next try of another replica takes it. Each attempt
   * (GET, then PUT) has the retry period, as a try has: past it, its request is aborted and the
   * Lease is left to expire.
   */
  private async release(): Promise<void> {
    // Once more after a 409: the Lease changed between our GET and PUT (a late write of ours, or
    // another replica's try that saw it as ours and lost); the second read says whose it is now.
    for (let attempt = 1; ; attempt++) {
      try {
        const released = await this.withDeadline(async (signal) => {
          const lease = await this.o.client.get(signal);
          if (lease?.spec?.holderIdentity !== this.o.identity) return false;
          const stamp = microTime(new Date());
          await this.o.client.replace({ metadata: lease.metadata, spec: { ...lease.spec, holderIdentity: '', leaseDurationSeconds: 1, renewTime: stamp } }, signal);
          return true;
        });
        if (released) this.o.log?.({ msg: 'released the Lease', identity: this.o.identity });
        return;
      } catch (e) {
        if (codeOf(e) === 409 && attempt < 2) continue;
        // Then the others take it once it expires.
        this.problem(e);
        return;
      }
    }
  }

  /** `call` with a signal that aborts after the retry period; it rejects then, whether or not the client honoured the abort. */
  private async withDeadline<T>(call: (signal: AbortSignal) => Promise<T>): Promise<T> {
    const abort = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        const e = this.noAnswer();
        abort.abort(e);
        reject(e);
      }, this.retryPeriodMs);
    });
    try {
      return await Promise.race([call(abort.signal), late]);
    } finally {
      clearTimeout(timer);
    }
  }

  private noAnswer(): SpokeError {
    return new SpokeError('Unavailable', `Lease request unanswered after ${this.retryPeriodMs} ms: given up`, {}, { reason: 'DEADLINE' });
  }

  /** Logs a failed request once until the next success or another failure (not at every try). */
  private problem(e: unknown): void {
    const message = (e as Error)?.message ?? String(e);
    if (message === this.lastProblem) return;
    this.lastProblem = message;
    this.o.log?.({ msg: 'Lease request failed; retrying', error: message, code: codeOf(e), level: 'warning' });
  }

}

/** metav1.MicroTime: RFC 3339 in UTC with six fractional digits. */
function microTime(d: Date): string {
  return d.toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}
