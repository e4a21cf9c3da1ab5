// test-group: kernel-log (reads or changes the kernel log and its printk rate limit: runs alone, test/run.sh)
// Recording for real (docs/recording.md): containerd + runc run a workload under the logging profile
// (SCMP_ACT_LOG), the kernel writes type=1326 audit records, `spoke record` turns them into a
// profile, and that profile — applied on later runs — lets the workload work and denies a call
// it never made. Needs root, containerd, runc and busybox.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { recordOnce, run as recordCommand } from '../../src/cli/commands/record.js';
import { decodeSeccomp } from '../../src/profiles/seccomp/index.js';
import { buildRecordedProfile } from '../../src/recorder/profile.js';
import { installLoggingProfile } from '../../src/cri/recording.js';
import { BUSYBOX_IMAGE } from '../helpers/busybox-image.js';
import { startContainerd, type Containerd } from '../helpers/containerd.js';
import { CriClient } from '../helpers/cri-client.js';
import { recordingSkipReason, runUnderProfile } from '../helpers/recording.js';
import { createRuncSandbox, type RuncSandbox } from '../helpers/runc.js';

/** Tools test/setup.sh installs (a failure on CI when missing). */
// Kernel features stay skips everywhere; a missing tool fails on CI (recordingSkipReason).
const skip = recordingSkipReason() ?? (existsSync('/dev/kmsg') ? undefined : 'no /dev/kmsg');
const PRINTK = '/proc/sys/kernel/printk_ratelimit';

describe('spoke record under containerd + runc, real kernel audit records', { skip }, () => {
  let containerd: Containerd;
  let sandbox: RuncSandbox;
  let dir: string;
  let printkBefore: string;
  let recorded: Buffer;

  before(async () => {
    printkBefore = readFileSync(PRINTK, 'utf8');
    containerd = await startContainerd();
    sandbox = createRuncSandbox();
    dir = mkdtempSync(join(tmpdir(), 'spoke-rec-it-'));
  });
  after(async () => {
    sandbox?.cleanup();
    await containerd?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('recording `cat /etc/passwd` gives a profile with its calls, restores printk, removes the pod', async () => {
    // --output names a link to another file (left in a shared directory by another user): the
    // profile replaces the link, as a rename does, and the file it pointed to is untouched.
    const out = join(dir, 'cat.json');
    const victim = join(dir, 'victim.conf');
    writeFileSync(victim, 'important=1\n');
    symlinkSync(victim, out);
    const code = await recordCommand(['--upstream', containerd.socket, '--image', BUSYBOX_IMAGE, '--seccomp-root', join(dir, 'seccomp'), '--output', out, '--', 'cat', '/etc/passwd']);
    assert.equal(code, 0);
    assert.equal(readFileSync(victim, 'utf8'), 'important=1\n');
    assert.ok(lstatSync(out).isFile(), 'the link was replaced by the profile');
    recorded = readFileSync(out);
    const p = decodeSeccomp(recorded);
    assert.equal(p.defaultAction, 'SCMP_ACT_ERRNO');
    const names = p.syscalls![0]!.names;
    for (const s of ['openat', 'read', 'sendfile', 'execve', 'exit_group', 'futex', 'capset']) assert.ok(names.includes(s), `${s} in ${names.join(' ')}`);
    assert.ok(!names.includes('mkdir') && !names.includes('mkdirat'));
    // printk back as it was, nothing left running
    assert.equal(readFileSync(PRINTK, 'utf8'), printkBefore);
    // The saved values stay for the next recorder, and they are the ones in force again.
    assert.equal((JSON.parse(readFileSync('/run/spoke/printk-ratelimit.json', 'utf8')) as { ratelimit: string }).ratelimit, printkBefore.trim());
    const cri = new CriClient(containerd.socket);
    try {
      const pods = (await cri.rt('ListPodSandbox', {})).items as unknown[];
      assert.equal(pods.length, 0);
    } finally {
      cri.close();
    }
  });

  test('recording again gives the same bytes (deterministic)', async () => {
    const r = await recordOnce({ socket: containerd.socket, image: BUSYBOX_IMAGE, command: ['cat', '/etc/passwd'], handler: '', seccompRoot: join(dir, 'seccomp'), timeoutMs: 30_000 });
    assert.ok(buildRecordedProfile(r.syscalls, 'runc', { ia32: r.ia32 }).bytes.equals(recorded));
  });

  test('the recorded profile under runc: the workload works, mkdir (never recorded) fails with EPERM', async () => {
    const ok = await sandbox.run({ args: ['/bin/cat', '/etc/passwd'], seccompJson: recorded });
    assert.equal(ok.status, 0, ok.stderr);
    assert.match(ok.stdout, /^root:x:0:0/);
    const denied = await sandbox.run({ args: ['/bin/mkdir', '/tmp/d'], seccompJson: recorded });
    assert.notEqual(denied.status, 0);
    assert.match(denied.stderr, /mkdir: can't create directory '\/tmp\/d': Operation not permitted/);
  });

  test('the recorded profile as a Localhost profile through CRI: the workload starts every time', async () => {
    mkdirSync(join(dir, 'seccomp'), { recursive: true });
    const profilePath = join(dir, 'seccomp', 'recorded.json');
    writeFileSync(profilePath, recorded);
    for (let i = 0; i < 3; i++) {
      const run = await runUnderProfile(containerd.socket, dir, ['cat', '/etc/passwd'], profilePath);
      assert.equal(run.exitCode, 0, run.log);
      assert.match(run.log, /root:x:0:0/);
    }
  });

  test('the logging profile lets everything through and the kernel logs it (records reach /dev/kmsg)', async () => {
    const path = await installLoggingProfile(join(dir, 'recording'), join(dir, 'seccomp'));
    assert.equal(decodeSeccomp(readFileSync(path)).defaultAction, 'SCMP_ACT_LOG');
    // dmesg shows the records of the first test's container (seccomp type 1326, LOG code).
    const dmesg = spawnSync('dmesg', [], { encoding: 'utf8', maxBuffer: 1 << 28 }).stdout;
    assert.match(dmesg, /audit: type=1326 audit\([^)]+\): .* code=0x7ffc0000/);
  });

  test('a workload that cannot start leaves no profile: empty recording is an error', async () => {
    await assert.rejects(
      recordOnce({ socket: containerd.socket, image: 'docker.io/e2e/absent:1', command: ['true'], handler: '', seccompRoot: join(dir, 'seccomp'), timeoutMs: 10_000 }),
      /not present/,
    );
    assert.throws(() => buildRecordedProfile(new Set(), 'runc', { ia32: false }), /empty profile/);
  });
});
