// The pull pipeline (docs/architecture.md), one step after another, shared by the CRI shim and the CLI:
//   reference → policy → store (cached?) → single-flight → manifest → blob → validate →
//   signature (its requests started with the manifest's) → store → result.
// Policy is decided before any network I/O; a refused reference makes no request at all.
// The steps' helpers live in src/pull/: flights (single-flight), access (credential identity),
// platform (multi-architecture indexes), signature, references (parses remembered),
// record-ahead (an unsigned pull's record, written while the blob is on its way), and the kind
// and size checks.

import { checkArtifactManifest, declaredKind, formatPlatform, isImageIndex, ManifestDocument, refuseArchive, type Platform, type PlatformDescriptor } from './core/artifact.js';
import { MEDIA_TYPE_OCI_INDEX, MEDIA_TYPE_OCI_MANIFEST } from './core/constants.js';
import { SpokeError, asSpokeError } from './core/errors.js';
import { MAX_MANIFEST_BYTES } from './core/limits.js';
import type { Reference } from './core/reference.js';
import { logEnabled, silentLogger, type Logger } from './core/runtime.js';
import { decide } from './policy/decide.js';
import type { Decision, Policy } from './policy/types.js';
import { validateArtifactBytes } from './profiles/index.js';
import type { RegistryClient } from './registry/types.js';
import { verdictUnder, type ProvenanceRecord, type RecordInput } from './store/store.js';
import type { SignatureVerdict } from './verify/types.js';
import { AccessMemory, credentialIdentity } from './pull/access.js';
import { checkDescriptorSizes, checkNamespace, checkStored, kindMismatch, permanent } from './pull/checks.js';
import { ByteBudget } from './pull/byte-budget.js';
import { flightKey, Flights } from './pull/flights.js';
import { nodePlatform, selectFromIndex } from './pull/platform.js';
import { RecordAhead } from './pull/record-ahead.js';
import { ParsedReferences } from './pull/references.js';
import { verifySignature } from './pull/signature.js';
import type { FlightRequest, PullPipelineDeps, PullRequest, PullResult } from './pull/types.js';

export type { PullObserver, PullPipelineDeps, PullRequest, PullResult, RegistryLease, SignatureVerifier } from './pull/types.js';
export { credentialIdentity } from './pull/access.js';
export { nodePlatform } from './pull/platform.js';
export { toVerifierSigner } from './pull/signature.js';

/** Stored profiles remembered as judged by this process's rules; past it the memory starts afresh (each is judged again once). */
const MAX_JUDGED = 4096;
/** Namespaces whose pulls are remembered (pulledIn), and references per namespace; least recent dropped first. */
const MAX_PULLED_NAMESPACES = 1024;
const MAX_PULLED_PER_NAMESPACE = 256;

export class PullPipeline {
  private readonly flights: Flights;
  /** Which credentials proved access to which digest in this process (KEP-2535 for profiles). */
  private readonly access = new AccessMemory();
  private readonly logger: Logger;
  private readonly platform: Platform;
  private readonly blobBudget: ByteBudget;
  /** Kind and layer digest of the stored profiles this process has judged by its rules (judgeStored). */
  private readonly judged = new Set<string>();
  /** Namespace ('' for none: the node) → the references pulled in it by this process, least recent first (pulledIn). */
  private readonly pulled = new Map<string, Set<string>>();
  /** The namespace and reference notePulled put last in `pulled`. */
  private lastPulled = { namespace: '', reference: '' };
  private readonly references = new ParsedReferences();

  constructor(private readonly deps: PullPipelineDeps) {
    this.logger = deps.logger ?? silentLogger;
    this.platform = deps.platform ?? nodePlatform();
    // setTimeout would read a missing or bad value as "at once": every fetch would fail.
    if (!Number.isSafeInteger(deps.pullTimeoutMs) || deps.pullTimeoutMs < 1) {
      throw new SpokeError('InvalidArgument', `pull timeout must be a positive number of milliseconds, got ${String(deps.pullTimeoutMs)}`, {}, { reason: 'OPTION_INVALID' });
    }
    this.flights = new Flights((policy) => deps.registry(policy), deps.pullTimeoutMs);
    this.blobBudget = new ByteBudget(deps.blobBytesInFlight);
  }

