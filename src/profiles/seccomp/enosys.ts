// runc's ENOSYS stub, as the diff reads it (docs/diff.md): runc answers ERRNO(ENOSYS), instead of
// the default action, for a call numbered above the highest call its profile names on that
// architecture, so that programs fall back from calls newer than the profile. Every name counts,
// those of a rule at the default action too. There is no stub when the default action lets calls
// through (ALLOW, LOG, TRACE: runc's isAllowAction), when the default errno is ENOSYS already, or
// on an architecture on which the profile names no call (docs/security-model.md). crun has no
// such stub. Call numbers are known here for the x86 ABIs only (syscall-numbers.ts).

import { I386_SYSCALLS, X86_64_SYSCALLS } from './syscall-numbers.js';
import type { SeccompArchitecture, SeccompProfile, Verdict } from './types.js';

const ENOSYS = 38;
/** What runc's stub answers. */
export const ENOSYS_VERDICT: Verdict = { action: 'SCMP_ACT_ERRNO', errno: ENOSYS };

const byName = (table: ReadonlyMap<number, string>): ReadonlyMap<string, number> => new Map([...table].map(([nr, name]) => [name, nr]));
const NUMBERS = new Map<string, { byNumber: ReadonlyMap<number, string>; byName: ReadonlyMap<string, number> }>([
  ['SCMP_ARCH_X86_64', { byNumber: X86_64_SYSCALLS, byName: byName(X86_64_SYSCALLS) }],
  ['SCMP_ARCH_X86', { byNumber: I386_SYSCALLS, byName: byName(I386_SYSCALLS) }],
]);

/** The calls of `architecture` by number, when they are known here. */
export function callNumbers(architecture: SeccompArchitecture | string): { byNumber: ReadonlyMap<number, string>; byName: ReadonlyMap<string, number> } | undefined {
  return NUMBERS.get(architecture);
}

/**
 * The number past which runc answers ENOSYS for the calls `p` does not name, on the architecture
 * whose numbers `byName` gives; undefined when runc adds no stub there.
 */
export function enosysThreshold(p: SeccompProfile, byName: ReadonlyMap<string, number>): number | undefined {
  if (p.defaultAction === 'SCMP_ACT_ALLOW' || p.defaultAction === 'SCMP_ACT_LOG' || p.defaultAction === 'SCMP_ACT_TRACE') return undefined;
  if (p.defaultErrnoRet === ENOSYS) return undefined;
  let highest: number | undefined;
  for (const entry of p.syscalls ?? []) {
    for (const name of entry.names) {
      const nr = byName.get(name);
      if (nr !== undefined && (highest === undefined || nr > highest)) highest = nr;
    }
  }
  return highest;
}
