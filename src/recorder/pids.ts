// pid → container, keyed with the process start time so a reused pid never inherits the
// previous owner's container.
//
// How a record is attributed (records arrive after the call, possibly after the caller exited):
// 1. The live holder of the pid is read from /proc/<pid>/stat (start time, field 22). When it
//    started no later than the record was written (audit timestamp less the boot time; audit.ts
//    recordTimeUs), it is the caller: its container id (the last 64-hex name in
//    /proc/<pid>/cgroup) is cached under (pid, start).
// 2. Otherwise (exited, or the pid already belongs to a newer process) the cached entry of the
//    pid is used only if nothing can have taken the pid since that entry was last seen alive:
//    the host's pid allocator (last pid in /proc/loadavg, allocated cyclically up to pid_max)
//    has not passed over the pid since then, and that was at most MAX_DEAD_AGE_MS ago.
// 3. Else the record is unattributed (counted, never guessed).
// A cgroup path is only a name: a host user with a delegated cgroup subtree (systemd's user
// manager, rootless podman) can make a directory named after any container and move into it. So
// a process counts as the container its cgroup names only while it is in a pod's IPC namespace
// (not the host's) and in the host's user namespace: a pod's containers share their sandbox's IPC
// namespace, made by the runtime as root, and an unprivileged process can join none and make one
// only inside a user namespace of its own. Otherwise its records are `claimed`: never the
// container's, and that container's recording is reported incomplete rather than given calls it
// did not make. hostIPC pods, pods with user namespaces (hostUsers: false) and processes that made
// a user namespace of their own are claimed too (docs/recording-backends.md).
// Limits: a process that makes its calls and exits before its first record is read (a sub-ms
// helper forked by a shell) was never seen alive and stays unattributed; start times have
// clock-tick (10 ms) resolution, so a pid reused within one tick of a record is treated as the
// same process; a wall clock stepped forward while recording widens that window by the step.
// Caches are bounded (LRU by insertion).

import { readFileSync, readlinkSync } from 'node:fs';

export interface PidIdentity {
  pid: number;
  /** Field 22 of /proc/<pid>/stat, clock ticks since boot. */
  startTicks: number;
  /** 64-hex container id, or undefined for a process outside any container. */
  containerId: string | undefined;
  /** Its cgroup names this container, whose namespaces it is not in (see above): `claimed`. */
  claimed?: true;
}

/**
 * `claimed`: the process's cgroup names the container, but it is not in that container's
 * namespaces (see the top of this file): never the container's calls, and a recording of that
 * container is incomplete; no one else's concern.
 */
export type Attribution = { kind: 'container'; containerId: string } | { kind: 'claimed'; containerId: string } | { kind: 'host' } | { kind: 'unattributed'; reason: string };

export interface PidResolverOptions {
  procRoot?: string;
  maxEntries?: number;
  /** USER_HZ; 100 on every Linux architecture that matters here. */
  clockTicksPerSecond?: number;
  /** Monotonic µs since boot "now" (for entry age); defaults to /proc/uptime. */
  nowUs?: () => number;
  read?: (path: string) => string;
  /** readlink, for /proc/<pid>/ns/*. */
  readLink?: (path: string) => string;
}

const CONTAINER_ID = /[0-9a-f]{64}/g;
export const MAX_DEAD_AGE_MS = 10_000;
const RESERVED_PIDS = 300;

/**
 * The container of a /proc/<pid>/cgroup text (containerd, CRI-O and Docker name cgroups by 64-hex
 * ids). Below the kubelet's pods hierarchy (`kubepods`), the first id: a container that may write
 * its own cgroup can make children named as it likes (another container's id), and a node that is
 * itself a container (kind) has its own id above `kubepods`. Elsewhere (a runtime's own parent,
 * such as containerd's `/k8s.io/<id>`), the last id.
 */
export function containerIdFromCgroup(text: string): string | undefined {
  const bounded = text.slice(0, 64 * 1024);
  for (const line of bounded.split('\n')) {
    const at = line.indexOf('kubepods');
    if (at < 0) continue;
    const first = line.slice(at).match(CONTAINER_ID)?.[0];
    if (first !== undefined) return first;
  }
  let last: string | undefined;
  for (const m of bounded.matchAll(CONTAINER_ID)) last = m[0];
  return last;
}

