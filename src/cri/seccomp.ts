// The seccomp library (src/profiles/seccomp) as the shim's SeccompOps: the wiring `spoke shim`
// uses, and the tests of the CRI layer with it.

import { SpokeError, asSpokeError } from '../core/errors.js';
import {
  ARCHS_32_BIT,
  auditIntersect,
  comparesWideValue,
  decodeSeccomp,
  formatConstraint,
  intersect,
  carriesExactlyIn,
  multiplexedConditions,
  multiplexesSocketCalls,
  validate,
  validateArtifact,
  validateRuntimeSteps,
  validateStrict,
  type MergeResult,
  type SeccompArchitecture,
  type SeccompProfile,
} from '../profiles/seccomp/index.js';
import type { SeccompOps } from './deps.js';

/** libseccomp's name for a Node.js `process.arch` (Node's ppc64 is little-endian on Linux). */
const NATIVE_ARCH: Readonly<Record<string, SeccompArchitecture>> = {
  x64: 'SCMP_ARCH_X86_64',
  ia32: 'SCMP_ARCH_X86',
  arm64: 'SCMP_ARCH_AARCH64',
  arm: 'SCMP_ARCH_ARM',
  ppc64: 'SCMP_ARCH_PPC64LE',
  s390x: 'SCMP_ARCH_S390X',
  riscv64: 'SCMP_ARCH_RISCV64',
  mips: 'SCMP_ARCH_MIPS',
  mipsel: 'SCMP_ARCH_MIPSEL',
};

/**
 * The merge checked against the node's own architecture, which every filter includes whatever the
 * profile lists. Where it multiplexes socket and IPC calls (ppc64le, s390x), a rule on their
 * arguments reaches socketcall(2) and ipc(2) without its test: a merged "allow socket unless
 * domain 17" would allow every socket. Where it is 32-bit (arm, mips, x86), a value wider than 32
 * bits is compared by its low word. Such merges are refused rather than applied
 * (docs/security-model.md#only-tighter).
 */
function enforceable(native: SeccompArchitecture | undefined, result: MergeResult, inputs: readonly (SeccompProfile | undefined)[]): MergeResult {
  effectiveRuntimeSteps(result);
  if (native === undefined) return result;
  // A 32-bit node compares a condition's low word only, and no filter can leave its architecture
  // out: a value of 2^32 or more, as an input or the merge writes it, is not enforced as read.
  if (ARCHS_32_BIT.has(native) && [...inputs, result.profile].some((p) => p !== undefined && comparesWideValue(p))) {
    throw new SpokeError('FailedPrecondition', `the effective profile or one of its inputs compares a value wider than 32 bits, which this node's architecture (${native}) compares by its low word only`, {}, { reason: 'ARCH_UNENFORCEABLE' });
  }
  if (!multiplexesSocketCalls(native)) return result;
  const names = multiplexedConditions(result.profile);
  if (names.length > 0) {
    throw new SpokeError(
      'FailedPrecondition',
      `the effective profile filters ${names.join(', ')} by their arguments, which this node's architecture (${native}) cannot enforce through socketcall(2)/ipc(2)`,
      { actual: names.join(',') },
      { reason: 'ARCH_UNENFORCEABLE' },
    );
  }
  // A carrier judged otherwise than a call it carries (intersect.ts carriesExactly).
  if (!carriesExactlyIn(result.profile)) {
    throw new SpokeError(
      'FailedPrecondition',
      `the effective profile judges socketcall(2) or ipc(2) otherwise than the socket or SysV IPC calls they carry, which this node's architecture (${native}) cannot enforce`,
      {},
      { reason: 'ARCH_UNENFORCEABLE' },
    );
  }
  return result;
}

/**
 * The runtime-step rules (validateRuntimeSteps) on the effective profile itself: each input meets
 * them, but a syscall the merge cannot write exactly takes the strictest verdict of its inputs
 * whole, which may be one an input gave only some calls (an EINVAL on another prctl option).
 * Such a merge is refused (docs/security-model.md#only-tighter).
 */
export function effectiveRuntimeSteps(result: Pick<MergeResult, 'profile'>): void {
  try {
    validateRuntimeSteps(result.profile);
  } catch (e) {
    // No path: it would name a member of the effective profile, which is never written.
    const err = asSpokeError(e);
    throw new SpokeError('FailedPrecondition', `the effective profile of this merge would not be enforced as it reads (a privilege step the runtime skips, or a shape libseccomp builds wrong): ${err.message.replace(/^seccomp profile: [^:]*: /, '')}`, {}, { cause: e, reason: 'MERGE_UNSAFE' });
  }
}

/**
 * The runtime's own default profile, as a base: strictly decoded and checked as what the runtime
 * itself loads (not the artifact rules), but, merged into an effective profile, it may not make a
 * runtime step pretend either (validateRuntimeSteps).
 */
export function decodeRuntimeDefault(bytes: Uint8Array): SeccompProfile {
  const p = decodeSeccomp(bytes);
  validate(p);
  validateRuntimeSteps(p);
  return p;
}

/** The shim's seccomp operations on a node whose own architecture is `native`. */
export function seccompOpsFor(native: SeccompArchitecture | undefined): SeccompOps<SeccompProfile> {
  return {
    decode: decodeSeccomp,
    decodeArtifact: (bytes) => {
      const p = decodeSeccomp(bytes);
      validateArtifact(p);
      return p;
    },
    validateBase: validateStrict,
    intersect: (b, base, a) => enforceable(native, intersect(b, base, a), [b, base, a]),
    audit: (b, base, a) => enforceable(native, auditIntersect(b, base, a), [b, base, a]),
    formatConstraint: (c) => formatConstraint(c as Parameters<typeof formatConstraint>[0]),
  };
}

export const seccompOps: SeccompOps<SeccompProfile> = seccompOpsFor(NATIVE_ARCH[process.arch]);
