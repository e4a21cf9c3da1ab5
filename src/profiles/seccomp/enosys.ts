// runc's ENOSYS stub, as the diff reads it (docs/diff.md): runc (libcontainer/seccomp/patchbpf)
// answers ERRNO(ENOSYS), before the filter, for any call numbered above the highest number among
// the names its profile has on that architecture, as the node's libseccomp resolves them. A name
// the library does not know is skipped, rule and all. There is no stub when the default action lets
// calls through (ALLOW, LOG, TRACE: runc's isAllowAction), nor where the highest number is 0 (x32
// numbers carry 0x40000000, so never) or nothing is named.
//
// Which names a library knows is not monotone in the number (2.5.5 knows 424–453 but not 335), so
// a library is read as a set of known names: those every release from 2.3.1 (the oldest runc's
// libseccomp-golang builds with) to 2.6.1 knows on the architecture are certain, each other name is
// independently known or not, and a name no table here has (a call newer than them) is numbered
// past them all, in an order unknown. stubOutcomes enumerates the thresholds one library gives
// both profiles, and what each call gets under them: exact for the calls tabled here, sound
// (every order) among the newer ones.

import { I386_SYSCALLS, X32_SYSCALLS, X86_64_SYSCALLS, X86_SYSCALL_NAMES } from './syscall-numbers.js';
import type { SeccompProfile, Verdict } from './types.js';

/** What runc's stub answers. */
export const ENOSYS_VERDICT: Verdict = { action: 'SCMP_ACT_ERRNO', errno: 38 };

/**
 * How one release resolves a family of 32-bit x86 multiplexed names: `counts`, numbered as the
 * direct call (so it sets the threshold); `ruled`, its rule put on the direct call as well as on
 * socketcall/ipc.
 */
interface FamilyReading {
  counts: boolean;
  ruled: boolean;
}

interface Family {
  names: ReadonlySet<string>;
  readings: readonly FamilyReading[];
}

/**
 * The socket calls: numbered until 2.4, pseudo-numbered from 2.5, their rule on the direct call
 * either way (x86_rule_add demultiplexes).
 */
const SOCKET_FAMILY: Family = {
  names: new Set(['socket', 'bind', 'connect', 'listen', 'accept', 'getsockname', 'getpeername', 'socketpair', 'send', 'recv', 'sendto', 'recvfrom', 'shutdown', 'setsockopt', 'getsockopt', 'sendmsg', 'recvmsg', 'accept4', 'recvmmsg', 'sendmmsg']),
  readings: [{ counts: true, ruled: true }, { counts: false, ruled: true }],
};

/**
 * The SysV IPC calls: pseudo-numbered with the rule on ipc only up to 2.4.1, numbered in 2.4.2–2.4.4,
 * pseudo-numbered with the rule on the direct call too from 2.5.
 */
const IPC_FAMILY: Family = {
  names: new Set(['semop', 'semget', 'semctl', 'semtimedop', 'msgsnd', 'msgrcv', 'msgget', 'msgctl', 'shmat', 'shmdt', 'shmget', 'shmctl']),
  readings: [{ counts: false, ruled: false }, { counts: true, ruled: true }, { counts: false, ruled: true }],
};

export interface CallTable {
  /** Calls by number as libseccomp numbers them, ascending. */
  calls: readonly (readonly [number, string])[];
  byName: ReadonlyMap<string, number>;
  /** Added to every number as libseccomp gives it (x32: __X32_SYSCALL_BIT). */
  bias: number;
  /** Whether some release from 2.3.1 lacks the call numbered so (found by comparing each release's tables). */
  uncertain: (nr: number) => boolean;
  /** Names whose numbering a release decides per family; each family read independently. */
  families: readonly Family[];
}

