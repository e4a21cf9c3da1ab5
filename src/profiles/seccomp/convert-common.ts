// What the seccomp format converters share (docs/convert.md): their options and result, readers
// of loosely typed JSON / YAML values into profile fields with an error naming the path, and the
// resolution of conflicting unconditional rules.

import { SpokeError } from '../../core/errors.js';
import { actionRank, sameVerdict, verdictOf } from './actions.js';
import { SECCOMP_OPERATORS, type SeccompAction, type SeccompArg, type SeccompProfile, type SeccompSyscall } from './types.js';
import { memberPath } from '../../core/json.js';

export type SourceFormat = 'docker' | 'spo';

export interface ConvertOptions {
  /** The node's architecture as a Go name (`amd64`, `arm64`, …). */
  arch: string;
  /** The container's capabilities, with or without the `CAP_` prefix. */
  caps: readonly string[];
  /** The format; detected when absent. */
  from?: SourceFormat;
}

export interface Conversion {
  format: SourceFormat;
  profile: SeccompProfile;
  /** What the conversion decided that a reviewer should know (conflicts resolved, entries assumed). */
  notes: string[];
}

export type Json = Record<string, unknown>;

export const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

export function invalid(path: string, message: string, reason: 'PROFILE_INVALID' | 'JSON_INVALID' | 'BASE_PROFILE' = 'PROFILE_INVALID'): SpokeError {
  return new SpokeError('SecurityProfileInvalid', `${path}: ${message}`, { path }, { reason });
}

export function uint(v: unknown, path: string, max: bigint): bigint {
  if (typeof v === 'bigint' && v >= 0n && v <= max) return v;
  if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 && BigInt(v) <= max) return BigInt(v);
  throw invalid(path, `must be an unsigned integer up to ${max}`);
}

export function oneOf<T extends string>(v: unknown, path: string, allowed: readonly T[], what: string): T {
  if (typeof v === 'string' && (allowed as readonly string[]).includes(v)) return v as T;
  throw invalid(path, `unknown ${what} ${JSON.stringify(v)?.slice(0, 80)}`);
}

export function stringList(v: unknown, path: string): string[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v) || !v.every((s) => typeof s === 'string')) throw invalid(path, 'must be a list of strings');
  return v as string[];
}

export function only(o: Json, path: string, known: readonly string[]): void {
  for (const k of Object.keys(o)) if (!known.includes(k)) throw invalid(memberPath(path, k), 'unknown member');
}

export const U32 = 0xffff_ffffn;
export const U64 = (1n << 64n) - 1n;

export function convertArgs(v: unknown, path: string): SeccompArg[] | undefined {
  if (v === undefined || v === null) return undefined;
  if (!Array.isArray(v)) throw invalid(path, 'must be a list');
  if (v.length === 0) return undefined;
  return v.map((a, i) => {
    const p = `${path}[${i}]`;
    if (!isObject(a)) throw invalid(p, 'must be an object');
    only(a, p, ['index', 'value', 'valueTwo', 'op']);
    const valueTwo = a.valueTwo === undefined || a.valueTwo === null ? 0n : uint(a.valueTwo, `${p}.valueTwo`, U64);
    return {
      index: Number(uint(a.index, `${p}.index`, 5n)),
      value: uint(a.value ?? 0n, `${p}.value`, U64),
      op: oneOf(a.op, `${p}.op`, SECCOMP_OPERATORS, 'operator'),
      ...(valueTwo === 0n ? {} : { valueTwo }),
    };
  });
}

/** A numeric errno, from `errnoRet` (or the spelled name next to it, which must then agree in kind). */
export function errnoOf(entry: Json, numeric: string, named: string, path: string): number | undefined {
  if (entry[numeric] !== undefined && entry[numeric] !== null) return Number(uint(entry[numeric], `${path}${numeric}`, U32));
  if (entry[named] !== undefined && entry[named] !== null) {
    throw invalid(`${path}${named}`, `an errno given only by name (${JSON.stringify(entry[named])?.slice(0, 40)}) cannot be converted; add ${numeric}`);
  }
  return undefined;
}

export function syscallEntry(names: string[], action: SeccompAction, errnoRet: number | undefined, args: SeccompArg[] | undefined): SeccompSyscall {
  return { names, action, ...(errnoRet === undefined ? {} : { errnoRet }), ...(args === undefined ? {} : { args }) };
}

/**
 * One syscall with unconditional rules that disagree: keep the most restrictive (a profile must
 * not be looser than any of its sources' readings) and say so.
 */
export function resolveConflicts(entries: SeccompSyscall[], notes: string[]): SeccompSyscall[] {
  const strictest = new Map<string, SeccompSyscall>();
  const conflicting = new Set<string>();
  for (const e of entries) {
    if (e.args !== undefined) continue;
    for (const name of e.names) {
      const seen = strictest.get(name);
      if (seen === undefined) strictest.set(name, e);
      else if (!sameVerdict(verdictOf(seen.action, seen.errnoRet), verdictOf(e.action, e.errnoRet))) {
        conflicting.add(name);
        if (actionRank(e.action) < actionRank(seen.action)) strictest.set(name, e);
      }
    }
  }
  for (const name of [...conflicting].sort()) {
    const kept = strictest.get(name)!;
    notes.push(`${name}: the source gives conflicting unconditional rules; kept the most restrictive, ${kept.action}${kept.errnoRet === undefined ? '' : `(errno ${kept.errnoRet})`}`);
  }
  return entries
    .map((e) => (e.args !== undefined ? e : { ...e, names: e.names.filter((n) => !conflicting.has(n) || strictest.get(n) === e) }))
    .filter((e) => e.names.length > 0);
}
