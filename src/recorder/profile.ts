// The recorder's names for the logging profile recorded workloads run under and for the recorded
// profile. Both live in profiles/seccomp (pure), so that the CRI shim (`spoke shim --recording`,
// which merges it with the node baseline: src/cri/logging-profile.ts) and `spoke record`
// (src/cri/recording.ts) start from the same logging profile and the controller builds the same
// recorded profile; re-exported here for the recorder's callers.

export { buildRecordedProfile, RUNTIME_STARTUP_SYSCALLS, X86_SYSCALL_NAMES, type OciRuntime } from '../profiles/seccomp/index.js';
export { LOGGING_PROFILE, LOGGING_PROFILE_NAME } from '../profiles/seccomp/recorded.js';
