// test-group: kernel-log (reads or changes the kernel log and its printk rate limit: runs alone, test/run.sh)
// `spoke record` under each recording backend this machine supports, against real containerd +
// runc: workloads whose calls are made by forked children and grandchildren, by workers that
// live a few milliseconds, and two recordings side by side. The eBPF backend must record them
// all; the audit backend must record them correctly or refuse clearly (INCOMPLETE_RECORDING),
// never write a profile that silently lacks calls.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { recordOnce, type RecordOnceResult } from '../../src/cli/commands/record.js';
import { isSpokeError } from '../../src/core/errors.js';
import { buildRecordedProfile } from '../../src/profiles/seccomp/index.js';
import { ensureTracefs } from '../../src/recorder/bpf.js';
import { BUSYBOX_IMAGE } from '../helpers/busybox-image.js';
import { spoke } from '../helpers/cli.js';
import { startContainerd, type Containerd } from '../helpers/containerd.js';
import { NESTED, recordingBackends, recordingSkipReason, runUnderProfile } from '../helpers/recording.js';

const skip = recordingSkipReason();

// Workers forked in a loop, each living a few milliseconds; only they call mkdir and rmdir.
const WORKERS = ['sh', '-c', 'i=0; while [ $i -lt 12 ]; do (mkdir /tmp/w$i && usleep 2000 && rmdir /tmp/w$i) & i=$((i+1)); done; wait; echo done'];
// The busy loop of forked children of the side-by-side test, and its quiet neighbour.
const BUSY = ['sh', '-c', 'i=0; while [ $i -lt 300 ]; do (mkdir /tmp/b$i; rmdir /tmp/b$i); i=$((i+1)); done'];
const QUIET = ['sh', '-c', 'sleep 1; cat /etc/passwd'];


const incomplete = (e: unknown) => isSpokeError(e) && e.reason === 'INCOMPLETE_RECORDING';

