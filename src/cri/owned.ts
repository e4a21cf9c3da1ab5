// The KEP-6061 methods spoke answers itself: PullSecurityProfileArtifact / PullSecurityProfile
// (one handler), ListSecurityProfiles, RemoveSecurityProfile. Requests are decoded by hand
// (messages.ts); errors are thrown as SpokeError and mapped to gRPC in grpc-status.ts.

import type { ProfileKind } from '../core/constants.js';
import { parseDigest, type Digest } from '../core/digest.js';
import { SpokeError, asSpokeError } from '../core/errors.js';
import type { PullRequest } from '../pull.js';
import { noopMetrics } from '../observe/metrics.js';
import { credentialProblem, normalizeAuthKey } from '../registry/credentials.js';
import { blobBytes } from '../store/store.js';

type Credential = NonNullable<PullRequest['credential']>;
import type { ShimDeps } from './deps.js';
import {
  decodeListRequest,
  decodePullRequest,
  decodeRemoveRequest,
  encodeListResponse,
  encodePullResponse,
  KIND_APPARMOR,
  KIND_SECCOMP,
  KIND_UNSPECIFIED,
  type AuthConfigMsg,
} from './messages.js';
import type { CreateGate } from './gc.js';

/** The store gauges follow a change within this long (owned.refreshStoreGauges). */
export const STORE_GAUGE_DELAY_MS = 1000;

const KIND_NUMBER: Readonly<Record<ProfileKind, number>> = { seccomp: KIND_SECCOMP, apparmor: KIND_APPARMOR };
const KIND_OF_NUMBER: ReadonlyMap<number, ProfileKind> = new Map(Object.entries(KIND_NUMBER).map(([k, n]) => [n, k as ProfileKind]));

/**
 * CRI AuthConfig → a credential for this one request to `image`'s registry (never stored, never
 * logged). Precedence: registry_token (bearer as is) > identity_token (OAuth2 refresh token) >
 * username/password > auth (base64 "user:password"). An empty AuthConfig means anonymous, and so
 * does one whose server_address names another registry (the node's own credentials may then
 * apply, as without an AuthConfig): it is that registry's, and containerd too pulls without it.
 */
export function credentialOf(auth: AuthConfigMsg | undefined, image: string): Credential | undefined {
  if (auth !== undefined && namesAnotherRegistry(auth, image)) return undefined;
  const cred = credentialFrom(auth);
  // What cannot go into a header is the request's fault, not the registry's: refused, not retried.
  const problem = cred === undefined ? undefined : credentialProblem(cred);
  if (problem !== undefined) throw new SpokeError('InvalidArgument', `auth: the credential ${problem}`, {}, { reason: 'CREDENTIALS_INVALID' });
  return cred;
}

/** `auth`'s server_address (a URL or `host[:port][/path]`) names a registry other than `image`'s (its text before the first `/`). */
export function namesAnotherRegistry(auth: AuthConfigMsg, image: string): boolean {
  if (auth.serverAddress === '') return false;
  const hostOf = (key: string) => {
    const k = normalizeAuthKey(key);
    const slash = k.indexOf('/');
    return slash < 0 ? k : k.slice(0, slash);
  };
  const slash = image.indexOf('/');
  return hostOf(auth.serverAddress) !== hostOf(slash < 0 ? image : image.slice(0, slash));
}

