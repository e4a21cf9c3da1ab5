// Where `spoke recorder` gets a container's calls, per backend: the audit-record session or the
// eBPF counter (the backends `spoke record` uses).

import { SpokeError } from '../../core/errors.js';
import { containerIds, pidFromVerboseInfo, type RuntimeCalls } from '../../recorder/cri.js';
import { RecordingSession } from '../../recorder/session.js';
import { BpfCounter, namespaceOf } from '../../recorder/bpf.js';
import { callsOfContainer, DEFAULT_MAP_KEYS, namesOf, type MountNamespace, type PodNamespaces } from '../../recorder/bpf-program.js';
import type { RecordingBackend } from '../../recorder/backend.js';

type Log = (event: Record<string, unknown>) => void;

/** What one container called, as either backend sees it. */
export interface Recorded {
  syscalls: Set<string>;
  /** Whether any of them was a 32-bit (ia32) call: the profile then needs the i386 ABI. */
  ia32: boolean;
  unnamed: string[];
  /** Records lost or not attributable since the container was created (> 0 fails the recording). */
  lost: number;
  /** Why the calls may be incomplete, when lost > 0. */
  incomplete?: string;
}

/** The recorder's view of calls, per backend. */
export interface CallSource {
  readonly source: string;
  readonly failure: Error | undefined;
  /** Called as each poll begins, before the runtime is listed. */
  pollStarts(): void;
  /** Called on every poll for each recorded container (running: whether it runs now). */
  seen(sandboxId: string, containerId: string, running: boolean): Promise<void>;
  of(sandboxId: string, containerId: string): Promise<Recorded>;
  forget(containerId: string): void;
  /**
   * Between polls: housekeeping. `recorded`: the containers the poll just passed to `seen`, and
   * those the runtime no longer lists whose report is still to be made (it needs their calls,
   * docs/recording.md step 3), or undefined when the poll failed; only a complete poll lets a
   * source drop what it tracks for others (the audit table) or for containers no longer
   * recorded (the eBPF maps are emptied when nothing is being recorded).
   */
  maintain(recorded: ReadonlySet<string> | undefined): Promise<void>;
  close(): void;
}

/** What the audit backend uses of its RecordingSession (tests give their own). */
export type AuditSession = Pick<RecordingSession, 'source' | 'recorder' | 'lost' | 'close'>;

/** What the eBPF backend uses of a BpfCounter (tests give their own). */
export type Counter = Pick<BpfCounter, 'latest' | 'mapKeys' | 'failed' | 'nextDump' | 'stop' | 'close'>;

export function auditCalls(session: AuditSession): CallSource {
  // A container's share of the losses is everything since the last complete poll that did not
  // list it began (it was created after that): its short-lived children may be gone before the
  // first poll sees it. Judged by polls, not by its created_at, which is the runtime's wall
  // clock: a step of it back after a container's creation made samples taken after it pass
  // for earlier ones (losses of its own left out: a lossy recording passed for whole), and one
  // back before the creation put it before every sample since the daemon started (every loss
  // since then counted: a recording failed for nothing).
  type Losses = { unattributed: number; lost: number };
  const atStart: Losses = { unattributed: 0, lost: 0 };
  const losses = (): Losses => ({ unattributed: session.recorder.stats.unattributedLogged, lost: session.lost() });
  /** When the poll under way began, and when the last complete one did. */
  let pollBegan = atStart;
  let completeBegan = atStart;
  /** Per container seen: the losses when the last complete poll before it began. */
  const bases = new Map<string, Losses>();
  return {
    source: session.source.path,
    failure: undefined,
    pollStarts: () => {
      pollBegan = losses();
    },
    seen: async (_sb, id) => {
      if (!bases.has(id)) bases.set(id, completeBegan);
    },
    of: async (_sb, id) => {
      const base = bases.get(id) ?? atStart;
      const unattributed = session.recorder.stats.unattributedLogged - base.unattributed;
      const lost = session.lost() - base.lost;
      const dropped = session.recorder.wasDropped(id) ? 1 : 0;
      const claimed = session.recorder.wasClaimed(id) ? 1 : 0;
      const why = [
        ...(lost > 0 ? [`${lost} audit record(s) lost`] : []),
        ...(unattributed > 0 ? [`${unattributed} logged call(s) on the node could not be tied to a container`] : []),
        ...(dropped > 0 ? ["its records were not kept: the recorder's table of containers was full"] : []),
        ...(claimed > 0 ? ["calls under its cgroup came from a process outside its pod's IPC namespace or in a user namespace of its own; they are not counted"] : []),
      ];
      return {
        syscalls: session.recorder.syscalls(id),
        ia32: session.recorder.madeIa32Calls(id),
        unnamed: session.recorder.unnamedCalls(id),
        lost: lost + unattributed + dropped + claimed,
        ...(why.length > 0 ? { incomplete: `since it was created: ${why.join(', ')}` } : {}),
      };
    },
    forget: (id) => {
      session.recorder.forget(id);
      bases.delete(id);
    },
    maintain: async (recorded) => {
      if (!recorded) return;
      session.recorder.prune(recorded);
      completeBegan = pollBegan;
      for (const id of bases.keys()) if (!recorded.has(id)) bases.delete(id);
    },
    close: () => session.close(),
  };
}

