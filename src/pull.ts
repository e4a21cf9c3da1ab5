// The pull pipeline (docs/architecture.md), one step after another, shared by the CRI shim and the CLI:
//   reference → policy → store (cached?) → single-flight → manifest → blob → signature →
//   validate → store → result.
// Policy is decided before any network I/O; a refused reference makes no request at all.
// A shared fetch (a "flight") runs under its own abort controller and total deadline, never under
// one caller's signal or credentials; it is aborted only when every caller waiting on it has gone.

import { checkArtifactManifest, checkProfileIndex, declaredKind, formatPlatform, isImageIndex, refuseArchive, selectPlatform, type ArtifactManifest, type Platform, type PlatformDescriptor } from './core/artifact.js';
import { kindOfConfigMediaType, MEDIA_TYPE_OCI_INDEX, MEDIA_TYPE_OCI_MANIFEST, ociArchitecture, type ProfileKind } from './core/constants.js';
import { sha256Digest, type Digest } from './core/digest.js';
import { SpokeError, asSpokeError, type ErrorCode } from './core/errors.js';
import { MAX_MANIFEST_BYTES } from './core/limits.js';
import { formatReference, parseReference, type Reference } from './core/reference.js';
import { silentLogger, type Logger } from './core/runtime.js';
import { decide } from './policy/decide.js';
import type { Decision, Policy, SignerSpec as PolicySigner, UnavailableSigner } from './policy/types.js';
import { validateArtifactBytes } from './profiles/index.js';
import type { Credential, RegistryClient } from './registry/types.js';
import type { ProfileStore, ProvenanceRecord } from './store/store.js';
import type { SignatureVerdict, SignerSpec } from './verify/types.js';

export interface PullRequest {
  reference: string;
  kind: ProfileKind;
  /** Pod namespace, for namespace-scoped rules (CRI: sandbox_config.metadata.namespace). */
  namespace?: string;
  /** Per-request credentials (CRI AuthConfig): used for this pull only, never stored. */
  credential?: Credential;
  signal?: AbortSignal;
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
  verified(result: 'ok' | 'failed' | 'cached'): void;
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
}

/** This node's OCI platform: `linux/amd64`, `linux/arm64`, ... (from the running Node.js). */
export function nodePlatform(): Platform {
  return { os: process.platform, architecture: ociArchitecture(process.arch) };
}

interface Flight {
  readonly promise: Promise<PullResult>;
  readonly controller: AbortController;
  waiters: number;
  settled: boolean;
}

/** Digests kept in the in-memory record of which credentials proved access (oldest dropped first). */
const MAX_ACCESS_ENTRIES = 4096;

/**
 * Who a pull is made as: `node` (no per-request credentials, so the node's auth file or
 * anonymous, the same for every such pod on this node), or a hash of the request's AuthConfig.
 */
export function credentialIdentity(c: Credential | undefined): string {
  if (c === undefined) return 'node';
  const parts = c.kind === 'basic' ? [c.kind, c.username, c.password] : [c.kind, c.token];
  return `auth:${sha256Digest(JSON.stringify(parts))}`;
}

export class PullPipeline {
  private readonly inflight = new Map<string, Flight>();
  /**
   * digest → credential identities that fetched it in this process (KEP-2535 for profiles: a
   * profile fetched with a pod's credentials is reused only with the same credentials). Kept in
   * memory only, so nothing derived from a credential is written to disk.
   */
  private readonly access = new Map<Digest, Set<string>>();
  private readonly logger: Logger;
  private readonly platform: Platform;

  constructor(private readonly deps: PullPipelineDeps) {
    this.logger = deps.logger ?? silentLogger;
    this.platform = deps.platform ?? nodePlatform();
    // setTimeout would read a missing or bad value as "at once": every fetch would fail.
    if (!Number.isSafeInteger(deps.pullTimeoutMs) || deps.pullTimeoutMs < 1) {
      throw new SpokeError('InvalidArgument', `pull timeout must be a positive number of milliseconds, got ${String(deps.pullTimeoutMs)}`);
    }
  }