  async pull(req: PullRequest): Promise<PullResult> {
    const observer = this.deps.observer;
    // Timed only for an observer or a log line: the global `performance` loads Node's perf_hooks
    // modules, a few milliseconds of a one-pull CLI run.
    const started = observer || logEnabled(this.logger, 'info') ? performance.now() : 0;
    let result: PullResult;
    try {
      result = await this.pullOnce(req);
    } catch (e) {
      const err = asSpokeError(e);
      observer?.failed(err.code);
      throw err;
    }
    this.notePulled(req.namespace ?? '', result.reference);
    observer?.pulled(result.cached, (performance.now() - started) / 1000);
    this.logOutcome(req, result, started);
    return result;
  }

  private async pullOnce(req: PullRequest): Promise<PullResult> {
    // 1. Reference: digest-pinned only; a namespace as the API server admits them.
    checkNamespace(req.namespace);
    const { ref, canonical } = this.references.parse(req.reference);

    // 2. Policy, before any I/O.
    const policy = this.deps.policy();
    const decision = decide(policy, ref, req.kind, req.namespace);
    this.deps.observer?.decided(decision.allowed);
    // An allowed decision is debug: the caller's outcome line (the shim's "security profile
    // pull") names the rule, and a line per decision would be the cost of a cached pull.
    const level = decision.allowed ? 'debug' : 'warn';
    if (logEnabled(this.logger, level)) {
      this.logger.log(level, 'policy decision', {
        reference: canonical,
        digest: ref.digest,
        kind: req.kind,
        namespace: req.namespace,
        allowed: decision.allowed,
        rule: decision.rule?.id,
        reason: decision.reason,
      });
    }
    if (!decision.allowed) {
      throw new SpokeError('PermissionDenied', `${canonical}: ${decision.reason}`, { reference: canonical, rule: decision.rule?.id }, { reason: 'POLICY_DENIED' });
    }

    // 3. Store: present, valid, and (when signatures are required) verified under this policy.
    const cached = await this.fromStore(ref, canonical, req, policy, decision);
    if (cached) return cached;

    // 4. Single-flight: concurrent pulls of one reference, kind, policy, deciding rules and
    //    credential identity share one fetch (flightKey); a credentialed pull never joins an
    //    anonymous one, nor the reverse.
    //    A fetch is shared within one namespace: its blob bytes wait at its first caller's
    //    namespace's share of the blob budget (byte-budget.ts), where another namespace's
    //    pull would wait behind that namespace's stalled ones.
    return this.flights.join(`fetch\0${flightKey(canonical, req, policy, decision)}\0${req.namespace ?? ''}`, req, policy, (flightReq, registry) => this.fetch(ref, canonical, flightReq, policy, decision, registry));
  }

  /**
   * The outcome line of every caller (the shim's PullSecurityProfile, annotation mode, a create's
   * new look at a signature, the CLI): a pull that fetched or verified again is news (info),
   * naming the rule and the signature that admitted it; a cached one, repeated on every container
   * start, is debug: a log line per call costs more than the rest of the cached pull.
   */
  private logOutcome(req: PullRequest, r: PullResult, started: number): void {
    const level = r.cached ? 'debug' : 'info';
    if (!logEnabled(this.logger, level)) return;
    const fields = {
      reference: r.reference,
      kind: req.kind,
      digest: r.digest,
      rule: r.rule,
      cached: r.cached,
      platformDigest: r.platform?.digest,
      servedBy: r.servedBy,
      signer: r.signer?.signer,
      signatureFormat: r.signer?.format,
      signerIdentity: r.signer?.identity,
      namespace: req.namespace || undefined,
      withCredentials: req.credential !== undefined,
      ms: Math.round(performance.now() - started),
    };
    // A log sink that fails (a closed pipe) does not undo a pull that stored its profile.
    try {
      this.logger.log(level, 'security profile pull', fields);
    } catch {
      /* the pull stands */
    }
  }

  /**
   * Whether this process pulled `reference` (canonical form) for `namespace` (undefined: the
   * node's own pulls), or for the node. The shim accepts a create's OCI profile pulled so
   * (docs/shim.md), beside the references the store's record keeps: those are capped per
   * artifact, and another namespace naming the same digest under new references pushes the
   * oldest out, where it cannot push out what this memory keeps for each namespace.
   */
  pulledIn(namespace: string | undefined, reference: string): boolean {
    return (namespace !== undefined && this.pulled.get(namespace)?.has(reference) === true) || this.pulled.get('')?.has(reference) === true;
  }

