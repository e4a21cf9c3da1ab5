// The `exits` form of the eBPF program (`spoke denials --for`, docs/audit-mode.md): exited
// filtered processes with their namespaces; the recorder's form is unchanged (bpf.test.ts).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isSpokeError } from '../../../src/core/errors.js';
import { bpfProgram, parseBpfDump } from '../../../src/recorder/bpf-program.js';

test('keeps pid and namespace key of every filtered process that exits; ready and stop on spoke’s own calls only', () => {
  const p = bpfProgram({ probe: 'exits', readyPid: 321, nsId: 'ns.ns_id' });
  assert.match(p, /^tracepoint:sched:sched_process_exit \{\n {2}if \(curtask->seccomp\.mode == 2\) \{$/m);
  assert.match(p, /@x\[pid, curtask->nsproxy->ipc_ns->ns\.inum, curtask->nsproxy->mnt_ns->ns\.inum, curtask->nsproxy->mnt_ns->ns\.ns_id\] = count\(\);/);
  assert.match(p, /^tracepoint:raw_syscalls:sys_enter \/pid == 321\/ \{$/m);
  assert.match(p, /if \(args->id == 62 && args->args\[0\] == 1073741823\) \{ exit\(\); \}/);
  assert.match(p, /^END \{ printf\("spoke-dump-begin\\n"\); print\(@x\); printf\("spoke-dump-end\\n"\); clear\(@x\); clear\(@r\); \}$/m);
  assert.doesNotMatch(p, /@c\[|@f\[/);
  assert.throws(() => bpfProgram({ probe: 'exits', readyPid: 0, nsId: undefined }), (e) => isSpokeError(e) && e.reason === 'OPTION_INVALID');
});

test('the recorder’s form is the default', () => {
  assert.equal(bpfProgram({ readyPid: 9, nsId: undefined }), bpfProgram({ probe: 'syscalls', readyPid: 9, nsId: undefined }));
});

test('exit lines parse; malformed ones are refused', () => {
  const d = parseBpfDump(['@x[4242, 4026532001, 4026532174, 4165]: 1']);
  assert.deepEqual(d.exits, [{ pid: 4242, ipc: 4026532001, mnt: 4026532174, mntId: '4165', count: 1 }]);
  for (const bad of ['@x[4242, 4026532001, 4026532174]: 1', '@x[42424242424, 1, 2, 3]: 1', '@x[1, 2, 3, 4]: x']) {
    assert.throws(() => parseBpfDump([bad]), (e) => isSpokeError(e) && e.reason === 'INCOMPLETE_RECORDING', bad);
  }
});
