// What `spoke denials` counts and how each record is attributed (docs/audit-mode.md): --since
// (summarizeDenials) and --for (LiveDenials, attributeNamespace). Real record text as the kernel
// prints it; attribution given per pid.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import type { MountNamespace } from '../../../src/recorder/bpf-program.js';
import { attributeNamespace, LiveDenials, summarizeDenials, type SeenContainer } from '../../../src/recorder/denials.js';
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

describe('attributeNamespace: a namespace key to its container, never guessed', () => {
  const HOST_IPC = 4026531839;
  const key = (ipc: number, mnt: number, mntId: string) => ({ ipc, mnt, mntId });
  const k = key(4026532300, 4026532400, '77');
  const rows: [string, MountNamespace[], [string, SeenContainer][], number | undefined, Attribution][] = [
    ['the one container seen with the pair, one id', [k], [[A, { ipc: k.ipc, mnt: k.mnt }]], HOST_IPC, { kind: 'container', containerId: A }],
    ['another container with another pair does not matter', [k, key(k.ipc, 4026532401, '78')], [[A, { ipc: k.ipc, mnt: k.mnt }], [B, { ipc: k.ipc, mnt: 4026532401 }]], HOST_IPC, { kind: 'container', containerId: A }],
    ['two containers seen with the pair (inodes reused)', [k], [[A, { ipc: k.ipc, mnt: k.mnt }], [B, { ipc: k.ipc, mnt: k.mnt }]], HOST_IPC, { kind: 'unattributed', reason: 'namespace inodes reused by two containers seen' }],
    ['the pair with two mount namespace ids', [k, key(k.ipc, k.mnt, '91')], [[A, { ipc: k.ipc, mnt: k.mnt }]], HOST_IPC, { kind: 'unattributed', reason: 'mount namespace inode reused during the watch' }],
    ['no container, the host IPC namespace', [key(HOST_IPC, 4026531841, '1')], [[A, { ipc: k.ipc, mnt: k.mnt }]], HOST_IPC, { kind: 'host' }],
    ['no container, a pod IPC namespace', [k], [[A, { ipc: k.ipc, mnt: 4026532999 }]], HOST_IPC, { kind: 'unattributed', reason: 'namespace of no container seen' }],
    ['no container, the host IPC namespace unknown', [key(HOST_IPC, 4026531841, '1')], [], undefined, { kind: 'unattributed', reason: 'namespace of no container seen' }],
  ];
  for (const [what, keys, seen, hostIpc, want] of rows) {
    test(what, () => assert.deepEqual(attributeNamespace(keys[0]!, keys, new Map(seen), hostIpc), want));
  }

  test('property: a container is named only when it alone was seen with the pair and the pair has one id', () => {
    const small = fc.integer({ min: 1, max: 3 });
    fc.assert(
      fc.property(fc.array(fc.tuple(small, small, small), { minLength: 1, maxLength: 8 }), fc.array(fc.tuple(small, small), { maxLength: 4 }), (keys, containers) => {
        const ks = keys.map(([ipc, mnt, id]) => key(ipc, mnt, String(id)));
        const seen = new Map(containers.map(([ipc, mnt], i) => [`c${i}`, { ipc, mnt }]));
        for (const kk of ks) {
          const who = attributeNamespace(kk, ks, seen, 1);
          const owners = [...seen.values()].filter((s) => s.ipc === kk.ipc && s.mnt === kk.mnt).length;
          const ids = new Set(ks.filter((o) => o.ipc === kk.ipc && o.mnt === kk.mnt).map((o) => o.mntId)).size;
          assert.equal(who.kind === 'container', owners === 1 && ids === 1);
          if (who.kind === 'container') assert.deepEqual(seen.get(who.containerId), { ipc: kk.ipc, mnt: kk.mnt });
          if (who.kind === 'host') assert.ok(owners === 0 && kk.ipc === 1);
        }
      }),
    );
  });
});

