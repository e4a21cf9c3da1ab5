// The bytes of artifact blobs a node holds in memory at once, across every pull (docs/shim.md).
// A pull holds its blob from the download until it is stored (a signed one, until its
// signature's verdict); each is capped at maxArtifactBytes, but nothing capped how many distinct
// pulls run at once: pods naming many large profiles could take the shim past its memory limit,
// and a shim killed for memory fails every create on the node. A pull asks for its blob's
// declared size before it downloads it, and waits its turn (first come, first served) while the
// budget is spent; its flight's deadline still applies while it waits.

import { SpokeError } from '../core/errors.js';

/** Blob bytes held at once: 64 of the default 1 MiB cap, 4 of the largest (16 MiB). */
export const BLOB_BYTES_IN_FLIGHT = 64 * 1024 * 1024;

export class ByteBudget {
  private used = 0;
  private readonly waiting: { bytes: number; grant: () => void }[] = [];

  constructor(readonly limit: number = BLOB_BYTES_IN_FLIGHT) {
    if (!Number.isSafeInteger(limit) || limit < 1) throw new SpokeError('InvalidArgument', `a byte budget must be a positive number of bytes, got ${String(limit)}`, {}, { reason: 'OPTION_INVALID' });
  }

  /** Takes `bytes` now when they fit and nobody waits (true); otherwise takes nothing (false). */
  tryTake(bytes: number): boolean {
    if (this.waiting.length > 0 || !this.fits(bytes)) return false;
    this.used += bytes;
    return true;
  }

  /** Takes `bytes` in turn, once they fit; rejects with the signal's reason if it aborts first. */
  take(bytes: number, signal?: AbortSignal): Promise<void> {
    if (this.tryTake(bytes)) return Promise.resolve();
    if (signal?.aborted) return Promise.reject(signal.reason as Error);
    return new Promise((resolve, reject) => {
      const entry = {
        bytes,
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

  /** Gives back `bytes` taken earlier; the next in line get their turn. */
  give(bytes: number): void {
    this.used -= bytes;
    this.grantWaiting();
  }

  /** Bytes taken now. */
  get inUse(): number {
    return this.used;
  }

  /** One larger than the whole budget fits alone, so that it is never refused for good. */
  private fits(bytes: number): boolean {
    return this.used === 0 || this.used + bytes <= this.limit;
  }

  private grantWaiting(): void {
    while (this.waiting.length > 0 && this.fits(this.waiting[0]!.bytes)) {
      const next = this.waiting.shift()!;
      this.used += next.bytes;
      next.grant();
    }
  }
}
