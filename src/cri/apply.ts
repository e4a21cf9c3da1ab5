// Turning a CRI SecurityProfile of type OCI into a Localhost profile the runtime can load
// (DESIGN §4–5, KEP-6061 §2, §4):
//   oci_ref → digest → the stored artifact (never pulled: FailedPrecondition "has not been
//   pulled") → effective = intersect(node baseline, pod base profile, artifact) → written
//   content-addressed and atomically to <seccompRoot>/spoke/<sha256 hex>.json → Localhost ref.
// Base profiles: RuntimeDefault adds nothing: the node baseline is required to be at least as
// strict as the runtime's default profile (the shipped baseline is derived from it), so
// baseline ∩ RuntimeDefault = baseline. Localhost: the file is read (≤ 1 MiB), decoded and
// validated at ValidateStrict level, then layered in as the second input.

import { readFile, stat } from 'node:fs/promises';
import { isAbsolute, join, normalize } from 'node:path';
import { sha256Hex, type Digest } from '../core/digest.js';
import { SpokeError, asSpokeError } from '../core/errors.js';
import { DEFAULT_MAX_ARTIFACT_BYTES } from '../core/limits.js';
import { formatReference, parseReference } from '../core/reference.js';
import { writeFileAtomic } from '../store/fsutil.js';
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
}

export interface ApplyContext {
  /** For logs: "sandbox <ns>/<name>" or "container <name>". */
  who: string;
}

export class ProfileApplier<P> {
  /** Effective files known to exist: sha → path (saves a stat per create). */
  private readonly written = new Set<string>();

  constructor(private readonly deps: ShimDeps<P>) {}

  get spokeDir(): string {
    return join(this.deps.seccompRoot, 'spoke');
  }

  async apply(profile: SecurityProfileMsg, ctx: ApplyContext): Promise<Applied> {
    if (profile.profileType !== PROFILE_OCI) throw new SpokeError('Internal', 'apply called for a non-OCI profile');
    if (profile.ociRef === '') throw new SpokeError('InvalidArgument', `${ctx.who}: seccomp profile of type OCI without oci_ref`);
    const ref = parseReference(profile.ociRef);
    const canonical = formatReference(ref);
    const { store, seccomp, logger } = this.deps;

    const record = await store.getRecord(ref.digest);
    if (!record || !record.references.some((r) => sameReference(r, canonical))) {
      throw new SpokeError('FailedPrecondition', `security profile ${canonical} has not been pulled`, { reference: canonical, digest: ref.digest });
    }
    if (record.kind !== 'seccomp') {
      throw new SpokeError('SecurityProfileInvalid', `${canonical} is a ${record.kind} profile, not seccomp`, { reference: canonical, digest: ref.digest });
    }
    const { bytes } = await store.readProfile(ref.digest, { verify: true });
    const artifact = seccomp.decode(bytes);

    let base: P | undefined;
    if (profile.base !== undefined) {
      if (profile.base.type === BASE_LOCALHOST) base = await this.readBase(profile.base.localhostRef, ctx);
      else if (profile.base.type !== BASE_RUNTIME_DEFAULT) {
        throw new SpokeError('InvalidArgument', `${ctx.who}: base_profile type ${profile.base.type} is not RuntimeDefault or Localhost`);
      }
    }

    let merged: { bytes: Buffer; constrained: readonly unknown[] };
    try {
      merged = seccomp.intersect(this.deps.baseline(), base, artifact);
    } catch (e) {
      const err = asSpokeError(e, 'SecurityProfileInvalid');
      throw new SpokeError(err.code, `${canonical}: cannot merge with the node baseline: ${err.message}`, { reference: canonical, digest: ref.digest }, { cause: e });
    }
    const sha = sha256Hex(merged.bytes);
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
    if (merged.constrained.length > 0) {
      this.deps.metrics.mergeConstrained(merged.constrained.length);
      logger.log('warn', 'SecurityProfileMergeConstrained', {
        who: ctx.who,
        reference: canonical,
        digest: ref.digest,
        baseProfile: profile.base?.type === BASE_LOCALHOST ? profile.base.localhostRef : profile.base ? 'RuntimeDefault' : undefined,
        constrained: merged.constrained.length,
        rules: merged.constrained.slice(0, 50).map((c) => seccomp.formatConstraint(c)),
      });
    }
    logger.log('info', 'OCI seccomp profile applied', { who: ctx.who, reference: canonical, digest: ref.digest, rule: record.rule, effective: path });
    return { path, digest: ref.digest, reference: canonical, effectiveSha: sha, constrained: merged.constrained.length };
  }

  private async readBase(localhostRef: string, ctx: ApplyContext): Promise<P> {
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
      return p;
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
