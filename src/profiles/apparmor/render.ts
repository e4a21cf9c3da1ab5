// Structured profile → AppArmor policy text, for apparmor_parser. Deterministic: the same profile
// and name give the same bytes.
//
// Safety. Every path is re-checked with the artifact path rules (validate.ts) before it is written, and
// written double-quoted; the rules admit no quote, backslash, newline, "#" or control character,
// so a path can only ever be one quoted token of one rule. Capabilities are written only when they
// are names from the Linux list (lower-case, as apparmor_parser wants them). The profile name is
// checked against a conservative alphabet. Nothing else in the text comes from the input.
//
// Mapping. allowedExecutables → `rix` (read, inherit-execute), allowedLibraries → `rm` (read,
// mmap-exec), readOnlyPaths → `r`, writeOnlyPaths → `wk`, readWritePaths → `rwk`; no `l` (link)
// and no deny rules for the structured entries, so the text grants exactly what the model says
// (plus nothing). Network: allowTcp → `network tcp`, allowUdp → `network udp`, allowRaw → raw
// sockets of inet, inet6 and packet.
//
// Runtime template. The structured format has no words for signals, ptrace, mounts, unix sockets
// or deny rules; like a runtime's default profile (docker/containerd "default" template), every
// rendered profile carries a fixed block for them: signals from unconfined processes and the OCI
// runtimes, signals and ptrace only among processes of this same profile, unix sockets, no
// mount/umount/pivot_root, and deny rules for kernel interfaces under /proc and /sys that no
// container should write (deny beats any allow, so a permissive baseline cannot open them).

import { sha256Hex } from '../../core/digest.js';
import { SpokeError } from '../../core/errors.js';
import { compareBytes } from './intersect.js';
import { validateRenderable } from './validate.js';
import type { AppArmorProfile } from './types.js';

/** Bumped whenever the text for the same input changes (2: the powercap denial; 3: containerd's /proc and /sys denials). */
export const RENDER_TEMPLATE_VERSION = 3;

/** A parser's identity as names cover it: sha256 hex (src/apparmor/identity.ts). */
const PARSER_ID_RE = /^[0-9a-f]{64}$/;

/**
 * The AppArmor profile name an effective profile is loaded under: `spoke-` and the full sha256
 * hex of the render template's version, the identity of the parser that compiles it (`parser`,
 * src/apparmor/identity.ts) and the profile's canonical bytes (`intersectAppArmor(...).bytes`),
 * which together decide the compiled policy. The whole hash, and all three: a profile loaded
 * again under its name replaces it (`--replace`) for the containers already running under it, so
 * one name must only ever be one compiled policy, across spoke and apparmor_parser upgrades too
 * (docs/apparmor.md#the-parser-in-the-name).
 */
export function appArmorProfileName(canonicalBytes: Uint8Array, parser: string, templateVersion: number = RENDER_TEMPLATE_VERSION): string {
  if (!PARSER_ID_RE.test(parser)) throw new SpokeError('Internal', `an AppArmor parser identity must be 64 hex digits, got ${JSON.stringify(parser.slice(0, 80))}`, {}, { reason: 'INVARIANT' });
  return `spoke-${sha256Hex(Buffer.concat([Buffer.from(`spoke apparmor template v${templateVersion}\nparser ${parser}\n`), canonicalBytes]))}`;
}

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

export function checkProfileName(name: string): void {
  if (!NAME_RE.test(name)) {
    throw new SpokeError('InvalidArgument', `AppArmor profile name ${JSON.stringify(name.slice(0, 140))} must be 1–128 of [A-Za-z0-9_.-], starting with a letter or digit`, {}, { reason: 'OPTION_INVALID' });
  }
}

/** The peers whose signals every container must be able to receive (stop, kill). */
const SIGNAL_SENDERS = ['unconfined', 'runc', 'crun'] as const;

/**
 * Deny rules applied whatever the structured lists allow (written with literal /proc, no
 * variables): containerd's default profile's /proc and /sys denials, some stricter (all of
 * /proc/sys and /sys, cgroupfs included, where containerd leaves /proc/sys/kernel/shm* and
 * /sys/fs/cgroup writable).
 */
