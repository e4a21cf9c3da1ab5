// The AppArmor intersection, KEP-6061 §4: the effective profile permits an operation only if the
// node baseline and the artifact both do.
//
// nil vs empty. The KEP text reads an omitted section as "unspecified" (it would defer to the
// other input); the merger library's Intersect reads it as empty/false, because to AppArmor an
// absent section denies everything it covers. We take the safer reading everywhere: an omitted
// section, list or boolean permits nothing, so an artifact that omits `capability` gets no
// capabilities, whatever the baseline allows. The result states every member explicitly.
//
// - Capabilities: set intersection, ASCII case-insensitive; names kept upper-case.
// - Network: each boolean ANDed.
// - Filesystem: every entry expanded to read/write bits, ANDed per matching pair (path-intersect.ts
//   says which pairs match), collapsed back (rw ∩ r = r, r ∩ w = dropped).
// - Executables and libraries: the same path intersection, one bit each.

import { sha256Digest } from '../../core/digest.js';
import { SpokeError } from '../../core/errors.js';
import { GlobBudgetError, type MatchBudget } from './glob-nfa.js';
import { intersectPathSets, MERGE_MATCH_BUDGET, type Merged } from './path-intersect.js';
import { validateAppArmorArtifact } from './validate.js';
import {
  EXECUTABLE_LISTS,
  FILESYSTEM_LISTS,
  type AppArmorConstraint,
  type AppArmorMergeResult,
  type AppArmorProfile,
  type EffectiveAppArmorProfile,
  type FilesystemList,
  type PathAccess,
  type PathList,
} from './types.js';

const R = 1;
const W = 2;
const FS_BITS: Readonly<Record<FilesystemList, number>> = { readOnlyPaths: R, writeOnlyPaths: W, readWritePaths: R | W };

