// What the shim needs from the rest of spoke, as narrow structural types so the CRI layer can be
// tested with small fakes and wired to the real pipeline/store/seccomp library by the CLI.

import type { ProfileKind } from '../core/constants.js';
import type { Platform } from '../core/artifact.js';
import type { Digest } from '../core/digest.js';
import type { Logger } from '../core/runtime.js';
import type { Metrics } from '../observe/metrics.js';
import type { Policy } from '../policy/types.js';
import type { PullPipeline } from '../pull.js';
import type { ProfileStore } from '../store/store.js';

/** The pull pipeline as the shim uses it; `pulledIn` may be missing (a pipeline that remembers no pulls). */
export type ShimPipeline = Pick<PullPipeline, 'pull'> & Partial<Pick<PullPipeline, 'pulledIn'>>;

export type ShimStore = Pick<ProfileStore, 'root' | 'getRecord' | 'readBlob' | 'checkBlob' | 'list' | 'markInUse' | 'transferInUse' | 'release' | 'replaceInUse' | 'markInUseIncomplete' | 'inUse' | 'remove' | 'recordEffective' | 'originsIdentity' | 'effectiveDigests'>;

/** The seccomp library, injected (src/profiles/seccomp). P is its decoded profile type. */
export interface SeccompOps<P = unknown> {
  decode(bytes: Uint8Array): P;
  /**
   * A stored artifact decoded and judged by today's artifact rules (ValidateArtifact), as each
   * merge is made: the store's verdict may be an older spoke's, made under looser rules.
   */
  decodeArtifact(bytes: Uint8Array): P;
  /** ValidateStrict-level check for a pod's Localhost base profile. */
  validateBase(p: P): void;
  intersect(baseline: P, base: P | undefined, artifact: P): { bytes: Buffer; constrained: readonly unknown[] };
  /** The merge for an artifact admitted by a `mode: audit` rule: the artifact's own denials logged (docs/audit-mode.md). */
  audit(baseline: P, base: P | undefined, artifact: P): { bytes: Buffer; constrained: readonly unknown[] };
  formatConstraint(c: unknown): string;
}

/**
 * AppArmor on this node (src/cri/apparmor.ts wires the real one: the profiles library and
 * apparmor_parser). Injected so the shim's bookkeeping can be tested without kernel AppArmor.
 */
/** A profile AppArmorOps.prepare made: merged, named, rendered and checked. */
export interface PreparedAppArmor {
  name: string;
  text: string;
  /** The identity of the parser the name was made for (src/apparmor/identity.ts). */
  parser: string;
  constrained: readonly string[];
}

export interface AppArmorOps {
  /** Whether the kernel enforces AppArmor here (profiles can be loaded). */
  enabled(): Promise<boolean>;
  /**
   * Artifact bytes → node AppArmor baseline ∩ artifact, its generated name (`spoke-<hex>`, which
   * covers the parser: docs/apparmor.md#the-parser-in-the-name) and rendered policy text, checked
   * by `apparmor_parser -Q`. Throws SecurityProfileInvalid when the
   * artifact cannot be merged or the parser refuses the text. `signal`: the create has gone (its
   * client left, or its deadline passed); Unavailable (CANCELLED) then, and a check nobody else
   * waits for is not run. `source`: who asks (the pod's namespace); checks waiting for the
   * parser are served in turn across sources.
   */
  prepare(artifact: Uint8Array, signal?: AbortSignal, source?: string): Promise<PreparedAppArmor>;
  /**
   * `apparmor_parser --replace`; the warnings name rule classes the kernel does not enforce.
   * Unavailable (APPARMOR_PARSER_CHANGED) when the parser is no longer the one `profile` was
   * named for: another parser's compile would replace that name's policy under the containers
   * already confined by it (docs/apparmor.md#the-parser-in-the-name). It waits for a parser slot,
   * in a turn of its own beside prepare's checks; `signal` as there.
   */
  load(profile: Pick<PreparedAppArmor, 'text' | 'parser'>, signal?: AbortSignal): Promise<{ warnings: readonly string[] }>;
  /** `apparmor_parser --remove`; NotFound when it is not loaded. */
  unload(name: string): Promise<void>;
  /** Counts the node AppArmor baseline's reloads: a create prepared under another count is decided again (edited.ts). */
  baselineGeneration?(): number;
}

/** A unary CRI call to the upstream runtime (Upstream.unary). */
export interface UnaryCaller {
  unary(path: string, request: Uint8Array, timeoutMs?: number): Promise<Buffer>;
}

/** The runtime's default seccomp profile and the sha256 (hex) of the bytes it was decoded from. */
export interface KnownRuntimeDefault<P> {
  profile: P;
  sha: string;
}

/**
 * Where a RuntimeDefault base comes from (runtime-default.ts: read live from the runtime, or a
 * pinned file). get() waits for a read in progress and throws Unavailable
 * (RUNTIME_DEFAULT_UNAVAILABLE) when the profile is not known.
 */
export interface RuntimeDefaultProvider<P> {
  get(): Promise<KnownRuntimeDefault<P>>;
  /** The profile known now, without waiting: undefined while it is unknown or read again. */
  current?(): KnownRuntimeDefault<P> | undefined;
  /** Called on every upstream connect (start and each reconnect): read the profile again. */
  refresh?(upstream: UnaryCaller): void;
  /** Called when the connection to the runtime is lost: the one that comes back may be another version. */
  forget?(): void;
}

export interface ShimDeps<P = unknown> {
  pipeline: ShimPipeline;
  store: ShimStore;
  seccomp: SeccompOps<P>;
  /** The node baseline, decoded and validated (swapped on reload). */
  baseline: () => P;
  /** The platform a record of an index must be for; default this process's (nodePlatform()). */
  platform?: Platform;
  /** The kubelet's seccomp root; effective profiles go to `<root>/spoke/<sha256>.json`. */
  seccompRoot: string;
  logger: Logger;
  metrics: Metrics;
  /** AppArmor support; undefined: every AppArmor OCI profile fails as on a node without AppArmor. */
  appArmor?: AppArmorOps;
  /**
   * The current node policy, the one the pull pipeline reads (reloads apply at once): every OCI
   * profile is decided again at RunPodSandbox / CreateContainer. A rejection refuses the call.
   */
  policy: () => Promise<Policy>;
  /** The runtime's default seccomp profile; undefined: every RuntimeDefault base fails. */
  runtimeDefault?: RuntimeDefaultProvider<P>;
}

export type { Digest, ProfileKind };
