// Seccomp profiles for KEP-6061: strict decode, the three validation levels, the intersection
// merge with its constraint log, and a reference evaluator. Pure: no I/O.

export type {
  ConstrainedBy,
  Constraint,
  MergeResult,
  SeccompAction,
  SeccompArchitecture,
  SeccompArg,
  SeccompCall,
  SeccompFlag,
  SeccompOperator,
  SeccompProfile,
  SeccompSyscall,
  Verdict,
} from './types.js';
export { SECCOMP_ACTIONS, SECCOMP_ARCHITECTURES, SECCOMP_FLAGS, SECCOMP_OPERATORS } from './types.js';
export { decodeSeccomp } from './decode.js';
export {
  validate,
  validateArtifact,
  validateBaseline,
  validateRuntimeSteps,
  validateStrict,
  MAX_CLAUSES,
  MAX_CLAUSES_PER_SYSCALL,
  MAX_ENTRIES_PER_SYSCALL,
  MAX_NAMES_PER_ENTRY,
} from './validate.js';
export { actionRank, formatVerdict } from './actions.js';
export { ARCHS_32_BIT, comparesWideValue } from './conditions.js';
export { canonicalize, carriesExactlyIn, intersect, mergeProfiles, multiplexedConditions, multiplexesSocketCalls } from './intersect.js';
export { auditIntersect, relaxToLog } from './audit.js';
export { encodeCanonical } from './canonical.js';
export { diff, formatConstraint, type TrustedInputs } from './diff.js';
export { compareProfiles, OTHER_SYSCALLS, type ChangeDirection, type ProfileChange, type ProfileComparison } from './compare.js';
export { GO_ARCHITECTURES } from './convert-docker.js';
export { evaluate, type EvaluateOptions, type Evaluation } from './evaluate.js';
export { buildRecordedProfile, RUNTIME_STARTUP_SYSCALLS, type OciRuntime } from './recorded.js';
export { X86_SYSCALL_NAMES } from './syscall-numbers.js';
export { UNTABLED_CALLS } from './enosys.js';
