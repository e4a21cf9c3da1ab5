// Holds the current node policy and reloads it when its file or a key file changes (DESIGN §6).
// An invalid file never replaces a good policy: the error is logged and the last good policy
// stays. At start there is no good policy to keep, so the constructor throws and the shim does
// not start. Directories are watched, not files: editors and ConfigMap updates replace files by
// rename, which a watch on the file itself would not survive.

import { readFileSync, watch as fsWatch } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { asSpokeError, SpokeError } from '../core/errors.js';
import { silentLogger, type Logger } from '../core/runtime.js';
import { decodeText, parsePolicy, type Policy } from '../policy/index.js';

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
  private readonly watchers = new Map<string, { close(): void }>();
  private policy: Policy | undefined;
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
  }

  /** The last good policy. */
  current(): Policy {
    if (this.policy === undefined) throw new SpokeError('FailedPrecondition', `no valid node policy has been loaded from ${this.file}`);
    return this.policy;
  }

  /** Reads and validates the file again; on failure the last good policy stays and the error is returned (and logged). */
  reload(): ReloadResult {
    let next: Policy;
    try {
      next = parsePolicy(decodeText(this.readPolicyFile(), this.file), this.file, this.readFile);
    } catch (e) {
      const error = asSpokeError(e, 'InvalidArgument');
      if (this.policy !== undefined) {
        this.logger.log('error', 'node policy not reloaded; keeping the last good policy', { file: this.file, error: error.message, hash: this.policy.hash });
      }
      return { ok: false, error };
    }
    const previous = this.policy;
    const changed = previous === undefined || previous.hash !== next.hash;
    if (changed) {
      this.policy = next;
      this.logger.log('info', previous === undefined ? 'node policy loaded' : 'node policy reloaded', { file: this.file, hash: next.hash, rules: next.rules.length });
      if (this.watching) this.syncWatchers(next);
      if (previous !== undefined) this.onReload?.(next, previous);
    }
    return { ok: true, policy: this.policy!, changed };
  }

  /** Stops watching. */
  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    for (const w of this.watchers.values()) w.close();
    this.watchers.clear();
  }

  private readPolicyFile(): Buffer {
    try {
      return this.readFile(this.file);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      throw new SpokeError('InvalidArgument', `${this.file}: cannot read the node policy${code ? ` (${code})` : ''}`, { file: this.file }, { cause: e });
    }
  }

  /** Watches the directories of the policy file and of every key and trusted root it names. */
  private syncWatchers(policy: Policy): void {
    if (this.closed) return;
    const dirs = new Set([dirname(this.file), ...Object.values(policy.signers).map((s) => dirname(s.file))]);
    for (const [dir, w] of this.watchers) {
      if (!dirs.has(dir)) {
        w.close();
        this.watchers.delete(dir);
      }
    }
    for (const dir of dirs) {
      if (this.watchers.has(dir)) continue;
      try {
        const w = this.watchDir(dir, () => this.schedule(), (e) => {
          this.logger.log('warn', 'policy directory watch failed; will retry on the next change', { dir, error: e.message });
          this.watchers.get(dir)?.close();
          this.watchers.delete(dir);
        });
        this.watchers.set(dir, w);
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
      // A watch that failed is re-armed here even when nothing changed.
      if (r.ok && !r.changed && this.policy) this.syncWatchers(this.policy);
    }, this.debounceMs);
    this.timer.unref();
  }
}

function defaultWatchDir(dir: string, onChange: () => void, onError: (e: Error) => void): { close(): void } {
  const w = fsWatch(dir, { persistent: false }, () => onChange());
  w.on('error', onError);
  return w;
}
