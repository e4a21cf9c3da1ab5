// The pull pipeline (DESIGN §3), one step after another, shared by the CRI shim and the CLI:
//   reference → policy → store (cached?) → single-flight → manifest → blob → signature →
//   validate → store → result.
// Policy is decided before any network I/O; a refused reference makes no request at all.

import { checkArtifactManifest, refuseArchive } from './core/artifact.js';
import { MEDIA_TYPE_OCI_MANIFEST, type ProfileKind } from './core/constants.js';
import type { Digest } from './core/digest.js';
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

export interface PullPipelineDeps {
  /** The current policy (re-read on every pull: reloads take effect at once). */
  policy: () => Policy;
  /** The registry client for a policy (mirrors and insecure hosts come from it). */
  registry: (policy: Policy) => RegistryClient;
  store: ProfileStore;
  verifier?: SignatureVerifier;
  logger?: Logger;
  observer?: PullObserver;
}

export class PullPipeline {
  private readonly inflight = new Map<string, Promise<PullResult>>();
  private readonly logger: Logger;

  constructor(private readonly deps: PullPipelineDeps) {
    this.logger = deps.logger ?? silentLogger;
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
    const cached = await this.fromStore(ref, canonical, req, policy, decision);
    if (cached) return cached;

    // 4. Single-flight: concurrent pulls of one reference under one policy share one fetch.
    const key = `${canonical}\0${req.kind}\0${policy.hash}`;
    let flight = this.inflight.get(key);
    if (!flight) {
      flight = this.fetch(ref, canonical, req, policy, decision).finally(() => this.inflight.delete(key));
      this.inflight.set(key, flight);
    }
    return flight;
  }

