// Per-container syscall sets from audit records, with caps on every map.

import { isAuditLossNotice, parseAuditRecord, recordTimeUs, SECCOMP_RET_LOG, type AuditRecord } from './audit.js';
import type { Attribution } from './pids.js';
import { AUDIT_ARCH_I386 } from './syscalls.js';
import type { AuditSource } from './source.js';

export interface RecorderLimits {
  /** Containers tracked at once; records of further containers are counted as dropped. */
  maxContainers: number;
  /** Distinct syscalls per container (the x86 tables have fewer than 600 names). */
  maxSyscallsPerContainer: number;
  /** Distinct unattributed pids remembered for the report. */
  maxUnattributedPids: number;
}

export const DEFAULT_LIMITS: RecorderLimits = { maxContainers: 256, maxSyscallsPerContainer: 1024, maxUnattributedPids: 1024 };

export interface RecorderStats {
  lines: number;
  records: number;
  attributed: number;
  /** Records from processes outside any container, or from containers not being recorded. */
  ignored: number;
  unattributed: number;
  /**
   * Unattributed records of calls a logging profile let through (SECCOMP_RET_LOG, or no code):
   * the kind a recorded container makes, so any of them may be its (a forked child that exited
   * before it was seen).
   */
  unattributedLogged: number;
  /** Records of a process whose cgroup names a wanted container it is not in (pids.ts `claimed`). */
  claimed: number;
  /** Records whose number has no name in the table of their arch (x32, unknown arch, new calls). */
  unnamed: number;
  /**
   * Records of a recorded container's calls the filter refused (ERRNO, TRAP or KILL: the node
   * baseline's own denial under the shim's logging profile, logged when the baseline asks for it
   * or kills). Not recorded: the call did not run, and a profile that allowed it would lose it
   * again in the merge with the same baseline.
   */
  refused: number;
  droppedContainers: number;
  droppedSyscalls: number;
  /** Kernel notices of lost audit records (printk suppression, audit_lost) plus source losses. */
  lossNotices: number;
}

export interface Attributor {
  attribute(pid: number, recordUs: number | undefined): Attribution;
}

export class SyscallRecorder {
  readonly stats: RecorderStats = { lines: 0, records: 0, attributed: 0, ignored: 0, unattributed: 0, unattributedLogged: 0, claimed: 0, unnamed: 0, refused: 0, droppedContainers: 0, droppedSyscalls: 0, lossNotices: 0 };
  private readonly sets = new Map<string, Set<string>>();
  /** Containers whose records were not kept (the table was full): their recording is incomplete. */
  private readonly dropped = new Set<string>();
  /** More containers were dropped than `dropped` holds: see wasDropped. */
  private droppedOverflow = false;
  /** The containers tracked and not wanted at the last prune. */
  private trackedAtPrune = new Set<string>();
  /**
   * Containers a prune forgot as not wanted (the most recent, bounded): their later records are
   * ignored, so that one that keeps logging (an audit-mode rule, a filter of its own with
   * SCMP_ACT_LOG) does not take its place in the table again at its next record.
   */
  private readonly unwanted = new Set<string>();
  /** Containers that made a named 32-bit (ia32) call: their profile needs the i386 ABI. */
  private readonly ia32 = new Set<string>();
  private readonly unnamed = new Map<string, Set<string>>();
  readonly unattributedPids = new Set<number>();
  /** Containers whose cgroup a process outside their namespaces was in (pids.ts `claimed`). */
  private readonly claimed = new Set<string>();
  /** More containers were claimed than `claimed` holds: every recording counts as claimed then. */
  private claimedOverflow = false;
  private readonly limits: RecorderLimits;

  /**
   * `bootWallMs`: the wall-clock time of boot (bootWallMs() in pids.ts), so that an audit.log
   * record, which has no kmsg timestamp, is attributed at its own time too.
   */
  constructor(
    private readonly attributor: Attributor,
    opts: { limits?: Partial<RecorderLimits>; wants?: (containerId: string) => boolean; bootWallMs?: number } = {},
  ) {
    this.limits = { ...DEFAULT_LIMITS, ...opts.limits };
    this.wants = opts.wants ?? (() => true);
    this.bootWallMs = opts.bootWallMs;
  }

  private readonly bootWallMs: number | undefined;

  private readonly wants: (containerId: string) => boolean;

  /** Feeds one raw line (kmsg record or audit.log line). */
  addLine(line: string): void {
    this.stats.lines++;
    const rec = parseAuditRecord(line);
    if (!rec) {
      if (isAuditLossNotice(line)) this.stats.lossNotices++;
      return;
    }
    this.addRecord(rec);
  }

