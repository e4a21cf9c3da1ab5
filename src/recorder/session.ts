// A recording session: preflight, source, printk limit, resolver and recorder, polled on a
// short timer; stop() drains until the kernel has gone quiet. close() always restores printk.

import { SpokeError } from '../core/errors.js';
import { monotonicNow, type Logger, type MonotonicNow } from '../core/runtime.js';
import { bootWallMs, PidResolver } from './pids.js';
import { SyscallRecorder, type RecorderLimits } from './recorder.js';
import { openAuditSource, preflight, PrintkRateLimit, type AuditSource, type SourceChoice } from './source.js';

export interface SessionOptions {
  source?: SourceChoice;
  limits?: Partial<RecorderLimits>;
  logger?: Logger;
  printkStateFile?: string;
  /** Poll interval while records flow / while idle. */
  busyPollMs?: number;
  idlePollMs?: number;
}

/**
 * Calls `drain` (which says how many records it took) until it has taken none for `quietMs`, or
 * for at most `maxMs`: the kernel's last records of a workload come after it exits. Measured on
 * `now` (tests; default performance.now()): on the wall clock a step forward would end the drain
 * before the last records were taken, and one back keep it draining until the clock caught up.
 */
export async function drainUntilQuiet(drain: () => number, quietMs: number, maxMs: number, now: MonotonicNow = monotonicNow): Promise<void> {
  const until = now() + maxMs;
  let quietSince = now();
  while (now() < until && now() - quietSince < quietMs) {
    if (drain() > 0) quietSince = now();
    await new Promise((r) => setTimeout(r, 2));
  }
}

export class RecordingSession {
  readonly recorder: SyscallRecorder;
  readonly resolver = new PidResolver();
  readonly source: AuditSource;
  private readonly printk: PrintkRateLimit | undefined;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private failure: unknown;
  private readonly busy: number;
  private readonly idle: number;

  private constructor(source: AuditSource, printk: PrintkRateLimit | undefined, opts: SessionOptions) {
    this.source = source;
    this.printk = printk;
    // audit.log records carry no kmsg timestamp: their own time comes from the boot time.
    this.recorder = new SyscallRecorder(this.resolver, { limits: opts.limits, bootWallMs: bootWallMs() });
    this.busy = opts.busyPollMs ?? 1;
    this.idle = opts.idlePollMs ?? 5;
  }

  /** Runs the preflight, lifts the printk limit (kmsg only), opens the source at its end. */
  static start(opts: SessionOptions = {}): RecordingSession {
    const choice = preflight({ source: opts.source });
    const printk = choice.kind === 'kmsg' ? new PrintkRateLimit(opts.printkStateFile) : undefined;
    printk?.lift();
    try {
      const s = new RecordingSession(openAuditSource(choice), printk, opts);
      s.schedule(0);
      opts.logger?.log('info', 'recording started', { source: choice.path, printkLifted: printk !== undefined });
      return s;
    } catch (e) {
      printk?.restore();
      throw e;
    }
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      try {
        this.resolver.sample();
        const n = this.recorder.drain(this.source);
        this.schedule(n > 0 ? this.busy : this.idle);
      } catch (e) {
        this.failure = e;
      }
    }, ms);
  }

  /** Stops polling after the source has been quiet for `quietMs` (at most `maxMs`). */
  async stop(quietMs = 300, maxMs = 5000): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await drainUntilQuiet(() => this.recorder.drain(this.source), quietMs, maxMs);
    if (this.failure) throw new SpokeError('Internal', `reading ${this.source.path} failed: ${String((this.failure as Error).message ?? this.failure)}`, {}, { reason: 'FILE_UNREADABLE' });
  }

  /** Lost records anywhere in the session (kernel notices and source losses). */
  lost(): number {
    return this.recorder.stats.lossNotices + this.source.lost;
  }

  close(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    try {
      this.source.close();
    } finally {
      this.printk?.restore();
    }
  }
}
