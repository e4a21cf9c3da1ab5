// For the recorder daemon's unit tests (src/cli/commands/recorder.ts RecorderDaemon): a CRI
// runtime whose pods and containers the test makes and removes, a call source and a reporter
// that record what the daemon asks of them, and the clocks (the wall clock mocked, the
// monotonic clock of the daemon's waits moved by the test).

import type { TestContext } from 'node:test';
import { RecorderDaemon, type ResultReporter } from '../../src/cli/commands/recorder-daemon.js';
import type { CallSource } from '../../src/cli/commands/recorder-calls.js';
import type { ProfileRecording, ProfileRecordingResult } from '../../src/controller/recording.js';
import { SpokeError } from '../../src/core/errors.js';
import type { Msg, RuntimeCalls } from '../../src/recorder/cri.js';

export const START_MS = Date.parse('2025-06-02T00:00:00Z');

export interface FakeContainer {
  id: string;
  pod_sandbox_id: string;
  metadata: { name: string };
  image: { image: string; user_specified_image: string };
  state: string;
  /** ns since the epoch, on the runtime's wall clock. */
  created_at: string;
}

/** A pod sandbox a recording selects (recording `rec`, namespace `team`). */
function recordedPod(id: string) {
  return { id, metadata: { name: `pod-${id}`, namespace: 'team' }, labels: { app: 'x' }, annotations: { 'recording.spoke.dev/name': 'rec' }, runtime_handler: 'runc' };
}

/** A runtime with one pod a recording selects (sb1); its other pods and its containers are the test's. */
export class FakeRuntime implements RuntimeCalls {
  readonly sandboxes = [recordedPod('sb1')];
  readonly containers: FakeContainer[] = [];
  /** Listing every container (the recorder's start) fails. */
  failListAll = false;
  /** Listing the pods fails: a poll that fails at its start. */
  failPods = false;
  /** Listing this pod's containers fails: a poll that stops part-way. */
  failPodOf: string | undefined;
  /** ContainerStatus calls made (the image of a container listed by digest only). */
  statusCalls = 0;

  addPod(id: string): void {
    this.sandboxes.push(recordedPod(id));
  }

  /** A container created now by the runtime's clock (the node's wall clock, mocked). */
  create(id: string, state = 'CONTAINER_RUNNING', createdMs = Date.now(), pod = 'sb1'): FakeContainer {
    const c = { id, pod_sandbox_id: pod, metadata: { name: 'app' }, image: { image: 'r.io/app:1', user_specified_image: 'r.io/app:1' }, state, created_at: String(BigInt(createdMs) * 1_000_000n) };
    this.containers.push(c);
    return c;
  }

  /** Removes the container (RemoveContainer: the kubelet's garbage collection). */
  remove(id: string): void {
    this.containers.splice(
      this.containers.findIndex((c) => c.id === id),
      1,
    );
  }

  /** Removes the pod sandbox and its containers (RemovePodSandbox: the pod deleted). */
  removePod(id: string): void {
    this.sandboxes.splice(
      this.sandboxes.findIndex((s) => s.id === id),
      1,
    );
    for (const c of this.containers.filter((c) => c.pod_sandbox_id === id)) this.remove(c.id);
  }

  async rt(name: string, req: Msg = {}): Promise<Msg> {
    if (name === 'ListPodSandbox') {
      if (this.failPods) throw new Error('CRI ListPodSandbox: unavailable');
      return { items: this.sandboxes };
    }
    if (name === 'ListContainers') {
      const sb = (req.filter as { pod_sandbox_id?: string } | undefined)?.pod_sandbox_id;
      if (sb === undefined && this.failListAll) throw new Error('CRI ListContainers: unavailable');
      if (sb !== undefined && sb === this.failPodOf) throw new Error('CRI ListContainers: deadline exceeded');
      return { containers: this.containers.filter((c) => sb === undefined || c.pod_sandbox_id === sb) };
    }
    if (name === 'ContainerStatus') {
      this.statusCalls++;
      const c = this.containers.find((c) => c.id === req.container_id);
      if (!c) throw new Error(`CRI ContainerStatus: the runtime answered NOT_FOUND: container ${String(req.container_id)} not found`);
      return { status: { image: { image: 'r.io/app:1' }, image_ref: c.image.image } };
    }
    throw new Error(`unexpected CRI call ${name}`);
  }
}

/** A call source that records what the daemon asks of it. */
export function calls(): CallSource & { seenIds: Set<string>; forgotten: Set<string> } {
  const seenIds = new Set<string>();
  const forgotten = new Set<string>();
  return {
    seenIds,
    forgotten,
    source: 'fake',
    failure: undefined,
    pollStarts: () => undefined,
    seen: async (_sb, id) => void seenIds.add(id),
    of: async () => ({ syscalls: new Set(['read']), ia32: false, unnamed: [], lost: 0 }),
    forget: (id) => void forgotten.add(id),
    maintain: async () => undefined,
    close: () => undefined,
  };
}

/**
 * A reporter that keeps the results it created and counts the reports asked of it; while
 * `failing`, every report fails: the API server down, or, with `failCode`, its answer of that
 * HTTP status (as client-node's errors carry it); while `unanswered`, every report fails as
 * KubeResultReporter's does once the API server has left it unanswered for its deadline.
 * `failFor`: the reports of these containers only fail so, left unanswered or refused with the
 * HTTP status given (a webhook of their namespace unreachable, or denying them). `tried`: the
 * containers whose report was asked, in order.
 */
export function reporter(): ResultReporter & {
  reported: string[];
  lost: number[];
  results: ProfileRecordingResult[];
  failing: boolean;
  failCode: number | undefined;
  unanswered: boolean;
  failFor: Map<string, 'unanswered' | number>;
  attempts: number;
  tried: string[];
} {
  const unanswered = () => new SpokeError('Unavailable', 'API request unanswered after 10000 ms: given up', {}, { reason: 'DEADLINE' });
  const refused = (code: number | undefined) => Object.assign(new Error(code === undefined ? 'the API server is unavailable' : `HTTP-Code: ${code}`), { code });
  const rep = {
    reported: [] as string[],
    lost: [] as number[],
    results: [] as ProfileRecordingResult[],
    failing: false,
    failCode: undefined as number | undefined,
    unanswered: false,
    failFor: new Map<string, 'unanswered' | number>(),
    attempts: 0,
    tried: [] as string[],
    recording: async (namespace: string, name: string) => ({ metadata: { namespace, name }, spec: { podSelector: { matchLabels: { app: 'x' } } } }) as unknown as ProfileRecording,
    report: async (_rec: ProfileRecording, result: ProfileRecordingResult) => {
      rep.attempts++;
      const id = result.spec.containerID ?? '';
      rep.tried.push(id);
      const fails = rep.failFor.get(id);
      if (rep.unanswered || fails === 'unanswered') throw unanswered();
      if (rep.failing || fails !== undefined) throw refused(fails ?? rep.failCode);
      rep.reported.push(id);
      rep.lost.push(result.spec.lostRecords ?? 0);
      rep.results.push(result);
      return 'created';
    },
  };
  return rep;
}

/** The wall clock mocked from START_MS; the monotonic clock the daemon's waits use. */
export function setup(t: TestContext) {
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
  /** A daemon that listed the runtime at its start, then polled once with `ids` recorded (in `state`, else running). */
  const polledWith = async (ids: readonly string[], state?: string) => {
    const d = make();
    await d.listExisting();
    for (const id of ids) cri.create(id, state);
    await d.tick();
    return d;
  };
  return { cri, src, rep, logged, make, polls, polledWith, mono };
}
