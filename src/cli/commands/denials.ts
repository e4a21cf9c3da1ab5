// `spoke denials`: the calls audit-mode profiles let through with SCMP_ACT_LOG (docs/audit-mode.md),
// read from the kernel's seccomp audit records (type=1326, code=SECCOMP_RET_LOG) and joined with
// the shim's in-use set (container → artifact) and the runtime (container → pod). Two modes:
// --since reads what the kernel log holds, attributed the way the recorder attributes records
// (src/recorder/pids.ts: pid → container through /proc, never guessed); --for watches from now,
// and names the container of exited processes too through eBPF (denials-watch.ts). The source
// is the recorder's: the audit log when auditd runs, else the kernel ring buffer (/dev/kmsg).
// Counting happens here, not in the shim: the shim never reads the kernel log.

import { closeSync, constants, fstatSync, openSync, readFileSync, readSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { asSpokeError, SpokeError } from '../../core/errors.js';
import type { Digest } from '../../core/digest.js';
import { RuntimeCriClient } from '../../recorder/cri.js';
import { summarizeDenials, type ContainerInfo, type DenialEntry, type DenialReport, type Names } from '../../recorder/denials.js';
import { renderTextfile } from '../../recorder/denials-textfile.js';
import { bootWallMs, PidResolver } from '../../recorder/pids.js';
import { chooseAuditSource } from '../../recorder/source.js';
import { writeOutputFile } from '../output-file.js';
import { ProfileStore } from '../../store/store.js';
import { parseDuration } from '../../core/duration.js';
import { emit, parseCommand } from '../args.js';
import { UsageError } from '../errors.js';
import { nodeConfigOnly } from '../wiring.js';
import { containersOf, watchDenials } from './denials-watch.js';

export type { DenialReport } from '../../recorder/denials.js';

const HELP = `usage: spoke denials [--config F] [--since DURATION | --for DURATION] [--json] [--textfile F]

Reports the calls that profiles admitted by a "mode: audit" policy rule logged instead of denying
(the kernel's seccomp audit records, type=1326, with SCMP_ACT_LOG), counted per container and
syscall, with the pod, the container name and the profile reference. Records come from the audit
log when auditd runs (/var/log/audit/audit.log, current file only), else from the kernel ring
buffer (/dev/kmsg). Run as root.

--since (the default) reads the records the log still holds. A process still alive is
attributed through its cgroup; one that already exited (a short-lived child a shell forked,
e.g. sh -c 'mkdir /tmp/x') cannot be, and its records are counted as unattributed, never guessed.

--for watches from now for DURATION (or until interrupted: SIGINT or SIGTERM end the watch and
the report is printed). It needs eBPF (bpftrace, kernel BTF, as \`spoke record --backend bpf\`):
the namespaces of every exiting process under a seccomp filter are kept, so the calls of exited
children are attributed to their container too, if it ran for at least half a second while
watched. It lifts the printk rate limit while it reads /dev/kmsg, as recording does, and prints
a "watching" line on stderr once it is ready.

Containers that do not run under a spoke artifact (a recording under the logging profile, any
other profile with SCMP_ACT_LOG) are listed apart as "other".

options:
  --config F          node config (default /etc/spoke/config.yaml): store and runtime socket
  --since DURATION    only records from this long ago (30s, 10m, 1h, 2d; default 1h)
  --for DURATION      watch from now for this long (30s, 10m, 1h) instead
  --json              {since, source, records, audit: [...], other: [...], unattributed: [...],
                      host, lost, warnings} as JSON
  --textfile F        also write the counts as Prometheus text (spoke_audit_would_deny_calls per
                      artifact digest and syscall, spoke_audit_unattributed_calls) to F, for a
                      node exporter's textfile collector; replaced atomically`;

/** Read at most this much of the audit log's end (a record is < 1 KiB; the kmsg buffer is bounded by the kernel). */
const MAX_AUDIT_LOG_BYTES = 64 * 1024 * 1024;
const MAX_WATCH_MS = 24 * 24 * 3600 * 1000;

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

/**
 * The lines of the last `maxBytes` of an audit log, read from there only (a log may be larger than
 * memory, or than the 2 GiB a Buffer holds); the first line, cut by the start, is dropped.
 */
export function readAuditLogTail(path: string, maxBytes = MAX_AUDIT_LOG_BYTES): string[] {
  const fd = openSync(path, constants.O_RDONLY);
  try {
    const size = fstatSync(fd).size;
    const start = Math.max(0, size - maxBytes);
    const buf = Buffer.alloc(size - start);
    let read = 0;
    while (read < buf.length) {
      const n = readSync(fd, buf, read, buf.length - read, start + read);
      if (n === 0) break;
      read += n;
    }
    const lines = buf.toString('utf8', 0, read).split('\n');
    return start > 0 ? lines.slice(1) : lines;
  } finally {
    closeSync(fd);
  }
}

function human(r: DenialReport): string {
  const who = (e: DenialEntry) => `${e.podNamespace || '?'}/${e.podName || '?'}/${e.container || '?'} (${e.containerId.slice(0, 13)})`;
  const from = r.source.kind === 'bpf' ? `watched in ${r.source.path}, exited processes named through eBPF` : `from ${r.source.path}`;
  const lines = [`seccomp calls logged instead of denied since ${r.since} (${r.records} records ${from})`];
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

/** The shim's in-use set: container → artifact digest, digest → the reference it was pulled by. */
async function holdersOf(storeDir: string): Promise<Pick<Names, 'holders' | 'references'>> {
  const store = new ProfileStore({ root: storeDir });
  const holders = new Map<string, Digest>();
  const references = new Map<Digest, string>();
  for (const [digest, list] of await store.inUse()) {
    for (const h of list) if (h.startsWith('container:')) holders.set(h.slice('container:'.length), digest);
    const record = await store.getRecord(digest);
    if (record?.references[0] !== undefined) references.set(digest, record.references[0]);
  }
  return { holders, references };
}

/**
 * Writes the textfile through a temporary file in its directory: a collector never reads half of
 * it. The directory must exist: it is the collector's, with the permissions its admin chose.
 */
async function writeTextfile(path: string, text: string): Promise<void> {
  if (statSync(dirname(resolve(path)), { throwIfNoEntry: false })?.isDirectory() !== true) {
    throw new SpokeError('FailedPrecondition', `cannot write the textfile ${path}: its directory does not exist`, { path }, { reason: 'FILE_UNWRITABLE' });
  }
  try {
    await writeOutputFile(path, text);
  } catch (e) {
    throw new SpokeError('FailedPrecondition', `cannot write the textfile ${path}`, { path }, { cause: e, reason: 'FILE_UNWRITABLE' });
  }
}

async function sinceReport(values: { since?: string }, config: { storeDir: string; upstream: string }, warnings: string[]): Promise<DenialReport> {
  const window = parseDuration(values.since ?? '1h');
  if (window === undefined) throw new UsageError(`--since must look like 30s, 10m, 1h or 2d, got ${JSON.stringify(values.since)}`);
  const sinceMs = Date.now() - window;
  const choice = chooseAuditSource();
  const lines = choice.kind === 'kmsg' ? readKmsg(choice.path) : readAuditLogTail(choice.path);
  const { holders, references } = await holdersOf(config.storeDir);
  let containers = new Map<string, ContainerInfo>();
  const client = new RuntimeCriClient(config.upstream);
  try {
    containers = await containersOf(client);
  } catch (e) {
    warnings.push(`pod and container names unknown: ${asSpokeError(e).message}`);
  } finally {
    client.close();
  }
  const resolver = new PidResolver();
  const summary = summarizeDenials({ lines, sinceMs, bootWallMs: bootWallMs(), attribute: (pid, us) => resolver.attribute(pid, us), holders, references, containers });
  return { ...summary, source: { kind: choice.kind, path: choice.path }, warnings };
}

export async function run(argv: string[]): Promise<number> {
  const spec = { config: { type: 'string' }, since: { type: 'string' }, for: { type: 'string' }, json: { type: 'boolean' }, textfile: { type: 'string' } } as const;
  const { values, help } = parseCommand(argv, spec, HELP, [0, 0]);
  if (help) return 0;
  if (values.since !== undefined && values.for !== undefined) throw new UsageError('--since and --for cannot be combined: --since reads the log the kernel holds, --for watches from now');
  const forMs = values.for === undefined ? undefined : parseDuration(values.for);
  // (Node's timers hold at most 2^31-1 ms.)
  if (forMs === 0 || (values.for !== undefined && (forMs === undefined || forMs > MAX_WATCH_MS))) throw new UsageError(`--for must look like 30s, 10m or 1h (at most 24d), got ${JSON.stringify(values.for)}`);
  const config = await nodeConfigOnly(values);
  const warnings: string[] = [];
  try {
    if (!readFileSync('/proc/sys/kernel/seccomp/actions_logged', 'utf8').split(/\s+/).includes('log')) {
      warnings.push('/proc/sys/kernel/seccomp/actions_logged does not include "log": the kernel writes no record for SCMP_ACT_LOG');
    }
  } catch {
    /* not a seccomp kernel: the read below says what is missing */
  }
  let report: DenialReport;
  if (forMs === undefined) {
    report = await sinceReport(values, config, warnings);
  } else {
    const onWatching = (what: string) => process.stderr.write(`spoke denials: ${what}\n`);
    const { summary, path } = await watchDenials({ forMs, upstream: config.upstream, bootWallMs: bootWallMs(), holders: () => holdersOf(config.storeDir), onWatching, warnings });
    report = { ...summary, source: { kind: 'bpf', path }, warnings };
  }
  if (values.textfile !== undefined) await writeTextfile(values.textfile, renderTextfile(report));
  emit(values.json, report, () => human(report));
  return 0;
}
