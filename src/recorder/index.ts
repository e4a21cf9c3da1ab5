// Node-side profile recording: calls counted in the kernel with eBPF
// (bpf.ts), or kernel seccomp audit records (audit.ts, session.ts) → per container syscall sets
// → a deterministic KEP-6061 seccomp profile. Imports core and profiles only.

export { parseAuditRecord, tokenizeAuditFields, isAuditLossNotice, MAX_AUDIT_LINE, SECCOMP_RET_LOG, type AuditRecord } from './audit.js';
export { syscallName, AUDIT_ARCH_X86_64, AUDIT_ARCH_I386 } from './syscalls.js';
export { PidResolver, containerIdFromCgroup, startTicksFromStat, passedOver, type Attribution, type PidIdentity } from './pids.js';
export { SyscallRecorder, DEFAULT_LIMITS, type RecorderLimits, type RecorderStats } from './recorder.js';
export { KmsgSource, AuditLogSource, chooseAuditSource, openAuditSource, preflight, PrintkRateLimit, auditdRunning, type AuditSource } from './source.js';
export { LOGGING_PROFILE, LOGGING_PROFILE_NAME } from './profile.js';
export { buildRecordedProfile, RUNTIME_STARTUP_SYSCALLS, type OciRuntime } from '../profiles/seccomp/index.js';
export { RecordingSession } from './session.js';
export { BpfCounter, bpfSupport } from './bpf.js';
export { bpfProgram, parseBpfDump, callsOfContainer, namesOf, type BpfDump, type BpfCount } from './bpf-program.js';
export { chooseBackend, describeBackends, RECORDING_BACKENDS, type RecordingBackend } from './backend.js';
