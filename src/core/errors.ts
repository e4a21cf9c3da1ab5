// The one error class of spoke. `code` is stable and maps, in exactly one place each, to a CLI
// message prefix (src/cli/errors.ts) and to a gRPC status (src/cri/status.ts). DESIGN §3.

export const ERROR_CODES = [
  'InvalidArgument', // malformed reference, flag or request field
  'PermissionDenied', // node policy refused the reference
  'SecurityProfileInvalid', // permanent: the artifact or profile is not acceptable
  'RegistryUnavailable', // transient: network, 5xx, timeout
  'Unauthenticated', // registry wants credentials we do not have, or refused ours
  'SignatureValidationFailed', // no acceptable signature from a signer the rule names
  'FailedPrecondition', // e.g. a profile that has not been pulled
  'NotFound',
  'Unavailable', // the upstream runtime is not answering
  'Internal',
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

/**
 * What exactly went wrong, stable across releases: callers and tests branch on `reason`, never
 * on message text. `code` is the KEP class (how the kubelet and the CLI treat it); `reason` is
 * the finer cause within it. Add a member when a new cause needs telling apart.
 */
export const ERROR_REASONS = [
  'UNSPECIFIED', // not yet classified more finely than its code
  'POLICY_DENIED', // the node policy refused the reference (decide())
  'DIGEST_MISMATCH', // bytes did not hash to the digest that named them
  'SIZE_LIMIT', // a size cap was exceeded, or a declared size was a lie
  'KIND_MISMATCH', // the artifact is not of the kind asked for
  'NOT_SIGNED', // no acceptable signature from a signer the rule names
  'SIGNER_UNAVAILABLE', // the rule's trust material (a key file, a trusted root) cannot be read
  'NOT_PULLED', // the profile is not in the store for this reference
  'PRIVILEGED_CONTAINER', // an OCI profile on a privileged container (containerd would not enforce it)
  'BASE_PROFILE', // the pod's base profile cannot be used
  'RUNTIME_DEFAULT_UNAVAILABLE', // the runtime's default profile is not known, so a RuntimeDefault base cannot be honoured
  'TRANSPORT', // the connection failed or closed mid-response
  'DEADLINE', // the total time allowed ran out
  'RECORDING_UNPROVEN', // a recording annotation without the controller's proof
  'INCOMPLETE_RECORDING', // a recording may lack calls of the recorded workload (lost or unattributed records)
  'RECORDER_UNAVAILABLE', // the chosen recording backend cannot run on this node
  'PLATFORM_MISSING', // a multi-architecture index has no profile for this node's platform
] as const;

export type ErrorReason = (typeof ERROR_REASONS)[number];

/** Structured context carried with an error: what was being done and which limit or rule. */
export interface ErrorContext {
  reference?: string;
  digest?: string;
  rule?: string;
  limit?: number;
  expected?: string | number;
  actual?: string | number;
  path?: string; // JSON path such as syscalls[3].args[0].op, or a file path
  file?: string;
  line?: number;
  [key: string]: unknown;
}

export class SpokeError extends Error {
  readonly code: ErrorCode;
  readonly reason: ErrorReason;
  readonly context: ErrorContext;

  constructor(code: ErrorCode, message: string, context: ErrorContext = {}, options?: { cause?: unknown; reason?: ErrorReason }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'SpokeError';
    this.code = code;
    this.reason = options?.reason ?? 'UNSPECIFIED';
    this.context = context;
  }

  /** `Code: message`, the one-line form used on stderr and in gRPC status messages. */
  toLine(): string {
    return `${this.code}: ${this.message}`;
  }
}

export function isSpokeError(e: unknown): e is SpokeError {
  return e instanceof SpokeError;
}

/** Wraps anything thrown into a SpokeError; unknown failures become `fallback` (never success). */
export function asSpokeError(e: unknown, fallback: ErrorCode = 'Internal'): SpokeError {
  if (e instanceof SpokeError) return e;
  const message = e instanceof Error ? e.message : String(e);
  return new SpokeError(fallback, message, {}, { cause: e });
}

/** A transient registry failure, keeping what caused it. */
export const registryUnavailable = (m: string, c?: ErrorContext, cause?: unknown) =>
  new SpokeError('RegistryUnavailable', m, c, { cause });
