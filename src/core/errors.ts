// The one error class of spoke. `code` is stable and maps, in exactly one place each, to a CLI
// message prefix (src/cli/errors.ts) and to a gRPC status (src/cri/grpc-status.ts). docs/troubleshooting.md.

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
  'ANNOTATIONS_OFF', // a profile annotation applies to the call, and this node's shim does not apply annotations
  'PRIVILEGED_CONTAINER', // an OCI profile on a privileged container (containerd would not enforce it)
  'RUNTIME_HANDLER', // a profile spoke would apply to a pod whose runtime handler the node does not list as enforcing it
  'RUNTIME_HANDLER_UNKNOWN', // the runtime did not say which handler a pod sandbox runs under
  'FILTER_ANNOTATION', // an OCI seccomp profile beside an annotation with which the runtime replaces or rewrites the filter
  'BASE_PROFILE', // the pod's base profile cannot be used
  'RUNTIME_DEFAULT_UNAVAILABLE', // the runtime's default profile is not known, so a RuntimeDefault base cannot be honoured
  'TRANSPORT', // the connection failed or closed mid-response
  'DEADLINE', // the total time allowed ran out
  'RECORDING_UNPROVEN', // a recording annotation without the controller's proof
  'INCOMPLETE_RECORDING', // a recording may lack calls of the recorded workload (lost or unattributed records)
  'RECORDER_UNAVAILABLE', // the chosen recording backend cannot run on this node
  'RUNTIME_ERROR', // the container runtime answered a CRI call with an error
  'PLATFORM_MISSING', // a multi-architecture index has no profile for this node's platform
  'STORE_PLATFORM', // the store holds an index's profile for another platform than this node's (a store serves one platform)
  'ARCH_UNENFORCEABLE', // a merged profile that the node's own architecture cannot enforce as written
  'MERGE_UNSAFE', // a merged profile that would not be enforced as it reads: a privilege step the runtime skips, a shape libseccomp builds wrong (docs/security-model.md#only-tighter)
  'OVERLOADED', // the shim holds as many request bytes as it may, or gc found no moment without a create in flight; refused, to be retried
  'POLICY_CHANGED', // the node policy kept changing while a create was decided; to be retried
  'REFERENCE_INVALID', // a reference, registry host, repository or tag that does not parse
  'TAG_NOT_DIGEST', // a reference named by tag where only a digest pin is accepted
  'DIGEST_INVALID', // a digest not written as sha256:<64 lowercase hex>
  'MANIFEST_INVALID', // a manifest or index that is malformed or not shaped as the artifact asked for
  'JSON_INVALID', // bytes that are not strict JSON (UTF-8, one value, no duplicate member, bounded depth)
  'PROFILE_INVALID', // a profile whose content breaks the artifact rules (KEP-6061 §4)
  'LIMIT_EXCEEDED', // a count or a bound on work was exceeded (paths, results, merge cost)
  'OPTION_INVALID', // an option, setting or argument given to spoke is malformed
  'USAGE', // the command line is wrong (the CLI exits 2)
  'POLICY_INVALID', // the node policy, or a signer rule in it, is malformed
  'SIGNATURE_INVALID', // signatures were found, and none verifies for a signer the rule names
  'AUTH_REQUIRED', // the registry wants credentials and none are configured for it
  'AUTH_REFUSED', // the registry or its token endpoint refused the credentials sent
  'AUTH_PROTOCOL', // the registry's challenge or the token endpoint's answer is unusable
  'AUTH_WITHHELD', // credentials are configured, but the registry's token endpoint is on another host: they were not sent
  'CREDENTIALS_INVALID', // a credentials file, or the credentials sent with a request, is malformed
  'NOT_FOUND', // the registry, the store, the kernel or the runtime has no such manifest, blob, tag, profile, image or container
  'REGISTRY_ERROR', // the registry answered with an error status or broke the protocol
  'INSECURE_REFUSED', // plain HTTP to a host that is not allowed it
  'CANCELLED', // the caller cancelled the operation
  'CLOSED', // the component was already shut down
  'WIRE_INVALID', // a protobuf message that does not parse
  'PROFILE_TYPE_UNKNOWN', // a CRI security profile of a type spoke does not know, which runtimes read differently
  'PROFILE_RESERVED', // a Localhost profile naming one of spoke's merge results, which only the shim names (for an OCI profile it resolved)
  'FRAME_INVALID', // a gRPC frame that is truncated, oversized or in an unsupported encoding
  'SYSCALL_UNKNOWN', // a syscall name that is not in the architecture's table
  'RECORDING_EMPTY', // nothing was recorded, so there is no profile to build
  'RECORDING_INVALID', // recording results are incomplete or malformed
  'KEY_INVALID', // a key has the wrong size or form
  'KEY_NOT_ALLOWED', // a signing key named for a namespace its scope file does not list
  'UNEXPECTED', // a failure that was not a SpokeError (a bug or an unforeseen system error)
  'INVARIANT', // spoke broke one of its own rules (a bug)
  'ARCHIVE_REFUSED', // a profile layer that is compressed or a tar archive instead of raw JSON
  'FORMAT_UNKNOWN', // the input's format cannot be recognised (name it, e.g. with --from)
  'CONFIG_INVALID', // the node config file, or a setting overriding it, is malformed
  'FILE_UNREADABLE', // a file spoke was told to read cannot be read
  'FILE_UNSAFE', // a file the shim trusts (policy, keys, baseline, recording key) that a user or group other than root's could have written
  'SUBJECT_MISMATCH', // a signature made for another artifact (its statement or payload names another digest)
  'IDENTITY_MISMATCH', // a keyless certificate whose issuer or subject the rule does not name
  'CERTIFICATE_INVALID', // a signing certificate that does not chain to the trusted root, or is malformed
  'TIMESTAMP_INVALID', // a signing time that is missing, unreadable, unverified or in the future
  'TLOG_INVALID', // a transparency-log entry that does not verify
  'NOT_A_SIGNATURE', // an attestation or other signed statement that is not a signature
  'SIGNER_MISMATCH', // signed with a kind of key (public key, certificate) the rule names no signer for
  'TAG_CONTESTED', // a tag kept changing while spoke updated it (another writer), so the update was given up
  'TSA_ERROR', // the timestamp authority answered with an error status
  'APPARMOR_UNAVAILABLE', // apparmor_parser cannot be found, run or identified, or the kernel has no AppArmor
  'APPARMOR_FAILED', // apparmor_parser failed to load or remove a profile in the kernel
  'APPARMOR_PARSER_CHANGED', // apparmor_parser was replaced after a profile was named for the one before (the create is retried)
  'IN_USE', // an artifact a container, sandbox or pin holds (or may hold, while the in-use set is rebuilt) is not removed
  'STATE_CORRUPT', // a file of spoke's own state (a store record, the pins, the in-use set) is malformed
  'ANNOTATION_CONFLICT', // a profile annotation on a pod or container that also sets a profile the annotation cannot replace
  'SOCKET_IN_USE', // the socket path to listen on is in use by another process
  'KNOWN_INVALID', // content an earlier pull judged invalid (a cached verdict on the digest; the message says why)
  'OBJECT_INVALID', // a Kubernetes object given to spoke (ProfileBinding, ProfileRecording, Pod, Namespace) is malformed or invalid
  'BINDING_CONFLICT', // ProfileBindings or ProfileRecordings select a pod ambiguously, so spoke refuses to choose
  'FILE_UNWRITABLE', // a file spoke was told to write cannot be written
  'NOT_GRPC', // what answers on a socket spoke calls over gRPC (the shim's, a runtime's) is not a gRPC server
  'CREDENTIAL_PLUGIN', // the kubeconfig's exec credential plugin cannot be run, failed, or wrote no usable ExecCredential
  'RESULT_CONFLICT', // a ProfileRecordingResult of the name the node recorder reports under is another node's, pod's, container's or recording's
] as const;

