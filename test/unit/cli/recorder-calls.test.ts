// The recorder daemon's call sources (src/cli/commands/recorder-calls.ts): whether a container's
// calls are whole, judged with the runtime's created_at stamps on a wall clock that steps.

import assert from 'node:assert/strict';
import { readlinkSync } from 'node:fs';
import { describe, it } from 'node:test';
import { RecorderDaemon } from '../../../src/cli/commands/recorder-daemon.js';
import { auditCalls, bpfCalls, type Counter } from '../../../src/cli/commands/recorder-calls.js';
import type { ProfileRecording, ProfileRecordingResult } from '../../../src/controller/recording.js';
import type { BpfDump } from '../../../src/recorder/bpf-program.js';
import type { Msg, RuntimeCalls } from '../../../src/recorder/cri.js';
import { SyscallRecorder } from '../../../src/recorder/recorder.js';
import { SpokeError } from '../../../src/core/errors.js';
import type { AuditSource } from '../../../src/recorder/source.js';

const DAY_MS = 86_400_000;
const START_MS = Date.parse('2025-06-02T00:00:00Z');
const ns = (ms: number) => BigInt(ms) * 1_000_000n;

/** This process's namespace inode: the fake pod's sandbox is this process. */
const inode = (kind: 'ipc' | 'mnt') => Number(/\[(\d+)\]/.exec(readlinkSync(`/proc/self/ns/${kind}`))![1]);

/** A runtime whose pod sandbox is this process; its container list is the test's. */
class FakeRuntime implements RuntimeCalls {
  ids: string[] = [];
  failList = false;
  /** Init pids of the running containers, by id (verbose ContainerStatus). */
  pids: Record<string, number> = {};

  async rt(name: string, req?: Msg): Promise<Msg> {
    if (name === 'PodSandboxStatus') return { info: { info: JSON.stringify({ pid: process.pid }) } };
    if (name === 'ContainerStatus') return { info: { info: JSON.stringify({ pid: this.pids[req?.container_id as string] }) } };
    if (name === 'ListContainers') {
      if (this.failList) throw new Error('CRI ListContainers: unavailable');
      return { containers: this.ids.map((id) => ({ id })) };
    }
    throw new Error(`unexpected CRI call ${name}`);
  }
}

/**
 * A dump with `containers` mount namespaces of containers in the pod (one by default): the
 * first made read(2) calls, the second write(2), …
 */
function dump(containers = 1): BpfDump {
  const keys = Array.from({ length: containers }, (_, i) => ({ ipc: inode('ipc'), mnt: 4026599999 - i, mntId: String(91 + i) }));
  return { counts: keys.map((k, i) => ({ ...k, ia32: false, nr: i, count: 3 })), firsts: keys.map((k, i) => ({ ...k, pid: 4242 + i })), exits: [] };
}

/**
 * bpftrace as the source sees it: maps more than half full (2 keys), so an idle poll restarts
 * it. Its dumps are `current`'s (the test's), dump() by default.
 */
function counters(current: () => BpfDump = dump) {
  const c = { starts: 0 };
  const start = async (): Promise<Counter> => {
    c.starts++;
    const d = current();
    return { latest: d, mapKeys: 2, failed: undefined, nextDump: async () => current(), stop: async () => d, close: () => undefined };
  };
  return { c, start };
}

