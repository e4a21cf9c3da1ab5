// A keyed work queue: keys are processed one at a time, a key queued again while it waits is
// processed once, and a key whose processing rejects is queued again after an exponential
// backoff (reset by its next success). A stopped queue takes no keys until it is resumed.

export interface WorkQueueOptions {
  backoffInitialMs?: number;
  backoffMaxMs?: number;
  /** Called when processing `key` rejected, before the retry in `retryInMs` is scheduled. */
  onError?: (key: string, error: unknown, retryInMs: number) => void;
}

export class WorkQueue {
  private readonly queue = new Set<string>();
  private readonly failures = new Map<string, number>();
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private running: Promise<void> | undefined;
  private stopped = false;
  private idleWaiters: (() => void)[] = [];

  constructor(
    private readonly process: (key: string) => Promise<unknown>,
    private readonly o: WorkQueueOptions = {},
  ) {}

  /** Queues a key; processed one at a time, deduplicated. */
  add(key: string): void {
    if (this.stopped) return;
    this.queue.add(key);
    if (!this.running) this.running = this.drain().finally(() => (this.running = undefined));
  }

  /** Resolves when the queue is empty and nothing runs (retries scheduled for later do not count). */
  idle(): Promise<void> {
    if (!this.running && this.queue.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Drops the queued keys and scheduled retries, and takes no more until resume(); a key being processed finishes. */
  stop(): void {
    this.stopped = true;
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
    this.queue.clear();
  }

  resume(): void {
    this.stopped = false;
  }

  private async drain(): Promise<void> {
    while (this.queue.size > 0 && !this.stopped) {
      const key = this.queue.values().next().value as string;
      this.queue.delete(key);
      try {
        await this.process(key);
        this.failures.delete(key);
      } catch (e) {
        const n = (this.failures.get(key) ?? 0) + 1;
        this.failures.set(key, n);
        const delay = Math.min((this.o.backoffInitialMs ?? 1000) * 2 ** (n - 1), this.o.backoffMaxMs ?? 300_000);
        this.o.onError?.(key, e, delay);
        const old = this.timers.get(key);
        if (old) clearTimeout(old);
        const t = setTimeout(() => {
          this.timers.delete(key);
          this.add(key);
        }, delay);
        t.unref();
        this.timers.set(key, t);
      }
    }
    for (const w of this.idleWaiters.splice(0)) w();
  }
}