/** Byte-wise order of UTF-8 (Go's sort.Strings), so the order does not depend on UTF-16 quirks. */
export function compareBytes(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

function fsBits(p: AppArmorProfile): Map<string, number> {
  const m = new Map<string, number>();
  for (const list of FILESYSTEM_LISTS) for (const path of p.filesystem?.[list] ?? []) m.set(path, (m.get(path) ?? 0) | FS_BITS[list]);
  return m;
}

function listBits(paths: readonly string[] | undefined): Map<string, number> {
  return new Map((paths ?? []).map((p) => [p, R]));
}

const sorted = (xs: Iterable<string>) => [...xs].sort(compareBytes);

function fsAccess(bits: number): PathAccess {
  return bits === (R | W) ? 'rw' : bits === R ? 'r' : bits === W ? 'w' : 'none';
}

/** The canonical bytes of an effective profile: fixed member order, sorted lists, compact JSON. */
export function encodeAppArmorCanonical(p: EffectiveAppArmorProfile): Buffer {
  const canonical: EffectiveAppArmorProfile = {
    executable: { allowedExecutables: sorted(p.executable.allowedExecutables), allowedLibraries: sorted(p.executable.allowedLibraries) },
    filesystem: {
      readOnlyPaths: sorted(p.filesystem.readOnlyPaths),
      writeOnlyPaths: sorted(p.filesystem.writeOnlyPaths),
      readWritePaths: sorted(p.filesystem.readWritePaths),
    },
    network: {
      allowRaw: p.network.allowRaw === true,
      allowedProtocols: { allowTcp: p.network.allowedProtocols.allowTcp === true, allowUdp: p.network.allowedProtocols.allowUdp === true },
    },
    capability: { allowedCapabilities: sorted(p.capability.allowedCapabilities.map((c) => c.toUpperCase())) },
  };
  return Buffer.from(JSON.stringify(canonical), 'utf8');
}

/** Every member explicit, omitted = nothing permitted (see the header). */
export function explicitAppArmor(p: AppArmorProfile): EffectiveAppArmorProfile {
  return {
    executable: { allowedExecutables: [...(p.executable?.allowedExecutables ?? [])], allowedLibraries: [...(p.executable?.allowedLibraries ?? [])] },
    filesystem: {
      readOnlyPaths: [...(p.filesystem?.readOnlyPaths ?? [])],
      writeOnlyPaths: [...(p.filesystem?.writeOnlyPaths ?? [])],
      readWritePaths: [...(p.filesystem?.readWritePaths ?? [])],
    },
    network: {
      allowRaw: p.network?.allowRaw === true,
      allowedProtocols: { allowTcp: p.network?.allowedProtocols?.allowTcp === true, allowUdp: p.network?.allowedProtocols?.allowUdp === true },
    },
    capability: { allowedCapabilities: (p.capability?.allowedCapabilities ?? []).map((c) => c.toUpperCase()) },
  };
}

function checkInput(p: AppArmorProfile | undefined | null, which: 'baseline' | 'artifact'): AppArmorProfile {
  if (p === undefined || p === null || typeof p !== 'object') {
    throw new SpokeError('SecurityProfileInvalid', `intersect: the ${which} profile is required`, {}, { reason: 'PROFILE_INVALID' });
  }
  try {
    validateAppArmorArtifact(p);
  } catch (e) {
    if (e instanceof SpokeError && which === 'baseline') {
      throw new SpokeError(e.code, `baseline ${e.message}`, { ...e.context, input: 'baseline' }, { reason: e.reason });
    }
    throw e;
  }
  return p;
}

/**
 * baseline ∩ artifact. Both inputs are validated with the artifact rules first (the baseline is
 * trusted, not exempt). Returns the effective profile, its canonical bytes and digest, and what
 * the baseline took away from the artifact.
 */
export function intersectAppArmor(baseline: AppArmorProfile, artifact: AppArmorProfile): AppArmorMergeResult {
  const base = checkInput(baseline, 'baseline');
  const art = checkInput(artifact, 'artifact');
  const constrained: AppArmorConstraint[] = [];

  // Capabilities.
  const baseCaps = new Set((base.capability?.allowedCapabilities ?? []).map((c) => c.toUpperCase()));
  const artCaps = [...new Set((art.capability?.allowedCapabilities ?? []).map((c) => c.toUpperCase()))].sort(compareBytes);
  const caps = artCaps.filter((c) => baseCaps.has(c));
  for (const c of artCaps) if (!baseCaps.has(c)) constrained.push({ kind: 'capability', capability: c, by: 'baseline' });

  // Network.
  const eb = explicitAppArmor(base).network;
  const ea = explicitAppArmor(art).network;
  const network = {
    allowRaw: eb.allowRaw && ea.allowRaw,
    allowedProtocols: {
      allowTcp: eb.allowedProtocols.allowTcp && ea.allowedProtocols.allowTcp,
      allowUdp: eb.allowedProtocols.allowUdp && ea.allowedProtocols.allowUdp,
    },
  };
  if (ea.allowRaw && !network.allowRaw) constrained.push({ kind: 'network', permission: 'allowRaw', by: 'baseline' });
  if (ea.allowedProtocols.allowTcp && !network.allowedProtocols.allowTcp) constrained.push({ kind: 'network', permission: 'allowTcp', by: 'baseline' });
  if (ea.allowedProtocols.allowUdp && !network.allowedProtocols.allowUdp) constrained.push({ kind: 'network', permission: 'allowUdp', by: 'baseline' });

  // Filesystem.
  const budget: MatchBudget = { left: MERGE_MATCH_BUDGET };
  const fs = withinBudget(() => intersectPathSets(fsBits(base), fsBits(art), budget));
  const filesystem = { readOnlyPaths: [] as string[], writeOnlyPaths: [] as string[], readWritePaths: [] as string[] };
  for (const [path, { bits }] of fs) {
    if (bits === (R | W)) filesystem.readWritePaths.push(path);
    else if (bits === R) filesystem.readOnlyPaths.push(path);
    else if (bits === W) filesystem.writeOnlyPaths.push(path);
  }
  let fsNarrowed: Map<string, string[]> | undefined;
  for (const list of FILESYSTEM_LISTS) {
    filesystem[list].sort(compareBytes);
    for (const path of sorted(art.filesystem?.[list] ?? [])) {
      const want = FS_BITS[list];
      const got = (fs.get(path)?.bits ?? 0) & want;
      if (got === want) continue;
      constrained.push(pathConstraint(list, path, fsAccess(want), fsAccess(got), fs, (fsNarrowed ??= narrowings(fs)), fsAccess));
    }
  }

  // Executables and libraries.
  const executable = { allowedExecutables: [] as string[], allowedLibraries: [] as string[] };
  for (const list of EXECUTABLE_LISTS) {
    const merged = withinBudget(() => intersectPathSets(listBits(base.executable?.[list]), listBits(art.executable?.[list]), budget));
    executable[list] = sorted(merged.keys());
    const access: PathAccess = list === 'allowedExecutables' ? 'x' : 'm';
    const accessOf = (bits: number): PathAccess => (bits === 0 ? 'none' : access);
    let narrowed: Map<string, string[]> | undefined;
    for (const path of sorted(new Set(art.executable?.[list] ?? []))) {
      if (merged.has(path)) continue;
      constrained.push(pathConstraint(list, path, access, 'none', merged, (narrowed ??= narrowings(merged)), accessOf));
    }
  }

  const profile: EffectiveAppArmorProfile = { executable, filesystem, network, capability: { allowedCapabilities: caps } };
  const bytes = encodeAppArmorCanonical(profile);
  return { profile, bytes, digest: sha256Digest(bytes), constrained };
}

function withinBudget<T>(fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (!(e instanceof GlobBudgetError)) throw e;
    throw new SpokeError(
      'SecurityProfileInvalid',
      `apparmor profile: its patterns are too costly to intersect with the baseline (over ${MERGE_MATCH_BUDGET} matching steps); use fewer or simpler globs`,
      { path: '(document)', limit: MERGE_MATCH_BUDGET },
      { reason: 'LIMIT_EXCEEDED' },
    );
  }
}

