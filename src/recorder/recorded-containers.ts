// What `spoke recorder`'s daemon (src/cli/commands/recorder-daemon.ts) keeps of the recorded
// containers awaiting their report: what a poll saw of each, so that one the runtime removes
// first is still reported, when a poll first saw it exited or a complete poll first found it
// gone, for the wait before its report, when its report failed, for the wait before its retry,
// and when it became due, for its turn among the reports a poll tries (docs/recording.md, step 3).

import { monotonicNow, type MonotonicNow } from '../core/runtime.js';

/** A pod sandbox as the CRI runtime lists it (ListPodSandbox). */
export interface CriSandbox {
  id: string;
  metadata?: { name?: string; namespace?: string };
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  runtime_handler?: string;
}

/** A container as the CRI runtime lists it (ListContainers). */
export interface CriContainer {
  id: string;
  metadata?: { name?: string };
  image?: { image?: string; user_specified_image?: string };
  image_ref?: string;
  state?: string;
}

/**
 * A container's report waits this long after it is first seen exited (or, if it never was, first
 * found gone), for the kernel's last records of it. Measured on the monotonic clock (injectable
 * for tests): on the wall clock, a step forward would report before those records came, and a
 * step back hold reports back as long.
 */
export const EXIT_SETTLE_MS = 1000;

/**
 * At most this many recorded containers are kept awaiting their report (docs/recording.md,
 * step 3): each goes with its report, whether the runtime still lists it or not, so only a
 * runtime listing this many recorded containers at once, or reports failing while this many
 * gather, reach it.
 */
export const MAX_RECORDED = 4096;

/**
 * The report of a container the runtime removed is retried this long after the complete poll
 * that first found it gone, then given up (docs/recording.md, step 3): long enough for the API
 * server to come back, or for an admin to lift a ResourceQuota or fix RBAC or a webhook on
 * seeing the failures logged; short enough that a report that cannot be made does not hold, for
 * good, one of the MAX_RECORDED places, the container's calls in the source (the eBPF maps are
 * emptied only while no container is recorded), and an API call and an error line at each retry.
 * The report of a container the runtime still lists is retried for as long as it is listed.
 */
export const REMOVED_RETRY_MS = 5 * 60_000;

/**
 * A report that failed is retried once it has waited as long as it had been failing, at most
 * this long: its first retry at the next poll, then after waits that double (docs/recording.md,
 * step 3). A report the API server refuses (a ResourceQuota, RBAC, an admission policy or a
 * webhook) for a container the runtime lists for days (a finished Job's) made an API call and an
 * error line at every poll. Short enough that a report is made within minutes of an admin
 * lifting the refusal. Measured on the monotonic clock, as EXIT_SETTLE_MS.
 */
export const RETRY_WAIT_MAX_MS = 5 * 60_000;

/**
 * What a poll saw of a recorded container, what its report needs once the runtime no longer
 * lists it: its pod sandbox (without its annotations, up to 256 KiB a pod), the container's
 * name and image, and the recording. None of them changes while the container exists.
 */
export interface SeenContainer {
  sb: Pick<CriSandbox, 'id' | 'metadata' | 'labels' | 'runtime_handler'>;
  c: Pick<CriContainer, 'id' | 'metadata' | 'image'>;
  recName: string;
}

/** What is kept of the attempts at a container's report. */
interface Attempts {
  /** When its report first failed (monotonic). */
  failingSince?: number;
  /** Its report is not retried before this (monotonic). */
  retryAt?: number;
  /**
   * Its place in the order a poll tries the reports due (queue()): given when a poll first finds
   * its report due, kept while polls defer it, dropped when it fails.
   */
  place?: number;
  /** A poll deferred its report and the daemon named it in a line (firstDeferral()). */
  deferralNamed?: boolean;
  /** When a poll first saw it exited (monotonic). */
  exitedAt?: number;
}

