// What a structured AppArmor artifact (and the node's AppArmor baseline) must satisfy before it is
// stored, merged or rendered (KEP-6061 §4 ValidateArtifact, made stricter). The rendered policy
// must never contain syntax of the profile author's choosing, so a path is admitted only when it
// is a plain absolute file pattern from a small alphabet:
// - absolute, at most MAX_PATH_BYTES bytes of UTF-8, no empty, "." or ".." component;
// - no control, format, line/paragraph-separator or non-space whitespace characters;
// - none of `"` `\` `#` `!` (no quoting, no escapes, no comments, no class negation by "!");
// - no AppArmor variable (`@{`);
// - "," only as an alternation separator, braces and brackets balanced, classes strict, at most
//   MAX_ALTERNATIVES alternatives (KEP: more than 100 never match, so we refuse them).
// Capabilities must be names from the Linux capability list, without a CAP_ prefix, any ASCII case.
// Lists are bounded (MAX_ARTIFACT_PATHS paths in total) and free of duplicates.

import { SpokeError } from '../../core/errors.js';
import { decodeAppArmor, invalid } from './decode.js';
import { compileGlob, GlobError } from './glob.js';
import { EXECUTABLE_LISTS, FILESYSTEM_LISTS, LIST_SECTION, type AppArmorProfile, type PathList } from './types.js';

/** KEP-6061 §4 MaxArtifactPaths: paths across all five lists. */
export const MAX_ARTIFACT_PATHS = 1024;
/** KEP-6061 §4: a path is at most 4096 bytes (PATH_MAX). */
export const MAX_PATH_BYTES = 4096;
/** Sum of all path bytes; keeps the glob matching of a merge bounded (1024 × 4096 would be 4 MiB). */
export const MAX_TOTAL_PATH_BYTES = 256 * 1024;

/** Linux capabilities (include/uapi/linux/capability.h, 0–40), in the kernel's order. */
export const LINUX_CAPABILITIES = [
  'chown', 'dac_override', 'dac_read_search', 'fowner', 'fsetid', 'kill', 'setgid', 'setuid', 'setpcap',
  'linux_immutable', 'net_bind_service', 'net_broadcast', 'net_admin', 'net_raw', 'ipc_lock', 'ipc_owner',
  'sys_module', 'sys_rawio', 'sys_chroot', 'sys_ptrace', 'sys_pacct', 'sys_admin', 'sys_boot', 'sys_nice',
  'sys_resource', 'sys_time', 'sys_tty_config', 'mknod', 'lease', 'audit_write', 'audit_control', 'setfcap',
  'mac_override', 'mac_admin', 'syslog', 'wake_alarm', 'block_suspend', 'audit_read', 'perfmon', 'bpf',
  'checkpoint_restore',
] as const;
const KNOWN_CAPS: ReadonlySet<string> = new Set(LINUX_CAPABILITIES);

/** Characters never admitted in a path, with the reason shown to the author. */
const FORBIDDEN_CHARS: Readonly<Record<string, string>> = {
  '"': 'a quote',
  '\\': 'a backslash (escapes are not accepted)',
  '#': 'a "#" (comment syntax)',
  '!': 'a "!"',
};
// \p{C}: control, format, surrogate, private use, unassigned. [^\S ]: whitespace other than " ".
const BAD_CODEPOINT = /[\p{C}\p{Zl}\p{Zp}]|[^\S ]/u;

/** Why `path` is not acceptable as an artifact path, or undefined. Pure string checks plus the glob grammar. */
export function pathProblem(path: string): string | undefined {
  if (path.length === 0) return 'empty path';
  const bytes = Buffer.byteLength(path, 'utf8');
  if (bytes > MAX_PATH_BYTES) return `path is ${bytes} bytes, over the limit of ${MAX_PATH_BYTES}`;
  if (!path.startsWith('/')) return 'not an absolute path';
  const bad = BAD_CODEPOINT.exec(path);
  if (bad) return `contains the character U+${bad[0].codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')}`;
  for (const ch of path) {
    const why = FORBIDDEN_CHARS[ch];
    if (why !== undefined) return `contains ${why}`;
  }
  if (path.includes('@{')) return 'AppArmor variables (@{...}) are not accepted';
  if (path.includes('//')) return 'contains an empty path component ("//")';
  const components = path.split('/');
  if (components.some((c) => c === '.' || c === '..')) return 'contains a "." or ".." component';
  let glob;
  try {
    glob = compileGlob(path);
  } catch (e) {
    if (e instanceof GlobError) return `invalid pattern: ${e.message}`;
    throw e;
  }
  if (glob.isGlob && glob.spellsOddComponent) return 'its alternatives or one-character classes spell an empty, "." or ".." component';
  return undefined;
}

/** Canonical spelling of a capability (upper case), or a reason it is refused. */
export function capabilityProblem(name: string): string | undefined {
  if (!/^[A-Za-z_]{1,32}$/.test(name)) return 'not a capability name (letters and "_" only)';
  const lower = name.toLowerCase();
  if (lower.startsWith('cap_')) return `write ${JSON.stringify(lower.slice(4))}, without the CAP_ prefix`;
  if (!KNOWN_CAPS.has(lower)) return 'unknown capability';
  return undefined;
}