/** Start time (field 22) from /proc/<pid>/stat text; parsed after the last ')' (comm may hold any bytes). */
export function startTicksFromStat(text: string): number | undefined {
  const close = text.lastIndexOf(')');
  if (close < 0) return undefined;
  const fields = text.slice(close + 2).split(' ');
  // fields[0] is field 3 (state), so field 22 is fields[19].
  const v = fields[19];
  return v !== undefined && /^\d{1,20}$/.test(v) ? Number(v) : undefined;
}

interface Entry extends PidIdentity {
  /** µs since boot when last read alive, and the pid allocator's cursor then. */
  aliveAtUs: number;
  /** Where the pid allocator was, and how far it had travelled in total, when last seen alive. */
  cursorAtAlive: number | undefined;
  traveledAtAlive: number;
}

export class PidResolver {
  private readonly procRoot: string;
  private readonly maxEntries: number;
  private readonly ticks: number;
  private readonly nowUs: () => number;
  private readonly read: (path: string) => string;
  private readonly readLink: (path: string) => string;
  /** The host's IPC namespaces (pid 1's, where it can be read, and this process's) and user namespace, read once. */
  private hostNamespaces: { ipc: ReadonlySet<string>; user: string } | undefined;
  private readonly entries = new Map<number, Entry>();
  private pidMax: number | undefined;
  private lastCursor: number | undefined;
  /** Pids the allocator has stepped over since the first sample (sampled on every call). */
  private traveled = 0;

  constructor(opts: PidResolverOptions = {}) {
    this.procRoot = opts.procRoot ?? '/proc';
    this.maxEntries = opts.maxEntries ?? 4096;
    this.ticks = opts.clockTicksPerSecond ?? 100;
    this.read = opts.read ?? ((p) => readFileSync(p, 'utf8'));
    this.readLink = opts.readLink ?? ((p) => readlinkSync(p));
    this.nowUs = opts.nowUs ?? (() => Math.round(Number(this.read(`${this.procRoot}/uptime`).split(' ')[0]) * 1e6));
  }

  get size(): number {
    return this.entries.size;
  }

  /** The live process holding `pid`, or undefined when there is none (or it cannot be read). */
  identify(pid: number): PidIdentity | undefined {
    try {
      const startTicks = startTicksFromStat(this.read(`${this.procRoot}/${pid}/stat`));
      if (startTicks === undefined) return undefined;
      const named = containerIdFromCgroup(this.read(`${this.procRoot}/${pid}/cgroup`));
      const claimed = named !== undefined && !this.inPodNamespaces(pid);
      // The pid may have been reused between the reads: read stat again.
      if (startTicksFromStat(this.read(`${this.procRoot}/${pid}/stat`)) !== startTicks) return undefined;
      return claimed ? { pid, startTicks, containerId: named, claimed } : { pid, startTicks, containerId: named };
    } catch {
      return undefined;
    }
  }

  /** In a pod's IPC namespace and the host's user namespace (see the top of this file). */
  private inPodNamespaces(pid: number): boolean {
    const host = (this.hostNamespaces ??= this.readHostNamespaces());
    return !host.ipc.has(this.readLink(`${this.procRoot}/${pid}/ns/ipc`)) && this.readLink(`${this.procRoot}/${pid}/ns/user`) === host.user;
  }

  /**
   * The recorder runs in the host's namespaces (the systemd unit; a DaemonSet pod needs hostPID
   * and hostIPC). pid 1 is the host's init where /proc shows it; some sandboxes refuse reading its
   * links even to root, and then this process's own namespaces stand for the host's.
   */
  private readHostNamespaces(): { ipc: ReadonlySet<string>; user: string } {
    const own = { ipc: this.readLink(`${this.procRoot}/self/ns/ipc`), user: this.readLink(`${this.procRoot}/self/ns/user`) };
    try {
      return { ipc: new Set([own.ipc, this.readLink(`${this.procRoot}/1/ns/ipc`)]), user: this.readLink(`${this.procRoot}/1/ns/user`) };
    } catch {
      return { ipc: new Set([own.ipc]), user: own.user };
    }
  }

  /** Records `pid` as seen alive now (e.g. a container's init pid learnt from the runtime). */
  observe(pid: number): PidIdentity | undefined {
    const id = this.identify(pid);
    if (id) this.remember(id);
    return id;
  }

