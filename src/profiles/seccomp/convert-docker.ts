// Docker / containers-common seccomp profiles (moby profiles/seccomp) → runtime-spec
// (docs/convert.md). `archMap` lists each native architecture with its sub-architectures; a
// syscall entry applies when its `includes` are all met and none of its `excludes` is: `arches`
// are Go architecture names compared with the node's, `caps` capability names compared with the
// container's bounding set (includes: every one present; excludes: any one present skips the
// entry, each compared as written, as moby does), `minKernel` a kernel version. containers-common adds `defaultErrno` / `errno` (names)
// beside the numeric `…ErrnoRet`.

import { SpokeError } from '../../core/errors.js';
import { convertArgs, errnoOf, invalid, isObject, oneOf, only, resolveConflicts, stringList, syscallEntry, type ConvertOptions, type Json } from './convert-common.js';
import { SECCOMP_ACTIONS, SECCOMP_ARCHITECTURES, SECCOMP_FLAGS, type SeccompArchitecture, type SeccompFlag, type SeccompProfile, type SeccompSyscall } from './types.js';

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

interface Conditions {
  arches: string[];
  caps: string[];
  minKernel: string | undefined;
}

/** moby's minKernel: major.minor, a patch level optional (it is quoted in the notes). */
const KERNEL_VERSION_RE = /^[0-9]{1,3}\.[0-9]{1,3}(\.[0-9]{1,3})?$/;

function conditions(v: unknown, path: string): Conditions {
  if (v === undefined || v === null) return { arches: [], caps: [], minKernel: undefined };
  if (!isObject(v)) throw invalid(path, 'must be an object');
  only(v, path, ['arches', 'caps', 'minKernel']);
  const minKernel = v.minKernel;
  if (minKernel !== undefined && minKernel !== null && (typeof minKernel !== 'string' || !KERNEL_VERSION_RE.test(minKernel))) {
    throw invalid(`${path}.minKernel`, 'must be a kernel version such as "5.8" or "4.14.0"');
  }
  return { arches: stringList(v.arches, `${path}.arches`), caps: stringList(v.caps, `${path}.caps`), minKernel: minKernel ?? undefined };
}

/** A capability as the bounding set names it (`CAP_SYS_ADMIN`), from `--caps` (`sys_admin` too). */
function capName(c: string): string {
  const upper = c.toUpperCase();
  return upper.startsWith('CAP_') ? upper : `CAP_${upper}`;
}

export function convertDocker(doc: Json, opts: ConvertOptions, notes: string[]): SeccompProfile {
  only(doc, '', ['defaultAction', 'defaultErrnoRet', 'defaultErrno', 'architectures', 'archMap', 'syscalls', 'flags', 'listenerPath', 'listenerMetadata']);
  // Own names only: every object has a constructor.
  const native = Object.hasOwn(GO_ARCHITECTURES, opts.arch) ? GO_ARCHITECTURES[opts.arch] : undefined;
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
    if (doc.architectures !== undefined && doc.architectures !== null) throw invalid('architectures', 'cannot be given beside archMap (moby refuses such a profile)');
  } else if (doc.architectures !== undefined && doc.architectures !== null) {
    profile.architectures = stringList(doc.architectures, 'architectures').map((a, i) => oneOf(a, `architectures[${i}]`, SECCOMP_ARCHITECTURES, 'architecture'));
  }
  if (doc.flags !== undefined && doc.flags !== null) profile.flags = stringList(doc.flags, 'flags').map((f, i) => oneOf<SeccompFlag>(f, `flags[${i}]`, SECCOMP_FLAGS, 'flag'));
  for (const k of ['listenerPath', 'listenerMetadata'] as const) {
    if (typeof doc[k] === 'string') profile[k] = doc[k];
  }

  const syscalls: SeccompSyscall[] = [];
  const assumedKernel = new Set<string>();
  const miscased = new Set<string>();
  const entries = doc.syscalls ?? [];
  if (!Array.isArray(entries)) throw invalid('syscalls', 'must be a list');
  entries.forEach((e, i) => {
    const path = `syscalls[${i}]`;
    if (!isObject(e)) throw invalid(path, 'must be an object');
    only(e, path, ['names', 'name', 'action', 'errnoRet', 'errno', 'args', 'comment', 'includes', 'excludes']);
    const hasName = e.name !== undefined && e.name !== null;
    if (hasName && e.names !== undefined && e.names !== null) throw invalid(`${path}.name`, 'cannot be given beside names (moby and containers-common refuse such an entry)');
    const names = hasName ? [String(e.name)] : stringList(e.names, `${path}.names`);
    const inc = conditions(e.includes, `${path}.includes`);
    const exc = conditions(e.excludes, `${path}.excludes`);
    // moby compares these names with the bounding set's as they are written.
    for (const c of [...inc.caps, ...exc.caps]) if (capName(c) !== c) miscased.add(c);
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
  for (const c of miscased) notes.push(`capability ${JSON.stringify(c.slice(0, 64))} in includes/excludes matches no capability, as in moby (which compares names as written: ${capName(c.slice(0, 64))})`);
  if (assumedKernel.size > 0) notes.push(`assumed a kernel at or past ${[...assumedKernel].sort().join(', ')} (minKernel conditions cannot be checked offline)`);
  profile.syscalls = resolveConflicts(syscalls, notes);
  return profile;
}
