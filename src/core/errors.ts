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
  readonly context: ErrorContext;

  constructor(code: ErrorCode, message: string, context: ErrorContext = {}, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'SpokeError';
    this.code = code;
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