  private notePulled(namespace: string, reference: string): void {
    // The most recent already (a pod's containers, a restarting one): nothing to reorder, and a
    // delete and re-insert per call would leave the table to be rebuilt every few calls.
    if (namespace === this.lastPulled.namespace && reference === this.lastPulled.reference && this.pulled.get(namespace)?.has(reference) === true) return;
    this.lastPulled = { namespace, reference };
    let refs = this.pulled.get(namespace);
    if (refs === undefined) {
      if (this.pulled.size >= MAX_PULLED_NAMESPACES) this.pulled.delete(this.pulled.keys().next().value!);
      refs = new Set();
    }
    // Re-inserted: Map and Set keep insertion order, so the first entries are the least recent.
    this.pulled.delete(namespace);
    this.pulled.set(namespace, refs);
    refs.delete(reference);
    refs.add(reference);
    if (refs.size > MAX_PULLED_PER_NAMESPACE) refs.delete(refs.values().next().value!);
  }

  /** Callers now waiting on flights for `reference` (canonical form); tests wait on it. */
  waiting(reference: string): number {
    return this.flights.waiting(reference);
  }

  private async fromStore(ref: Reference, canonical: string, req: PullRequest, policy: Policy, decision: Decision & { allowed: true }): Promise<PullResult | undefined> {
    const { store } = this.deps;
    const record = await store.getRecord(ref.digest);
    // A record whose blob is gone (removed by hand, or lost in a crash) is not a cache hit.
    if (!record || !(await store.hasBlob(record.layerDigest))) {
      const bad = await store.getInvalid(ref.digest);
      if (bad) throw new SpokeError('SecurityProfileInvalid', `${canonical}: ${bad.reason} (cached verdict)`, { reference: canonical, digest: ref.digest }, { reason: 'KNOWN_INVALID' });
      return undefined;
    }
    // KEP-2535 for profiles: what was fetched with the node's credentials (or none) any pod may
    // reuse; what was fetched with a pod's credentials, only a pod with the same credentials.
    // Anyone else fetches it again as itself, which proves access to the registry.
    if (!this.access.mayReuse(record, credentialIdentity(req.credential))) return undefined;
    checkStored(canonical, record, req.kind, policy.limits.maxArtifactBytes, this.platform);
    // A blob removed since hasBlob (gc of another process, `spoke store rm`): fetched again.
    if (!(await this.judgeStored(canonical, record))) return undefined;
    // The kubelet pulls before it creates: gc must not take the gap for disuse (docs/gc.md).
    if (!store.noteUse(ref.digest)) return undefined; // removed by a gc run since: fetched again
    let signer: SignatureVerdict | undefined;
    if (!decision.unsigned) {
      const verdict = verdictUnder(record, policy.hash, decision.signedBy);
      if (verdict) {
        signer = { signer: verdict.signer, format: verdict.format, identity: verdict.identity };
        this.deps.observer?.verified('cached');
      } else {
        // Policy or keys changed since this digest was verified: re-verify, without re-downloading
        // the blob. Registry requests again: a flight of its own, with its deadline.
        return this.flights.join(`verify\0${flightKey(canonical, req, policy, decision)}`, req, policy, async (flightReq, registry) => {
          const s = await this.verify(ref, canonical, flightReq, decision, registry, await store.readManifest(ref.digest));
          await store.annotate(ref.digest, { reference: canonical, verdict: { policyHash: policy.hash, ...s } });
          return this.result(ref, canonical, record, decision, false, s);
        });
      }
    }
    if (!record.references.includes(canonical)) await store.annotate(ref.digest, { reference: canonical });
    return this.result(ref, canonical, record, decision, true, signer);
  }

  /**
   * A stored profile judged by this version's artifact rules (ValidateArtifact) once per process:
   * the store's verdict may be an older spoke's, made under looser rules
   * (docs/security-model.md#verdicts-outlive-only-their-reasons). A fetch judges what it stores.
   * False when the blob is gone.
   */
  private async judgeStored(canonical: string, record: ProvenanceRecord): Promise<boolean> {
    const key = `${record.kind}\0${record.layerDigest}`;
    if (this.judged.has(key)) return true;
    let bytes: Buffer;
    try {
      bytes = await this.deps.store.readBlob(record.layerDigest, { verify: true });
    } catch (e) {
      if (e instanceof SpokeError && e.reason === 'NOT_FOUND') return false;
      // Bytes that no longer hash to their digest, which the read removed: fetched again.
      if (e instanceof SpokeError && e.reason === 'DIGEST_MISMATCH' && !(await this.deps.store.hasBlob(record.layerDigest))) return false;
      throw e;
    }
    try {
      validateArtifactBytes(record.kind, bytes);
    } catch (e) {
      const err = asSpokeError(e, 'Internal');
      const at = err.context.path === undefined ? {} : { path: err.context.path };
      throw new SpokeError(err.code, `${canonical}: the stored profile fails this version's rules: ${err.message}`, { reference: canonical, digest: record.digest, ...at }, { cause: e, reason: err.reason });
    }
    this.noteJudged(key);
    return true;
  }

