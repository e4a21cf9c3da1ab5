// `spoke denials`: the calls audit-mode profiles let through with SCMP_ACT_LOG (docs/audit-mode.md),
// read from the kernel's seccomp audit records (type=1326, code=SECCOMP_RET_LOG) in the window
// --since, attributed the way the recorder attributes them (src/recorder/pids.ts: pid → container
// through /proc, never guessed) and joined with the shim's in-use set (container → artifact) and
// the runtime (container → pod). The source is the recorder's: the audit log when auditd runs,
// else the kernel ring buffer (/dev/kmsg, read from its oldest record). Counting happens here,
// not in the shim: the shim never reads the kernel log.

import { closeSync, constants, openSync, readFileSync, readSync, statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { asSpokeError } from '../../core/errors.js';
import type { Digest } from '../../core/digest.js';
import { isAuditLossNotice, parseAuditRecord, SECCOMP_RET_LOG } from '../../recorder/audit.js';
import { RuntimeCriClient, type Msg } from '../../recorder/cri.js';
import { PidResolver, type Attribution } from '../../recorder/pids.js';
import { chooseAuditSource } from '../../recorder/source.js';
import { ProfileStore } from '../../store/store.js';
import { parseDuration } from '../../core/duration.js';
import { emit, parseCommand } from '../args.js';
import { UsageError } from '../errors.js';
import { nodeConfigOnly } from '../wiring.js';

const HELP = `usage: spoke denials [--config F] [--since DURATION] [--json]

Reports the calls that profiles admitted by a "mode: audit" policy rule logged instead of denying
(the kernel's seccomp audit records, type=1326, with SCMP_ACT_LOG), counted per container and
syscall, with the pod, the container name and the profile reference. Records come from the audit
log when auditd runs (/var/log/audit/audit.log, current file only), else from the kernel ring
buffer (/dev/kmsg), which holds only the most recent messages. Run as root.

Attribution is by the calling process: a process still alive is attributed through its cgroup.
A process that already exited (a short-lived child a shell forked, e.g. sh -c 'mkdir /tmp/x')
cannot be, and its records are counted as unattributed, per syscall, never guessed. Containers
that do not run under a spoke artifact (a recording under the logging profile, any other
profile with SCMP_ACT_LOG) are listed apart as "other".

options:
  --config F          node config (default /etc/spoke/config.yaml): store and runtime socket
  --since DURATION    only records from this long ago (30s, 10m, 1h, 2d; default 1h)
  --json              {since, source, records, audit: [...], other: [...], unattributed: [...],
                      host, lost, warnings} as JSON`;

/** Read at most this much of the audit log's end (a record is < 1 KiB; the kmsg buffer is bounded by the kernel). */
const MAX_AUDIT_LOG_BYTES = 64 * 1024 * 1024;

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
  source: { kind: 'kmsg' | 'audit-log'; path: string };
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

export interface SummarizeInput {
  lines: Iterable<string>;
  /** Window start, wall-clock ms. */
  sinceMs: number;
  /** Wall-clock ms of boot (to turn audit(SEC.MS) times into µs since boot for the resolver). */
  bootWallMs: number;
  attribute: (pid: number, recordUs: number | undefined) => Attribution;
  /** container id → artifact digest (the shim's in-use set). */
  holders: ReadonlyMap<string, Digest>;
  references: ReadonlyMap<Digest, string>;
  containers: ReadonlyMap<string, ContainerInfo>;
}

/** Counts SCMP_ACT_LOG records per container and syscall. Pure but for `attribute`. */
export function summarizeDenials(input: SummarizeInput): Omit<DenialReport, 'source' | 'warnings'> {
  const counts = new Map<string, DenialEntry>();
  const unattributed = new Map<string, UnattributedEntry>();
  let records = 0;
  let host = 0;
  let lost = 0;
  for (const line of input.lines) {
    const rec = parseAuditRecord(line);
    if (rec === undefined) {
      if (isAuditLossNotice(line)) lost++;
      continue;
    }
    if (rec.code !== SECCOMP_RET_LOG || rec.auditTimeMs < input.sinceMs) continue;
    records++;
    const syscall = rec.name ?? `#${rec.syscall}`;
    // kmsg gives µs since boot; an audit.log record only its wall-clock time.
    const recordUs = rec.kmsgTimeUs ?? Math.max(0, (rec.auditTimeMs - input.bootWallMs) * 1000);
    const who = input.attribute(rec.pid, recordUs);
    if (who.kind === 'host') {
      host++;
      continue;
    }
    if (who.kind === 'unattributed') {
      let u = unattributed.get(syscall);
      if (!u) unattributed.set(syscall, (u = { syscall, count: 0, reasons: {} }));
      u.count++;
      u.reasons[who.reason] = (u.reasons[who.reason] ?? 0) + 1;
      continue;
    }
    const key = `${who.containerId}\0${syscall}`;
    let e = counts.get(key);
    if (!e) {
      const info = input.containers.get(who.containerId);
      const digest = input.holders.get(who.containerId);
      e = {
        containerId: who.containerId,
        podNamespace: info?.podNamespace ?? '',
        podName: info?.podName ?? '',
        container: info?.container ?? '',
        syscall,
        ...(digest !== undefined ? { reference: input.references.get(digest) ?? digest, digest } : {}),
        count: 0,
      };
      counts.set(key, e);
    }
    e.count++;
  }
  const byCount = <T extends { count: number; syscall: string }>(a: T, b: T) => b.count - a.count || a.syscall.localeCompare(b.syscall);
  const all = [...counts.values()].sort(byCount);
  return {
    since: new Date(input.sinceMs).toISOString(),
    records,
    audit: all.filter((e) => e.digest !== undefined),
    other: all.filter((e) => e.digest === undefined),
    unattributed: [...unattributed.values()].sort(byCount),
    host,
    lost,
  };
}

/** Every record /dev/kmsg still holds, oldest first (records the kernel overwrote meanwhile are skipped). */
function readKmsg(path: string): string[] {
  const fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  const buf = Buffer.alloc(16 * 1024);
  const out: string[] = [];
  try {
    for (let i = 0; i < 1_000_000; i++) {
      let n: number;
      try {
        n = readSync(fd, buf, 0, buf.length, null);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === 'EPIPE') continue;
        if (code === 'EAGAIN' || code === 'EWOULDBLOCK') break;
        throw e;
      }
      if (n === 0) break;
      out.push(buf.toString('utf8', 0, n));
    }
  } finally {
    closeSync(fd);
  }
  return out;
}

