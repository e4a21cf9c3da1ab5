// Durable file writes: temp file in the same filesystem → write → fsync → rename → fsync dir.
// A crash at any point leaves either the old file or the new one visible, never half of one.
// Several files can be staged (written and fsynced) concurrently and then committed in order,
// so their flushes overlap instead of queueing one after another.
//
// Only the flushes (fsync, milliseconds each) and large writes leave the event loop, unless the
// writer says nothing else waits on it (`flushInline`, asked at each flush): a trip to libuv's
// thread pool and back costs wake-ups of two threads, which took ~0.8 ms per flush in a busy
// shim here, and a process with one thing to do (a CLI pull, a shim serving one call) flushes
// on its own thread instead (docs/benchmarks.md). The
// metadata steps (open, a small write, rename, link, unlink, stat, reading a small state file)
// are made synchronously: on the node's local disk each takes a few microseconds, while a trip
// through libuv's thread pool and back costs 50–300 µs on a busy node, and a pull or a create
// used to make about twenty of them one after another (docs/benchmarks.md).
//
// Creating a file is the dearest of those steps: ~170 µs on the node's ext4 here, against
// ~5 µs for a write and ~25 µs for a rename. A long-lived writer (the shim) gives its temp
// directory a few files made ahead of time, off the event loop (TempDir), so a pull or an in-use
// update takes an empty file already there instead of creating one, and makes the new ones once
// that call has been answered.

import { closeSync, fstatSync, fsync, fsyncSync, linkSync, mkdirSync, open, openSync, renameSync, statSync, unlinkSync, write, writeSync, type Stats } from 'node:fs';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { SpokeError } from '../core/errors.js';
import { uniqueSuffix } from '../core/unique.js';
import { closeAfterFailure, errno, notSpokesFile } from './store-reads.js';

const fsyncFd = promisify(fsync);
const writeFd = promisify(write);
const openAsync = promisify(open);

/** Larger data is written from the thread pool, so one big file cannot hold up other calls. */
const SYNC_WRITE_MAX = 256 * 1024;

/** Flushes `fd`: on this thread when `inline`, else from the thread pool. */
async function flush(fd: number, inline: boolean): Promise<void> {
  if (inline) fsyncSync(fd);
  else await fsyncFd(fd);
}

export async function fsyncDir(dir: string, inline = false): Promise<void> {
  const fd = openSync(dir, 'r');
  try {
    await flush(fd, inline);
  } finally {
    closeSync(fd);
  }
}

/** A file's identity as a reader's cache keys it: a rename or link keeps all three. */
export interface FileIdentity {
  ino: number;
  size: number;
  mtimeMs: number;
}

/** `st`'s identity alone (a Stats keeps much more alive). */
export const fileIdentity = (st: FileIdentity): FileIdentity => ({ ino: st.ino, size: st.size, mtimeMs: st.mtimeMs });
/** Compared field by field, not as strings made of them: a cached record's check runs on every warm pull. */
export const sameIdentity = (a: FileIdentity, b: FileIdentity): boolean => a.ino === b.ino && a.size === b.size && a.mtimeMs === b.mtimeMs;

/** A file written and flushed under a temp name, not yet visible under its target name. */
export interface StagedFile {
  readonly target: string;
  readonly tmp: string;
  /** Flushed before the rename, and its directory flushed after it. */
  readonly durable: boolean;
  /** Placed only if nothing is at `target` yet (link(2)), never replacing what is there. */
  readonly exclusive: boolean;
  /** The written file's identity, which it keeps once committed. */
  readonly identity: FileIdentity;
  /** WriteOptions.flushInline, for the directory's flush. */
  readonly flushInline: (() => boolean) | undefined;
  /** Set by commitStaged once the file is at `target`: from then on it is its writer's to take back. */
  placed?: true;
}

export interface WriteOptions {
  mode?: number;
  /** false skips the flushes (tests that measure without them). Default true. */
  fsync?: boolean;
  /** Asked before each flush: true flushes on this thread (see the header). Default: never. */
  flushInline?: () => boolean;
}

/** Runs `fn`; when it fails with ENOENT, creates `dir` and runs it once more. */
function withDir<T>(dir: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (errno(e) !== 'ENOENT') throw e;
    mkdirSync(dir, { recursive: true, mode: PRIVATE_DIR_MODE });
    return fn();
  }
}

/** Makes directory `path` (private), not its parents; nothing when something is there already (the caller checks what). */
export function makeDirUnlessPresent(path: string): void {
  try {
    mkdirSync(path, { mode: PRIVATE_DIR_MODE });
  } catch (e) {
    if (errno(e) !== 'EEXIST') throw e;
  }
}

/** `from` renamed to `to`; nothing when `from` is gone (another process put it back, or removed it, first). */
export function renameUnlessGone(from: string, to: string): void {
  try {
    renameSync(from, to);
  } catch (e) {
    if (errno(e) !== 'ENOENT') throw e;
  }
}