  private async fromStore(ref: Reference, canonical: string, req: PullRequest, policy: Policy, decision: Decision & { allowed: true }): Promise<PullResult | undefined> {
    const { store } = this.deps;
    const record = await store.getRecord(ref.digest);
    // A record whose blob is gone (removed by hand, or lost in a crash) is not a cache hit.
    if (!record || !(await store.hasBlob(record.layerDigest))) {
      const bad = await store.getInvalid(ref.digest);
      if (bad) throw new SpokeError('SecurityProfileInvalid', `${canonical}: ${bad.reason} (cached verdict)`, { reference: canonical, digest: ref.digest });
      return undefined;
    }
    if (record.kind !== req.kind) {
      throw new SpokeError('SecurityProfileInvalid', `${canonical}: the artifact is a ${record.kind} profile, not ${req.kind}`, {
        reference: canonical,
        expected: req.kind,
        actual: record.kind,
      });
    }
    let signer: SignatureVerdict | undefined;
    if (!decision.unsigned) {
      const verdict = record.verdicts[policy.hash];
      if (verdict && decision.signedBy.some((s) => s.name === verdict.signer && s.type !== 'unavailable')) {
        signer = { signer: verdict.signer, format: verdict.format, identity: verdict.identity };
        this.deps.observer?.verified('cached');
      } else {
        // Policy or keys changed since this digest was verified: re-verify, without re-downloading the blob.
        signer = await this.verify(ref, canonical, req, policy, decision, await store.readManifest(ref.digest));
        await store.annotate(ref.digest, { reference: canonical, verdict: { policyHash: policy.hash, ...signer } });
        return this.result(ref, canonical, record, decision, false, signer);
      }
    }
    if (!record.references.includes(canonical)) await store.annotate(ref.digest, { reference: canonical });
    return this.result(ref, canonical, record, decision, true, signer);
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
    };
  }

  private async fetch(ref: Reference, canonical: string, req: PullRequest, policy: Policy, decision: Decision & { allowed: true }): Promise<PullResult> {
    const registry = this.deps.registry(policy);
    const repo = { registry: ref.registry, repository: ref.repository };
    const fetchOpts = { credential: req.credential, signal: req.signal, useMirrors: true };
    const limit = policy.limits.maxArtifactBytes;

    // 5. Manifest by digest (mirrors first), bytes hashed against the digest by the client.
    const manifestP = registry.getManifest(repo, ref.digest, [MEDIA_TYPE_OCI_MANIFEST], { ...fetchOpts, maxBytes: MAX_MANIFEST_BYTES });
    // 7 (started early). Signature discovery needs only the digest, so it runs alongside steps 5–6;
    // its verdict is awaited below, before anything is validated or stored.
    const verifying = decision.unsigned ? undefined : this.verify(ref, canonical, req, policy, decision, manifestP.then((m) => m.bytes));
    verifying?.catch(() => {}); // observed at step 7; a failure of steps 5–6 wins
    const manifest = await manifestP;
    const artifact = await this.permanent(ref, () => checkArtifactManifest(manifest.bytes, ref.digest, req.kind, limit));

    // 6. Blob: streamed with a hard cap at its declared size, hashed while streaming (the client
    //    refuses a size or digest that differs); archives refused.
    const blob = await registry.getBlob(repo, artifact.layer.digest, { ...fetchOpts, maxBytes: limit, expectedSize: artifact.layer.size });
    await this.permanent(ref, () => refuseArchive(blob.bytes, artifact.layer.digest));

    // 7. Signature, as the rule requires.
    const signer = await verifying;

    // 8. Validate the profile itself (kind rules); a failure is remembered for this digest.
    await this.permanent(ref, () => validateArtifactBytes(req.kind, blob.bytes));

    // 9. Store: temp → fsync → rename; provenance with the rule and signer.
    await this.deps.store.ingest({
      digest: ref.digest,
      manifestBytes: manifest.bytes,
      layerDigest: artifact.layer.digest,
      layerBytes: blob.bytes,
      kind: req.kind,
      reference: canonical,
      rule: decision.rule.id,
      servedBy: manifest.servedBy,
      ...(signer ? { verdict: { policyHash: policy.hash, ...signer } } : {}),
    });
    this.logger.log('info', 'profile pulled', { reference: canonical, digest: ref.digest, rule: decision.rule.id, servedBy: manifest.servedBy, signer: signer?.signer });
    const record = await this.deps.store.getRecord(ref.digest);
    if (!record) throw new SpokeError('Internal', `${ref.digest} vanished from the store right after ingest`);
    // 10. Response: resolvedRef keeps the requested registry/repository whoever served it.
    return this.result(ref, canonical, record, decision, false, signer, manifest.servedBy);
  }

  /**
   * Runs a content check on bytes whose digest matched. Such failures are permanent for the
   * digest (the content can never change), so the verdict is recorded and not fetched again.
   */
  private async permanent<T>(ref: Reference, check: () => T): Promise<T> {
    try {
      return check();
    } catch (e) {
      const err = asSpokeError(e, 'SecurityProfileInvalid');
      if (err.code === 'SecurityProfileInvalid') await this.deps.store.recordInvalid(ref.digest, err.message);
      throw err;
    }
  }

  private async verify(ref: Reference, canonical: string, req: PullRequest, policy: Policy, decision: Decision & { allowed: true }, manifestBytes: Buffer | Promise<Buffer>): Promise<SignatureVerdict> {
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
        registry: this.deps.registry(policy),
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
      throw new SpokeError('SignatureValidationFailed', `${canonical}: ${err.message}`, { reference: canonical }, { cause: err });
    }
  }
}

/** Policy signers (as parsed from the node policy) in the verifier's plain shape; an unavailable one fails closed. */
export function toVerifierSigner(s: PolicySigner): SignerSpec {
  if (s.type === 'unavailable') throw new SpokeError('SignatureValidationFailed', `signer ${s.name}: ${s.why}`, { file: s.file }, { reason: 'SIGNER_UNAVAILABLE' });
  return s.type === 'publicKey'
    ? { name: s.name, kind: 'publicKey', file: s.file, pem: s.publicKeyPem, key: s.publicKey }
    : { name: s.name, kind: 'keyless', trustedRootFile: s.file, trustedRoot: s.trustedRoot, issuer: s.issuer, subject: s.subject, subjectRegExp: s.subjectRegExp };
}