function credentialFrom(auth: AuthConfigMsg | undefined): Credential | undefined {
  if (!auth) return undefined;
  if (auth.registryToken !== '') return { kind: 'registryToken', token: auth.registryToken };
  if (auth.identityToken !== '') return { kind: 'identityToken', token: auth.identityToken };
  if (auth.username !== '' || auth.password !== '') return { kind: 'basic', username: auth.username, password: auth.password };
  if (auth.auth !== '') {
    const decoded = Buffer.from(auth.auth, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon <= 0) throw new SpokeError('InvalidArgument', 'auth.auth is not base64 of "username:password"', {}, { reason: 'CREDENTIALS_INVALID' });
    return { kind: 'basic', username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
  }
  return undefined;
}

export class OwnedHandlers<P> {
  /** `gate`: the creates' gate gc decides under; a removal waits on it the same way (remove()). */
  constructor(
    private readonly deps: ShimDeps<P>,
    private readonly gate: CreateGate,
  ) {}

  /**
   * `signal` may be a function making it on demand (PullRequest.signal: the pipeline asks for it
   * only to fetch). `share` counts the request's body as its namespace's while the pull waits
   * (unary.ts namespaceShare): the body carries the pod's sandbox_config, and a registry that
   * never answers keeps it for up to the pull timeout.
   */
  async pull(request: Buffer, signal: AbortSignal | (() => AbortSignal), share?: (namespace: string) => void): Promise<Buffer> {
    const req = decodePullRequest(request);
    share?.(req.namespace);
    const { logger } = this.deps;
    if (req.kind === KIND_UNSPECIFIED) throw new SpokeError('InvalidArgument', 'profile_kind is unspecified (expected Seccomp or AppArmor)', {}, { reason: 'OPTION_INVALID' });
    const kind = KIND_OF_NUMBER.get(req.kind);
    if (kind === undefined) throw new SpokeError('InvalidArgument', `unknown profile_kind ${req.kind}`, {}, { reason: 'OPTION_INVALID' });
    if (req.image === '') throw new SpokeError('InvalidArgument', 'image.image (the profile reference) is empty', {}, { reason: 'REFERENCE_INVALID' });
    if (req.auth !== undefined && namesAnotherRegistry(req.auth, req.image)) {
      // The address is not logged: a URL may carry a user and password.
      logger.log('warn', "the pull's AuthConfig is for another registry (its server_address): pulled without it, as a pull without an AuthConfig is", { reference: req.image, namespace: req.namespace || undefined });
    }
    const credential = credentialOf(req.auth, req.image);
    try {
      const pullRequest: PullRequest = { reference: req.image, kind, signal };
      if (req.namespace !== '') pullRequest.namespace = req.namespace;
      if (credential) pullRequest.credential = credential;
      // The pipeline logs the outcome (PullPipeline.logOutcome), as it does for every caller.
      const r = await this.deps.pipeline.pull(pullRequest);
      if (!r.cached) this.refreshStoreGauges();
      return encodePullResponse(r.resolvedRef, r.cached);
    } catch (e) {
      const err = asSpokeError(e);
      logger.log(err.code === 'PermissionDenied' ? 'warn' : 'error', 'security profile pull refused', {
        reference: req.image,
        digest: err.context.digest,
        rule: err.context.rule,
        code: err.code,
        error: err.message,
        registrySaid: err.registryText,
        namespace: req.namespace || undefined,
      });
      throw err;
    }
  }

  /** spoke_store_artifacts / spoke_store_bytes from a listing. */
  private setStoreGauges(entries: readonly { layerDigest: Digest; size: number }[]): void {
    // Each blob once, as a gc run counts them: artifacts may share one.
    this.deps.metrics.store(entries.length, blobBytes(entries));
  }

  private refreshingGauges = false;
  private gaugeTimer: NodeJS.Timeout | undefined;

  /**
   * Recounts the store after it changed (a fetch, a removal), off the call's path, at most once
   * per STORE_GAUGE_DELAY_MS: a listing reads every record, so one per fetch would make a burst of
   * cold pulls quadratic and keep the file-system threads busy under the pulls themselves.
   */
  refreshStoreGauges(delayMs = STORE_GAUGE_DELAY_MS): void {
    // No metrics served: nobody reads the gauges, and a listing costs a read of every record.
    if (this.gaugeTimer !== undefined || this.deps.metrics === noopMetrics) return;
    this.gaugeTimer = setTimeout(() => {
      this.gaugeTimer = undefined;
      if (this.refreshingGauges) {
        this.refreshStoreGauges();
        return;
      }
      this.refreshingGauges = true;
      this.deps.store
        .list()
        .then((entries) => this.setStoreGauges(entries))
        .catch((e: unknown) => this.deps.logger.log('warn', 'store metrics not updated', { error: asSpokeError(e).message }))
        .finally(() => {
          this.refreshingGauges = false;
        });
    }, delayMs);
    this.gaugeTimer.unref();
  }

  async list(request: Buffer): Promise<Buffer> {
    const { kind } = decodeListRequest(request);
    const entries = await this.deps.store.list();
    this.setStoreGauges(entries);
    return encodeListResponse(
      entries
        .filter((e) => kind === KIND_UNSPECIFIED || KIND_NUMBER[e.kind] === kind)
        .map((e) => ({
          digest: e.digest,
          references: e.references,
          size: e.size,
          kind: KIND_NUMBER[e.kind],
          inUse: e.inUse.length > 0,
          pulledAtNanos: BigInt(Date.parse(e.pulledAt) || 0) * 1_000_000n,
        })),
    );
  }

  async remove(request: Buffer): Promise<Buffer> {
    const { digest } = decodeRemoveRequest(request);
    const d = parseDigest(digest, 'digest');
    // Under the gate's exclusive side, like gc: a create between resolving this profile and
    // recording its holder holds a lease, so the removal sees that holder and is refused.
    try {
      await this.gate.exclusive(() => this.deps.store.remove(d));
    } catch (e) {
      // Removing what is gone succeeds, as the kubelet expects: gc (or `spoke store rm`) may have
      // removed it between the kubelet's list and this call.
      if (e instanceof SpokeError && e.reason === 'NOT_FOUND') return Buffer.alloc(0);
      throw e;
    }
    this.deps.logger.log('info', 'security profile removed', { digest: d });
    this.refreshStoreGauges();
    return Buffer.alloc(0);
  }
}
