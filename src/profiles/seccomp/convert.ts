// Seccomp profiles in the formats people already have → the runtime-spec `LinuxSeccomp` document
// a KEP-6061 artifact carries (docs/convert.md). Pure: the caller reads the file and names the
// node's architecture and capabilities.
//
// Docker / containers-common format (moby profiles/seccomp): `archMap` lists each native
// architecture with its sub-architectures; a syscall entry applies when its `includes` are all
// met and none of its `excludes` is: `arches` are Go architecture names compared with the
// node's, `caps` capability names compared with the container's bounding set (includes: every
// one present; excludes: any one present skips the entry), `minKernel` a kernel version.
// containers-common adds `defaultErrno` / `errno` (names) beside the numeric `…ErrnoRet`.
//
// Security Profiles Operator `SeccompProfile` objects: `spec` is the profile; `baseProfileName`
// names another object, which cannot be resolved offline.

import { parse as parseYaml } from 'yaml';
import { SpokeError } from '../../core/errors.js';
import { actionRank, sameVerdict, verdictOf } from './actions.js';
import { decodeSeccomp } from './decode.js';
import {
  SECCOMP_ACTIONS,
  SECCOMP_ARCHITECTURES,
  SECCOMP_FLAGS,
  SECCOMP_OPERATORS,
  type SeccompAction,
  type SeccompArchitecture,
  type SeccompArg,
  type SeccompFlag,
  type SeccompProfile,
  type SeccompSyscall,
} from './types.js';

export type SourceFormat = 'docker' | 'spo';

/** The CRI's default capability set (what containerd and CRI-O give a container by default). */
export const CRI_DEFAULT_CAPABILITIES = [
  'CHOWN',
  'DAC_OVERRIDE',
  'FSETID',
  'FOWNER',
  'MKNOD',
  'NET_RAW',
  'SETGID',
  'SETUID',
  'SETFCAP',
  'SETPCAP',
  'NET_BIND_SERVICE',
  'SYS_CHROOT',
  'KILL',
  'AUDIT_WRITE',
] as const;

/** Go architecture names (as in `includes.arches`) → seccomp architectures. */
export const GO_ARCHITECTURES: Readonly<Record<string, SeccompArchitecture>> = {
  amd64: 'SCMP_ARCH_X86_64',
  x86: 'SCMP_ARCH_X86',
  '386': 'SCMP_ARCH_X86',
  x32: 'SCMP_ARCH_X32',
  arm64: 'SCMP_ARCH_AARCH64',
  arm: 'SCMP_ARCH_ARM',
  mips: 'SCMP_ARCH_MIPS',
  mipsle: 'SCMP_ARCH_MIPSEL',
  mips64: 'SCMP_ARCH_MIPS64',
  mips64le: 'SCMP_ARCH_MIPSEL64',
  mips64n32: 'SCMP_ARCH_MIPS64N32',
  mipsel64n32: 'SCMP_ARCH_MIPSEL64N32',
  ppc: 'SCMP_ARCH_PPC',
  ppc64: 'SCMP_ARCH_PPC64',
  ppc64le: 'SCMP_ARCH_PPC64LE',
  s390: 'SCMP_ARCH_S390',
  s390x: 'SCMP_ARCH_S390X',
  riscv64: 'SCMP_ARCH_RISCV64',
  loong64: 'SCMP_ARCH_LOONGARCH64',
};

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

type Json = Record<string, unknown>;

const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

function invalid(path: string, message: string, reason: 'PROFILE_INVALID' | 'JSON_INVALID' | 'BASE_PROFILE' = 'PROFILE_INVALID'): SpokeError {
  return new SpokeError('SecurityProfileInvalid', `${path}: ${message}`, { path }, { reason });
}

/** Members that only the Docker / containers-common format has, at the top or in an entry. */
const DOCKER_TOP = ['archMap', 'defaultErrno'];
const DOCKER_ENTRY = ['includes', 'excludes', 'comment', 'name', 'errno'];

