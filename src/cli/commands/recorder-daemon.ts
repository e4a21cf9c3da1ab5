// The daemon of `spoke recorder` (recorder.ts): its polls of the node's CRI runtime for the
// containers of pods a ProfileRecording annotates, and their reports, one
// ProfileRecordingResult each, once they exited or the runtime removed them (docs/recording.md,
// step 3). Where the calls come from: recorder-calls.ts. What is kept of the recorded containers
// awaiting their report: ../../recorder/recorded-containers.ts.

import { childName, POD_RECORDING_ANNOTATION, type ProfileRecording, type ProfileRecordingResult } from '../../controller/recording.js';
import { selectorMatches } from '../../controller/selector.js';
import { SpokeError } from '../../core/errors.js';
import { monotonicNow, type MonotonicNow } from '../../core/runtime.js';
import type { OciRuntime } from '../../profiles/seccomp/index.js';
import { containerIds, type RuntimeCalls } from '../../recorder/cri.js';
import { MAX_RECORDED, RecordedContainers, REMOVED_RETRY_MS, type CriContainer, type CriSandbox, type SeenContainer } from '../../recorder/recorded-containers.js';
import type { CallSource } from './recorder-calls.js';

/**
 * A recording read from the API server is used this long, then read again (it may have changed
 * or gone). Measured on the monotonic clock (injectable for tests): on the wall clock, a step
 * back would keep a deleted or changed recording in use as long as the step.
 */
const RECORDING_TTL_MS = 30_000;

/** Recordings by namespace and name, each read again once RECORDING_TTL_MS old; at most 1024 (then all forgotten). */
export class RecordingCache {
  private readonly hits = new Map<string, { at: number; rec: ProfileRecording | undefined }>();

  constructor(
    private readonly read: (ns: string, name: string) => Promise<ProfileRecording | undefined>,
    private readonly now: MonotonicNow = monotonicNow,
  ) {}

  async get(ns: string, name: string): Promise<ProfileRecording | undefined> {
    const k = `${ns}/${name}`;
    const hit = this.hits.get(k);
    if (hit && this.now() - hit.at < RECORDING_TTL_MS) return hit.rec;
    const rec = await this.read(ns, name);
    if (this.hits.size > 1024) this.hits.clear();
    this.hits.set(k, { at: this.now(), rec });
    return rec;
  }
}

/** Remembers at most `max` keys, oldest forgotten first. */
class BoundedSet {
  private readonly s = new Set<string>();
  constructor(private readonly max: number) {}
  has(k: string): boolean {
    return this.s.has(k);
  }
  add(k: string): void {
    if (this.s.size >= this.max) this.s.delete(this.s.values().next().value as string);
    this.s.add(k);
  }
}

type Log = (event: Record<string, unknown>) => void;

/**
 * What the daemon asks of the API server (KubeResultReporter). A call the API server leaves
 * unanswered until its deadline rejects with a SpokeError of reason DEADLINE.
 */
export interface ResultReporter {
  recording(namespace: string, name: string): Promise<ProfileRecording | undefined>;
  report(rec: ProfileRecording, result: ProfileRecordingResult): Promise<string>;
}

export interface DaemonOptions {
  cri: RuntimeCalls;
  calls: CallSource;
  reporter: ResultReporter;
  /** This node's name (in results). */
  node: string;
  /** For pods whose runtime handler does not name crun. */
  defaultRuntime: OciRuntime;
  log: Log;
  /** The clock of the waits (tests; default performance.now()). */
  now?: MonotonicNow;
}

const START_UNKNOWN = 'the runtime could not be listed when the recorder started: the container may have run before it, its first calls missing';
const NEVER_RAN = "no poll saw it run: its calls cannot be told apart from its pod's other containers'";
const UNTRACKED = `first seen while ${MAX_RECORDED} other recorded containers awaited their report: reported at once, its last calls possibly missing`;
const UNTRACKED_DEFERRED = `first seen while ${MAX_RECORDED} other recorded containers awaited their report, it is not kept: if the runtime removes it before a poll makes its report, the report is lost and the recording's profile lacks its calls`;

