// What `spoke denials` reports (docs/audit-mode.md), without I/O: the kernel's SCMP_ACT_LOG
// audit records counted per container and syscall, and, in the watching mode, the records of
// processes that exited before /proc could name their container, attributed through the
// namespaces the eBPF exit map kept for them (bpf-program.ts, `exits` form). Anything that
// could belong to two containers is counted as unattributed with the reason, never guessed.

import type { Digest } from '../core/digest.js';
import { monotonicNow, type MonotonicNow } from '../core/runtime.js';
import { isAuditLossNotice, parseAuditRecord, recordTimeUs, SECCOMP_RET_LOG, type AuditRecord } from './audit.js';
import type { MountNamespace } from './bpf-program.js';
import type { Attribution } from './pids.js';

export interface ContainerInfo {
  podNamespace: string;
  podName: string;
  container: string;
}

export interface DenialEntry {
  containerId: string;
  podNamespace: string;
  podName: string;
  container: string;
  syscall: string;
  /** The artifact's digest reference as pulled (audit entries only). */
  reference?: string;
  digest?: Digest;
  count: number;
}

export interface UnattributedEntry {
  syscall: string;
  count: number;
  /** Why, per reason (e.g. "exited before it was seen"). */
  reasons: Record<string, number>;
}

export interface DenialReport {
  /** Window start, ISO 8601. */
  since: string;
  /** The kernel log read; `bpf`: read while watching, exited processes named through eBPF. */
  source: { kind: 'kmsg' | 'audit-log' | 'bpf'; path: string };
  /** SCMP_ACT_LOG records in the window. */
  records: number;
  /** Containers under a spoke artifact: what audit mode let through. */
  audit: DenialEntry[];
  /** Containers under no spoke artifact (recordings, other logging profiles). */
  other: DenialEntry[];
  unattributed: UnattributedEntry[];
  /** Records of processes outside any container. */
  host: number;
  /** Kernel notices that records were dropped (printk rate limit, audit backlog) in the input. */
  lost: number;
  warnings: string[];
}

export type DenialSummary = Omit<DenialReport, 'source' | 'warnings'>;

/** Who is who at report time: container → artifact (the shim's in-use set), → pod. */
export interface Names {
  holders: ReadonlyMap<string, Digest>;
  references: ReadonlyMap<Digest, string>;
  containers: ReadonlyMap<string, ContainerInfo>;
}

/** One kernel log line: a SCMP_ACT_LOG record in the window, a loss notice, or nothing of ours. */
export type LogLine = { kind: 'record'; pid: number; syscall: string; recordUs: number } | { kind: 'lost' } | undefined;

/** `inWindow`: whether a record is in the report's window. */
export function logLineOf(line: string, inWindow: (rec: AuditRecord) => boolean, bootWallMs: number): LogLine {
  const rec = parseAuditRecord(line);
  if (rec === undefined) return isAuditLossNotice(line) ? { kind: 'lost' } : undefined;
  if (rec.code !== SECCOMP_RET_LOG || !inWindow(rec)) return undefined;
  // kmsg gives µs since boot; an audit.log record only its wall-clock time.
  const recordUs = recordTimeUs(rec, bootWallMs) ?? 0;
  return { kind: 'record', pid: rec.pid, syscall: rec.name ?? `#${rec.syscall}`, recordUs };
}

/** Distinct syscall numbers without a name a tally keeps apart (then `#other`). */
const MAX_UNNAMED_SYSCALLS = 1024;

/** Why a `claimed` call is no container's (src/recorder/pids.ts). */
const CLAIMED_REASON = 'its cgroup names a container whose namespaces it is not in';

/** Counts per container and syscall, per unattributed syscall and reason, and host calls. */
export class DenialTally {
  records = 0;
  lost = 0;
  private host = 0;
  private readonly counts = new Map<string, { containerId: string; syscall: string; count: number }>();
  private readonly unattributed = new Map<string, UnattributedEntry>();

  /** Syscall numbers no table names seen so far (`#N`): the caller picks them, so they are capped. */
  private readonly unnamed = new Set<string>();