/**
 * eBPF: one bpftrace counting every namespace, dumped every poll. A pod is known by its
 * sandbox's IPC namespace (read from the sandbox pid), a container by the init pid seen while
 * it ran (see callsOfContainer). The kernel maps only grow, so they are emptied (bpftrace
 * restarted) when no recorded container is running and they are more than half full.
 */
export async function bpfCalls(cri: RuntimeCalls, log: Log, startCounter: () => Promise<Counter>): Promise<CallSource> {
  // The containers the runtime lists once the counter is attached (at its start and each
  // restart): their first calls may predate it. Known by id, not by created_at, which is the
  // runtime's wall clock: a step of it back after a restart made every later container
  // "created before the counter" (incomplete), one back before it let a container that existed
  // then pass for a new one (its first calls missing). undefined while no listing after the
  // last start has succeeded: the next housekeeping or report lists (a report fails until
  // then), and containers created meanwhile count as predating the counter.
  let predating: Set<string> | undefined;
  const listPredating = async (): Promise<Set<string>> => (predating ??= await containerIds(cri));
  const start = async () => {
    const started = await startCounter();
    predating = undefined;
    await listPredating().catch((e: Error) => log({ level: 'warning', msg: 'containers not listed after the eBPF counter started; listed at the next poll', error: e.message }));
    return started;
  };
  let counter = await start();
  const pods = new Map<string, PodNamespaces>();
  const pids = new Map<string, number>();
  // Per pod, the mount namespaces reports took (the last 64): a container without a pid cannot
  // take one. Per container awaiting its report, the one its calls were read from: the retry of
  // a report that failed after that reads the same, its own, not none (it is assigned) nor one
  // that appeared in the pod since (a restarted container's); and no other container without a
  // pid can take it while that report waits, however long, even once the pod's last 64 no
  // longer name it. Released when the daemon forgets the container (reported or given up), the
  // namespace staying assigned (docs/recording.md, step 3).
  const assigned = new Map<string, MountNamespace[]>();
  const took = new Map<string, MountNamespace>();
  const active = new Set<string>();
  let failure: Error | undefined;
  const pidOf = async (req: 'PodSandboxStatus' | 'ContainerStatus', field: string, id: string) => pidFromVerboseInfo(await cri.rt(req, { [field]: id, verbose: true }));
  /** The restart of a counter whose maps filled up; the reports that met it share one. */
  let restarting: Promise<void> | undefined;
  const restartFull = (full: Counter): Promise<void> => {
    if (counter !== full) return restarting ?? Promise.resolve();
    return (restarting ??= (async () => {
      try {
        // A failed counter's stop() refuses at once: its bpftrace is killed, not asked.
        full.close();
        counter = await start();
        assigned.clear();
        log({ level: 'warning', msg: 'eBPF maps full: bpftrace restarted; the containers running now are reported incomplete', mapKeys: full.mapKeys });
      } catch (e) {
        failure = e as Error;
      } finally {
        restarting = undefined;
      }
    })());
  };
  const source: CallSource = {
    source: 'bpftrace',
    get failure() {
      return failure;
    },
    pollStarts: () => undefined,
    seen: async (sb, id, running) => {
      active.add(id);
      if (!pods.has(sb)) {
        const pause = await pidOf('PodSandboxStatus', 'pod_sandbox_id', sb);
        if (pause !== undefined) pods.set(sb, { ipc: namespaceOf(pause, 'ipc'), pauseMnt: namespaceOf(pause, 'mnt') });
      }
      if (running && !pids.has(id)) {
        const pid = await pidOf('ContainerStatus', 'container_id', id);
        if (pid !== undefined) pids.set(id, pid);
      }
    },
    of: async (sb, id) => {
      if ((await listPredating()).has(id)) return { syscalls: new Set(), ia32: false, unnamed: [], lost: 1, incomplete: 'it existed when the eBPF counter last started: its first calls may be missing' };
      const pod = pods.get(sb);
      if (!pod) return { syscalls: new Set(), ia32: false, unnamed: [], lost: 1, incomplete: 'the pod sandbox pid (its IPC namespace) was never seen' };
      let dump;
      const reading = counter;
      try {
        dump = await reading.nextDump();
      } catch (e) {
        if (!mapFull(e)) {
          failure = e as Error;
          throw e;
        }
        // Every seccomp-filtered process on the node counts in the maps, recorded or not: one
        // tenant's containers can fill them. The counter starts again empty, and the containers
        // running now are reported incomplete (they predate it), instead of the daemon stopping
        // and every recording on the node losing its results.
        await restartFull(reading);
        return { syscalls: new Set(), ia32: false, unnamed: [], lost: 1, incomplete: `the eBPF maps filled up (${reading.mapKeys} keys; every seccomp-filtered process on the node counts): calls may be missing` };
      }
      const own = took.get(id);
      // A namespace whose first pid is another container's init is that container's, reported or
      // not: a container that made no counted call (Unconfined, privileged, a start that failed
      // before its filter) must not take it as the pod's one namespace left.
      const otherInits = new Set([...pids].filter(([c]) => c !== id).map(([, p]) => p));
      const ofOthers = dump.firsts.filter((f) => otherInits.has(f.pid));
      const taken = [...(assigned.get(sb) ?? []), ...(own === undefined ? [...took.values(), ...ofOthers] : [])];
      const found = callsOfContainer(dump, pod, pids.get(id), taken, own);
      if (!found.ok) return { syscalls: new Set(), ia32: false, unnamed: [], lost: 1, incomplete: `the container's mount namespace: ${found.why}` };
      if (!took.has(id)) assigned.set(sb, [...(assigned.get(sb) ?? []).slice(-63), found.key]);
      took.set(id, found.key);
      const { names, unnamed, ia32 } = namesOf(found.counts);
      return { syscalls: names, ia32, unnamed, lost: 0 };
    },
    forget: (id) => {
      pids.delete(id);
      took.delete(id);
      active.delete(id);
    },
    maintain: async (recorded) => {
      await listPredating().catch(() => undefined);
      // A container the daemon no longer passes (gone from the runtime, and no report of it
      // to be made) is no longer recorded: it must not keep the maps from being emptied.
      if (recorded) for (const id of active) if (!recorded.has(id)) source.forget(id);
      if (pods.size > 1024) pods.clear();
      if (assigned.size > 1024) assigned.clear();
      // Full while no report read it (nothing recorded, or between reports): started again now.
      if (mapFull(counter.failed)) {
        await restartFull(counter);
        return;
      }
      if (active.size > 0 || counter.latest.counts.length < counter.mapKeys / 2) return;
      const idle = counter;
      try {
        await idle.stop();
        counter = await start();
        assigned.clear();
        log({ msg: 'eBPF maps emptied (bpftrace restarted) while nothing was being recorded' });
      } catch (e) {
        // Its last dump, awaited by stop(), may be the one that filled the maps.
        if (mapFull(e)) await restartFull(idle);
        else failure = e as Error;
      }
    },
    close: () => counter.close(),
  };
  return source;
}

/** The counter's refusal of a dump from maps that filled up (BpfCounter: calls were dropped). */
function mapFull(e: unknown): boolean {
  return e instanceof SpokeError && e.code === 'FailedPrecondition' && e.reason === 'INCOMPLETE_RECORDING';
}

/** Starts the backend's call source; `log` gets its events (the daemon's stderr log). */
export function startCalls(backend: RecordingBackend, cri: RuntimeCalls, pollMs: number, log: Log): Promise<CallSource> {
  if (backend === 'bpf') return bpfCalls(cri, log, () => BpfCounter.start({ dumpEveryMs: pollMs, mapKeys: DEFAULT_MAP_KEYS }));
  return Promise.resolve(auditCalls(RecordingSession.start({ logger: { log: (level, msg, fields) => log({ level, msg, ...fields }) } })));
}
