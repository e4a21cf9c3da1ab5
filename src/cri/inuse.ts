// Which sandbox or container uses which artifact, so gc never deletes a profile a running pod
// uses and no AppArmor profile is unloaded under a confined task. The mapping lives in the
// store's in-use set (holder → artifact digest, <storeDir>/state/in-use.json), with holders named
// `sandbox:<id>` / `container:<id>` after the ids the upstream returned.
//
// Rebuild (shim start, every upstream reconnect, after RemovePodSandbox, when the store found
// in-use.json unreadable, and when a kept pending holder comes of age): from what the runtime
// really runs (runtime-scan.ts), planned in inuse-rebuild.ts; the result replaces every runtime
// holder and marks the set complete (store.replaceInUse). Holder names and pending holders:
// inuse-holders.ts. AppArmor unloads and their checks: apparmor-unload.ts.

import { join } from 'node:path';
import { EFFECTIVE_SECCOMP_DIR } from '../core/constants.js';
import type { Digest } from '../core/digest.js';
import { SpokeError } from '../core/errors.js';
import type { Logger } from '../core/runtime.js';
import type { EffectiveInput } from '../store/store.js';
import { AppArmorUnloads, type AppArmorLoad, type AppArmorUnloader } from './apparmor-unload.js';
import type { ShimStore } from './deps.js';
import { appArmorHolder, parseAppArmorHolder, pendingHolder, PENDING_GRACE_MS, PENDING_PREFIX, RUNTIME_PREFIXES } from './inuse-holders.js';
import { planRebuild } from './inuse-rebuild.js';
import { spokeAppArmorSha } from './runtime-config.js';
import { RuntimeScanner, type RuntimeCalls } from './runtime-scan.js';

export { appArmorHolder, PENDING_GRACE_MS, requestIdentity } from './inuse-holders.js';
export type { AppArmorUnloader } from './apparmor-unload.js';
export type { RuntimeCalls } from './runtime-scan.js';

const MAX_MAPPED = 4096;
const UNKNOWN_RETRY_MS = 5000;

/** A claimed AppArmor profile: its pending holder until the create completes. */
export interface AppArmorClaim {
  name: string;
  digest: Digest;
  pending: string;
}

export interface InUseTrackerOptions {
  upstream: RuntimeCalls;
  /** The kubelet's seccomp root (effective files live in `<root>/spoke/`). */
  seccompRoot: string;
  appArmor?: AppArmorUnloader;
  /** Where /proc is (tests); default /proc. */
  procRoot?: string;
  /** The set needs a rebuild in `delayMs` (unreadable in-use file, a pending holder to re-check). */
  scheduleRebuild?: (delayMs: number) => void;
  now?: () => number;
}

export interface RebuildResult {
  kept: number;
  dropped: number;
  /** Holders added from runtime configs (objects whose create went unrecorded). */
  found: number;
  /** When a kept pending holder may be dropped: rebuild again then. */
  recheckInMs: number | undefined;
  /** Effective files (`<sha>` of `<seccompRoot>/spoke/<sha>.json`) that live objects' configs name. */
  effective: string[];
}

export class InUseTracker {
  private chain: Promise<unknown> = Promise.resolve();
  /** Holders known to be recorded (saves a store write for removals of unrelated objects). */
  private readonly known = new Set<string>();
  /** Holders whose commit is under way (a create answered before its commit: commitCreate). */
  private readonly committing = new Map<string, Promise<void>>();
  /** Runtime holder → the AppArmor holders recorded for it. */
  private readonly knownAppArmor = new Map<string, { holder: string; name: string }[]>();
  /** Pending holders (inner `pending:…`) whose create is in flight in this process. */
  private readonly inflight = new Set<string>();
  /**
   * Origins already recorded in the store (sha|digest|input), with the identity their record had
   * then: another process may prune it (`spoke store gc`), and a changed record is written again.
   */
  private readonly mapped = new Map<string, string | undefined>();
  private readonly runtime: RuntimeScanner;
  private readonly appArmor: AppArmorUnloads;
  private readonly spokeDir: string;
  private readonly scheduleRebuild: (delayMs: number) => void;
  private readonly now: () => number;

  constructor(
    private readonly store: ShimStore,
    private readonly logger: Logger,
    opts: InUseTrackerOptions,
  ) {
    this.spokeDir = join(opts.seccompRoot, EFFECTIVE_SECCOMP_DIR);
    this.runtime = new RuntimeScanner(opts.upstream, this.spokeDir);
    this.appArmor = new AppArmorUnloads(store, logger, opts.appArmor, opts.procRoot ?? '/proc', () => this.runtime.scan());
    this.scheduleRebuild = opts.scheduleRebuild ?? (() => undefined);
    this.now = opts.now ?? Date.now;
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.chain.then(fn, fn);
    this.chain = run.catch(() => undefined);
    return run;
  }

