// The directory the shim writes its merge results to, made or checked at start
// (src/cri/effective-dir.ts): the runtime reads those files by path, so nobody else may write there.
import assert from 'node:assert/strict';
import { chmodSync, chownSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { prepareEffectiveDir } from '../../../src/cri/effective-dir.js';
import { spokeError } from '../../helpers/assert.js';

describe('prepareEffectiveDir', () => {
  const dirs: string[] = [];
  after(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });
  const fresh = () => {
    const d = mkdtempSync(join(tmpdir(), 'spoke-effdir-'));
    dirs.push(d);
    return d;
  };
  const logs: { level: string; msg: string }[] = [];
  const logger = { log: (level: string, msg: string) => void logs.push({ level, msg }) };

  it('makes the directory for this user only, and names it as configured', async () => {
    const root = join(fresh(), 'seccomp');
    mkdirSync(root);
    assert.deepEqual(await prepareEffectiveDir(root, logger), [join(root, 'spoke')]);
    assert.equal(lstatSync(join(root, 'spoke')).mode & 0o777, 0o700);
  });

  it('takes write access from group and others on a directory found writable by them, and says so', async () => {
    const root = fresh();
    mkdirSync(join(root, 'spoke'));
    chmodSync(join(root, 'spoke'), 0o777);
    logs.length = 0;
    await prepareEffectiveDir(root, logger);
    assert.equal(lstatSync(join(root, 'spoke')).mode & 0o022, 0);
    assert.ok(logs.some((l) => l.level === 'warn'));
  });

  it('a temp directory inside that others could write, or a link, is renamed aside and a new one of its own made: its files become effective profiles by rename', async () => {
    const ownUid = process.geteuid?.() ?? 0;
    const cases: [string, (tmp: string) => void][] = [
      ['writable by others', (tmp) => (mkdirSync(tmp), chmodSync(tmp, 0o777))],
      ['a link', (tmp) => symlinkSync(fresh(), tmp)],
    ];
    if (ownUid === 0) cases.push(["another user's", (tmp) => (mkdirSync(tmp, { mode: 0o700 }), chownSync(tmp, 65534, 65534))]);
    for (const [what, plant] of cases) {
      const root = fresh();
      mkdirSync(join(root, 'spoke'), { mode: 0o700 });
      const tmp = join(root, 'spoke', '.tmp');
      plant(tmp);
      if (!lstatSync(tmp).isSymbolicLink()) writeFileSync(join(tmp, '.tmp-1-planted'), '{}');
      logs.length = 0;
      await prepareEffectiveDir(root, logger);
      const st = lstatSync(tmp);
      assert.ok(st.isDirectory(), what);
      assert.deepEqual([st.uid, st.mode & 0o777], [ownUid, 0o700], what);
      assert.equal(existsSync(join(tmp, '.tmp-1-planted')), false, what);
      assert.ok(logs.some((l) => l.level === 'warn'), what);
      // Renamed aside, never walked: a removal as root would follow what its owner swaps in.
      const aside = readdirSync(join(root, 'spoke')).filter((n) => n.startsWith('.tmp-foreign-'));
      assert.equal(aside.length, 1, what);
    }
  });

  it('refuses a directory that is a link, or another user\'s', async () => {
    const root = fresh();
    const elsewhere = join(fresh(), 'target');
    mkdirSync(elsewhere);
    symlinkSync(elsewhere, join(root, 'spoke'));
    await assert.rejects(prepareEffectiveDir(root, logger), spokeError({ code: 'FailedPrecondition', reason: 'STATE_CORRUPT' }));
    if (process.getuid?.() === 0) {
      const other = fresh();
      mkdirSync(join(other, 'spoke'));
      chownSync(join(other, 'spoke'), 65534, 65534);
      await assert.rejects(prepareEffectiveDir(other, logger), spokeError({ code: 'FailedPrecondition', reason: 'STATE_CORRUPT' }));
    }
  });

  it('a root reached through a link: the directory by both names, as a runtime may be given either', async () => {
    const real = join(fresh(), 'real-seccomp');
    mkdirSync(real);
    const link = join(fresh(), 'seccomp');
    symlinkSync(real, link);
    assert.deepEqual(await prepareEffectiveDir(link, logger), [join(link, 'spoke'), join(real, 'spoke')]);
  });
});
