// An in-memory RegistryClient for unit tests of discovery, verification and signing. Obeys the
// contract: digest checks on by-digest reads, byte caps, 404 → undefined, referrers API optional.

import { createHash } from 'node:crypto';
import { MEDIA_TYPE_OCI_INDEX } from '../../../src/core/constants.js';
import type { Digest } from '../../../src/core/digest.js';
import { SpokeError } from '../../../src/core/errors.js';
import type { FetchedBlob, FetchedManifest, FetchOptions, RegistryClient, RepoLocator } from '../../../src/registry/types.js';

const sha = (b: Uint8Array): Digest => `sha256:${createHash('sha256').update(b).digest('hex')}`;

export type Op = 'getManifest' | 'getBlob' | 'getReferrers' | 'putManifest' | 'putBlob';

export class FakeRegistry implements RegistryClient {
  readonly blobs = new Map<string, Buffer>();
  readonly manifests = new Map<string, { bytes: Buffer; mediaType: string }>();
  readonly tags = new Map<string, string>();
  readonly log: string[] = [];
  /** Return an error to make that call fail (e.g. a RegistryUnavailable for a 5xx). */
  fail: ((op: Op, ref: string) => Error | undefined) | undefined;
  /** Return a promise to hold a manifest read until it settles (a slow lookup). */
  hold: ((ref: string) => Promise<void> | undefined) | undefined;

  constructor(readonly referrersApi = false) {}

  private key(repo: RepoLocator, ref: string): string {
    return `${repo.registry}/${repo.repository}|${ref}`;
  }

  private check(op: Op, ref: string): void {
    this.log.push(`${op} ${ref}`);
    const e = this.fail?.(op, ref);
    if (e) throw e;
  }

  private cap(bytes: Buffer, max: number, what: string): void {
    if (bytes.length > max) throw new SpokeError('SecurityProfileInvalid', `${what}: ${bytes.length} bytes over the ${max}-byte limit`, {}, { reason: 'SIZE_LIMIT' });
  }

  async getManifest(repo: RepoLocator, ref: string, accept: readonly string[], opts: FetchOptions): Promise<FetchedManifest> {
    const m = await this.getManifestIfExists(repo, ref, accept, opts);
    if (!m) throw new SpokeError('NotFound', `manifest ${ref} not found`, {}, { reason: 'NOT_FOUND' });
    return m;
  }

  async getManifestIfExists(repo: RepoLocator, ref: string, _accept: readonly string[], opts: FetchOptions): Promise<FetchedManifest | undefined> {
    this.check('getManifest', ref);
    await this.hold?.(ref);
    const d = ref.startsWith('sha256:') ? ref : this.tags.get(this.key(repo, ref));
    if (!d) return undefined;
    const m = this.manifests.get(this.key(repo, d));
    if (!m) return undefined;
    this.cap(m.bytes, opts.maxBytes, `manifest ${ref}`);
    const digest = sha(m.bytes);
    if (ref.startsWith('sha256:') && digest !== ref) throw new SpokeError('SecurityProfileInvalid', `manifest ${ref}: digest mismatch`, {}, { reason: 'DIGEST_MISMATCH' });
    return { bytes: Buffer.from(m.bytes), contentType: m.mediaType, digest, servedBy: repo.registry };
  }

  async getBlob(repo: RepoLocator, digest: Digest, opts: FetchOptions & { expectedSize?: number }): Promise<FetchedBlob> {
    this.check('getBlob', digest);
    const b = this.blobs.get(this.key(repo, digest));
    if (!b) throw new SpokeError('NotFound', `blob ${digest} not found`, {}, { reason: 'NOT_FOUND' });
    this.cap(b, opts.maxBytes, `blob ${digest}`);
    if (sha(b) !== digest) throw new SpokeError('SecurityProfileInvalid', `blob ${digest}: digest mismatch`, {}, { reason: 'DIGEST_MISMATCH' });
    return { bytes: Buffer.from(b), digest, servedBy: repo.registry };
  }

  async getReferrers(repo: RepoLocator, digest: Digest, opts: FetchOptions & { artifactType?: string }): Promise<Buffer | undefined> {
    this.check('getReferrers', digest);
    if (!this.referrersApi) return undefined;
    const manifests = [];
    for (const [k, m] of this.manifests) {
      if (!k.startsWith(`${repo.registry}/${repo.repository}|`)) continue;
      const j = JSON.parse(m.bytes.toString('utf8')) as { subject?: { digest?: string }; artifactType?: string; annotations?: object };
      if (j.subject?.digest !== digest) continue;
      manifests.push({ mediaType: m.mediaType, digest: sha(m.bytes), size: m.bytes.length, artifactType: j.artifactType, annotations: j.annotations });
    }
    const out = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MEDIA_TYPE_OCI_INDEX, manifests }));
    this.cap(out, opts.maxBytes, 'referrers');
    return out;
  }

  async hasBlob(repo: RepoLocator, digest: Digest): Promise<boolean> {
    return this.blobs.has(this.key(repo, digest));
  }

  async putBlob(repo: RepoLocator, bytes: Uint8Array): Promise<Digest> {
    const d = sha(bytes);
    this.check('putBlob', d);
    this.blobs.set(this.key(repo, d), Buffer.from(bytes));
    return d;
  }

  async putManifest(repo: RepoLocator, ref: string, bytes: Uint8Array, mediaType: string): Promise<{ digest: Digest; subjectHeader: string | undefined }> {
    const d = sha(bytes);
    this.check('putManifest', ref);
    this.manifests.set(this.key(repo, d), { bytes: Buffer.from(bytes), mediaType });
    if (!ref.startsWith('sha256:')) this.tags.set(this.key(repo, ref), d);
    const j = JSON.parse(Buffer.from(bytes).toString('utf8')) as { subject?: { digest?: string } };
    return { digest: d, subjectHeader: this.referrersApi && j.subject?.digest ? j.subject.digest : undefined };
  }

  async close(): Promise<void> {}

  /** Overwrite a stored blob in place (tampering). */
  tamperBlob(repo: RepoLocator, digest: string, bytes: Buffer): void {
    this.blobs.set(this.key(repo, digest), bytes);
  }

  /** Store a manifest directly (bypassing checks). */
  putRaw(repo: RepoLocator, ref: string, bytes: Buffer, mediaType: string): Digest {
    const d = sha(bytes);
    this.manifests.set(this.key(repo, d), { bytes, mediaType });
    if (!ref.startsWith('sha256:')) this.tags.set(this.key(repo, ref), d);
    return d;
  }

  tagged(repo: RepoLocator, tag: string): Buffer | undefined {
    const d = this.tags.get(this.key(repo, tag));
    return d ? this.manifests.get(this.key(repo, d))?.bytes : undefined;
  }
}