export type ErrorReason = (typeof ERROR_REASONS)[number];

/** `text` when it names a reason spoke knows, else undefined. */
export function knownReason(text: unknown): ErrorReason | undefined {
  return (ERROR_REASONS as readonly unknown[]).includes(text) ? (text as ErrorReason) : undefined;
}

/**
 * The gRPC trailer with which the shim's own answers carry their reason (src/cri/unary.ts
 * endWithStatus): what the shim answered itself (overloaded, shutting down, a transport failure,
 * its runtime's or, on a pull, a registry's: TRANSPORT) is told from what it relays from its
 * runtime, which never has it (src/cri/relay.ts drops it), by this field, not by message text
 * (spoke status; docs/shim.md#forwarding).
 */
export const SHIM_REASON_TRAILER = 'spoke-reason';

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
  /**
   * What a registry said about the failure (its error message), apart from the message: the CLI
   * and the node's log show it; a CRI status, which pod events show to whoever made the pod, does
   * not, since a registry may echo what it was sent (docs/security-model.md).
   */
  readonly registryText: string | undefined;

  constructor(code: ErrorCode, message: string, context: ErrorContext = {}, options?: { cause?: unknown; reason?: ErrorReason; registryText?: string }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'SpokeError';
    this.code = code;
    this.reason = options?.reason ?? 'UNSPECIFIED';
    this.context = context;
    // A wrapper that keeps the registry's failure as its cause keeps what the registry said.
    this.registryText = options?.registryText ?? (options?.cause instanceof SpokeError ? options.cause.registryText : undefined);
  }

  /** `Code: message`, with what the registry said: the one-line form used on stderr. */
  toLine(): string {
    return this.registryText === undefined ? `${this.code}: ${this.message}` : `${this.code}: ${this.message}; registry said: ${this.registryText}`;
  }

  /**
   * ` (reason R)`, which ends those one-line forms so that scripts and operators can branch on
   * the reason (docs/troubleshooting.md); nothing for an error not classified beyond its code.
   */
  reasonSuffix(): string {
    return this.reason === 'UNSPECIFIED' ? '' : ` (reason ${this.reason})`;
  }
}

export function isSpokeError(e: unknown): e is SpokeError {
  return e instanceof SpokeError;
}

/** Wraps anything thrown into a SpokeError; unknown failures become `fallback` (never success). */
export function asSpokeError(e: unknown, fallback: ErrorCode = 'Internal'): SpokeError {
  if (e instanceof SpokeError) return e;
  const message = e instanceof Error ? e.message : String(e);
  return new SpokeError(fallback, message, {}, { cause: e, reason: 'UNEXPECTED' });
}

/** A transient registry failure, keeping what caused it. */
export const registryUnavailable = (m: string, c?: ErrorContext, cause?: unknown, reason: ErrorReason = 'TRANSPORT') =>
  new SpokeError('RegistryUnavailable', m, c, { cause, reason });