  /** A store write that found the runtime holders unreadable: they are rebuilt from the runtime. */
  private written(complete: boolean): void {
    if (complete) return;
    this.logger.log('warn', 'in-use set was unreadable (crash?); rebuilding it from the runtime');
    this.scheduleRebuild(0);
  }

  private async recordEffective(sha: string, digest: Digest, input?: EffectiveInput): Promise<void> {
    const key = `${sha}|${digest}|${input === undefined ? '' : JSON.stringify(input)}`;
    const identity = this.store.originsIdentity(sha);
    if (identity !== undefined && this.mapped.get(key) === identity) return;
    await this.store.recordEffective(sha, digest, input);
    if (this.mapped.size >= MAX_MAPPED) this.mapped.clear();
    this.mapped.set(key, this.store.originsIdentity(sha));
  }

  /**
   * Before a create is forwarded: a pending holder for `digest`, and the effective file's origin
   * recorded so a rebuild can map the object back to the artifact.
   */
  async begin(digest: Digest, opts: { effectiveSha?: string; identity?: string; input?: EffectiveInput } = {}): Promise<string> {
    const holder = pendingHolder(this.now(), opts.identity);
    this.inflight.add(holder);
    try {
      await this.serial(async () => {
        if (opts.effectiveSha !== undefined) await this.recordEffective(opts.effectiveSha, digest, opts.input);
        await this.holdStored(digest, holder);
      });
    } catch (e) {
      this.inflight.delete(holder);
      throw e;
    }
    return holder;
  }

  /**
   * Records `holder` of `digest`, then checks that its record is still there. A removal in
   * another process (spoke store rm|gc) hides the record before it asks the holders again: held
   * from here on, the record still there means it saw this holder or will, gone means it did not,
   * and the create fails NotFound, holding nothing (docs/gc.md).
   */
  private async holdStored(digest: Digest, holder: string): Promise<void> {
    this.written(await this.store.markInUse(digest, holder));
    if ((await this.store.getRecord(digest)) !== undefined) return;
    await this.store.release(holder);
    throw new SpokeError('NotFound', `${digest} was removed from the store while this create was being prepared; pull it again`, { digest }, { reason: 'NOT_FOUND' });
  }

  /**
   * The create succeeded: its pending seccomp holder and its AppArmor claims move to the object
   * (`container:<id>` / `sandbox:<id>`). Runs after the create was answered, so a removal of the
   * object that comes meanwhile waits for it (released) instead of finding nothing to release.
   */
  async commitCreate(holder: string, seccomp: { pending: string; digest: Digest } | undefined, claims: readonly AppArmorClaim[]): Promise<void> {
    const run = (async () => {
      if (seccomp) await this.commit(seccomp.pending, holder, seccomp.digest);
      await this.commitAppArmor(claims, holder);
    })();
    this.committing.set(holder, run);
    try {
      await run;
    } finally {
      this.committing.delete(holder);
    }
  }

  private async commit(pending: string, holder: string, digest: Digest): Promise<void> {
    await this.serial(async () => {
      this.written(await this.store.transferInUse(pending, holder, digest));
      this.known.add(holder);
    });
    this.inflight.delete(pending);
  }

  /**
   * The create failed or its response was lost after it was forwarded: the runtime may have made
   * the object. Its pending holders stay until a rebuild settles them (see inuse-holders.ts).
   */
  unconfirmed(pending: string | undefined, claims: readonly AppArmorClaim[]): void {
    if (pending !== undefined) this.inflight.delete(pending);
    for (const c of claims) this.inflight.delete(parseAppArmorHolder(c.pending)?.holder ?? '');
    if (pending !== undefined || claims.length > 0) this.scheduleRebuild(PENDING_GRACE_MS);
  }

