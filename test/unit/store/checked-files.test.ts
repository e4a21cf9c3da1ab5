// Files written by content and handed out by path (src/store/checked-files.ts): trusted by
// their stamp once read right, checked again when changed, and never refused because another
// writer placed the same bytes at the same moment.

import assert from 'node:assert/strict';
import { chmodSync, chownSync, linkSync, lstatSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { CheckedFiles } from '../../../src/store/checked-files.js';
import { tempDirMaker } from '../../helpers/temp-dirs.js';

const tempRoot = tempDirMaker('spoke-checked-');

describe('CheckedFiles', () => {
  it('two writers of one file at once (two creates merging one profile) both succeed, and the file holds the bytes', async () => {
    const dir = tempRoot();
    const bytes = Buffer.from('{"defaultAction":"SCMP_ACT_ERRNO"}\n');
    for (let i = 0; i < 200; i++) {
      const path = join(dir, `${i}.json`);
      // Two shims' worth of memory: neither has seen the file.
      await Promise.all([new CheckedFiles().ensure(path, bytes, join(dir, '.tmp'), 0o644), new CheckedFiles().ensure(path, bytes, join(dir, '.tmp'), 0o644)]);
      assert.deepEqual(readFileSync(path), bytes);
    }
  });

  // A file with the right bytes that someone else can still change after its check (its owner,
  // anyone with write access, or whoever holds its other name) is replaced by a new one of this
  // process's own: the runtime reads it by path after the check (docs/shim.md#localhost-bases-and-effective-files).
  const ownUid = process.geteuid?.() ?? 0;
  const replaced = async (plant: (path: string) => void) => {
    const dir = tempRoot();
    const path = join(dir, 'e.json');
    const bytes = Buffer.from('{"defaultAction":"SCMP_ACT_ERRNO"}\n');
    writeFileSync(path, bytes, { mode: 0o644 });
    plant(path);
    const before = lstatSync(path);
    await new CheckedFiles().ensure(path, bytes, join(dir, '.tmp'), 0o644);
    const after = lstatSync(path);
    assert.notEqual(after.ino, before.ino, 'a new file in its place');
    assert.deepEqual([after.uid, after.mode & 0o777, after.nlink], [ownUid, 0o644, 1]);
    assert.deepEqual(readFileSync(path), bytes);
  };

  it('a file with the right bytes that group or others may write is replaced', async () => {
    await replaced((path) => chmodSync(path, 0o666));
  });

  it('a file with the right bytes and a second name is replaced', async () => {
    await replaced((path) => linkSync(path, `${path}.other-name`));
  });

  it("a file with the right bytes another user owns is replaced", { skip: ownUid !== 0 && 'needs root to give a file away' }, async () => {
    await replaced((path) => chownSync(path, 65534, 65534));
  });
});
