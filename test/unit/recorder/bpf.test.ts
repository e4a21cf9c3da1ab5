import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { isSpokeError } from '../../../src/core/errors.js';
import { chooseBackend } from '../../../src/recorder/backend.js';
import { bpfSupport, namespaceOf } from '../../../src/recorder/bpf.js';
import { bpfProgram, callsOfContainer, namesOf, parseBpfDump, sameNamespace } from '../../../src/recorder/bpf-program.js';

const reason = (e: unknown) => (isSpokeError(e) ? e.reason : undefined);

describe('bpfProgram', () => {
  test('counts filtered calls of the given pods, keyed by IPC and mount namespace, id, ia32 and number', () => {
    const p = bpfProgram({ ipcNamespaces: [4026532174, 4026532180], readyPid: 321, nsId: 'ns.ns_id' });
    assert.match(p, /^tracepoint:raw_syscalls:sys_enter \{$/m);
    assert.match(p, /if \(curtask->seccomp\.mode == 2\)/);
    assert.match(p, /if \(\$ipc == 4026532174 \|\| \$ipc == 4026532180\)/);
    assert.match(p, /\$id = curtask->nsproxy->mnt_ns->ns\.ns_id;/);
    assert.match(p, /@c\[\$ipc, \$mnt, \$id, curtask->thread_info\.status & 2, args->id\] = count\(\);/);
    assert.doesNotMatch(p, /@f/, 'first pids only where every pod is counted');
    assert.match(p, /if \(pid == 321\) \{\n {4}if \(@r == 0\)/);
    // spoke's own kill(0x3fffffff, 0) ends the program from inside the kernel.
    assert.match(p, /if \(args->id == 62 && args->args\[0\] == 1073741823\) \{ exit\(\); \}/);
    assert.doesNotMatch(p, /interval:/);
  });

  test('the daemon form counts every namespace and dumps on an interval; no id field gives 0', () => {
    const p = bpfProgram({ readyPid: 9, nsId: undefined, dumpEveryMs: 500 });
    assert.match(p, /if \(1\) \{/);
    assert.match(p, /if \(@f\[\$ipc, \$mnt, \$id\] == 0\) \{ @f\[\$ipc, \$mnt, \$id\] = pid; \}/);
    assert.match(p, /\$id = 0;/);
    assert.match(p, /^interval:ms:500 \{/m);
  });

  test('only safe positive integers are interpolated', () => {
    for (const bad of [Number.NaN, -1, 0, 1.5, 2 ** 60, 0x1_0000_0000]) {
      assert.throws(() => bpfProgram({ ipcNamespaces: [bad], readyPid: 1, nsId: undefined }), (e) => isSpokeError(e) && e.code === 'InvalidArgument' && e.reason === 'OPTION_INVALID', String(bad));
    }
    assert.throws(() => bpfProgram({ readyPid: -5, nsId: undefined }), (e) => isSpokeError(e) && e.code === 'InvalidArgument' && e.reason === 'OPTION_INVALID');
    assert.throws(() => bpfProgram({ readyPid: 1, nsId: undefined, dumpEveryMs: 1e9 }), (e) => isSpokeError(e) && e.code === 'InvalidArgument');
  });
});

describe('parseBpfDump', () => {
  const LINES = ['', '@c[4026532001, 4026532174, 4165, 0, 83]: 1', '@c[4026532001, 4026532174, 4165, 2, 20]: 3', '@c[4026532001, 4026532174, 4170, 0, 84]: 2', '@c[4026532001, 4026532175, 12, 0, -1]: 1', '', '@f[4026532001, 4026532174, 4165]: 2211', ''];

  test('reads counts and first pids', () => {
    const d = parseBpfDump(LINES);
    assert.deepEqual(d.counts[0], { ipc: 4026532001, mnt: 4026532174, mntId: '4165', ia32: false, nr: 83, count: 1 });
    assert.equal(d.counts[1]!.ia32, true);
    assert.equal(d.counts[3]!.nr, -1);
    assert.deepEqual(d.firsts, [{ ipc: 4026532001, mnt: 4026532174, mntId: '4165', pid: 2211 }]);
    // A reused mount namespace inode is another namespace: the id tells them apart.
    assert.ok(sameNamespace(d.counts[0]!, d.firsts[0]!));
    assert.ok(!sameNamespace(d.counts[2]!, d.firsts[0]!));
  });

  const bad: [string, string][] = [
    ['other map', '@x[1, 2, 3, 0, 3]: 1'],
    ['text', 'Attaching 1 probe...'],
    ['trailing text', '@c[1, 4026532174, 4165, 0, 83]: 1 x'],
    ['leading space', ' @c[1, 4026532174, 4165, 0, 83]: 1'],
    ['compat not 0/2', '@c[1, 4026532174, 4165, 1, 83]: 1'],
    ['huge inode', '@c[1, 40265321740, 4165, 0, 83]: 1'],
    ['old key shape', '@c[4026532174, 4165, 0, 83]: 1'],
    ['over-long', `@c[1, 4026532174, 4165, 0, 83]: 1${'0'.repeat(200)}`],
  ];
  for (const [what, line] of bad) {
    test(`rejects ${what}`, () => assert.throws(() => parseBpfDump([line]), (e) => reason(e) === 'INCOMPLETE_RECORDING'));
  }
});

describe('namesOf', () => {
  test('native numbers from the x86_64 table, ia32 from the i386 table, the rest unnamed', () => {
    const { names, unnamed } = namesOf([
      { ipc: 1, mnt: 1, mntId: '1', ia32: false, nr: 83, count: 1 },
      { ipc: 1, mnt: 1, mntId: '1', ia32: true, nr: 20, count: 1 },
      { ipc: 1, mnt: 1, mntId: '1', ia32: false, nr: 0x40000000 + 59, count: 1 },
      { ipc: 1, mnt: 1, mntId: '1', ia32: false, nr: -1, count: 1 },
    ]);
    assert.deepEqual([...names].sort(), ['getpid', 'mkdir']);
    assert.deepEqual(unnamed, ['c000003e:-1', `c000003e:${0x40000000 + 59}`]);
  });

  test('says whether a named call was a 32-bit (ia32) one: only then does the profile open the i386 ABI', () => {
    const count = (ia32: boolean, nr: number) => ({ ipc: 1, mnt: 1, mntId: '1', ia32, nr, count: 1 });
    assert.equal(namesOf([count(false, 83), count(false, 0)]).ia32, false);
    assert.equal(namesOf([count(false, 83), count(true, 20)]).ia32, true);
    assert.equal(namesOf([count(false, 83), count(true, 99_999)]).ia32, false, 'an unnamed one fails the recording instead');
  });
});

describe('namespaceOf', () => {
  test('reads the namespace inode of a live process; a gone one is NOT_FOUND, a bad pid keeps OPTION_INVALID', () => {
    assert.ok(namespaceOf(process.pid, 'ipc') > 0);
    const dir = mkdtempSync(join(tmpdir(), 'spoke-ns-'));
    assert.throws(() => namespaceOf(4242, 'mnt', dir), (e) => isSpokeError(e) && e.code === 'NotFound' && e.reason === 'NOT_FOUND');
    assert.throws(() => namespaceOf(-1, 'mnt', dir), (e) => reason(e) === 'OPTION_INVALID');
    rmSync(dir, { recursive: true });
  });
});

describe('backend choice', () => {
  const yes = { ok: true, bpftrace: '/usr/bin/bpftrace' };
  const no = { ok: false, reason: 'no kernel BTF (/sys/kernel/btf/vmlinux)' };
  test('bpf by default where it runs, audit elsewhere; asking for bpf where it cannot run is refused', () => {
    assert.equal(chooseBackend(undefined, yes), 'bpf');
    assert.equal(chooseBackend(undefined, no), 'audit');
    assert.equal(chooseBackend('audit', yes), 'audit');
    assert.throws(() => chooseBackend('bpf', no), (e) => reason(e) === 'RECORDER_UNAVAILABLE');
    assert.throws(() => chooseBackend('ptrace', yes), (e) => isSpokeError(e) && e.code === 'InvalidArgument' && e.reason === 'OPTION_INVALID');
  });

  test('support names what is missing', () => {
    assert.equal(bpfSupport({ uid: 1000 }).reason, 'needs root');
    assert.match(bpfSupport({ uid: 0, arch: 'arm64' }).reason ?? '', /x86_64/);
    assert.match(bpfSupport({ uid: 0, arch: 'x64', btf: '/nonexistent/vmlinux' }).reason ?? '', /BTF/);
    assert.match(bpfSupport({ uid: 0, arch: 'x64', btf: '/proc/self/status', pathEnv: '/nonexistent' }).reason ?? '', /bpftrace/);
  });
});

describe('callsOfContainer', () => {
  const pod = { ipc: 100, pauseMnt: 200 };
  const dump = parseBpfDump([
    '@c[100, 200, 1, 0, 34]: 1', // the sandbox's pause
    '@c[100, 300, 5, 0, 83]: 1', // container A (init pid 11)
    '@c[100, 301, 6, 0, 84]: 1', // container B (init pid 12)
    '@c[999, 300, 5, 0, 90]: 1', // another pod
    '@f[100, 200, 1]: 10',
    '@f[100, 300, 5]: 11',
    '@f[100, 301, 6]: 12',
    '@f[999, 300, 5]: 11',
  ]);

  test('by the init pid learnt while the container ran', () => {
    const a = callsOfContainer(dump, pod, 11, []);
    assert.ok(a.ok);
    assert.deepEqual(
      a.counts.map((c) => c.nr),
      [83],
    );
  });

  test('without a pid: the one namespace of the pod not yet assigned; ambiguity is refused', () => {
    const a = callsOfContainer(dump, pod, 11, []);
    assert.ok(a.ok);
    const b = callsOfContainer(dump, pod, undefined, [a.key]);
    assert.ok(b.ok);
    assert.deepEqual(
      b.counts.map((c) => c.nr),
      [84],
    );
    const neither = callsOfContainer(dump, pod, undefined, []);
    assert.deepEqual(neither, { ok: false, why: '2 mount namespaces of the pod could be the container\'s' });
    assert.equal(callsOfContainer(dump, pod, 77, []).ok, false);
  });
});