interface Kept extends SeenContainer, Attempts {
  /**
   * A poll saw it running or exited. One removed that none did is reported incomplete: with eBPF
   * it has no pid to find its mount namespace by, so the pod's one namespace no other report took
   * may be another container's, one the recording leaves out (docs/recording.md, step 3).
   */
  ran?: boolean;
  /**
   * When a complete poll first did not list it since a poll last did (monotonic): one listed
   * again (a runtime's glitch) is not gone, and its report is retried for as long as it is
   * listed, neither due at nor given up at a bound counted from then (docs/recording.md, step 3).
   */
  goneAt?: number;
}

/** The recorded containers awaiting their report, by id. */
export class RecordedContainers {
  private readonly kept = new Map<string, Kept>();
  /**
   * The attempts at the reports of containers not kept ('untracked'), by id: a few numbers each
   * (not what a poll saw of them), so that such a report that fails waits before its retry, and
   * takes its turn among them, as a kept one. At most MAX_RECORDED: the least recently written
   * is forgotten first (its report then tried as if it never failed); and those of containers a
   * complete poll did not list (docs/recording.md, step 3).
   */
  private readonly untracked = new Map<string, Attempts>();
  /** The last place queue() gave. */
  private places = 0;

  constructor(private readonly now: MonotonicNow = monotonicNow) {}

  /**
   * Notes a poll's sight of a recorded container: 'live' while it has not exited; once it has,
   * 'waiting' until it has been seen exited for EXIT_SETTLE_MS, then 'settled'. 'untracked' when
   * MAX_RECORDED others are kept: none of them is dropped for it (each would go unreported if the
   * runtime removed it), so it is reported at once, as incomplete; when a poll first saw it
   * exited is noted with the attempts at its report. One kept once a place is free: if it has
   * exited, its report was due and stays so, keeping what is kept of its attempts (its place in
   * the order of the reports due, when it first failed and the wait before its retry) and when
   * a poll first saw it exited, so it waits no more than it would have had it been kept; if it
   * has not, it starts afresh, as one first seen now: its report, due once it has exited and its
   * wait is over, takes its turn then, and if it fails is retried at the next poll, as any
   * report failing for the first time (docs/recording.md, step 3).
   */
  see(sb: CriSandbox, c: CriContainer, recName: string): 'live' | 'waiting' | 'settled' | 'untracked' {
    const exited = c.state === 'CONTAINER_EXITED';
    let k = this.kept.get(c.id);
    if (!k) {
      if (this.kept.size >= MAX_RECORDED) {
        // In place: a sight is not an attempt, and does not save it from being forgotten first.
        if (exited) (this.untracked.get(c.id) ?? this.attempts(c.id)).exitedAt ??= this.now();
        return 'untracked';
      }
      const seen = { sb: { id: sb.id, metadata: sb.metadata, labels: sb.labels, runtime_handler: sb.runtime_handler }, c: { id: c.id, metadata: c.metadata, image: c.image }, recName };
      k = { ...(exited ? this.untracked.get(c.id) : undefined), ...seen };
      this.untracked.delete(c.id);
      this.kept.set(c.id, k);
    }
    k.goneAt = undefined;
    k.ran ||= c.state === 'CONTAINER_RUNNING' || exited;
    if (!exited) return 'live';
    k.exitedAt ??= this.now();
    return this.settled(k) ? 'settled' : 'waiting';
  }

  /**
   * Its wait is over: the kernel's last records of it came within EXIT_SETTLE_MS of its exit,
   * which was no later than a poll first saw it exited, nor than a complete poll first did not
   * list it (the runtime stops a container before it removes it). Whether the runtime still
   * lists it does not matter: a removed container makes no more calls (docs/recording.md, step 3).
   */
  private settled(k: Kept): boolean {
    const exitedBy = k.exitedAt ?? k.goneAt;
    return exitedBy !== undefined && this.now() - exitedBy >= EXIT_SETTLE_MS;
  }

  forget(id: string): void {
    this.kept.delete(id);
    this.untracked.delete(id);
  }