  /** Attributes a record of `pid` written at `recordUs` (µs since boot; undefined = unknown). */
  attribute(pid: number, recordUs: number | undefined): Attribution {
    this.sample();
    const live = this.identify(pid);
    if (live && (recordUs === undefined || this.startUs(live.startTicks) <= recordUs + this.tickUs())) {
      this.remember(live);
      return attribution(live);
    }
    const entry = this.entries.get(pid);
    if (!entry || (live && live.startTicks === entry.startTicks)) return { kind: 'unattributed', reason: 'exited before it was seen' };
    if (recordUs !== undefined && this.startUs(entry.startTicks) > recordUs + this.tickUs()) return { kind: 'unattributed', reason: 'record older than the cached process' };
    if (recordUs === undefined || recordUs > entry.aliveAtUs) {
      // The process was last seen alive before the record: safe only if the pid was not reused since.
      if ((live && live.startTicks !== entry.startTicks) || !this.notReusedSince(entry)) return { kind: 'unattributed', reason: 'pid may have been reused' };
    }
    return attribution(entry);
  }

  private remember(id: PidIdentity): void {
    this.sample();
    const entry: Entry = { ...id, aliveAtUs: this.safeNow(), cursorAtAlive: this.lastCursor, traveledAtAlive: this.traveled };
    this.entries.delete(id.pid);
    this.entries.set(id.pid, entry);
    while (this.entries.size > this.maxEntries) this.entries.delete(this.entries.keys().next().value as number);
  }

  /** Samples the pid allocator; call often (every poll) so no full cycle fits between samples. */
  sample(): void {
    const c = this.cursor();
    const pidMax = this.readPidMax();
    if (c === undefined || pidMax === undefined) return;
    if (this.lastCursor !== undefined) this.traveled += cyclicDistance(this.lastCursor, c, pidMax);
    this.lastCursor = c;
  }

  private notReusedSince(entry: Entry): boolean {
    const now = this.safeNow();
    if (now - entry.aliveAtUs > MAX_DEAD_AGE_MS * 1000) return false;
    const pidMax = this.readPidMax();
    if (entry.cursorAtAlive === undefined || pidMax === undefined) return false;
    return !passedOver(entry.cursorAtAlive, this.traveled - entry.traveledAtAlive, entry.pid, pidMax);
  }

  private startUs(ticks: number): number {
    return (ticks * 1e6) / this.ticks;
  }

  private tickUs(): number {
    return 1e6 / this.ticks;
  }

  private safeNow(): number {
    try {
      return this.nowUs();
    } catch {
      return 0;
    }
  }

  /** The last pid the kernel allocated (5th field of /proc/loadavg). */
  private cursor(): number | undefined {
    try {
      const v = this.read(`${this.procRoot}/loadavg`).trim().split(' ')[4];
      return v !== undefined && /^\d{1,10}$/.test(v) ? Number(v) : undefined;
    } catch {
      return undefined;
    }
  }

  private readPidMax(): number | undefined {
    if (this.pidMax === undefined) {
      try {
        this.pidMax = Number(this.read(`${this.procRoot}/sys/kernel/pid_max`).trim());
      } catch {
        return undefined;
      }
    }
    return this.pidMax;
  }
}

function attribution(id: PidIdentity): Attribution {
  if (id.containerId === undefined) return { kind: 'host' };
  return { kind: id.claimed ? 'claimed' : 'container', containerId: id.containerId };
}

/** Steps a cyclic allocator takes from `from` to `to` (upwards, wrapping from pid_max-1 to RESERVED_PIDS). */
export function cyclicDistance(from: number, to: number, pidMax: number): number {
  return to >= from ? to - from : pidMax - from + Math.max(0, to - RESERVED_PIDS + 1);
}

/**
 * Whether an allocator that stood at `from` and has since taken `steps` steps may have handed
 * out `pid` (pids below RESERVED_PIDS are only handed out at boot: treated as passed once it moved).
 */
export function passedOver(from: number, steps: number, pid: number, pidMax: number): boolean {
  if (steps <= 0) return false;
  if (pid < RESERVED_PIDS || pid >= pidMax) return true;
  const need = cyclicDistance(from, pid, pidMax);
  return steps >= (need === 0 ? pidMax - RESERVED_PIDS : need);
}

/** The wall-clock time of boot: /proc/uptime is the clock kmsg timestamps and process start times use. */
export function bootWallMs(): number {
  return Date.now() - Math.round(Number(readFileSync('/proc/uptime', 'utf8').split(' ')[0]) * 1000);
}