  add(who: Attribution, name: string, n = 1): void {
    // Past MAX_UNNAMED_SYSCALLS distinct `#N`, the rest are counted as one `#other`.
    let syscall = name;
    if (syscall.startsWith('#') && !this.unnamed.has(syscall)) {
      if (this.unnamed.size >= MAX_UNNAMED_SYSCALLS) syscall = '#other';
      else this.unnamed.add(syscall);
    }
    if (who.kind === 'host') {
      this.host += n;
    } else if (who.kind === 'unattributed' || who.kind === 'claimed') {
      const reason = who.kind === 'claimed' ? CLAIMED_REASON : who.reason;
      let u = this.unattributed.get(syscall);
      if (!u) this.unattributed.set(syscall, (u = { syscall, count: 0, reasons: {} }));
      u.count += n;
      u.reasons[reason] = (u.reasons[reason] ?? 0) + n;
    } else {
      const key = `${who.containerId}\0${syscall}`;
      const e = this.counts.get(key) ?? { containerId: who.containerId, syscall, count: 0 };
      e.count += n;
      this.counts.set(key, e);
    }
  }

  summary(sinceMs: number, names: Names): DenialSummary {
    const all: DenialEntry[] = [...this.counts.values()].map(({ containerId, syscall, count }) => {
      const info = names.containers.get(containerId);
      const digest = names.holders.get(containerId);
      return {
        containerId,
        podNamespace: info?.podNamespace ?? '',
        podName: info?.podName ?? '',
        container: info?.container ?? '',
        syscall,
        ...(digest !== undefined ? { reference: names.references.get(digest) ?? digest, digest } : {}),
        count,
      };
    });
    const byCount = <T extends { count: number; syscall: string }>(a: T, b: T) => b.count - a.count || a.syscall.localeCompare(b.syscall);
    all.sort(byCount);
    return {
      since: new Date(sinceMs).toISOString(),
      records: this.records,
      audit: all.filter((e) => e.digest !== undefined),
      other: all.filter((e) => e.digest === undefined),
      unattributed: [...this.unattributed.values()].sort(byCount),
      host: this.host,
      lost: this.lost,
    };
  }
}

export interface SummarizeInput extends Names {
  lines: Iterable<string>;
  /** Window start, wall-clock ms. */
  sinceMs: number;
  /** Wall-clock ms of boot (to turn audit(SEC.MS) times into µs since boot for the resolver). */
  bootWallMs: number;
  attribute: (pid: number, recordUs: number | undefined) => Attribution;
}

/** Counts SCMP_ACT_LOG records per container and syscall (`--since`). Pure but for `attribute`. */
export function summarizeDenials(input: SummarizeInput): DenialSummary {
  const tally = new DenialTally();
  for (const line of input.lines) {
    const l = logLineOf(line, (rec) => rec.auditTimeMs >= input.sinceMs, input.bootWallMs);
    if (l?.kind === 'lost') tally.lost++;
    if (l?.kind !== 'record') continue;
    tally.records++;
    tally.add(input.attribute(l.pid, l.recordUs), l.syscall);
  }
  return tally.summary(input.sinceMs, input);
}

/** A container's namespaces, read from its process while it ran. */
export interface SeenContainer {
  ipc: number;
  mnt: number;
}

/**
 * The owner of a namespace key: the one container seen with its (IPC, mount) inode pair, if the
 * pair shows up with one mount namespace id only among `keys` (inodes are reused, ids are not).
 * A pair of no container is the host's when its IPC namespace is the host's (when known).
 */
export function attributeNamespace(key: MountNamespace, keys: readonly MountNamespace[], seen: ReadonlyMap<string, SeenContainer>, hostIpc: number | undefined): Attribution {
  const owners = [...seen].filter(([, ns]) => ns.ipc === key.ipc && ns.mnt === key.mnt).map(([id]) => id);
  if (owners.length === 0) return key.ipc === hostIpc ? { kind: 'host' } : { kind: 'unattributed', reason: 'namespace of no container seen' };
  if (owners.length > 1) return { kind: 'unattributed', reason: 'namespace inodes reused by two containers seen' };
  const ids = new Set(keys.filter((k) => k.ipc === key.ipc && k.mnt === key.mnt).map((k) => k.mntId));
  if (ids.size > 1) return { kind: 'unattributed', reason: 'mount namespace inode reused during the watch' };
  return { kind: 'container', containerId: owners[0]! };
}

/** Exited processes as the eBPF exit map kept them. */
export type ExitKey = MountNamespace & { pid: number };

/**
 * The container of exited processes, through the namespaces their exits were seen with. Built
 * once per watch: exits grouped by pid, and each namespace pair judged once (a busy node's map
 * holds tens of thousands of exits, and as many records may wait for it).
 */
export class ExitAttribution {
  private readonly byPid = new Map<number, ExitKey[]>();
  private readonly byPair = new Map<string, Attribution>();

  constructor(
    private readonly exits: readonly ExitKey[],
    private readonly seen: ReadonlyMap<string, SeenContainer>,
    private readonly hostIpc: number | undefined,
  ) {
    for (const e of exits) {
      const list = this.byPid.get(e.pid);
      if (list) list.push(e);
      else this.byPid.set(e.pid, [e]);
    }
  }