describe('recorder daemon, eBPF: containers created before the counter last started', () => {
  it('a wall clock stepped back a day after a restart of the counter: a container created after it has its calls', async (t) => {
    t.mock.timers.enable({ apis: ['Date'], now: START_MS });
    const cri = new FakeRuntime();
    const { c, start } = counters();
    const src = await bpfCalls(cri, () => undefined, start);
    t.mock.timers.setTime(START_MS + 10_000);
    await src.maintain(new Set());
    assert.equal(c.starts, 2, 'restarted while nothing was recorded');
    t.mock.timers.setTime(START_MS - DAY_MS);
    cri.ids.push('c1'); // created after the restart (its created_at on the stepped clock is not read)
    await src.seen('sb1', 'c1', false);
    const r = await src.of('sb1', 'c1');
    assert.equal(r.incomplete, undefined);
    assert.deepEqual([...r.syscalls], ['read']);
    assert.equal(r.lost, 0);
  });

  it('a container that existed when the counter restarted, not yet seen by a poll, is incomplete whatever its created_at', async (t) => {
    t.mock.timers.enable({ apis: ['Date'], now: START_MS });
    const cri = new FakeRuntime();
    const { start } = counters();
    const src = await bpfCalls(cri, () => undefined, start);
    cri.ids.push('c0');
    await src.maintain(new Set());
    await src.seen('sb1', 'c0', false);
    const r = await src.of('sb1', 'c0');
    assert.equal(r.lost, 1);
    assert.match(r.incomplete ?? '', /eBPF counter last started/);
  });

  it('a listing that fails after the restart is made later: containers created meanwhile are incomplete, later ones whole', async (t) => {
    t.mock.timers.enable({ apis: ['Date'], now: START_MS });
    const cri = new FakeRuntime();
    const { start } = counters();
    const src = await bpfCalls(cri, () => undefined, start);
    cri.failList = true;
    await src.maintain(new Set());
    cri.ids.push('c1');
    await src.seen('sb1', 'c1', false);
    await assert.rejects(src.of('sb1', 'c1'), /unavailable/);
    cri.failList = false;
    assert.match((await src.of('sb1', 'c1')).incomplete ?? '', /eBPF counter last started/);
    cri.ids.push('c2');
    await src.seen('sb1', 'c2', false);
    src.forget('c1');
    assert.equal((await src.of('sb1', 'c2')).lost, 0);
  });
});

describe('recorder daemon, eBPF: the retry of a report of a container never seen running (no pid), after its calls were read', () => {
  /** A source whose pod has `d.containers` mount namespaces, with c1 seen only created (no pid) and its calls read once, for a report that then failed. */
  async function readOnce(d: { containers: number }) {
    const cri = new FakeRuntime();
    const src = await bpfCalls(cri, () => undefined, counters(() => dump(d.containers)).start);
    await src.maintain(new Set());
    cri.ids.push('c1', 'c2');
    await src.seen('sb1', 'c1', false);
    await src.seen('sb1', 'c2', false);
    const first = await src.of('sb1', 'c1');
    assert.deepEqual([first.lost, [...first.syscalls]], [0, ['read']]);
    return src;
  }

  it("gets the pod's namespace it took before: its own calls, whole", async () => {
    const src = await readOnce({ containers: 1 });
    const retry = await src.of('sb1', 'c1');
    assert.equal(retry.incomplete, undefined);
    assert.deepEqual([retry.lost, [...retry.syscalls]], [0, ['read']]);
  });

  it("gets that namespace, not one that appeared in the pod since (a restarted container's); nor can another container take it meanwhile", async () => {
    const d = { containers: 1 };
    const src = await readOnce(d);
    assert.match((await src.of('sb1', 'c2')).incomplete ?? '', /no counted calls in its namespace/, "c1's namespace is not c2's");
    d.containers = 2;
    const retry = await src.of('sb1', 'c1');
    assert.deepEqual([retry.lost, [...retry.syscalls]], [0, ['read']]);
    src.forget('c1');
    const c2 = await src.of('sb1', 'c2');
    assert.deepEqual([c2.lost, [...c2.syscalls]], [0, ['write']], 'c1 reported: its namespace still not taken by another');
  });

  it('keeps that namespace from others while its report waits, after the pod\'s last 64 taken namespaces no longer name it', async () => {
    const d = { containers: 1 };
    const src = await readOnce(d);
    // 64 more containers of the pod, never seen running, each reported with a namespace of its own.
    for (let i = 1; i <= 64; i++) {
      d.containers = i + 1;
      await src.seen('sb1', `x${i}`, false);
      assert.equal((await src.of('sb1', `x${i}`)).lost, 0);
      src.forget(`x${i}`);
    }
    const c2 = await src.of('sb1', 'c2');
    assert.deepEqual([c2.lost, [...c2.syscalls]], [1, []], "c1's calls are not c2's while c1's report waits");
    const retry = await src.of('sb1', 'c1');
    assert.deepEqual([retry.lost, [...retry.syscalls]], [0, ['read']]);
  });
});