const tableOf = (byNumber: ReadonlyMap<number, string>, uncertain: (nr: number) => boolean, bias = 0, families: readonly Family[] = []): CallTable => {
  const calls = [...byNumber].sort(([a], [b]) => a - b);
  return { calls, byName: new Map(calls.map(([nr, name]) => [name, nr])), bias, uncertain, families };
};
// libseccomp numbers map_shadow_stack 453 on 32-bit x86 (from 2.5.5) and x32 (from 2.5.6), though
// the kernel has that call on x86_64 only: runc counts the number libseccomp gives.
const TABLES = new Map<string, CallTable>([
  ['SCMP_ARCH_X86_64', tableOf(X86_64_SYSCALLS, (nr) => nr >= 327)],
  ['SCMP_ARCH_X86', tableOf(new Map([...I386_SYSCALLS, [453, 'map_shadow_stack']]), (nr) => nr >= 378, 0, [SOCKET_FAMILY, IPC_FAMILY])],
  ['SCMP_ARCH_X32', tableOf(new Map([...X32_SYSCALLS, [453, 'map_shadow_stack']]), (nr) => nr >= 329 && !(nr >= 512 && nr <= 545), 0x4000_0000)],
]);
/**
 * The names libseccomp (2.6.1) knows on other architectures only: it gives them no number on any
 * x86 ABI, so a profile's entry for one is skipped there, never a call newer than the tables.
 */
const OTHER_ARCHITECTURES_ONLY = [
  'arm_fadvise64_64', 'arm_sync_file_range', 'atomic_barrier', 'atomic_cmpxchg_32', 'breakpoint', 'cachectl', 'cacheflush', 'getpagesize',
  'get_tls', 'multiplexer', 'pciconfig_iobase', 'pciconfig_read', 'pciconfig_write', 'riscv_flush_icache', 'riscv_hwprobe', 'rtas',
  's390_guarded_storage', 's390_pci_mmio_read', 's390_pci_mmio_write', 's390_runtime_instr', 's390_sthyi', 'set_tls', 'spu_create', 'spu_run',
  'subpage_prot', 'swapcontext', 'switch_endian', 'sync_file_range2', 'syscall', 'sys_debug_setcontext', 'sysmips', 'timerfd', 'usr26', 'usr32',
];
/** Names some x86 ABI has (where a table lacks one, libseccomp gives it no number of its own there), or no x86 ABI does. */
const X86_NAMES = new Set([...X86_SYSCALL_NAMES, ...SOCKET_FAMILY.names, ...IPC_FAMILY.names, ...OTHER_ARCHITECTURES_ONLY]);

/** The calls of `architecture` as libseccomp numbers them, when they are known here. */
export function callTable(architecture: string): CallTable | undefined {
  return TABLES.get(architecture);
}

/** Whether runc would add the stub for `p` at all (its default action decides). */
export function stubbable(p: SeccompProfile): boolean {
  return !(p.defaultAction === 'SCMP_ACT_ALLOW' || p.defaultAction === 'SCMP_ACT_LOG' || p.defaultAction === 'SCMP_ACT_TRACE');
}

/** What runc makes of one call for one profile: the stub's ENOSYS, the profile's rule for it, its default. */
export type StubOutcome = 0 | 1 | 2;
export const ENOSYS_OUTCOME = 0;
export const RULE_OUTCOME = 1;
const DEFAULT_OUTCOME = 2;

/** A profile as the stub reads it on one architecture. */
export interface StubbedProfile {
  names: ReadonlySet<string>;
  /** runc stubs this architecture for it (stubbable, and listed or the node's under runc 1.1.15 and later). */
  stubbed: boolean;
}

/**
 * One threshold a profile may get: a tabled number, a name newer than the tables (`newer`), or none
 * (`nr` undefined); with the uncertain names that must be known (`known`) or unknown for it.
 */
interface Threshold {
  nr: number | undefined;
  newer?: string;
  known?: string;
  unknown: ReadonlySet<string>;
}

/**
 * Stands for every call newer than the tables that neither profile names (compared as one: they
 * get the same verdicts), in the `syscalls` of an enosys change.
 */
export const UNTABLED_CALLS = '(calls newer than spoke\'s tables)';

/** A call compared: tabled (`nr`) or newer than the tables. */
interface Call {
  name: string;
  nr: number | undefined;
}

/**
 * The thresholds `p` gets across libraries: its highest certain name's, and each uncertain or newer
 * name's above it. Of the newer names only `standsIn` count (see stubOutcomes).
 */