  async pull(req: PullRequest): Promise<PullResult> {
    const started = performance.now();
    try {
      const result = await this.pullOnce(req);
      this.deps.observer?.pulled(result.cached, (performance.now() - started) / 1000);
      return result;
    } catch (e) {
      const err = asSpokeError(e);
      this.deps.observer?.failed(err.code);
      throw err;
    }
  }

  private async pullOnce(req: PullRequest): Promise<PullResult> {
    // 1. Reference: digest-pinned only.
    const ref = parseReference(req.reference);
    const canonical = formatReference(ref);

    // 2. Policy, before any I/O.
    const policy = this.deps.policy();
    const decision = decide(policy, ref, req.kind, req.namespace);
    this.deps.observer?.decided(decision.allowed);
    this.logger.log(decision.allowed ? 'info' : 'warn', 'policy decision', {
      reference: canonical,
      digest: ref.digest,
      kind: req.kind,
      namespace: req.namespace,
      allowed: decision.allowed,
      rule: decision.rule?.id,
      reason: decision.reason,
    });
    if (!decision.allowed) {
      throw new SpokeError('PermissionDenied', `${canonical}: ${decision.reason}`, { reference: canonical, rule: decision.rule?.id });
    }

    // 3. Store: present, valid, and (when signatures are required) verified under this policy.
    const identity = credentialIdentity(req.credential);
    const key = `${canonical}\0${req.kind}\0${policy.hash}\0${identity}`;
    const cached = await this.fromStore(ref, canonical, req, policy, decision, key);
    if (cached) return cached;

    // 4. Single-flight: concurrent pulls of one reference, kind, policy and credential identity
    //    share one fetch; a credentialed pull never joins an anonymous one, nor the reverse.
    return this.joinFlight(`fetch\0${key}`, req, policy, (flightReq, registry) => this.fetch(ref, canonical, flightReq, policy, decision, registry));
  }

  /** Callers now waiting on flights for `reference` (canonical form); tests wait on it. */
  waiting(reference: string): number {
    let n = 0;
    for (const [key, f] of this.inflight) if (key.split('\0')[1] === reference) n += f.waiters;
    return n;
  }

  /**
   * Runs `work` as a flight shared by every caller with the same key, or joins the one running.
   * The flight has its own controller and total deadline; each caller may leave early with its
   * own signal, and the flight is aborted only when the last caller has left.
   */
  private joinFlight(key: string, req: PullRequest, policy: Policy, work: (flightReq: PullRequest, registry: RegistryClient) => Promise<PullResult>): Promise<PullResult> {
    let flight = this.inflight.get(key);
    if (!flight) {
      const controller = new AbortController();
      const timer = setTimeout(() => {
        controller.abort(new SpokeError('RegistryUnavailable', `${req.reference}: pull did not finish within ${this.deps.pullTimeoutMs} ms (pullTimeout)`, { limit: this.deps.pullTimeoutMs }, { reason: 'DEADLINE' }));
      }, this.deps.pullTimeoutMs);
      timer.unref();
      const flightReq: PullRequest = { reference: req.reference, kind: req.kind, signal: controller.signal };
      if (req.namespace !== undefined) flightReq.namespace = req.namespace;
      if (req.credential !== undefined) flightReq.credential = req.credential;
      const started = new Promise<PullResult>((resolve, reject) => {
        const lease = this.deps.registry(policy);
        // Whatever the work is waiting on, the flight ends when its signal fires.
        controller.signal.addEventListener('abort', () => reject(asSpokeError(controller.signal.reason, 'RegistryUnavailable')), { once: true });
        work(flightReq, lease.client)
          .then(resolve, reject)
          .finally(() => lease.release());
      });
      const f: Flight = {
        controller,
        waiters: 0,
        settled: false,
        promise: started.finally(() => {
          f.settled = true;
          clearTimeout(timer);
          if (this.inflight.get(key) === f) this.inflight.delete(key);
        }),
      };
      f.promise.catch(() => {}); // observed by each waiter
      flight = f;
      this.inflight.set(key, f);
    }
    return this.wait(key, flight, req.signal);
  }