describe('recorder daemon, eBPF: a container never seen running (no pid) and a container of its pod whose pid is known', () => {
  it("does not take the other container's namespace as its own when it made no counted call (an Unconfined or privileged init container)", async () => {
    const cri = new FakeRuntime();
    const src = await bpfCalls(cri, () => undefined, counters(() => dump(1)).start);
    await src.maintain(new Set());
    cri.ids.push('init', 'app');
    // The pod's one counted namespace is app's: its first pid, 4242, is app's init, seen running.
    cri.pids.app = 4242;
    await src.seen('sb1', 'init', false);
    await src.seen('sb1', 'app', true);
    const init = await src.of('sb1', 'init');
    assert.deepEqual([init.lost, [...init.syscalls]], [1, []], "app's calls are not init's");
    assert.match(init.incomplete ?? '', /no counted calls in its namespace/);
    const app = await src.of('sb1', 'app');
    assert.deepEqual([app.lost, [...app.syscalls]], [0, ['read']]);
  });
});

/** A runtime with one pod a recording selects, for the daemon; its containers are the test's. */
class PodRuntime implements RuntimeCalls {
  readonly containers: { id: string; pod_sandbox_id: string; metadata: { name: string }; image: { user_specified_image: string }; state: string; created_at: string }[] = [];

  create(id: string): { state: string } {
    const c = { id, pod_sandbox_id: 'sb1', metadata: { name: 'app' }, image: { user_specified_image: 'r.io/app:1' }, state: 'CONTAINER_RUNNING', created_at: String(ns(Date.now())) };
    this.containers.push(c);
    return c;
  }

  async rt(name: string): Promise<Msg> {
    if (name === 'ListPodSandbox') return { items: [{ id: 'sb1', metadata: { name: 'pod', namespace: 'team' }, annotations: { 'recording.spoke.dev/name': 'rec' } }] };
    if (name === 'ListContainers') return { containers: this.containers };
    throw new Error(`unexpected CRI call ${name}`);
  }
}

/**
 * The audit source under the daemon, as run() drives them (a poll, then the source's
 * housekeeping), over a recorder fed by the test: pid 99 is a process no container can be named
 * for (a forked child that exited before it was seen), pid 7 one of container c1. While
 * `failing.reports`, every report fails (the API server down).
 */
function auditDaemon(t: import('node:test').TestContext) {
  t.mock.timers.enable({ apis: ['Date'], now: START_MS });
  const recorder = new SyscallRecorder({ attribute: (pid) => (pid === 99 ? { kind: 'unattributed', reason: 'exited before it was seen' } : pid === 7 ? { kind: 'container', containerId: 'c1' } : { kind: 'host' }) });
  const source: AuditSource = { kind: 'kmsg', path: '/dev/kmsg', lost: 0, poll: () => [], close: () => undefined };
  const calls = auditCalls({ source, recorder, lost: () => recorder.stats.lossNotices, close: () => undefined });
  const cri = new PodRuntime();
  const results: ProfileRecordingResult[] = [];
  const mono = { ms: 0 };
  const failing = { reports: false };
  const daemon = new RecorderDaemon({
    cri,
    calls,
    node: 'n1',
    defaultRuntime: 'runc',
    log: () => undefined,
    now: () => mono.ms,
    reporter: {
      recording: async (namespace, name) => ({ metadata: { namespace, name }, spec: {} }) as unknown as ProfileRecording,
      report: async (_rec, result) => {
        if (failing.reports) throw new Error('the API server is unavailable');
        results.push(result);
        return 'created';
      },
    },
  });
  const poll = async () => calls.maintain(await daemon.tick());
  /** A logged read(2) the kernel recorded for `pid`, now. */
  const call = (pid: number) => recorder.addLine(`6,1,1,-;audit: type=1326 audit(${Math.floor(Date.now() / 1000)}.000:1): pid=${pid} comm="x" exe="/x" sig=0 arch=c000003e syscall=0 compat=0 ip=0x1 code=0x7ffc0000`);
  return {
    cri,
    results,
    poll,
    mono,
    failing,
    /** A logged call the kernel recorded for pid 99, now. */
    unattributedCall: () => call(99),
    /** A logged call the kernel recorded for container c1, now. */
    callOfC1: () => call(7),
    /** Lets the container exit and the daemon report it (its 1 s wait on the monotonic clock). */
    exitAndReport: async (c: { state: string }) => {
      c.state = 'CONTAINER_EXITED';
      await poll();
      mono.ms += 1000;
      await poll();
    },
  };
}

