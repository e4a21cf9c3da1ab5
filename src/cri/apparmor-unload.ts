// AppArmor (KEP-6061 beta): a loaded profile is held by `apparmor:<name>@<holder>`, so one object
// can hold a seccomp and an AppArmor artifact. The kernel makes every task confined by a profile
// unconfined when it is removed, so an unload happens only after all of: no holder names the
// profile; the runtime, listed again, runs no object whose config or runtime spec names it and
// every live object's config could be read; no pending holder of it is left; and no readable
// /proc/<pid>/attr/current shows it. Whatever cannot be checked keeps the profile loaded, and
// such a profile is checked again at every rebuild. Only names spoke renders are ever unloaded.
//
// A create's load (apparmor_parser --replace, which may compile for seconds, up to its timeout:
// docs/apparmor.md) runs outside the in-use lock, under its name's lock, so it holds back only
// creates of the same name. From the start of its claim until the in-use turn that records its
// holder, the name counts as being claimed: an unload (always under the in-use lock) leaves such
// a name loaded and checks it again at the next rebuild, never waiting for the load. A load and
// an unload of one name never run at once: an unload takes the name's lock, and a claim that
// comes meanwhile loads the name again after it.

import { open, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Digest } from '../core/digest.js';
import { asSpokeError } from '../core/errors.js';
import type { Logger } from '../core/runtime.js';
import type { ShimStore } from './deps.js';
import { parseAppArmorHolder } from './inuse-holders.js';
import { spokeAppArmorSha } from './runtime-config.js';
import type { Scan } from './runtime-scan.js';

const MAX_ATTR_BYTES = 512;

export interface AppArmorUnloader {
  unload(name: string): Promise<void>;
}

/** Loads a profile into the kernel; may say which of its rule classes the kernel does not enforce. */
export type AppArmorLoad = () => Promise<{ warnings: readonly string[] } | void>;

/** Which AppArmor profiles this process loaded, which it keeps loaded in doubt, and the unloads. */
export class AppArmorUnloads {
  /** AppArmor profile names this process loaded. */
  private readonly loaded = new Set<string>();
  /** Profiles no holder names but kept loaded in doubt: checked again at every rebuild. */
  private readonly retained = new Set<string>();
  /** Claims under way by name, from their start until their holder is recorded (see above). */
  private readonly claiming = new Map<string, number>();
  /** The last turn of each name's lock: its loads and unloads, one at a time. */
  private readonly nameTurns = new Map<string, Promise<void>>();

  constructor(
    private readonly store: Pick<ShimStore, 'inUse'>,
    private readonly logger: Logger,
    private readonly appArmor: AppArmorUnloader | undefined,
    /** Where /proc is. */
    private readonly procRoot: string,
    /** Lists the runtime (under the caller's lock). */
    private readonly scan: () => Promise<Scan>,
  ) {}

  /** Runs `fn` in `name`'s next turn of its lock. */
  private async underName(name: string, fn: () => Promise<void>): Promise<void> {
    const turn = (this.nameTurns.get(name) ?? Promise.resolve()).then(fn);
    const settled = turn.catch(() => undefined);
    this.nameTurns.set(name, settled);
    try {
      await turn;
    } finally {
      if (this.nameTurns.get(name) === settled) this.nameTurns.delete(name);
    }
  }

  /**
   * The first part of a create's claim of `name`, outside the in-use lock (see above): the name
   * counts as being claimed, and it is loaded under its lock unless this process already did.
   * Resolves with the claim's end, to call in the in-use turn that records its holder (or finds
   * it cannot): from then on that holder, or nothing, keeps the profile loaded. A failed load
   * ends the claim itself.
   */
  async beginClaim(name: string, digest: Digest, load: AppArmorLoad): Promise<() => void> {
    this.claiming.set(name, (this.claiming.get(name) ?? 0) + 1);
    let ended = false;
    const end = () => {
      if (ended) return;
      ended = true;
      const left = (this.claiming.get(name) ?? 1) - 1;
      if (left > 0) this.claiming.set(name, left);
      else this.claiming.delete(name);
    };
    try {
      await this.underName(name, () => this.ensureLoaded(name, digest, load));
    } catch (e) {
      end();
      throw e;
    }
    return end;
  }

