// The shim's check of the files it trusts (src/config/trusted-file.ts): refused when any user
// could have written them, read with a warning for a weaker doubt.

import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { checkTrustedFile } from '../../../src/config/trusted-file.js';
import { spokeError } from '../../helpers/assert.js';

describe('checkTrustedFile', () => {
  let dir: string;
  let warnings: string[];
  const check = (path: string, secret = false) => checkTrustedFile(path, 'node policy', (m) => warnings.push(m), { secret });
  const unsafe = spokeError({ code: 'FailedPrecondition', reason: 'FILE_UNSAFE' });
  beforeEach(() => {
    // Under /tmp (world-writable, sticky): a sticky directory on the path is no doubt.
    dir = mkdtempSync(join(tmpdir(), 'spoke-trusted-'));
    chmodSync(dir, 0o755);
    warnings = [];
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('reads a file only its owner may write, in directories only their owners may write, without a word', () => {
    const file = join(dir, 'policy.yaml');
    writeFileSync(file, 'x', { mode: 0o644 });
    chmodSync(file, 0o644);
    check(file);
    assert.deepEqual(warnings, []);
  });

  it('refuses a world-writable file, or one reached through a world-writable directory or link, unless that directory is sticky', () => {
    const file = join(dir, 'policy.yaml');
    writeFileSync(file, 'x');
    chmodSync(file, 0o666);
    assert.throws(() => check(file), unsafe);
    chmodSync(file, 0o644);
    const open = join(dir, 'open');
    mkdirSync(open);
    chmodSync(open, 0o777);
    writeFileSync(join(open, 'policy.yaml'), 'x');
    assert.throws(() => check(join(open, 'policy.yaml')), unsafe);
    // Through a link elsewhere: judged by the real path.
    symlinkSync(join(open, 'policy.yaml'), join(dir, 'link.yaml'));
    assert.throws(() => check(join(dir, 'link.yaml')), unsafe);
    chmodSync(open, 0o1777);
    check(join(open, 'policy.yaml'));
    assert.deepEqual(warnings, []);
  });

  it('warns of a group-writable file or directory, and of a secret others may read', () => {
    const file = join(dir, 'key');
    writeFileSync(file, 'x');
    chmodSync(file, 0o664);
    check(file);
    assert.equal(warnings.length, 1);
    assert.match(warnings[0]!, /writable by its group \(mode 0664\)/);
    chmodSync(file, 0o644);
    warnings = [];
    check(file, true);
    assert.match(warnings.join('\n'), /readable by its group or others \(mode 0644\): chmod 600/);
    chmodSync(file, 0o600);
    chmodSync(dir, 0o775);
    warnings = [];
    check(file, true);
    assert.equal(warnings.length, 1);
    assert.match(warnings[0]!, /the directory .* is writable by its group \(mode 0775\)/);
  });

  it('leaves a path that does not resolve to its reader', () => {
    check(join(dir, 'missing.yaml'));
    assert.deepEqual(warnings, []);
  });
});