const TEMPLATE_DENY = [
  ['/proc/sysrq-trigger', 'rwklx'],
  ['/proc/kcore', 'rwklx'],
  ['/proc/kmsg', 'rwklx'],
  // Files directly in /proc, and every /proc directory but a process's (a number) and sys.
  ['/proc/*', 'w'],
  ['/proc/{[^1-9],[^1-9][^0-9],[^1-9s][^0-9y][^0-9s],[^1-9][^0-9][^0-9][^0-9/]*}/**', 'w'],
  ['/proc/sys/**', 'wl'],
  ['/proc/*/attr/**', 'wl'],
  // Where /proc/thread-self/attr resolves.
  ['/proc/*/task/*/attr/**', 'wl'],
  ['/sys/**', 'wklx'],
  ['/sys/firmware/**', 'rwklx'],
  ['/sys/kernel/security/**', 'rwklx'],
  ['/sys/kernel/debug/**', 'rwklx'],
  // The RAPL energy counters, a power side channel (CVE-2020-8694): containerd's default denies them.
  ['/sys/devices/virtual/powercap/**', 'rwklx'],
] as const;

const sortedUnique = (xs: readonly string[] | undefined) => [...new Set(xs ?? [])].sort(compareBytes);

/**
 * AppArmor policy text for `profile` under `name`. Throws SecurityProfileInvalid if a path or
 * capability fails the artifact rules (count limits aside), InvalidArgument for a bad name.
 */
export function renderAppArmor(profile: AppArmorProfile, name: string): string {
  checkProfileName(name);
  validateRenderable(profile);
  const lines: string[] = [];
  const rule = (text: string) => lines.push(`  ${text},`);
  const comment = (text: string) => lines.push(`  # ${text}`);

  lines.push(`# Generated by spoke (template v${RENDER_TEMPLATE_VERSION}) from a KEP-6061 structured AppArmor profile. Do not edit.`);
  lines.push(`profile ${name} flags=(attach_disconnected,mediate_deleted) {`);

  const execs = sortedUnique(profile.executable?.allowedExecutables);
  const libs = sortedUnique(profile.executable?.allowedLibraries);
  if (execs.length + libs.length > 0) comment('executables and libraries');
  for (const p of execs) rule(`"${p}" rix`);
  for (const p of libs) rule(`"${p}" rm`);

  const fs = profile.filesystem;
  const files: [string, string][] = [
    ...sortedUnique(fs?.readOnlyPaths).map((p): [string, string] => [p, 'r']),
    ...sortedUnique(fs?.writeOnlyPaths).map((p): [string, string] => [p, 'wk']),
    ...sortedUnique(fs?.readWritePaths).map((p): [string, string] => [p, 'rwk']),
  ].sort((a, b) => compareBytes(a[0], b[0]));
  if (files.length > 0) comment('files');
  for (const [p, perms] of files) rule(`"${p}" ${perms}`);

  const net = profile.network;
  const network: string[] = [];
  if (net?.allowedProtocols?.allowTcp === true) network.push('network tcp');
  if (net?.allowedProtocols?.allowUdp === true) network.push('network udp');
  if (net?.allowRaw === true) network.push('network inet raw', 'network inet6 raw', 'network packet raw');
  if (network.length > 0) comment('network');
  for (const n of network) rule(n);

  const caps = sortedUnique((profile.capability?.allowedCapabilities ?? []).map((c) => c.toLowerCase()));
  if (caps.length > 0) comment('capabilities');
  for (const c of caps) rule(`capability ${c}`);

  lines.push('');
  comment('runtime template: rule classes the structured format cannot express');
  rule('network unix');
  for (const peer of SIGNAL_SENDERS) rule(`signal (receive) peer=${peer}`);
  rule(`signal (send,receive) peer=${name}`);
  rule(`ptrace (read,readby,trace,tracedby) peer=${name}`);
  rule('deny mount');
  rule('deny umount');
  rule('deny pivot_root');
  for (const [p, perms] of TEMPLATE_DENY) rule(`deny ${p} ${perms}`);
  lines.push('}');
  return lines.join('\n') + '\n';
}
