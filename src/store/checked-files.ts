// Files a node writes by content and hands to others by path (the effective seccomp profiles, the
// recording's logging profile), trusted by a stamp once read right (docs/shim.md).

import { constants, lstatSync, type BigIntStats } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { SpokeError } from '../core/errors.js';
import { writeFileAtomic } from './fsutil.js';
import { writtenByUs } from './store-reads.js';

/** Writes of one file by CheckedFiles.ensure before it gives up (see there). */
const MAX_CHECKED_WRITES = 3;

/**
 * Files a node writes by content and hands to others by path (the effective seccomp profiles, the
 * recording's logging profile): each is checked by content once and then, while it keeps the
 * stamp it had when checked (device, inode, mode, owner, links, size, mtime and ctime), by one
 * lstat. Only a file no one else can change is trusted (changedOnlyByUs). A file
 * changed since, removed, or replaced by a link is checked again and, when it holds other bytes,
 * replaced atomically. An in-place rewrite moves the ctime, which no caller can set back, though
 * within one tick of the kernel's coarse clock the times could stay as they were.
 */
export class CheckedFiles {
  /** Path → the stamp the file had when its content was found right. */
  private readonly stamps = new Map<string, string>();

  /**
   * Makes sure `path` holds `bytes` (writing it atomically, with `mode`, from `tmpDir`). What was
   * written is trusted, as a file found there is, only once read back. Another writer of the same
   * bytes (a second create merging the same profile) may replace it in between: the file is then
   * checked again, and written again if it holds other bytes, a bounded number of times.
   */
  async ensure(path: string, bytes: Uint8Array, tmpDir: string, mode: number): Promise<void> {
    for (let writes = 0; ; writes++) {
      const seen = lstatStamp(path);
      if (seen !== undefined && this.stamps.get(path) === seen) return;
      if (seen !== undefined && (await this.check(path, bytes, seen))) return;
      if (writes === MAX_CHECKED_WRITES) break;
      await writeFileAtomic(path, bytes, tmpDir, { mode });
    }
    throw new SpokeError('Internal', `${path} was changed each time it was written (${MAX_CHECKED_WRITES} times)`, { file: path, limit: MAX_CHECKED_WRITES }, { reason: 'FILE_UNWRITABLE' });
  }

  /** Forgets `path` (removed by gc): the next ensure checks it again. */
  forget(path: string): void {
    this.stamps.delete(path);
  }

  /**
   * Whether the regular file at `path` (no link followed, no FIFO waited on) is the one stamped
   * `stamp` and holds `bytes`, read through the descriptor its stamp was taken from; remembered
   * if so.
   */
  private async check(path: string, bytes: Uint8Array, stamp: string): Promise<boolean> {
    let file: FileHandle;
    try {
      file = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
    } catch {
      return false;
    }
    try {
      const st = await file.stat({ bigint: true });
      if (!st.isFile() || !changedOnlyByUs(st) || stampOf(st) !== stamp || st.size !== BigInt(bytes.length)) return false;
      if (!(await file.readFile()).equals(bytes)) return false;
    } finally {
      await file.close();
    }
    this.stamps.set(path, stamp);
    return true;
  }
}

/**
 * Whether only spoke can change the file after its check (fsutil.ts writtenByUs), with no other
 * name either, which may be in a directory someone else writes. A file with the right bytes that
 * fails this (left from a time the directory was open to others) is replaced, not trusted: its
 * owner could rewrite it between the check and the runtime's read.
 */
function changedOnlyByUs(st: BigIntStats): boolean {
  return writtenByUs({ uid: Number(st.uid), mode: Number(st.mode) }) && st.nlink === 1n;
}

function stampOf(st: BigIntStats): string {
  return `${st.dev}:${st.ino}:${st.mode}:${st.uid}:${st.nlink}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
}

/** What tells one file at a path from another without reading it, or undefined when none is there. */
function lstatStamp(path: string): string | undefined {
  const st = lstatSync(path, { bigint: true, throwIfNoEntry: false });
  return st === undefined ? undefined : stampOf(st);
}
