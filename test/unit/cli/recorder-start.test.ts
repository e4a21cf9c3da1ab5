// The recorder daemon (spoke recorder, src/cli/commands/recorder.ts) reports the containers
// created after it started, and not those that already existed then (their start-up calls were
// missed): how it tells them apart, with the runtime's created_at stamps on a wall clock that
// steps (docs/recording.md, step 3); and how many exited containers may await their report.

import assert from 'node:assert/strict';
import { describe, it, type TestContext } from 'node:test';
import { MAX_EXITED, RecorderDaemon, type ResultReporter } from '../../../src/cli/commands/recorder.js';
import type { CallSource } from '../../../src/cli/commands/recorder-calls.js';
import type { ProfileRecording, ProfileRecordingResult } from '../../../src/controller/recording.js';
import type { Msg, RuntimeCalls } from '../../../src/recorder/cri.js';

const DAY_MS = 86_400_000;
const START_MS = Date.parse('2025-06-02T00:00:00Z');

interface FakeContainer {
  id: string;
  pod_sandbox_id: string;
  metadata: { name: string };
  image: { image: string; user_specified_image: string };
  state: string;
  /** ns since the epoch, on the runtime's wall clock. */
  created_at: string;
}

/** A runtime with one pod a recording selects; its containers are the test's. */
class FakeRuntime implements RuntimeCalls {
  readonly containers: FakeContainer[] = [];
  failListAll = false;

  /** A container created now by the runtime's clock (the node's wall clock, mocked). */
  create(id: string, state = 'CONTAINER_RUNNING', createdMs = Date.now()): FakeContainer {
    const c = { id, pod_sandbox_id: 'sb1', metadata: { name: 'app' }, image: { image: 'r.io/app:1', user_specified_image: 'r.io/app:1' }, state, created_at: String(BigInt(createdMs) * 1_000_000n) };
    this.containers.push(c);
    return c;
  }

  async rt(name: string, req: Msg = {}): Promise<Msg> {
    if (name === 'ListPodSandbox') {
      return { items: [{ id: 'sb1', metadata: { name: 'pod', namespace: 'team' }, labels: { app: 'x' }, annotations: { 'recording.spoke.dev/name': 'rec' }, runtime_handler: 'runc' }] };
    }
    if (name === 'ListContainers') {
      const sb = (req.filter as { pod_sandbox_id?: string } | undefined)?.pod_sandbox_id;
      if (sb === undefined && this.failListAll) throw new Error('CRI ListContainers: unavailable');
      return { containers: this.containers.filter((c) => sb === undefined || c.pod_sandbox_id === sb) };
    }
    throw new Error(`unexpected CRI call ${name}`);
  }
}

/** A call source that records what the daemon asks of it. */
function calls(): CallSource & { seenIds: Set<string> } {
  const seenIds = new Set<string>();
  return {
    seenIds,
    source: 'fake',
    failure: undefined,
    pollStarts: () => undefined,
    seen: async (_sb, id) => void seenIds.add(id),
    of: async () => ({ syscalls: new Set(['read']), ia32: false, unnamed: [], lost: 0 }),
    forget: () => undefined,
    maintain: async () => undefined,
    close: () => undefined,
  };
}

function reporter(): ResultReporter & { reported: string[]; lost: number[] } {
  const reported: string[] = [];
  const lost: number[] = [];
  return {
    reported,
    lost,
    recording: async (namespace, name) => ({ metadata: { namespace, name }, spec: { podSelector: { matchLabels: { app: 'x' } } } }) as unknown as ProfileRecording,
    report: async (_rec, result: ProfileRecordingResult) => {
      reported.push(result.spec.containerID ?? '');
      lost.push(result.spec.lostRecords ?? 0);
      return 'created';
    },
  };
}

/** The wall clock mocked from START_MS; the monotonic clock the daemon's waits use. */
function setup(t: TestContext) {
  t.mock.timers.enable({ apis: ['Date'], now: START_MS });
  const mono = { ms: 0 };
  const cri = new FakeRuntime();
  const src = calls();
  const rep = reporter();
  const logged: Record<string, unknown>[] = [];
  const make = () => new RecorderDaemon({ cri, calls: src, reporter: rep, node: 'n1', defaultRuntime: 'runc', log: (e) => logged.push(e), now: () => mono.ms });
  /** Polls until the 1 s wait after an exit has passed (the monotonic clock moved). */
  const polls = async (d: RecorderDaemon) => {
    await d.tick().catch(() => undefined);
    mono.ms += 1000;
    await d.tick();
  };
  return { cri, src, rep, logged, make, polls, mono };
}

