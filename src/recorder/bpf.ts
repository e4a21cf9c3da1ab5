// The eBPF recording backend: syscalls are counted in the kernel, per namespace, on the
// raw_syscalls:sys_enter tracepoint, by Debian's `bpftrace` run as a child process (argument
// array, never a shell). Counting where the call happens sees every process of a container,
// forked children that live a few microseconds included; nothing has to be resolved from
// /proc after the fact (the audit backend's gap, see pids.ts).
//
// The program is generated here; the only values interpolated into it are numbers (namespace
// inodes, spoke's pid, a dump interval), each checked to be a safe integer. Only calls made
// under a seccomp filter (`seccomp.mode == 2`, SECCOMP_MODE_FILTER) count: the recorded
// container runs under the logging profile, so runc's own set-up calls before its filter is
// installed are left out (the runtime's start-up set is added by the profile builder, as for
// the audit backend).
//
// Keys are (IPC namespace inode, mount namespace inode, mount namespace id, ia32, number):
// - the IPC namespace is the pod's: the sandbox (pause) process holds it for the pod's whole
//   life, so it can be read from /proc before a container starts and after it has exited
//   (containerd reports a container's pid only while it runs, and not before StartContainer);
// - the mount namespace is the container's own; its inode is reused after the namespace is
//   freed, so the kernel's never-reused id (ns_common.ns_id, or mnt_namespace.seq on older
//   kernels; 0 when neither exists) tells a later namespace with the same inode apart;
// - ia32 calls (TS_COMPAT set in thread_info.status while a 32-bit call runs) are numbered from
//   the i386 table, native ones from x86_64; x32 calls keep their 0x40000000 bit and stay unnamed.
// @f keeps the first pid that made a counted call in each mount namespace: a container's init.
// bpftrace prints the maps between marker lines; the parser accepts nothing else there.

import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { accessSync, constants, existsSync, readFileSync, readlinkSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { promisify } from 'node:util';
import { SpokeError } from '../core/errors.js';
import { AUDIT_ARCH_I386, AUDIT_ARCH_X86_64, syscallName } from './syscalls.js';

const execFileP = promisify(execFile);

export const TRACEFS = '/sys/kernel/tracing';
export const BTF_VMLINUX = '/sys/kernel/btf/vmlinux';
/** Entries each bpftrace map may hold (BPFTRACE_MAP_KEYS_MAX); a full map fails the recording. */
export const DEFAULT_MAP_KEYS = 65_536;
const READY = 'spoke-ready';
const DUMP_BEGIN = 'spoke-dump-begin';
const DUMP_END = 'spoke-dump-end';
/**
 * spoke ends bpftrace from inside the kernel: its own kill(STOP_PID, 0) (x86_64 syscall 62; no
 * such process, so it only fails with ESRCH) makes the probe call exit(), which runs END and
 * prints the maps. SIGINT cannot do this reliably: bpftrace installs its handler some time
 * after the probes are attached, and a SIGINT before that kills it without printing.
 */
const STOP_PID = 0x3fffffff;
const SYS_KILL_X86_64 = 62;
/** TS_COMPAT in x86 thread_info.status: a 32-bit syscall is running. */
const TS_COMPAT = 2;

export interface BpfSupport {
  ok: boolean;
  /** What is missing, when not ok. */
  reason?: string;
  bpftrace?: string;
}

/** The first executable `name` on PATH (plus the sbin directories root's PATH may lack). */
export function findOnPath(name: string, pathEnv = process.env.PATH ?? ''): string | undefined {
  for (const dir of [...pathEnv.split(delimiter), '/usr/sbin', '/sbin']) {
    if (!dir) continue;
    const p = join(dir, name);
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      /* next */
    }
  }
  return undefined;
}

/** Whether this node can record with eBPF: root, x86_64, kernel BTF and bpftrace. */
export function bpfSupport(opts: { uid?: number; arch?: string; btf?: string; pathEnv?: string } = {}): BpfSupport {
  const uid = opts.uid ?? process.getuid?.();
  if (uid !== 0) return { ok: false, reason: 'needs root' };
  if ((opts.arch ?? process.arch) !== 'x64') return { ok: false, reason: 'syscall tables are x86 only (x86_64 node needed)' };
  if (!existsSync(opts.btf ?? BTF_VMLINUX)) return { ok: false, reason: `no kernel BTF (${opts.btf ?? BTF_VMLINUX})` };
  const bpftrace = findOnPath('bpftrace', opts.pathEnv);
  if (!bpftrace) return { ok: false, reason: 'bpftrace is not installed (Debian package bpftrace)' };
  return { ok: true, bpftrace };
}

