// The eBPF recording backend's program and its output, without I/O: the bpftrace program text,
// the parser of its map dumps, and the matching of counted namespaces to a pod's containers.
// Running it (support detection, tracefs, the bpftrace process): bpf.ts.
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
//
// The `exits` form (`spoke denials --for`, docs/audit-mode.md) counts no calls: it keeps, for
// every process under a seccomp filter that exits, its pid with the same namespace key, taken on
// sched:sched_process_exit (the task still holds its namespaces there). That names the container
// of a kernel audit record whose process is gone before /proc can be read. Kprobes and fentry on
// audit_seccomp() would see the logged calls themselves, but need CONFIG_KPROBES or BPF
// trampolines that nodes may lack; tracepoints are always there where the recorder runs.

import { SpokeError } from '../core/errors.js';
import { AUDIT_ARCH_I386, AUDIT_ARCH_X86_64, syscallName } from './syscalls.js';

/** Entries each bpftrace map may hold (BPFTRACE_MAP_KEYS_MAX); a full map fails the recording. */
export const DEFAULT_MAP_KEYS = 65_536;
export const READY = 'spoke-ready';
export const DUMP_BEGIN = 'spoke-dump-begin';
export const DUMP_END = 'spoke-dump-end';
/**
 * spoke ends bpftrace from inside the kernel: its own kill(STOP_PID, 0) (x86_64 syscall 62; no
 * such process, so it only fails with ESRCH) makes the probe call exit(), which runs END and
 * prints the maps. SIGINT cannot do this reliably: bpftrace installs its handler some time
 * after the probes are attached, and a SIGINT before that kills it without printing.
 */
export const STOP_PID = 0x3fffffff;
const SYS_KILL_X86_64 = 62;
/** TS_COMPAT in x86 thread_info.status: a 32-bit syscall is running. */
const TS_COMPAT = 2;

/** Where the kernel keeps a never-reused id of a mount namespace (field path from mnt_namespace). */
export type NsIdField = 'ns.ns_id' | 'seq' | undefined;

export interface ProgramOptions {
  /** IPC namespace inodes (pods) to count; undefined counts every namespace (the node daemon). */
  ipcNamespaces?: readonly number[];
  /** A pid whose next syscall proves the probe is attached (spoke's own). */
  readyPid: number;
  nsId: NsIdField;
  /** Print the maps every this many ms (the node daemon; `syscalls` form); the final print happens on exit. */
  dumpEveryMs?: number;
  /** What is kept: calls per namespace (recording, the default) or exited processes' namespaces. */
  probe?: 'syscalls' | 'exits';
}

/** `n` as program text, once checked to be a safe integer in 1..max. */
export function integer(n: number, what: string, max = Number.MAX_SAFE_INTEGER): string {
  if (!Number.isSafeInteger(n) || n <= 0 || n > max) throw new SpokeError('InvalidArgument', `bad ${what} for the bpftrace program`, {}, { reason: 'OPTION_INVALID' });
  return String(n);
}

/** The bpftrace program text. Only checked integers are interpolated. */
export function bpfProgram(o: ProgramOptions): string {
  return o.probe === 'exits' ? exitsProgram(o) : syscallsProgram(o);
}

const NS = 'curtask->nsproxy';
const nsIdOf = (f: NsIdField) => (f === undefined ? '0' : `${NS}->mnt_ns->${f}`);
const dumpOf = (maps: readonly string[]) => `printf("${DUMP_BEGIN}\\n"); ${maps.map((m) => `print(${m});`).join(' ')} printf("${DUMP_END}\\n");`;
/** The ready line on spoke's first call after attaching; exit() on its kill(STOP_PID, 0). */
const readyStop = () => [`    if (@r == 0) { @r = 1; printf("${READY}\\n"); }`, `    if (args->id == ${SYS_KILL_X86_64} && args->args[0] == ${STOP_PID}) { exit(); }`];

function exitsProgram(o: ProgramOptions): string {
  return [
    'tracepoint:sched:sched_process_exit {',
    '  if (curtask->seccomp.mode == 2) {',
    `    @x[pid, ${NS}->ipc_ns->ns.inum, ${NS}->mnt_ns->ns.inum, ${nsIdOf(o.nsId)}] = count();`,
    '  }',
    '}',
    `tracepoint:raw_syscalls:sys_enter /pid == ${integer(o.readyPid, 'pid')}/ {`,
    ...readyStop(),
    '}',
    `END { ${dumpOf(['@x'])} clear(@x); clear(@r); }`,
    '',
  ].join('\n');
}

