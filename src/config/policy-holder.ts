// Holds the current node policy and reloads it when its file or a key file changes (docs/configuration.md).
// An invalid file never replaces a good policy: the error is logged and the last good policy
// stays. At start there is no good policy to keep, so the constructor throws and the shim does
// not start. Directories are watched, not files: editors and ConfigMap updates replace files by
// rename, which a watch on the file itself would not survive. A watch follows a directory's
// inode, so some replacements reach no watch (the directory renamed away and another renamed
// in, a symlinked directory retargeted): the files' identities are compared every `pollMs` too.
//
// Revoked keys. "Last good policy" never means "a removed key is still trusted". After the
// first load, a key file or trusted root that cannot be read or used makes its signer
// `unavailable` (pulls that need it fail closed with SIGNER_UNAVAILABLE) while the rest of the
// policy loads. When the policy file itself is invalid, the last good text is parsed again
// against the key files as they are now, and a key file that changed since it was loaded counts
// as unavailable too (the admin replaced it; the old key is not kept). Start-up stays strict:
// no valid policy, no shim.

import { createHash } from 'node:crypto';
import { readFileSync, realpathSync, statSync, watch as fsWatch } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { asSpokeError, SpokeError } from '../core/errors.js';
import { silentLogger, type Logger } from '../core/runtime.js';
import { decodeText, parsePolicy, type Policy } from '../policy/index.js';
import type { UnavailableSigner } from '../policy/types.js';

export interface PolicyHolderOptions {
  readonly file: string;
  readonly readFile?: (path: string) => Buffer;
  /** Watch the policy file's directory and those of its key files; default false. */
  readonly watch?: boolean;
  readonly logger?: Logger;
  /** Called after a reload that changed the policy (a different hash). */
  readonly onReload?: (policy: Policy, previous: Policy) => void;
  /** Quiet time after the last change event before reloading; default 200 ms. */
  readonly debounceMs?: number;
  /** With `watch`: how often the files' identities are compared (see the header); default 2000 ms. */
  readonly pollMs?: number;
  /** Directory watcher, injectable for tests; default node:fs watch (non-persistent). */
  readonly watchDir?: (dir: string, onChange: () => void, onError: (e: Error) => void) => { close(): void };
}

export type ReloadResult = { readonly ok: true; readonly policy: Policy; readonly changed: boolean } | { readonly ok: false; readonly error: SpokeError };

export class PolicyHolder {
  private readonly file: string;
  private readonly readFile: (path: string) => Buffer;
  private readonly logger: Logger;
  private readonly onReload: ((policy: Policy, previous: Policy) => void) | undefined;
  private readonly debounceMs: number;
  private readonly watchDir: NonNullable<PolicyHolderOptions['watchDir']>;
  private readonly watching: boolean;
  /** By directory, with the identity (device and inode) of the directory watched. */
  private readonly watchers = new Map<string, { watcher: { close(): void }; id: string }>();
  /** The identity of the policy file and each key file as they were when last read. */
  private seen = new Map<string, string>();
  private poll: NodeJS.Timeout | undefined;
  private policy: Policy | undefined;
  /** The text of the last valid policy file and the sha256 of each key file it was loaded with. */
  private lastGood: { text: string; keys: Map<string, string> } | undefined;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;

  /** Loads the policy now; throws SpokeError when the file is missing or invalid. */
  constructor(opts: PolicyHolderOptions) {
    this.file = resolve(opts.file);
    this.readFile = opts.readFile ?? ((p) => readFileSync(p));
    this.logger = opts.logger ?? silentLogger;
    this.onReload = opts.onReload;
    this.debounceMs = opts.debounceMs ?? 200;
    this.watchDir = opts.watchDir ?? defaultWatchDir;
    this.watching = opts.watch === true;
    const first = this.reload();
    if (!first.ok) throw first.error;
    if (this.watching) {
      this.poll = setInterval(() => {
        for (const [path, id] of this.seen) {
          if (fileId(path) !== id) return this.schedule();
        }
      }, opts.pollMs ?? 2000);
      this.poll.unref();
    }
  }

  /** The last good policy. */
  current(): Policy {
    if (this.policy === undefined) throw new SpokeError('FailedPrecondition', `no valid node policy has been loaded from ${this.file}`, {}, { reason: 'INVARIANT' });
    return this.policy;
  }

  /** Signers of the current policy whose key material is unavailable (see the header). */
  unavailableSigners(): UnavailableSigner[] {
    return Object.values(this.policy?.signers ?? {}).filter((s): s is UnavailableSigner => s.type === 'unavailable');
  }

  /**
   * Reads and validates the file again; on failure the last good policy stays (with the key files
   * checked again: see the header) and the error is returned (and logged).
   */
  reload(): ReloadResult {
    let next: Policy;
    let text: string;
    const keys = new Map<string, string>();
    const markUnavailableSigners = this.policy !== undefined;
    // Each identity is taken before the file is read: a change after it is seen by the next poll.
    this.seen = new Map([[this.file, fileId(this.file)]]);
    try {
      text = decodeText(this.readPolicyFile(), this.file);
      next = parsePolicy(text, this.file, (p) => remember(keys, p, this.readKey(p)), { markUnavailableSigners });
    } catch (e) {
      const error = asSpokeError(e, 'InvalidArgument');
      if (this.policy !== undefined) {
        this.logger.log('error', 'node policy not reloaded; keeping the last good policy', { file: this.file, error: error.message, hash: this.policy.hash });
        this.recheckKeys();
      }
      return { ok: false, error };
    }
    this.lastGood = { text, keys };
    const changed = this.adopt(next);
    return { ok: true, policy: this.policy!, changed };
  }

