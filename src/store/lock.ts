// A cross-process lock on a path, for read-modify-write of small state files shared by the shim
// and `spoke pull` processes (possibly in other PID namespaces, a `spoke pull` run in a
// container for one, so a pid means nothing across the two). Content writes never need it: blobs are
// content-addressed and renamed.
//
// Owners. Each process that takes a lock listens on a unix socket `<locks>/owners/<token>.sock`
// (token: 12 random bytes, never reused). The kernel closes that socket when the process dies, so
// "is the owner alive" is a connect(): refused (or the socket file gone) means dead, for good;
// anything else (accepted, backlog full, timeout, permission) counts as alive. A stopped or busy
// process still has its socket, so a live holder's lock is never broken, however old. A process
// removes its owner files at exit; a crashed one's are removed by the store's gc (sweepDeadOwners).
//
// The lock is a symlink `<path>` whose target names the owner's token: atomic create-if-absent
// with its content in one step (no half-written lock file). Each owner makes its symlink once,
// `<locks>/owners/<token>.link`, and takes a lock by hard-linking it to `<path>` with link(2),
// which does not follow symlinks and fails if `<path>` exists: ~15 µs, where creating a new
// symlink costs ~170 µs on the node's ext4 (src/store/fsutil.ts). Only the owner removes it when
// done.
//
// A dead owner's lock must be removed by someone else, and "check the token, then unlink the
// path" alone could delete a fresh lock made in between by the next owner. So removal of the
// lock of dead token T is serialised by a claim that only one process can ever win for T:
// symlink `<path>.break-<T>` (naming the breaker's token). Its winner reads the lock again and
// unlinks it only if it still names T; that read and the unlink cannot be separated by a change:
// T is dead (it will not unlink), the path exists (nobody can create it), and every other
// breaker of T lost the claim. A breaker that dies holding a claim is itself broken the same way,
// one level down (`<path>.break-<T>-<W>`), up to MAX_BREAK_DEPTH levels; past that the lock waits
// (times out) rather than risk two holders. Claims are removed after use; a later breaker that
// wins a re-made claim finds the lock no longer names T and leaves it alone. A regular-file lock
// of an older spoke is broken the same way, by age (breakLegacy).
//
// Files another user planted while the store's directories were open to others (they are made
// private at each process's first use, but what is inside stays): a lock naming a token whose
// owner "socket" is a link to any listening socket on the node would keep the shim from ever
// starting. So an owner counts as alive only through a real socket in the owners directory that
// answers, whoever owns it (a spoke process of another user sharing the store holds its locks as
// any other), never through a link; and a lock or claim of another user's that names no owner
// is broken at once, under a claim named by its inode (breakForeign), or refused when it cannot
// be (docs/security-model.md#atomic-store). Nobody else can make a file in the private directory,
// so what was planted stays planted until spoke removes it.

import { randomBytes } from 'node:crypto';
import { linkSync, lstatSync, symlinkSync, unlinkSync, type Stats } from 'node:fs';
import { lstat, mkdir, readdir, readlink, unlink } from 'node:fs/promises';
import { createConnection, createServer, type Server } from 'node:net';
import { basename, dirname, join } from 'node:path';
import { SpokeError } from '../core/errors.js';
import { monotonicNow, type MonotonicNow } from '../core/runtime.js';
import { makeDirUnlessPresent, PRIVATE_DIR_MODE } from './fsutil.js';
import { notSpokesFile, ownedByUs } from './store-reads.js';

const RETRY_MS = 5;
/** Every this many failed attempts, check whether the holder is dead. */
const CHECK_EVERY = 10;
const MAX_BREAK_DEPTH = 4;
const LEGACY_STALE_MS = 60_000;
const CONNECT_TIMEOUT_MS = 1000;
const TARGET_PREFIX = 'spoke-lock:';
const TOKEN_RE = /^[0-9a-f]{24}$/;
/** sun_path holds 108 bytes with its NUL. */
const MAX_SOCKET_PATH = 107;

