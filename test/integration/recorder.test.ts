// Recording for real (issue 8): containerd + runc run a workload under the logging profile
// (SCMP_ACT_LOG), the kernel writes type=1326 audit records, `spoke record` turns them into a
// profile, and that profile — applied on later runs — lets the workload work and denies a call
// it never made. Needs root, containerd, runc and busybox.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { recordOnce, run as recordCommand } from '../../src/cli/commands/record.js';
import { decodeSeccomp } from '../../src/profiles/seccomp/index.js';
import { buildRecordedProfile, writeLoggingProfile } from '../../src/recorder/profile.js';
import { BUSYBOX_IMAGE } from '../helpers/busybox-image.js';
import { startContainerd, type Containerd } from '../helpers/containerd.js';
import { CriClient, hostNetworkPod } from '../helpers/cri-client.js';
import { createRuncSandbox, findExecutable, runcUnavailableReason, type RuncSandbox } from '../helpers/runc.js';
import { requireTool } from '../helpers/skip.js';

/** Tools test/setup.sh installs (a failure on CI when missing). */
function missingTool(): string | undefined {
  const r = runcUnavailableReason();
  if (r) return r;
  if (!findExecutable('containerd', ['/usr/bin/containerd']) || !findExecutable('ctr', ['/usr/bin/ctr'])) return 'containerd not installed';
  return undefined;
}
/** Kernel features: these stay skips everywhere. */
function missingKernelFeature(): string | undefined {
  if (!existsSync('/dev/kmsg')) return 'no /dev/kmsg';
  if (!readFileSync('/proc/sys/kernel/seccomp/actions_logged', 'utf8').includes('log')) return 'kernel does not log SCMP_ACT_LOG';
  return undefined;
}
const skip = requireTool(missingTool()) || missingKernelFeature();
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
    const out = join(dir, 'cat.json');
    const code = await recordCommand(['--upstream', containerd.socket, '--image', BUSYBOX_IMAGE, '--seccomp-root', join(dir, 'seccomp'), '--output', out, '--', 'cat', '/etc/passwd']);
    assert.equal(code, 0);
    recorded = readFileSync(out);
    const p = decodeSeccomp(recorded);
    assert.equal(p.defaultAction, 'SCMP_ACT_ERRNO');
    const names = p.syscalls![0]!.names;
    for (const s of ['openat', 'read', 'sendfile', 'execve', 'exit_group', 'futex', 'capset']) assert.ok(names.includes(s), `${s} in ${names.join(' ')}`);
    assert.ok(!names.includes('mkdir') && !names.includes('mkdirat'));
    // printk back as it was, nothing left running
    assert.equal(readFileSync(PRINTK, 'utf8'), printkBefore);
    assert.equal(existsSync('/run/spoke/printk-ratelimit.json'), false);
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
    assert.ok(buildRecordedProfile(r.syscalls, 'runc').bytes.equals(recorded));
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
    const profilePath = join(dir, 'seccomp', 'recorded.json');
    const { writeFileSync } = await import('node:fs');
    writeFileSync(profilePath, recorded);
    const cri = new CriClient(containerd.socket);
    try {
      for (let i = 0; i < 3; i++) {
        const logDir = mkdtempSync(join(dir, 'logs-'));
        const podConfig = hostNetworkPod(`rec-replay-${i}`, logDir);
        const podId = (await cri.rt('RunPodSandbox', { config: podConfig })).pod_sandbox_id as string;
        const id = (
          await cri.rt('CreateContainer', {
            pod_sandbox_id: podId,
            sandbox_config: podConfig,
            config: {
              metadata: { name: 'c', attempt: 0 },
              image: { image: BUSYBOX_IMAGE },
              command: ['cat', '/etc/passwd'],
              log_path: 'c.log',
              linux: { security_context: { seccomp: { profile_type: 'Localhost', localhost_ref: profilePath } } },
            },
          })
        ).container_id as string;
        await cri.rt('StartContainer', { container_id: id });
        let st: { state: string; exit_code: number } | undefined;
        for (let t = 0; t < 200; t++) {
          st = (await cri.rt('ContainerStatus', { container_id: id })).status as { state: string; exit_code: number };
          if (st.state === 'CONTAINER_EXITED') break;
          await new Promise((r) => setTimeout(r, 50));
        }
        assert.equal(st?.state, 'CONTAINER_EXITED');
        assert.equal(st?.exit_code, 0, readFileSync(join(logDir, 'c.log'), 'utf8'));
        assert.match(readFileSync(join(logDir, 'c.log'), 'utf8'), /root:x:0:0/);
        await cri.rt('StopPodSandbox', { pod_sandbox_id: podId });
        await cri.rt('RemovePodSandbox', { pod_sandbox_id: podId });
      }
    } finally {
      cri.close();
    }
  });

  test('the logging profile lets everything through and the kernel logs it (records reach /dev/kmsg)', () => {
    const path = writeLoggingProfile(join(dir, 'seccomp'));
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
    assert.throws(() => buildRecordedProfile(new Set(), 'runc'), /empty profile/);
  });
});