  /** After a successful RemoveContainer / RemovePodSandbox. */
  async released(holder: string): Promise<void> {
    await this.committing.get(holder)?.catch(() => undefined);
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
        await this.appArmor.unloadUnused(aa.map((a) => a.name));
      }
    });
  }

  // ------------------------------------------------------------------ AppArmor

  /**
   * Loads an AppArmor profile (unless this process already did) and records a pending holder
   * for it. The load runs under the name's lock, not this one: apparmor_parser may compile for
   * seconds (docs/apparmor.md), and every create and removal takes this lock. No unload of the
   * name slips in between: it counts as being claimed until the holder is recorded, in one turn
   * of this lock (apparmor-unload.ts).
   */
  async claimAppArmor(name: string, digest: Digest, load: AppArmorLoad, identity?: string): Promise<AppArmorClaim> {
    const endClaim = await this.appArmor.beginClaim(name, digest, load);
    return this.serial(async () => {
      endClaim();
      const inner = pendingHolder(this.now(), identity);
      const pending = appArmorHolder(name, inner);
      const sha = spokeAppArmorSha(name);
      this.inflight.add(inner);
      try {
        if (sha !== undefined) await this.recordEffective(sha, digest);
        await this.holdStored(digest, pending);
      } catch (e) {
        // Not claimed after all (a full disk, before or at the holder's record): nothing in flight
        // keeps the profile, and it goes now unless another create holds it (a rebuild would not
        // look at a name never held).
        this.inflight.delete(inner);
        await this.appArmor.unloadUnused([name]).catch(() => undefined);
        throw e;
      }
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
        this.inflight.delete(parseAppArmorHolder(c.pending)!.holder);
      }
      this.knownAppArmor.set(holder, list);
    });
  }

  /**
   * The create was never forwarded (refused by the shim, client gone): the claims go, and
   * profiles nobody uses are unloaded (after the checks in apparmor-unload.ts).
   */
  async abortAppArmor(claims: readonly AppArmorClaim[]): Promise<void> {
    if (claims.length === 0) return;
    await this.serial(async () => {
      for (const c of claims) {
        await this.store.release(c.pending);
        this.inflight.delete(parseAppArmorHolder(c.pending)!.holder);
      }
      await this.appArmor.unloadUnused(claims.map((c) => c.name));
    });
  }

  /** The artifact an effective file or AppArmor profile was merged from: one still stored, else any. */
  private async originOf(sha: string): Promise<Digest | undefined> {
    const digests = await this.store.effectiveDigests(sha);
    for (const d of digests) if (await this.store.getRecord(d)) return d;
    return digests[0];
  }

  /** Rebuilds the runtime holders from what the runtime runs (see the header). */
  async rebuild(): Promise<RebuildResult> {
    return this.serial(async () => {
      // The set is read before the runtime is listed: an object made after this read (by a
      // create of this shim, waiting on serial(), or of another shim on this store) has a holder
      // the plan never saw, which replaceInUse leaves alone, and one made before it is listed.
      const before = await this.store.inUse();
      const scan = await this.runtime.scan();
      const plan = await planRebuild(before, scan, {
        inflight: this.inflight,
        now: this.now(),
        spokeDir: this.spokeDir,
        originOf: (sha) => this.originOf(sha),
      });
      const { keep, droppedAppArmor, dropped, found, effective } = plan;
      let recheck = plan.recheck;
      // An object whose config could not be read may hold a profile nobody recorded: the set
      // stays marked incomplete (gc removes nothing) and the rebuild is tried again soon.
      const complete = scan.unknown.size === 0;
      if (!complete) recheck = Math.min(recheck ?? Infinity, UNKNOWN_RETRY_MS);
      await this.store.replaceInUse(keep, RUNTIME_PREFIXES, { complete, seen: new Set([...before.values()].flat()) });
      this.known.clear();
      this.knownAppArmor.clear();
      for (const h of keep.keys()) {
        const aa = parseAppArmorHolder(h);
        if (!aa) {
          if (!h.startsWith(PENDING_PREFIX)) this.known.add(h);
        } else if (!aa.holder.startsWith(PENDING_PREFIX)) {
          // Not marked loaded (apparmor-unload.ts): the next claim loads again (--replace is idempotent), so a
          // profile the kernel lost is never assumed present.
          const list = this.knownAppArmor.get(aa.holder) ?? [];
          list.push({ holder: h, name: aa.name });
          this.knownAppArmor.set(aa.holder, list);
        }
      }
      await this.appArmor.unloadUnused([...droppedAppArmor, ...this.appArmor.retainedNames()], scan);
      const recheckInMs = recheck === undefined ? undefined : Math.max(0, recheck);
      if (found > 0) this.logger.log('warn', 'in-use holders added for runtime objects whose create went unrecorded', { found });
      if (!complete) this.logger.log('warn', 'in-use rebuild: the runtime config of some objects could not be read; the set stays incomplete', { unreadable: scan.unknown.size });
      this.logger.log('info', 'in-use set rebuilt from the runtime', { kept: keep.size, dropped, found, recheckInMs });
      return { kept: keep.size, dropped, found, recheckInMs, effective: [...effective] };
    });
  }
}