describe('LiveDenials (--for)', () => {
  const SINCE = (1_700_000_000 + 50) * 1000;
  const names = { holders: new Map([[A, DIGEST]]), references: new Map([[DIGEST, `r.io/p@${DIGEST}`]]), containers: new Map([[A, { podNamespace: 'ns', podName: 'pod', container: 'c' }]]) };
  const seen = new Map([[A, { ipc: 11, mnt: 21 }]]);

  test('alive processes count when read; exited ones through the exit map; anything ambiguous stays unattributed', () => {
    const who: Record<number, Attribution> = { 10: { kind: 'container', containerId: A } };
    const live = new LiveDenials(SINCE, 1_700_000_000_000, (pid) => who[pid] ?? { kind: 'unattributed', reason: 'exited before it was seen' });
    for (const line of [rec(100, 10, 83, '0x7ffc0000'), rec(101, 20, 83, '0x7ffc0000'), rec(102, 20, 83, '0x7ffc0000'), rec(103, 21, 83, '0x7ffc0000'), rec(104, 22, 95, '0x7ffc0000'), rec(105, 23, 83, '0x7ffc0000')]) {
      live.addLine(line);
    }
    const r = live.finish(
      [
        { pid: 20, ipc: 11, mnt: 21, mntId: '5' }, // A's forked child
        { pid: 21, ipc: 11, mnt: 21, mntId: '5' }, // another of A's
        { pid: 22, ipc: 12, mnt: 30, mntId: '6' }, // a namespace no poll saw
        { pid: 22, ipc: 12, mnt: 31, mntId: '7' }, // pid 22 reused elsewhere: ambiguous
      ],
      seen,
      99,
      names,
    );
    assert.equal(r.records, 6);
    assert.deepEqual(r.audit.map((e) => [e.containerId, e.syscall, e.count, e.podName]), [[A, 'mkdir', 4, 'pod']]);
    assert.deepEqual(r.unattributed, [
      { syscall: 'mkdir', count: 1, reasons: { 'exited before it was seen': 1 } },
      { syscall: 'umask', count: 1, reasons: { 'pid reused in other namespaces during the watch': 1 } },
    ]);
  });

  test('records past the pending cap are counted as unattributed at once', () => {
    const live = new LiveDenials(SINCE, 1_700_000_000_000, () => ({ kind: 'unattributed', reason: 'exited before it was seen' }), 1);
    live.addLine(rec(100, 20, 83, '0x7ffc0000'));
    live.addLine(rec(101, 21, 83, '0x7ffc0000'));
    const r = live.finish([{ pid: 20, ipc: 11, mnt: 21, mntId: '5' }, { pid: 21, ipc: 11, mnt: 21, mntId: '5' }], seen, 99, names);
    assert.deepEqual(r.audit.map((e) => e.count), [1]);
    assert.equal(r.unattributed[0]!.count, 1);
  });
});