  /** Loads `name` unless this process already did (under its name's lock). */
  private async ensureLoaded(name: string, digest: Digest, load: AppArmorLoad): Promise<void> {
    if (this.loaded.has(name)) return;
    const notEnforced = (await load())?.warnings ?? [];
    this.loaded.add(name);
    // Not refused: the node baseline's rules of that class go unenforced on this kernel alike,
    // so the container is no looser than the baseline there (docs/apparmor.md).
    if (notEnforced.length > 0) this.logger.log('warn', 'AppArmor profile loaded; this kernel does not enforce some of its rules', { name, digest, notEnforced });
    else this.logger.log('info', 'AppArmor profile loaded', { name, digest });
  }

  /** Profiles kept loaded in doubt, to check again. */
  retainedNames(): string[] {
    return [...this.retained];
  }

  /**
   * Under the lock: unloads each of `names` that nothing uses any more (see above). `scan`
   * is a listing taken under this same lock; without one the runtime is listed here. Best effort
   * (logged); every doubt keeps the profile loaded.
   */
  async unloadUnused(names: Iterable<string>, scan?: Scan): Promise<void> {
    const unique: string[] = [];
    for (const n of new Set(names)) {
      // Only names spoke renders (`spoke-<sha256 hex>`): a holder naming another profile (a
      // foreign or damaged in-use file) must not remove the runtime's or the distribution's.
      if (spokeAppArmorSha(n) !== undefined) unique.push(n);
      else this.logger.log('warn', 'AppArmor profile not unloaded: spoke did not generate it', { name: n.slice(0, 140) });
    }
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
    if ('doubt' in confining) {
      for (const n of candidates) this.retained.add(n);
      this.logger.log('warn', 'AppArmor profiles kept loaded: the tasks running under them could not all be read', { names: candidates, ...confining.doubt });
      return;
    }
    for (const name of candidates) {
      if (confining.has(name)) {
        this.retained.add(name);
        this.logger.log('warn', 'AppArmor profile kept loaded: a running task is confined by it', { name });
        continue;
      }
      // Looked at just before its lock is asked for: a name being claimed may be loading under
      // it (for seconds), and this runs under the in-use lock, which must not wait for a load.
      // A claim that begins after this look waits in the lock for the unload and loads again.
      if (this.claiming.has(name)) {
        this.retained.add(name);
        this.logger.log('info', 'AppArmor profile kept loaded: a create is claiming it', { name });
        continue;
      }
      this.retained.delete(name);
      await this.underName(name, () => this.unload(name));
    }
  }

  /** Removes `name` from the kernel (under its name's lock); a claim after this loads it again. */
  private async unload(name: string): Promise<void> {
    this.loaded.delete(name);
    if (!this.appArmor) return;
    try {
      await this.appArmor.unload(name);
      this.logger.log('info', 'AppArmor profile unloaded: no container uses it', { name });
    } catch (e) {
      const err = asSpokeError(e);
      if (err.code !== 'NotFound') this.logger.log('warn', 'AppArmor profile not unloaded', { name, code: err.code, error: err.message });
    }
  }

  /**
   * Which of `names` label a task in /proc/<pid>/attr/current, or `doubt` when /proc cannot be
   * listed or a task's label cannot be read: that task may run under any of them.
   */
  private async confiningProfiles(names: ReadonlySet<string>): Promise<Set<string> | { doubt: { path: string; code: string } }> {
    const found = new Set<string>();
    let pids: string[];
    try {
      pids = (await readdir(this.procRoot)).filter((p) => /^[0-9]{1,10}$/.test(p));
    } catch (e) {
      return { doubt: { path: this.procRoot, code: errorCode(e) } };
    }
    const buf = Buffer.alloc(MAX_ATTR_BYTES);
    for (const pid of pids) {
      for (const attr of ['attr/apparmor/current', 'attr/current']) {
        const path = join(this.procRoot, pid, attr);
        let text: string;
        try {
          const h = await open(path, 'r');
          try {
            const { bytesRead } = await h.read(buf, 0, MAX_ATTR_BYTES, 0);
            text = buf.subarray(0, bytesRead).toString('utf8');
          } finally {
            await h.close();
          }
        } catch (e) {
          const code = errorCode(e);
          // No such attribute here: this kernel's other interface (ENOENT), or no security module
          // serves it (EINVAL: read on a kernel without AppArmor). ESRCH: the task is exiting.
          if (code === 'ENOENT' || code === 'EINVAL') continue;
          if (code === 'ESRCH') break;
          return { doubt: { path, code } };
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
}

const errorCode = (e: unknown): string => (e as NodeJS.ErrnoException).code ?? 'UNKNOWN';
