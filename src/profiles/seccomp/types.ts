// The runtime-spec `LinuxSeccomp` document (opencontainers/runtime-spec config-linux.md), the
// only seccomp format a KEP-6061 artifact may carry. Docker's extensions (`comment`,
// `includes`, `excludes`, `archMap`) are not part of it and are refused as unknown members,
// as the KEP's UnmarshalStrict into specs.LinuxSeccomp does (KEP-6061 §4).

export const SECCOMP_ACTIONS = [
  'SCMP_ACT_KILL_PROCESS',
  'SCMP_ACT_KILL_THREAD',
  'SCMP_ACT_KILL',
  'SCMP_ACT_TRAP',
  'SCMP_ACT_ERRNO',
  'SCMP_ACT_NOTIFY',
  'SCMP_ACT_TRACE',
  'SCMP_ACT_LOG',
  'SCMP_ACT_ALLOW',
] as const;
export type SeccompAction = (typeof SECCOMP_ACTIONS)[number];

export const SECCOMP_OPERATORS = [
  'SCMP_CMP_NE',
  'SCMP_CMP_LT',
  'SCMP_CMP_LE',
  'SCMP_CMP_EQ',
  'SCMP_CMP_GE',
  'SCMP_CMP_GT',
  'SCMP_CMP_MASKED_EQ',
] as const;
export type SeccompOperator = (typeof SECCOMP_OPERATORS)[number];

/** runtime-spec v1.2 architecture names; the order here is the canonical output order. */
export const SECCOMP_ARCHITECTURES = [
  'SCMP_ARCH_X86_64',
  'SCMP_ARCH_X86',
  'SCMP_ARCH_X32',
  'SCMP_ARCH_AARCH64',
  'SCMP_ARCH_ARM',
  'SCMP_ARCH_MIPS',
  'SCMP_ARCH_MIPS64',
  'SCMP_ARCH_MIPS64N32',
  'SCMP_ARCH_MIPSEL',
  'SCMP_ARCH_MIPSEL64',
  'SCMP_ARCH_MIPSEL64N32',
  'SCMP_ARCH_PPC',
  'SCMP_ARCH_PPC64',
  'SCMP_ARCH_PPC64LE',
  'SCMP_ARCH_S390',
  'SCMP_ARCH_S390X',
  'SCMP_ARCH_PARISC',
  'SCMP_ARCH_PARISC64',
  'SCMP_ARCH_RISCV64',
  'SCMP_ARCH_LOONGARCH64',
  'SCMP_ARCH_M68K',
  'SCMP_ARCH_SH',
  'SCMP_ARCH_SHEB',
] as const;
export type SeccompArchitecture = (typeof SECCOMP_ARCHITECTURES)[number];

export const SECCOMP_FLAGS = [
  'SECCOMP_FILTER_FLAG_TSYNC',
  'SECCOMP_FILTER_FLAG_LOG',
  'SECCOMP_FILTER_FLAG_SPEC_ALLOW',
  'SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV',
] as const;
export type SeccompFlag = (typeof SECCOMP_FLAGS)[number];

/** One comparison on a syscall argument. Values are uint64, hence bigint. */
export interface SeccompArg {
  index: number;
  /** For SCMP_CMP_MASKED_EQ this is the mask (libseccomp order: mask, datum). */
  value: bigint;
  /** Only SCMP_CMP_MASKED_EQ reads it (the datum); omitted means 0. */
  valueTwo?: bigint;
  op: SeccompOperator;
}

export interface SeccompSyscall {
  names: string[];
  action: SeccompAction;
  /** Only meaningful for ERRNO and TRACE; omitted means EPERM (1). */
  errnoRet?: number;
  args?: SeccompArg[];
}

export interface SeccompProfile {
  defaultAction: SeccompAction;
  defaultErrnoRet?: number;
  architectures?: SeccompArchitecture[];
  /** Omitted and [] both mean no flags (KEP text); intersect writes the member only if an input has it. */
  flags?: SeccompFlag[];
  listenerPath?: string;
  listenerMetadata?: string;
  syscalls?: SeccompSyscall[];
}

/** What a filter does with one call: the action and, for ERRNO/TRACE only, the errno (never omitted). */
export interface Verdict {
  /** KILL_THREAD is spelled SCMP_ACT_KILL, as in the KEP's output. */
  action: Exclude<SeccompAction, 'SCMP_ACT_KILL_THREAD'>;
  errno?: number;
}

/**
 * Which input of a merge decided a constrained case; `inexpressible` = the exact result has no
 * form runc loads, so a stricter one was written. Absent when diff was not told the inputs.
 */
export type ConstrainedBy = 'baseline' | 'base' | 'inexpressible';

/** One thing the merge made stricter than the artifact asked for (KEP-6061 §7 constraint log). */
export type Constraint =
  | { kind: 'defaultAction'; artifact: Verdict; effective: Verdict; by?: ConstrainedBy }
  | { kind: 'syscall'; syscall: string; args?: string; artifact: Verdict; effective: Verdict; by?: ConstrainedBy }
  | { kind: 'architecture'; architecture: SeccompArchitecture; by?: ConstrainedBy }
  | { kind: 'flag'; flag: SeccompFlag; by?: ConstrainedBy };

export interface MergeResult {
  profile: SeccompProfile;
  /** Canonical JSON of `profile`: equal inputs give byte-identical bytes. */
  bytes: Buffer;
  /** sha256:<hex> of `bytes`. */
  digest: string;
  constrained: Constraint[];
}

export interface SeccompCall {
  syscall: string;
  /** Defaults to the native architecture of the evaluation. */
  arch?: SeccompArchitecture;
  /** Up to six uint64 arguments; missing ones are 0. */
  args?: readonly bigint[];
}
