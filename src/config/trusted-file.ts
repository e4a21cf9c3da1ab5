// The files the shim trusts decide what every container on the node may do: the node policy and
// the keys and roots it names, the seccomp baseline, the recording key. The shim reads one only
// if no user but root (or its own) could have put it there: a world-writable file, or a
// world-writable directory without the sticky bit on its real path, is refused; one writable by
// a group, owned by another user, or (a secret) readable by others is read with a warning, as
// ssh's StrictModes judges a key (docs/configuration.md#files-the-shim-trusts).

import { realpathSync, statSync, type Stats } from 'node:fs';
import { dirname } from 'node:path';
import { SpokeError } from '../core/errors.js';

const octal = (st: Stats): string => (st.mode & 0o7777).toString(8).padStart(4, '0');

/**
 * Throws FailedPrecondition (FILE_UNSAFE) when another user could have written `path` through
 * its real path; calls `warn` for a weaker doubt. A path that does not resolve is left to its
 * reader, which says it cannot read it.
 */
export function checkTrustedFile(path: string, what: string, warn: (message: string) => void, opts: { secret?: boolean } = {}): void {
  let real: string;
  try {
    real = realpathSync(path);
  } catch {
    return;
  }
  const self = process.geteuid?.() ?? 0;
  const ownedWell = (st: Stats): boolean => st.uid === 0 || st.uid === self;
  const unsafe = (which: string, st: Stats) =>
    new SpokeError('FailedPrecondition', `${what} ${path}: ${which} is writable by every user (mode ${octal(st)}), so any user could decide what it says; make it writable by root only`, { file: path }, { reason: 'FILE_UNSAFE' });
  const file = statSync(real);
  if ((file.mode & 0o002) !== 0) throw unsafe('the file', file);
  if ((file.mode & 0o020) !== 0) warn(`${what} ${path} is writable by its group (mode ${octal(file)})`);
  if (!ownedWell(file)) warn(`${what} ${path} is owned by uid ${file.uid}, not by root`);
  if (opts.secret === true && (file.mode & 0o044) !== 0) warn(`${what} ${path} is readable by its group or others (mode ${octal(file)}): chmod 600 it`);
  for (let dir = dirname(real); ; dir = dirname(dir)) {
    const st = statSync(dir);
    // A sticky directory (/tmp) lets no other user rename or remove what root put in it.
    const sticky = (st.mode & 0o1000) !== 0;
    if ((st.mode & 0o002) !== 0 && !sticky) throw unsafe(`the directory ${dir} on its path`, st);
    if ((st.mode & 0o020) !== 0 && !sticky) warn(`${what} ${path}: the directory ${dir} on its path is writable by its group (mode ${octal(st)})`);
    if (!ownedWell(st)) warn(`${what} ${path}: the directory ${dir} on its path is owned by uid ${st.uid}, not by root`);
    if (dirname(dir) === dir) break;
  }
}
