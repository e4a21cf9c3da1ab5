// The files the shim trusts decide what every container on the node may do, or where its
// credentials go (the list: docs/configuration.md#files-the-shim-trusts). The shim reads one only
// if no user but root (or its own) could have put it there, as ssh's StrictModes judges a key:
// refused when the file, or a directory a lookup of its path passes through (those on the path as
// written, those holding each symbolic link followed, those on the link's target), is owned by a
// uid other than 0 and the process's euid, or is writable by its group or by every user, or when
// a symbolic link followed is owned so. The group's write bits are refused whatever the group:
// under a POSIX ACL they are its mask, the most any named user or group may do, so a mode that
// shows none shows that no ACL grants a write. A sticky directory on the way raises no doubt by
// its mode (no one but its owner may rename or remove what it holds), its owner does; the
// directory holding the file itself must not be writable by others even so, since any user may
// add a name to a sticky one. A secret readable by others is read with a warning. Only a regular file
// is read (a FIFO is opened without waiting for a writer, then refused). What is judged is what is
// read: one descriptor, and the path the walk arrived at must be the one /proc gives for it, so
// nothing put in its place, or in a directory's, meanwhile is read unjudged.

import { closeSync, constants, fstatSync, lstatSync, mkdirSync, openSync, readlinkSync, type Stats } from 'node:fs';
import { dirname } from 'node:path';
import { lookUpPath } from '../config/path-lookup.js';
import { SpokeError } from '../core/errors.js';
import { readFdUpTo } from '../registry/credentials.js';

/** A file's permission bits as `ls` and chmod write them (0644). */
export const octalMode = (st: Stats): string => (st.mode & 0o7777).toString(8).padStart(4, '0');

export interface TrustedFileOptions {
  /** Called for a weaker doubt (others may read a secret). */
  warn: (message: string) => void;
  /** At most this many bytes are read (a caller allowing `limit` asks for `limit + 1`). */
  maxBytes: number;
  secret?: boolean;
}

/**
 * `path`'s bytes, read through the descriptor that was judged; FailedPrecondition (FILE_UNSAFE)
 * when a user other than root (or the process's own) could have written it. A missing file is
 * thrown as open throws it (ENOENT: the default node config reads as none) only where no other
 * user could have removed it; other errors of open and read are thrown as they come (the caller
 * says it cannot read the file).
 */
