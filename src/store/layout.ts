// The store's directory layout and the file primitives its parts share (see store.ts for the
// layout): every path is built from a digest's hex, never from input text.

import { chmodSync, lstatSync, mkdirSync, statSync } from 'node:fs';
import { join, sep } from 'node:path';
import { digestHex, isDigest, type Digest } from '../core/digest.js';
import { SpokeError } from '../core/errors.js';
import { systemClock, type Clock } from '../core/runtime.js';
import { makeDirUnlessPresent, PRIVATE_DIR_MODE, TempDir, writeFileAtomic, type WriteOptions } from './fsutil.js';
import { sweepDeadOwners, withFileLock } from './lock.js';
import { ownedByUs } from './store-reads.js';

export const SHA_HEX_RE = /^[0-9a-f]{64}$/;
/** A file named by a sha256's hex: records, content verdicts, effective profiles and their origins. */
export const SHA_JSON_FILE_RE = /^([0-9a-f]{64})\.json$/;

/** The store's directories under its root (recording/: the shim's logging profiles, src/cri/logging-profile.ts). */
const STORE_DIRS = ['blobs/sha256', 'profiles/sha256', 'invalid/sha256', 'state/effective', 'tmp', 'locks/owners', 'recording/.tmp'] as const;

export interface StoreLayoutOptions {
  root: string;
  clock?: Clock;
  /** false skips fsync (tests and benchmarks that measure the floor without it). Default true. */
  fsync?: boolean;
  /** Empty temp files kept made ahead for writes (fsutil.ts TempDir): for long-lived writers. Default 0. */
  preparedTempFiles?: number;
  /** Asked before each flush: true flushes on the calling thread (fsutil.ts). Default: never. */
  flushInline?: () => boolean;
  /** When temp files made ahead are made again after some were taken (fsutil.ts TempDir). Default: at once. */
  refillTempFiles?: (refill: () => void) => void;
  /**
   * Reads only (`spoke status`, which changes nothing on the node): no directory made or
   * re-moded, no lock taken; what is missing reads as empty. Default false.
   */
  readOnly?: boolean;
}

export class StoreLayout {
  readonly root: string;
  readonly clock: Clock;
  /** The options of every flushed write (fsync, flushInline). */
  readonly durable: WriteOptions;
  /** Where writes stage their files (tmpDir). */
  readonly temp: TempDir;
  /** StoreLayoutOptions.readOnly. */
  readonly readOnly: boolean;
  private ready: Promise<void> | undefined;
  /** The digest directories, each with its trailing separator: a digest's path is one concatenation. */
  private readonly blobDir: string;
  private readonly recordDir: string;
  private readonly invalidDir: string;

  constructor(opts: StoreLayoutOptions) {
    if (!opts.root) throw new SpokeError('InvalidArgument', 'store root directory is required', {}, { reason: 'OPTION_INVALID' });
    this.root = opts.root;
    this.readOnly = opts.readOnly ?? false;
    this.clock = opts.clock ?? systemClock;
    this.durable = { fsync: opts.fsync ?? true, ...(opts.flushInline ? { flushInline: opts.flushInline } : {}) };
    this.temp = new TempDir(join(this.root, 'tmp'), opts.preparedTempFiles ?? 0, () => this.clock.now(), opts.refillTempFiles);
    this.blobDir = join(this.root, 'blobs', 'sha256') + sep;
    this.recordDir = join(this.root, 'profiles', 'sha256') + sep;
    this.invalidDir = join(this.root, 'invalid', 'sha256') + sep;
  }