function thresholds(p: StubbedProfile, table: CallTable, family: ReadonlyMap<string, FamilyReading>, standsIn: ReadonlySet<string>): Threshold[] {
  if (!p.stubbed) return [{ nr: undefined, unknown: new Set() }];
  let certain: number | undefined;
  const uncertain: { name: string; nr: number }[] = [];
  const newer: string[] = [];
  for (const name of p.names) {
    const nr = table.byName.get(name);
    const reading = family.get(name);
    if (nr === undefined) {
      if (standsIn.has(name)) newer.push(name);
    } else if (reading !== undefined ? reading.counts : !table.uncertain(nr)) {
      if (certain === undefined || nr > certain) certain = nr;
    } else if (reading === undefined) {
      uncertain.push({ name, nr });
    }
  }
  const unknownAbove = (t: number) => new Set([...uncertain.filter((u) => u.nr > t).map((u) => u.name), ...newer]);
  // No stub where the highest number is 0 (runc's check); what the library knows stays as it is.
  const at = (nr: number | undefined) => (nr === undefined || nr + table.bias === 0 ? undefined : nr);
  const out: Threshold[] = [{ nr: at(certain), unknown: unknownAbove(certain ?? -1) }];
  for (const u of uncertain) if (u.nr > (certain ?? -1)) out.push({ nr: at(u.nr), known: u.name, unknown: unknownAbove(u.nr) });
  for (const name of newer) out.push({ nr: undefined, newer: name, known: name, unknown: new Set() });
  return out;
}

/** Whether the stub answers tabled call `nr` under threshold `t` (a newer name's lies above every tabled call). */
function answersTabled(t: Threshold, nr: number): boolean {
  return t.nr !== undefined && nr > t.nr;
}

/** Where a threshold that is no newer name lies among the newer calls: a tabled number below them all, none above. */
const BELOW_NEWER = -100;
const ABOVE_NEWER = 100;

/**
 * Whether the stub answers a call newer than the tables, [for OLD, for NEW], in each order of the
 * newer names one library may give: a newer name that is a threshold lies at or above every other
 * known name of its profile, and the call, when known and named by a profile, at or below that
 * profile's threshold. Both profiles read the one order.
 */
function newerCallAnswers(to: Threshold, tn: Threshold, call: string, known: boolean, older: StubbedProfile, newer: StubbedProfile): [boolean, boolean][] {
  const places = (t: Threshold) => (t.newer !== undefined ? [0, 2, 4] : [t.nr !== undefined ? BELOW_NEWER : ABOVE_NEWER]);
  /** The answers found: bit `code` for each, where code has 2 for OLD's ENOSYS and 1 for NEW's. */
  let found = 0;
  for (const po of places(to)) {
    for (const pn of places(tn)) {
      if (to.newer !== undefined && tn.newer !== undefined) {
        // One name, one place; two names, two places, in the order the profiles' names allow.
        if ((po === pn) !== (to.newer === tn.newer)) continue;
        if (to.newer !== tn.newer && ((older.names.has(tn.newer) && !(pn < po)) || (newer.names.has(to.newer) && !(po < pn)))) continue;
      }
      for (const pc of [-1, 0, 1, 2, 3, 4, 5]) {
        if (to.newer !== undefined && ((pc === po) !== (call === to.newer) || (known && older.names.has(call) && pc > po))) continue;
        if (tn.newer !== undefined && ((pc === pn) !== (call === tn.newer) || (known && newer.names.has(call) && pc > pn))) continue;
        found |= 1 << ((pc > po ? 2 : 0) | (pc > pn ? 1 : 0));
      }
    }
  }
  const out: [boolean, boolean][] = [];
  for (const code of [0, 1, 2, 3]) if ((found & (1 << code)) !== 0) out.push([(code & 2) !== 0, (code & 1) !== 0]);
  return out;
}

/** Every reading of the families: one reading per family, each chosen independently. */
function familyReadings(table: CallTable): ReadonlyMap<string, FamilyReading>[] {
  let out: Map<string, FamilyReading>[] = [new Map()];
  for (const f of table.families) out = out.flatMap((m) => f.readings.map((r) => new Map([...m, ...[...f.names].map((n) => [n, r] as const)])));
  return out;
}

