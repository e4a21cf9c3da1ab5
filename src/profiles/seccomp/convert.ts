// Seccomp profiles in the formats people already have → the runtime-spec `LinuxSeccomp` document
// a KEP-6061 artifact carries (docs/convert.md). Pure: the caller reads the file and names the
// node's architecture and capabilities. The Docker / containers-common format is read in
// convert-docker.ts.
//
// Security Profiles Operator `SeccompProfile` objects: `spec` is the profile; `baseProfileName`
// names another object, which cannot be resolved offline.

import { isDeepStrictEqual } from 'node:util';
import { parse as parseYaml } from 'yaml';
import { SpokeError } from '../../core/errors.js';
import { convertArgs, invalid, isObject, oneOf, only, resolveConflicts, stringList, syscallEntry, uint, U32, type Conversion, type ConvertOptions, type Json, type SourceFormat } from './convert-common.js';
import { convertDocker } from './convert-docker.js';
import { decodeSeccomp } from './decode.js';
import { SECCOMP_ACTIONS, SECCOMP_ARCHITECTURES, SECCOMP_FLAGS, type SeccompFlag, type SeccompProfile } from './types.js';

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

/**
 * JSON or YAML text → document; integers exact (seccomp argument values are uint64). A document
 * applied with kubectl is read as YAML 1.1 (sigs.k8s.io/yaml: `04000` is octal 2048, `yes` true,
 * `1_000` 1000), this reader's default is YAML 1.2 (`04000` is 4000): text the two read
 * differently is refused rather than converted to what its author may not have meant.
 */
export function parseProfileText(text: string): unknown {
  let doc: unknown;
  let asYaml11: unknown;
  try {
    doc = parseYaml(text, { intAsBigInt: true, uniqueKeys: true, maxAliasCount: 0 });
    asYaml11 = parseYaml(text, { intAsBigInt: true, uniqueKeys: true, maxAliasCount: 0, version: '1.1' });
  } catch (e) {
    throw invalid('(document)', `not valid JSON or YAML (${(e as Error).message.split('\n')[0]!.slice(0, 200)})`, 'JSON_INVALID');
  }
  if (!isDeepStrictEqual(doc, asYaml11)) {
    throw invalid('(document)', 'YAML 1.1 (kubectl) and YAML 1.2 read some of its values differently: write integers without a leading 0 or _, and quote yes, no, on, off', 'JSON_INVALID');
  }
  return doc;
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
