// The pull pipeline's public shapes (docs/architecture.md): request, result, and what it is given.

import type { Platform } from '../core/artifact.js';
import type { ProfileKind } from '../core/constants.js';
import type { Digest } from '../core/digest.js';
import type { ErrorCode } from '../core/errors.js';
import type { Reference } from '../core/reference.js';
import type { Logger } from '../core/runtime.js';
import type { Policy } from '../policy/types.js';
import type { Credential, RegistryClient } from '../registry/types.js';
import type { ProfileStore } from '../store/store.js';
import type { SignatureVerdict, SignerSpec } from '../verify/types.js';

export interface PullRequest {
  reference: string;
  kind: ProfileKind;
  /** Pod namespace, for namespace-scoped rules (CRI: sandbox_config.metadata.namespace). */
  namespace?: string;
  /** Per-request credentials (CRI AuthConfig): used for this pull only, never stored. */
  credential?: Credential;
  /**
   * Ends this caller's wait (its deadline, or it went away); the fetch goes on for other callers.
   * May be a function making the signal, called only when the pull fetches: a cached pull never
   * does, and an AbortController and a deadline timer per call are a noticeable part of its cost.
   */
  signal?: AbortSignal | (() => AbortSignal);
}

/** A fetch's own request (flights.ts): its signal is the flight's, which its deadline and its last caller leaving abort. */
export interface FlightRequest extends Omit<PullRequest, 'signal'> {
  signal: AbortSignal;
}

export interface PullResult {
  /** The reference as parsed, canonical form. */
  reference: string;
  digest: Digest;
  /** KEP §2: keeps the requested registry and repository even when a mirror served it. */
  resolvedRef: string;
  /** True when no registry request was made. */
  cached: boolean;
  /** Path of the stored profile bytes. */
  path: string;
  rule: string;
  signer?: SignatureVerdict;
  servedBy?: string;
  /**
   * When the reference names a multi-architecture index (docs/multi-arch.md): the manifest taken
   * for this node's platform. `digest` stays the index digest, the reference as written.
   */
  platform?: { digest: Digest; platform: string };
}

/** What the pipeline needs to verify signatures; implemented by src/verify (injected). */
export type SignatureVerifier = (args: {
  registry: RegistryClient;
  reference: Reference;
  /** May be a promise: signature discovery starts while the manifest is still being fetched. */
  manifestBytes: Buffer | Promise<Buffer>;
  signers: readonly SignerSpec[];
  credential?: Credential;
  signal?: AbortSignal;
}) => Promise<SignatureVerdict>;

/** Metric hooks (src/observe implements them); labels are bounded by construction. */
export interface PullObserver {
  pulled(cached: boolean, seconds: number): void;
  failed(code: ErrorCode): void;
  decided(allowed: boolean): void;
  verified(result: 'ok' | 'failed' | 'cached' | 'aborted'): void;
}

/** A registry client held for the length of one flight; released when the flight ends. */
export interface RegistryLease {
  readonly client: RegistryClient;
  release(): void;
}

export interface PullPipelineDeps {
  /** The current policy (re-read on every pull: reloads take effect at once). */
  policy: () => Policy;
  /**
   * The registry client for a policy (mirrors and insecure hosts come from it), leased for one
   * flight: a policy reload must not close a client a flight still uses.
   */
  registry: (policy: Policy) => RegistryLease;
  /** Total time one flight (all its registry requests) may take: the node config's `pullTimeout`. */
  pullTimeoutMs: number;
  store: ProfileStore;
  verifier?: SignatureVerifier;
  logger?: Logger;
  observer?: PullObserver;
  /** The platform whose manifest is taken from a multi-architecture index; default this process's (nodePlatform()). */
  platform?: Platform;
  /** Blob bytes all pulls may hold in memory at once (src/pull/byte-budget.ts); default BLOB_BYTES_IN_FLIGHT. */
  blobBytesInFlight?: number;
}
