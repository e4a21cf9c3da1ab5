// Which sandbox or container uses which artifact, so gc never deletes a profile a running pod
// uses. The mapping lives in the store's in-use set (holder → artifact digest, persisted under
// <storeDir>/state/in-use.json), with holders named `sandbox:<id>` / `container:<id>` after the
// ids the upstream returned. Around a create, a `pending:<ms>:<rand>` holder covers the window
// between "profile resolved" and "id known" (a crash there leaves a pending holder, dropped by
// the next rebuild once it is older than PENDING_TTL_MS).
//
// Rebuild (shim start, every upstream reconnect, after RemovePodSandbox): the live ids from the
// upstream's ListPodSandbox and ListContainers; holders of ids the runtime no longer knows are
// dropped, holders of live ids kept. Restarting the shim loses nothing (the set is on disk);
// restarting the runtime keeps whatever it still runs. Commits and rebuilds are serialised.

import { randomBytes } from 'node:crypto';
import type { Digest } from '../core/digest.js';
import type { Logger } from '../core/runtime.js';
import type { ShimStore } from './deps.js';
import { decodeContainerIds, decodeSandboxIds } from './messages.js';
import type { Upstream } from './upstream.js';

export const PENDING_TTL_MS = 10 * 60 * 1000;
const LIST_SANDBOXES = '/runtime.v1.RuntimeService/ListPodSandbox';
const LIST_CONTAINERS = '/runtime.v1.RuntimeService/ListContainers';

export class InUseTracker {
  private chain: Promise<unknown> = Promise.resolve();
  /** Holders known to be recorded (saves a store write for removals of unrelated objects). */
  private readonly known = new Set<string>();

  constructor(
    private readonly store: ShimStore,
    private readonly logger: Logger,
  ) {}

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.chain.then(fn, fn);
    this.chain = run.catch(() => undefined);
    return run;
  }

  async begin(digest: Digest): Promise<string> {
    const holder = `pending:${Date.now()}:${randomBytes(6).toString('hex')}`;
    await this.serial(() => this.store.markInUse(digest, holder));
    return holder;
  }

  async commit(pending: string, holder: string, digest: Digest): Promise<void> {
    await this.serial(async () => {
      await this.store.markInUse(digest, holder);
      this.known.add(holder);
      await this.store.release(pending);
    });
  }

  async abort(pending: string): Promise<void> {
    await this.serial(() => this.store.release(pending));
  }

  /** After a successful RemoveContainer / RemovePodSandbox. */
  async released(holder: string): Promise<void> {
    if (!this.known.has(holder)) return;
    await this.serial(async () => {
      await this.store.release(holder);
      this.known.delete(holder);
    });
  }

  /** Rebuilds the runtime holders from the upstream's live sandboxes and containers. */
  async rebuild(upstream: Upstream): Promise<{ kept: number; dropped: number }> {
    return this.serial(async () => {
      const [sbBytes, ctBytes] = await Promise.all([upstream.unary(LIST_SANDBOXES, Buffer.alloc(0)), upstream.unary(LIST_CONTAINERS, Buffer.alloc(0))]);
      const live = new Set<string>();
      for (const id of decodeSandboxIds(sbBytes)) live.add(`sandbox:${id}`);
      for (const c of decodeContainerIds(ctBytes)) live.add(`container:${c.id}`);
      const current = await this.store.inUse();
      const keep = new Map<string, Digest>();
      const stalePending: string[] = [];
      let dropped = 0;
      const now = Date.now();
      for (const [digest, holders] of current) {
        for (const h of holders) {
          if (h.startsWith('sandbox:') || h.startsWith('container:')) {
            if (live.has(h)) keep.set(h, digest);
            else dropped++;
          } else if (h.startsWith('pending:')) {
            const at = Number(h.split(':')[1]);
            if (!(now - at < PENDING_TTL_MS)) stalePending.push(h);
          }
        }
      }
      await this.store.replaceInUse(keep);
      for (const h of stalePending) await this.store.release(h);
      this.known.clear();
      for (const h of keep.keys()) this.known.add(h);
      this.logger.log('info', 'in-use set rebuilt from the runtime', { kept: keep.size, dropped, stalePending: stalePending.length });
      return { kept: keep.size, dropped };
    });
  }
}
