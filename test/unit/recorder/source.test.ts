// Which audit source a recording reads (src/recorder/source.ts).

import assert from 'node:assert/strict';
import { chownSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { auditdRunning } from '../../../src/recorder/source.js';

test("an auditd is one run by root: any user can name a process 'auditd'", { skip: process.getuid?.() === 0 ? undefined : 'chown needs root' }, () => {
  const proc = mkdtempSync(join(tmpdir(), 'spoke-proc-'));
  try {
    const task = (pid: number, comm: string, uid: number) => {
      mkdirSync(join(proc, String(pid)));
      writeFileSync(join(proc, String(pid), 'comm'), `${comm}\n`);
      chownSync(join(proc, String(pid)), uid, uid);
    };
    task(100, 'sshd', 0);
    task(200, 'auditd', 1500);
    assert.equal(auditdRunning(proc), false);
    task(300, 'auditd', 0);
    assert.equal(auditdRunning(proc), true);
  } finally {
    rmSync(proc, { recursive: true, force: true });
  }
});
