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
//
// AppArmor (issue 9): a loaded AppArmor profile is held by `apparmor:<name>@<holder>` (holder as
// above: `container:<id>`, `sandbox:<id>` or `pending:…`), so one object can hold a seccomp and
// an AppArmor artifact, and the profile name survives a shim restart in the store's in-use set.
// A profile is loaded under the same lock as its pending holder is recorded (claimAppArmor), and
// unloaded (`apparmor_parser --remove`) under that lock once no holder names it any more: after a
// removal, an aborted create, or a rebuild that dropped its holders.

import { randomBytes } from 'node:crypto';
import type { Digest } from '../core/digest.js';
import { asSpokeError } from '../core/errors.js';
import type { Logger } from '../core/runtime.js';
import type { ShimStore } from './deps.js';
import { decodeContainerIds, decodeSandboxIds } from './messages.js';
import type { Upstream } from './upstream.js';

export const PENDING_TTL_MS = 10 * 60 * 1000;
export const APPARMOR_HOLDER_PREFIX = 'apparmor:';
const RUNTIME_PREFIXES = ['container:', 'sandbox:', APPARMOR_HOLDER_PREFIX] as const;

export function appArmorHolder(name: string, holder: string): string {
  return `${APPARMOR_HOLDER_PREFIX}${name}@${holder}`;
}

/** `apparmor:<name>@<holder>` → its parts; undefined for any other holder. */
export function parseAppArmorHolder(h: string): { name: string; holder: string } | undefined {
  if (!h.startsWith(APPARMOR_HOLDER_PREFIX)) return undefined;
  const at = h.indexOf('@', APPARMOR_HOLDER_PREFIX.length);
  if (at < 0) return undefined;
  return { name: h.slice(APPARMOR_HOLDER_PREFIX.length, at), holder: h.slice(at + 1) };
}

function pendingHolder(): string {
  return `pending:${Date.now()}:${randomBytes(6).toString('hex')}`;
}

function pendingStale(h: string, now: number): boolean {
  const at = Number(h.split(':')[1]);
  return !(now - at < PENDING_TTL_MS);
}

/** A claimed AppArmor profile: its pending holder until the create completes. */
export interface AppArmorClaim {
  name: string;
  digest: Digest;
  pending: string;
}

export interface AppArmorUnloader {
  unload(name: string): Promise<void>;
}
const LIST_SANDBOXES = '/runtime.v1.RuntimeService/ListPodSandbox';
const LIST_CONTAINERS = '/runtime.v1.RuntimeService/ListContainers';

export class InUseTracker {
  private chain: Promise<unknown> = Promise.resolve();
  /** Holders known to be recorded (saves a store write for removals of unrelated objects). */
  private readonly known = new Set<string>();
  /** Runtime holder → the AppArmor holders recorded for it. */
  private readonly knownAppArmor = new Map<string, { holder: string; name: string }[]>();
  /** AppArmor profile names this process loaded (or found held at a rebuild). */
  private readonly loaded = new Set<string>();

