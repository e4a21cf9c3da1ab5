// Publishing a finalized recording's profiles (docs/recording.md): push with the controller's
// own credentials, sign (spec.publish.signWith), and, with `bind: true`, create the
// ProfileBindings. Pushes and signatures are remembered per digest, so a retry after a conflict
// does not push again. Bindings are created, never updated or deleted (RBAC: create only): one
// that exists with the same reference is kept; one with another reference makes Bound=False
// (BindingExists).

import { createPublicKey, type KeyObject } from 'node:crypto';
import { sha256Digest, type Digest } from '../core/digest.js';
import { MEDIA_TYPE_OCI_MANIFEST } from '../core/constants.js';
import { pushProfile, tagManifest } from '../publish/push.js';
import { signArtifact } from '../publish/sign.js';
import type { SignFormat } from '../publish/signing.js';
import { codeOf } from './api-errors.js';
import { condition } from './conditions.js';
import {
  RECORDING_LABEL,
  bindingFor,
  type CompiledRecording,
  type PlannedProfile,
  type ProfileRecordingStatus,
  type RecordedProfileStatus,
} from './recording.js';
import type { ProfileBinding } from './types.js';

/** The registry contract, as publish/ takes it (controller/ does not import registry/). */
export type PublishRegistry = Parameters<typeof pushProfile>[0];
export type PublishCredential = NonNullable<Parameters<typeof pushProfile>[5]>['credential'];

/** Pushes and signatures remembered (by digest) so retries do not repeat them. */
const MAX_REMEMBERED = 1024;

/** A signing key by its public half (SPKI), as the signatures it makes are checked. */
function keyFingerprint(key: KeyObject | string): Digest {
  return sha256Digest(createPublicKey(key).export({ type: 'spki', format: 'der' }));
}

/** A failure the reconciler retries with backoff. */
export class Transient extends Error {}

export function messageOf(e: unknown): string {
  return (e as Error)?.message ?? String(e);
}

export interface PublisherOptions {
  registry: PublishRegistry;
  credential?: PublishCredential;
  signFormat?: SignFormat;
  /** The ProfileBinding the controller's cache holds under this name. */
  binding(namespace: string, name: string): ProfileBinding | undefined;
  /** POST …/profilebindings; rejects {code: 409} when it exists. */
  createBinding(namespace: string, obj: ProfileBinding): Promise<ProfileBinding>;
  /** The reconciler's counters (pushes, signatures, bindingsCreated). */
  stats: { pushes: number; signatures: number; bindingsCreated: number };
}

/** What in `existing` differs from the binding the recording would create, or undefined when nothing does. */
function bindingDifference(existing: ProfileBinding, want: ProfileBinding): string | undefined {
  const a = existing.spec;
  const b = want.spec;
  if (a?.reference !== b.reference) return `reference ${String(a?.reference)}`;
  if (a.kind !== b.kind) return `kind ${String(a.kind)}`;
  if (a.image !== b.image) return `image ${String(a.image)}`;
  if (JSON.stringify([...(a.containers ?? [])].sort()) !== JSON.stringify([...(b.containers ?? [])].sort())) return 'other containers';
  if (JSON.stringify(a.podSelector) !== JSON.stringify(b.podSelector)) return 'another podSelector';
  return undefined;
}

export class RecordingPublisher {
  private readonly pushed = new Map<string, { reference: string; manifest: Buffer; digest: Digest }>();
  private readonly signed = new Set<string>();
  /**
   * The digest each tag was last put on (`registry/repository:tag`): a profile pushed before is
   * not pushed again, but a recording finalized again may have moved its tag away meanwhile.
   */
  private readonly tagged = new Map<string, Digest>();

  constructor(private readonly o: PublisherOptions) {}