/** Which foreign format a parsed document is in, or undefined for anything else (runtime-spec included). */
export function detectFormat(doc: unknown): SourceFormat | undefined {
  if (!isObject(doc)) return undefined;
  if (doc.kind === 'SeccompProfile' && typeof doc.apiVersion === 'string' && doc.apiVersion.startsWith('security-profiles-operator.x-k8s.io/')) return 'spo';
  if (DOCKER_TOP.some((k) => k in doc)) return 'docker';
  const syscalls = doc.syscalls;
  if (Array.isArray(syscalls) && syscalls.some((s) => isObject(s) && DOCKER_ENTRY.some((k) => k in s))) return 'docker';
  return undefined;
}

/** JSON or YAML text → document; integers exact (seccomp argument values are uint64). */
export function parseProfileText(text: string): unknown {
  try {
    return parseYaml(text, { intAsBigInt: true, uniqueKeys: true, maxAliasCount: 0 });
  } catch (e) {
    throw invalid('(document)', `not valid JSON or YAML (${(e as Error).message.split('\n')[0]!.slice(0, 200)})`, 'JSON_INVALID');
  }
}

/** For profile validate, push and merge: the command that converts a document in a foreign format. */
export function foreignFormatHint(text: string): string | undefined {
  let format: SourceFormat | undefined;
  try {
    format = detectFormat(parseYaml(text, { maxAliasCount: 0 }));
  } catch {
    return undefined;
  }
  if (format === undefined) return undefined;
  const name = format === 'spo' ? 'a Security Profiles Operator SeccompProfile' : 'a Docker / containers-common seccomp profile';
  return `this is ${name}, not the runtime-spec format an artifact carries; convert it with \`spoke profile convert FILE\``;
}

/**
 * decodeSeccomp for files people hand to the CLI: a document in another seccomp format is refused
 * with the command that converts it, not only with its first unknown member. (Not on the node's
 * pull path: pulled bytes are never parsed as YAML.)
 */
export function decodeSeccompWithHint(bytes: Uint8Array): SeccompProfile {
  try {
    return decodeSeccomp(bytes);
  } catch (e) {
    const hint = e instanceof SpokeError ? foreignFormatHint(Buffer.from(bytes).toString('utf8')) : undefined;
    if (hint === undefined || !(e instanceof SpokeError)) throw e;
    throw new SpokeError(e.code, `${e.message}; ${hint}`, e.context, { cause: e, reason: e.reason });
  }
}

function uint(v: unknown, path: string, max: bigint): bigint {
  if (typeof v === 'bigint' && v >= 0n && v <= max) return v;
  if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 && BigInt(v) <= max) return BigInt(v);
  throw invalid(path, `must be an unsigned integer up to ${max}`);
}

function oneOf<T extends string>(v: unknown, path: string, allowed: readonly T[], what: string): T {
  if (typeof v === 'string' && (allowed as readonly string[]).includes(v)) return v as T;
  throw invalid(path, `unknown ${what} ${JSON.stringify(v)?.slice(0, 80)}`);
}

function stringList(v: unknown, path: string): string[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v) || !v.every((s) => typeof s === 'string')) throw invalid(path, 'must be a list of strings');
  return v as string[];
}

function only(o: Json, path: string, known: readonly string[]): void {
  for (const k of Object.keys(o)) if (!known.includes(k)) throw invalid(path === '' ? k : `${path}.${k}`, 'unknown member');
}

const U32 = 0xffff_ffffn;
const U64 = (1n << 64n) - 1n;

