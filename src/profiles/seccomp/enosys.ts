// runc's ENOSYS stub, as the diff reads it (docs/diff.md): runc answers ERRNO(ENOSYS), instead of
// the default action, for a call numbered above the highest call its profile names on that
// architecture, so that programs fall back from calls newer than the profile. The stub runs
// before the filter: a named call above that number gets ENOSYS too. Every name the node's
// libseccomp resolves to a call number counts, those of a rule at the default action too; a name
// it does not know is skipped, rule and all, and so is one it resolves to a pseudo-number (from
// libseccomp 2.5, the socket and IPC calls on 32-bit x86, whose direct calls then stay above the
// stub's reach only if another name sets the number higher). There is no stub when the default
// action lets calls through (ALLOW, LOG, TRACE: runc's isAllowAction), nor where the highest
// number is 0 (x32 numbers carry 0x40000000, so never) or nothing is named. runc 1.1 stubs the
// profile's architectures, runc 1.2 the node's own too. crun has no stub. Call numbers are known
// here for the x86 ABIs (syscall-numbers.ts): x86_64, 32-bit x86 and x32.

import { I386_SYSCALLS, X32_SYSCALLS, X86_64_SYSCALLS, X86_SYSCALL_NAMES } from './syscall-numbers.js';
import type { SeccompProfile, Verdict } from './types.js';

/**
 * Whether a node's libseccomp may lack call `nr`: those numbered from 424 (pidfd_send_signal, Linux
 * 5.1, the first number shared by every x86 ABI) were added after libseccomp 2.4, the oldest runc
 * builds with, but for x32's own rows 512–547, as old as x32. Every other call it knows.
 */
export function mayLack(nr: number): boolean {
  return nr >= 424 && !(nr >= 512 && nr <= 547);
}

/** What runc's stub answers. */
export const ENOSYS_VERDICT: Verdict = { action: 'SCMP_ACT_ERRNO', errno: 38 };

/** The socket and SysV IPC calls libseccomp 2.5 resolves to pseudo-numbers on 32-bit x86 (socketcall, ipc). */
const MULTIPLEXED = new Set([
  'socket', 'bind', 'connect', 'listen', 'accept', 'getsockname', 'getpeername', 'socketpair', 'send', 'recv', 'sendto', 'recvfrom',
  'shutdown', 'setsockopt', 'getsockopt', 'sendmsg', 'recvmsg', 'accept4', 'recvmmsg', 'sendmmsg',
  'semop', 'semget', 'semctl', 'semtimedop', 'msgsnd', 'msgrcv', 'msgget', 'msgctl', 'shmat', 'shmdt', 'shmget', 'shmctl',
]);

export interface CallTable {
  byNumber: ReadonlyMap<number, string>;
  byName: ReadonlyMap<string, number>;
  /** Added to every number as libseccomp gives it (x32: __X32_SYSCALL_BIT). */
  bias: number;
  /** Names libseccomp may resolve to pseudo-numbers on this architecture. */
  multiplexed: ReadonlySet<string>;
}

const tableOf = (byNumber: ReadonlyMap<number, string>, bias = 0, multiplexed: ReadonlySet<string> = new Set()): CallTable => ({
  byNumber,
  byName: new Map([...byNumber].map(([nr, name]) => [name, nr])),
  bias,
  multiplexed,
});
const TABLES = new Map<string, CallTable>([
  ['SCMP_ARCH_X86_64', tableOf(X86_64_SYSCALLS)],
  ['SCMP_ARCH_X86', tableOf(I386_SYSCALLS, 0, MULTIPLEXED)],
  ['SCMP_ARCH_X32', tableOf(X32_SYSCALLS, 0x4000_0000)],
]);
/** Names some x86 ABI has (on the others libseccomp gives them no number of their own), or that it multiplexes. */
const X86_NAMES = new Set([...X86_SYSCALL_NAMES, ...MULTIPLEXED]);

/** The calls of `architecture` by number and by name, when they are known here. */
export function callTable(architecture: string): CallTable | undefined {
  return TABLES.get(architecture);
}

/** Whether runc would add the stub for `p` at all (its default action decides). */
export function stubbable(p: SeccompProfile): boolean {
  return !(p.defaultAction === 'SCMP_ACT_ALLOW' || p.defaultAction === 'SCMP_ACT_LOG' || p.defaultAction === 'SCMP_ACT_TRACE');
}

/** What the node's libseccomp resolves, in one of the readings the diff compares. */
export interface Resolving {
  /** It knows the calls numbered up to this, and those it cannot lack (mayLack). */
  known: number;
  /** It gives the multiplexed calls pseudo-numbers (2.5 and later on 32-bit x86). */
  multiplexed: boolean;
  /** It knows the names no table here has (calls newer than these tables), numbered past them all. */
  newer: boolean;
}

/** Whether `name`, numbered `nr` here, counts for the threshold and has its rule in this reading. */
export function resolves(table: CallTable, name: string, nr: number, r: Resolving): boolean {
  return (nr <= r.known || !mayLack(nr)) && !(r.multiplexed && table.multiplexed.has(name));
}

/**
 * The number past which runc answers ENOSYS (for every call, named or not), on the architecture
 * of `table`, in reading `r`; undefined when there is no stub there.
 */
export function enosysThreshold(p: SeccompProfile, table: CallTable, r: Resolving): number | undefined {
  if (!stubbable(p)) return undefined;
  let highest: number | undefined;
  for (const entry of p.syscalls ?? []) {
    for (const name of entry.names) {
      const nr = table.byName.get(name);
      // A name newer than these tables, which the library knows: numbered past every call here.
      const counted = nr === undefined ? (r.newer && !X86_NAMES.has(name) ? Number.MAX_SAFE_INTEGER : undefined) : resolves(table, name, nr, r) ? nr : undefined;
      if (counted !== undefined && (highest === undefined || counted > highest)) highest = counted;
    }
  }
  return highest === undefined || highest + table.bias === 0 ? undefined : highest;
}

/** Whether `p` names a call no table here has (so a reading with a newer library is compared too). */
export function namesNewerCalls(p: SeccompProfile): boolean {
  return (p.syscalls ?? []).some((e) => e.names.some((n) => !X86_NAMES.has(n)));
}
