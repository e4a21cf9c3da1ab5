// Turning a CRI SecurityProfile of type OCI into a Localhost profile the runtime can load
// (docs/shim.md, KEP-6061 §2, §4):
//   oci_ref → digest → the stored artifact (never pulled: FailedPrecondition, reason NOT_PULLED;
//   of another kind: KIND_MISMATCH) → effective = intersect(node baseline, pod base profile, artifact) → written
//   content-addressed and atomically to <seccompRoot>/spoke/<sha256 hex>.json → Localhost ref.
// Base profiles, the second merge input: RuntimeDefault is the runtime's real default profile
// (runtime-default.ts: read live from the running runtime, or the pinned file); when it is not
// known the call fails Unavailable (reason RUNTIME_DEFAULT_UNAVAILABLE, transient: the kubelet
// retries) and the base is never dropped. Localhost: base-profile.ts.
// The node policy is decided again here, for the pod's namespace and under the current policy
// (a digest pulled for one namespace, or before a deny rule or a signer revocation, serves no
// pod the policy now refuses); a rule that requires signatures needs a verdict recorded under
// the current policy, else the pull pipeline verifies again (fail closed).
// AppArmor (docs/apparmor.md): the same lookup; baseline ∩ artifact rendered under a generated name and
// checked by apparmor_parser (prepareAppArmor); the in-use tracker loads it.

import { join } from 'node:path';
import { sha256Hex, type Digest } from '../core/digest.js';
import { SpokeError, asSpokeError } from '../core/errors.js';
import { EFFECTIVE_SECCOMP_DIR, type ProfileKind } from '../core/constants.js';
import { formatReference, parseReference, type Reference } from '../core/reference.js';
import { decide } from '../policy/decide.js';
import { checkStored } from '../pull/checks.js';
import { nodePlatform } from '../pull/platform.js';
import type { Policy, RuleMode } from '../policy/types.js';
import { CheckedFiles } from '../store/checked-files.js';
import { verdictUnder, type EffectiveBase, type ProvenanceRecord } from '../store/store.js';
import { baseTypeOf, readLocalhostBase } from './base-profile.js';
import type { PreparedAppArmor, ShimDeps } from './deps.js';
import { BASE_LOCALHOST, BASE_RUNTIME_DEFAULT, PROFILE_OCI, type SecurityProfileMsg } from './messages.js';

export interface Applied {
  /** Absolute path of the effective profile (the new localhost_ref). */
  path: string;
  /** The artifact digest (what gc must keep while the pod runs). */
  digest: Digest;
  reference: string;
  effectiveSha: string;
  constrained: number;
  /** The pod's base profile in the merge (recorded for `spoke ps --explain`). */
  base?: EffectiveBase | undefined;
  /** The policy rule's mode (apply() always sets it): `audit` = the artifact's own denials are logged, not enforced. */
  mode?: RuleMode;
}

export interface AppArmorPrepared {
  /** The generated profile name (`spoke-<hex>`): the new Localhost ref. */
  name: string;
  /** The policy text to load. */
  text: string;
  /** The identity of the parser the name was made for: only that parser loads it (AppArmorOps.load). */
  parser: string;
  digest: Digest;
  reference: string;
}

export interface ApplyContext {
  /** For logs: "sandbox <ns>/<name>" or "container <name>". */
  who: string;
  /** The pod's namespace (sandbox config metadata), for the node policy; absent: none known. */
  namespace?: string;
  /** Fires when the call has gone (its client left, or its deadline passed). */
  gone?: AbortSignal;
}

interface Merged {
  bytes: Buffer;
  sha: string;
  constrained: number;
  rules: string[];
}

/** An OCI profile a create may use: the artifact's reference, profile blob and the rule that allows it. */
interface StoredProfile {
  ref: Reference;
  canonical: string;
  layerDigest: Digest;
  rule: string;
  mode: RuleMode;
}