interface Owner {
  token: string;
  server: Server;
  /** The symlink naming this owner, hard-linked into place to take a lock. */
  link: string;
}

/** One owner socket per process and locks directory. */
const owners = new Map<string, Promise<Owner>>();

/**
 * Locks this process released whose removal failed (an I/O error): each still names this
 * process's live owner, so no taker would ever break it; this process's next taker removes it
 * (breakIfDead). A path leaves the set when a claim of it succeeds.
 */
const unreleased = new Set<string>();

/**
 * Removes the lock at `lockPath` this process holds; a failure leaves it to the next taker here
 * (a lock already gone, broken while held, is said as before, and left to nobody).
 */
function release(lockPath: string): void {
  try {
    unlinkSync(lockPath);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') unreleased.add(lockPath);
    throw e;
  }
}

/** This process's owner sockets and links: noise once it has exited (a crashed one's stay: still "dead"). */
const ownerFiles = new Set<string>();

function removeOwnerFiles(): void {
  for (const p of ownerFiles) {
    try {
      unlinkSync(p);
    } catch {
      /* already gone */
    }
  }
}

/** What a lock symlink names: its owner's token (and, for people reading it, when it was made). */
const ownerTarget = (token: string): string => `${TARGET_PREFIX}${token}:${Date.now()}`;

function ownerSocket(locksDir: string, token: string): string {
  return join(locksDir, 'owners', `${token}.sock`);
}

function owner(locksDir: string): Promise<Owner> {
  let o = owners.get(locksDir);
  if (!o) {
    o = (async () => {
      const token = randomBytes(12).toString('hex');
      const path = ownerSocket(locksDir, token);
      if (Buffer.byteLength(path) > MAX_SOCKET_PATH) {
        throw new SpokeError('FailedPrecondition', `lock owner socket ${path} is longer than a unix socket path may be (${MAX_SOCKET_PATH} bytes): use a shorter store directory`, { path }, { reason: 'OPTION_INVALID' });
      }
      // Each checked before anything is made in it: a link planted where the locks or their owners
      // go would take the owner socket and every lock elsewhere, and the shim takes its store lock
      // before the store checks its directories (layout.ts). Other users' directories stay usable:
      // their spoke processes share the locks.
      await mkdir(locksDir, { recursive: true, mode: PRIVATE_DIR_MODE });
      for (const dir of [locksDir, dirname(path)]) {
        makeDirUnlessPresent(dir);
        if (!(await lstat(dir)).isDirectory()) throw notSpokesFile(dir, 'is not a directory (a link?)');
      }
      const server = createServer((c) => c.destroy());
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(path, () => {
          server.off('error', reject);
          resolve();
        });
      });
      server.unref();
      if (ownerFiles.size === 0) process.once('exit', removeOwnerFiles);
      ownerFiles.add(path);
      const link = join(dirname(path), `${token}.link`);
      symlinkSync(ownerTarget(token), link);
      ownerFiles.add(link);
      return { token, server, link };
    })();
    owners.set(locksDir, o);
    o.catch(() => owners.delete(locksDir));
  }
  return o;
}

/**
 * What is at a lock or claim path: nothing (or a link gone before it could be read); else whether
 * another user owns it (see the header), and the token a link names (undefined for an older
 * spoke's regular file, or a link naming no token).
 */
type LockFile = undefined | { foreign: boolean; st: Stats; token: string | undefined };