describe('recorder daemon: containers created before it started', () => {
  it('a wall clock stepped back a day after the start: a container created after it is recorded and reported', async (t) => {
    const { cri, src, rep, make, polls } = setup(t);
    cri.create('c0', 'CONTAINER_RUNNING', START_MS - 60_000);
    const daemon = make();
    await daemon.listExisting();
    t.mock.timers.setTime(START_MS - DAY_MS);
    // containerd stamps created_at with the node's wall clock, stepped back with it.
    cri.create('c1', 'CONTAINER_EXITED');
    await polls(daemon);
    assert.ok(src.seenIds.has('c1'), 'recorded');
    assert.deepEqual(rep.reported, ['c1']);
  });

  it('a container that existed at the start is not reported, though its created_at is after the start (a clock stepped back before it)', async (t) => {
    const { cri, rep, logged, make, polls } = setup(t);
    const c0 = cri.create('c0', 'CONTAINER_RUNNING', START_MS + 3_600_000);
    const daemon = make();
    await daemon.listExisting();
    c0.state = 'CONTAINER_EXITED';
    await polls(daemon);
    assert.deepEqual(rep.reported, []);
    assert.equal(logged.filter((e) => e.level === 'warning' && e.container === 'c0').length, 1, 'one warning for it');
  });

  it('a listing at the start that fails is made at the next poll: a container it finds is recorded and reported with its first calls possibly missing (a failed result), never left out nor recorded whole', async (t) => {
    const { cri, src, rep, make, polls } = setup(t);
    cri.failListAll = true;
    const daemon = make();
    await assert.rejects(daemon.listExisting());
    cri.create('c1', 'CONTAINER_EXITED');
    cri.failListAll = false;
    await polls(daemon);
    assert.deepEqual([...src.seenIds], ['c1']);
    assert.deepEqual(rep.reported, ['c1']);
    assert.deepEqual(rep.lost, [1]);
  });

  it('the listing at the start is the line: a container created after it, before the first poll, is recorded', async (t) => {
    const { cri, src, rep, make, polls } = setup(t);
    cri.create('c0', 'CONTAINER_EXITED', START_MS - 60_000);
    const daemon = make();
    await daemon.listExisting();
    cri.create('c1', 'CONTAINER_EXITED', START_MS - 60_000);
    await polls(daemon);
    assert.deepEqual([...src.seenIds], ['c1']);
    assert.deepEqual(rep.reported, ['c1']);
  });
});

describe('recorder daemon: exited containers awaiting their report', () => {
  it(`a container that exits while ${MAX_EXITED} others await their report is reported at once, as incomplete; those are reported whole a second later`, async (t) => {
    const { cri, rep, make, mono } = setup(t);
    const daemon = make();
    await daemon.listExisting();
    for (let i = 0; i < MAX_EXITED; i++) cri.create(`c${i}`, 'CONTAINER_EXITED');
    cri.create('late', 'CONTAINER_EXITED');
    await daemon.tick();
    assert.deepEqual(rep.reported, ['late']);
    assert.deepEqual(rep.lost, [1], 'its last records may not have come: the recording fails, never misses them silently');
    mono.ms += 1000;
    await daemon.tick();
    assert.equal(rep.reported.length, MAX_EXITED + 1);
    assert.deepEqual(new Set(rep.lost.slice(1)), new Set([0]));
  });

  it('containers removed before their report leave room: one that exits after them waits its second and is reported whole', async (t) => {
    const { cri, rep, make, polls } = setup(t);
    const daemon = make();
    await daemon.listExisting();
    for (let i = 0; i < MAX_EXITED; i++) cri.create(`c${i}`, 'CONTAINER_EXITED');
    await daemon.tick();
    cri.containers.length = 0;
    await daemon.tick();
    cri.create('c1', 'CONTAINER_EXITED');
    await polls(daemon);
    assert.deepEqual(rep.reported, ['c1']);
    assert.deepEqual(rep.lost, [0]);
  });
});
