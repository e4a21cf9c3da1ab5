// Which audit source a recording reads (src/recorder/source.ts).

import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { auditdRunning } from '../../../src/recorder/source.js';

test("an auditd is one whose real uid is root: any user can name a process 'auditd', a setuid-root one too", () => {
  const proc = mkdtempSync(join(tmpdir(), 'spoke-proc-'));
  try {
    // /proc/<pid>/status `Uid:` is real, effective, saved and filesystem uid.
    const task = (pid: number, comm: string, uids: string) => {
      mkdirSync(join(proc, String(pid)));
      writeFileSync(join(proc, String(pid), 'comm'), `${comm}\n`);
      writeFileSync(join(proc, String(pid), 'status'), `Name:\t${comm}\nUmask:\t0022\nState:\tS (sleeping)\nUid:\t${uids}\nGid:\t0\t0\t0\t0\n`);
    };
    task(100, 'sshd', '0\t0\t0\t0');
    task(200, 'auditd', '1500\t1500\t1500\t1500');
    task(250, 'auditd', '65534\t0\t0\t0');
    assert.equal(auditdRunning(proc), false);
    task(300, 'auditd', '0\t0\t0\t0');
    assert.equal(auditdRunning(proc), true);
  } finally {
    rmSync(proc, { recursive: true, force: true });
  }
});