describe('recorder daemon, audit: the records lost since a container was created', () => {
  it('a wall clock stepped back a day after a container was created: a logged call no container could be named for since then still makes it incomplete', async (t) => {
    const d = auditDaemon(t);
    await d.poll();
    const c1 = d.cri.create('c1');
    d.unattributedCall();
    t.mock.timers.setTime(START_MS - DAY_MS);
    await d.poll();
    await d.exitAndReport(c1);
    assert.equal(d.results.length, 1);
    assert.equal(d.results[0]!.spec.lostRecords, 1);
  });

  it('a wall clock stepped back a day before a container was created: a logged call of the node from well before it does not make it incomplete', async (t) => {
    const d = auditDaemon(t);
    await d.poll();
    d.unattributedCall();
    t.mock.timers.setTime(START_MS + 1000);
    await d.poll();
    t.mock.timers.setTime(START_MS + 2000);
    await d.poll();
    t.mock.timers.setTime(START_MS - DAY_MS);
    const c1 = d.cri.create('c1');
    t.mock.timers.setTime(START_MS - DAY_MS + 100);
    await d.poll();
    await d.exitAndReport(c1);
    assert.equal(d.results.length, 1);
    assert.equal(d.results[0]!.spec.lostRecords, 0);
  });
});

describe('recorder daemon, audit: a container removed while it ran', () => {
  it('is reported whole a second after the poll that found it gone: the calls recorded for it are kept meanwhile, not pruned as a container no poll wants', async (t) => {
    const d = auditDaemon(t);
    await d.poll();
    d.cri.create('c1');
    await d.poll();
    d.callOfC1();
    d.cri.containers.length = 0;
    await d.poll();
    d.mono.ms += 500;
    await d.poll();
    assert.equal(d.results.length, 0, 'within its wait');
    d.mono.ms += 500;
    await d.poll();
    assert.equal(d.results.length, 1);
    assert.deepEqual(d.results[0]!.spec.syscalls, ['read']);
    assert.equal(d.results[0]!.spec.lostRecords, 0);
  });
});

describe('recorder daemon, audit: a container removed while its report fails', () => {
  it('its calls are kept until the report is made: not pruned as a container no poll wants', async (t) => {
    const d = auditDaemon(t);
    await d.poll();
    const c1 = d.cri.create('c1');
    await d.poll();
    d.callOfC1();
    c1.state = 'CONTAINER_EXITED';
    await d.poll();
    d.mono.ms += 1000;
    d.failing.reports = true;
    await d.poll();
    d.cri.containers.length = 0;
    // Two polls without it: the source forgets a container no poll wanted at the one before.
    await d.poll();
    await d.poll();
    d.failing.reports = false;
    await d.poll();
    assert.equal(d.results.length, 1);
    assert.deepEqual(d.results[0]!.spec.syscalls, ['read']);
    assert.equal(d.results[0]!.spec.lostRecords, 0, 'its exit had settled while listed: the report that failed, made whole');
  });
});