function convertArgs(v: unknown, path: string): SeccompArg[] | undefined {
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
function errnoOf(entry: Json, numeric: string, named: string, path: string): number | undefined {
  if (entry[numeric] !== undefined && entry[numeric] !== null) return Number(uint(entry[numeric], `${path}${numeric}`, U32));
  if (entry[named] !== undefined && entry[named] !== null) {
    throw invalid(`${path}${named}`, `an errno given only by name (${JSON.stringify(entry[named])?.slice(0, 40)}) cannot be converted; add ${numeric}`);
  }
  return undefined;
}

interface Conditions {
  arches: string[];
  caps: string[];
  minKernel: string | undefined;
}

function conditions(v: unknown, path: string): Conditions {
  if (v === undefined || v === null) return { arches: [], caps: [], minKernel: undefined };
  if (!isObject(v)) throw invalid(path, 'must be an object');
  only(v, path, ['arches', 'caps', 'minKernel']);
  const minKernel = v.minKernel;
  if (minKernel !== undefined && minKernel !== null && typeof minKernel !== 'string') throw invalid(`${path}.minKernel`, 'must be a string');
  return { arches: stringList(v.arches, `${path}.arches`), caps: stringList(v.caps, `${path}.caps`).map(capName), minKernel: minKernel ?? undefined };
}

function capName(c: string): string {
  const upper = c.toUpperCase();
  return upper.startsWith('CAP_') ? upper : `CAP_${upper}`;
}

function syscallEntry(names: string[], action: SeccompAction, errnoRet: number | undefined, args: SeccompArg[] | undefined): SeccompSyscall {
  return { names, action, ...(errnoRet === undefined ? {} : { errnoRet }), ...(args === undefined ? {} : { args }) };
}

function convertDocker(doc: Json, opts: ConvertOptions, notes: string[]): SeccompProfile {
  only(doc, '', ['defaultAction', 'defaultErrnoRet', 'defaultErrno', 'architectures', 'archMap', 'syscalls', 'flags', 'listenerPath', 'listenerMetadata']);
  const native = GO_ARCHITECTURES[opts.arch];
  if (native === undefined) throw new SpokeError('InvalidArgument', `unknown architecture ${JSON.stringify(opts.arch)} (a Go name such as amd64 or arm64)`, {}, { reason: 'OPTION_INVALID' });
  const caps = new Set(opts.caps.map(capName));
  const profile: SeccompProfile = { defaultAction: oneOf(doc.defaultAction, 'defaultAction', SECCOMP_ACTIONS, 'action') };
  const defaultErrno = errnoOf(doc, 'defaultErrnoRet', 'defaultErrno', '');
  if (defaultErrno !== undefined) profile.defaultErrnoRet = defaultErrno;

  if (doc.archMap !== undefined && doc.archMap !== null) {
    if (!Array.isArray(doc.archMap)) throw invalid('archMap', 'must be a list');
    const mine = doc.archMap.find((m, i) => {
      if (!isObject(m)) throw invalid(`archMap[${i}]`, 'must be an object');
      only(m, `archMap[${i}]`, ['architecture', 'subArchitectures']);
      return m.architecture === native;
    }) as Json | undefined;
    if (mine === undefined) throw invalid('archMap', `has no entry for ${native} (--arch ${opts.arch})`);
    profile.architectures = [native, ...stringList(mine.subArchitectures, 'archMap.subArchitectures').map((a, i) => oneOf(a, `archMap.subArchitectures[${i}]`, SECCOMP_ARCHITECTURES, 'architecture'))];
  } else if (doc.architectures !== undefined && doc.architectures !== null) {
    profile.architectures = stringList(doc.architectures, 'architectures').map((a, i) => oneOf(a, `architectures[${i}]`, SECCOMP_ARCHITECTURES, 'architecture'));
  }
  if (doc.flags !== undefined && doc.flags !== null) profile.flags = stringList(doc.flags, 'flags').map((f, i) => oneOf<SeccompFlag>(f, `flags[${i}]`, SECCOMP_FLAGS, 'flag'));
  for (const k of ['listenerPath', 'listenerMetadata'] as const) {
    if (typeof doc[k] === 'string') profile[k] = doc[k];
  }

  const syscalls: SeccompSyscall[] = [];
  const assumedKernel = new Set<string>();
  const entries = doc.syscalls ?? [];
  if (!Array.isArray(entries)) throw invalid('syscalls', 'must be a list');
  entries.forEach((e, i) => {
    const path = `syscalls[${i}]`;
    if (!isObject(e)) throw invalid(path, 'must be an object');
    only(e, path, ['names', 'name', 'action', 'errnoRet', 'errno', 'args', 'comment', 'includes', 'excludes']);
    const names = e.name !== undefined && e.name !== null ? [String(e.name)] : stringList(e.names, `${path}.names`);
    const inc = conditions(e.includes, `${path}.includes`);
    const exc = conditions(e.excludes, `${path}.excludes`);
    if (exc.arches.includes(opts.arch) || exc.caps.some((c) => caps.has(c))) return;
    if (inc.arches.length > 0 && !inc.arches.includes(opts.arch)) return;
    if (!inc.caps.every((c) => caps.has(c))) return;
    // The node's kernel is not known offline: assume it is recent (at or past every minKernel).
    if (exc.minKernel !== undefined) {
      assumedKernel.add(exc.minKernel);
      return;
    }
    if (inc.minKernel !== undefined) assumedKernel.add(inc.minKernel);
    if (names.length === 0) return;
    syscalls.push(syscallEntry(names, oneOf(e.action, `${path}.action`, SECCOMP_ACTIONS, 'action'), errnoOf(e, 'errnoRet', 'errno', `${path}.`), convertArgs(e.args, `${path}.args`)));
  });
  if (assumedKernel.size > 0) notes.push(`assumed a kernel at or past ${[...assumedKernel].sort().join(', ')} (minKernel conditions cannot be checked offline)`);
  profile.syscalls = resolveConflicts(syscalls, notes);
  return profile;
}

/**
 * One syscall with unconditional rules that disagree: keep the most restrictive (a profile must
 * not be looser than any of its sources' readings) and say so.
 */
function resolveConflicts(entries: SeccompSyscall[], notes: string[]): SeccompSyscall[] {
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

function convertSpo(doc: Json, notes: string[]): SeccompProfile {
  const spec = doc.spec;
  if (!isObject(spec)) throw invalid('spec', 'must be an object');
  if (typeof spec.baseProfileName === 'string' && spec.baseProfileName !== '') {
    throw invalid('spec.baseProfileName', `names another profile (${JSON.stringify(spec.baseProfileName.slice(0, 200))}), which cannot be resolved offline: merge it in first`, 'BASE_PROFILE');
  }
  only(spec, 'spec', ['defaultAction', 'architectures', 'syscalls', 'flags', 'listenerPath', 'listenerMetadata', 'baseProfileName', 'disabled']);
  if (spec.disabled === true) notes.push('spec.disabled is true in the source; the converted profile is a profile all the same');
  const profile: SeccompProfile = { defaultAction: oneOf(spec.defaultAction, 'spec.defaultAction', SECCOMP_ACTIONS, 'action') };
  if (spec.architectures !== undefined && spec.architectures !== null) {
    profile.architectures = stringList(spec.architectures, 'spec.architectures').map((a, i) => oneOf(a, `spec.architectures[${i}]`, SECCOMP_ARCHITECTURES, 'architecture'));
  }
  if (spec.flags !== undefined && spec.flags !== null) profile.flags = stringList(spec.flags, 'spec.flags').map((f, i) => oneOf<SeccompFlag>(f, `spec.flags[${i}]`, SECCOMP_FLAGS, 'flag'));
  for (const k of ['listenerPath', 'listenerMetadata'] as const) {
    if (typeof spec[k] === 'string' && spec[k] !== '') profile[k] = spec[k];
  }
  const entries = spec.syscalls ?? [];
  if (!Array.isArray(entries)) throw invalid('spec.syscalls', 'must be a list');
  profile.syscalls = resolveConflicts(
    entries.map((e, i) => {
      const path = `spec.syscalls[${i}]`;
      if (!isObject(e)) throw invalid(path, 'must be an object');
      only(e, path, ['names', 'action', 'errnoRet', 'args']);
      return syscallEntry(stringList(e.names, `${path}.names`), oneOf(e.action, `${path}.action`, SECCOMP_ACTIONS, 'action'), e.errnoRet === undefined || e.errnoRet === null ? undefined : Number(uint(e.errnoRet, `${path}.errnoRet`, U32)), convertArgs(e.args, `${path}.args`));
    }),
    notes,
  );
  return profile;
}

export function convertProfile(doc: unknown, opts: ConvertOptions): Conversion {
  const format = opts.from ?? detectFormat(doc);
  if (format === undefined) {
    throw new SpokeError('InvalidArgument', 'not a Docker / containers-common profile or a Security Profiles Operator SeccompProfile (a runtime-spec profile needs no conversion); name the format with --from', {}, { reason: 'FORMAT_UNKNOWN' });
  }
  if (!isObject(doc)) throw invalid('(document)', 'must be an object');
  const notes: string[] = [];
  const profile = format === 'spo' ? convertSpo(doc, notes) : convertDocker(doc, opts, notes);
  return { format, profile, notes };
}