async function readAuditLog(path: string): Promise<string[]> {
  const size = statSync(path).size;
  const text = (await readFile(path)).subarray(Math.max(0, size - MAX_AUDIT_LOG_BYTES)).toString('utf8');
  return text.split('\n');
}

/** container id → pod and container names, from the runtime (ListContainers, ListPodSandbox). */
async function containersOf(socket: string): Promise<Map<string, ContainerInfo>> {
  const client = new RuntimeCriClient(socket);
  try {
    const pods = new Map<string, { name: string; namespace: string }>();
    for (const p of ((await client.rt('ListPodSandbox', {}, 10_000)).items as Msg[] | undefined) ?? []) {
      const m = p.metadata as { name?: string; namespace?: string } | undefined;
      pods.set(String(p.id), { name: m?.name ?? '', namespace: m?.namespace ?? '' });
    }
    const out = new Map<string, ContainerInfo>();
    for (const c of ((await client.rt('ListContainers', {}, 10_000)).containers as Msg[] | undefined) ?? []) {
      const pod = pods.get(String(c.pod_sandbox_id));
      out.set(String(c.id), { podNamespace: pod?.namespace ?? '', podName: pod?.name ?? '', container: (c.metadata as { name?: string } | undefined)?.name ?? '' });
    }
    return out;
  } finally {
    client.close();
  }
}