describe('recorder daemon, eBPF: maps that fill up', () => {
  const full = new SpokeError('FailedPrecondition', 'the eBPF map is full (2 entries); calls may be missing', { limit: 2 }, { reason: 'INCOMPLETE_RECORDING' });
  /** Counters whose first fills up as BpfCounter does: its dumps and its stop() refuse, only close() ends its bpftrace. */
  function fillingCounters() {
    const c = { starts: 0, alive: 0 };
    const start = async (): Promise<Counter> => {
      const first = ++c.starts === 1;
      c.alive++;
      let closed = false;
      return {
        latest: dump(),
        mapKeys: 2,
        failed: first ? full : undefined,
        nextDump: async () => (first ? Promise.reject(full) : dump()),
        stop: async () => {
          if (first) throw full;
          if (!closed) c.alive--;
          closed = true;
          return dump();
        },
        close: () => {
          if (!closed) c.alive--;
          closed = true;
        },
      };
    };
    return { c, start };
  }

  it('the counter starts again empty and the report is incomplete; the full one is ended, the daemon does not fail, and a container made after the restart has its calls', async () => {
    const cri = new FakeRuntime();
    const { c, start } = fillingCounters();
    const logged: Record<string, unknown>[] = [];
    const src = await bpfCalls(cri, (e) => logged.push(e), start);
    cri.ids.push('c1');
    await src.seen('sb1', 'c1', false);
    // Two reports meet the full maps at once: one restart.
    const [a, b] = await Promise.all([src.of('sb1', 'c1'), src.of('sb1', 'c1')]);
    for (const r of [a, b]) {
      assert.equal(r.lost, 1);
      assert.match(r.incomplete ?? '', /filled up/);
    }
    assert.equal(src.failure, undefined, 'the daemon goes on');
    assert.deepEqual(c, { starts: 2, alive: 1 }, 'one bpftrace left running');
    assert.ok(logged.some((l) => /maps full/.test(String(l.msg))));
    // c1 ran across the restart: incomplete from now on; c2, made after it, is whole.
    assert.match((await src.of('sb1', 'c1')).incomplete ?? '', /existed when the eBPF counter last started/);
    cri.ids.push('c2');
    await src.seen('sb1', 'c2', false);
    const c2 = await src.of('sb1', 'c2');
    assert.equal(c2.incomplete, undefined);
    assert.deepEqual([...c2.syscalls], ['read']);
  });

  it('maps that fill while no report reads them are started again by the housekeeping, which does not fail', async () => {
    const cri = new FakeRuntime();
    const { c, start } = fillingCounters();
    const src = await bpfCalls(cri, () => undefined, start);
    await src.maintain(new Set());
    assert.equal(src.failure, undefined);
    assert.deepEqual(c, { starts: 2, alive: 1 });
  });

  it('maps that fill on the last dump the housekeeping\'s own stop waits for are started again too', async () => {
    let starts = 0;
    const start = async (): Promise<Counter> => {
      const first = ++starts === 1;
      return {
        latest: dump(),
        mapKeys: 2,
        failed: undefined,
        nextDump: async () => dump(),
        stop: async () => {
          if (first) throw full;
          return dump();
        },
        close: () => undefined,
      };
    };
    const src = await bpfCalls(new FakeRuntime(), () => undefined, start);
    await src.maintain(new Set());
    assert.equal(src.failure, undefined);
    assert.equal(starts, 2);
  });

  it('another failure of the counter still stops the daemon', async () => {
    const broken = new Error('bpftrace exited 1');
    const start = async (): Promise<Counter> => ({ latest: dump(), mapKeys: 2, failed: broken, nextDump: () => Promise.reject(broken), stop: async () => dump(), close: () => undefined });
    const cri = new FakeRuntime();
    const src = await bpfCalls(cri, () => undefined, start);
    cri.ids.push('c1');
    await src.seen('sb1', 'c1', false);
    await assert.rejects(src.of('sb1', 'c1'), broken);
    assert.equal(src.failure, broken);
  });
});
