// A Localhost profile that names one of spoke's own merge results (docs/shim.md#localhost-bases-and-effective-files):
// refused before any request that carries one is forwarded (rewrite.ts).

import { statfsSync, statSync } from 'node:fs';
import { posix } from 'node:path';
import { lookUpPath } from '../config/path-lookup.js';
import type { ProfileKind } from '../core/constants.js';
import { SpokeError } from '../core/errors.js';
import { deprecatedProfileAt } from './messages.js';
import { spokeAppArmorSha } from './runtime-config.js';
import { getString } from './wire.js';

/** A request's profile site: its kind and its message path. */
export type ProfileSite = readonly [ProfileKind, readonly number[]];

const LOCALHOST_PREFIX = 'localhost/';
const underAny = (path: string, dirs: readonly string[]): boolean => dirs.some((d) => path.startsWith(`${d}/`));

/**
 * A Localhost profile naming one of spoke's merge results: a seccomp file under the directory the
 * shim writes them to (as written, or where the kernel's lookup of it leads: openedAt), or an
 * AppArmor profile named as spoke names them. Those hold
 * baseline ∩ some artifact that the node policy allowed for some namespace at some time: named
 * directly, they would reach a pod of any namespace, past the policy and any later deny rule,
 * and pin the artifact in the store. A pod names the OCI profile; only the shim names its merge
 * (docs/shim.md#localhost-bases-and-effective-files). `messages`: the merged message at each
 * site (getMergedAt), which the caller reads anyway; the deprecated string beside it is checked
 * too. A message's ref is checked whatever its type: CRI-O applies an AppArmor
 * localhost_ref for any type but RuntimeDefault, Unconfined included.
 */
export function refuseReserved(payload: Buffer, sites: readonly ProfileSite[], messages: readonly (Uint8Array | undefined)[], dirs: readonly string[], who: string): void {
  for (let i = 0; i < sites.length; i++) {
    const [kind, path] = sites[i]!;
    const message = messages[i];
    // Both, whichever the runtime reads: containerd 1.6.20 takes the message over the string, a
    // runtime built before the message reads only the string.
    // A string without `localhost/` too: CRI-O applies an AppArmor profile named so.
    const refs = [message === undefined ? '' : getString(message, 2), deprecatedProfileAt(payload, path)?.localhostRef ?? ''];
    for (const ref of refs) {
      if (ref === '') continue;
      // containerd and CRI-O both drop one leading `localhost/` from a Localhost ref before use.
      const used = ref.startsWith(LOCALHOST_PREFIX) ? ref.slice(LOCALHOST_PREFIX.length) : ref;
      if (kind === 'seccomp' && used.length >= PATH_MAX) {
        // No runtime opens it (ENAMETOOLONG), and resolving megabytes of path text costs the shim.
        throw new SpokeError('InvalidArgument', `${who}: the Localhost seccomp profile path is ${used.length} characters, past PATH_MAX (${PATH_MAX})`, { limit: PATH_MAX, actual: used.length }, { reason: 'LIMIT_EXCEEDED' });
      }
      if (kind === 'seccomp' ? underAny(posix.resolve('/', used), dirs) || underAny(openedAt(used, who), dirs) : spokeAppArmorSha(used) !== undefined) {
        throw new SpokeError('PermissionDenied', `${who}: the Localhost ${kind} profile ${JSON.stringify(ref.slice(0, 200))} is one of spoke's merge results; name the OCI profile instead`, { path: ref.slice(0, 200) }, { reason: 'PROFILE_RESERVED' });
      }
    }
  }
}

/**
 * Where the runtime's open of Localhost profile `used` lands, looked up name by name as the
 * kernel does (src/config/path-lookup.ts): another spelling of spoke's directory (a symbolic link
 * under the seccomp root, `..` after one) reaches the same files. A relative path is read from the
 * runtime's working directory: `/` for a service. A path through procfs (`/proc/self/root`,
 * `/dev/fd`, a second procfs mount) is refused outright: its magic links lead where no reading of
 * them as text can follow (another mount namespace's root), and no profile lives there. A path the
 * runtime's open fails on too (a missing directory on it, a loop) is judged as written; one the
 * shim cannot look up for another reason (a real path too long for lstat) is refused.
 */
function openedAt(used: string, who: string): string {
  const refused = (why: string) => new SpokeError('PermissionDenied', `${who}: the Localhost seccomp profile ${JSON.stringify(used.slice(0, 200))} ${why}; name a file`, { path: used.slice(0, 200) }, { reason: 'PROFILE_RESERVED' });
  try {
    return lookUpPath(used, '/', {
      directory: (_dir, st) => {
        if (st.dev === procDevice()) throw refused('is looked up through /proc, where its links lead out of sight');
      },
      // Magic links live only in procfs, wherever it is mounted.
      link: (link) => {
        if (statfsSync(posix.dirname(link)).type === PROC_SUPER_MAGIC) throw refused('is looked up through a procfs link, which leads out of sight');
      },
    });
  } catch (e) {
    if (e instanceof SpokeError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'ELOOP') return posix.resolve('/', used);
    throw refused(`cannot be looked up (${code ?? (e as Error).message})`);
  }
}
/** statfs(2)'s f_type of procfs (linux/magic.h). */
const PROC_SUPER_MAGIC = 0x9fa0;
const PATH_MAX = 4096;
let procDev: number | undefined;
/** The device /proc is mounted from (read once; -1 without /proc). */
function procDevice(): number {
  if (procDev === undefined) {
    try {
      procDev = statSync('/proc').dev;
    } catch {
      procDev = -1;
    }
  }
  return procDev;
}
