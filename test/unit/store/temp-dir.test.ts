// Temp files made ahead (src/store/fsutil.ts TempDir): handed out empty and young, never one that
// gc removed, refilled off the event loop, and removed when the process exits.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs, { closeSync, fstatSync, readdirSync, readFileSync, rmdirSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import { basename, join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { stageFile, commitStaged, TempDir, writeFileAtomic } from '../../../src/store/fsutil.js';
import { poolRequests } from './fixtures.js';
import { tempDirMaker } from '../../helpers/temp-dirs.js';
import { withFs } from '../../helpers/with-fs.js';

const tempRoot = tempDirMaker('spoke-tempdir-');

/** Waits for the refill, then checks that `dir` holds `n` entries. */
async function until(temp: TempDir, dir: string, n: number): Promise<void> {
  await temp.prepare();
  assert.equal(readdirSync(dir).length, n);
}

describe('TempDir', () => {
  it('hands out files made ahead and makes new ones in their place', async () => {
    const dir = join(tempRoot(), 'tmp');
    const temp = new TempDir(dir, 3);
    const first = temp.create();
    closeSync(first.fd);
    unlinkSync(first.path);
    await until(temp, dir, 3);
    const made = new Set(readdirSync(dir).map((n) => join(dir, n)));
    const f = temp.create();
    assert.ok(made.has(f.path), 'a prepared file is handed out');
    assert.equal(fstatSync(f.fd).size, 0);
    writeSync(f.fd, 'x');
    closeSync(f.fd);
    await until(temp, dir, 4);
  });

  it('makes its directory again when it was removed between two fills', async () => {
    const dir = join(tempRoot(), 'tmp');
    const asked: (() => void)[] = [];
    const temp = new TempDir(dir, 2, Date.now, (refill) => asked.push(refill));
    await until(temp, dir, 2);
    for (const f of [temp.create(), temp.create()]) {
      closeSync(f.fd);
      unlinkSync(f.path);
    }
    rmdirSync(dir);
    asked[0]!();
    await until(temp, dir, 2);
    const f = temp.create();
    assert.equal(basename(join(f.path, '..')), 'tmp');
    closeSync(f.fd);
  });

  it('a write into files made ahead that were removed since lands all the same; a file older than the freshness limit is never handed out', async () => {
    const root = tempRoot();
    const dir = join(root, 'tmp');
    let now = 1_000_000;
    const temp = new TempDir(dir, 2, () => now);
    closeSync(temp.create().fd);
    await until(temp, dir, 3);
    const prepared = readdirSync(dir).map((n) => join(dir, n));
    // Removed by hand, or by gc of a process whose clock calls them old.
    for (const p of prepared) unlinkSync(p);
    for (const name of ['a', 'b']) {
      const staged = await stageFile(join(root, name), `data ${name}`, temp, { fsync: false });
      assert.ok(!prepared.includes(staged.tmp), 'written again to a file made now');
      assert.deepEqual(await commitStaged([staged]), []);
      assert.equal(readFileSync(join(root, name), 'utf8'), `data ${name}`);
      assert.equal(statSync(join(root, name)).ino, staged.identity.ino);
    }
    assert.deepEqual(readdirSync(dir).filter((n) => prepared.includes(join(dir, n))), []);
    await until(temp, dir, 2);
    const young = readdirSync(dir).map((n) => join(dir, n));
    now += 21 * 60_000;
    const b = temp.create();
    assert.ok(!young.includes(b.path), 'a stale prepared file is not handed out');
    closeSync(b.fd);
    for (const p of young) assert.ok(!readdirSync(dir).includes(p.slice(dir.length + 1)), 'and it is removed');
  });

  it('a removed file made ahead whose name cannot be unlinked either: the write fails with that error, and its descriptor is closed once', async (t) => {
    const root = tempRoot();
    const dir = join(root, 'tmp');
    const temp = new TempDir(dir, 1);
    await until(temp, dir, 1);
    const [prepared] = readdirSync(dir).map((n) => join(dir, n));
    unlinkSync(prepared!);
    const closed: number[] = [];
    const close = fs.closeSync;
    t.mock.method(fs, 'closeSync', (fd: number) => {
      closed.push(fd);
      close(fd);
    });
    t.mock.method(fs, 'unlinkSync', (path: string) => {
      throw Object.assign(new Error(`EROFS: read-only file system, unlink '${path}'`), { code: 'EROFS' });
    });
    syncBuiltinESMExports();
    try {
      await assert.rejects(stageFile(join(root, 'f'), 'data', temp, { fsync: false }), (e: NodeJS.ErrnoException) => e.code === 'EROFS');
    } finally {
      t.mock.restoreAll();
      syncBuiltinESMExports();
    }
    assert.equal(new Set(closed).size, closed.length, `each descriptor closed once: ${closed.join(', ')}`);
  });

  it("a close that fails leaves no temp file with the bytes, after the write and after the write's own failure", async () => {
    const root = tempRoot();
    const dir = join(root, 'tmp');
    const eio = () => Object.assign(new Error('EIO: i/o error, close'), { code: 'EIO' });
    const failingClose = (close: (...args: unknown[]) => unknown) => (fd: unknown) => {
      close(fd); // the descriptor is released all the same, as Linux does
      throw eio();
    };
    const written = () => readdirSync(dir).filter((n) => statSync(join(dir, n)).size > 0);
    const temp = new TempDir(dir, 1);
    await until(temp, dir, 1);
    await assert.rejects(
      withFs('closeSync', failingClose, () => stageFile(join(root, 'f'), 'data', temp, { fsync: false })),
      (e: NodeJS.ErrnoException) => e.code === 'EIO',
    );
    assert.deepEqual(written(), []);
    // The flush fails first: that failure is the one said, and the close's does not keep the file.
    const flushFails = () => () => {
      throw Object.assign(new Error('ENOSPC: no space left on device, fsync'), { code: 'ENOSPC' });
    };
    await assert.rejects(
      withFs('fsyncSync', flushFails, () => withFs('closeSync', failingClose, () => stageFile(join(root, 'g'), 'data', temp, { flushInline: () => true }))),
      (e: NodeJS.ErrnoException) => e.code === 'ENOSPC',
    );
    assert.deepEqual(written(), []);
  });

  it('stages and commits through prepared files like through new ones', async () => {
    const root = tempRoot();
    const tmp = join(root, 'tmp');
    const temp = new TempDir(tmp, 2);
    for (let i = 0; i < 5; i++) {
      await temp.prepare();
      const prepared = readdirSync(tmp);
      const staged = await stageFile(join(root, `f${i}`), `data ${i}`, temp, { fsync: false });
      assert.ok(prepared.includes(basename(staged.tmp)), 'the write took a file made ahead');
      await commitStaged([staged]);
    }
    for (let i = 0; i < 5; i++) assert.equal(readFileSync(join(root, `f${i}`), 'utf8'), `data ${i}`);
  });

  it('makes files again when its refillWhen runs the refill, not before', async () => {
    const dir = join(tempRoot(), 'tmp');
    const asked: (() => void)[] = [];
    const temp = new TempDir(dir, 2, Date.now, (refill) => asked.push(refill));
    await until(temp, dir, 2);
    const started = await poolRequests(async () => {
      closeSync(temp.create().fd);
      closeSync(temp.create().fd);
    });
    assert.equal(started, 0, 'no file made while the taker runs');
    assert.equal(asked.length, 1, 'one refill asked for both files taken');
    assert.equal(readdirSync(dir).length, 2, 'the two taken, nothing made in their place yet');
    asked[0]!();
    await until(temp, dir, 4);
  });

  it('removes the files it made ahead when the process exits', () => {
    const dir = join(tempRoot(), 'tmp');
    const fsutil = fileURLToPath(new URL('../../../src/store/fsutil.js', import.meta.url));
    const script = `
      const { TempDir } = await import(${JSON.stringify(fsutil)});
      const { readdirSync } = await import('node:fs');
      const t = new TempDir(${JSON.stringify(dir)}, 4);
      t.create();
      await t.prepare();
      console.log(readdirSync(${JSON.stringify(dir)}).length);`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout.trim(), '5');
    // The one handed out is the caller's; the four made ahead went with the process.
    assert.equal(readdirSync(dir).length, 1);
  });
});

describe('flushing on the calling thread (flushInline)', () => {
  it('asked at each flush: yes flushes file and directory without the thread pool, no sends both there', async () => {
    const root = tempRoot();
    const asked: string[] = [];
    const inline = await poolRequests(() => writeFileAtomic(join(root, 'a'), 'inline', root, { flushInline: () => (asked.push('a'), true) }));
    const pooled = await poolRequests(() => writeFileAtomic(join(root, 'b'), 'pooled', root, { flushInline: () => (asked.push('b'), false) }));
    assert.deepEqual({ inline, pooled }, { inline: 0, pooled: 2 });
    assert.deepEqual(asked, ['a', 'a', 'b', 'b']);
    assert.equal(readFileSync(join(root, 'a'), 'utf8'), 'inline');
    assert.equal(readFileSync(join(root, 'b'), 'utf8'), 'pooled');
  });
});