async function lockFile(path: string): Promise<LockFile> {
  const st = await lstat(path).catch(() => undefined);
  if (st === undefined) return undefined;
  const foreign = !ownedByUs(st);
  if (!st.isSymbolicLink()) return { foreign, st, token: undefined };
  // Read after the lstat: only its owner removes a live lock, and a dead one is removed only under
  // its break claim; a change in between is a lock gone (the read fails) or one taken since. Gone
  // is nothing held now, never a lock naming no owner: another user's holder may take it again at
  // once, under the same inode (every lock of one owner is a link of its own).
  const target = await readlink(path).catch(() => undefined);
  if (target === undefined) return undefined;
  const token = target.startsWith(TARGET_PREFIX) ? target.slice(TARGET_PREFIX.length).split(':')[0] : undefined;
  return { foreign, st, token: token !== undefined && TOKEN_RE.test(token) ? token : undefined };
}

/** The token a lock or claim names; undefined when absent or naming none. */
async function tokenOf(path: string): Promise<string | undefined> {
  return (await lockFile(path))?.token;
}

/**
 * False only when the owner is certainly gone: its socket refuses connections or no longer exists,
 * or what is there is not a socket (a link planted to lead to a live one: see the header). A real
 * socket that answers is a live spoke process's whatever user it runs as (a shim not run as root
 * sharing the store): only they make sockets in the private owners directory.
 */
async function alive(locksDir: string, token: string): Promise<boolean> {
  const path = ownerSocket(locksDir, token);
  const st = await lstat(path).catch(() => undefined);
  if (st === undefined || !st.isSocket()) return false;
  return new Promise((resolve) => {
    const s = createConnection(path);
    const done = (v: boolean) => {
      clearTimeout(t);
      s.destroy();
      resolve(v);
    };
    const t = setTimeout(() => done(true), CONNECT_TIMEOUT_MS);
    s.once('connect', () => done(true));
    s.once('error', (e: NodeJS.ErrnoException) => done(!(e.code === 'ECONNREFUSED' || e.code === 'ENOENT')));
  });
}

/**
 * Places the owner's symlink at `path` (see the header); false when something is there.
 * Synchronous, like the release: a lock is taken and dropped around every small state update,
 * and two trips through the thread pool cost more than the update itself (fsutil.ts).
 */
async function claim(path: string, me: Owner, remade = false): Promise<boolean> {
  try {
    linkSync(me.link, path);
    unreleased.delete(path);
    return true;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') return false;
    // The owner's symlink was removed (a cleaned-up owners directory): made again, then placed.
    if (code !== 'ENOENT' || remade || lstatSync(me.link, { throwIfNoEntry: false }) !== undefined) throw e;
    symlinkSync(ownerTarget(me.token), me.link);
    return claim(path, me, true);
  }
}

/** Removes the lock at `lockPath` if its owner is dead, or if it is not spoke's (see the header). */
async function breakIfDead(lockPath: string, locksDir: string, me: Owner): Promise<void> {
  const held = await lockFile(lockPath);
  if (held === undefined) return;
  const dead = held.token;
  // Naming no owner: another user's file is broken at once, an older spoke's by age.
  if (dead === undefined) {
    await (held.foreign ? breakForeign(lockPath, held.st, locksDir, me) : breakLegacy(lockPath, locksDir, me));
    return;
  }
  if (dead === me.token) {
    // Held here, unless its release failed: then nobody holds it (a claim would have found it
    // there). Taken off the list and removed in one step, so that of this process's takers who
    // read it stale only the first removes it, never a lock one of them has claimed since.
    if (unreleased.delete(lockPath)) {
      try {
        unlinkSync(lockPath);
      } catch {
        unreleased.add(lockPath);
      }
    }
    return;
  }
  if (await alive(locksDir, dead)) return;
  await underBreakClaim(lockPath, dead, locksDir, me, async () => {
    if ((await tokenOf(lockPath)) === dead) await unlink(lockPath).catch(() => undefined);
    await unlink(ownerSocket(locksDir, dead)).catch(() => undefined);
  });
}

/**
 * A lock another user owns that names no owner: no holder (see the header). Removed under a claim
 * named by its inode, and only if it is still that file: a lock taken since names its owner.
 */
