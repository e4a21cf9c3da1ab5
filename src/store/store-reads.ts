// Reading the store's own files: synchronously (fsutil.ts says why), through one descriptor that
// follows no link and waits on no FIFO, and only what spoke wrote. The store's directories are
// made private at each process's first use (layout.ts), but files left in them while they were
// open to others (an admin's chmod) stay: read as spoke's, a planted record's verdict would vouch
// for a signature no one verified (docs/security-model.md#atomic-store).

import { closeSync, constants, fstatSync, lstatSync, openSync, readFileSync, statSync, type Stats } from 'node:fs';
import { SpokeError } from '../core/errors.js';

export const errno = (e: unknown): string | undefined => (e as NodeJS.ErrnoException).code;

/** Whether a file in the store is spoke's by its owner: root's or this process's user's (a link's or a socket's mode says nothing). */
export function ownedByUs(st: Pick<Stats, 'uid'>): boolean {
  return st.uid === 0 || st.uid === process.geteuid?.();
}

/** Whether a file in the store is one spoke wrote: its own (ownedByUs), and no group or other user may write it. */
export function writtenByUs(st: Pick<Stats, 'uid' | 'mode'>): boolean {
  return ownedByUs(st) && (st.mode & 0o022) === 0;
}

/**
 * What stands where spoke reads or writes one of its files and cannot be taken or replaced (a
 * directory, a FIFO, a link; another user's): refused with the path, never waited on, so an admin
 * can remove it (docs/security-model.md#atomic-store).
 */
export function notSpokesFile(path: string, what = 'is not a regular file'): SpokeError {
  return new SpokeError('FailedPrecondition', `${path} ${what}: spoke did not write it (another user's, left while the store's directories were open to others?); inspect and remove it`, { file: path }, { reason: 'STATE_CORRUPT' });
}

/**
 * The regular file at `path`, open read-only with its descriptor's stat; 'absent' when nothing is
 * there; 'link' for a symbolic link (never followed), 'other' for anything else that is not a
 * regular file (a FIFO is opened without waiting for a writer; a unix socket, which open(2)
 * refuses with ENXIO, and a directory included). The caller closes the descriptor.
 */
function openRegular(path: string): { fd: number; st: Stats } | 'absent' | 'link' | 'other' {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (e) {
    if (errno(e) === 'ENOENT') return 'absent';
    if (errno(e) === 'ELOOP') return 'link';
    if (errno(e) === 'ENXIO') return 'other';
    throw e;
  }
  const st = fstatOpened(fd);
  if (st.isFile()) return { fd, st };
  closeSync(fd);
  return 'other';
}

/** The stat of a descriptor just opened, which is closed when the stat fails (its opener never gets it). */
export function fstatOpened(fd: number): Stats {
  try {
    return fstatSync(fd);
  } catch (e) {
    closeAfterFailure(fd);
    throw e;
  }
}

/** Closes `fd` after a failure, which is the one said: the close's own error goes (Linux releases the descriptor all the same). */
export function closeAfterFailure(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // the failure before it is said
  }
}

/** openRegular's file read whole and closed, with the stat of its descriptor before and after the read. */
function readOpened(o: { fd: number; st: Stats }): { bytes: Buffer; before: Stats; after: Stats } {
  try {
    const bytes = readFileSync(o.fd);
    return { bytes, before: o.st, after: fstatSync(o.fd) };
  } finally {
    closeSync(o.fd);
  }
}

/** openRegular for callers that refuse anything but a regular file (notSpokesFile); undefined when nothing is there. */
function openRegularOrRefuse(path: string): { fd: number; st: Stats } | undefined {
  const o = openRegular(path);
  if (o === 'absent') return undefined;
  if (o === 'link') throw notSpokesFile(path, 'is a link');
  if (o === 'other') throw notSpokesFile(path);
  return o;
}

/** What readStoreFileSync found at a path: the file's bytes and its descriptor's stat, nothing, or a file the store did not write. */
export type StoreFileRead = { bytes: Buffer; st: Stats } | 'absent' | 'foreign';

/**
 * Reads a file the store wrote: its bytes and the stat of the descriptor they were read from (so
 * no check and read can be told apart). 'foreign' when what is there is a link, not a regular
 * file, or not one spoke wrote (writtenByUs): its owner may rewrite it at any time, so callers
 * take it as unreadable. `seen`: the caller's lstat already found something there.
 */
export function readStoreFileSync(path: string, seen = false): StoreFileRead {
  // A miss is the common case: answered without an exception (see readFileIfExistsSync).
  if (!seen && lstatSync(path, { throwIfNoEntry: false }) === undefined) return 'absent';
  const o = openRegular(path);
  if (o === 'absent') return 'absent';
  if (o === 'link' || o === 'other') return 'foreign';
  if (!writtenByUs(o.st)) {
    closeSync(o.fd);
    return 'foreign';
  }
  const { bytes, before } = readOpened(o);
  return { bytes, st: before };
}

/** A file's bytes, or undefined when it does not exist (read synchronously: see fsutil.ts). */
export async function readFileIfExists(path: string): Promise<Buffer | undefined> {
  return readFileIfExistsSync(path);
}

/** readFileIfExists for callers that must not yield in between (a consistent read of several files). Anything but a regular file is refused, not read (notSpokesFile). */
export function readFileIfExistsSync(path: string): Buffer | undefined {
  // A miss is the common case (a cold pull asks for a record and a verdict that are not there):
  // answered by a stat that does not throw, since an exception costs more than the syscall.
  if (statSync(path, { throwIfNoEntry: false }) === undefined) return undefined;
  const o = openRegularOrRefuse(path);
  return o === undefined ? undefined : readOpened(o).bytes;
}

/**
 * A file's bytes read through one descriptor, with its stat before and after the read (a reader
 * can tell which file the bytes came from, and whether it changed meanwhile), or undefined when
 * it does not exist. Anything but a regular file is refused, not read (notSpokesFile).
 */
export function readFileWithStats(path: string): { bytes: Buffer; before: Stats; after: Stats } | undefined {
  const o = openRegularOrRefuse(path);
  return o === undefined ? undefined : readOpened(o);
}
