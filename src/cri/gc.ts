// The shim's automatic garbage collection (docs/gc.md): every `interval`, after rebuilding the
// in-use set from the runtime, the store removes profiles no container uses and no pin holds,
// once unused for `minAge` (over `maxStoreBytes`, unused ones least recently used first), and
// the effective seccomp files under <seccompRoot>/spoke/ that nothing uses (store.collect()).
//
// Creates and gc. A create resolves its profile (the stored artifact, the effective file) and
// only then records its pending holder (inuse.ts begin()); a gc decision taken in between would
// see neither the holder nor, for a reused effective file, anything young. So each edited create
// holds a lease of the CreateGate from its first profile resolution until its holder is
// recorded, and gc decides and removes under the gate's exclusive side: it waits for a moment no
// lease is held and then runs, and leases asked for while it runs wait for it (a run takes
// milliseconds). While it waits it holds nobody back: a lease may span a pull (a create that
// verifies a signature again, up to the pull timeout), and one slow registry must not stall
// every create on the node behind gc. Creates that keep overlapping (a busy node, each asking
// before the last has left) would leave it no quiet moment at all: after EXCLUSIVE_WAIT_MS gc
// holds new creates back for at most EXCLUSIVE_DRAIN_MS while those in flight finish (a create
// holds its lease for milliseconds unless it waits on a registry, and then new creates wait up
// to that long once per gc interval), and runs. A run that still finds no quiet moment is given
// up (Unavailable, OVERLOADED) and removes nothing, the creates held back go on, and the next
// run tries again. A RemoveSecurityProfile waits for a quiet moment only, and never drains.
// Objects made after the rebuild are covered by their holders; the rebuild covers objects the
// runtime runs but nobody recorded. An incomplete in-use set (unreadable file not yet rebuilt, or
// some object's config unreadable) removes nothing.

import { asSpokeError, SpokeError } from '../core/errors.js';
import type { Logger } from '../core/runtime.js';
import type { Metrics } from '../observe/metrics.js';
import type { CollectResult, ProfileStore } from '../store/store.js';
import type { RebuildResult } from './inuse.js';

/** One create's hold on the gate: taken at its first profile resolution, released once its holder is recorded. */
export interface Lease {
  acquire(): Promise<void>;
  release(): void;
}

/** How long gc (or a RemoveSecurityProfile) waits for a moment no create holds the gate. */
export const EXCLUSIVE_WAIT_MS = 10_000;
/** Then, how long it holds new creates back while those in flight finish (see the header). */
export const EXCLUSIVE_DRAIN_MS = 2_000;

/** Many creates at once, or gc alone (see the header). */
export class CreateGate {
  private active = 0;
  private exclusiveRun: Promise<unknown> | undefined;
  /** Set while a starved exclusive side holds new leases back (see the header). */
  private draining: Promise<void> | undefined;
  private readonly idle: (() => void)[] = [];

  lease(): Lease {
    let held = false;
    return {
      acquire: async () => {
        if (held) return;
        for (let wait = this.blocking(); wait !== undefined; wait = this.blocking()) await wait;
        held = true;
        this.active++;
      },
      release: () => {
        if (!held) return;
        held = false;
        if (--this.active === 0) for (const wake of this.idle.splice(0)) wake();
      },
    };
  }

  /** Whether gc holds the gate now (its exclusive run is under way). */
  get held(): boolean {
    return this.exclusiveRun !== undefined;
  }

  /**
   * Runs `fn` at a moment no lease is held; leases asked for while it runs wait for it, those
   * asked for while it waits do not (see the header). Rejects Unavailable (OVERLOADED), without
   * running `fn`, when no such moment comes within `waitMs`, or with `drain` (gc), when none comes
   * within EXCLUSIVE_DRAIN_MS more while it holds new leases back (one side drains at a time).
   */
  async exclusive<T>(fn: () => Promise<T>, waitMs = EXCLUSIVE_WAIT_MS, opts: { drain?: boolean } = {}): Promise<T> {
    let until = performance.now() + waitMs;
    /** This side's hold on new leases, once it has taken one (at most one side holds it). */
    let mine: { promise: Promise<void>; end: () => void } | undefined;
    try {
      for (;;) {
        // Another exclusive run, or another side's drain: wait for it.
        for (let wait = this.blocking(mine?.promise); wait !== undefined; wait = this.blocking(mine?.promise)) await wait;
        if (this.active === 0) break;
        if (await this.quiet(until - performance.now())) continue;
        if (mine !== undefined || !opts.drain || this.draining !== undefined) {
          const limit = mine === undefined ? waitMs : waitMs + EXCLUSIVE_DRAIN_MS;
          throw new SpokeError('Unavailable', `creates in flight held the profile store for ${Math.round(limit / 1000)} s; try again`, { limit }, { reason: 'OVERLOADED' });
        }
        // No quiet moment came: new leases wait from now while those held finish.
        let end!: () => void;
        mine = { promise: new Promise<void>((resolve) => (end = resolve)), end };
        this.draining = mine.promise;
        until = performance.now() + EXCLUSIVE_DRAIN_MS;
      }
      // Nothing awaited since `active` was 0: no lease slipped in.
      const run = fn();
      this.exclusiveRun = run;
      try {
        return await run;
      } finally {
        this.exclusiveRun = undefined;
      }
    } finally {
      if (mine !== undefined) {
        if (this.draining === mine.promise) this.draining = undefined;
        mine.end();
      }
    }
  }

