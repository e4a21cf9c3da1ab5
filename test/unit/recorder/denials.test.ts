// summarizeDenials: which kernel records `spoke denials` counts and how each is attributed
// (docs/audit-mode.md). Real record text as the kernel prints it; attribution given per pid.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { summarizeDenials } from '../../../src/recorder/denials.js';
import type { Attribution } from '../../../src/recorder/pids.js';

const A = 'a'.repeat(64);
const B = 'b'.repeat(64);
const DIGEST = `sha256:${'c'.repeat(64)}` as const;
const rec = (sec: number, pid: number, syscall: number, code: string) =>
  `6,${pid},${sec * 1_000_000},-;audit: type=1326 audit(${1_700_000_000 + sec}.000:${pid}): auid=4294967295 uid=0 gid=0 ses=4294967295 pid=${pid} comm="x" exe="/bin/busybox" sig=0 arch=c000003e syscall=${syscall} compat=0 ip=0x47b567 code=${code}`;

test('counts SCMP_ACT_LOG records in the window per container and syscall; exited processes unattributed, never guessed', () => {
  const who: Record<number, Attribution> = {
    10: { kind: 'container', containerId: A },
    11: { kind: 'container', containerId: B },
    12: { kind: 'unattributed', reason: 'exited before it was seen' },
    13: { kind: 'host' },
  };
  const lines = [
    rec(1, 10, 83, '0x7ffc0000'), // before the window
    rec(100, 10, 83, '0x7ffc0000'),
    rec(101, 10, 83, '0x7ffc0000'),
    rec(102, 10, 95, '0x7ffc0000'),
    rec(103, 10, 83, '0x50001'), // an ERRNO record: denied, not logged
    rec(104, 11, 83, '0x7ffc0000'),
    rec(105, 12, 83, '0x7ffc0000'),
    rec(106, 13, 83, '0x7ffc0000'),
    '4,99,107000000,-;kauditd_printk_skb: 3 callbacks suppressed',
    'not a record',
  ];
  const r = summarizeDenials({
    lines,
    sinceMs: (1_700_000_000 + 50) * 1000,
    bootWallMs: 1_700_000_000_000,
    attribute: (pid) => who[pid]!,
    holders: new Map([[A, DIGEST]]),
    references: new Map([[DIGEST, `r.io/p@${DIGEST}`]]),
    containers: new Map([[A, { podNamespace: 'ns', podName: 'pod', container: 'c' }]]),
  });
  assert.equal(r.records, 6);
  assert.deepEqual(
    r.audit.map((e) => [e.containerId, e.syscall, e.count, e.podName, e.reference]),
    [
      [A, 'mkdir', 2, 'pod', `r.io/p@${DIGEST}`],
      [A, 'umask', 1, 'pod', `r.io/p@${DIGEST}`],
    ],
  );
  assert.deepEqual(r.other.map((e) => [e.containerId, e.syscall, e.count, e.reference]), [[B, 'mkdir', 1, undefined]]);
  assert.deepEqual(r.unattributed, [{ syscall: 'mkdir', count: 1, reasons: { 'exited before it was seen': 1 } }]);
  assert.equal(r.host, 1);
  assert.equal(r.lost, 1);
});