async function breakForeign(lockPath: string, st: Stats, locksDir: string, me: Owner): Promise<void> {
  await underBreakClaim(lockPath, `foreign${st.ino}`, locksDir, me, async () => {
    const now = await lockFile(lockPath);
    if (!(now?.foreign === true && now.token === undefined && now.st.ino === st.ino && now.st.dev === st.dev)) return;
    // A directory (or what else unlink refuses) cannot be broken: refused, not waited on for good.
    await unlink(lockPath).catch((e: NodeJS.ErrnoException) => {
      if (e.code !== 'ENOENT') throw notSpokesFile(lockPath, `is another user's and cannot be removed (${e.code ?? 'error'})`);
    });
  });
}

/**
 * A regular-file lock of an older spoke (pid inside, no owner socket). Those versions held a lock
 * for one small read-modify-write and broke any lock older than 30 s themselves, so one older
 * than LEGACY_STALE_MS is a crash's leftover. So is one whose mtime is that far in the future:
 * written while the clock ran ahead, it would otherwise stand until the clock caught up. Removed
 * under a claim named by its inode, and only if it is still that file with that mtime.
 */
async function breakLegacy(lockPath: string, locksDir: string, me: Owner): Promise<void> {
  const st = await lstat(lockPath).catch(() => undefined);
  if (!st?.isFile() || Math.abs(Date.now() - st.mtimeMs) < LEGACY_STALE_MS) return;
  await underBreakClaim(lockPath, `legacy${st.ino}`, locksDir, me, async () => {
    const now = await lstat(lockPath).catch(() => undefined);
    if (now?.isFile() && now.ino === st.ino && now.mtimeMs === st.mtimeMs) await unlink(lockPath).catch(() => undefined);
  });
}

/** Runs `remove` only as the one winner of the break claim for `key` (see the header). */
async function underBreakClaim(lockPath: string, key: string, locksDir: string, me: Owner, remove: () => Promise<void>): Promise<void> {
  // Claims of dead breakers on the way down: removed only once ours is won and the lock handled
  // (removing one earlier would let a second breaker in while the live one is still at work).
  const deadClaims: string[] = [];
  let claimPath = `${lockPath}.break-${key}`;
  for (let depth = 0; !(await claim(claimPath, me)); depth++) {
    const found = await lockFile(claimPath);
    // A claim naming no breaker that another user owns is no breaker's: one down, named by its
    // inode (as breakForeign). One naming a breaker is judged by its owner socket, whoever owns it.
    const nobody = found?.token === undefined && found?.foreign === true;
    const breaker = nobody ? `foreign${found.st.ino}` : found?.token;
    // Someone alive is breaking it, or the chain is too deep to follow safely: wait. Unless the
    // chain is another user's: no spoke process will end it, so it is refused, not waited on.
    if (breaker === undefined || (!nobody && (await alive(locksDir, breaker)))) return;
    if (depth + 1 >= MAX_BREAK_DEPTH) {
      if (found?.foreign === true) throw notSpokesFile(claimPath, "is another user's, below other claims");
      return;
    }
    deadClaims.push(claimPath);
    claimPath = `${claimPath}-${breaker}`;
  }
  try {
    await remove();
  } finally {
    // Ours first, then the dead ones above it.
    for (const p of [claimPath, ...deadClaims.reverse()]) await unlink(p).catch(() => undefined);
  }
}

const OWNER_FILE_RE = /^([0-9a-f]{24})\.(sock|link)$/;

/**
 * Removes the owner files of processes that are gone: a crash skips the exit handler that removes
 * a process's own, so without this they pile up. An owner is gone when its socket refuses
 * connections or is missing (a breaker removed it): its socket and link are removed. A lock that
 * names it stays breakable (its socket is missing: dead), and a lock is a link of its own, so
 * removing the owner's link name leaves it whole. A live owner's files stay; one whose link went
 * anyway makes it again (claim). Returns how many owners were swept. Run by the store's gc sweep.
 */
