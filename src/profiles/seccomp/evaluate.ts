// A reference evaluator: what runc + libseccomp do with one call under a profile, in the KEP's
// reading (KEP-6061 §4 "Evaluation model"; see decision.ts). Arguments compare as 64-bit
// unsigned values; intersect drops 32-bit architectures whenever that would differ.

import { decisionFor, decisionVerdict, readProfile } from './decision.js';
import type { SeccompArchitecture, SeccompCall, SeccompProfile, Verdict } from './types.js';

export interface Evaluation extends Verdict {
  /** The call's architecture is not in the filter: libseccomp's bad-arch action (kill) applies. */
  badArch?: true;
}

export interface EvaluateOptions {
  /** libseccomp always includes the architecture runc runs on; default x86-64. */
  nativeArch?: SeccompArchitecture;
}

export function evaluate(profile: SeccompProfile, call: SeccompCall, options: EvaluateOptions = {}): Evaluation {
  const native = options.nativeArch ?? 'SCMP_ARCH_X86_64';
  if (call.arch !== undefined && call.arch !== native && !(profile.architectures ?? []).includes(call.arch)) {
    return { action: 'SCMP_ACT_KILL', badArch: true };
  }
  const read = readProfile(profile);
  return { ...decisionVerdict(decisionFor(read, call.syscall), call.args ?? []) };
}