describe('LiveDenials (--for): the start of the watch and the wall clock', () => {
  const DAY_MS = 86_400_000;
  const START_MS = Date.parse('2025-06-02T00:00:00Z');
  const BOOT_MS = START_MS - DAY_MS;
  const names = { holders: new Map<string, typeof DIGEST>(), references: new Map<typeof DIGEST, string>(), containers: new Map() };
  const auditStamp = (ms: number) => `${Math.floor(ms / 1000)}.${String(ms % 1000).padStart(3, '0')}`;
  const body = (pid: number, syscall: number) => `auid=4294967295 uid=0 gid=0 ses=4294967295 pid=${pid} comm="x" exe="/bin/busybox" sig=0 arch=c000003e syscall=${syscall} compat=0 ip=0x47b567 code=0x7ffc0000`;
  /** A record as auditd writes it to audit.log: stamped `ms` by the kernel's wall clock, and nothing else. */
  const at = (ms: number, pid: number, syscall: number) => `type=SECCOMP msg=audit(${auditStamp(ms)}:${pid}): ${body(pid, syscall)}`;
  /**
   * A record as /dev/kmsg gives it: the kernel's sequence number and since-boot stamp (`bootMs`),
   * which no wall-clock step moves, then the audit timestamp, the kernel's wall clock (`wallMs`).
   */
  const kmsgAt = (seq: number, bootMs: number, wallMs: number, pid: number, syscall: number) => `6,${seq},${bootMs * 1000},-;audit: type=1326 audit(${auditStamp(wallMs)}:${seq}): ${body(pid, syscall)}`;
  const inA = (): Attribution => ({ kind: 'container', containerId: A });
  const counted = (live: LiveDenials) => live.finish([], new Map(), 99, names).other.map((e) => [e.syscall, e.count]);

  test('audit.log: a wall clock stepped back a day during the watch: a denial made after the step is counted', (t) => {
    t.mock.timers.enable({ apis: ['Date'], now: START_MS });
    const live = new LiveDenials(Date.now(), BOOT_MS, inA);
    t.mock.timers.setTime(START_MS - DAY_MS);
    // The kernel stamps the record with its wall clock, stepped back with the node's.
    live.addLine(at(START_MS - DAY_MS + 1000, 10, 83));
    assert.deepEqual(counted(live), [['mkdir', 1]]);
  });

  test('audit.log: a record made before the watch started and written during it (still queued for kauditd or auditd at the open) is not counted', (t) => {
    t.mock.timers.enable({ apis: ['Date'], now: START_MS });
    const live = new LiveDenials(Date.now(), BOOT_MS, inA);
    live.addLine(at(START_MS - 1000, 10, 83));
    live.addLine(at(START_MS + 1000, 10, 95));
    assert.deepEqual(counted(live), [['umask', 1]]);
  });

  /**
   * The clocks, moved by the test: `step` moves the wall clock alone, `pass` all of them. The
   * kernel's since-boot clock and sequence numbers run on with the monotonic clock.
   */
  function clocks() {
    const c = { wallMs: START_MS, monoMs: 5000, seq: 100 };
    return {
      clocks: { wall: () => c.wallMs, monotonic: () => c.monoMs },
      step: (ms: number) => (c.wallMs += ms),
      pass: (ms: number) => {
        c.wallMs += ms;
        c.monoMs += ms;
      },
      wallMs: () => c.wallMs,
      /** A kmsg record of a call made now. */
      kmsg: (pid: number, syscall: number) => kmsgAt(c.seq++, START_MS - BOOT_MS + c.monoMs - 5000, c.wallMs, pid, syscall),
    };
  }

  test('audit.log, with the clocks given: records read before a step back are judged by the start, those after it by the start less the step', () => {
    const k = clocks();
    const live = new LiveDenials(START_MS, BOOT_MS, inA, undefined, k.clocks);
    k.pass(10);
    live.addLine(at(START_MS - 5, 10, 83)); // queued before the start: not counted
    live.addLine(at(START_MS + 5, 10, 95));
    k.pass(1000);
    const beforeStep = at(k.wallMs(), 10, 2); // made before the step, read after it
    k.step(-DAY_MS);
    k.pass(1000);
    live.addLine(beforeStep);
    live.addLine(at(k.wallMs(), 10, 83));
    k.pass(60_000);
    live.addLine(at(k.wallMs(), 10, 83));
    assert.deepEqual(counted(live), [
      ['mkdir', 2],
      ['open', 1],
      ['umask', 1],
    ]);
  });

  test('audit.log, with the clocks given: a wall clock stepped forward counts every later denial and still no record from before the start', () => {
    const k = clocks();
    const live = new LiveDenials(START_MS, BOOT_MS, inA, undefined, k.clocks);
    k.pass(1000);
    k.step(DAY_MS);
    live.addLine(at(START_MS - 1000, 10, 2)); // queued before the start
    live.addLine(at(k.wallMs(), 10, 83));
    assert.deepEqual(counted(live), [['mkdir', 1]]);
  });

  test('/dev/kmsg: a wall clock stepped back a day and forward again between two reads: the denials made meanwhile are counted', () => {
    const k = clocks();
    const live = new LiveDenials(START_MS, BOOT_MS, inA, undefined, k.clocks);
    k.pass(1000);
    live.addLine(k.kmsg(10, 83));
    k.step(-DAY_MS);
    k.pass(100);
    const during = [k.kmsg(10, 95), k.kmsg(10, 2)];
    k.pass(100);
    k.step(DAY_MS);
    k.pass(300);
    // The next read, 500 ms after the last: the clocks agree again.
    for (const line of [...during, k.kmsg(10, 83)]) live.addLine(line);
    assert.deepEqual(counted(live), [
      ['mkdir', 2],
      ['open', 1],
      ['umask', 1],
    ]);
  });

  test('/dev/kmsg: every record the kernel printed after the log was opened counts, whatever its wall-clock stamp: one made a moment before the start and printed after it too', () => {
    const k = clocks();
    const live = new LiveDenials(START_MS, BOOT_MS, inA, undefined, k.clocks);
    k.pass(1);
    live.addLine(kmsgAt(100, START_MS - BOOT_MS + 1, START_MS - 2, 10, 83));
    assert.deepEqual(counted(live), [['mkdir', 1]]);
  });
});

test('the tally is bounded: syscall numbers no table names are folded past a cap, their counts kept', () => {
  // The number is the caller's choice: 1,000,000 distinct ones held ~400 MB of one report.
  const line = (nr: number) => `5,1,1,-;audit: type=1326 audit(1795449621.225:1): pid=7 comm="x" exe="/x" sig=0 arch=c000003e syscall=${nr} compat=0 ip=0x1 code=0x7ffc0000`;
  const lines = Array.from({ length: 20_000 }, (_, i) => line(100_000 + i));
  const s = summarizeDenials({
    lines,
    sinceMs: 0,
    bootWallMs: 1_795_449_000_000,
    attribute: (): Attribution => ({ kind: 'container', containerId: 'a'.repeat(64) }),
    holders: new Map(),
    references: new Map(),
    containers: new Map(),
  });
  assert.ok(s.other.length <= 1025, `${s.other.length} entries`);
  assert.equal(s.other.reduce((n, e) => n + e.count, 0), 20_000);
  assert.ok(s.other.some((e) => e.syscall === '#other'));
});
