// The one place that maps spoke error codes to gRPC status codes and message prefixes
// (docs/troubleshooting.md, KEP-6061 §2). The kubelet classifies pull failures by message prefix
// (k8s.io/cri-api/pkg/errors): `SecurityProfileInvalid` is permanent (pod fails), everything
// else is retried with backoff. Decisions:
//  - InvalidArgument (malformed request: untagged/undigested reference, kind Unspecified; in
//    annotation mode an annotation that conflicts with a Localhost profile or a privileged
//    container) → INVALID_ARGUMENT, prefix "SecurityProfileInvalid: " (CRI-O does the same: a
//    bad request never succeeds on retry).
//  - SecurityProfileInvalid (the artifact itself is unacceptable) → INVALID_ARGUMENT, same
//    prefix: permanent per KEP §2.
//  - RegistryUnavailable → UNAVAILABLE, "RegistryUnavailable: " (transient).
//  - SignatureValidationFailed → FAILED_PRECONDITION, "SignatureValidationFailed: " (transient:
//    the signature may be attached later; not PERMISSION_DENIED, which the kubelet's metric
//    counts as an authentication failure).
//  - PermissionDenied (node policy) → PERMISSION_DENIED, "PermissionDenied: ".
//  - Unauthenticated (registry credentials) → UNAUTHENTICATED, "Unauthenticated: ".
//  - FailedPrecondition (e.g. profile "has not been pulled", removal while in use) → FAILED_PRECONDITION.
//  - NotFound → NOT_FOUND; Unavailable (upstream down) → UNAVAILABLE; Internal → INTERNAL.

import { asSpokeError, type ErrorCode, type ErrorReason } from '../core/errors.js';
import { terminalSafe } from '../core/text.js';

export const GrpcCode = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const;

export type GrpcCodeValue = (typeof GrpcCode)[keyof typeof GrpcCode];

const MAPPING: Readonly<Record<ErrorCode, { code: GrpcCodeValue; prefix: string }>> = {
  InvalidArgument: { code: GrpcCode.INVALID_ARGUMENT, prefix: 'SecurityProfileInvalid' },
  SecurityProfileInvalid: { code: GrpcCode.INVALID_ARGUMENT, prefix: 'SecurityProfileInvalid' },
  PermissionDenied: { code: GrpcCode.PERMISSION_DENIED, prefix: 'PermissionDenied' },
  RegistryUnavailable: { code: GrpcCode.UNAVAILABLE, prefix: 'RegistryUnavailable' },
  Unauthenticated: { code: GrpcCode.UNAUTHENTICATED, prefix: 'Unauthenticated' },
  SignatureValidationFailed: { code: GrpcCode.FAILED_PRECONDITION, prefix: 'SignatureValidationFailed' },
  FailedPrecondition: { code: GrpcCode.FAILED_PRECONDITION, prefix: 'FailedPrecondition' },
  NotFound: { code: GrpcCode.NOT_FOUND, prefix: 'NotFound' },
  Unavailable: { code: GrpcCode.UNAVAILABLE, prefix: 'Unavailable' },
  Internal: { code: GrpcCode.INTERNAL, prefix: 'Internal' },
};

/** UTF-8 bytes of an error message in a status, at most (with the class prefix and reason the whole stays under 1 KiB). */
const MAX_STATUS_TEXT_BYTES = 960;
const CUT_MARK = ' …(cut)';

/** `text` cut to at most `maxBytes` of UTF-8 with the cut mark, at a character boundary. */
function cutToBytes(text: string, maxBytes: number): string {
  if (Buffer.byteLength(text, 'utf8') <= maxBytes) return text;
  const budget = maxBytes - Buffer.byteLength(CUT_MARK, 'utf8');
  let bytes = 0;
  let end = 0;
  // By code point, so a surrogate pair is kept or dropped whole.
  for (const c of text) {
    const cp = c.codePointAt(0)!;
    const size = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
    if (bytes + size > budget) break;
    bytes += size;
    end += c.length;
  }
  return `${text.slice(0, end)}${CUT_MARK}`;
}

export interface GrpcStatus {
  code: GrpcCodeValue;
  message: string;
  /** The error's reason, for the shim's reason trailer (unary.ts endWithStatus). */
  reason: ErrorReason;
}

/** Any thrown value → gRPC status with the KEP message prefix. Unknown failures → INTERNAL. */
export function toGrpcStatus(e: unknown): GrpcStatus {
  const err = asSpokeError(e);
  // The kubelet shows it in pod events, and node:http2 resets a stream whose headers pass 64 KiB
  // (the kubelet then sees INTERNAL, not the KEP class): escaped, one line, cut. The shim's log
  // keeps the whole message.
  let text = terminalSafe(err.message.replace(/[\r\n]+/g, ' '));
  text = cutToBytes(text, MAX_STATUS_TEXT_BYTES);
  // The caller's own deadline ran out while the shim waited (an annotation-mode pull): the answer
  // gRPC gives for that, whichever side's timer fired first. A registry that did not finish within
  // the pull's total time (pullTimeout) stays RegistryUnavailable.
  if (err.code === 'Unavailable' && err.reason === 'DEADLINE') return { code: GrpcCode.DEADLINE_EXCEEDED, message: `DeadlineExceeded: ${text}${err.reasonSuffix()}`, reason: err.reason };
  const m = MAPPING[err.code];
  // The reason last, after any cut: pod events show it, and troubleshooting.md explains each.
  return { code: m.code, message: `${m.prefix}: ${text}${err.reasonSuffix()}`, reason: err.reason };
}

