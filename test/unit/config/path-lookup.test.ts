// lookUpPath (src/config/path-lookup.ts): a path looked up as the kernel looks it up.

import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { lookUpPath } from '../../../src/config/path-lookup.js';

describe('lookUpPath', () => {
  const dir = realpathSync(mkdtempSync(join(tmpdir(), 'spoke-lookup-')));
  after(() => rmSync(dir, { recursive: true, force: true }));
  mkdirSync(join(dir, 'a', 'b'), { recursive: true });
  writeFileSync(join(dir, 'a', 'f'), 'x');
  symlinkSync(join(dir, 'a', 'b'), join(dir, 'to-b'));
  symlinkSync('loop', join(dir, 'loop'));
  const seen = (path: string, cwd = '/') => {
    const dirs: string[] = [];
    const links: string[] = [];
    const reached = lookUpPath(path, cwd, { directory: (d) => dirs.push(d), link: (l) => links.push(l) });
    return { reached, dirs, links };
  };

  it('follows a link and takes `..` after it as the parent of where it leads, showing every directory and link on the way', () => {
    const r = seen(`${dir}/to-b/../f`);
    assert.equal(r.reached, join(dir, 'a', 'f'));
    assert.deepEqual(r.links, [join(dir, 'to-b')]);
    assert.ok(r.dirs.includes(join(dir, 'a', 'b')) && r.dirs.includes(join(dir, 'a')));
    assert.equal(r.dirs[0], '/');
  });

  it('starts a relative path at cwd; a missing last name is where the lookup arrives, a missing directory before it is thrown', () => {
    assert.equal(seen('a/./f', dir).reached, join(dir, 'a', 'f'));
    assert.equal(seen(`${dir}/a/none`).reached, join(dir, 'a', 'none'));
    assert.throws(() => seen(`${dir}/none/f`), { code: 'ENOENT' });
    assert.throws(() => seen(`${dir}/a/f/g`), { code: 'ENOTDIR' });
  });

  it('stops after 40 links, as the kernel does', () => {
    assert.throws(() => seen(`${dir}/loop/x`), { code: 'ELOOP' });
  });
});
