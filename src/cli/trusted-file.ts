// The files the shim trusts decide what every container on the node may do, or where its
// credentials go (the list: docs/configuration.md#files-the-shim-trusts). The shim reads one only
// if no user but root (or its own) could have put it there: a world-writable file, or a
// world-writable directory without the sticky bit on its real path, is refused; one writable by
// a group, owned by another user, or (a secret) readable by others is read with a warning, as
// ssh's StrictModes judges a key. What is judged is
// what is read: one descriptor, its real path taken from /proc, so no file can be put in its
// place between the two.

import { closeSync, fstatSync, openSync, readlinkSync, statSync, type Stats } from 'node:fs';
import { dirname } from 'node:path';
import { SpokeError } from '../core/errors.js';
import { readFdUpTo } from '../registry/credentials.js';

/** A file's permission bits as `ls` and chmod write them (0644). */
export const octalMode = (st: Stats): string => (st.mode & 0o7777).toString(8).padStart(4, '0');

export interface TrustedFileOptions {
  /** Called for a weaker doubt (a group may write it, another user owns it, others may read a secret). */
  warn: (message: string) => void;
  /** At most this many bytes are read (a caller allowing `limit` asks for `limit + 1`). */
  maxBytes: number;
  secret?: boolean;
}

/**
 * `path`'s bytes, read through the descriptor that was judged; FailedPrecondition (FILE_UNSAFE)
 * when another user could have written it. Errors of open and read are thrown as they come (the
 * caller says it cannot read the file).
 */
export function readTrustedFile(path: string, what: string, o: TrustedFileOptions): Buffer {
  const fd = openSync(path, 'r');
  try {
    try {
      judge(readlinkSync(`/proc/self/fd/${fd}`), fstatSync(fd), path, what, o);
    } catch (e) {
      if (e instanceof SpokeError) throw e;
      // Opened, but not judged (no /proc to name its real path, a directory on it gone or
      // unreadable): refused, never an error a caller could take for a missing file (ENOENT
      // reads as "no config" for the default node config).
      throw new SpokeError('FailedPrecondition', `${what} ${path}: cannot tell who may write it (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}; is /proc mounted?)`, { file: path }, { cause: e, reason: 'FILE_UNSAFE' });
    }
    return readFdUpTo(fd, o.maxBytes);
  } finally {
    closeSync(fd);
  }
}

function judge(real: string, file: Stats, path: string, what: string, o: TrustedFileOptions): void {
  const self = process.geteuid?.() ?? 0;
  const ownedWell = (st: Stats): boolean => st.uid === 0 || st.uid === self;
  const unsafe = (which: string, st: Stats) =>
    new SpokeError('FailedPrecondition', `${what} ${path}: ${which} is writable by every user (mode ${octalMode(st)}), so any user could decide what it says; make it writable by root only`, { file: path }, { reason: 'FILE_UNSAFE' });
  if ((file.mode & 0o002) !== 0) throw unsafe('the file', file);
  if ((file.mode & 0o020) !== 0) o.warn(`${what} ${path} is writable by its group (mode ${octalMode(file)})`);
  if (!ownedWell(file)) o.warn(`${what} ${path} is owned by uid ${file.uid}, not by root`);
  if (o.secret === true && (file.mode & 0o044) !== 0) o.warn(`${what} ${path} is readable by its group or others (mode ${octalMode(file)}): chmod 600 it`);
  for (let dir = dirname(real); ; dir = dirname(dir)) {
    const st = statSync(dir);
    // A sticky directory (/tmp) lets no other user rename or remove what root put in it.
    const sticky = (st.mode & 0o1000) !== 0;
    if ((st.mode & 0o002) !== 0 && !sticky) throw unsafe(`the directory ${dir} on its path`, st);
    if ((st.mode & 0o020) !== 0 && !sticky) o.warn(`${what} ${path}: the directory ${dir} on its path is writable by its group (mode ${octalMode(st)})`);
    if (!ownedWell(st)) o.warn(`${what} ${path}: the directory ${dir} on its path is owned by uid ${st.uid}, not by root`);
    if (dirname(dir) === dir) break;
  }
}