  /** `signal`: the deadline of the whole publish (recording-finalize.ts), on every request it makes. */
  async publish(rec: CompiledRecording, p: PlannedProfile, key: KeyObject | string | undefined, signal?: AbortSignal): Promise<{ reference: string; pushedNow: boolean }> {
    const repo = { registry: rec.repository.registry, repository: rec.repository.repository };
    const tagKey = `${repo.registry}/${repo.repository}:${p.tag}`;
    const memo = `${tagKey}@${sha256Digest(p.bytes)}`;
    let pushed = this.pushed.get(memo);
    let pushedNow = false;
    if (!pushed) {
      // Signed, the profile goes by digest and is tagged once its signature is attached: a
      // signing that fails part-way leaves the tag where it was, not on an unsigned profile.
      const r = await pushProfile(this.o.registry, repo, key === undefined ? p.tag : undefined, p.bytes, 'seccomp', { credential: this.o.credential, signal });
      this.o.stats.pushes++;
      pushedNow = true;
      pushed = { reference: r.reference, manifest: r.packed.manifest, digest: r.digest };
      if (this.pushed.size >= MAX_REMEMBERED) this.pushed.delete(this.pushed.keys().next().value as string);
      this.pushed.set(memo, pushed);
      if (key === undefined) this.tagAt(tagKey, r.digest);
    }
    // Remembered by the key itself, not its name: a key rotated under the same name signs again.
    const signedKey = key === undefined ? '' : `${keyFingerprint(key)}|${pushed.reference}`;
    if (key !== undefined && !this.signed.has(signedKey)) {
      await signArtifact({ registry: this.o.registry, repo, digest: pushed.digest, manifestBytes: pushed.manifest, key, format: this.o.signFormat ?? 'bundle', credential: this.o.credential, signal });
      this.o.stats.signatures++;
      if (this.signed.size >= MAX_REMEMBERED) this.signed.delete(this.signed.values().next().value as string);
      this.signed.add(signedKey);
    }
    if (this.tagged.get(tagKey) !== pushed.digest) {
      await tagManifest(this.o.registry, repo, p.tag, pushed.manifest, MEDIA_TYPE_OCI_MANIFEST, { credential: this.o.credential, signal });
      this.tagAt(tagKey, pushed.digest);
    }
    return { reference: pushed.reference, pushedNow };
  }

  private tagAt(tagKey: string, digest: Digest): void {
    this.tagged.delete(tagKey);
    if (this.tagged.size >= MAX_REMEMBERED) this.tagged.delete(this.tagged.keys().next().value as string);
    this.tagged.set(tagKey, digest);
  }

  async ensureBindings(
    rec: CompiledRecording,
    profiles: readonly RecordedProfileStatus[],
    old: ProfileRecordingStatus,
    now: string,
    generation: number | undefined,
    stillCurrent: () => boolean,
  ): Promise<{ profiles: RecordedProfileStatus[]; created: number; condition: ReturnType<typeof condition> }> {
    const out: RecordedProfileStatus[] = [];
    const problems: string[] = [];
    let created = 0;
    for (const prof of profiles) {
      const key = rec.mergeStrategy === 'Containers' ? '*' : (prof.containers[0] as string);
      const want = bindingFor(rec, { key, containers: prof.containers, image: prof.image }, prof.reference);
      const bname = want.metadata.name as string;
      const existing = this.o.binding(rec.namespace, bname);
      if (existing) {
        // Ours only when it binds what we would: a binding of this name that someone else made
        // (another selector, containers or image) is not reported as the recording's.
        const differs = bindingDifference(existing, want);
        if (differs === undefined) out.push({ ...prof, binding: bname });
        else {
          problems.push(`ProfileBinding ${rec.namespace}/${bname} exists with ${differs}; delete it to bind ${prof.reference}`);
          out.push(prof);
        }
        continue;
      }
      // Asked before each create: a recording deleted or finalized again meanwhile gets none
      // (bindings have no owner, so nothing would remove them with it).
      if (!stillCurrent()) throw new Transient(`ProfileRecording ${rec.namespace}/${rec.name} changed while its bindings were created`);
      try {
        await this.o.createBinding(rec.namespace, want);
        created++;
        this.o.stats.bindingsCreated++;
        out.push({ ...prof, binding: bname });
      } catch (e) {
        if (codeOf(e) === 409) {
          // Created meanwhile (another replica, or our own earlier attempt): the cache will tell which reference it has.
          throw new Transient(`ProfileBinding ${rec.namespace}/${bname} already exists; waiting for the cache to compare it`);
        }
        if (codeOf(e) === 403 || codeOf(e) === 422 || codeOf(e) === 400) {
          problems.push(`creating ProfileBinding ${rec.namespace}/${bname}: ${messageOf(e)}`);
          out.push(prof);
          continue;
        }
        throw e;
      }
    }
    const cond =
      problems.length === 0
        ? condition(old.conditions, 'Bound', 'True', 'BindingsCreated', `ProfileBinding(s) ${out.map((p) => p.binding).join(', ')} (label ${RECORDING_LABEL})`, now, generation)
        : condition(old.conditions, 'Bound', 'False', 'BindingExists', problems.join('; '), now, generation);
    return { profiles: out, created, condition: cond };
  }
}
