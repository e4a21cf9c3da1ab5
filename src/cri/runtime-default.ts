// The runtime's own default seccomp profile: what a pod means by a RuntimeDefault base_profile,
// the second input of the KEP merge (KEP-6061 §4: baseline, pod base, artifact). It is taken from
// the runtime that is actually running, never from a copy of some version: read with a throwaway
// probe (runtime-default-probe.ts). The shim reads it at start and again after every reconnect
// to the runtime (a restarted runtime may be another version), or uses the file pinned with the
// config key `runtimeDefault`; its comparison with the node baseline is baseline-looser.ts.

import { sha256Hex } from '../core/digest.js';
import { SpokeError, asSpokeError } from '../core/errors.js';
import { monotonicNow, type Logger, type MonotonicNow } from '../core/runtime.js';
import type { KnownRuntimeDefault, RuntimeDefaultProvider, UnaryCaller } from './deps.js';
import { readRuntimeDefault, unavailable, type RuntimeDefaultReading } from './runtime-default-probe.js';

export interface RuntimeDefaultSourceOptions<P> {
  /** Bytes → profile: strict decode and the runtime-level checks (a runtime's own profile need not meet artifact rules). */
  decode(bytes: Uint8Array): P;
  logger: Logger;
  /** A pinned file (config key runtimeDefault): used instead of reading the runtime. */
  pinned?: { file: string; bytes: Buffer };
  /** Each runtime default that differs from the one before (start, a re-read with other content). */
  onChange?(rd: KnownRuntimeDefault<P>): void;
  /** The read itself (default readRuntimeDefault). */
  read?(upstream: UnaryCaller): Promise<RuntimeDefaultReading>;
  /** First retry after a failed read; doubles up to 60 s. Default 1 s. */
  retryMs?: number;
  /** The clock the retry delay is measured on (tests); default performance.now(). */
  monotonicNow?: MonotonicNow;
}

const MAX_RETRY_MS = 60_000;

/** A pinned runtime default's bytes decoded; InvalidArgument naming the file when they do not (spoke status checks with it too). */
export function decodePinned<P>(decode: (bytes: Uint8Array) => P, file: string, bytes: Buffer): P {
  try {
    return decode(bytes);
  } catch (e) {
    const err = asSpokeError(e, 'InvalidArgument');
    throw new SpokeError('InvalidArgument', `runtimeDefault ${file}: ${err.message}`, { file }, { cause: e, reason: err.reason });
  }
}

/**
 * The runtime default the shim merges with. Fail closed: while it is not known (never read, the
 * read failed, or the runtime reconnected and the new read is not done), get() throws or waits
 * for the read in progress; it never answers with a profile of an earlier runtime.
 */
export class RuntimeDefaultSource<P> implements RuntimeDefaultProvider<P> {
  private known: KnownRuntimeDefault<P> | undefined;
  private reading: Promise<KnownRuntimeDefault<P>> | undefined;
  private upstream: UnaryCaller | undefined;
  private lastError: SpokeError | undefined;
  private failedAt = 0;
  private readonly now: MonotonicNow;
  private retryMs: number;
  private retryTimer: NodeJS.Timeout | undefined;
  private lastSha: string | undefined;
  /** Bumped when the connection is lost: a read begun before serves no caller (forget()). */
  private generation = 0;

  constructor(private readonly opts: RuntimeDefaultSourceOptions<P>) {
    this.retryMs = opts.retryMs ?? 1000;
    this.now = opts.monotonicNow ?? monotonicNow;
    if (opts.pinned) {
      const { file, bytes } = opts.pinned;
      const profile = decodePinned(opts.decode, file, bytes);
      this.set({ profile, sha: sha256Hex(bytes) });
      opts.logger.log('info', 'runtime default profile pinned', { file, sha256: this.known!.sha });
    }
  }

  /** The profile known now, without waiting (undefined while unknown). */
  current(): KnownRuntimeDefault<P> | undefined {
    return this.reading ? undefined : this.known;
  }

  refresh(upstream: UnaryCaller): void {
    if (this.opts.pinned) return;
    this.upstream = upstream;
    // A new connection is a new runtime: its retries start from the first delay again, not from
    // where the failures of a restart's flapping connections left the backoff.
    this.retryMs = this.opts.retryMs ?? 1000;
    void this.readNow().catch(() => undefined);
  }

  /**
   * The runtime went away: its profile is not served to a create that comes before the next
   * connection's read, as the runtime that comes back may be another version with another default.
   */
  forget(): void {
    if (this.opts.pinned) return;
    this.known = undefined;
    // A read in flight is the runtime that went away: its result serves nobody (get() below).
    this.reading = undefined;
    this.generation++;
  }

  async get(): Promise<KnownRuntimeDefault<P>> {
    if (this.known) return this.known;
    const generation = this.generation;
    let known: KnownRuntimeDefault<P>;
    if (this.reading) known = await this.reading;
    else {
      if (this.upstream === undefined) throw this.lastError ?? unavailable('the runtime default profile has not been read yet: the runtime was not reached');
      if (this.lastError && this.now() - this.failedAt < this.retryMs) throw this.lastError;
      known = await this.readNow();
    }
    if (generation !== this.generation) throw unavailable('the connection to the runtime was lost while its default profile was read');
    return known;
  }

  close(): void {
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
  }

  /** Starts a read after the one in progress (a reconnect supersedes it); callers wait for the latest. */
  private readNow(): Promise<KnownRuntimeDefault<P>> {
    const upstream = this.upstream!;
    const read = this.opts.read ?? readRuntimeDefault;
    this.known = undefined;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    const previous = this.reading ?? Promise.resolve();
    const p: Promise<KnownRuntimeDefault<P>> = previous
      .catch(() => undefined)
      .then(async () => {
        let reading: RuntimeDefaultReading;
        let profile: P;
        const started = performance.now();
        try {
          reading = await read(upstream);
          profile = this.opts.decode(reading.bytes);
        } catch (e) {
          const err = asSpokeError(e, 'Unavailable');
          throw err.reason === 'RUNTIME_DEFAULT_UNAVAILABLE' ? err : unavailable(`the runtime default profile cannot be used: ${err.message}`, e);
        }
        const known = { profile, sha: sha256Hex(reading.bytes) };
        this.opts.logger.log('info', 'runtime default profile read from the runtime', { sandboxImage: reading.sandboxImage, sha256: known.sha, ms: Math.round(performance.now() - started) });
        return known;
      });
    this.reading = p;
    p.then(
      (known) => {
        if (this.reading !== p) return;
        this.reading = undefined;
        this.lastError = undefined;
        this.retryMs = this.opts.retryMs ?? 1000;
        this.set(known);
      },
      (e: SpokeError) => {
        if (this.reading !== p) return;
        this.reading = undefined;
        this.lastError = e;
        this.failedAt = this.now();
        this.opts.logger.log('error', 'runtime default profile unavailable: pods asking for a RuntimeDefault base fail until it is read', { error: e.message, retryMs: this.retryMs });
        this.retryTimer = setTimeout(() => {
          this.retryTimer = undefined;
          if (this.known === undefined && this.reading === undefined) void this.readNow().catch(() => undefined);
        }, this.retryMs);
        this.retryTimer.unref();
        this.retryMs = Math.min(MAX_RETRY_MS, this.retryMs * 2);
      },
    );
    return p;
  }

  private set(known: KnownRuntimeDefault<P>): void {
    this.known = known;
    if (known.sha !== this.lastSha) {
      this.lastSha = known.sha;
      this.opts.onChange?.(known);
    }
  }
}
