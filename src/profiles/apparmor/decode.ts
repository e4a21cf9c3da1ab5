// Strict decode of a structured AppArmor profile (KEP-6061 §4 UnmarshalStrict): valid UTF-8, one
// JSON value, no duplicate members, no unknown members (exact spelling: Go's case-insensitive
// member matching is refused too), exact types. Errors name the JSON path at fault.

import { SpokeError } from '../../core/errors.js';
import { decodeStrictJson, memberPath } from '../../core/json.js';
import type { AppArmorCapability, AppArmorExecutable, AppArmorFilesystem, AppArmorNetwork, AppArmorProfile, AppArmorProtocols } from './types.js';

const WHAT = 'apparmor profile';

export function invalid(path: string, message: string): SpokeError {
  return new SpokeError('SecurityProfileInvalid', `${WHAT}: ${path}: ${message}`, { path }, { reason: 'PROFILE_INVALID' });
}

type JsonObject = Record<string, unknown>;

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  return `${typeof v === 'object' ? 'an' : 'a'} ${typeof v}`;
}

function asObject(v: unknown, path: string): JsonObject {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw invalid(path, `must be an object, got ${describe(v)}`);
  return v as JsonObject;
}

/** Refuses members outside `known`; null members are absent, as in Go's encoding/json. */
function members(obj: JsonObject, path: string, known: readonly string[]): Map<string, unknown> {
  const present = new Map<string, unknown>();
  for (const [key, value] of Object.entries(obj)) {
    const at = memberPath(path, key);
    if (!known.includes(key)) {
      const near = known.find((k) => k.toLowerCase() === key.toLowerCase());
      throw invalid(at, near === undefined ? 'unknown member' : `unknown member (the member is spelled ${JSON.stringify(near)})`);
    }
    if (value !== null) present.set(key, value);
  }
  return present;
}

function stringList(v: unknown, path: string): string[] {
  if (!Array.isArray(v)) throw invalid(path, `must be an array of strings, got ${describe(v)}`);
  return v.map((s, i) => {
    if (typeof s !== 'string') throw invalid(`${path}[${i}]`, `must be a string, got ${describe(s)}`);
    return s;
  });
}

function bool(v: unknown, path: string): boolean {
  if (typeof v !== 'boolean') throw invalid(path, `must be true or false, got ${describe(v)}`);
  return v;
}

function decodeExecutable(v: unknown): AppArmorExecutable {
  const m = members(asObject(v, 'executable'), 'executable', ['allowedExecutables', 'allowedLibraries']);
  const out: AppArmorExecutable = {};
  if (m.has('allowedExecutables')) out.allowedExecutables = stringList(m.get('allowedExecutables'), 'executable.allowedExecutables');
  if (m.has('allowedLibraries')) out.allowedLibraries = stringList(m.get('allowedLibraries'), 'executable.allowedLibraries');
  return out;
}

function decodeFilesystem(v: unknown): AppArmorFilesystem {
  const m = members(asObject(v, 'filesystem'), 'filesystem', ['readOnlyPaths', 'writeOnlyPaths', 'readWritePaths']);
  const out: AppArmorFilesystem = {};
  if (m.has('readOnlyPaths')) out.readOnlyPaths = stringList(m.get('readOnlyPaths'), 'filesystem.readOnlyPaths');
  if (m.has('writeOnlyPaths')) out.writeOnlyPaths = stringList(m.get('writeOnlyPaths'), 'filesystem.writeOnlyPaths');
  if (m.has('readWritePaths')) out.readWritePaths = stringList(m.get('readWritePaths'), 'filesystem.readWritePaths');
  return out;
}

function decodeNetwork(v: unknown): AppArmorNetwork {
  const m = members(asObject(v, 'network'), 'network', ['allowRaw', 'allowedProtocols']);
  const out: AppArmorNetwork = {};
  if (m.has('allowRaw')) out.allowRaw = bool(m.get('allowRaw'), 'network.allowRaw');
  if (m.has('allowedProtocols')) {
    const path = 'network.allowedProtocols';
    const p = members(asObject(m.get('allowedProtocols'), path), path, ['allowTcp', 'allowUdp']);
    const protocols: AppArmorProtocols = {};
    if (p.has('allowTcp')) protocols.allowTcp = bool(p.get('allowTcp'), `${path}.allowTcp`);
    if (p.has('allowUdp')) protocols.allowUdp = bool(p.get('allowUdp'), `${path}.allowUdp`);
    out.allowedProtocols = protocols;
  }
  return out;
}

function decodeCapability(v: unknown): AppArmorCapability {
  const m = members(asObject(v, 'capability'), 'capability', ['allowedCapabilities']);
  const out: AppArmorCapability = {};
  if (m.has('allowedCapabilities')) out.allowedCapabilities = stringList(m.get('allowedCapabilities'), 'capability.allowedCapabilities');
  return out;
}

/** Bytes → AppArmorProfile, or SecurityProfileInvalid naming the JSON path at fault. No limits here: see validate.ts. */
export function decodeAppArmor(bytes: Uint8Array): AppArmorProfile {
  const m = members(asObject(decodeStrictJson(bytes, WHAT), '(document)'), '', ['executable', 'filesystem', 'network', 'capability']);
  const profile: AppArmorProfile = {};
  if (m.has('executable')) profile.executable = decodeExecutable(m.get('executable'));
  if (m.has('filesystem')) profile.filesystem = decodeFilesystem(m.get('filesystem'));
  if (m.has('network')) profile.network = decodeNetwork(m.get('network'));
  if (m.has('capability')) profile.capability = decodeCapability(m.get('capability'));
  return profile;
}
