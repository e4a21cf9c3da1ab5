// The recorder daemon's call sources (src/cli/commands/recorder-calls.ts): whether a container's
// calls are whole, judged with the runtime's created_at stamps on a wall clock that steps.

import assert from 'node:assert/strict';
import { readlinkSync } from 'node:fs';
import { describe, it } from 'node:test';
import { bpfCalls, type Counter } from '../../../src/cli/commands/recorder-calls.js';
import type { BpfDump } from '../../../src/recorder/bpf-program.js';
import type { Msg, RuntimeCalls } from '../../../src/recorder/cri.js';

const DAY_MS = 86_400_000;
const START_MS = Date.parse('2025-06-02T00:00:00Z');
const ns = (ms: number) => BigInt(ms) * 1_000_000n;

/** This process's namespace inode: the fake pod's sandbox is this process. */
const inode = (kind: 'ipc' | 'mnt') => Number(/\[(\d+)\]/.exec(readlinkSync(`/proc/self/ns/${kind}`))![1]);

/** A runtime whose pod sandbox is this process; its container list is the test's. */
class FakeRuntime implements RuntimeCalls {
  ids: string[] = [];
  failList = false;

  async rt(name: string): Promise<Msg> {
    if (name === 'PodSandboxStatus') return { info: { info: JSON.stringify({ pid: process.pid }) } };
    if (name === 'ListContainers') {
      if (this.failList) throw new Error('CRI ListContainers: unavailable');
      return { containers: this.ids.map((id) => ({ id })) };
    }
    throw new Error(`unexpected CRI call ${name}`);
  }
}

/** A dump with one container's mount namespace in the pod, which made one read. */
function dump(): BpfDump {
  const key = { ipc: inode('ipc'), mnt: 4026599999, mntId: '91' };
  return { counts: [{ ...key, ia32: false, nr: 0, count: 3 }], firsts: [{ ...key, pid: 4242 }], exits: [] };
}

/** bpftrace as the source sees it: maps more than half full (2 keys), so an idle poll restarts it. */
function counters() {
  const c = { starts: 0 };
  const start = async (): Promise<Counter> => {
    c.starts++;
    const d = dump();
    return { latest: d, mapKeys: 2, nextDump: async () => d, stop: async () => d, close: () => undefined };
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
    // created after the restart; containerd stamps it with the stepped wall clock
    cri.ids.push('c1');
    await src.seen('sb1', 'c1', false);
    const r = await src.of('sb1', 'c1', ns(Date.now()));
    assert.equal(r.incomplete, undefined);
    assert.deepEqual([...r.syscalls], ['read']);
    assert.equal(r.lost, 0);
  });

  it('a container that existed when the counter restarted is incomplete, though its created_at is after the restart (a clock stepped back before it)', async (t) => {
    t.mock.timers.enable({ apis: ['Date'], now: START_MS });
    const cri = new FakeRuntime();
    const { start } = counters();
    const src = await bpfCalls(cri, () => undefined, start);
    cri.ids.push('c0'); // created, not yet seen by a poll, when the counter restarts
    await src.maintain(new Set());
    await src.seen('sb1', 'c0', false);
    const r = await src.of('sb1', 'c0', ns(START_MS + 3_600_000));
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
    await assert.rejects(src.of('sb1', 'c1', ns(Date.now())), /unavailable/);
    cri.failList = false;
    assert.match((await src.of('sb1', 'c1', ns(Date.now()))).incomplete ?? '', /eBPF counter last started/);
    cri.ids.push('c2');
    await src.seen('sb1', 'c2', false);
    src.forget('c1');
    assert.equal((await src.of('sb1', 'c2', ns(Date.now()))).lost, 0);
  });
});