  /**
   * Makes the store's directories, once per process: synchronously, like every metadata step
   * (fsutil.ts). Private (0700), those an older version made open too: a profile pulled with a
   * pod's credentials is that pod's to read. A directory under the root that is a link or another
   * user's is refused (STATE_CORRUPT): what is in it, or where it leads, was not written by spoke,
   * and its owner can still change it (docs/security-model.md#atomic-store). The root itself may
   * be reached through a link the admin made.
   */
  init(): Promise<void> {
    if (this.readOnly) return Promise.resolve();
    if (this.ready === undefined) {
      const ready = (async () => {
        // Parents first, each made and checked before anything is made in it: once a directory is
        // private and checked, nobody else can swap what is in it, and nothing is made through a
        // link or in another user's directory before it is refused.
        for (const d of new Set(['', ...STORE_DIRS.flatMap(withParents)])) {
          const path = join(this.root, d);
          makeDir(path, d === '');
          const st = d === '' ? statSync(path) : lstatSync(path);
          const problem = !st.isDirectory() ? 'is not a directory (a link?)' : !ownedByUs(st) ? `belongs to uid ${st.uid}` : undefined;
          if (problem !== undefined) {
            throw new SpokeError('FailedPrecondition', `${path} ${problem}: the store's directories must be root's or spoke's user's alone; inspect and remove it, then start again`, { file: path }, { reason: 'STATE_CORRUPT' });
          }
          // mkdir's mode is for the directories it makes: the root and those an older version made too.
          if ((st.mode & 0o777) !== PRIVATE_DIR_MODE) chmodSync(path, PRIVATE_DIR_MODE);
        }
      })();
      this.ready = ready;
      // A failure (a full or read-only disk at first use) is not kept: the next use tries again.
      ready.catch(() => {
        if (this.ready === ready) this.ready = undefined;
      });
    }
    return this.ready;
  }

  blobPath(d: Digest): string {
    return this.blobDir + digestHex(assertDigest(d));
  }

  recordPath(d: Digest): string {
    return `${this.recordDir}${digestHex(assertDigest(d))}.json`;
  }

  invalidPath(d: Digest): string {
    return `${this.invalidDir}${digestHex(assertDigest(d))}.json`;
  }

  /** A path under state/ (fixed names only). */
  statePath(...parts: string[]): string {
    return join(this.root, 'state', ...parts);
  }

  get tmpDir(): string {
    return this.temp.dir;
  }

  write(target: string, data: Uint8Array | string): Promise<void> {
    return writeFileAtomic(target, data, this.temp, this.durable);
  }

  lock<T>(name: string, fn: () => Promise<T>): Promise<T> {
    return withFileLock(join(this.root, 'locks', `${name}.lock`), fn);
  }

  /** Removes the lock owner files of processes that are gone (lock.ts sweepDeadOwners). */
  sweepLockOwners(): Promise<number> {
    return sweepDeadOwners(join(this.root, 'locks'));
  }
}

/**
 * Makes directory `path` unless something is there (checked by the caller). `root`: the store's
 * root, made with its parents (the admin's path, which may go through links); under it, nothing
 * is made on the way to a directory.
 */
function makeDir(path: string, root: boolean): void {
  if (root) mkdirSync(path, { recursive: true, mode: PRIVATE_DIR_MODE });
  else makeDirUnlessPresent(path);
}

/** 'a/b/c' → ['a', 'a/b', 'a/b/c']. */
function withParents(dir: string): string[] {
  const names = dir.split('/');
  return names.map((_, i) => names.slice(0, i + 1).join('/'));
}

export function assertDigest(d: string): Digest {
  if (!isDigest(d)) throw new SpokeError('InvalidArgument', `not a sha256 digest: ${JSON.stringify(String(d).slice(0, 80))}`, {}, { reason: 'DIGEST_INVALID' });
  return d;
}

/**
 * Whether `path` exists (a synchronous stat: see fsutil.ts). Not `existsSync`: its access(2)
 * looks the path up as the real user, where the store's reads and writes use the effective one.
 */
export function exists(path: string): boolean {
  try {
    return statSync(path, { throwIfNoEntry: false }) !== undefined;
  } catch {
    return false;
  }
}

export function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