function syscallsProgram(o: ProgramOptions): string {
  const filter = o.ipcNamespaces === undefined ? '1' : o.ipcNamespaces.length === 0 ? '0' : o.ipcNamespaces.map((n) => `$ipc == ${integer(n, 'namespace inode', 0xffffffff)}`).join(' || ');
  const id = nsIdOf(o.nsId);
  // @f exists only in the daemon form (bpftrace refuses a map no probe writes).
  const maps = o.ipcNamespaces === undefined ? ['@c', '@f'] : ['@c'];
  const dump = dumpOf(maps);
  return [
    'tracepoint:raw_syscalls:sys_enter {',
    '  if (curtask->seccomp.mode == 2) {',
    `    $ipc = ${NS}->ipc_ns->ns.inum;`,
    `    if (${filter}) {`,
    `      $mnt = ${NS}->mnt_ns->ns.inum;`,
    `      $id = ${id};`,
    `      @c[$ipc, $mnt, $id, curtask->thread_info.status & ${TS_COMPAT}, args->id] = count();`,
    // First pids tell containers apart where the node daemon counts every pod (a lookup per call).
    ...(o.ipcNamespaces === undefined ? ['      if (@f[$ipc, $mnt, $id] == 0) { @f[$ipc, $mnt, $id] = pid; }'] : []),
    '    }',
    '  }',
    `  if (pid == ${integer(o.readyPid, 'pid')}) {`,
    ...readyStop(),
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
  /** The `exits` form: processes that exited, with the namespaces they held (count: exits of that pid there). */
  exits: (MountNamespace & { pid: number; count: number })[];
}

const COUNT_LINE = /^@c\[(\d{1,10}), (\d{1,10}), (\d{1,20}), ([02]), (-?\d{1,20})\]: (\d{1,20})$/;
const FIRST_LINE = /^@f\[(\d{1,10}), (\d{1,10}), (\d{1,20})\]: (\d{1,10})$/;
const EXIT_LINE = /^@x\[(\d{1,10}), (\d{1,10}), (\d{1,10}), (\d{1,20})\]: (\d{1,20})$/;

/** Parses the lines printed between the dump markers; anything else there is an error. */
export function parseBpfDump(lines: readonly string[]): BpfDump {
  const dump: BpfDump = { counts: [], firsts: [], exits: [] };
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
    const x = EXIT_LINE.exec(line);
    if (x) {
      dump.exits.push({ pid: Number(x[1]), ipc: Number(x[2]), mnt: Number(x[3]), mntId: x[4]!, count: Number(x[5]) });
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
 * counted call came from `pid` (the container's init, learnt while it ran); without a pid,
 * `took`, the one an earlier reading of its calls found (for a report that then failed), else
 * the only namespace of the pod not yet `assigned` to a container. Anything ambiguous is
 * refused rather than guessed (an inode can be reused by a later pod or container).
 */
export function callsOfContainer(dump: BpfDump, pod: PodNamespaces, pid: number | undefined, assigned: readonly MountNamespace[], took?: MountNamespace): ContainerCalls {
  const mine = dump.firsts.filter((f) => f.ipc === pod.ipc && f.mnt !== pod.pauseMnt);
  const candidates = pid !== undefined ? mine.filter((f) => f.pid === pid) : took ? mine.filter((f) => sameNamespace(took, f)) : mine.filter((f) => !assigned.some((a) => sameNamespace(a, f)));
  if (candidates.length !== 1) {
    return { ok: false, why: candidates.length === 0 ? 'no counted calls in its namespace' : `${candidates.length} mount namespaces of the pod could be the container's` };
  }
  const key = candidates[0]!;
  return { ok: true, key: { ipc: key.ipc, mnt: key.mnt, mntId: key.mntId }, counts: dump.counts.filter((c) => sameNamespace(c, key)) };
}

/** Syscall names of counted calls, `arch:number` of those without a name, and whether any named one was a 32-bit (ia32) call. */
export function namesOf(counts: readonly BpfCount[]): { names: Set<string>; unnamed: string[]; ia32: boolean } {
  const names = new Set<string>();
  const unnamed = new Set<string>();
  let ia32 = false;
  for (const c of counts) {
    const arch = c.ia32 ? AUDIT_ARCH_I386 : AUDIT_ARCH_X86_64;
    const name = c.nr >= 0 && c.nr <= 0xffffffff ? syscallName(arch, c.nr) : undefined;
    if (name === undefined) unnamed.add(`${arch.toString(16)}:${c.nr}`);
    else {
      names.add(name);
      ia32 ||= c.ia32;
    }
  }
  return { names, unnamed: [...unnamed].sort(), ia32 };
}