/** For each artifact path, the other merged entries it narrowed into: built once per list, not scanned per constrained path. */
function narrowings(merged: Merged): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const [key, m] of merged) {
    for (const from of m.from) {
      if (from === key) continue;
      const keys = out.get(from);
      if (keys === undefined) out.set(from, [key]);
      else keys.push(key);
    }
  }
  return out;
}

function pathConstraint(list: PathList, path: string, artifact: PathAccess, effective: PathAccess, merged: Merged, narrowed: Map<string, string[]>, accessOf: (bits: number) => PathAccess): AppArmorConstraint {
  const narrowedTo = (narrowed.get(path) ?? []).map((key) => ({ path: key, access: accessOf(merged.get(key)!.bits) })).sort((x, y) => compareBytes(x.path, y.path));
  return { kind: 'path', list, path, artifact, effective, ...(narrowedTo.length > 0 ? { narrowedTo } : {}), by: 'baseline' };
}

/** One line for logs and `spoke merge --explain`. */
export function formatAppArmorConstraint(c: AppArmorConstraint): string {
  const by = ' (by the node baseline)';
  switch (c.kind) {
    case 'capability':
      return `capability ${c.capability}: dropped${by}`;
    case 'network':
      return `network ${c.permission}: false${by}`;
    case 'path': {
      const narrowed = c.narrowedTo === undefined ? '' : `, narrowed to ${c.narrowedTo.map((n) => `${n.path} ${n.access}`).join(', ')}`;
      return `${c.list} ${c.path}: artifact ${c.artifact}, effective ${c.effective}${narrowed}${by}`;
    }
  }
}
