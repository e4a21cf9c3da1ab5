// Files written by content and handed out by path (src/store/checked-files.ts): trusted by
// their stamp once read right, checked again when changed, and never refused because another
// writer placed the same bytes at the same moment.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
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
});