for (const { backend, skip: unavailable } of recordingBackends()) {
  describe(`spoke record --backend ${backend}: every process of the container`, { skip: skip ?? unavailable }, () => {
    let containerd: Containerd;
    let dir: string;

    before(async () => {
      containerd = await startContainerd();
      dir = mkdtempSync(join(tmpdir(), `spoke-rec-${backend}-`));
    });
    after(async () => {
      await containerd?.stop();
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    /** The recording, or undefined when the audit backend refused it as incomplete. */
    const record = async (command: string[]): Promise<RecordOnceResult | undefined> => {
      try {
        return await recordOnce({ socket: containerd.socket, image: BUSYBOX_IMAGE, command, handler: '', seccompRoot: join(dir, 'seccomp'), timeoutMs: 60_000, backend });
      } catch (e) {
        if (backend === 'audit' && incomplete(e)) return undefined;
        throw e;
      }
    };

    test('child and grandchild calls are recorded; the profile runs the command three times and denies rmdir', async (t) => {
      const r = await record(NESTED);
      if (!r) return t.diagnostic('audit backend refused: forked processes it could not attribute (the clear refusal)');
      assert.equal(r.backend, backend);
      assert.equal(r.exitCode, 0);
      for (const s of ['mkdir', 'chmod']) assert.ok(r.syscalls.has(s), `${s} in ${[...r.syscalls].join(' ')}`);
      assert.ok(!r.syscalls.has('rmdir'));
      mkdirSync(join(dir, 'seccomp'), { recursive: true });
      const profilePath = join(dir, 'seccomp', `nested-${backend}.json`);
      writeFileSync(profilePath, buildRecordedProfile(r.syscalls, 'runc', { ia32: r.ia32 }).bytes);
      for (let i = 0; i < 3; i++) {
        const run = await runUnderProfile(containerd.socket, dir, NESTED, profilePath);
        assert.equal(run.exitCode, 0, run.log);
        assert.match(run.log, /made/);
      }
      const denied = await runUnderProfile(containerd.socket, dir, ['sh', '-c', 'mkdir /tmp/y && rmdir /tmp/y'], profilePath);
      assert.notEqual(denied.exitCode, 0);
      assert.match(denied.log, /rmdir: '\/tmp\/y': Operation not permitted/);
    });

    test('workers that live a few milliseconds are recorded', async (t) => {
      const r = await record(WORKERS);
      if (!r) return t.diagnostic('audit backend refused: forked workers it could not attribute (the clear refusal)');
      assert.equal(r.exitCode, 0);
      for (const s of ['mkdir', 'rmdir', 'nanosleep']) assert.ok(r.syscalls.has(s) || (s === 'nanosleep' && r.syscalls.has('clock_nanosleep')), `${s} in ${[...r.syscalls].join(' ')}`);
    });

    test('two recordings side by side, one a busy loop of forked children: their calls do not mix', async () => {
      const args = (name: string, command: string[]) => ['record', '--backend', backend, '--upstream', containerd.socket, '--image', BUSYBOX_IMAGE, '--seccomp-root', join(dir, 'seccomp'), '--output', join(dir, `${name}.json`), '--json', '--', ...command];
      const [busy, quiet] = await Promise.all([spoke(args('busy', BUSY)), spoke(args('quiet', QUIET))]);
      const calls = (r: { code: number; stdout: string; stderr: string }): Set<string> | undefined => {
        if (r.code !== 0) {
          assert.equal(backend, 'audit', r.stderr);
          assert.match(r.stderr, /recording incomplete: .*--backend bpf/);
          return undefined;
        }
        return new Set((JSON.parse(r.stdout) as { syscalls: string[] }).syscalls);
      };
      const b = calls(busy);
      const q = calls(quiet);
      if (b) for (const s of ['mkdir', 'rmdir']) assert.ok(b.has(s), `busy: ${s}`);
      if (b) assert.ok(!b.has('sendfile'), 'the quiet container\'s cat is not in the busy recording');
      if (q) assert.ok(q.has('sendfile'), 'quiet: cat');
      if (q) for (const s of ['mkdir', 'rmdir']) assert.ok(!q.has(s), `the busy container's ${s} is not in the quiet recording`);
      if (backend === 'bpf') assert.ok(b && q, 'the eBPF backend records both');
    });
  });
}

describe('the audit backend never drops a forked child silently', { skip: skip ?? (existsSync('/dev/kmsg') ? undefined : 'no /dev/kmsg') }, () => {
  let containerd: Containerd;
  let dir: string;
  before(async () => {
    containerd = await startContainerd();
    dir = mkdtempSync(join(tmpdir(), 'spoke-rec-audit-'));
  });
  after(async () => {
    await containerd?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('a recording that misses a short-lived child fails and names the eBPF backend; --allow-incomplete warns and writes', async () => {
    const base = ['record', '--backend', 'audit', '--upstream', containerd.socket, '--image', BUSYBOX_IMAGE, '--seccomp-root', join(dir, 'seccomp')];
    // Many one-call children: some exit before the reader resolves them.
    const many = ['sh', '-c', 'i=0; while [ $i -lt 100 ]; do (mkdir /tmp/m$i); i=$((i+1)); done'];
    const refused = await spoke([...base, '--output', join(dir, 'refused.json'), '--', ...many]);
    assert.equal(refused.code, 1, refused.stderr);
    assert.match(refused.stderr, /^FailedPrecondition: recording incomplete: .*--backend bpf.*--allow-incomplete/m);
    assert.equal(existsSync(join(dir, 'refused.json')), false);
    const allowed = await spoke([...base, '--allow-incomplete', '--output', join(dir, 'allowed.json'), '--', ...many]);
    assert.equal(allowed.code, 0, allowed.stderr);
    assert.match(allowed.stderr, /^warning: recording incomplete: /m);
    assert.ok(existsSync(join(dir, 'allowed.json')));
  });
});

describe('tracefs', { skip: process.getuid?.() === 0 ? undefined : 'mounting needs root' }, () => {
  test('mounted where it is missing (tracepoints are looked up there), left alone where it is there', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'spoke-tracefs-'));
    const mountPoint = join(dir, 'tracing');
    mkdirSync(mountPoint);
    try {
      assert.equal(await ensureTracefs(mountPoint), true);
      assert.ok(existsSync(join(mountPoint, 'events', 'raw_syscalls', 'sys_enter')));
      assert.equal(await ensureTracefs(mountPoint), false, 'already mounted: nothing to do');
    } finally {
      execFileSync('umount', [mountPoint]);
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
