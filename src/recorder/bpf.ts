// The eBPF recording backend: syscalls are counted in the kernel, per namespace, on the
// raw_syscalls:sys_enter tracepoint, by Debian's `bpftrace` run as a child process (argument
// array, never a shell). Counting where the call happens sees every process of a container,
// forked children that live a few microseconds included; nothing has to be resolved from
// /proc after the fact (the audit backend's gap, see pids.ts).
//
// The program, its dump format and the namespace keys are described in bpf-program.ts.

import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { accessSync, constants, existsSync, readFileSync, readlinkSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { promisify } from 'node:util';
import { isSpokeError, SpokeError } from '../core/errors.js';
import { bpfProgram, DEFAULT_MAP_KEYS, DUMP_BEGIN, DUMP_END, integer, parseBpfDump, READY, STOP_PID, type BpfDump, type NsIdField, type ProgramOptions } from './bpf-program.js';

const execFileP = promisify(execFile);

export const TRACEFS = '/sys/kernel/tracing';
export const BTF_VMLINUX = '/sys/kernel/btf/vmlinux';

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

/** The inode of a process's namespace (/proc/<pid>/ns/<kind> reads `<kind>:[INODE]`). */
export function namespaceOf(pid: number, kind: 'ipc' | 'mnt', procRoot = '/proc'): number {
  let link: string;
  try {
    link = readlinkSync(`${procRoot}/${integer(pid, 'pid')}/ns/${kind}`);
  } catch (e) {
    throw new SpokeError('NotFound', `cannot read the ${kind} namespace of pid ${pid}`, { pid }, { cause: e, reason: isSpokeError(e) ? e.reason : 'NOT_FOUND' });
  }
  const m = /^(?:ipc|mnt):\[(\d{1,10})\]$/.exec(link);
  if (!m || !link.startsWith(`${kind}:`)) throw new SpokeError('Internal', `unexpected /proc/${pid}/ns/${kind} link`, { pid }, { reason: 'UNEXPECTED' });
  return Number(m[1]);
}

export interface CounterOptions {
  ipcNamespaces?: readonly number[];
  dumpEveryMs?: number;
  bpftrace?: string;
  mapKeys?: number;
  /** How long attaching may take (bpftrace compiles the program first). */
  readyTimeoutMs?: number;
  probe?: ProgramOptions['probe'];
  /**
   * Runs bpftrace in its own process group, so a terminal's Ctrl-C reaches only spoke, which
   * then stops it the usual way (a SIGINT of its own would print its maps before stop() asks).
   */
  ownProcessGroup?: boolean;
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
  latest: BpfDump = { counts: [], firsts: [], exits: [] };
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
    const program = bpfProgram({ ipcNamespaces: o.ipcNamespaces, readyPid: process.pid, nsId, dumpEveryMs: o.dumpEveryMs, probe: o.probe });
    const mapKeys = o.mapKeys ?? DEFAULT_MAP_KEYS;
    // -B line: the ready line and the dumps must not wait in a full stdio buffer.
    const child = spawn(support.bpftrace, ['-B', 'line', '-e', program], { stdio: ['ignore', 'pipe', 'pipe'], detached: o.ownProcessGroup === true, env: { ...process.env, BPFTRACE_MAP_KEYS_MAX: String(mapKeys) } });
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
      if (Math.max(dump.counts.length, dump.firsts.length, dump.exits.length) >= this.mapKeys) {
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

  /** Why the counts can no longer be trusted (a full map, a dump that did not parse), if so. */
  get failed(): Error | undefined {
    return this.failure;
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
