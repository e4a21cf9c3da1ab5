// What a runtime's verbose status names: the seccomp Localhost files and AppArmor profiles in an
// object's CRI config and runtime spec, and the names spoke gives the files and profiles it writes.

const SPOKE_APPARMOR_RE = /^spoke-([0-9a-f]{64})$/;
const SHA_HEX_RE = /^[0-9a-f]{64}$/;
const MAX_ANNOTATIONS = 256;
/** CRI-O names a container's seccomp profile file in this runtime spec annotation. */
const CRIO_SECCOMP_PATH_ANNOTATION = 'io.kubernetes.cri-o.SeccompProfilePath';

/** Profiles an object's runtime config names: seccomp Localhost paths and AppArmor profile names. */
export interface ObjectProfiles {
  seccomp: string[];
  appArmor: string[];
}

/**
 * The profiles a runtime's verbose status `info` JSON names in the object's config (and, for
 * AppArmor, its runtime spec; for seccomp, a runtime spec annotation naming a file in `spokeDir`).
 * Throws on JSON that does not parse.
 */
export function namedProfiles(info: string | undefined, spokeDir: string): ObjectProfiles {
  const out: ObjectProfiles = { seccomp: [], appArmor: [] };
  if (info === undefined) return out;
  const parsed = JSON.parse(info) as { config?: unknown; runtimeSpec?: unknown };
  const sc = pick(pick(parsed.config, 'linux'), 'security_context');
  const seccomp = [str(pick(pick(sc, 'seccomp'), 'localhost_ref')), localhostOf(str(pick(sc, 'seccomp_profile_path')))];
  const appArmor = [str(pick(pick(sc, 'apparmor'), 'localhost_ref')), localhostOf(str(pick(sc, 'apparmor_profile'))), str(pick(pick(parsed.runtimeSpec, 'process'), 'apparmorProfile'))];
  // Runtimes that keep no CRI config in the info may still name the file in a spec annotation.
  const annotations = pick(parsed.runtimeSpec, 'annotations');
  if (typeof annotations === 'object' && annotations !== null) {
    // CRI-O's own key first: the pod's annotations are copied into the spec beside it, and a pod
    // with more than the bound before it must not hide its profile from an in-use rebuild.
    const named = (annotations as Record<string, unknown>)[CRIO_SECCOMP_PATH_ANNOTATION];
    for (const v of [named, ...Object.values(annotations).slice(0, MAX_ANNOTATIONS)]) {
      const path = typeof v === 'string' ? (localhostOf(v) ?? v) : undefined;
      if (path !== undefined && spokeEffectiveSha(spokeDir, path) !== undefined) seccomp.push(path);
    }
  }
  for (const s of seccomp) if (s && !out.seccomp.includes(s)) out.seccomp.push(s);
  for (const a of appArmor) if (a && !out.appArmor.includes(a)) out.appArmor.push(a);
  return out;
}

/** `<spokeDir>/<sha>.json` → sha; undefined for any other path. */
export function spokeEffectiveSha(spokeDir: string, path: string): string | undefined {
  const prefix = `${spokeDir}/`;
  if (!path.startsWith(prefix) || !path.endsWith('.json')) return undefined;
  const sha = path.slice(prefix.length, -'.json'.length);
  return SHA_HEX_RE.test(sha) ? sha : undefined;
}

/** `spoke-<sha>`, the name of an AppArmor profile spoke generated → sha; undefined otherwise. */
export function spokeAppArmorSha(name: string): string | undefined {
  return SPOKE_APPARMOR_RE.exec(name)?.[1];
}

function pick(v: unknown, key: string): unknown {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>)[key] : undefined;
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' && v !== '' ? v : undefined;
}

/** The deprecated `localhost/<ref>` spelling of a Localhost profile → `<ref>`. */
function localhostOf(v: string | undefined): string | undefined {
  return v?.startsWith('localhost/') ? v.slice('localhost/'.length) : undefined;
}