  /** One caller's wait on a flight, ended early by the caller's own signal. */
  private async wait(key: string, flight: Flight, signal: AbortSignal | undefined): Promise<PullResult> {
    flight.waiters++;
    try {
      if (!signal) return await flight.promise;
      if (signal.aborted) throw callerGone(signal);
      return await new Promise<PullResult>((resolve, reject) => {
        const onAbort = () => reject(callerGone(signal));
        signal.addEventListener('abort', onAbort, { once: true });
        flight.promise.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
      });
    } finally {
      if (--flight.waiters === 0 && !flight.settled) {
        // Nobody is left to use the result: stop the fetch, and let a new caller start afresh.
        if (this.inflight.get(key) === flight) this.inflight.delete(key);
        flight.controller.abort(new SpokeError('RegistryUnavailable', 'pull cancelled: every caller has gone'));
      }
    }
  }

  private async fromStore(ref: Reference, canonical: string, req: PullRequest, policy: Policy, decision: Decision & { allowed: true }, key: string): Promise<PullResult | undefined> {
    const { store } = this.deps;
    const record = await store.getRecord(ref.digest);
    // A record whose blob is gone (removed by hand, or lost in a crash) is not a cache hit.
    if (!record || !(await store.hasBlob(record.layerDigest))) {
      const bad = await store.getInvalid(ref.digest);
      if (bad) throw new SpokeError('SecurityProfileInvalid', `${canonical}: ${bad.reason} (cached verdict)`, { reference: canonical, digest: ref.digest });
      return undefined;
    }
    // KEP-2535 for profiles: what was fetched with the node's credentials (or none) any pod may
    // reuse; what was fetched with a pod's credentials, only a pod with the same credentials.
    // Anyone else fetches it again as itself, which proves access to the registry.
    if (!this.mayReuse(record, credentialIdentity(req.credential))) return undefined;
    // Kind and size depend on the request and the policy, not on the content: checked on every
    // call, cached or not (KEP: size and type are re-validated each time).
    if (record.kind !== req.kind) throw kindMismatch(canonical, req.kind, record.kind);
    checkSizeLimit(canonical, record.size, policy.limits.maxArtifactBytes);
    let signer: SignatureVerdict | undefined;
    if (!decision.unsigned) {
      const verdict = record.verdicts[policy.hash];
      if (verdict && decision.signedBy.some((s) => s.name === verdict.signer && s.type !== 'unavailable')) {
        signer = { signer: verdict.signer, format: verdict.format, identity: verdict.identity };
        this.deps.observer?.verified('cached');
      } else {
        // Policy or keys changed since this digest was verified: re-verify, without re-downloading
        // the blob. Registry requests again: a flight of its own, with its deadline.
        return this.joinFlight(`verify\0${key}`, req, policy, async (flightReq, registry) => {
          const s = await this.verify(ref, canonical, flightReq, decision, registry, await store.readManifest(ref.digest));
          await store.annotate(ref.digest, { reference: canonical, verdict: { policyHash: policy.hash, ...s } });
          return this.result(ref, canonical, record, decision, false, s);
        });
      }
    }
    if (!record.references.includes(canonical)) await store.annotate(ref.digest, { reference: canonical });
    return this.result(ref, canonical, record, decision, true, signer);
  }

  private mayReuse(record: ProvenanceRecord, identity: string): boolean {
    if (record.nodeCredentials === true) return true;
    return identity !== 'node' && this.access.get(record.digest)?.has(identity) === true;
  }

  private rememberAccess(d: Digest, identity: string): void {
    if (identity === 'node') return; // recorded in the store (ingest's nodeCredentials)
    let ids = this.access.get(d);
    if (!ids) {
      if (this.access.size >= MAX_ACCESS_ENTRIES) this.access.delete(this.access.keys().next().value!);
      this.access.set(d, (ids = new Set()));
    }
    ids.add(identity);
  }

  private result(ref: Reference, canonical: string, record: ProvenanceRecord, decision: Decision & { allowed: true }, cached: boolean, signer?: SignatureVerdict, servedBy?: string): PullResult {
    return {
      reference: canonical,
      digest: ref.digest,
      resolvedRef: canonical,
      cached,
      path: this.deps.store.blobPath(record.layerDigest),
      rule: decision.rule.id,
      ...(signer ? { signer } : {}),
      ...(servedBy ? { servedBy } : {}),
      ...(record.platform ? { platform: { digest: record.platform.digest, platform: formatPlatform(record.platform) } } : {}),
    };
  }

