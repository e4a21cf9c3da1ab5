// Turning a CRI SecurityProfile of type OCI into a Localhost profile the runtime can load
// (DESIGN §4–5, KEP-6061 §2, §4):
//   oci_ref → digest → the stored artifact (never pulled: FailedPrecondition "has not been
//   pulled") → effective = intersect(node baseline, pod base profile, artifact) → written
//   content-addressed and atomically to <seccompRoot>/spoke/<sha256 hex>.json → Localhost ref.
// Base profiles: RuntimeDefault adds nothing: the node baseline is required to be at least as
// strict as the runtime's default profile (the shipped baseline is derived from it), so
// baseline ∩ RuntimeDefault = baseline. Localhost: the file is read (≤ 1 MiB), decoded and
// validated at ValidateStrict level, then layered in as the second input.
// AppArmor (issue 9): the same lookup; baseline ∩ artifact rendered under a generated name and
// checked by apparmor_parser (prepareAppArmor); the in-use tracker loads it.

import { readFile, stat } from 'node:fs/promises';
import { isAbsolute, join, normalize } from 'node:path';
import { sha256Hex, type Digest } from '../core/digest.js';
import { SpokeError, asSpokeError } from '../core/errors.js';
import { DEFAULT_MAX_ARTIFACT_BYTES } from '../core/limits.js';
import type { ProfileKind } from '../core/constants.js';
import { formatReference, parseReference, type Reference } from '../core/reference.js';
import { writeFileAtomic } from '../store/fsutil.js';
import type { EffectiveBase } from '../store/store.js';
import type { ShimDeps } from './deps.js';
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
}

export interface AppArmorPrepared {
  /** The generated profile name (`spoke-<hex>`): the new Localhost ref. */
  name: string;
  /** The policy text to load. */
  text: string;
  digest: Digest;
  reference: string;
}

export interface ApplyContext {
  /** For logs: "sandbox <ns>/<name>" or "container <name>". */
  who: string;
}

interface Merged {
  bytes: Buffer;
  sha: string;
  constrained: number;
  rules: string[];
}

const MAX_MERGES_PER_BASELINE = 512;

export class ProfileApplier<P> {
  /** Effective files known to exist: sha → path (saves a stat per create). */
  private readonly written = new Set<string>();
  /**
   * Merges already computed, per baseline object (a reloaded baseline is a new object, so its
   * merges start afresh), keyed by artifact digest and base. intersect() is pure and its inputs
   * are content-addressed (the artifact by digest, a Localhost base by the sha256 of its bytes),
   * so a hit is exactly the merge that would be computed; every create of a pod that uses a
   * profile already applied skips decode, merge and constraint formatting.
   */
  private readonly merges = new WeakMap<object, Map<string, Merged>>();

  constructor(private readonly deps: ShimDeps<P>) {}

  get spokeDir(): string {
    return join(this.deps.seccompRoot, 'spoke');
  }

  /**
   * The stored artifact an OCI SecurityProfile names: the reference parsed, the record present
   * with this reference (never pulled: FailedPrecondition "has not been pulled") and of `kind`,
   * the bytes re-hashed on read.
   */
  private async stored(profile: SecurityProfileMsg, kind: ProfileKind, ctx: ApplyContext): Promise<{ ref: Reference; canonical: string; bytes: Buffer; rule: string }> {
    if (profile.profileType !== PROFILE_OCI) throw new SpokeError('Internal', 'apply called for a non-OCI profile');
    if (profile.ociRef === '') throw new SpokeError('InvalidArgument', `${ctx.who}: ${kind} profile of type OCI without oci_ref`);
    const ref = parseReference(profile.ociRef);
    const canonical = formatReference(ref);
    const { store } = this.deps;
    const record = await store.getRecord(ref.digest);
    if (!record || !record.references.some((r) => sameReference(r, canonical))) {
      throw new SpokeError('FailedPrecondition', `security profile ${canonical} has not been pulled`, { reference: canonical, digest: ref.digest });
    }
    if (record.kind !== kind) {
      throw new SpokeError('SecurityProfileInvalid', `${canonical} is a ${record.kind} profile, not ${kind}`, { reference: canonical, digest: ref.digest });
    }
    const { bytes } = await store.readProfile(ref.digest, { verify: true });
    return { ref, canonical, bytes, rule: record.rule };
  }