export async function sweepDeadOwners(locksDir: string): Promise<number> {
  const dir = join(locksDir, 'owners');
  const names = await readdir(dir).catch((e: NodeJS.ErrnoException) => {
    if (e.code === 'ENOENT') return [];
    throw e;
  });
  const sockets = new Set<string>();
  const links = new Set<string>();
  for (const name of names) {
    const m = OWNER_FILE_RE.exec(name);
    if (m) (m[2] === 'sock' ? sockets : links).add(m[1]!);
  }
  // This process's own owners are alive; asked anyway, they would answer so.
  const own = new Set([...ownerFiles].filter((p) => dirname(p) === dir).map((p) => basename(p).split('.')[0]!));
  let swept = 0;
  for (const token of new Set([...sockets, ...links])) {
    // A socket is made before its link (owner()), so a link alone means the socket is gone.
    if (own.has(token) || (sockets.has(token) && (await alive(locksDir, token)))) continue;
    await unlink(ownerSocket(locksDir, token)).catch(() => undefined);
    await unlink(join(dir, `${token}.link`)).catch(() => undefined);
    swept++;
  }
  return swept;
}

/** While waiting to hold a lock for good (holdFileLock): between attempts, and between notes to the caller. */
const HOLD_RETRY_MS = 200;
const HOLD_NOTE_MS = 10_000;

/**
 * Takes the lock at `lockPath` for as long as the caller keeps it (a process's lifetime), waiting
 * as long as a live owner holds it: `waiting` is told at the first refusal by a live owner and
 * every HOLD_NOTE_MS after. A dead owner's lock is broken as withFileLock breaks it. The lock goes at
 * release(), or with the process (its owner socket then refuses, and the next taker breaks it).
 * The wait is measured on `now` (tests; default performance.now()), as withFileLock's.
 */
export async function holdFileLock(lockPath: string, waiting: (waitedMs: number) => void, now: MonotonicNow = monotonicNow): Promise<{ release(): void }> {
  const locksDir = dirname(lockPath);
  const me = await owner(locksDir);
  const started = now();
  let noted: number | undefined;
  // A dead holder's lock (a shim restarted after a crash) is broken and taken at once: only a
  // live holder is a wait, and only a wait is told.
  while (!(await claim(lockPath, me))) {
    await breakIfDead(lockPath, locksDir, me);
    if (await claim(lockPath, me)) break;
    if (noted === undefined || now() - noted >= HOLD_NOTE_MS) {
      noted = now();
      waiting(noted - started);
    }
    await new Promise((r) => setTimeout(r, HOLD_RETRY_MS));
  }
  let held = true;
  return {
    release: () => {
      if (!held) return;
      held = false;
      release(lockPath);
    },
  };
}

/**
 * Runs `fn` holding the lock at `lockPath`; Unavailable (DEADLINE) when it cannot be taken within
 * `timeoutMs`, measured on `now` (tests; default performance.now()): on the wall clock a step
 * forward would fail a pull or a create waiting on a live holder at once, and one back keep it
 * waiting as long as the step.
 */
export async function withFileLock<T>(lockPath: string, fn: () => Promise<T>, timeoutMs = 10_000, now: MonotonicNow = monotonicNow): Promise<T> {
  const locksDir = dirname(lockPath);
  const me = await owner(locksDir);
  const deadline = now() + timeoutMs;
  for (let attempt = 1; !(await claim(lockPath, me)); attempt++) {
    if (attempt % CHECK_EVERY === 0) await breakIfDead(lockPath, locksDir, me);
    if (now() > deadline) throw new SpokeError('Unavailable', `timed out waiting for lock ${lockPath}`, { path: lockPath }, { reason: 'DEADLINE' });
    await new Promise((r) => setTimeout(r, RETRY_MS + Math.random() * RETRY_MS));
  }
  try {
    return await fn();
  } finally {
    release(lockPath);
  }
}