  private async fetch(ref: Reference, canonical: string, req: PullRequest, policy: Policy, decision: Decision & { allowed: true }, registry: RegistryClient): Promise<PullResult> {
    const repo = { registry: ref.registry, repository: ref.repository };
    const fetchOpts = { credential: req.credential, signal: req.signal, useMirrors: true };
    const limit = policy.limits.maxArtifactBytes;

    // 5. Manifest by digest (mirrors first), bytes hashed against the digest by the client. It may
    //    be a multi-architecture index (docs/multi-arch.md).
    const manifestP = registry.getManifest(repo, ref.digest, [MEDIA_TYPE_OCI_MANIFEST, MEDIA_TYPE_OCI_INDEX], { ...fetchOpts, maxBytes: MAX_MANIFEST_BYTES });
    // 7 (started early). Signature discovery needs only the digest, so it runs alongside steps 5–6;
    // its verdict is awaited below, before anything is validated or stored. Always on the
    // reference as written: for an index, the index digest, whose bytes pin every platform's.
    const verifying = decision.unsigned ? undefined : this.verify(ref, canonical, req, decision, registry, manifestP.then((m) => m.bytes));
    verifying?.catch(() => {}); // observed at step 7; a failure of steps 5–6 wins
    const top = await manifestP;
    // 5a. An index: the artifact manifest for this node's platform, judged from here on like a
    //     manifest named directly. Its content verdicts are kept under its own digest.
    let manifest = top;
    let chosen: PlatformDescriptor | undefined;
    if (isImageIndex(top.bytes)) {
      chosen = await this.selectFromIndex(ref.digest, canonical, req.kind, top.bytes);
      manifest = await registry.getManifest(repo, chosen.digest, [MEDIA_TYPE_OCI_MANIFEST], { ...fetchOpts, maxBytes: MAX_MANIFEST_BYTES });
      // The bytes hash to the digest the index pins, so a length other than the declared size is
      // the index's fault.
      const size = manifest.bytes.length;
      if (size !== chosen.size) {
        const err = new SpokeError('SecurityProfileInvalid', `${ref.digest}: manifest ${chosen.digest} is ${size} bytes, the index says ${chosen.size}`, { digest: ref.digest, expected: chosen.size, actual: size }, { reason: 'SIZE_LIMIT' });
        await this.deps.store.recordInvalid(ref.digest, err.message);
        throw err;
      }
    }
    const contentDigest = chosen?.digest ?? ref.digest;
    // Only what the content alone decides is remembered as a verdict on the digest: the kind asked
    // for and the size limit belong to this request and this policy, so they are judged apart.
    const declared = declaredKind(manifest.bytes);
    if (declared !== undefined && declared !== req.kind) throw kindMismatch(canonical, req.kind, declared);
    const artifact = await this.permanent(contentDigest, () => checkArtifactManifest(manifest.bytes, contentDigest, declared ?? req.kind, Number.MAX_SAFE_INTEGER));
    checkDescriptorSizes(canonical, artifact, limit);

    // 6. Blob: streamed with a hard cap at its declared size, hashed while streaming (the client
    //    refuses a size or digest that differs); archives refused.
    const blob = await registry.getBlob(repo, artifact.layer.digest, { ...fetchOpts, maxBytes: limit, expectedSize: artifact.layer.size });
    await this.permanent(contentDigest, () => refuseArchive(blob.bytes, artifact.layer.digest));

    // 7. Signature, as the rule requires.
    const signer = await verifying;

    // 8. Validate the profile itself (kind rules); a failure is remembered for this digest.
    await this.permanent(contentDigest, () => validateArtifactBytes(req.kind, blob.bytes));

    // 9. Store: temp → fsync → rename; provenance with the rule and signer.
    await this.deps.store.ingest({
      digest: ref.digest,
      manifestBytes: top.bytes,
      ...(chosen ? { platform: { ...chosen.platform, digest: chosen.digest, manifestBytes: manifest.bytes } } : {}),
      layerDigest: artifact.layer.digest,
      layerBytes: blob.bytes,
      kind: req.kind,
      reference: canonical,
      rule: decision.rule.id,
      servedBy: manifest.servedBy,
      nodeCredentials: req.credential === undefined,
      ...(signer ? { verdict: { policyHash: policy.hash, ...signer } } : {}),
    });
    this.rememberAccess(ref.digest, credentialIdentity(req.credential));
    this.logger.log('info', 'profile pulled', { reference: canonical, digest: ref.digest, platformDigest: chosen?.digest, rule: decision.rule.id, servedBy: manifest.servedBy, signer: signer?.signer });
    const record = await this.deps.store.getRecord(ref.digest);
    if (!record) throw new SpokeError('Internal', `${ref.digest} vanished from the store right after ingest`);
    // 10. Response: resolvedRef keeps the requested registry/repository whoever served it.
    return this.result(ref, canonical, record, decision, false, signer, manifest.servedBy);
  }

