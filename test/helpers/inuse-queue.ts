// Holds a shim's in-use queue (the lock every create and removal takes to record its holders,
// src/cri/inuse.ts) as a slow step of one of its turns does: another create's AppArmor claim
// whose holder write waits (a slow disk). Its load does not hold the queue: it runs under the
// profile's name lock (docs/apparmor.md). Counts the creates that reach the queue to record
// their pending holder.

import type { Digest } from '../../src/core/digest.js';
import type { ShimStore } from '../../src/cri/deps.js';
import type { InUseTracker } from '../../src/cri/inuse.js';
import { waitFor } from './wait.js';

/** Resolves once a claim of profile `spoke-<hexDigit × 64>` holds the queue, until `release`. */
export async function holdInUseQueue(inUse: InUseTracker, store: Pick<ShimStore, 'markInUse'>, hexDigit: string, digest: Digest) {
  const name = `spoke-${hexDigit.repeat(64)}`;
  let release = () => {};
  const blocked = new Promise<void>((r) => (release = r));
  let held = () => {};
  const holding = new Promise<void>((r) => (held = r));
  const markInUse = store.markInUse;
  store.markInUse = async (d, holder) => {
    if (holder.startsWith(`apparmor:${name}@`)) {
      held();
      await blocked;
    }
    return markInUse.call(store, d, holder);
  };
  const claim = inUse.claimAppArmor(name, digest, async () => undefined);
  const counted = inUse as unknown as { begin: (...a: unknown[]) => Promise<string> };
  const begin = counted.begin.bind(counted);
  let began = 0;
  counted.begin = async (...a: unknown[]) => {
    began++;
    return begin(...a);
  };
  await holding;
  return {
    release,
    createWaiting: () => waitFor(() => began === 1, { timeoutMs: 5000, what: 'the create waiting in the in-use queue to record its pending holder' }),
    async restore() {
      counted.begin = begin;
      store.markInUse = markInUse;
      release();
      await inUse.abortAppArmor([await claim]);
    },
  };
}