/** Mounts tracefs where tracepoints are looked up, unless it is there; true when spoke mounted it. */
export async function ensureTracefs(mountPoint = TRACEFS, mountsFile = '/proc/mounts'): Promise<boolean> {
  let mounted = false;
  try {
    mounted = readFileSync(mountsFile, 'utf8')
      .split('\n')
      .some((l) => {
        const f = l.split(' ');
        return f[1] === mountPoint && f[2] === 'tracefs';
      });
  } catch {
    /* no /proc/mounts: try to mount */
  }
  if (mounted) return false;
  try {
    await execFileP('mount', ['-t', 'tracefs', 'nodev', mountPoint], { timeout: 10_000 });
  } catch (e) {
    throw new SpokeError('FailedPrecondition', `tracefs is not mounted at ${mountPoint} and mounting it failed`, { path: mountPoint }, { cause: e, reason: 'RECORDER_UNAVAILABLE' });
  }
  return true;
}

/** Where the kernel keeps a never-reused id of a mount namespace (field path from mnt_namespace). */
export type NsIdField = 'ns.ns_id' | 'seq' | undefined;

/** Asks bpftrace (through the kernel's BTF) which namespace id field this kernel has. */
export async function detectNsIdField(bpftrace: string): Promise<NsIdField> {
  const has = async (struct: string, field: RegExp): Promise<boolean> => {
    try {
      const { stdout } = await execFileP(bpftrace, ['-lv', `struct ${struct}`], { timeout: 30_000, maxBuffer: 1 << 20 });
      return field.test(stdout);
    } catch {
      return false;
    }
  };
  if (await has('ns_common', /^\s{1,16}u64 ns_id;$/m)) return 'ns.ns_id';
  if (await has('mnt_namespace', /^\s{1,16}u64 seq;$/m)) return 'seq';
  return undefined;
}

export interface ProgramOptions {
  /** IPC namespace inodes (pods) to count; undefined counts every namespace (the node daemon). */
  ipcNamespaces?: readonly number[];
  /** A pid whose next syscall proves the probe is attached (spoke's own). */
  readyPid: number;
  nsId: NsIdField;
  /** Print the maps every this many ms (the node daemon); the final print happens on exit. */
  dumpEveryMs?: number;
}

function integer(n: number, what: string, max = Number.MAX_SAFE_INTEGER): string {
  if (!Number.isSafeInteger(n) || n <= 0 || n > max) throw new SpokeError('InvalidArgument', `bad ${what} for the bpftrace program`);
  return String(n);
}

/** The bpftrace program text. Only checked integers are interpolated. */
export function bpfProgram(o: ProgramOptions): string {
  const ns = 'curtask->nsproxy';
  const filter = o.ipcNamespaces === undefined ? '1' : o.ipcNamespaces.length === 0 ? '0' : o.ipcNamespaces.map((n) => `$ipc == ${integer(n, 'namespace inode', 0xffffffff)}`).join(' || ');
  const id = o.nsId === undefined ? '0' : `${ns}->mnt_ns->${o.nsId}`;
  // @f exists only in the daemon form (bpftrace refuses a map no probe writes).
  const maps = o.ipcNamespaces === undefined ? ['@c', '@f'] : ['@c'];
  const dump = `printf("${DUMP_BEGIN}\\n"); ${maps.map((m) => `print(${m});`).join(' ')} printf("${DUMP_END}\\n");`;
  return [
    'tracepoint:raw_syscalls:sys_enter {',
    '  if (curtask->seccomp.mode == 2) {',
    `    $ipc = ${ns}->ipc_ns->ns.inum;`,
    `    if (${filter}) {`,
    `      $mnt = ${ns}->mnt_ns->ns.inum;`,
    `      $id = ${id};`,
    `      @c[$ipc, $mnt, $id, curtask->thread_info.status & ${TS_COMPAT}, args->id] = count();`,
    // First pids tell containers apart where the node daemon counts every pod (a lookup per call).
    ...(o.ipcNamespaces === undefined ? ['      if (@f[$ipc, $mnt, $id] == 0) { @f[$ipc, $mnt, $id] = pid; }'] : []),
    '    }',
    '  }',
    `  if (pid == ${integer(o.readyPid, 'pid')}) {`,
    `    if (@r == 0) { @r = 1; printf("${READY}\\n"); }`,
    `    if (args->id == ${SYS_KILL_X86_64} && args->args[0] == ${STOP_PID}) { exit(); }`,
    '  }',
    '}',
    ...(o.dumpEveryMs === undefined ? [] : [`interval:ms:${integer(o.dumpEveryMs, 'interval', 3_600_000)} { ${dump} }`]),
    `END { ${dump} ${maps.map((m) => `clear(${m});`).join(' ')} clear(@r); }`,
    '',
  ].join('\n');
}