  /**
   * The descriptor of this node's platform in a multi-architecture index (docs/multi-arch.md).
   * The index's own faults are verdicts on its digest; a missing platform is not (other nodes
   * may use the index), nor is a kind other than the one asked for. A platform manifest already
   * judged invalid is refused without fetching it.
   */
  private async selectFromIndex(digest: Digest, canonical: string, kind: ProfileKind, indexBytes: Buffer): Promise<PlatformDescriptor> {
    const parsed = await this.permanent(digest, () => checkProfileIndex(indexBytes, digest, MAX_MANIFEST_BYTES));
    await this.checkDeclaredType(digest, canonical, kind, parsed.artifactType, 'index artifactType');
    const chosen = selectPlatform(parsed.manifests, this.platform, digest);
    await this.checkDeclaredType(digest, canonical, kind, chosen.artifactType, `artifactType of ${formatPlatform(chosen.platform)}`);
    const bad = await this.deps.store.getInvalid(chosen.digest);
    if (bad) throw new SpokeError('SecurityProfileInvalid', `${canonical}: ${formatPlatform(chosen.platform)} manifest: ${bad.reason} (cached verdict)`, { reference: canonical, digest: chosen.digest });
    return chosen;
  }

  /**
   * An artifactType an index declares, when set: another profile kind is a mismatch with this
   * request (not a content fault); a type that names no profile kind is one.
   */
  private async checkDeclaredType(digest: Digest, canonical: string, kind: ProfileKind, declared: string | undefined, what: string): Promise<void> {
    if (declared === undefined) return;
    const k = await this.permanent(digest, () => {
      const found = kindOfConfigMediaType(declared);
      if (found === undefined) throw new SpokeError('SecurityProfileInvalid', `${digest}: ${what} is not a profile artifact type`, { digest }, { reason: 'KIND_MISMATCH' });
      return found;
    });
    if (k !== kind) throw kindMismatch(canonical, kind, k);
  }

  /**
   * Runs a content check on bytes whose digest matched, judging the content alone (strict JSON,
   * one layer, media types, archives, the profile under its own declared kind). Such failures are
   * permanent for the digest (the content can never change): recorded, and not fetched again.
   */
  private async permanent<T>(digest: Digest, check: () => T): Promise<T> {
    try {
      return check();
    } catch (e) {
      const err = asSpokeError(e, 'SecurityProfileInvalid');
      if (err.code === 'SecurityProfileInvalid') await this.deps.store.recordInvalid(digest, err.message);
      throw err;
    }
  }

