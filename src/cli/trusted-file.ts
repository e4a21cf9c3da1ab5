// The files the shim trusts decide what every container on the node may do, or where its
// credentials go (the list: docs/configuration.md#files-the-shim-trusts). The shim reads one only
// if no user but root (or its own) could have put it there, as ssh's StrictModes judges a key:
// the file, or a directory on its real path, owned by a uid other than 0 and the process's euid,
// writable by every user, or writable by a group other than gid 0 and the process's egid, is
// refused. A sticky directory's mode raises no doubt (no one but its owner may rename or remove
// what it holds), its owner does. A file or directory writable by root's group (or the
// process's), or a secret readable by others, is read with a warning. Only a regular file is read
// (a FIFO is opened without waiting for a writer, then refused). What is judged is
// what is read: one descriptor, its real path taken from /proc, so no file can be put in its
// place between the two.

import { closeSync, constants, fstatSync, openSync, readlinkSync, statSync, type Stats } from 'node:fs';
import { dirname } from 'node:path';
import { SpokeError } from '../core/errors.js';
import { readFdUpTo } from '../registry/credentials.js';

/** A file's permission bits as `ls` and chmod write them (0644). */
export const octalMode = (st: Stats): string => (st.mode & 0o7777).toString(8).padStart(4, '0');

export interface TrustedFileOptions {
  /** Called for a weaker doubt (root's group or the process's own may write it, others may read a secret). */
  warn: (message: string) => void;
  /** At most this many bytes are read (a caller allowing `limit` asks for `limit + 1`). */
  maxBytes: number;
  secret?: boolean;
}

/**
 * `path`'s bytes, read through the descriptor that was judged; FailedPrecondition (FILE_UNSAFE)
 * when a user or group other than root's (or the process's own) could have written it. Errors of
 * open and read are thrown as they come (the caller says it cannot read the file).
 */
export function readTrustedFile(path: string, what: string, o: TrustedFileOptions): Buffer {
  // Without O_NONBLOCK, opening a FIFO waits for a writer: the shim's thread, and every call it
  // forwards, would wait with it. A regular file reads as ever.
  const fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
  try {
    try {
      const st = fstatSync(fd);
      if (!st.isFile()) throw new SpokeError('FailedPrecondition', `${what} ${path}: not a regular file (a FIFO, a device or a socket), which no one can vouch for; give a file`, { file: path }, { reason: 'FILE_UNSAFE' });
      judge(readlinkSync(`/proc/self/fd/${fd}`), st, path, what, o);
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
  const self = { uid: process.geteuid?.() ?? 0, gid: process.getegid?.() ?? 0 };
  const notSelf = self.uid === 0 ? 'not root' : `neither root nor uid ${self.uid} (this process)`;
  const unsafe = (which: string, why: string, fix: string) =>
    new SpokeError('FailedPrecondition', `${what} ${path}: ${which} is ${why}; ${fix}`, { file: path }, { reason: 'FILE_UNSAFE' });
  // One inode on the way: the file itself (`name` its real path), or a directory on its real path.
  const judgeOne = (name: string, which: string, st: Stats, sticky: boolean): void => {
    if ((st.mode & 0o002) !== 0 && !sticky) throw unsafe(which, `writable by every user (mode ${octalMode(st)}), so any user could decide what it says`, 'make it writable by root only');
    if (st.uid !== 0 && st.uid !== self.uid) throw unsafe(which, `owned by uid ${st.uid}, ${notSelf}, so that user could decide what it says`, `make root its owner (chown root ${name})`);
    if ((st.mode & 0o020) === 0 || sticky) return;
    if (st.gid !== 0 && st.gid !== self.gid) throw unsafe(which, `writable by its group, gid ${st.gid} (mode ${octalMode(st)}), so any member of that group could decide what it says`, `make it writable by root only (chmod g-w ${name})`);
    o.warn(`${what} ${path}: ${which} is writable by its group (mode ${octalMode(st)})`);
  };
  judgeOne(real, 'the file', file, false);
  if (o.secret === true && (file.mode & 0o044) !== 0) o.warn(`${what} ${path} is readable by its group or others (mode ${octalMode(file)}): chmod 600 it`);
  for (let dir = dirname(real); ; dir = dirname(dir)) {
    const st = statSync(dir);
    // A sticky directory (/tmp) lets no user but its owner rename or remove what root put in it,
    // whoever may write it: being writable by every user or by any group raises no doubt there.
    // Its owner keeps that power, so the owner rule holds for a sticky directory as for any
    // other: /tmp, root's, passes; a sticky directory another user owns is refused.
    judgeOne(dir, `the directory ${dir} on its path`, st, (st.mode & 0o1000) !== 0);
    if (dirname(dir) === dir) break;
  }
}