const MAX_MERGES_PER_BASELINE = 512;
const MAX_FOUND_PER_POLICY = 1024;
/** Bytes of merged profiles kept per baseline: a 1 MiB artifact can merge to 1.6 MB. */
const MAX_MERGE_BYTES_PER_BASELINE = 32 * 1024 * 1024;

/** Merges of one baseline, oldest first, at most MAX_MERGES_PER_BASELINE of them and `maxBytes` in all. */
class MergeCache {
  private readonly entries = new Map<string, Merged>();
  private bytes = 0;

  constructor(private readonly maxBytes: number) {}

  get(key: string): Merged | undefined {
    return this.entries.get(key);
  }

  set(key: string, merged: Merged): void {
    // Two creates may make one merge at once: the second replaces the first, counted once.
    const replaced = this.entries.get(key);
    if (replaced !== undefined) {
      this.entries.delete(key);
      this.bytes -= replaced.bytes.length;
    }
    this.entries.set(key, merged);
    this.bytes += merged.bytes.length;
    for (const [oldest, m] of this.entries) {
      if (this.entries.size <= MAX_MERGES_PER_BASELINE && this.bytes <= this.maxBytes) break;
      if (oldest === key) break; // the merge just made is kept, whatever its size
      this.entries.delete(oldest);
      this.bytes -= m.bytes.length;
    }
  }
}

export interface ApplierLimits {
  /** Bytes of merged profiles kept per baseline; default 32 MiB. */
  mergeCacheBytes?: number;
}

/** Times one create decides again when the policy changes under it, at its signature check or before it is forwarded (edited.ts); then Unavailable: the kubelet retries. */
export const MAX_POLICY_CHANGES_PER_CREATE = 3;

export class ProfileApplier<P> {
  /** Effective files, checked by content once and then by their stamp (saves a read per create). */
  private readonly effective = new CheckedFiles();
  /**
   * Merges already computed, per baseline object (a reloaded baseline is a new object, so its
   * merges start afresh), keyed by artifact digest and base. intersect() is pure and its inputs
   * are content-addressed (the artifact by digest, a Localhost base and the runtime default by
   * the sha256 of their bytes, so a runtime default read anew with other content is a new key),
   * so a hit is exactly the merge that would be computed; every create of a pod that uses a
   * profile already applied skips decode, merge and constraint formatting.
   */
  private readonly merges = new WeakMap<object, MergeCache>();
  /**
   * What stored() found, per policy object (a reloaded policy is a new object) and (kind,
   * namespace, oci_ref): every input of its checks is the policy, those three and the record, so
   * it holds while the store returns the same record object, which it does while the record's
   * file is unchanged (a verdict, a reference or a removal changes it). Refusals are not kept.
   */
  private readonly found = new WeakMap<Policy, Map<string, { record: ProvenanceRecord; stored: StoredProfile }>>();

  constructor(
    private readonly deps: ShimDeps<P>,
    private readonly limits: ApplierLimits = {},
  ) {}

  get spokeDir(): string {
    return join(this.deps.seccompRoot, EFFECTIVE_SECCOMP_DIR);
  }