/**
 * One poll's reports. Once an API call of one is left unanswered until its deadline (each call
 * has its own, RECORDER_API_TIMEOUT_MS), the poll tries no more reports: a server that leaves one
 * so likely leaves the next so too, and a poll with n reports to make held the next poll, and
 * the waits and give-ups it makes, n deadlines. Those left wait, kept as after a failed report,
 * for the next poll, which tries them before those this poll tried (RecordedContainers.queue):
 * reports whose calls are always left unanswered (a webhook of their namespace unreachable)
 * close one poll each, not every poll, while others wait (docs/recording.md, step 3).
 */
class PollReports {
  private unanswered = false;
  /** How many reports this poll left to the next one, an API call having been left unanswered. */
  deferred = 0;
  /** How many of them are of containers not kept (past MAX_RECORDED). */
  deferredNotKept = 0;

  /** Whether a report (`untracked`: of a container not kept) is to be tried in this poll; one that is not is counted as deferred. */
  open(untracked: boolean): boolean {
    if (this.unanswered) {
      this.deferred++;
      if (untracked) this.deferredNotKept++;
    }
    return !this.unanswered;
  }

  /** The API call `call`; its deadline firing closes the poll to further reports. */
  async api<T>(call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch (e) {
      if (e instanceof SpokeError && e.reason === 'DEADLINE') this.unanswered = true;
      throw e;
    }
  }
}

/**
 * A report a poll found due. `untracked`: its container is not kept (past MAX_RECORDED).
 * `removed`: a complete poll did not list the container.
 * `place`: RecordedContainers.queue's.
 */
interface DueReport {
  seen: SeenContainer;
  why: string[];
  untracked: boolean;
  removed: boolean;
  place: number;
}

/** The daemon's polls of the runtime: which containers are recorded, and their reports once they exited or were removed. */
export class RecorderDaemon {
  /**
   * The containers the runtime listed once the call source had started (listExisting, before
   * the daemon logs that it records): their first calls may predate it. Known by id, not by
   * created_at, which is the runtime's wall clock: a step of it back after the start made
   * every later container "created before the recorder" (never reported), and one back before
   * the start let a container that existed then pass for a new one (reported without its
   * start-up calls). undefined until a listing succeeds (each poll fails before it).
   */
  private existing: Set<string> | undefined;
  /**
   * The listing of `existing` came from a poll after the start (the one at the start failed):
   * it holds containers created since the start too, which are recorded then, and reported with
   * their first calls possibly missing (a failed result, never a silent gap nor one recorded whole).
   */
  private startUnknown = false;
  private readonly kept: RecordedContainers;
  private readonly done = new BoundedSet(16_384);
  private readonly recordings: RecordingCache;

  constructor(private readonly o: DaemonOptions) {
    this.kept = new RecordedContainers(o.now);
    this.recordings = new RecordingCache((ns, name) => o.reporter.recording(ns, name), o.now);
  }

  /** Takes the containers the runtime lists now as those that existed at the start, unless a listing succeeded before. */
  async listExisting(): Promise<Set<string>> {
    return (this.existing ??= await containerIds(this.o.cri));
  }