  /** What is kept of the attempts at its report; for one not kept, written now (this.untracked). */
  private attempts(id: string): Attempts {
    const k = this.kept.get(id);
    if (k) return k;
    const a = this.untracked.get(id) ?? {};
    this.untracked.delete(id);
    if (this.untracked.size >= MAX_RECORDED) this.untracked.delete(this.untracked.keys().next().value as string);
    this.untracked.set(id, a);
    return a;
  }

  /**
   * Notes that its report failed now; returns how long until it is due again (due()): its retry
   * waits as long as the report has been failing, at most RETRY_WAIT_MAX_MS, and one of a
   * removed container no longer than to its give-up bound (0 if that has passed: the daemon
   * gives such a report up instead, goneFor()).
   */
  failed(id: string): number {
    const k = this.attempts(id);
    const now = this.now();
    k.failingSince ??= now;
    k.retryAt = now + Math.min(now - k.failingSince, RETRY_WAIT_MAX_MS);
    k.place = undefined;
    return Math.max(0, this.dueAt(k) - now);
  }

  /** How long ago a complete poll first did not list this kept container; undefined if none has. */
  goneFor(id: string): number | undefined {
    const goneAt = this.kept.get(id)?.goneAt;
    return goneAt === undefined ? undefined : this.now() - goneAt;
  }

  /**
   * When its report is due (monotonic): when the wait before its retry ends, or, for a container
   * removed, REMOVED_RETRY_MS after a complete poll first found it gone if that comes first: the
   * attempt that gives its report up if it fails is not put off past that bound by that wait.
   */
  private dueAt(k: Attempts & { goneAt?: number }): number {
    return Math.min(k.retryAt ?? -Infinity, k.goneAt === undefined ? Infinity : k.goneAt + REMOVED_RETRY_MS);
  }

  /**
   * A poll found its report due: its place in the order the poll tries the reports due, lowest
   * first. A report keeps the place it was given when a poll first found it due until it is
   * tried and fails: then it is given the next one when it is due again. So a report a poll
   * deferred (PollReports in src/cli/commands/recorder-daemon.ts) goes before those the poll tried,
   * and every due report before any found due after it: one whose calls the API server leaves
   * unanswered closes the poll that tries it, but it cannot close every poll while others wait
   * (docs/recording.md, step 3). The places of kept containers and of those not kept
   * ('untracked') come from one count: they take their turns in one order.
   */
  queue(id: string): number {
    const k = this.attempts(id);
    return (k.place ??= ++this.places);
  }

  /**
   * A poll deferred its report: whether for the first time since what is kept of its attempts
   * was first written. The daemon names a report of a container not kept then only, not at each
   * poll that defers it (docs/recording.md, step 3).
   */
  firstDeferral(id: string): boolean {
    const k = this.attempts(id);
    if (k.deferralNamed) return false;
    return (k.deferralNamed = true);
  }

  /** Its report is to be tried now: it has not failed, or it is due again (dueAt()). */
  due(id: string): boolean {
    const k = this.kept.get(id) ?? this.untracked.get(id);
    return k === undefined || this.now() >= this.dueAt(k);
  }

  /**
   * After a complete poll: the kept containers it did not list (removed before their report),
   * kept until it is made or given up; each `settled` when its wait is over now, counted from
   * when a poll first saw it exited or else from this first complete poll without it; and
   * `due` as due() says (at the latest once it is REMOVED_RETRY_MS gone). What is kept of the
   * attempts at the reports of containers not kept that it did not list is forgotten.
   */
  gone(listed: ReadonlySet<string>): (Kept & { settled: boolean; due: boolean })[] {
    for (const id of this.untracked.keys()) if (!listed.has(id)) this.untracked.delete(id);
    return [...this.kept.values()]
      .filter((k) => !listed.has(k.c.id))
      .map((k) => {
        k.goneAt ??= this.now();
        return { ...k, settled: this.settled(k), due: this.due(k.c.id) };
      });
  }

  ids(): IterableIterator<string> {
    return this.kept.keys();
  }

  /** Of how many not kept the attempts at their report are (tests). */
  get untrackedSize(): number {
    return this.untracked.size;
  }

  /** How many are kept (tests). */
  get size(): number {
    return this.kept.size;
  }
}
