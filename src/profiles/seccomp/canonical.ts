// Canonical form and bytes of a profile, so equal merges give byte-identical files (KEP-6061 §4
// "Output is deterministic"). The form:
// - one entry per (verdict, argument filter), naming every syscall that shares both, names
//   sorted by UTF-16 code unit; one unconditional entry at the default action names every syscall
//   an input names that has no other entry;
// - entries sorted by action (most restrictive first), then errno, then filter (by argument
//   index, operator in the order EQ NE GE GT LE MASKED_EQ, value, valueTwo);
// - EPERM written as an absent errnoRet, errno omitted where the action ignores it, valueTwo only
//   on SCMP_CMP_MASKED_EQ and only when not 0, KILL_THREAD spelled SCMP_ACT_KILL;
// - architectures in runtime-spec order and omitted when empty; flags only when given;
// - members in a fixed order, compact JSON, integers in decimal.

import { actionRank, EPERM, verdictKey } from './actions.js';
import { argOfAtom, compareConjunctions, conjunctionKey } from './conditions.js';
import type { Rule } from './decision.js';
import {
  SECCOMP_ARCHITECTURES,
  type SeccompArchitecture,
  type SeccompFlag,
  type SeccompProfile,
  type SeccompSyscall,
  type Verdict,
} from './types.js';

export interface ProfileModel {
  defaultVerdict: Verdict;
  architectures: readonly SeccompArchitecture[];
  flags: readonly SeccompFlag[] | undefined;
  listenerPath: string | undefined;
  listenerMetadata: string | undefined;
  /** Per syscall, rules in a shape runc loads exactly; none equal to the default. */
  rules: ReadonlyMap<string, readonly Rule[]>;
  /**
   * Syscalls named at the default action, in one entry without conditions: runc leaves such a
   * rule out of the filter, but counts its name for its ENOSYS threshold (docs/security-model.md#only-tighter).
   */
  atDefault: readonly string[];
}

function withErrno(v: Verdict): { errno?: number } {
  return v.errno === undefined || v.errno === EPERM ? {} : { errno: v.errno };
}

export function buildProfile(model: ProfileModel): SeccompProfile {
  const entries = new Map<string, { rule: Rule; names: string[] }>();
  if (model.atDefault.length > 0) entries.set('default', { rule: { conj: [], verdict: model.defaultVerdict }, names: [...model.atDefault] });
  for (const [name, rules] of model.rules) {
    for (const rule of rules) {
      const key = `${verdictKey(rule.verdict)}|${conjunctionKey(rule.conj)}`;
      const entry = entries.get(key);
      if (entry === undefined) entries.set(key, { rule, names: [name] });
      else entry.names.push(name);
    }
  }
  const sorted = [...entries.values()].sort(
    (a, b) =>
      actionRank(a.rule.verdict.action) - actionRank(b.rule.verdict.action) ||
      (a.rule.verdict.errno ?? 0) - (b.rule.verdict.errno ?? 0) ||
      compareConjunctions(a.rule.conj, b.rule.conj),
  );
  const syscalls = sorted.map(({ rule, names }): SeccompSyscall => {
    const errno = withErrno(rule.verdict).errno;
    return {
      names: names.sort(),
      action: rule.verdict.action,
      ...(errno === undefined ? {} : { errnoRet: errno }),
      ...(rule.conj.length === 0 ? {} : { args: rule.conj.map(argOfAtom) }),
    };
  });
  const defaultErrno = withErrno(model.defaultVerdict).errno;
  const architectures = [...model.architectures].sort((a, b) => SECCOMP_ARCHITECTURES.indexOf(a) - SECCOMP_ARCHITECTURES.indexOf(b));
  return {
    defaultAction: model.defaultVerdict.action,
    ...(defaultErrno === undefined ? {} : { defaultErrnoRet: defaultErrno }),
    ...(architectures.length === 0 ? {} : { architectures }),
    ...(model.flags === undefined ? {} : { flags: [...model.flags] }),
    ...(model.listenerPath === undefined ? {} : { listenerPath: model.listenerPath }),
    ...(model.listenerMetadata === undefined ? {} : { listenerMetadata: model.listenerMetadata }),
    ...(syscalls.length === 0 ? {} : { syscalls }),
  };
}

function member(name: string, json: string): string {
  return `${JSON.stringify(name)}:${json}`;
}

function encodeSyscall(s: SeccompSyscall): string {
  const parts = [member('names', JSON.stringify(s.names)), member('action', JSON.stringify(s.action))];
  if (s.errnoRet !== undefined) parts.push(member('errnoRet', String(s.errnoRet)));
  if (s.args !== undefined) {
    const args = s.args.map((a) => {
      const fields = [member('index', String(a.index)), member('value', a.value.toString())];
      if (a.valueTwo !== undefined) fields.push(member('valueTwo', a.valueTwo.toString()));
      fields.push(member('op', JSON.stringify(a.op)));
      return `{${fields.join(',')}}`;
    });
    parts.push(member('args', `[${args.join(',')}]`));
  }
  return `{${parts.join(',')}}`;
}

/** Serializes members in the fixed order above; integers keep full uint64 precision. */
export function encodeCanonical(p: SeccompProfile): Buffer {
  const parts = [member('defaultAction', JSON.stringify(p.defaultAction))];
  if (p.defaultErrnoRet !== undefined) parts.push(member('defaultErrnoRet', String(p.defaultErrnoRet)));
  if (p.architectures !== undefined) parts.push(member('architectures', JSON.stringify(p.architectures)));
  if (p.flags !== undefined) parts.push(member('flags', JSON.stringify(p.flags)));
  if (p.listenerPath !== undefined) parts.push(member('listenerPath', JSON.stringify(p.listenerPath)));
  if (p.listenerMetadata !== undefined) parts.push(member('listenerMetadata', JSON.stringify(p.listenerMetadata)));
  if (p.syscalls !== undefined) parts.push(member('syscalls', `[${p.syscalls.map(encodeSyscall).join(',')}]`));
  return Buffer.from(`{${parts.join(',')}}`, 'utf8');
}