  constructor(
    private readonly store: ShimStore,
    private readonly logger: Logger,
    private readonly appArmor?: AppArmorUnloader,
  ) {}

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.chain.then(fn, fn);
    this.chain = run.catch(() => undefined);
    return run;
  }

  async begin(digest: Digest): Promise<string> {
    const holder = pendingHolder();
    await this.serial(() => this.store.markInUse(digest, holder));
    return holder;
  }

  async commit(pending: string, holder: string, digest: Digest): Promise<void> {
    await this.serial(async () => {
      await this.store.transferInUse(pending, holder, digest);
      this.known.add(holder);
    });
  }

  async abort(pending: string): Promise<void> {
    await this.serial(() => this.store.release(pending));
  }

  /** After a successful RemoveContainer / RemovePodSandbox. */
  async released(holder: string): Promise<void> {
    if (!this.known.has(holder) && !this.knownAppArmor.has(holder)) return;
    await this.serial(async () => {
      if (this.known.has(holder)) {
        await this.store.release(holder);
        this.known.delete(holder);
      }
      const aa = this.knownAppArmor.get(holder);
      if (aa) {
        for (const a of aa) await this.store.release(a.holder);
        this.knownAppArmor.delete(holder);
        await this.unloadUnused(aa.map((a) => a.name));
      }
    });
  }

  // ------------------------------------------------------------------ AppArmor

  /**
   * Loads an AppArmor profile (unless this process already did) and records a pending holder
   * for it, both under the lock, so an unload of the same name cannot slip in between.
   */
  async claimAppArmor(name: string, digest: Digest, load: () => Promise<void>): Promise<AppArmorClaim> {
    return this.serial(async () => {
      if (!this.loaded.has(name)) {
        await load();
        this.loaded.add(name);
        this.logger.log('info', 'AppArmor profile loaded', { name, digest });
      }
      const pending = appArmorHolder(name, pendingHolder());
      await this.store.markInUse(digest, pending);
      return { name, digest, pending };
    });
  }

  /** The create succeeded: the claims move to the object (`container:<id>` / `sandbox:<id>`). */
  async commitAppArmor(claims: readonly AppArmorClaim[], holder: string): Promise<void> {
    if (claims.length === 0) return;
    await this.serial(async () => {
      const list = this.knownAppArmor.get(holder) ?? [];
      for (const c of claims) {
        const h = appArmorHolder(c.name, holder);
        await this.store.markInUse(c.digest, h);
        if (!list.some((x) => x.holder === h)) list.push({ holder: h, name: c.name });
        await this.store.release(c.pending);
      }
      this.knownAppArmor.set(holder, list);
    });
  }

  /** The create failed (or never happened): the claims go, and profiles nobody holds are unloaded. */
  async abortAppArmor(claims: readonly AppArmorClaim[]): Promise<void> {
    if (claims.length === 0) return;
    await this.serial(async () => {
      for (const c of claims) await this.store.release(c.pending);
      await this.unloadUnused(claims.map((c) => c.name));
    });
  }

  /** Under the lock: unloads each of `names` that no holder names any more. Best effort (logged). */
  private async unloadUnused(names: Iterable<string>): Promise<void> {
    const unique = [...new Set(names)];
    if (unique.length === 0) return;
    const held = new Set<string>();
    for (const holders of (await this.store.inUse()).values()) {
      for (const h of holders) {
        const p = parseAppArmorHolder(h);
        if (p) held.add(p.name);
      }
    }
    for (const name of unique) {
      if (held.has(name)) continue;
      this.loaded.delete(name);
      if (!this.appArmor) continue;
      try {
        await this.appArmor.unload(name);
        this.logger.log('info', 'AppArmor profile unloaded: no container uses it', { name });
      } catch (e) {
        const err = asSpokeError(e);
        if (err.code !== 'NotFound') this.logger.log('warn', 'AppArmor profile not unloaded', { name, code: err.code, error: err.message });
      }
    }
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
      const droppedAppArmor: string[] = [];
      let dropped = 0;
      const now = Date.now();
      for (const [digest, holders] of current) {
        for (const h of holders) {
          const aa = parseAppArmorHolder(h);
          const inner = aa ? aa.holder : h;
          if (inner.startsWith('sandbox:') || inner.startsWith('container:')) {
            if (live.has(inner)) keep.set(h, digest);
            else {
              dropped++;
              if (aa) droppedAppArmor.push(aa.name);
            }
          } else if (inner.startsWith('pending:')) {
            const stale = pendingStale(inner, now);
            // AppArmor pending holders carry the runtime prefix set, so they are kept explicitly.
            if (aa && !stale) keep.set(h, digest);
            if (stale) {
              stalePending.push(h);
              if (aa) droppedAppArmor.push(aa.name);
            }
          }
        }
      }
      await this.store.replaceInUse(keep, RUNTIME_PREFIXES);
      for (const h of stalePending) await this.store.release(h);
      this.known.clear();
      this.knownAppArmor.clear();
      for (const h of keep.keys()) {
        const aa = parseAppArmorHolder(h);
        if (!aa) this.known.add(h);
        else {
          // Not added to `loaded`: the next claim loads again (--replace is idempotent), so a
          // profile the kernel lost is never assumed present.
          if (aa.holder.startsWith('pending:')) continue;
          const list = this.knownAppArmor.get(aa.holder) ?? [];
          list.push({ holder: h, name: aa.name });
          this.knownAppArmor.set(aa.holder, list);
        }
      }
      await this.unloadUnused(droppedAppArmor);
      this.logger.log('info', 'in-use set rebuilt from the runtime', { kept: keep.size, dropped, stalePending: stalePending.length });
      return { kept: keep.size, dropped };
    });
  }
}