  async apply(profile: SecurityProfileMsg, ctx: ApplyContext): Promise<Applied> {
    const { seccomp, logger } = this.deps;
    const { ref, canonical, bytes, rule } = await this.stored(profile, 'seccomp', ctx);
    let base: { profile: P; sha: string } | undefined;
    if (profile.base !== undefined) {
      if (profile.base.type === BASE_LOCALHOST) base = await this.readBase(profile.base.localhostRef, ctx);
      else if (profile.base.type !== BASE_RUNTIME_DEFAULT) {
        throw new SpokeError('InvalidArgument', `${ctx.who}: base_profile type ${profile.base.type} is not RuntimeDefault or Localhost`);
      }
    }

    const baseline = this.deps.baseline();
    let cache = this.merges.get(baseline as object);
    if (!cache) this.merges.set(baseline as object, (cache = new Map()));
    const key = `${ref.digest}|${base?.sha ?? '-'}`;
    let merged = cache.get(key);
    if (!merged) {
      let result: { bytes: Buffer; constrained: readonly unknown[] };
      try {
        result = seccomp.intersect(baseline, base?.profile, seccomp.decode(bytes));
      } catch (e) {
        const err = asSpokeError(e, 'SecurityProfileInvalid');
        throw new SpokeError(err.code, `${canonical}: cannot merge with the node baseline: ${err.message}`, { reference: canonical, digest: ref.digest }, { cause: e });
      }
      merged = { bytes: result.bytes, sha: sha256Hex(result.bytes), constrained: result.constrained.length, rules: result.constrained.slice(0, 50).map((c) => seccomp.formatConstraint(c)) };
      if (cache.size >= MAX_MERGES_PER_BASELINE) cache.delete(cache.keys().next().value!);
      cache.set(key, merged);
    }
    const sha = merged.sha;
    const path = join(this.spokeDir, `${sha}.json`);
    if (!this.written.has(sha)) {
      let present = false;
      try {
        present = (await stat(path)).size === merged.bytes.length;
      } catch {
        present = false;
      }
      if (!present) await writeFileAtomic(path, merged.bytes, join(this.spokeDir, '.tmp'), { mode: 0o644 });
      this.written.add(sha);
    }
    if (merged.constrained > 0) {
      this.deps.metrics.mergeConstrained(merged.constrained);
      logger.log('warn', 'SecurityProfileMergeConstrained', {
        who: ctx.who,
        reference: canonical,
        digest: ref.digest,
        baseProfile: profile.base?.type === BASE_LOCALHOST ? profile.base.localhostRef : profile.base ? 'RuntimeDefault' : undefined,
        constrained: merged.constrained,
        rules: merged.rules,
      });
    }
    logger.log('info', 'OCI seccomp profile applied', { who: ctx.who, reference: canonical, digest: ref.digest, rule, effective: path });
    const baseUsed: EffectiveBase | undefined =
      profile.base?.type === BASE_LOCALHOST && base ? { type: 'Localhost', path: profile.base.localhostRef, sha256: base.sha } : profile.base ? { type: 'RuntimeDefault' } : undefined;
    return { path, digest: ref.digest, reference: canonical, effectiveSha: sha, constrained: merged.constrained, base: baseUsed };
  }

  /** Gc removed effective file `<sha>.json`: the next create that needs it writes it again. */
  forgetEffective(sha: string): void {
    this.written.delete(sha);
  }

  /**
   * An AppArmor SecurityProfile of type OCI → the effective profile (node AppArmor baseline ∩
   * artifact), its generated name and checked policy text. Loading is the caller's (the in-use
   * tracker loads under its lock, so a concurrent unload cannot remove a profile being claimed).
   * Fails first, before any store access, where the kernel has no AppArmor: an AppArmor profile
   * is never silently dropped. A base_profile may only be RuntimeDefault (it adds nothing: the
   * node baseline is at least as strict as the runtime default); a Localhost AppArmor base is
   * policy text spoke cannot intersect and is refused.
   */
  async prepareAppArmor(profile: SecurityProfileMsg, ctx: ApplyContext): Promise<AppArmorPrepared> {
    const ops = this.deps.appArmor;
    if (ops === undefined || !(await ops.enabled())) {
      throw new SpokeError('FailedPrecondition', `${ctx.who}: AppArmor is not enabled on this node; refusing the OCI AppArmor profile ${profile.ociRef.slice(0, 600)}`, {
        reference: profile.ociRef.slice(0, 600),
      });
    }
    if (profile.base !== undefined && profile.base.type !== BASE_RUNTIME_DEFAULT) {
      throw new SpokeError('InvalidArgument', `${ctx.who}: an AppArmor profile of type OCI takes only a RuntimeDefault base_profile`);
    }
    const { ref, canonical, bytes, rule } = await this.stored(profile, 'apparmor', ctx);
    let prepared: { name: string; text: string; constrained: readonly string[] };
    try {
      prepared = await ops.prepare(bytes);
    } catch (e) {
      const err = asSpokeError(e, 'SecurityProfileInvalid');
      throw new SpokeError(err.code, `${canonical}: cannot merge with the node AppArmor baseline: ${err.message}`, { reference: canonical, digest: ref.digest }, { cause: e });
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
    return { name: prepared.name, text: prepared.text, digest: ref.digest, reference: canonical };
  }

  private async readBase(localhostRef: string, ctx: ApplyContext): Promise<{ profile: P; sha: string }> {
    if (!isAbsolute(localhostRef) || normalize(localhostRef) !== localhostRef) {
      throw new SpokeError('InvalidArgument', `${ctx.who}: base_profile localhost_ref must be an absolute, normalised path`, { path: localhostRef });
    }
    let bytes: Buffer;
    try {
      const st = await stat(localhostRef);
      if (!st.isFile()) throw new SpokeError('FailedPrecondition', `base profile ${localhostRef} is not a regular file`, { path: localhostRef });
      if (st.size > DEFAULT_MAX_ARTIFACT_BYTES) {
        throw new SpokeError('SecurityProfileInvalid', `base profile ${localhostRef} is larger than ${DEFAULT_MAX_ARTIFACT_BYTES} bytes`, { path: localhostRef });
      }
      bytes = await readFile(localhostRef);
    } catch (e) {
      if (e instanceof SpokeError) throw e;
      throw new SpokeError('FailedPrecondition', `cannot read base profile ${localhostRef}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { path: localhostRef });
    }
    try {
      const p = this.deps.seccomp.decode(bytes);
      this.deps.seccomp.validateBase(p);
      return { profile: p, sha: sha256Hex(bytes) };
    } catch (e) {
      const err = asSpokeError(e, 'SecurityProfileInvalid');
      throw new SpokeError('SecurityProfileInvalid', `base profile ${localhostRef}: ${err.message}`, { path: localhostRef }, { cause: e });
    }
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