/**
 * For each call whose outcome under runc may differ from RULE/DEFAULT (the reading without the
 * stub, every name known), the pairs of outcomes (OLD's × 3 + NEW's) some library gives it, as a
 * bit set. Calls are the table's, the names newer than it either profile has, and UNTABLED_CALLS.
 */
export function stubOutcomes(table: CallTable, older: StubbedProfile, newer: StubbedProfile): Map<string, number> {
  const out = new Map<string, number>();
  const add = (name: string, o: StubOutcome, n: StubOutcome) => out.set(name, (out.get(name) ?? 0) | (1 << (o * 3 + n)));
  const named = new Set([...older.names, ...newer.names]);
  // Names newer than the tables are alike within their class (named by OLD only, by NEW only, by
  // both, by neither: UNTABLED_CALLS): three of a class stand in for all of it (a threshold of
  // each profile and the call compared may be three of them), and the others get the outcomes of
  // the first. So the work does not grow with the count of names a profile may make up.
  const standIns = new Map<number, string[]>();
  const standInFor = new Map<string, string>();
  for (const name of [...named, UNTABLED_CALLS]) {
    if (table.byName.has(name) || X86_NAMES.has(name)) continue;
    const kind = (older.names.has(name) ? 1 : 0) | (newer.names.has(name) ? 2 : 0);
    const chosen = standIns.get(kind) ?? [];
    standIns.set(kind, chosen);
    if (chosen.length < 3) chosen.push(name);
    else standInFor.set(name, chosen[0]!);
  }
  const standsIn = new Set([...standIns.values()].flat());
  const newerCalls: Call[] = [...standsIn].map((name) => ({ name, nr: undefined }));
  for (const family of familyReadings(table)) {
    // Calls whose own name a library may not know, or whose rule it may put elsewhere: compared in every pair.
    const special: Call[] = [...newerCalls];
    for (const name of named) {
      const nr = table.byName.get(name);
      if (nr !== undefined && (family.has(name) ? !family.get(name)!.ruled : table.uncertain(nr))) special.push({ name, nr });
    }
    const specialNames = new Set(special.map((c) => c.name));
    const olds = thresholds(older, table, family, standsIn);
    const news = thresholds(newer, table, family, standsIn);
    for (const to of olds) {
      for (const tn of news) {
        if ((to.known !== undefined && tn.unknown.has(to.known)) || (tn.known !== undefined && to.unknown.has(tn.known))) continue;
        const visit = (call: Call, known: boolean) => {
          const rule = (p: StubbedProfile): StubOutcome => (known && p.names.has(call.name) ? RULE_OUTCOME : DEFAULT_OUTCOME);
          const answers: [boolean, boolean][] = call.nr === undefined ? newerCallAnswers(to, tn, call.name, known, older, newer) : [[answersTabled(to, call.nr), answersTabled(tn, call.nr)]];
          for (const [eo, en] of answers) add(call.name, eo ? ENOSYS_OUTCOME : rule(older), en ? ENOSYS_OUTCOME : rule(newer));
        };
        for (const call of special) {
          const fixed = family.get(call.name)?.ruled;
          const forced = call.name === to.known || call.name === tn.known ? true : to.unknown.has(call.name) || tn.unknown.has(call.name) ? false : fixed;
          for (const known of forced === undefined ? [true, false] : [forced]) visit(call, known);
        }
        // The other calls differ from the stubless reading only where one threshold answers and the other not.
        const [lo, hi] = [to.nr ?? Infinity, tn.nr ?? Infinity].sort((a, b) => a - b) as [number, number];
        if (lo === hi) continue;
        for (let i = firstAbove(table.calls, lo); i < table.calls.length && table.calls[i]![0] <= hi; i++) {
          const [nr, name] = table.calls[i]!;
          if (!specialNames.has(name)) visit({ name, nr }, true);
        }
      }
    }
  }
  for (const [name, first] of standInFor) {
    const outcomes = out.get(first);
    if (outcomes !== undefined) out.set(name, outcomes);
  }
  return out;
}

/** The index of the first call numbered above `nr`. */
function firstAbove(calls: readonly (readonly [number, string])[], nr: number): number {
  let [lo, hi] = [0, calls.length];
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (calls[mid]![0] > nr) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}
