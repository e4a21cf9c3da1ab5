// A path looked up as the kernel looks it up, one name at a time, with each directory it passes
// through and each symbolic link it follows shown to the caller: the shim judges who may write
// the files it trusts by them (docs/configuration.md#files-the-shim-trusts), and where a
// Localhost profile's path leads (docs/shim.md). Textual folding (path.resolve) takes `link/..`
// for the link's own directory, where the kernel takes the parent of wherever the link leads;
// realpath(3) reads a /proc magic link as text. This reads nothing but lstat and readlink.

import { lstatSync, readlinkSync, type Stats } from 'node:fs';

export interface LookupVisitor {
  /** Each directory the lookup passes through, `/` first (`..` shows the parent again). */
  directory(path: string, st: Stats): void;
  /** Each symbolic link it follows, after the directory holding it. */
  link?(path: string, st: Stats): void;
}

/** The kernel's limit on symbolic links followed in one lookup (ELOOP past it). */
const MAX_LINKS_FOLLOWED = 40;

/**
 * Looks `path` up from `cwd` (a relative path's start; a path without links). Returns the path it
 * arrives at, with no link on it: the last name's, whether or not that name exists. A missing
 * name before the last is thrown as lstat throws it (ENOENT), once every directory before it was
 * shown; so is a name that is not a directory where one must be (ENOTDIR), and a chain of more
 * than 40 links (ELOOP).
 */
export function lookUpPath(path: string, cwd: string, visit: LookupVisitor): string {
  // The names still to look up, the next one last (a link's are pushed in its place).
  const pending = namesOf(path.startsWith('/') ? path : `${cwd}/${path}`);
  let at = '/';
  visit.directory(at, lstatSync(at));
  let followed = 0;
  while (pending.length > 0) {
    const name = pending.pop()!;
    if (name === '.') continue;
    // `at` has no link on it: its parent is the one the kernel takes for `..`.
    if (name === '..') {
      at = at.slice(0, at.lastIndexOf('/')) || '/';
      visit.directory(at, lstatSync(at));
      continue;
    }
    const next = at === '/' ? `/${name}` : `${at}/${name}`;
    let st: Stats;
    try {
      st = lstatSync(next);
    } catch (e) {
      if (pending.length === 0 && (e as NodeJS.ErrnoException).code === 'ENOENT') return next;
      throw e;
    }
    if (st.isSymbolicLink()) {
      visit.link?.(next, st);
      if (++followed > MAX_LINKS_FOLLOWED) throw Object.assign(new Error(`more than ${MAX_LINKS_FOLLOWED} symbolic links`), { code: 'ELOOP' });
      const target = readlinkSync(next);
      pending.push(...namesOf(target));
      if (target.startsWith('/')) {
        at = '/';
        visit.directory(at, lstatSync(at));
      }
      continue;
    }
    if (pending.length === 0) return next;
    if (!st.isDirectory()) throw Object.assign(new Error(`${next}: not a directory`), { code: 'ENOTDIR' });
    visit.directory(next, st);
    at = next;
  }
  return at;
}

/** `path`'s names, the first last. */
const namesOf = (path: string): string[] => path.split('/').filter((n) => n !== '').reverse();
