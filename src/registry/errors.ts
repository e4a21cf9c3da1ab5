// Mapping transport failures and HTTP statuses to SpokeError codes (docs/troubleshooting.md).
// Messages name hosts, statuses and registry error codes, never headers, tokens or credentials;
// a registry's own error message is kept apart (SpokeError.registryText).

import { SpokeError, type ErrorCode, type ErrorContext, type ErrorReason } from '../core/errors.js';

/**
 * The registry's first OCI error: `code` when it is one of the codes the specs define (kept in
 * statuses), and `text`, its message (with the code when that is not kept), printable ASCII, at
 * most 200 characters, which is kept apart from the message (SpokeError.registryText).
 */
export interface RegistryErrorText {
  code?: string;
  text?: string;
}

// Failures a second attempt may cure quickly. Timeouts are not here: one already spent the
// budget, and repeating it would take a dead registry past the caller's patience.
const RETRYABLE_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'EAI_AGAIN', 'UND_ERR_SOCKET']);
const TIMEOUT_CODES = new Set(['UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'ETIMEDOUT']);

/** The error code of a system/undici error, looking through `cause` and AggregateError. */
export function errorCode(e: unknown): string | undefined {
  for (let cur = e, depth = 0; cur && typeof cur === 'object' && depth < 4; depth++) {
    const code = (cur as { code?: unknown }).code;
    if (typeof code === 'string') return code;
    const inner = (cur as { errors?: unknown[] }).errors;
    cur = Array.isArray(inner) && inner.length > 0 ? inner[0] : (cur as { cause?: unknown }).cause;
  }
  return undefined;
}

export function isRetryableNetworkError(e: unknown): boolean {
  const code = errorCode(e);
  return code !== undefined && RETRYABLE_CODES.has(code);
}

/**
 * Anything thrown while talking to `host` → SpokeError (RegistryUnavailable, reason TRANSPORT,
 * unless already one): a refused or reset connection, a timeout, or a body cut off midway.
 */
export function networkError(e: unknown, host: string, ctx: ErrorContext, signal?: AbortSignal): SpokeError {
  if (e instanceof SpokeError) return e;
  if (signal?.aborted) {
    const reason: unknown = signal.reason;
    if (reason instanceof SpokeError) return reason;
    return new SpokeError('RegistryUnavailable', `request to ${host} cancelled`, ctx, { cause: e, reason: 'CANCELLED' });
  }
  // The request's own total deadline (http.ts: no caller's signal): AbortSignal.timeout's reason.
  if ((e as Error | undefined)?.name === 'TimeoutError') {
    return new SpokeError('RegistryUnavailable', `registry ${host} took longer than the request's total deadline`, { ...ctx, registry: host }, { cause: e, reason: 'DEADLINE' });
  }
  const code = errorCode(e) ?? 'unknown error';
  let why: string;
  if (TIMEOUT_CODES.has(code)) why = 'timed out';
  else if (code === 'ECONNREFUSED') why = 'connection refused';
  else if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') why = 'host not found';
  // An HTTPS request answered in plain HTTP: say which option speaks it (never a silent downgrade).
  else if (code === 'ERR_SSL_WRONG_VERSION_NUMBER') why = 'it answers plain HTTP: publishers pass --plain-http, nodes list it under insecure: in their policy; TLS failed';
  else if (/^ERR_(TLS|SSL)|CERT|VERIFY|SELF_SIGNED/.test(code)) why = 'TLS verification failed';
  else why = 'connection failed';
  return new SpokeError('RegistryUnavailable', `registry ${host} unreachable: ${why} (${code})`, { ...ctx, registry: host }, { cause: e, reason: 'TRANSPORT' });
}

/**
 * An unexpected HTTP status. 401 and 403 are Unauthenticated (the KEP's metrics count registry
 * denials as "unauthenticated"; PermissionDenied stays the node policy's word). 404 NotFound.
 * 408/429/5xx RegistryUnavailable. Other 4xx: InvalidArgument when we were writing (the
 * registry refused what the publisher sent), RegistryUnavailable when reading.
 */
export function statusError(status: number, what: string, host: string, said: RegistryErrorText | undefined, ctx: ErrorContext, writing = false): SpokeError {
  let code: ErrorCode;
  let reason: ErrorReason = 'REGISTRY_ERROR';
  if (status === 401 || status === 403) {
    code = 'Unauthenticated';
    reason = 'AUTH_REFUSED';
  } else if (status === 404) {
    code = 'NotFound';
    reason = 'NOT_FOUND';
  } else if (status === 408 || status === 429 || status >= 500) code = 'RegistryUnavailable';
  else code = writing ? 'InvalidArgument' : 'RegistryUnavailable';
  const detail = said?.code === undefined ? '' : ` (${said.code})`;
  return new SpokeError(code, `${what}: ${host} answered ${status}${detail}`, { ...ctx, registry: host, actual: status }, { reason, ...(said?.text === undefined ? {} : { registryText: said.text }) });
}