export function readTrustedFile(path: string, what: string, o: TrustedFileOptions): Buffer {
  const judge = new Judge(path, what);
  let fd: number;
  try {
    // Without O_NONBLOCK, opening a FIFO waits for a writer: the shim's thread, and every call it
    // forwards, would wait with it. A regular file opens as ever, but for one another process
    // holds a lease on (EAGAIN: the caller cannot read it now, and a reload tries again).
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') judge.missing();
    throw e;
  }
  try {
    try {
      const st = fstatSync(fd);
      if (!st.isFile()) throw judge.unsafe('the file', 'not a regular file (a FIFO, a device or a socket), which no one can vouch for', 'give a file');
      const real = readlinkSync(`/proc/self/fd/${fd}`);
      judge.inode(real, 'the file', st, true);
      if (o.secret === true && (st.mode & 0o044) !== 0) o.warn(`${what} ${path} is readable by its group or others (mode ${octalMode(st)}): chmod 600 it`);
      // After the real path was read: a directory renamed or replaced before the lookup leads it
      // elsewhere; one changed after it no longer holds the file the descriptor reads.
      let reached: string;
      try {
        reached = judge.lookup();
      } catch (e) {
        if (e instanceof SpokeError) throw e;
        throw judge.unsafe('its path', `changed while it was judged (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, 'try again');
      }
      if (reached !== real) throw judge.unsafe('its path', `led to ${reached} while the file read is ${real}: something on it changed while it was judged`, 'try again');
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

/**
 * Refuses (FailedPrecondition, FILE_UNSAFE) a place the shim makes a file others reach by path,
 * its CRI socket, when a user other than root (or the process's own) could put something else
 * there: the directory holding it, and every directory and link on the way, judged as for a
 * trusted file (the holding directory written by root alone, sticky or not). Whatever answers at
 * the socket's path gets every pod's spec from the kubelet, secrets in env included, and a user
 * who may write the directory can answer there while the shim restarts.
 */
export function checkTrustedPlace(path: string, what: string): void {
  const missing = missingDirectories(path);
  // The part that is there is judged before anything is made in it: root's mkdir would otherwise
  // follow a link another user put on the way and make a directory where that user chose.
  new Judge(missing[0] ?? path, what).lookup(true);
}

/**
 * Makes the directories missing on the way to `path` (mode `mode`), each only once the place it
 * goes in was judged (checkTrustedPlace), then judges the whole path.
 */
export function makeTrustedPlace(path: string, what: string, mode: number): void {
  checkTrustedPlace(path, what);
  for (const dir of missingDirectories(path)) mkdirSync(dir, { mode });
  checkTrustedPlace(path, what);
}

/** The directories on the way to `path` that are not there, outermost first (lstat: a link is there). */
function missingDirectories(path: string): string[] {
  const missing: string[] = [];
  for (let dir = dirname(path); lstatSync(dir, { throwIfNoEntry: false }) === undefined; dir = dirname(dir)) missing.unshift(dir);
  return missing;
}

/** One trusted file's judgement: its inodes, and the lookup of its path. */
class Judge {
  private readonly self = { uid: process.geteuid?.() ?? 0 };

  constructor(
    private readonly path: string,
    private readonly what: string,
  ) {}

  unsafe(which: string, why: string, fix: string): SpokeError {
    return new SpokeError('FailedPrecondition', `${this.what} ${this.path}: ${which} is ${why}; ${fix}`, { file: this.path }, { reason: 'FILE_UNSAFE' });
  }

  /**
   * One inode on the way (`name`: its path): the file itself, a directory the lookup passes
   * through, a symbolic link it follows. `byMode`: its mode is judged too (not for a link, whose
   * mode means nothing, nor a sticky directory the lookup only passes through).
   */
  inode(name: string, which: string, st: Stats, byMode: boolean): void {
    if (st.uid !== 0 && st.uid !== this.self.uid) {
      const notSelf = this.self.uid === 0 ? 'not root' : `neither root nor uid ${this.self.uid} (this process)`;
      throw this.unsafe(which, `owned by uid ${st.uid}, ${notSelf}, so that user could decide what it says`, `make root its owner (chown -h root ${name})`);
    }
    if (!byMode) return;
    // A sticky directory reaches here only as the one holding the file: no chmod makes it safe.
    const fix = (bit: string) => ((st.mode & 0o1000) !== 0 ? 'move the file into a directory only root may write' : `make it writable by root only (chmod ${bit}-w ${name})`);
    if ((st.mode & 0o002) !== 0) throw this.unsafe(which, `writable by every user (mode ${octalMode(st)}), so any user could decide what it says`, fix('o'));
    if ((st.mode & 0o020) !== 0) throw this.unsafe(which, `writable by its group, gid ${st.gid} (mode ${octalMode(st)}), or by a user or group an ACL names, so they could decide what it says`, fix('g'));
  }

  /**
   * Looks the path up as the kernel does (src/config/path-lookup.ts), judging each directory it
   * passes through and, in a sticky directory, where any user may add one, each symbolic link it
   * follows: its owner chooses where it leads, as the kernel's protected_symlinks knows (in
   * another directory, the directory's owner does, judged). The directory holding the file must
   * be written by root alone, sticky or not: in a sticky one any user may add a name, a hard link
   * to a file of root's among them (fs.protected_hardlinks off); not for a missing file (`found`
   * false), which no other user could have removed there. Returns the path it arrived at.
   */
  lookup(found = true): string {
    let holder: { path: string; st: Stats } | undefined;
    // process.cwd() is Node's cached copy; /proc names the directory the process is in now.
    const reached = lookUpPath(this.path, readlinkSync('/proc/self/cwd'), {
      directory: (path, st) => {
        const sticky = (st.mode & 0o1000) !== 0;
        // A sticky one (/tmp) lets no user but its owner rename or remove what root put in it,
        // whoever may write it: its owner keeps that power, so the owner rule holds for it too.
        this.inode(path, `the directory ${path} on its path`, st, !sticky);
        holder = { path, st };
      },
      link: (path, st) => {
        if ((holder!.st.mode & 0o1000) !== 0) this.inode(path, `the symbolic link ${path} on its path, in a sticky directory,`, st, false);
      },
    });
    if (found) this.inode(holder!.path, `the directory ${holder!.path} holding it`, holder!.st, true);
    return reached;
  }

  /** A missing file: refused when a user other than root could have removed it, or chosen where a link on its path leads. */
  missing(): void {
    try {
      this.lookup(false);
    } catch (e) {
      if (e instanceof SpokeError) throw e;
      // A directory missing on the way (or not one): missing as the open said. Anything else
      // (a path too long to look up, a directory that cannot be read) leaves who removed it untold.
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT' && code !== 'ENOTDIR') throw this.unsafe('its path', `cannot be looked up (${code ?? (e as Error).message}), so who removed the file cannot be told`, 'give a shorter path through directories only root may write');
    }
  }
}