  /** Makes `next` current when its hash differs (true then); logs what is unavailable in it. */
  private adopt(next: Policy): boolean {
    const previous = this.policy;
    if (previous !== undefined && previous.hash === next.hash) return false;
    this.policy = next;
    this.logger.log('info', previous === undefined ? 'node policy loaded' : 'node policy reloaded', { file: this.file, hash: next.hash, rules: next.rules.length });
    for (const s of this.unavailableSigners()) {
      this.logger.log('error', 'signer unavailable: pulls that need it fail closed', { signer: s.name, file: s.file, why: s.why });
    }
    if (this.watching) this.syncWatchers(next);
    if (previous !== undefined) this.onReload?.(next, previous);
    return true;
  }

  /** The policy file is invalid: the last good text again, against the key files as they are now. */
  private recheckKeys(): void {
    const good = this.lastGood;
    if (good === undefined) return;
    try {
      const read = (p: string): Buffer => {
        const bytes = this.readKey(p);
        const was = good.keys.get(p);
        if (was !== undefined && was !== sha256(bytes)) throw new Error(`${p} changed since the policy was loaded, and the policy file is invalid`);
        return bytes;
      };
      this.adopt(parsePolicy(good.text, this.file, read, { markUnavailableSigners: true }));
    } catch (e) {
      this.logger.log('error', 'key files of the last good policy not re-checked', { file: this.file, error: asSpokeError(e).message });
    }
  }

  /** Stops watching. */
  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    if (this.poll) clearInterval(this.poll);
    for (const w of this.watchers.values()) w.watcher.close();
    this.watchers.clear();
  }

  /** A key file, its identity noted first (see reload). */
  private readKey(path: string): Buffer {
    this.seen.set(path, fileId(path));
    return this.readFile(path);
  }

  private readPolicyFile(): Buffer {
    try {
      return this.readFile(this.file);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      throw new SpokeError('InvalidArgument', `${this.file}: cannot read the node policy${code ? ` (${code})` : ''}`, { file: this.file }, { cause: e, reason: 'FILE_UNREADABLE' });
    }
  }

  /** Watches the directories of the policy file and of every key and trusted root it names. */
  private syncWatchers(policy: Policy): void {
    if (this.closed) return;
    // The directory of each file, and of the file a symlink names: removing a key file behind a
    // symlink (in another directory) must reload the policy as removing the link would.
    const files = [this.file, ...Object.values(policy.signers).map((s) => s.file)];
    const dirs = new Set(files.flatMap((f) => [dirname(f), ...realDir(f)]));
    for (const [dir, w] of this.watchers) {
      if (!dirs.has(dir)) {
        w.watcher.close();
        this.watchers.delete(dir);
      }
    }
    for (const dir of dirs) {
      // A watch stays on the directory it was armed on: another one renamed to its path is watched anew.
      const id = fileId(dir);
      const armed = this.watchers.get(dir);
      if (armed?.id === id) continue;
      armed?.watcher.close();
      this.watchers.delete(dir);
      try {
        const watcher = this.watchDir(dir, () => this.schedule(), (e) => {
          this.logger.log('warn', 'policy directory watch failed; will retry on the next change', { dir, error: e.message });
          this.watchers.get(dir)?.watcher.close();
          this.watchers.delete(dir);
        });
        this.watchers.set(dir, { watcher, id });
      } catch (e) {
        this.logger.log('warn', 'cannot watch policy directory', { dir, error: (e as Error).message });
      }
    }
  }

  private schedule(): void {
    if (this.closed) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      if (this.closed) return;
      const r = this.reload();
      // A watch that failed, or whose directory was replaced, is re-armed here even when nothing changed.
      if (r.ok && !r.changed && this.policy) this.syncWatchers(this.policy);
    }, this.debounceMs);
    this.timer.unref();
  }
}

/** What identifies a file's content without reading it: device, inode, size, mtime and ctime (following symlinks). */
function fileId(path: string): string {
  try {
    const st = statSync(path, { bigint: true });
    return `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
  } catch (e) {
    return `absent:${(e as NodeJS.ErrnoException).code ?? ''}`;
  }
}

function sha256(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex');
}

function remember(keys: Map<string, string>, path: string, bytes: Buffer): Buffer {
  keys.set(path, sha256(bytes));
  return bytes;
}

function defaultWatchDir(dir: string, onChange: () => void, onError: (e: Error) => void): { close(): void } {
  const w = fsWatch(dir, { persistent: false }, () => onChange());
  w.on('error', onError);
  return w;
}

/** The directory of the file `path` resolves to, when it is another than its own (a symlink). */
function realDir(path: string): string[] {
  try {
    const real = dirname(realpathSync(path));
    return real === dirname(path) ? [] : [real];
  } catch {
    return [];
  }
}