  /** What a new lease, or an exclusive side holding `ownDrain`, must wait for now. */
  private blocking(ownDrain?: Promise<void>): Promise<unknown> | undefined {
    if (this.exclusiveRun !== undefined) return this.exclusiveRun.catch(() => undefined);
    if (this.draining !== undefined && this.draining !== ownDrain) return this.draining;
    return undefined;
  }

  /** Resolves true when the last lease is released, false after `ms`. */
  private quiet(ms: number): Promise<boolean> {
    if (ms <= 0) return Promise.resolve(false);
    return new Promise((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        resolve(true);
      };
      const timer = setTimeout(() => {
        const i = this.idle.indexOf(wake);
        if (i >= 0) this.idle.splice(i, 1);
        resolve(false);
      }, ms);
      this.idle.push(wake);
    });
  }
}

export interface GcSchedulerOptions {
  store: Pick<ProfileStore, 'collect'>;
  /** The in-use set rebuilt from the runtime (InUseTracker.rebuild). */
  rebuild: () => Promise<RebuildResult>;
  gate: CreateGate;
  /** Tells the shim an effective file is gone, so the next create writes it again. */
  forgetEffective: (sha: string) => void;
  /** `<seccompRoot>/spoke`. */
  effectiveDir: string;
  intervalMs: number;
  minAgeMs: number;
  maxStoreBytes: number | undefined;
  logger: Logger;
  metrics: Metrics;
}

export class GcScheduler {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<unknown> | undefined;
  private stopped = false;

  constructor(private readonly o: GcSchedulerOptions) {}

  /** The first run one interval from now (the shim's start-up rebuild comes first anyway: each run rebuilds). */
  start(): void {
    this.schedule();
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.running = this.runOnce().finally(() => {
        this.running = undefined;
        this.schedule();
      });
    }, this.o.intervalMs);
    this.timer.unref();
  }

  /** One run: rebuild, then decide and remove under the gate. Never throws (logged). */
  async runOnce(): Promise<CollectResult | undefined> {
    const { logger, metrics } = this.o;
    let rebuilt: RebuildResult;
    try {
      rebuilt = await this.o.rebuild();
    } catch (e) {
      metrics.gcRun('failed');
      logger.log('warn', 'gc skipped: the in-use set could not be rebuilt from the runtime', { error: asSpokeError(e).message });
      return undefined;
    }
    let r: CollectResult;
    let gateMs = 0;
    try {
      r = await this.o.gate.exclusive(async () => {
        const t0 = performance.now();
        try {
          const result = await this.o.store.collect({ minAgeMs: this.o.minAgeMs, maxStoreBytes: this.o.maxStoreBytes, effectiveDir: this.o.effectiveDir, effectiveInUse: new Set(rebuilt.effective) });
          // Before the gate opens: a create waiting on it must not be handed a file just removed.
          for (const sha of result.effectiveRemoved) this.o.forgetEffective(sha);
          return result;
        } finally {
          gateMs = performance.now() - t0;
        }
      }, EXCLUSIVE_WAIT_MS, { drain: true });
    } catch (e) {
      metrics.gcRun('failed');
      logger.log('warn', 'gc failed', { error: asSpokeError(e).message });
      return undefined;
    }
    metrics.gcRun(r.complete ? 'ok' : 'incomplete');
    metrics.gcRemoved('profile', r.removed.length);
    metrics.gcRemoved('effective', r.effectiveRemoved.length);
    metrics.gcRemoved('invalid', r.invalidRemoved);
    metrics.store(r.artifacts, r.bytes);
    if (!r.complete) logger.log('warn', 'gc removed nothing: the in-use set is incomplete', {});
    if (this.o.maxStoreBytes !== undefined && r.bytes > this.o.maxStoreBytes) {
      logger.log('warn', 'store above gc.maxStoreBytes: what remains is in use or pinned', { bytes: r.bytes, maxStoreBytes: this.o.maxStoreBytes });
    }
    // gateMs: how long creates resolving a profile may have waited for this run.
    logger.log('info', 'gc run', { complete: r.complete, removed: r.removed, effectiveRemoved: r.effectiveRemoved, invalidRemoved: r.invalidRemoved, artifacts: r.artifacts, bytes: r.bytes, gateMs: Math.round(gateMs * 10) / 10 });
    return r;
  }

  /** Stops scheduling and waits for a run in progress. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.running?.catch(() => undefined);
  }
}