function listOf(p: AppArmorProfile, list: PathList): string[] | undefined {
  return LIST_SECTION[list] === 'filesystem' ? p.filesystem?.[list as (typeof FILESYSTEM_LISTS)[number]] : p.executable?.[list as (typeof EXECUTABLE_LISTS)[number]];
}

/**
 * The artifact rules; throws SecurityProfileInvalid with `context.path` such as
 * `filesystem.readOnlyPaths[3]`. The node baseline is held to the same rules.
 */
export function validateAppArmorArtifact(p: AppArmorProfile): void {
  let total = 0;
  let totalBytes = 0;
  const lists: PathList[] = [...FILESYSTEM_LISTS, ...EXECUTABLE_LISTS];
  for (const list of lists) {
    const paths = listOf(p, list) ?? [];
    total += paths.length;
    for (const path of paths) if (typeof path === 'string') totalBytes += Buffer.byteLength(path, 'utf8');
  }
  if (total > MAX_ARTIFACT_PATHS) {
    throw new SpokeError('SecurityProfileInvalid', `apparmor profile: ${total} paths, over the limit of ${MAX_ARTIFACT_PATHS}`, {
      path: '(document)',
      limit: MAX_ARTIFACT_PATHS,
      actual: total,
    }, { reason: 'LIMIT_EXCEEDED' });
  }
  // Before any pattern is compiled: compiling a 1 MiB artifact's patterns took ~0.5 s.
  if (totalBytes > MAX_TOTAL_PATH_BYTES) {
    throw new SpokeError('SecurityProfileInvalid', `apparmor profile: paths total ${totalBytes} bytes, over the limit of ${MAX_TOTAL_PATH_BYTES}`, {
      path: '(document)',
      limit: MAX_TOTAL_PATH_BYTES,
      actual: totalBytes,
    }, { reason: 'SIZE_LIMIT' });
  }
  const filesystemSeen = new Map<string, string>();
  for (const list of lists) {
    const paths = listOf(p, list);
    if (paths === undefined) continue;
    const seen = new Set<string>();
    paths.forEach((path, i) => {
      const at = `${LIST_SECTION[list]}.${list}[${i}]`;
      if (typeof path !== 'string') throw invalid(at, 'must be a string');
      const problem = pathProblem(path);
      if (problem !== undefined) throw invalid(at, `${problem}: ${JSON.stringify(path.slice(0, 120))}`);
      if (seen.has(path)) throw invalid(at, `${JSON.stringify(path)} is listed twice`);
      seen.add(path);
      if (LIST_SECTION[list] === 'filesystem') {
        const other = filesystemSeen.get(path);
        if (other !== undefined) throw invalid(at, `${JSON.stringify(path)} is also listed at ${other}`);
        filesystemSeen.set(path, at);
      }
    });
  }
  const caps = p.capability?.allowedCapabilities;
  if (caps !== undefined) {
    const seen = new Set<string>();
    caps.forEach((name, i) => {
      const at = `capability.allowedCapabilities[${i}]`;
      if (typeof name !== 'string') throw invalid(at, 'must be a string');
      const problem = capabilityProblem(name);
      if (problem !== undefined) throw invalid(at, `${problem}: ${JSON.stringify(name.slice(0, 40))}`);
      const upper = name.toUpperCase();
      if (seen.has(upper)) throw invalid(at, `${JSON.stringify(name)} is listed twice`);
      seen.add(upper);
    });
  }
  const net = p.network;
  if (net !== undefined) {
    if (net.allowRaw !== undefined && typeof net.allowRaw !== 'boolean') throw invalid('network.allowRaw', 'must be true or false');
    const pr = net.allowedProtocols;
    if (pr?.allowTcp !== undefined && typeof pr.allowTcp !== 'boolean') throw invalid('network.allowedProtocols.allowTcp', 'must be true or false');
    if (pr?.allowUdp !== undefined && typeof pr.allowUdp !== 'boolean') throw invalid('network.allowedProtocols.allowUdp', 'must be true or false');
  }
}

/**
 * The per-entry rules alone (safe to render), without the count limits and duplicate checks: an
 * effective profile may hold up to the sum of both inputs' entries. Used by the renderer.
 */
export function validateRenderable(p: AppArmorProfile): void {
  for (const list of [...FILESYSTEM_LISTS, ...EXECUTABLE_LISTS]) {
    (listOf(p, list) ?? []).forEach((path, i) => {
      const at = `${LIST_SECTION[list]}.${list}[${i}]`;
      const problem = typeof path === 'string' ? pathProblem(path) : 'must be a string';
      if (problem !== undefined) throw invalid(at, `${problem}: ${JSON.stringify(String(path).slice(0, 120))}`);
    });
  }
  (p.capability?.allowedCapabilities ?? []).forEach((name, i) => {
    const problem = typeof name === 'string' ? capabilityProblem(name) : 'must be a string';
    if (problem !== undefined) throw invalid(`capability.allowedCapabilities[${i}]`, `${problem}: ${JSON.stringify(String(name).slice(0, 40))}`);
  });
}

/** Pull-time check of an AppArmor artifact layer: strict decode, then the artifact rules. */
export function validateAppArmorArtifactBytes(bytes: Uint8Array): AppArmorProfile {
  const p = decodeAppArmor(bytes);
  validateAppArmorArtifact(p);
  return p;
}
