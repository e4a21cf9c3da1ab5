// Which sandbox or container uses which artifact, so gc never deletes a profile a running pod
// uses and no AppArmor profile is unloaded under a confined task. The mapping lives in the
// store's in-use set (holder → artifact digest, <storeDir>/state/in-use.json), with holders named
// `sandbox:<id>` / `container:<id>` after the ids the upstream returned.
//
// Pending holders. Around a create, `pending:<ms>:<rand>[:<identity>]` covers the window between
// "profile resolved" and "id known". <identity> hashes what names the object before it has an id
// (container: sandbox id, metadata name and attempt; sandbox: metadata name, uid, namespace and
// attempt), the same key the runtime reserves the name under, so a rebuild can find the object a
// create produced even when its response was lost. A create that fails or whose response is lost
// does not release its pending holder: the runtime may have made the object anyway (containerd
// killed mid-create leaves it CONTAINER_UNKNOWN; a deadline can end the call while the runtime
// goes on). Only a rebuild drops it, once the create can no longer be running (older than
// PENDING_GRACE_MS, the kubelet's default runtime request timeout, and not in flight in this
// process) and no live object carries its identity.
//
// Rebuild (shim start, every upstream reconnect, after RemovePodSandbox, when the store found
// in-use.json unreadable, and when a kept pending holder comes of age): from what the runtime
// really runs, not from the old set alone.
//   - holders of live ids are kept, of ids the runtime no longer knows dropped;
//   - each live object's runtime config (verbose ContainerStatus / PodSandboxStatus, read once
//     per object: it never changes) is read; a seccomp Localhost profile (or a runtime spec
//     annotation) at <seccompRoot>/spoke/<sha>.json gives the object a holder for the artifact
//     that file was merged from (the store's effective map), and an AppArmor profile
//     `spoke-<sha>` likewise;
//   - pending holders are resolved as above.
// The result replaces every runtime holder and marks the set complete (store.replaceInUse).
//
// AppArmor (KEP beta): a loaded profile is held by `apparmor:<name>@<holder>`, so one object can
// hold a seccomp and an AppArmor artifact. The kernel makes every task confined by a profile
// unconfined when it is removed, so an unload happens only after all of: no holder names the
// profile; the runtime, listed again, runs no object whose config or runtime spec names it and
// every live object's config could be read; no pending holder of it is left; and no readable
// /proc/<pid>/attr/current shows it. Whatever cannot be checked keeps the profile loaded, and
// such a profile is checked again at every rebuild.

