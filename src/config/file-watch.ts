// Watches files that are replaced the way editors, ConfigMap updates and deploy tools replace
// them (docs/configuration.md): by rename, in a directory that may itself be renamed or sit
// behind a symlink. Directories are watched, not files (a watch on a file does not survive its
// replacement), and the directory a symlinked file resolves to as well. A watch follows its
// directory's inode, so some replacements reach no watch (the directory renamed away and another
// renamed in, a symlinked directory retargeted with `ln -sfn`): watches are re-armed when their
// directory is replaced, and every `pollMs` the files' identities are compared too.
//
// A watched directory may hold files changing all the time (logs, other configuration). An event
// naming a watched file is a change; one naming another entry counts only when a watched file's
// identity changed with it: a ConfigMap mount replaces policy.yaml by renaming its `..data`
// symlink, and the events name `..data`, never policy.yaml. Events keep coming while a writer
// works (an in-place rewrite), so the reload waits for a quiet `debounceMs`, but never more than
// MAX_WAIT_MS after the first change it waits for: a revocation takes effect however busy the
// directory is (docs/configuration.md).

import { realpathSync, statSync, watch as fsWatch } from 'node:fs';
import { basename, dirname } from 'node:path';
import type { Logger } from '../core/runtime.js';

/** The longest a change waits for its reload, however many events follow it. */
const MAX_WAIT_MS = 2000;

/** `onChange` gets the name of the directory entry an event is about; null when the platform does not say. */
export type WatchDir = (dir: string, onChange: (name: string | null) => void, onError: (e: Error) => void) => { close(): void };

export interface FileWatchOptions {
  /** Called once after a burst of changes has been quiet for `debounceMs`, or MAX_WAIT_MS after its first change. */
  readonly onChange: () => void;
  readonly logger: Logger;
  /** What the files are, for log lines: "policy", "baseline". */
  readonly what: string;
  /** Quiet time after the last change event; default 200 ms (at most MAX_WAIT_MS is waited). */
  readonly debounceMs?: number;
  /** How often the files' identities are compared; default 2000 ms. */
  readonly pollMs?: number;
  /** Directory watcher, injectable for tests; default node:fs watch (non-persistent). */
  readonly watchDir?: WatchDir;
}

export class FileWatch {
  private readonly opts: FileWatchOptions;
  private readonly watchDir: WatchDir;
  /** By directory, with the identity (device and inode) of the directory watched. */
  private readonly watchers = new Map<string, { watcher: { close(): void }; id: string }>();
  /** By watched directory, the names in it of the watched files and of the files they resolve to. */
  private names = new Map<string, Set<string>>();
  /** The identity of each watched file as it was when last read. */
  private seen = new Map<string, string>();
  private noted = new Map<string, string>();
  private readonly poll: NodeJS.Timeout;
  /** The quiet-time timer, reset by every change. */
  private timer: NodeJS.Timeout | undefined;
  /** MAX_WAIT_MS after the first change since the last onChange; never reset. */
  private deadline: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(opts: FileWatchOptions) {
    this.opts = opts;
    this.watchDir = opts.watchDir ?? defaultWatchDir;
    this.poll = setInterval(() => {
      if (this.changedFiles()) this.schedule();
    }, opts.pollMs ?? 2000);
    this.poll.unref();
  }

  /** Notes `path`'s identity; called just before the file is read, so a change after it is seen. */
  note(path: string): void {
    this.noted.set(path, identity(path, 'file'));
  }

  /** The files noted since the last commit are the ones watched from now on. */
  commit(): void {
    this.seen = this.noted;
    this.noted = new Map();
    this.syncWatchers();
  }

  /** `load(path)` as the one file watched: noted before it is read, committed however the read ends. */
  readOne<T>(path: string, load: (path: string) => T): T {
    try {
      this.note(path);
      return load(path);
    } finally {
      this.commit();
    }
  }

  close(): void {
    this.closed = true;
    this.clearTimers();
    clearInterval(this.poll);
    for (const w of this.watchers.values()) w.watcher.close();
    this.watchers.clear();
  }

  private syncWatchers(): void {
    if (this.closed) return;
    const names = new Map<string, Set<string>>();
    for (const path of [...this.seen.keys()].flatMap((f) => [f, ...realPath(f)])) {
      const inDir = names.get(dirname(path)) ?? new Set();
      names.set(dirname(path), inDir.add(basename(path)));
    }
    this.names = names;
    for (const [dir, w] of this.watchers) {
      if (!names.has(dir)) {
        w.watcher.close();
        this.watchers.delete(dir);
      }
    }
    for (const dir of names.keys()) {
      const id = identity(dir, 'dir');
      const armed = this.watchers.get(dir);
      if (armed?.id === id) continue;
      armed?.watcher.close();
      this.watchers.delete(dir);
      try {
        const watcher = this.watchDir(dir, (name) => this.event(dir, name), (e) => {
          this.opts.logger.log('warn', `${this.opts.what} directory watch failed; will retry on the next change`, { dir, error: e.message });
          this.watchers.get(dir)?.watcher.close();
          this.watchers.delete(dir);
        });
        this.watchers.set(dir, { watcher, id });
      } catch (e) {
        this.opts.logger.log('warn', `cannot watch ${this.opts.what} directory`, { dir, error: (e as Error).message });
      }
    }
  }

  /** An event in `dir` about its entry `name` (see the header). */
  private event(dir: string, name: string | null): void {
    if (name === null || this.names.get(dir)?.has(name) === true || this.changedFiles()) this.schedule();
  }

  /** Whether a watched file's identity differs from the one it had when last read. */
  private changedFiles(): boolean {
    for (const [path, id] of this.seen) {
      if (identity(path, 'file') !== id) return true;
    }
    return false;
  }

  private schedule(): void {
    if (this.closed) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => this.fire(), this.opts.debounceMs ?? 200);
    this.timer.unref();
    if (this.deadline === undefined) {
      this.deadline = setTimeout(() => this.fire(), MAX_WAIT_MS);
      this.deadline.unref();
    }
  }

  private fire(): void {
    this.clearTimers();
    if (!this.closed) this.opts.onChange();
  }

  private clearTimers(): void {
    clearTimeout(this.timer);
    clearTimeout(this.deadline);
    this.timer = undefined;
    this.deadline = undefined;
  }
}

/**
 * A path's identity, following symlinks: device and inode, and for a file also size, mtime and
 * ctime, which identify its content without reading it. A directory is named by device and
 * inode only: its times change with every entry replaced in it, which leaves a watch on it as
 * good as it was.
 */
function identity(path: string, of: 'file' | 'dir'): string {
  try {
    const st = statSync(path, { bigint: true });
    return of === 'dir' ? `${st.dev}:${st.ino}` : `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
  } catch (e) {
    return `absent:${(e as NodeJS.ErrnoException).code ?? ''}`;
  }
}

function defaultWatchDir(dir: string, onChange: (name: string | null) => void, onError: (e: Error) => void): { close(): void } {
  const w = fsWatch(dir, { persistent: false }, (_event, name) => onChange(name));
  w.on('error', onError);
  return w;
}

/** The file `path` resolves to, when it is another than itself (a symlink). */
function realPath(path: string): string[] {
  try {
    const real = realpathSync(path);
    return real === path ? [] : [real];
  } catch {
    return [];
  }
}
