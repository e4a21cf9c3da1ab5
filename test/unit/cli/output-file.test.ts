// Files a command writes where its user says (src/cli/output-file.ts): replaced whole, a link at
// the path replaced rather than followed, and a path that is no regular file refused.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { lstatSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { writeOutputFile } from '../../../src/cli/output-file.js';
import { spokeError } from '../../helpers/assert.js';

describe('writeOutputFile', () => {
  let dir: string;
  beforeEach(() => (dir = mkdtempSync(join(tmpdir(), 'spoke-output-'))));
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('replaces a link to a regular file, leaving that file as it was', async () => {
    writeFileSync(join(dir, 'victim'), 'important');
    symlinkSync(join(dir, 'victim'), join(dir, 'out.json'));
    await writeOutputFile(join(dir, 'out.json'), '{}');
    assert.equal(readFileSync(join(dir, 'victim'), 'utf8'), 'important');
    assert.ok(lstatSync(join(dir, 'out.json')).isFile());
  });

  it('refuses a path that is, or links to, no regular file (as /dev/stdout links to a pipe or terminal), changing nothing', async () => {
    // Made in the test's own directory: replaced by a rename, /dev/stdout itself would be gone.
    symlinkSync('/dev/null', join(dir, 'device-link'));
    execFileSync('mkfifo', [join(dir, 'fifo')]);
    symlinkSync(join(dir, 'fifo'), join(dir, 'fifo-link'));
    for (const path of [join(dir, 'device-link'), join(dir, 'fifo'), join(dir, 'fifo-link'), dir]) {
      await assert.rejects(writeOutputFile(path, '{}'), spokeError({ code: 'InvalidArgument', reason: 'USAGE' }), path);
    }
    assert.ok(lstatSync(join(dir, 'device-link')).isSymbolicLink());
    assert.ok(lstatSync(join(dir, 'fifo-link')).isSymbolicLink());
    assert.ok(lstatSync(join(dir, 'fifo')).isFIFO());
  });
});