  addRecord(rec: AuditRecord): void {
    this.stats.records++;
    const who = this.attributor.attribute(rec.pid, recordTimeUs(rec, this.bootWallMs));
    if (who.kind === 'unattributed') {
      this.stats.unattributed++;
      if (rec.code === undefined || rec.code === SECCOMP_RET_LOG) this.stats.unattributedLogged++;
      if (this.unattributedPids.size < this.limits.maxUnattributedPids) this.unattributedPids.add(rec.pid);
      return;
    }
    if (who.kind === 'host' || !this.wants(who.containerId) || this.unwanted.has(who.containerId)) {
      this.stats.ignored++;
      return;
    }
    if (who.kind === 'claimed') {
      // Not its calls: the recording of the container named is incomplete, no other's.
      this.stats.claimed++;
      if (this.claimed.size < this.limits.maxContainers) this.claimed.add(who.containerId);
      else this.claimedOverflow = true;
      return;
    }
    this.stats.attributed++;
    if (rec.code !== undefined && !letThrough(rec.code)) {
      this.stats.refused++;
      return;
    }
    const id = who.containerId;
    if (rec.name === undefined) {
      this.stats.unnamed++;
      this.bounded(this.unnamed, id, `${rec.arch.toString(16)}:${rec.syscall}`);
      return;
    }
    this.bounded(this.sets, id, rec.name);
    if (rec.arch === AUDIT_ARCH_I386 && this.sets.has(id)) this.ia32.add(id);
  }

  private bounded(map: Map<string, Set<string>>, id: string, value: string): void {
    let set = map.get(id);
    if (!set) {
      if (this.sets.size + (map === this.sets ? 0 : this.unnamed.size) >= this.limits.maxContainers && !this.sets.has(id) && !this.unnamed.has(id)) {
        this.stats.droppedContainers++;
        // Past the cap, every container not tracked counts as dropped (wasDropped): a mark
        // forgotten would let a partial recording pass for a whole one.
        if (this.dropped.size >= this.limits.maxContainers * 16) this.droppedOverflow = true;
        else this.dropped.add(id);
        return;
      }
      set = new Set();
      map.set(id, set);
    }
    if (set.has(value)) return;
    if (set.size >= this.limits.maxSyscallsPerContainer) {
      this.stats.droppedSyscalls++;
      return;
    }
    set.add(value);
  }

  /** Feeds everything the source has now. */
  drain(source: AuditSource): number {
    const lines = source.poll();
    for (const l of lines) this.addLine(l);
    return lines.length;
  }

  containers(): string[] {
    return [...this.sets.keys()].sort();
  }

  syscalls(containerId: string): Set<string> {
    return new Set(this.sets.get(containerId) ?? []);
  }

  /** Whether a process outside the container's namespaces made calls under its cgroup name. */
  wasClaimed(containerId: string): boolean {
    return this.claimed.has(containerId) || this.claimedOverflow;
  }

  /** Whether records of the container were dropped because the table was full. */
  wasDropped(containerId: string): boolean {
    // One whose records are being ignored (unwanted) is asked too: a report may come before the
    // prune that would find it wanted after all.
    return this.dropped.has(containerId) || this.unwanted.has(containerId) || (this.droppedOverflow && !this.sets.has(containerId) && !this.unnamed.has(containerId));
  }

  /**
   * Forgets the containers that `wanted` (those a poll just found being recorded) does not name,
   * so that the node's other containers whose calls are logged cannot fill the table: only those
   * already tracked at the previous prune, since a container made since may be one the next poll
   * wants (its first records arrive before any poll sees it).
   */
  prune(wanted: ReadonlySet<string>): void {
    for (const id of this.trackedAtPrune) {
      if (wanted.has(id)) continue;
      this.forget(id);
      this.unwanted.delete(id);
      this.unwanted.add(id);
      if (this.unwanted.size > this.limits.maxContainers * 16) this.unwanted.delete(this.unwanted.values().next().value!);
    }
    // Wanted after all (a poll that saw it late): the records ignored meanwhile are missing.
    for (const id of wanted) {
      if (!this.unwanted.delete(id)) continue;
      if (this.dropped.size >= this.limits.maxContainers * 16) this.droppedOverflow = true;
      else this.dropped.add(id);
    }
    this.trackedAtPrune = new Set([...this.sets.keys(), ...this.unnamed.keys(), ...this.dropped, ...this.claimed].filter((id) => !wanted.has(id)));
  }

  /** Whether the container made a named 32-bit (ia32) call. */
  madeIa32Calls(containerId: string): boolean {
    return this.ia32.has(containerId);
  }

  /** `arch:number` of calls without a name in our tables (reported, never silently dropped). */
  unnamedCalls(containerId: string): string[] {
    return [...(this.unnamed.get(containerId) ?? [])].sort();
  }

  forget(containerId: string): void {
    this.sets.delete(containerId);
    this.ia32.delete(containerId);
    this.dropped.delete(containerId);
    this.unnamed.delete(containerId);
    this.claimed.delete(containerId);
  }
}

// The action part of a seccomp return value (SECCOMP_RET_ACTION_FULL), and the actions under
// which a call may run: LOG; USER_NOTIF and TRACE, where a listener or tracer may let it through
// (a baseline's NOTIFY or TRACE verdict comes back in the merge with the same baseline).
const SECCOMP_RET_ACTION_FULL = 0xffff0000;
const SECCOMP_RET_USER_NOTIF = 0x7fc00000;
const SECCOMP_RET_TRACE = 0x7ff00000;

/** Whether a record's code says the filter may have let the call run. */
function letThrough(code: number): boolean {
  const action = (code & SECCOMP_RET_ACTION_FULL) >>> 0;
  return action === SECCOMP_RET_LOG || action === SECCOMP_RET_USER_NOTIF || action === SECCOMP_RET_TRACE;
}