function unlinkQuiet(path: string): void {
  try {
    unlinkSync(path);
  } catch (e) {
    if (errno(e) !== 'ENOENT') throw e;
  }
}

async function writeAll(fd: number, data: Uint8Array): Promise<void> {
  let off = 0;
  while (off < data.byteLength) {
    const n = data.byteLength - off;
    off += n <= SYNC_WRITE_MAX ? writeSync(fd, data, off, n) : (await writeFd(fd, data, off, Math.min(n, SYNC_WRITE_MAX * 4))).bytesWritten;
  }
}

/**
 * The mode of files made ahead (the default of every write; other modes are created on demand),
 * and of the directories made for them: private to the node's root, as a profile pulled with a
 * pod's credentials is that pod's to read. A file made ahead is open to the later write that
 * fills it: nobody else may open it meanwhile.
 */
const PREPARED_MODE = 0o600;
export const PRIVATE_DIR_MODE = 0o700;
/**
 * A file made ahead is handed out only this young: gc removes temp files older than an hour
 * (collect.ts), and one it removed under a writer would fail that write's rename.
 */
const PREPARED_FRESH_MS = 20 * 60_000;

interface TempFile {
  path: string;
  fd: number;
}

/** The TempDirs of this process that made files ahead: what they still hold is removed at exit. */
const preparing = new Set<TempDir>();

function removePreparedFiles(): void {
  for (const t of preparing) t.discardReady();
}

/**
 * A directory for temp files, optionally with `prepared` empty files made ahead (see the header).
 * They are named like any temp file (`.tmp-<pid>-<unique>`, core/unique.ts), so those a crash
 * leaves behind go with gc's rule for old temp files; a clean exit removes them.
 */
export class TempDir {
  private readonly ready: (TempFile & { madeAt: number })[] = [];
  private filling: Promise<void> | undefined;

  private refillAsked = false;

  /**
   * `refillWhen` is handed the refill each time files are taken and decides when it runs: at
   * once by default. The shim runs it once the call that took them has been answered, so the
   * file creations (~0.3 ms each here, on the thread pool) do not share the machine with that
   * call's own writes and answer (docs/benchmarks.md).
   */
  constructor(
    readonly dir: string,
    private readonly prepared = 0,
    private readonly now: () => number = Date.now,
    private readonly refillWhen: (refill: () => void) => void = (refill) => refill(),
  ) {}

  private readonly refill = (): void => {
    this.refillAsked = false;
    void this.prepare();
  };

  private name(): string {
    return join(this.dir, `.tmp-${process.pid}-${uniqueSuffix()}`);
  }

  /**
   * A new empty file in the directory, open for writing; the caller closes and places or removes
   * it. One made ahead may have been removed since it was made (by hand, or gc of a process whose
   * clock says it is old): the caller checks the name is still its own once it has written
   * (stageFile), where the fstat it makes anyway tells.
   */
  create(mode = PREPARED_MODE): TempFile {
    if (this.prepared > 0 && mode === PREPARED_MODE) {
      const made = this.takeReady();
      if (!this.refillAsked) {
        this.refillAsked = true;
        this.refillWhen(this.refill);
      }
      if (made) return made;
    }
    return this.createNow(mode);
  }

  /** A new empty file made now, never one made ahead. */
  createNow(mode = PREPARED_MODE): TempFile {
    const path = this.name();
    return { path, fd: withDir(this.dir, () => openSync(path, 'wx', mode)) };
  }

  /** A file made ahead that is young; the stale ones found on the way are removed. */
  private takeReady(): TempFile | undefined {
    for (let f = this.ready.shift(); f !== undefined; f = this.ready.shift()) {
      if (this.now() - f.madeAt < PREPARED_FRESH_MS) return { path: f.path, fd: f.fd };
      closeSync(f.fd);
      unlinkQuiet(f.path);
    }
    return undefined;
  }

  /** Removes the files made ahead and not handed out (at exit). */
  discardReady(): void {
    for (const f of this.ready.splice(0)) {
      try {
        closeSync(f.fd);
        unlinkSync(f.path);
      } catch {
        /* already gone */
      }
    }
  }

  /**
   * Makes files ahead until `prepared` are ready, one at a time, from the thread pool; resolves
   * when they are (a full or read-only disk ends it early: writes then create their files on
   * demand and report the error themselves).
   */
  prepare(): Promise<void> {
    if (this.filling === undefined && this.ready.length < this.prepared) {
      const fill = async (): Promise<void> => {
        if (preparing.size === 0) process.once('exit', removePreparedFiles);
        preparing.add(this);
        while (this.ready.length < this.prepared) {
          const path = this.name();
          // The directory is made when it is missing (the first fill, or removed since), not
          // asked for at every fill: two system calls on the thread a pull has just answered on.
          const fd = await openAsync(path, 'wx', PREPARED_MODE).catch((e: unknown) => {
            if (errno(e) !== 'ENOENT') throw e;
            mkdirSync(this.dir, { recursive: true, mode: PRIVATE_DIR_MODE });
            return openAsync(path, 'wx', PREPARED_MODE);
          });
          this.ready.push({ path, fd, madeAt: this.now() });
        }
      };
      this.filling = fill()
        .catch(() => undefined)
        .finally(() => {
          this.filling = undefined;
        });
    }
    return this.filling ?? Promise.resolve();
  }
}