/** A mount namespace as the kernel keeps it: inode (reused) and id (never reused). */
export interface MountNamespace {
  ipc: number;
  mnt: number;
  /** The namespace id as printed (decimal, up to u64). */
  mntId: string;
}

export interface BpfCount extends MountNamespace {
  ia32: boolean;
  /** The syscall number (negative for a bogus call such as syscall(-1)). */
  nr: number;
  count: number;
}

export interface BpfDump {
  counts: BpfCount[];
  /** The first pid that made a counted call in each mount namespace. */
  firsts: (MountNamespace & { pid: number })[];
}

const COUNT_LINE = /^@c\[(\d{1,10}), (\d{1,10}), (\d{1,20}), ([02]), (-?\d{1,20})\]: (\d{1,20})$/;
const FIRST_LINE = /^@f\[(\d{1,10}), (\d{1,10}), (\d{1,20})\]: (\d{1,10})$/;

/** Parses the lines printed between the dump markers; anything else there is an error. */
export function parseBpfDump(lines: readonly string[]): BpfDump {
  const dump: BpfDump = { counts: [], firsts: [] };
  for (const line of lines) {
    if (line === '') continue;
    if (line.length > 128) throw new SpokeError('Internal', 'unexpected bpftrace output (over-long line)', {}, { reason: 'INCOMPLETE_RECORDING' });
    const c = COUNT_LINE.exec(line);
    if (c) {
      dump.counts.push({ ipc: Number(c[1]), mnt: Number(c[2]), mntId: c[3]!, ia32: c[4] === '2', nr: Number(c[5]), count: Number(c[6]) });
      continue;
    }
    const f = FIRST_LINE.exec(line);
    if (f) {
      dump.firsts.push({ ipc: Number(f[1]), mnt: Number(f[2]), mntId: f[3]!, pid: Number(f[4]) });
      continue;
    }
    throw new SpokeError('Internal', 'unexpected bpftrace output in a map dump', {}, { reason: 'INCOMPLETE_RECORDING' });
  }
  return dump;
}

/** Whether two keys name the same mount namespace. */
export function sameNamespace(a: MountNamespace, b: MountNamespace): boolean {
  return a.ipc === b.ipc && a.mnt === b.mnt && a.mntId === b.mntId;
}

/** A pod as the counter sees it: its IPC namespace, and its sandbox's own mount namespace. */
export interface PodNamespaces {
  ipc: number;
  pauseMnt: number;
}

export type ContainerCalls = { ok: true; key: MountNamespace; counts: BpfCount[] } | { ok: false; why: string };

/**
 * The calls of one container of `pod` in a dump. Its mount namespace is the one whose first
 * counted call came from `pid` (the container's init, learnt while it ran); without a pid, the
 * only namespace of the pod not yet `assigned` to another container. Anything ambiguous is
 * refused rather than guessed (an inode can be reused by a later pod or container).
 */
export function callsOfContainer(dump: BpfDump, pod: PodNamespaces, pid: number | undefined, assigned: readonly MountNamespace[]): ContainerCalls {
  const mine = dump.firsts.filter((f) => f.ipc === pod.ipc && f.mnt !== pod.pauseMnt);
  const candidates = pid !== undefined ? mine.filter((f) => f.pid === pid) : mine.filter((f) => !assigned.some((a) => sameNamespace(a, f)));
  if (candidates.length !== 1) {
    return { ok: false, why: candidates.length === 0 ? 'no counted calls in its namespace' : `${candidates.length} mount namespaces of the pod could be the container's` };
  }
  const key = candidates[0]!;
  return { ok: true, key: { ipc: key.ipc, mnt: key.mnt, mntId: key.mntId }, counts: dump.counts.filter((c) => sameNamespace(c, key)) };
}