  /**
   * The stored artifact an OCI SecurityProfile names: the node policy's decision for it now (the
   * pod's namespace, the current policy), the record present with this reference (never pulled:
   * FailedPrecondition "has not been pulled"), of `kind`, this node's platform and within the
   * current size limit (checkStored, as a pull checks it), a signature verdict valid under the
   * current policy when the rule requires one. The caller reads (or checks) the profile blob,
   * `layerDigest`, through the store, which re-hashes it or checks its file is unchanged since.
   */
  private async stored(profile: SecurityProfileMsg, kind: ProfileKind, ctx: ApplyContext, attempt = 1): Promise<StoredProfile> {
    if (profile.profileType !== PROFILE_OCI) throw new SpokeError('Internal', 'apply called for a non-OCI profile', {}, { reason: 'INVARIANT' });
    if (profile.ociRef === '') throw new SpokeError('InvalidArgument', `${ctx.who}: ${kind} profile of type OCI without oci_ref`, {}, { reason: 'REFERENCE_INVALID' });
    const policy = await this.deps.policy();
    const { store } = this.deps;
    let found = this.found.get(policy);
    if (found === undefined) this.found.set(policy, (found = new Map()));
    // Unambiguous whatever the strings hold (a namespace is the client's bytes).
    const foundKey = JSON.stringify([kind, ctx.namespace ?? null, profile.ociRef]);
    const earlier = found.get(foundKey);
    if (earlier !== undefined && (await store.getRecord(earlier.stored.ref.digest)) === earlier.record) return earlier.stored;
    const ref = parseReference(profile.ociRef);
    const canonical = formatReference(ref);
    const decision = decide(policy, ref, kind, ctx.namespace);
    if (!decision.allowed) {
      this.deps.logger.log('warn', 'OCI profile refused by the node policy', { who: ctx.who, reference: canonical, kind, namespace: ctx.namespace, rule: decision.rule?.id, reason: decision.reason });
      throw new SpokeError('PermissionDenied', `${ctx.who}: ${canonical}: ${decision.reason}`, { reference: canonical, digest: ref.digest, rule: decision.rule?.id }, { reason: 'POLICY_DENIED' });
    }
    const record = await store.getRecord(ref.digest);
    if (!record || !(record.references.some((r) => sameReference(r, canonical)) || this.deps.pipeline.pulledIn?.(ctx.namespace, canonical) === true)) {
      throw new SpokeError('FailedPrecondition', `security profile ${canonical} has not been pulled`, { reference: canonical, digest: ref.digest }, { reason: 'NOT_PULLED' });
    }
    checkStored(canonical, record, kind, policy.limits.maxArtifactBytes, this.deps.platform ?? nodePlatform());
    if (!decision.unsigned) {
      // The verdict must be one recorded under this policy (its hash covers the keys) by a signer
      // the rule names now, whose key is at hand (as a cached pull asks, src/pull.ts); otherwise
      // the pipeline verifies again as the node and refuses what no current signer signed: the
      // stored manifest, no blob download, when the node's credentials fetched it; fetched again
      // when only a pod's did (KEP-2535 reuse, src/pull/access.ts), which a registry the node may
      // not read refuses (docs/shim.md).
      if (verdictUnder(record, policy.hash, decision.signedBy) === undefined) {
        await this.deps.pipeline.pull({ reference: canonical, kind, ...(ctx.namespace !== undefined ? { namespace: ctx.namespace } : {}) });
        // The verification took registry round trips and ran under the policy of its own time: a
        // policy changed meanwhile (a rule flipped from audit to enforce) decides this create
        // anew, so the rule's mode and the verdict always come from one policy. The verdict must
        // be on record under this create's policy too: one changed and changed back meanwhile has
        // this hash again, while the pull ran under the other (which may have wanted no signature).
        const verified = await store.getRecord(ref.digest);
        if ((await this.deps.policy()).hash !== policy.hash || verified === undefined || verdictUnder(verified, policy.hash, decision.signedBy) === undefined) {
          if (attempt >= MAX_POLICY_CHANGES_PER_CREATE) {
            throw new SpokeError('Unavailable', `${ctx.who}: ${canonical}: the node policy changed ${attempt} times while its signature was verified; try again`, { reference: canonical, digest: ref.digest }, { reason: 'POLICY_CHANGED' });
          }
          return this.stored(profile, kind, ctx, attempt + 1);
        }
        // Verified again just now: the record it annotated is read (and remembered) next time.
        return { ref, canonical, layerDigest: record.layerDigest, rule: decision.rule.id, mode: decision.mode };
      }
    }
    const stored: StoredProfile = { ref, canonical, layerDigest: record.layerDigest, rule: decision.rule.id, mode: decision.mode };
    if (found.size >= MAX_FOUND_PER_POLICY) found.clear();
    found.set(foundKey, { record, stored });
    return stored;
  }