/**
 * Writes `data` to a temp file in `tmpDir` (same filesystem as `target`) and flushes it.
 * `exclusive`: commitStaged places it only where no file exists yet.
 */
export async function stageFile(target: string, data: Uint8Array | string, tmpDir: string | TempDir, opts: WriteOptions & { exclusive?: boolean } = {}): Promise<StagedFile> {
  const dir = typeof tmpDir === 'string' ? new TempDir(tmpDir) : tmpDir;
  const bytes = typeof data === 'string' ? Buffer.from(data) : data;
  // A file made ahead and removed since took the bytes under no name (TempDir.create): written
  // again, to a file made now.
  const staged = (await writeTemp(target, bytes, dir.create(opts.mode), opts)) ?? (await writeTemp(target, bytes, dir.createNow(opts.mode), opts));
  if (staged === undefined) {
    throw new SpokeError('Internal', `a temp file in ${dir.dir} was removed while ${target} was written to it`, { file: target }, { reason: 'STATE_CORRUPT' });
  }
  return staged;
}

/** `bytes` written and flushed to `file`; undefined (the file closed and gone) when its name is no longer its own. */
async function writeTemp(target: string, bytes: Uint8Array, file: TempFile, opts: WriteOptions & { exclusive?: boolean }): Promise<StagedFile | undefined> {
  const durable = opts.fsync ?? true;
  const { path: tmp, fd } = file;
  let st: Stats;
  try {
    await writeAll(fd, bytes);
    if (durable) await flush(fd, opts.flushInline?.() ?? false);
    st = fstatSync(fd);
  } catch (e) {
    closeAfterFailure(fd);
    unlinkQuiet(tmp);
    throw e;
  }
  // Closed once, here: a second close could shut a file another thread has opened since under
  // the same number (Linux releases the descriptor even when close fails).
  try {
    closeSync(fd);
  } catch (e) {
    unlinkQuiet(tmp);
    throw e;
  }
  if (st.nlink !== 1) {
    unlinkQuiet(tmp);
    return undefined;
  }
  return { target, tmp, durable, exclusive: opts.exclusive ?? false, identity: fileIdentity(st), flushInline: opts.flushInline };
}

/**
 * Puts staged files in place in the given order (a file others depend on goes first): renamed
 * over what is there, or for an exclusive one linked only where nothing is yet. Then flushes the
 * directory of each durable file once, concurrently. Returns the exclusive files that were not
 * placed because their target already existed (their temp files are removed).
 */
export async function commitStaged(files: readonly StagedFile[]): Promise<StagedFile[]> {
  const lost: StagedFile[] = [];
  try {
    for (const f of files) {
      if (!f.exclusive) {
        try {
          withDir(dirname(f.target), () => renameSync(f.tmp, f.target));
        } catch (e) {
          if (errno(e) === 'EISDIR') throw notSpokesFile(f.target, 'is a directory');
          throw e;
        }
        f.placed = true;
        continue;
      }
      try {
        withDir(dirname(f.target), () => linkSync(f.tmp, f.target));
        f.placed = true;
      } catch (e) {
        if (errno(e) !== 'EEXIST') throw e;
        lost.push(f);
      }
      unlinkQuiet(f.tmp);
    }
  } catch (e) {
    await discardStaged(files);
    throw e;
  }
  // Each directory once, flushed as a file placed in it asks.
  const dirs = new Map(files.filter((f) => f.durable && !lost.includes(f)).map((f) => [dirname(f.target), f] as const));
  await Promise.all([...dirs].map(([dir, f]) => fsyncDir(dir, f.flushInline?.() ?? false)));
  return lost;
}

/** Removes staged temp files that will not be committed (already-placed ones are gone). */
export async function discardStaged(files: readonly StagedFile[]): Promise<void> {
  for (const f of files) unlinkQuiet(f.tmp);
}

/** Writes one file atomically: stage, then commit. */
export async function writeFileAtomic(target: string, data: Uint8Array | string, tmpDir: string | TempDir, opts: WriteOptions = {}): Promise<void> {
  await commitStaged([await stageFile(target, data, tmpDir, opts)]);
}

/** Removes a file if it is there. Synchronous: a caller may check and remove in one step (records.ts deleteRecord). */
export function removeIfExists(path: string): void {
  // Usually absent (an ingest clears a verdict that is almost never there): see readFileIfExistsSync.
  if (statSync(path, { throwIfNoEntry: false }) === undefined) return;
  try {
    unlinkQuiet(path);
  } catch (e) {
    if (errno(e) === 'EISDIR') throw notSpokesFile(path, 'is a directory');
    throw e;
  }
}