/** Syscall names of counted calls, and `arch:number` of those without a name. */
export function namesOf(counts: readonly BpfCount[]): { names: Set<string>; unnamed: string[] } {
  const names = new Set<string>();
  const unnamed = new Set<string>();
  for (const c of counts) {
    const arch = c.ia32 ? AUDIT_ARCH_I386 : AUDIT_ARCH_X86_64;
    const name = c.nr >= 0 && c.nr <= 0xffffffff ? syscallName(arch, c.nr) : undefined;
    if (name === undefined) unnamed.add(`${arch.toString(16)}:${c.nr}`);
    else names.add(name);
  }
  return { names, unnamed: [...unnamed].sort() };
}

/** The inode of a process's namespace (/proc/<pid>/ns/<kind> reads `<kind>:[INODE]`). */
export function namespaceOf(pid: number, kind: 'ipc' | 'mnt', procRoot = '/proc'): number {
  let link: string;
  try {
    link = readlinkSync(`${procRoot}/${integer(pid, 'pid')}/ns/${kind}`);
  } catch (e) {
    throw new SpokeError('NotFound', `cannot read the ${kind} namespace of pid ${pid}`, { pid }, { cause: e });
  }
  const m = /^(?:ipc|mnt):\[(\d{1,10})\]$/.exec(link);
  if (!m || !link.startsWith(`${kind}:`)) throw new SpokeError('Internal', `unexpected /proc/${pid}/ns/${kind} link`, { pid });
  return Number(m[1]);
}

export interface CounterOptions {
  ipcNamespaces?: readonly number[];
  dumpEveryMs?: number;
  bpftrace?: string;
  mapKeys?: number;
  /** How long attaching may take (bpftrace compiles the program first). */
  readyTimeoutMs?: number;
}

/** A running bpftrace counting syscalls; dumps arrive in order, the last one on stop(). */
export class BpfCounter {
  private child: ChildProcess;
  private buffered = '';
  private dumpLines: string[] | undefined;
  private stderrTail = '';
  private readonly waiters: ((d: BpfDump | Error) => void)[] = [];
  private failure: Error | undefined;
  private exited: Promise<void>;
  /** The latest complete dump. */
  latest: BpfDump = { counts: [], firsts: [] };
  readonly mapKeys: number;

  private constructor(child: ChildProcess, mapKeys: number) {
    this.child = child;
    this.mapKeys = mapKeys;
    this.exited = new Promise((resolve) => child.once('close', () => resolve()));
  }