import { randomBytes } from 'node:crypto';
import { open, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { sha256Hex, type Digest } from '../core/digest.js';
import { asSpokeError } from '../core/errors.js';
import type { Logger } from '../core/runtime.js';
import type { EffectiveInput } from '../store/store.js';
import type { ShimStore } from './deps.js';
import {
  decodeContainers,
  decodeCreateContainerKey,
  decodeRunPodSandboxKey,
  decodeSandboxes,
  decodeVerboseInfo,
  encodeVerboseStatusRequest,
  type ContainerKey,
  type SandboxKey,
} from './messages.js';

/** How long a create the shim forwarded may still be running in the runtime (kubelet's default --runtime-request-timeout). */
export const PENDING_GRACE_MS = 2 * 60 * 1000;
export const APPARMOR_HOLDER_PREFIX = 'apparmor:';
const PENDING_PREFIX = 'pending:';
const RUNTIME_PREFIXES = ['container:', 'sandbox:', PENDING_PREFIX, APPARMOR_HOLDER_PREFIX] as const;
const SPOKE_APPARMOR_RE = /^spoke-([0-9a-f]{64})$/;
const SHA_HEX_RE = /^[0-9a-f]{64}$/;
const MAX_MAPPED = 4096;
const STATUS_CONCURRENCY = 8;
const MAX_ATTR_BYTES = 512;
const UNKNOWN_RETRY_MS = 5000;
const MAX_ANNOTATIONS = 256;

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

function pendingHolder(now: number, identity: string | undefined): string {
  return `${PENDING_PREFIX}${now}:${randomBytes(6).toString('hex')}${identity ? `:${identity}` : ''}`;
}

function parsePending(h: string): { at: number; identity: string | undefined } {
  const [, at, , identity] = h.split(':');
  return { at: Number(at), identity };
}

const containerIdentity = (k: ContainerKey): string => `c${sha256Hex(JSON.stringify([k.sandbox, k.name, k.attempt])).slice(0, 32)}`;
const sandboxIdentity = (k: SandboxKey): string => `s${sha256Hex(JSON.stringify([k.name, k.uid, k.namespace, k.attempt])).slice(0, 32)}`;

/**
 * The identity of the object a CreateContainer or RunPodSandbox request makes (see the header);
 * undefined when the request does not carry one.
 */
export function requestIdentity(role: 'sandbox' | 'container', request: Uint8Array): string | undefined {
  try {
    if (role === 'container') {
      const key = decodeCreateContainerKey(request);
      return key && containerIdentity(key);
    }
    const key = decodeRunPodSandboxKey(request);
    return key && sandboxIdentity(key);
  } catch {
    return undefined;
  }
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

/** The runtime calls the tracker makes (the shim's Upstream). */
export interface RuntimeCalls {
  unary(path: string, request: Uint8Array): Promise<Buffer>;
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

const LIST_SANDBOXES = '/runtime.v1.RuntimeService/ListPodSandbox';
const LIST_CONTAINERS = '/runtime.v1.RuntimeService/ListContainers';
const CONTAINER_STATUS = '/runtime.v1.RuntimeService/ContainerStatus';
const SANDBOX_STATUS = '/runtime.v1.RuntimeService/PodSandboxStatus';
const GRPC_NOT_FOUND = 5;

/** Profiles an object's runtime config names: seccomp Localhost paths and AppArmor profile names. */
export interface ObjectProfiles {
  seccomp: string[];
  appArmor: string[];
}

/** What the runtime runs now. */
interface Scan {
  /** `container:<id>` / `sandbox:<id>` → identity. */
  live: Map<string, string>;
  byIdentity: Map<string, string>;
  profiles: Map<string, ObjectProfiles>;
  /** Live objects whose config could not be read. */
  unknown: Set<string>;
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
  /** Runtime holder → the AppArmor holders recorded for it. */
  private readonly knownAppArmor = new Map<string, { holder: string; name: string }[]>();
  /** AppArmor profile names this process loaded. */
  private readonly loaded = new Set<string>();
  /** Profiles no holder names but kept loaded in doubt: checked again at every rebuild. */
  private readonly retained = new Set<string>();
  /** Pending holders (inner `pending:…`) whose create is in flight in this process. */
  private readonly inflight = new Set<string>();
  /** Effective sha|digest pairs already recorded in the store. */
  private readonly mapped = new Set<string>();
  /** Profiles named by each live object's config (immutable for its lifetime). */
  private readonly profileCache = new Map<string, ObjectProfiles>();
  private readonly upstream: RuntimeCalls;
  private readonly spokeDir: string;
  private readonly appArmor: AppArmorUnloader | undefined;
  private readonly procRoot: string;
  private readonly scheduleRebuild: (delayMs: number) => void;
  private readonly now: () => number;

  constructor(
    private readonly store: ShimStore,
    private readonly logger: Logger,
    opts: InUseTrackerOptions,
  ) {
    this.upstream = opts.upstream;
    this.spokeDir = join(opts.seccompRoot, 'spoke');
    this.appArmor = opts.appArmor;
    this.procRoot = opts.procRoot ?? '/proc';
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
    if (this.mapped.has(key)) return;
    await this.store.recordEffective(sha, digest, input);
    if (this.mapped.size >= MAX_MAPPED) this.mapped.clear();
    this.mapped.add(key);
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
        this.written(await this.store.markInUse(digest, holder));
      });
    } catch (e) {
      this.inflight.delete(holder);
      throw e;
    }
    return holder;
  }

  async commit(pending: string, holder: string, digest: Digest): Promise<void> {
    await this.serial(async () => {
      this.written(await this.store.transferInUse(pending, holder, digest));
      this.known.add(holder);
    });
    this.inflight.delete(pending);
  }

  /**
   * The create failed or its response was lost after it was forwarded: the runtime may have made
   * the object. Its pending holders stay until a rebuild settles them (see the header).
   */
  unconfirmed(pending: string | undefined, claims: readonly AppArmorClaim[]): void {
    if (pending !== undefined) this.inflight.delete(pending);
    for (const c of claims) this.inflight.delete(parseAppArmorHolder(c.pending)?.holder ?? '');
    if (pending !== undefined || claims.length > 0) this.scheduleRebuild(PENDING_GRACE_MS);
  }

  /**
   * Gc removed artifacts (and with them their effective-file origins): the next create records
   * its origin again rather than trusting this process's memory of it.
   */
  forgetRecordedOrigins(): void {
    this.mapped.clear();
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
  async claimAppArmor(name: string, digest: Digest, load: () => Promise<void>, identity?: string): Promise<AppArmorClaim> {
    return this.serial(async () => {
      if (!this.loaded.has(name)) {
        await load();
        this.loaded.add(name);
        this.logger.log('info', 'AppArmor profile loaded', { name, digest });
      }
      const inner = pendingHolder(this.now(), identity);
      const pending = appArmorHolder(name, inner);
      const sha = SPOKE_APPARMOR_RE.exec(name)?.[1];
      if (sha !== undefined) await this.recordEffective(sha, digest);
      this.inflight.add(inner);
      this.written(await this.store.markInUse(digest, pending));
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
   * profiles nobody uses are unloaded (after the checks in the header).
   */
  async abortAppArmor(claims: readonly AppArmorClaim[]): Promise<void> {
    if (claims.length === 0) return;
    await this.serial(async () => {
      for (const c of claims) {
        await this.store.release(c.pending);
        this.inflight.delete(parseAppArmorHolder(c.pending)!.holder);
      }
      await this.unloadUnused(claims.map((c) => c.name));
    });
  }

  /**
   * Under the lock: unloads each of `names` that nothing uses any more (see the header). `scan`
   * is a listing taken under this same lock; without one the runtime is listed here. Best effort
   * (logged); every doubt keeps the profile loaded.
   */
  private async unloadUnused(names: Iterable<string>, scan?: Scan): Promise<void> {
    const unique = [...new Set(names)];
    if (unique.length === 0) return;
    const keepAll = (msg: string, fields: Record<string, unknown>) => {
      for (const n of unique) this.retained.add(n);
      this.logger.log('warn', msg, { names: unique, ...fields });
    };
    let view: Scan;
    try {
      view = scan ?? (await this.scan());
    } catch (e) {
      keepAll('AppArmor profiles kept loaded: the runtime could not be listed', { error: asSpokeError(e).message });
      return;
    }
    if (view.unknown.size > 0) {
      keepAll('AppArmor profiles kept loaded: the config of some containers could not be read', { unreadable: view.unknown.size });
      return;
    }
    const held = new Set<string>();
    for (const holders of (await this.store.inUse()).values()) {
      for (const h of holders) {
        const p = parseAppArmorHolder(h);
        if (p) held.add(p.name);
      }
    }
    for (const p of view.profiles.values()) for (const n of p.appArmor) held.add(n);
    for (const n of unique) if (held.has(n)) this.retained.delete(n);
    const candidates = unique.filter((n) => !held.has(n));
    if (candidates.length === 0) return;
    const confining = await this.confiningProfiles(new Set(candidates));
    for (const name of candidates) {
      if (confining.has(name)) {
        this.retained.add(name);
        this.logger.log('warn', 'AppArmor profile kept loaded: a running task is confined by it', { name });
        continue;
      }
      this.retained.delete(name);
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

  /** Which of `names` label a task in a readable /proc/<pid>/attr/current. */
  private async confiningProfiles(names: ReadonlySet<string>): Promise<Set<string>> {
    const found = new Set<string>();
    let pids: string[];
    try {
      pids = (await readdir(this.procRoot)).filter((p) => /^[0-9]{1,10}$/.test(p));
    } catch {
      return found;
    }
    const buf = Buffer.alloc(MAX_ATTR_BYTES);
    for (const pid of pids) {
      for (const attr of ['attr/apparmor/current', 'attr/current']) {
        let text: string;
        try {
          const h = await open(join(this.procRoot, pid, attr), 'r');
          try {
            const { bytesRead } = await h.read(buf, 0, MAX_ATTR_BYTES, 0);
            text = buf.subarray(0, bytesRead).toString('utf8');
          } finally {
            await h.close();
          }
        } catch {
          continue; // gone, or not readable here
        }
        // "<label> (<mode>)"; a stacked label joins profiles with "//&", a child follows "//".
        const label = text.replace(/\0/g, '').trim().replace(/ \([a-z]{1,16}\)$/, '');
        for (const part of label.split('//&')) {
          const profile = part.split('//')[0]!.replace(/^:[^:]{0,256}:/, '');
          if (names.has(profile)) found.add(profile);
        }
        break;
      }
    }
    return found;
  }

  // ------------------------------------------------------------------ the runtime's view

  /** Lists the runtime's objects and reads the config of those not read before. */
  private async scan(): Promise<Scan> {
    const [sbBytes, ctBytes] = await Promise.all([this.upstream.unary(LIST_SANDBOXES, Buffer.alloc(0)), this.upstream.unary(LIST_CONTAINERS, Buffer.alloc(0))]);
    const live = new Map<string, string>();
    for (const p of decodeSandboxes(sbBytes)) live.set(`sandbox:${p.id}`, sandboxIdentity(p));
    for (const c of decodeContainers(ctBytes)) live.set(`container:${c.id}`, containerIdentity(c));
    for (const k of this.profileCache.keys()) if (!live.has(k)) this.profileCache.delete(k);
    const unknown = new Set<string>();
    const todo = [...live.keys()].filter((h) => !this.profileCache.has(h));
    const gone = new Set<string>();
    const worker = async () => {
      for (let h = todo.shift(); h !== undefined; h = todo.shift()) {
        try {
          this.profileCache.set(h, await this.readProfiles(h));
        } catch (e) {
          if ((e as { grpcCode?: number }).grpcCode === GRPC_NOT_FOUND) gone.add(h);
          else unknown.add(h);
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(STATUS_CONCURRENCY, todo.length) }, worker));
    for (const h of gone) live.delete(h);
    const byIdentity = new Map<string, string>();
    for (const [h, id] of live) byIdentity.set(id, h);
    const profiles = new Map<string, ObjectProfiles>();
    for (const h of live.keys()) {
      const p = this.profileCache.get(h);
      if (p) profiles.set(h, p);
    }
    return { live, byIdentity, profiles, unknown };
  }

  /** The profiles a live object's runtime config (verbose status `info`) names. */
  private async readProfiles(holder: string): Promise<ObjectProfiles> {
    const container = holder.startsWith('container:');
    const id = holder.slice(holder.indexOf(':') + 1);
    const res = await this.upstream.unary(container ? CONTAINER_STATUS : SANDBOX_STATUS, encodeVerboseStatusRequest(id));
    return namedProfiles(decodeVerboseInfo(res), this.spokeDir);
  }

  private spokeSha(path: string): string | undefined {
    return spokeEffectiveSha(this.spokeDir, path);
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
      const scan = await this.scan();
      const current = await this.store.inUse();
      const keep = new Map<string, Digest>();
      const droppedAppArmor: string[] = [];
      let dropped = 0;
      let recheck: number | undefined;
      const now = this.now();
      for (const [digest, holders] of current) {
        for (const h of holders) {
          const aa = parseAppArmorHolder(h);
          const inner = aa ? aa.holder : h;
          const drop = () => {
            dropped++;
            if (aa) droppedAppArmor.push(aa.name);
          };
          if (inner.startsWith('sandbox:') || inner.startsWith('container:')) {
            if (scan.live.has(inner)) keep.set(h, digest);
            else drop();
          } else if (inner.startsWith(PENDING_PREFIX)) {
            const p = parsePending(inner);
            const made = p.identity !== undefined ? scan.byIdentity.get(p.identity) : undefined;
            if (this.inflight.has(inner)) keep.set(h, digest);
            else if (made !== undefined) keep.set(aa ? appArmorHolder(aa.name, made) : made, digest);
            else if (!(now - p.at < PENDING_GRACE_MS)) drop();
            else {
              keep.set(h, digest);
              recheck = Math.min(recheck ?? Infinity, p.at + PENDING_GRACE_MS - now);
            }
          }
        }
      }
      let found = 0;
      const effective = new Set<string>();
      for (const [obj, p] of scan.profiles) {
        for (const path of p.seccomp) {
          const sha = this.spokeSha(path);
          if (sha !== undefined) effective.add(sha);
          const origin = sha !== undefined && !keep.has(obj) ? await this.originOf(sha) : undefined;
          if (origin !== undefined) {
            keep.set(obj, origin);
            found++;
          }
        }
        for (const name of p.appArmor) {
          const sha = SPOKE_APPARMOR_RE.exec(name)?.[1];
          const h = appArmorHolder(name, obj);
          const origin = sha !== undefined && !keep.has(h) ? await this.originOf(sha) : undefined;
          if (origin !== undefined) {
            keep.set(h, origin);
            found++;
          }
        }
      }
      // An object whose config could not be read may hold a profile nobody recorded: the set
      // stays marked incomplete (gc removes nothing) and the rebuild is tried again soon.
      const complete = scan.unknown.size === 0;
      if (!complete) recheck = Math.min(recheck ?? Infinity, UNKNOWN_RETRY_MS);
      await this.store.replaceInUse(keep, RUNTIME_PREFIXES, { complete });
      this.known.clear();
      this.knownAppArmor.clear();
      for (const h of keep.keys()) {
        const aa = parseAppArmorHolder(h);
        if (!aa) {
          if (!h.startsWith(PENDING_PREFIX)) this.known.add(h);
        } else if (!aa.holder.startsWith(PENDING_PREFIX)) {
          // Not added to `loaded`: the next claim loads again (--replace is idempotent), so a
          // profile the kernel lost is never assumed present.
          const list = this.knownAppArmor.get(aa.holder) ?? [];
          list.push({ holder: h, name: aa.name });
          this.knownAppArmor.set(aa.holder, list);
        }
      }
      await this.unloadUnused([...droppedAppArmor, ...this.retained], scan);
      const recheckInMs = recheck === undefined ? undefined : Math.max(0, recheck);
      if (found > 0) this.logger.log('warn', 'in-use holders added for runtime objects whose create went unrecorded', { found });
      if (!complete) this.logger.log('warn', 'in-use rebuild: the runtime config of some objects could not be read; the set stays incomplete', { unreadable: scan.unknown.size });
      this.logger.log('info', 'in-use set rebuilt from the runtime', { kept: keep.size, dropped, found, recheckInMs });
      return { kept: keep.size, dropped, found, recheckInMs, effective: [...effective] };
    });
  }
}

/**
 * The profiles a runtime's verbose status `info` JSON names in the object's config (and, for
 * AppArmor, its runtime spec; for seccomp, a runtime spec annotation naming a file in `spokeDir`).
 * Throws on JSON that does not parse.
 */
export function namedProfiles(info: string | undefined, spokeDir: string): ObjectProfiles {
  const out: ObjectProfiles = { seccomp: [], appArmor: [] };
  if (info === undefined) return out;
  const parsed = JSON.parse(info) as { config?: unknown; runtimeSpec?: unknown };
  const sc = pick(pick(parsed.config, 'linux'), 'security_context');
  const seccomp = [str(pick(pick(sc, 'seccomp'), 'localhost_ref')), localhostOf(str(pick(sc, 'seccomp_profile_path')))];
  const appArmor = [str(pick(pick(sc, 'apparmor'), 'localhost_ref')), localhostOf(str(pick(sc, 'apparmor_profile'))), str(pick(pick(parsed.runtimeSpec, 'process'), 'apparmorProfile'))];
  // Runtimes that keep no CRI config in the info may still name the file in a spec annotation.
  const annotations = pick(parsed.runtimeSpec, 'annotations');
  if (typeof annotations === 'object' && annotations !== null) {
    for (const v of Object.values(annotations).slice(0, MAX_ANNOTATIONS)) {
      const path = typeof v === 'string' ? (localhostOf(v) ?? v) : undefined;
      if (path !== undefined && spokeEffectiveSha(spokeDir, path) !== undefined) seccomp.push(path);
    }
  }
  for (const s of seccomp) if (s && !out.seccomp.includes(s)) out.seccomp.push(s);
  for (const a of appArmor) if (a && !out.appArmor.includes(a)) out.appArmor.push(a);
  return out;
}

/** `<spokeDir>/<sha>.json` → sha; undefined for any other path. */
export function spokeEffectiveSha(spokeDir: string, path: string): string | undefined {
  const prefix = `${spokeDir}/`;
  if (!path.startsWith(prefix) || !path.endsWith('.json')) return undefined;
  const sha = path.slice(prefix.length, -'.json'.length);
  return SHA_HEX_RE.test(sha) ? sha : undefined;
}

/** `spoke-<sha>`, the name of an AppArmor profile spoke generated → sha; undefined otherwise. */
export function spokeAppArmorSha(name: string): string | undefined {
  return SPOKE_APPARMOR_RE.exec(name)?.[1];
}

function pick(v: unknown, key: string): unknown {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>)[key] : undefined;
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' && v !== '' ? v : undefined;
}

/** The deprecated `localhost/<ref>` spelling of a Localhost profile → `<ref>`. */
function localhostOf(v: string | undefined): string | undefined {
  return v?.startsWith('localhost/') ? v.slice('localhost/'.length) : undefined;
}
