// The directory the shim writes its merge results to, `<seccompRoot>/spoke`: made at start, or
// checked when it is there. The runtime reads an effective profile by path after the shim has
// checked it, so nobody but the shim's user may write in that directory (docs/shim.md#localhost-bases-and-effective-files).

import type { Stats } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { chmod, lstat, mkdir, realpath, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { EFFECTIVE_SECCOMP_DIR } from '../core/constants.js';
import { SpokeError } from '../core/errors.js';
import type { Logger } from '../core/runtime.js';

/**
 * Makes `<seccompRoot>/spoke` (mode 0700) or checks it: a directory, not a link, of this process's
 * user; write access of group and others is taken away (and logged). Returns the directory as
 * configured and, when the root is reached through a link, as the kernel resolves it: the names a
 * Localhost profile may give it (rewrite.ts refuseReserved).
 */
export async function prepareEffectiveDir(seccompRoot: string, logger: Logger): Promise<string[]> {
  const dir = join(seccompRoot, EFFECTIVE_SECCOMP_DIR);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const st = await lstat(dir);
  const refusal = refusalOf(dir, st);
  if (refusal !== undefined) throw refusal;
  if ((st.mode & 0o022) !== 0) {
    await chmod(dir, st.mode & 0o755);
    logger.log('warn', 'the effective profile directory was writable by group or others; write access taken away', { dir, mode: (st.mode & 0o777).toString(8) });
  }
  await replaceForeignTemp(join(dir, '.tmp'), logger);
  const real = join(await realpath(seccompRoot), EFFECTIVE_SECCOMP_DIR);
  return real === dir ? [dir] : [dir, real];
}

/**
 * The temp directory inside, whose files become effective profiles by rename: one that is not a
 * directory of this process's user, or that group or others may write (made while the directory
 * above was open to them), is renamed aside, never used again, and a new one made, the shim's
 * alone. Its owner could otherwise swap a temp file for its own between the write and the rename.
 * Renamed, not removed: a recursive removal as root walks a tree its owner can still change (a
 * subdirectory swapped for a link mid-walk deletes what the link leads to), while the rename is one
 * step in a directory only the shim's user may write by now.
 */
async function replaceForeignTemp(tmp: string, logger: Logger): Promise<void> {
  const st = await lstat(tmp).catch((e: NodeJS.ErrnoException) => {
    if (e.code === 'ENOENT') return undefined;
    throw e;
  });
  if (st === undefined || (refusalOf(tmp, st) === undefined && (st.mode & 0o022) === 0)) return;
  const aside = `${tmp}-foreign-${randomBytes(8).toString('hex')}`;
  await rename(tmp, aside);
  await mkdir(tmp, { mode: 0o700 });
  logger.log('warn', 'the effective profile temp directory was not the shim\'s alone: renamed aside and made again; inspect what it holds and remove it', { dir: tmp, aside, uid: st.uid, mode: (st.mode & 0o777).toString(8), link: st.isSymbolicLink() });
}

/**
 * What a shim starting now would refuse `<seccompRoot>/spoke` for, changing nothing (spoke
 * status): undefined when it is absent (made at start) or usable.
 */
export async function effectiveDirRefusal(seccompRoot: string): Promise<SpokeError | undefined> {
  const dir = join(seccompRoot, EFFECTIVE_SECCOMP_DIR);
  let st: Stats;
  try {
    st = await lstat(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
  return refusalOf(dir, st);
}

function refusalOf(dir: string, st: Stats): SpokeError | undefined {
  const refuse = (why: string) => new SpokeError('FailedPrecondition', `${dir} ${why}: the shim writes the effective profiles the runtime reads there, so only its own user may`, { file: dir }, { reason: 'STATE_CORRUPT' });
  if (!st.isDirectory()) return refuse('is not a directory (a link?)');
  const uid = process.getuid?.();
  if (uid !== undefined && st.uid !== uid) return refuse(`belongs to uid ${st.uid}, not to this process's ${uid}`);
  return undefined;
}