  /** undefined when no exit of `pid` was seen. */
  of(pid: number): Attribution | undefined {
    const mine = this.byPid.get(pid);
    if (!mine) return undefined;
    const first = mine[0]!;
    if (mine.some((e) => e.ipc !== first.ipc || e.mnt !== first.mnt || e.mntId !== first.mntId)) return { kind: 'unattributed', reason: 'pid reused in other namespaces during the watch' };
    const pair = `${first.ipc}:${first.mnt}`;
    let who = this.byPair.get(pair);
    if (!who) this.byPair.set(pair, (who = attributeNamespace(first, this.exits, this.seen, this.hostIpc)));
    return who;
  }
}

/** The clocks a watch reads (tests give their own). */
export interface WatchClocks {
  /** Wall-clock ms, the kernel's clock for audit timestamps. */
  wall: () => number;
  monotonic: MonotonicNow;
}

const systemClocks: WatchClocks = { wall: () => Date.now(), monotonic: monotonicNow };

/**
 * `--for`: records counted as they are read, attributed through /proc while their process
 * lives; the others wait (per pid and syscall) for the exit map at the end of the watch.
 *
 * The lines come from the kernel log opened at its end at the start (openAuditSource), and
 * which are the watch's depends on what the log gives (docs/audit-mode.md):
 * - /dev/kmsg: all of them. The source reads on from its place at the open in the kernel's
 *   sequence, so each record it gives was printed after the start, whatever its audit
 *   timestamp says. That stamp is the kernel's wall clock: a step of it back stamps the denials
 *   made since "before the start", and one undone between two reads is seen by no sample of
 *   the clocks, so a bound on it would drop them. A call made just before the start that kauditd
 *   printed after it counts too.
 * - audit.log: only the wall-clock stamp, and auditd writes some records made before the start
 *   after it (they wait for kauditd, then for auditd): records stamped before `sinceMs` are left
 *   out. A step of the wall clock back during the watch would stamp every later denial "before
 *   the start", so the bound moves back by the largest step back seen (the drop of the wall
 *   clock against the monotonic one), sampled as each record is read, so after its call. Only a
 *   record made before the start and still queued when the clock stepped back can then count;
 *   the calls made during a step back undone between two reads are left out.
 */
export class LiveDenials {
  readonly tally = new DenialTally();
  private readonly pending = new Map<string, { pid: number; syscall: string; reason: string; count: number }>();
  /** The wall clock's lead on the monotonic clock at the start, and the least of it seen since. */
  private readonly startLead: number;
  private leastLead: number;

  constructor(
    private readonly sinceMs: number,
    private readonly bootWallMs: number,
    private readonly attribute: (pid: number, recordUs: number | undefined) => Attribution,
    /** Distinct (pid, syscall) pairs kept for the end; further ones are counted unattributed now. */
    private readonly maxPending = 65_536,
    private readonly clocks: WatchClocks = systemClocks,
  ) {
    this.startLead = this.leastLead = clocks.wall() - clocks.monotonic();
  }

  addLine(line: string): void {
    this.leastLead = Math.min(this.leastLead, this.clocks.wall() - this.clocks.monotonic());
    const bound = this.sinceMs - (this.startLead - this.leastLead);
    const l = logLineOf(line, (rec) => rec.kmsgSeq !== undefined || rec.auditTimeMs >= bound, this.bootWallMs);
    if (l?.kind === 'lost') this.tally.lost++;
    if (l?.kind !== 'record') return;
    this.tally.records++;
    const who = this.attribute(l.pid, l.recordUs);
    const key = `${l.pid}\0${l.syscall}`;
    const p = this.pending.get(key);
    if (who.kind !== 'unattributed') this.tally.add(who, l.syscall);
    else if (p) p.count++;
    else if (this.pending.size < this.maxPending) this.pending.set(key, { pid: l.pid, syscall: l.syscall, reason: who.reason, count: 1 });
    else this.tally.add(who, l.syscall);
  }

  /** Attributes the waiting records through the final exit map; the report's counts. */
  finish(exits: readonly ExitKey[], seen: ReadonlyMap<string, SeenContainer>, hostIpc: number | undefined, names: Names): DenialSummary {
    const exited = new ExitAttribution(exits, seen, hostIpc);
    for (const p of this.pending.values()) {
      this.tally.add(exited.of(p.pid) ?? { kind: 'unattributed', reason: p.reason }, p.syscall, p.count);
    }
    this.pending.clear();
    return this.tally.summary(this.sinceMs, names);
  }
}
