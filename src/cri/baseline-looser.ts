// The node baseline compared with the runtime default whenever either changes (a runtime default
// read with other content, a baseline reloaded): where the baseline is looser, a warning.

import { asSpokeError } from '../core/errors.js';
import type { Logger } from '../core/runtime.js';
import type { KnownRuntimeDefault, SeccompOps } from './deps.js';

/**
 * Compares the node baseline with the runtime default (KEP-6061 §4: the baseline is the first
 * merge input for every OCI profile, the runtime default only for pods that ask for it). Where
 * the baseline permits what the runtime default denies, a pod with an OCI profile and no
 * RuntimeDefault base can run looser than the runtime default: logged as a warning with what is
 * looser, not refused, because the merge of pods that do ask for RuntimeDefault stays exact and
 * the shim must keep serving them. Returns what is looser ("syscall x", "architecture y", ...).
 */
export function baselineLooserThanRuntimeDefault<P>(seccomp: Pick<SeccompOps<P>, 'intersect'>, baseline: P, rd: KnownRuntimeDefault<P>, logger: Logger): string[] {
  let looser: string[];
  try {
    // The runtime default as the trusted input, the baseline as the one it constrains.
    looser = seccomp.intersect(rd.profile, undefined, baseline).constrained.flatMap(describeLooser);
  } catch (e) {
    logger.log('warn', 'node baseline not compared with the runtime default', { error: asSpokeError(e).message });
    return [];
  }
  if (looser.length > 0) {
    logger.log('warn', 'node baseline is looser than the runtime default: OCI profiles without a RuntimeDefault base may permit what RuntimeDefault denies', {
      runtimeDefaultSha256: rd.sha,
      looser: looser.length,
      rules: looser.slice(0, 50),
    });
  }
  return looser;
}

/** What a constraint of the runtime default on the baseline says is looser; errno-only differences are not. */
function describeLooser(c: unknown): string[] {
  const k = c as { kind?: string; syscall?: string; args?: string; architecture?: string; flag?: string; artifact?: { action: string }; effective?: { action: string } };
  switch (k.kind) {
    case 'syscall':
      return k.artifact?.action === k.effective?.action ? [] : [`syscall ${k.syscall}${k.args === undefined ? '' : ` when ${k.args}`}`];
    case 'defaultAction':
      return k.artifact?.action === k.effective?.action ? [] : ['default action'];
    case 'architecture':
      // A merge never keeps x32 (src/profiles/seccomp/intersect.ts): its removal says nothing of the baseline.
      return k.architecture === 'SCMP_ARCH_X32' ? [] : [`architecture ${k.architecture}`];
    default:
      return [`flag ${k.flag}`];
  }
}