  async apply(profile: SecurityProfileMsg, ctx: ApplyContext): Promise<Applied> {
    const { seccomp, logger } = this.deps;
    const { ref, canonical, layerDigest, rule, mode } = await this.stored(profile, 'seccomp', ctx);
    const baseType = baseTypeOf(profile, ctx.who);
    let base: { profile: P; sha: string } | undefined;
    if (baseType === BASE_LOCALHOST) base = await readLocalhostBase(profile.base!.localhostRef, ctx.who, this.deps.seccompRoot, this.deps.seccomp);
    else if (baseType === BASE_RUNTIME_DEFAULT) base = await this.runtimeDefault(ctx);

    const baseline = this.deps.baseline();
    let cache = this.merges.get(baseline as object);
    if (!cache) this.merges.set(baseline as object, (cache = new MergeCache(this.limits.mergeCacheBytes ?? MAX_MERGE_BYTES_PER_BASELINE)));
    // The mode is part of the key: a rule flipped to enforce gets the enforcing merge at the next create.
    const key = `${ref.digest}|${base?.sha ?? '-'}|${mode}`;
    let merged = cache.get(key);
    const made = merged === undefined;
    // A merge already made is reused only while the stored profile is intact: a corrupt or
    // missing blob fails every create that names it (fail closed).
    if (merged) await this.deps.store.checkBlob(layerDigest);
    else {
      const bytes = await this.deps.store.readBlob(layerDigest, { verify: true });
      let result: { bytes: Buffer; constrained: readonly unknown[] };
      try {
        result = (mode === 'audit' ? seccomp.audit : seccomp.intersect)(baseline, base?.profile, seccomp.decodeArtifact(bytes));
      } catch (e) {
        const err = asSpokeError(e, 'SecurityProfileInvalid');
        // The path names the member at fault when the artifact itself is (its decode or rules).
        const at = err.context.path === undefined ? {} : { path: err.context.path };
        throw new SpokeError(err.code, `${canonical}: cannot merge with the node baseline: ${err.message}`, { reference: canonical, digest: ref.digest, ...at }, { cause: e, reason: err.reason });
      }
      merged = { bytes: result.bytes, sha: sha256Hex(result.bytes), constrained: result.constrained.length, rules: result.constrained.slice(0, 50).map((c) => seccomp.formatConstraint(c)) };
      cache.set(key, merged);
    }
    const sha = merged.sha;
    const path = join(this.spokeDir, `${sha}.json`);
    await this.effective.ensure(path, merged.bytes, join(this.spokeDir, '.tmp'), 0o644);
    if (merged.constrained > 0) {
      this.deps.metrics.mergeConstrained(merged.constrained);
      // What a merge constrained is the same at every create that reuses it: logged, with the
      // rules, when the merge is made; each create's line below says how many (docs/shim.md).
      if (made) {
        logger.log('warn', 'SecurityProfileMergeConstrained', {
          who: ctx.who,
          reference: canonical,
          digest: ref.digest,
          baseProfile: baseType === BASE_LOCALHOST ? profile.base!.localhostRef : baseType === BASE_RUNTIME_DEFAULT ? 'RuntimeDefault' : undefined,
          constrained: merged.constrained,
          rules: merged.rules,
          effective: path,
        });
      }
    }
    logger.log('info', 'OCI seccomp profile applied', { who: ctx.who, reference: canonical, digest: ref.digest, rule, mode, effective: path, constrained: merged.constrained });
    // As merged: an empty base_profile (no type, no path) is no base (baseTypeOf).
    const baseUsed: EffectiveBase | undefined =
      baseType === BASE_LOCALHOST && base ? { type: 'Localhost', path: profile.base!.localhostRef, sha256: base.sha } : baseType === BASE_RUNTIME_DEFAULT ? { type: 'RuntimeDefault' } : undefined;
    return { path, digest: ref.digest, reference: canonical, effectiveSha: sha, constrained: merged.constrained, base: baseUsed, mode };
  }

  /** Gc removed effective file `<sha>.json`: the next create that needs it writes it again. */
  forgetEffective(sha: string): void {
    this.effective.forget(join(this.spokeDir, `${sha}.json`));
  }