  private noteJudged(key: string): void {
    if (this.judged.size >= MAX_JUDGED) this.judged.clear();
    this.judged.add(key);
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

  private async fetch(ref: Reference, canonical: string, req: FlightRequest, policy: Policy, decision: Decision & { allowed: true }, registry: RegistryClient): Promise<PullResult> {
    const repo = { registry: ref.registry, repository: ref.repository };
    const fetchOpts = { credential: req.credential, signal: req.signal, useMirrors: true };
    const limit = policy.limits.maxArtifactBytes;

    // 8 (started first). Signature discovery needs only the digest, so it runs alongside steps
    //    5–7, and its chain of requests (one longer than the artifact's) leaves first; the
    //    manifest's bytes reach it when they arrive. Its verdict is awaited below, before anything
    //    is stored. Always on the reference as written: for an index, the index digest, whose
    //    bytes pin every platform's.
    let supplyManifest: ((bytes: Promise<Buffer>) => void) | undefined;
    let verifying: Promise<SignatureVerdict> | undefined;
    if (!decision.unsigned) {
      const manifestBytes = new Promise<Buffer>((resolve) => (supplyManifest = resolve));
      // A verifier that stopped before reading them leaves them unobserved: their failure is step 5's, said there.
      manifestBytes.catch(() => {});
      verifying = this.verify(ref, canonical, req, decision, registry, manifestBytes);
      verifying.catch(() => {}); // observed at step 8; a failure of steps 5–7 wins
    }
    // 5. Manifest by digest (mirrors first), bytes hashed against the digest by the client. It may
    //    be a multi-architecture index (docs/multi-arch.md).
    const manifestP = registry.getManifest(repo, ref.digest, [MEDIA_TYPE_OCI_MANIFEST, MEDIA_TYPE_OCI_INDEX], { ...fetchOpts, maxBytes: MAX_MANIFEST_BYTES });
    supplyManifest?.(manifestP.then((m) => m.bytes));
    const top = await manifestP;
    // 5a. An index: the artifact manifest for this node's platform, judged from here on like a
    //     manifest named directly. Its content verdicts are kept under its own digest.
    let manifest = top;
    // Decoded once for the readings below (is it an index, its kind, the artifact checks).
    let document = new ManifestDocument(top.bytes, `manifest ${ref.digest}`);
    let chosen: PlatformDescriptor | undefined;
    if (isImageIndex(document)) {
      chosen = await selectFromIndex(this.deps.store, this.platform, ref.digest, canonical, req.kind, top.bytes);
      manifest = await registry.getManifest(repo, chosen.digest, [MEDIA_TYPE_OCI_MANIFEST], { ...fetchOpts, maxBytes: MAX_MANIFEST_BYTES });
      // The bytes hash to the digest the index pins, so what is wrong with them is the index's
      // fault, and the verdict is the index's: the entry may be a valid index of its own, and a
      // verdict on its digest would refuse it in every scope.
      document = new ManifestDocument(manifest.bytes, `manifest ${chosen.digest}`);
      const size = manifest.bytes.length;
      const indexFault = size !== chosen.size
        ? new SpokeError('SecurityProfileInvalid', `${ref.digest}: manifest ${chosen.digest} is ${size} bytes, the index says ${chosen.size}`, { digest: ref.digest, expected: chosen.size, actual: size }, { reason: 'SIZE_LIMIT' })
        : isImageIndex(document)
          ? new SpokeError('SecurityProfileInvalid', `${ref.digest}: the ${formatPlatform(chosen.platform)} entry ${chosen.digest} is an image index, not an image manifest`, { digest: ref.digest }, { reason: 'MANIFEST_INVALID' })
          : undefined;
      if (indexFault) {
        await this.deps.store.recordInvalid(ref.digest, indexFault.message);
        throw indexFault;
      }
    }
    const contentDigest = chosen?.digest ?? ref.digest;
    // Only what the content alone decides is remembered as a verdict on the digest: the kind asked
    // for and the size limit belong to this request and this policy, so they are judged apart.
    const declared = declaredKind(document);
    if (declared !== undefined && declared !== req.kind) throw kindMismatch(canonical, req.kind, declared);
    const artifact = await permanent(this.deps.store, contentDigest, () => checkArtifactManifest(document, contentDigest, declared ?? req.kind, Number.MAX_SAFE_INTEGER));
    checkDescriptorSizes(canonical, artifact, limit);

    const recordInput: RecordInput = {
      digest: ref.digest,
      manifestBytes: top.bytes,
      ...(chosen ? { platform: { ...chosen.platform, digest: chosen.digest, manifestBytes: manifest.bytes } } : {}),
      layerDigest: artifact.layer.digest,
      kind: req.kind,
      reference: canonical,
      rule: decision.rule.id,
      servedBy: manifest.servedBy,
      nodeCredentials: req.credential === undefined,
    };
    // The blob is held from its download until it is stored: its declared size comes out of the
    // node's budget for that (byte-budget.ts), waited for in turn while other pulls hold it.
    const blobSize = artifact.layer.size;
    // Each namespace holds at most half the budget (byte-budget.ts); the node's own pulls are one owner.
    const budgetOwner = req.namespace ?? '';
    if (!this.blobBudget.tryTake(blobSize, budgetOwner)) {
      this.logger.log('info', 'pull waits for memory: other pulls hold the blob bytes the node allows at once', { reference: canonical, bytes: blobSize, held: this.blobBudget.inUse, limit: this.blobBudget.limit });
      await this.blobBudget.take(blobSize, req.signal, budgetOwner);
    }
    // An unsigned pull's record is complete now: it is staged while the blob is on its way
    // (src/pull/record-ahead.ts). A signed pull's waits for its verdict.
    const ahead = verifying ? undefined : new RecordAhead(this.deps.store, recordInput, artifact.layer.size);
    let record: ProvenanceRecord;
    let signer: SignatureVerdict | undefined;
    try {
      // 6. Blob: streamed with a hard cap at its declared size, hashed while streaming (the client
      //    refuses a size or digest that differs); archives refused.
      const blob = await registry.getBlob(repo, artifact.layer.digest, { ...fetchOpts, maxBytes: limit, expectedSize: artifact.layer.size, ...(ahead ? { onDispatched: ahead.afterDispatch } : {}) });
      await permanent(this.deps.store, contentDigest, () => refuseArchive(blob.bytes, artifact.layer.digest));

      // 7. Validate the profile itself (kind rules); a failure is remembered for this digest. A
      //    verdict on the content alone, like the checks above, so it is judged while the
      //    signature's requests (a longer chain than the artifact's) are still in flight.
      await permanent(this.deps.store, contentDigest, () => validateArtifactBytes(req.kind, blob.bytes));
      this.noteJudged(`${req.kind}\0${artifact.layer.digest}`);

      // 8. Signature, as the rule requires: nothing is stored without it. Its chain of requests is
      //    the longer one, so the blob is written and flushed under a temp name meanwhile, which
      //    nothing reads; a refusal removes it.
      const early = verifying ? await this.deps.store.stageBlob(artifact.layer.digest, blob.bytes) : undefined;
      try {
        signer = await verifying;
      } catch (e) {
        await early?.discard();
        throw e;
      }

      // 9. Store: temp → fsync → rename; provenance with the rule and signer.
      ({ record } = await this.deps.store.ingest(
        { ...recordInput, layerBytes: blob.bytes, ...(signer ? { verdict: { policyHash: policy.hash, ...signer } } : {}) },
        { ...(early ? { blob: early } : {}), ...(ahead ? { record: await ahead.take() } : {}) },
        req.signal,
      ));
    } finally {
      this.blobBudget.give(blobSize, budgetOwner);
      await ahead?.discard();
    }
    // A record already there is kept as it was: one of another platform's profile (a store shared
    // with such a node, whose fetch this credential could not reuse) is refused, as a cached pull is.
    // The record of a digest holds the manifest that hashes to it: the one just read, unless an
    // index chose it (another platform's record may hold another entry).
    checkStored(canonical, record, req.kind, limit, this.platform, chosen === undefined ? artifact.config.size : undefined);
    this.access.remember(ref.digest, credentialIdentity(req.credential));
    // 10. Response: resolvedRef keeps the requested registry/repository whoever served it.
    return this.result(ref, canonical, record, decision, false, signer, manifest.servedBy);
  }

  private verify(ref: Reference, canonical: string, req: FlightRequest, decision: Decision & { allowed: true }, registry: RegistryClient, manifestBytes: Buffer | Promise<Buffer>): Promise<SignatureVerdict> {
    return verifySignature(this.deps, this.logger, ref, canonical, req, decision, registry, manifestBytes);
  }
}

