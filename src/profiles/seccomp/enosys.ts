// runc's ENOSYS stub, as the diff reads it (docs/diff.md): runc answers ERRNO(ENOSYS), instead of
// the default action, for a call numbered above the highest call its profile names on that
// architecture, so that programs fall back from calls newer than the profile. Every name the
// node's libseccomp knows counts, those of a rule at the default action too; a name it does not
// know is skipped, rule and all. There is no stub when the default action lets calls through
// (ALLOW, LOG, TRACE: runc's isAllowAction), nor on an architecture on which the highest call
// named is numbered 0 or none is named. runc 1.1 stubs the profile's architectures, runc 1.2 the
// node's own too. crun has no stub. Call numbers are known here for the x86 ABIs
// (syscall-numbers.ts): x86_64, 32-bit x86 and x32.

import { I386_SYSCALLS, X32_SYSCALLS, X86_64_SYSCALLS } from './syscall-numbers.js';
import type { SeccompProfile, Verdict } from './types.js';

/**
 * The calls numbered from here (424, pidfd_send_signal, Linux 5.1: the first number shared by
 * every x86 ABI) were added after libseccomp 2.4, the oldest runc builds with: a node's library may
 * lack any of them, and knows every call numbered below.
 */
export const FIRST_CALL_LIBSECCOMP_MAY_LACK = 424;

/** What runc's stub answers. */
export const ENOSYS_VERDICT: Verdict = { action: 'SCMP_ACT_ERRNO', errno: 38 };

export interface CallTable {
  byNumber: ReadonlyMap<number, string>;
  byName: ReadonlyMap<string, number>;
}

const tableOf = (byNumber: ReadonlyMap<number, string>): CallTable => ({ byNumber, byName: new Map([...byNumber].map(([nr, name]) => [name, nr])) });
const TABLES = new Map<string, CallTable>([
  ['SCMP_ARCH_X86_64', tableOf(X86_64_SYSCALLS)],
  ['SCMP_ARCH_X86', tableOf(I386_SYSCALLS)],
  ['SCMP_ARCH_X32', tableOf(X32_SYSCALLS)],
]);

/** The calls of `architecture` by number and by name, when they are known here. */
export function callTable(architecture: string): CallTable | undefined {
  return TABLES.get(architecture);
}

/** Whether runc would add the stub for `p` at all (its default action decides). */
export function stubbable(p: SeccompProfile): boolean {
  return !(p.defaultAction === 'SCMP_ACT_ALLOW' || p.defaultAction === 'SCMP_ACT_LOG' || p.defaultAction === 'SCMP_ACT_TRACE');
}

/**
 * The number past which runc answers ENOSYS for the calls `p` leaves to its default, on the
 * architecture of `table`, when the node's libseccomp knows the calls numbered up to `known`;
 * undefined when there is no stub there.
 */
export function enosysThreshold(p: SeccompProfile, table: CallTable, known: number): number | undefined {
  if (!stubbable(p)) return undefined;
  let highest = 0;
  for (const entry of p.syscalls ?? []) {
    for (const name of entry.names) {
      const nr = table.byName.get(name);
      if (nr !== undefined && nr <= known && nr > highest) highest = nr;
    }
  }
  return highest === 0 ? undefined : highest;
}