  private async verify(ref: Reference, canonical: string, req: PullRequest, decision: Decision & { allowed: true }, registry: RegistryClient, manifestBytes: Buffer | Promise<Buffer>): Promise<SignatureVerdict> {
    const verifier = this.deps.verifier;
    if (!verifier) throw new SpokeError('SignatureValidationFailed', `${canonical}: the rule requires a signature but no verifier is configured`);
    // A signer whose key is gone verifies nothing (fail closed): the others still may.
    const signers = decision.signedBy.filter((s): s is Exclude<PolicySigner, UnavailableSigner> => s.type !== 'unavailable');
    const unavailable = decision.signedBy.filter((s): s is UnavailableSigner => s.type === 'unavailable');
    const signerGone = (cause?: SpokeError) =>
      new SpokeError(
        'SignatureValidationFailed',
        `${canonical}: no signature verified${signers.length > 0 ? ` by ${signers.map((s) => s.name).join(', ')}` : ''}, and the key material of ${unavailable.map((s) => `${s.name} (${s.why})`).join(', ')} is unavailable`,
        { reference: canonical },
        { reason: 'SIGNER_UNAVAILABLE', cause },
      );
    if (signers.length === 0) {
      this.deps.observer?.verified('failed');
      throw signerGone();
    }
    try {
      const verdict = await verifier({
        registry,
        reference: ref,
        manifestBytes,
        signers: signers.map(toVerifierSigner),
        credential: req.credential,
        signal: req.signal,
      });
      this.deps.observer?.verified('ok');
      this.logger.log('info', 'signature verified', { reference: canonical, digest: ref.digest, signer: verdict.signer, format: verdict.format, identity: verdict.identity });
      return verdict;
    } catch (e) {
      this.deps.observer?.verified('failed');
      const err = asSpokeError(e, 'SignatureValidationFailed');
      // Registry trouble stays transient and visible as such; anything else is a refusal.
      if (err.code === 'RegistryUnavailable' || err.code === 'Unauthenticated') throw err;
      if (unavailable.length > 0) throw signerGone(err);
      if (err.code === 'SignatureValidationFailed') throw err;
      throw new SpokeError('SignatureValidationFailed', `${canonical}: ${err.message}`, { ...err.context, reference: canonical }, { cause: err, reason: err.reason === 'UNSPECIFIED' || err.reason === 'UNEXPECTED' ? 'SIGNATURE_INVALID' : err.reason });
    }
  }
}

/** The caller's own signal ended its wait (its deadline, or it went away); the flight goes on. */
function callerGone(signal: AbortSignal): SpokeError {
  const reason: unknown = signal.reason;
  if (reason instanceof SpokeError) return reason;
  if (reason instanceof Error && reason.name === 'TimeoutError') return new SpokeError('Unavailable', 'deadline exceeded', {}, { reason: 'DEADLINE', cause: reason });
  return new SpokeError('Unavailable', 'the caller cancelled the pull', {}, { cause: reason });
}

function kindMismatch(canonical: string, expected: ProfileKind, actual: ProfileKind): SpokeError {
  return new SpokeError('SecurityProfileInvalid', `${canonical}: the artifact is a ${actual} profile, not ${expected}`, { reference: canonical, expected, actual }, { reason: 'KIND_MISMATCH' });
}

function checkSizeLimit(canonical: string, size: number, limit: number, what = 'profile'): void {
  if (size > limit) {
    throw new SpokeError('SecurityProfileInvalid', `${canonical}: ${what} is ${size} bytes, over the node policy's limit of ${limit} (limits.maxArtifactBytes)`, { reference: canonical, limit, actual: size }, { reason: 'SIZE_LIMIT' });
  }
}

function checkDescriptorSizes(canonical: string, artifact: ArtifactManifest, limit: number): void {
  checkSizeLimit(canonical, artifact.config.size, limit, 'config');
  checkSizeLimit(canonical, artifact.layer.size, limit, 'layer');
}

/** Policy signers (as parsed from the node policy) in the verifier's plain shape; an unavailable one fails closed. */
export function toVerifierSigner(s: PolicySigner): SignerSpec {
  if (s.type === 'unavailable') throw new SpokeError('SignatureValidationFailed', `signer ${s.name}: ${s.why}`, { file: s.file }, { reason: 'SIGNER_UNAVAILABLE' });
  return s.type === 'publicKey'
    ? { name: s.name, kind: 'publicKey', file: s.file, pem: s.publicKeyPem, key: s.publicKey }
    : { name: s.name, kind: 'keyless', trustedRootFile: s.file, trustedRoot: s.trustedRoot, issuer: s.issuer, subject: s.subject, subjectRegExp: s.subjectRegExp, timeSource: s.timeSource };
}