function bootWallMs(): number {
  // /proc/uptime: seconds since boot, the clock the kmsg timestamps and process start times use.
  return Date.now() - Math.round(Number(readFileSync('/proc/uptime', 'utf8').split(' ')[0]) * 1000);
}

function human(r: DenialReport): string {
  const who = (e: DenialEntry) => `${e.podNamespace || '?'}/${e.podName || '?'}/${e.container || '?'} (${e.containerId.slice(0, 13)})`;
  const lines = [`seccomp calls logged instead of denied since ${r.since} (${r.records} records from ${r.source.path})`];
  if (r.audit.length === 0) lines.push('audit mode: none');
  for (const e of r.audit) lines.push(`${String(e.count).padStart(6)}  ${e.syscall.padEnd(16)} ${who(e)}  ${e.reference!}`);
  for (const e of r.other) lines.push(`${String(e.count).padStart(6)}  ${e.syscall.padEnd(16)} ${who(e)}  (other: not under a spoke artifact)`);
  for (const u of r.unattributed) {
    lines.push(`${String(u.count).padStart(6)}  ${u.syscall.padEnd(16)} unattributed: ${Object.entries(u.reasons).map(([k, v]) => `${k} ×${v}`).join(', ')}`);
  }
  if (r.host > 0) lines.push(`${String(r.host).padStart(6)}  (host processes, not in a container)`);
  if (r.lost > 0) lines.push(`warning: the kernel reported dropped audit records ${r.lost} time(s); counts are lower bounds`);
  for (const w of r.warnings) lines.push(`warning: ${w}`);
  return lines.join('\n');
}

export async function run(argv: string[]): Promise<number> {
  const { values, help } = parseCommand(argv, { config: { type: 'string' }, since: { type: 'string' }, json: { type: 'boolean' } }, HELP, [0, 0]);
  if (help) return 0;
  const window = parseDuration(values.since ?? '1h');
  if (window === undefined) throw new UsageError(`--since must look like 30s, 10m, 1h or 2d, got ${JSON.stringify(values.since)}`);
  const sinceMs = Date.now() - window;
  const config = await nodeConfigOnly(values);
  const warnings: string[] = [];
  try {
    if (!readFileSync('/proc/sys/kernel/seccomp/actions_logged', 'utf8').split(/\s+/).includes('log')) {
      warnings.push('/proc/sys/kernel/seccomp/actions_logged does not include "log": the kernel writes no record for SCMP_ACT_LOG');
    }
  } catch {
    /* not a seccomp kernel: the read below says what is missing */
  }
  const choice = chooseAuditSource();
  const lines = choice.kind === 'kmsg' ? readKmsg(choice.path) : await readAuditLog(choice.path);
  const store = new ProfileStore({ root: config.storeDir });
  const holders = new Map<string, Digest>();
  const references = new Map<Digest, string>();
  for (const [digest, list] of await store.inUse()) {
    for (const h of list) if (h.startsWith('container:')) holders.set(h.slice('container:'.length), digest);
    const record = await store.getRecord(digest);
    if (record?.references[0] !== undefined) references.set(digest, record.references[0]);
  }
  let containers = new Map<string, ContainerInfo>();
  try {
    containers = await containersOf(config.upstream);
  } catch (e) {
    warnings.push(`pod and container names unknown: ${asSpokeError(e).message}`);
  }
  const resolver = new PidResolver();
  const summary = summarizeDenials({ lines, sinceMs, bootWallMs: bootWallMs(), attribute: (pid, us) => resolver.attribute(pid, us), holders, references, containers });
  const report: DenialReport = { ...summary, source: { kind: choice.kind, path: choice.path }, warnings };
  emit(values.json, report, () => human(report));
  return 0;
}