  /**
   * `why`: the daemon's own reasons the calls may be incomplete though the source lost none (a
   * failed result, never a silent gap). `removed`: the runtime no longer lists the container,
   * so it cannot be asked about it.
   */
  private async report(reports: PollReports, { sb, c, recName }: SeenContainer, why: string[], removed: boolean): Promise<void> {
    const { cri, calls, log } = this.o;
    const ns = sb.metadata?.namespace ?? '';
    const container = c.metadata?.name ?? '';
    const rec = await reports.api(() => this.recordings.get(ns, recName));
    if (!rec) {
      log({ level: 'warning', msg: 'pod names a recording that does not exist', pod: `${ns}/${sb.metadata?.name}`, recording: recName });
      return this.forget(c.id);
    }
    if (!selectorMatches(rec.spec?.podSelector, sb.labels) || (rec.spec?.containers && !rec.spec.containers.includes(container))) return this.forget(c.id);
    let image = c.image?.user_specified_image || '';
    if ((!image || image.startsWith('sha256:')) && !removed) {
      const st = (await cri.rt('ContainerStatus', { container_id: c.id })).status as { image?: { image?: string }; image_ref?: string } | undefined;
      image = [c.image?.user_specified_image, st?.image?.image, st?.image_ref, c.image?.image].find((i) => i && !i.startsWith('sha256:')) ?? '';
    }
    const recorded = await calls.of(sb.id, c.id);
    const reasons = [...(this.startUnknown && this.existing?.has(c.id) === true ? [START_UNKNOWN] : []), ...why];
    const result: ProfileRecordingResult = {
      metadata: { name: childName(recName, c.id.slice(0, 16)), labels: { 'recording.spoke.dev/name': recName.length <= 63 ? recName : recName.slice(0, 63).replace(/[-.]+$/, '') } },
      spec: {
        recording: recName,
        pod: sb.metadata?.name ?? '',
        container,
        containerID: c.id,
        ...(image ? { image } : {}),
        runtime: (sb.runtime_handler ?? '').includes('crun') ? 'crun' : this.o.defaultRuntime,
        node: this.o.node,
        syscalls: [...recorded.syscalls].sort(),
        ia32: recorded.ia32,
        lostRecords: reasons.length > 0 ? Math.max(recorded.lost, 1) : recorded.lost,
        unnamedCalls: recorded.unnamed.slice(0, 64),
      },
    };
    const incomplete = reasons.length > 0 ? reasons.join('; ') : recorded.incomplete;
    const outcome = await reports.api(() => this.o.reporter.report(rec, result));
    log({ msg: 'reported', outcome, result: `${ns}/${result.metadata.name}`, container, syscalls: result.spec.syscalls.length, lostRecords: result.spec.lostRecords, ...(incomplete ? { incomplete } : {}) });
    this.forget(c.id);
  }

  /** The container's report is made, not to be made, or given up: nothing more is kept for it, and it is not reported again. */
  private forget(id: string): void {
    this.o.calls.forget(id);
    this.kept.forget(id);
    this.done.add(id);
  }

  /**
   * A report that fails stays to make: the container stays kept (and its calls with the source)
   * for a retry, which waits as long as the report has been failing, at most RETRY_WAIT_MAX_MS
   * (RecordedContainers.failed). It is given up, with an error line naming it, only when a
   * complete poll first found it removed REMOVED_RETRY_MS ago or more when it fails: one tried
   * before that bound and failing after it (an API call left unanswered for its deadline) is
   * given up then, as the next poll would give it up, not said due again at a time past. The
   * recording then lacks its calls, which only that line tells (docs/recording.md, step 3). A
   * refusal (400, 422) is no exception: what the recorder writes fits the CRD's schema, so one
   * comes from a ValidatingAdmissionPolicy or a webhook, which an admin can fix as they can RBAC
   * or a quota. Not tried at all once the poll found the API server leaving a call unanswered
   * (PollReports); one of a container not kept is then named in a warning line, as it is lost if
   * the runtime removes the container before the next poll: the first time only (an API server
   * down for an hour defers each such report at every poll), the poll's deferral line counting
   * them each time (docs/recording.md, step 3).
   */
  private async tryReport(reports: PollReports, { seen, why, untracked, removed }: DueReport): Promise<void> {
    if (!reports.open(untracked)) {
      const { sb, c, recName } = seen;
      if (untracked && this.kept.firstDeferral(c.id)) this.o.log({ level: 'warning', msg: 'report of a container not kept deferred to the next poll', recording: recName, namespace: sb.metadata?.namespace, pod: sb.metadata?.name, container: c.metadata?.name, containerID: c.id.slice(0, 12), why: UNTRACKED_DEFERRED });
      return;
    }
    try {
      await this.report(reports, seen, why, removed);
    } catch (e) {
      const { sb, c, recName } = seen;
      const goneFor = this.kept.goneFor(c.id);
      if (goneFor === undefined || goneFor < REMOVED_RETRY_MS) return this.o.log({ level: 'error', msg: 'report failed; will retry', container: c.id.slice(0, 12), retryAfterMs: Math.round(this.kept.failed(c.id)), error: (e as Error).message });
      this.o.log({ level: 'error', msg: "report given up: the recording's profile will lack the container's calls", recording: recName, namespace: sb.metadata?.namespace, pod: sb.metadata?.name, container: c.metadata?.name, containerID: c.id.slice(0, 12), why: `a poll found it removed from the runtime ${Math.round(goneFor / 1000)} s ago, and its report has failed since`, error: (e as Error).message });
      this.forget(c.id);
    }
  }