  static async start(o: CounterOptions = {}): Promise<BpfCounter> {
    const support = o.bpftrace ? { ok: true, bpftrace: o.bpftrace } : bpfSupport();
    if (!support.ok || !support.bpftrace) throw new SpokeError('FailedPrecondition', `the eBPF recorder cannot run here: ${support.reason}`, {}, { reason: 'RECORDER_UNAVAILABLE' });
    await ensureTracefs();
    const nsId = await detectNsIdField(support.bpftrace);
    const program = bpfProgram({ ipcNamespaces: o.ipcNamespaces, readyPid: process.pid, nsId, dumpEveryMs: o.dumpEveryMs });
    const mapKeys = o.mapKeys ?? DEFAULT_MAP_KEYS;
    // -B line: the ready line and the dumps must not wait in a full stdio buffer.
    const child = spawn(support.bpftrace, ['-B', 'line', '-e', program], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, BPFTRACE_MAP_KEYS_MAX: String(mapKeys) } });
    const counter = new BpfCounter(child, mapKeys);
    let onReady: (() => void) | undefined;
    const ready = new Promise<void>((resolve, reject) => {
      onReady = resolve;
      child.once('error', reject);
      child.once('close', (code, signal) => reject(new SpokeError('FailedPrecondition', `bpftrace exited before its probe was attached (${signal ?? `status ${code}`}): ${counter.stderrSummary()}`, {}, { reason: 'RECORDER_UNAVAILABLE' })));
    });
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (s: string) => counter.onStdout(s, () => onReady?.()));
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (s: string) => (counter.stderrTail = (counter.stderrTail + s).slice(-2048)));
    child.once('close', () => counter.fail(new SpokeError('Internal', `bpftrace exited: ${counter.stderrSummary()}`, {}, { reason: 'INCOMPLETE_RECORDING' })));
    let timer: NodeJS.Timeout | undefined;
    // The ready line needs a syscall of ours after the probe is attached; an idle event loop
    // makes none, so a timer wakes it until then.
    const poke = setInterval(() => undefined, 10);
    try {
      await Promise.race([ready, new Promise<void>((_, reject) => (timer = setTimeout(() => reject(new SpokeError('Unavailable', 'bpftrace did not attach its probe in time', {}, { reason: 'RECORDER_UNAVAILABLE' })), o.readyTimeoutMs ?? 60_000)))]);
    } catch (e) {
      counter.close();
      throw e;
    } finally {
      clearTimeout(timer);
      clearInterval(poke);
    }
    return counter;
  }

  /** bpftrace's stderr without its harmless RLIMIT_MEMLOCK notice, one line, bounded. */
  private stderrSummary(): string {
    return (
      this.stderrTail
        .split('\n')
        .filter((l) => l.trim() && !l.includes('RLIMIT_MEMLOCK'))
        .join(' ')
        .replace(/[^\x20-\x7e]/g, '?')
        .slice(-512) || 'no message'
    );
  }

  private onStdout(s: string, ready: () => void): void {
    this.buffered += s;
    let nl: number;
    while ((nl = this.buffered.indexOf('\n')) >= 0) {
      const line = this.buffered.slice(0, nl);
      this.buffered = this.buffered.slice(nl + 1);
      this.onLine(line, ready);
    }
    if (this.buffered.length > 4096) this.fail(new SpokeError('Internal', 'unexpected bpftrace output (over-long line)', {}, { reason: 'INCOMPLETE_RECORDING' }));
  }

  private onLine(line: string, ready: () => void): void {
    if (this.dumpLines !== undefined) {
      if (line !== DUMP_END) {
        if (this.dumpLines.length > 4 * this.mapKeys) return this.fail(new SpokeError('Internal', 'bpftrace dump larger than its maps', {}, { reason: 'INCOMPLETE_RECORDING' }));
        this.dumpLines.push(line);
        return;
      }
      let dump: BpfDump;
      try {
        dump = parseBpfDump(this.dumpLines);
      } catch (e) {
        return this.fail(e as Error);
      } finally {
        this.dumpLines = undefined;
      }
      // A full map drops new keys without a word: treat it as a lost recording.
      if (dump.counts.length >= this.mapKeys || dump.firsts.length >= this.mapKeys) {
        return this.fail(new SpokeError('FailedPrecondition', `the eBPF map is full (${this.mapKeys} entries); calls may be missing`, { limit: this.mapKeys }, { reason: 'INCOMPLETE_RECORDING' }));
      }
      this.latest = dump;
      for (const w of this.waiters.splice(0)) w(dump);
      return;
    }
    if (line === DUMP_BEGIN) this.dumpLines = [];
    else if (line === READY) ready();
    // Anything else outside a dump is bpftrace's own ("Attaching 2 probes...", map prints of @r).
  }

  private fail(e: Error): void {
    if (this.failure) return;
    this.failure = e;
    for (const w of this.waiters.splice(0)) w(e);
  }

  /** The next complete dump (periodic with dumpEveryMs, or the final one). */
  nextDump(): Promise<BpfDump> {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => this.waiters.push((d) => (d instanceof Error ? reject(d) : resolve(d))));
  }

  /** Detaches the probe and returns the final counts (printed by END after the in-kernel exit()). */
  async stop(timeoutMs = 30_000): Promise<BpfDump> {
    if (this.failure) throw this.failure;
    const last = this.nextDump();
    try {
      process.kill(STOP_PID, 0);
    } catch {
      /* ESRCH, as intended: the call itself is the message */
    }
    const timer = setTimeout(() => this.child.kill('SIGKILL'), timeoutMs);
    try {
      const dump = await last;
      await this.exited;
      return dump;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Ends bpftrace without waiting for counts (error paths). */
  close(): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
  }
}
