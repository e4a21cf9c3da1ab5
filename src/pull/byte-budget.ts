// The bytes of artifact blobs a node holds in memory at once, across every pull (docs/shim.md).
// A pull holds its blob from the download until it is stored (a signed one, until its
// signature's verdict); each is capped at maxArtifactBytes, but nothing capped how many distinct
// pulls run at once: pods naming many large profiles could take the shim past its memory limit,
// and a shim killed for memory fails every create on the node. A pull asks for its blob's
// declared size before it downloads it, and waits its turn (first come, first served) while the
// budget is spent; its flight's deadline still applies while it waits.
// Each owner (a pull's namespace) holds at most half the budget at once: a source that stalls
// its blob bodies keeps its pulls holding their bytes until their deadline, and one namespace's
// stalled pulls spent the whole budget, so every other namespace's pulls waited behind them.

import { SpokeError } from '../core/errors.js';

/** Blob bytes held at once: 64 of the default 1 MiB cap, 4 of the largest (16 MiB). */
export const BLOB_BYTES_IN_FLIGHT = 64 * 1024 * 1024;

interface Waiter {
  bytes: number;
  owner: string;
  grant: () => void;
}

export class ByteBudget {
  private used = 0;
  /** owner → bytes it holds now (owners holding nothing are not kept). */
  private readonly held = new Map<string, number>();
  private readonly waiting: Waiter[] = [];
  /** What one owner may hold at once, unless it holds nothing. */
  private readonly share: number;

  constructor(readonly limit: number = BLOB_BYTES_IN_FLIGHT) {
    if (!Number.isSafeInteger(limit) || limit < 1) throw new SpokeError('InvalidArgument', `a byte budget must be a positive number of bytes, got ${String(limit)}`, {}, { reason: 'OPTION_INVALID' });
    this.share = Math.floor(limit / 2);
  }

  /** Takes `bytes` for `owner` now when they fit and nobody is in line for the budget ahead (true); otherwise takes nothing (false). */
  tryTake(bytes: number, owner = ''): boolean {
    if (!this.fits(bytes, owner) || this.waiting.some((w) => this.withinShare(w.bytes, w.owner))) return false;
    this.hold(bytes, owner);
    return true;
  }

  /** Takes `bytes` for `owner` in turn, once they fit; rejects with the signal's reason if it aborts first. */
  take(bytes: number, signal?: AbortSignal, owner = ''): Promise<void> {
    if (this.tryTake(bytes, owner)) return Promise.resolve();
    if (signal?.aborted) return Promise.reject(signal.reason as Error);
    return new Promise((resolve, reject) => {
      const entry: Waiter = {
        bytes,
        owner,
        grant: () => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        },
      };
      const onAbort = () => {
        const i = this.waiting.indexOf(entry);
        if (i >= 0) this.waiting.splice(i, 1);
        // The one that left may have held back smaller ones behind it.
        this.grantWaiting();
        reject(signal!.reason as Error);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiting.push(entry);
    });
  }

  /** Gives back `bytes` that `owner` took earlier; the next in line get their turn. */
  give(bytes: number, owner = ''): void {
    this.used -= bytes;
    const left = (this.held.get(owner) ?? 0) - bytes;
    if (left > 0) this.held.set(owner, left);
    else this.held.delete(owner);
    this.grantWaiting();
  }

  /** Bytes taken now. */
  get inUse(): number {
    return this.used;
  }

  private hold(bytes: number, owner: string): void {
    this.used += bytes;
    this.held.set(owner, (this.held.get(owner) ?? 0) + bytes);
  }

  /** Within its owner's share; one larger than the share goes when its owner holds nothing. */
  private withinShare(bytes: number, owner: string): boolean {
    const held = this.held.get(owner) ?? 0;
    return held === 0 || held + bytes <= this.share;
  }

  /** One larger than the whole budget fits alone, so that it is never refused for good. */
  private fits(bytes: number, owner: string): boolean {
    return (this.used === 0 || this.used + bytes <= this.limit) && this.withinShare(bytes, owner);
  }

  /**
   * In turn: a waiter whose owner is at its share steps aside for those behind it (its own
   * bytes given back let it in); one the whole budget cannot take yet holds the line, so that
   * smaller ones never starve a larger one.
   */
  private grantWaiting(): void {
    for (let i = 0; i < this.waiting.length; ) {
      const w = this.waiting[i]!;
      if (!this.withinShare(w.bytes, w.owner)) {
        i++;
        continue;
      }
      if (!this.fits(w.bytes, w.owner)) return;
      this.waiting.splice(i, 1);
      this.hold(w.bytes, w.owner);
      w.grant();
    }
  }
}