  /**
   * One poll; returns the containers it found being recorded and those removed whose report is
   * still to make (for CallSource.maintain: their calls are kept for it).
   */
  async tick(): Promise<Set<string>> {
    const listed = new Set<string>();
    const reports = new PollReports();
    try {
      await this.listAndReport(reports, listed);
    } finally {
      // Also when the poll failed part-way: the reports it deferred are told.
      const { deferred, deferredNotKept } = reports;
      if (deferred > 0) this.o.log({ level: 'warning', msg: 'reports deferred to the next poll: the API server left one unanswered', deferred, ...(deferredNotKept > 0 ? { notKept: deferredNotKept } : {}) });
    }
    return new Set([...listed, ...this.kept.ids()]);
  }

  /**
   * tick()'s poll: adds the containers it lists being recorded to `listed`, and tries the reports
   * due, once the listing is over (or has failed part-way: those of the containers it listed),
   * by their places (RecordedContainers.queue), one order for the reports of kept containers and
   * of those not kept ('untracked') alike: a report with n due before it is tried within n + 1
   * polls whatever its kind, and one whose calls are left unanswered takes its turn as any other
   * (docs/recording.md, step 3).
   */
  private async listAndReport(reports: PollReports, listed: Set<string>): Promise<void> {
    const due: DueReport[] = [];
    try {
      await this.list(listed, due);
      // Only here has the runtime been listed whole (a poll that failed part-way threw before): a
      // kept container it did not list was removed before its report, so had exited by now. Once
      // its wait is over its calls count as the source says, as they would had this poll still
      // listed it: the kernel's last records of it have come whether or not the runtime lists it,
      // and the source kept its calls for it (it is passed to CallSource.maintain until its
      // report). Until then it waits, kept. One no poll saw running or exited is incomplete,
      // whatever the source: with eBPF its calls may be another container's (docs/recording.md, step 3).
      for (const k of this.kept.gone(listed)) {
        if (k.settled && k.due) due.push({ seen: k, why: k.ran ? [] : [NEVER_RAN], untracked: false, removed: true, place: this.kept.queue(k.c.id) });
      }
    } finally {
      due.sort((a, b) => a.place - b.place);
      for (const d of due) await this.tryReport(reports, d);
    }
  }

  /** listAndReport's listing: adds the containers it lists being recorded to `listed`, and the reports due of them to `due`. */
  private async list(listed: Set<string>, due: DueReport[]): Promise<void> {
    const { cri, calls, log } = this.o;
    calls.pollStarts();
    if (this.existing === undefined) this.startUnknown = true;
    const existing = await this.listExisting();
    const sandboxes = ((await cri.rt('ListPodSandbox', {})).items ?? []) as CriSandbox[];
    for (const sb of sandboxes) {
      const recName = sb.annotations?.[POD_RECORDING_ANNOTATION];
      if (!recName) continue;
      const ctrs = ((await cri.rt('ListContainers', { filter: { pod_sandbox_id: sb.id } })).containers ?? []) as CriContainer[];
      for (const c of ctrs) {
        if (this.done.has(c.id)) continue;
        if (existing.has(c.id) && !this.startUnknown) {
          log({ level: 'warning', msg: 'container existed when the recorder started; not reported', container: c.id.slice(0, 12), pod: `${sb.metadata?.namespace}/${sb.metadata?.name}` });
          this.done.add(c.id);
          continue;
        }
        await calls.seen(sb.id, c.id, c.state === 'CONTAINER_RUNNING');
        listed.add(c.id);
        // Let the kernel's last records of the container arrive before reporting, and a report
        // that failed wait before its retry.
        const wait = this.kept.see(sb, c, recName);
        if (wait === 'live' || wait === 'waiting' || !this.kept.due(c.id)) continue;
        const untracked = wait === 'untracked';
        due.push({ seen: { sb, c, recName }, why: untracked ? [UNTRACKED] : [], untracked, removed: false, place: this.kept.queue(c.id) });
      }
    }
  }
}