  /** The runtime default as the base (header): fails Unavailable, never dropped, when unknown. */
  private async runtimeDefault(ctx: ApplyContext): Promise<{ profile: P; sha: string }> {
    const source = this.deps.runtimeDefault;
    try {
      if (source === undefined) throw new SpokeError('Unavailable', 'this shim has no source for the runtime default profile', {}, { reason: 'RUNTIME_DEFAULT_UNAVAILABLE' });
      return await source.get();
    } catch (e) {
      const err = asSpokeError(e, 'Unavailable');
      throw new SpokeError('Unavailable', `${ctx.who}: cannot honour the RuntimeDefault base profile: ${err.message}`, {}, { reason: 'RUNTIME_DEFAULT_UNAVAILABLE', cause: e });
    }
  }

  /**
   * An AppArmor SecurityProfile of type OCI → the effective profile (node AppArmor baseline ∩
   * artifact), its generated name and checked policy text. Loading is the caller's (the in-use
   * tracker loads under its lock, so a concurrent unload cannot remove a profile being claimed).
   * Fails first, before any store access, where the kernel has no AppArmor: an AppArmor profile
   * is never silently dropped. A base_profile may only be RuntimeDefault (or unspecified); it
   * adds nothing to the structured merge: the rule classes a runtime's default AppArmor profile
   * adds (mount, ptrace, signal, deny rules under /proc and /sys) come from the render template
   * (src/profiles/apparmor/render.ts). A Localhost AppArmor base is policy text spoke cannot
   * intersect and is refused.
   */
  async prepareAppArmor(profile: SecurityProfileMsg, ctx: ApplyContext): Promise<AppArmorPrepared> {
    const ops = this.deps.appArmor;
    if (ops === undefined || !(await ops.enabled())) {
      throw new SpokeError(
        'FailedPrecondition',
        `${ctx.who}: AppArmor is not enabled on this node; refusing the OCI AppArmor profile ${profile.ociRef.slice(0, 600)}`,
        { reference: profile.ociRef.slice(0, 600) },
        { reason: 'APPARMOR_UNAVAILABLE' },
      );
    }
    const baseType = baseTypeOf(profile, ctx.who);
    if (baseType !== undefined && baseType !== BASE_RUNTIME_DEFAULT) {
      throw new SpokeError('InvalidArgument', `${ctx.who}: an AppArmor profile of type OCI takes only a RuntimeDefault base_profile`, {}, { reason: 'BASE_PROFILE' });
    }
    const { ref, canonical, layerDigest, rule } = await this.stored(profile, 'apparmor', ctx);
    const bytes = await this.deps.store.readBlob(layerDigest, { verify: true });
    let prepared: PreparedAppArmor;
    try {
      prepared = await ops.prepare(bytes, ctx.gone, ctx.namespace);
    } catch (e) {
      const err = asSpokeError(e, 'SecurityProfileInvalid');
      throw new SpokeError(err.code, `${canonical}: cannot merge with the node AppArmor baseline: ${err.message}`, { reference: canonical, digest: ref.digest }, { cause: e, reason: err.reason });
    }
    if (prepared.constrained.length > 0) {
      this.deps.metrics.mergeConstrained(prepared.constrained.length);
      this.deps.logger.log('warn', 'SecurityProfileMergeConstrained', {
        who: ctx.who,
        kind: 'apparmor',
        reference: canonical,
        digest: ref.digest,
        constrained: prepared.constrained.length,
        rules: prepared.constrained.slice(0, 50),
      });
    }
    this.deps.logger.log('info', 'OCI AppArmor profile prepared', { who: ctx.who, reference: canonical, digest: ref.digest, rule, name: prepared.name });
    return { name: prepared.name, text: prepared.text, parser: prepared.parser, digest: ref.digest, reference: canonical };
  }
}

function sameReference(stored: string, canonical: string): boolean {
  if (stored === canonical) return true;
  try {
    return formatReference(parseReference(stored)) === canonical;
  } catch {
    return false;
  }
}
