// Artifact records on disk: the profile blob and the per-artifact provenance record (manifest
// bytes, kind, layer, references, signature verdicts keyed by policy hash), their cache, and the
// permanent content verdicts (invalid/). The format: record-format.ts. Layout and write rules:
// store.ts.

import { createHash } from 'node:crypto';
import { readdir, readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { digestHex, type Digest } from '../core/digest.js';
import { SpokeError } from '../core/errors.js';
import { commitStaged, discardStaged, readFileIfExists, stageFile, writeFileAtomic, type StagedFile } from './fsutil.js';
import { exists, type StoreLayout } from './layout.js';
import { addReference, parseRecord, platformManifest, setVerdict, type IngestInput, type InvalidVerdict, type ProvenanceRecord, type SignatureVerdict } from './record-format.js';

export class RecordStore {
  /** Parsed records, reused while the file's identity (ino, size, mtime) is unchanged. */
  private readonly recordCache = new Map<string, { key: string; record: ProvenanceRecord }>();
  private readonly blobsSeen = new Set<Digest>();

  constructor(private readonly layout: StoreLayout) {}

  /** The record of an artifact, or undefined. Cheap when unchanged since the last read (one stat). */
  async getRecord(d: Digest): Promise<ProvenanceRecord | undefined> {
    await this.layout.init();
    const path = this.layout.recordPath(d);
    let st;
    try {
      st = await stat(path);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
        this.recordCache.delete(d);
        return undefined;
      }
      throw e;
    }
    const key = `${st.ino}:${st.size}:${st.mtimeMs}`;
    const hit = this.recordCache.get(d);
    if (hit && hit.key === key) return hit.record;
    const record = parseRecord(await readFile(path), d);
    // Unreadable (e.g. torn by a crash: records are not flushed): a miss, rewritten by the next pull.
    if (!record) return undefined;
    this.recordCache.set(d, { key, record });
    return record;
  }

  async has(d: Digest): Promise<boolean> {
    return (await this.getRecord(d)) !== undefined;
  }

  /** The profile bytes of an artifact. NotFound when absent; `verify` re-hashes them. */
  async readProfile(d: Digest, opts: { verify?: boolean } = {}): Promise<{ record: ProvenanceRecord; bytes: Buffer }> {
    const record = await this.getRecord(d);
    if (!record) throw new SpokeError('NotFound', `${d} is not in the store`, { digest: d }, { reason: 'NOT_FOUND' });
    const bytes = await this.readBlob(record.layerDigest, opts);
    return { record, bytes };
  }

  /** The artifact's manifest bytes, checked against its digest. */
  async readManifest(d: Digest): Promise<Buffer> {
    const record = await this.getRecord(d);
    if (!record) throw new SpokeError('NotFound', `${d} is not in the store`, { digest: d }, { reason: 'NOT_FOUND' });
    const bytes = Buffer.from(record.manifest, 'base64');
    const actual = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
    if (actual !== d) throw new SpokeError('SecurityProfileInvalid', `stored manifest of ${d} is corrupt (hashes to ${actual})`, { digest: d, expected: d, actual }, { reason: 'DIGEST_MISMATCH' });
    return bytes;
  }

  /**
   * True when the profile blob a record names is present (a cached pull checks it). A blob seen
   * once is remembered: blobs are removed only through remove()/gc(), which forget them, and a
   * blob deleted behind the store's back fails closed when the profile is read at apply time.
   */
  async hasBlob(d: Digest): Promise<boolean> {
    if (this.blobsSeen.has(d)) return true;
    const present = await exists(this.layout.blobPath(d));
    if (present) this.blobsSeen.add(d);
    return present;
  }

  async readBlob(d: Digest, opts: { verify?: boolean } = {}): Promise<Buffer> {
    await this.layout.init();
    const bytes = await readFileIfExists(this.layout.blobPath(d));
    if (!bytes) throw new SpokeError('NotFound', `blob ${d} is not in the store`, { digest: d }, { reason: 'NOT_FOUND' });
    if (opts.verify) {
      const actual = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
      if (actual !== d) {
        throw new SpokeError('SecurityProfileInvalid', `stored blob ${d} is corrupt (hashes to ${actual})`, { digest: d, expected: d, actual }, { reason: 'DIGEST_MISMATCH' });
      }
    }
    return bytes;
  }

  /** Stores an artifact that passed every check; the record (written last) makes it visible. */
  async ingest(input: IngestInput): Promise<string> {
    await this.layout.init();
    const blobPath = this.layout.blobPath(input.layerDigest);
    const now = new Date(this.layout.clock.now()).toISOString();
    const staged: StagedFile[] = [];
    try {
      // Content-addressed: an existing blob file already holds these bytes (one copy).
      const blob = (await exists(blobPath)) ? undefined : stageFile(blobPath, input.layerBytes, this.layout.tmpDir, { fsync: this.layout.fsync });
      await this.layout.lock(digestHex(input.digest), async () => {
        const existing = await this.getRecord(input.digest);
        const record: ProvenanceRecord = existing
          ? structuredClone(existing)
          : {
              schemaVersion: 1,
              digest: input.digest,
              manifest: Buffer.from(input.manifestBytes).toString('base64'),
              kind: input.kind,
              layerDigest: input.layerDigest,
              size: input.layerBytes.byteLength,
              references: [],
              rule: input.rule,
              pulledAt: now,
              servedBy: input.servedBy,
              verdicts: {},
              ...(input.platform ? { platform: platformManifest(input.platform) } : {}),
            };
        addReference(record, input.reference);
        if (input.nodeCredentials === true) record.nodeCredentials = true;
        if (input.verdict) setVerdict(record, input.verdict.policyHash, { signer: input.verdict.signer, format: input.verdict.format, identity: input.verdict.identity, at: now });
        // Blob flushed while the record is written; renamed blob first.
        const [stagedBlob, stagedRecord] = await Promise.all([blob, stageFile(this.layout.recordPath(input.digest), JSON.stringify(record, null, 1) + '\n', this.layout.tmpDir, { fsync: false })]);
        if (stagedBlob) staged.push(stagedBlob);
        staged.push(stagedRecord);
        await commitStaged(staged);
        this.recordCache.delete(input.digest);
      });
    } catch (e) {
      await discardStaged(staged);
      throw e;
    }
    await rm(this.layout.invalidPath(input.digest), { force: true });
    return blobPath;
  }

  /** Adds a reference and/or a verdict to an existing record (cached pulls, re-verification). */
  async annotate(d: Digest, update: { reference?: string; verdict?: { policyHash: string } & Omit<SignatureVerdict, 'at'> }): Promise<void> {
    await this.layout.lock(digestHex(d), async () => {
      const existing = await this.getRecord(d);
      if (!existing) throw new SpokeError('NotFound', `${d} is not in the store`, { digest: d }, { reason: 'NOT_FOUND' });
      const record = structuredClone(existing);
      if (update.reference) addReference(record, update.reference);
      if (update.verdict) {
        const { policyHash, ...v } = update.verdict;
        setVerdict(record, policyHash, { ...v, at: new Date(this.layout.clock.now()).toISOString() });
      }
      await writeFileAtomic(this.layout.recordPath(d), JSON.stringify(record, null, 1) + '\n', this.layout.tmpDir, { fsync: false });
      this.recordCache.delete(d);
    });
  }

  /**
   * Forgets every verdict on `d`: the invalid verdict, and the signature verdicts of its record
   * (the profile itself stays; the next pull judges and verifies it again).
   */
  async forget(d: Digest): Promise<{ invalid: boolean; signatures: number }> {
    await this.layout.init();
    const invalid = (await readFileIfExists(this.layout.invalidPath(d))) !== undefined;
    await rm(this.layout.invalidPath(d), { force: true });
    let signatures = 0;
    await this.layout.lock(digestHex(d), async () => {
      const existing = await this.getRecord(d);
      if (!existing) return;
      signatures = Object.keys(existing.verdicts).length;
      if (signatures === 0) return;
      const record = { ...structuredClone(existing), verdicts: {} };
      await writeFileAtomic(this.layout.recordPath(d), JSON.stringify(record, null, 1) + '\n', this.layout.tmpDir, { fsync: false });
      this.recordCache.delete(d);
    });
    return { invalid, signatures };
  }

  /** Remembers that the content of `d` is not an acceptable profile. Only for verdicts on the content alone. */
  async recordInvalid(d: Digest, reason: string): Promise<void> {
    await this.layout.init();
    const v: InvalidVerdict = { digest: d, reason: reason.slice(0, 1024), at: new Date(this.layout.clock.now()).toISOString(), scope: 'content' };
    await this.layout.write(this.layout.invalidPath(d), JSON.stringify(v) + '\n');
  }

  /**
   * The content verdict on `d`, if any. A file that cannot be read or lacks `scope: content`
   * counts as none: the digest is fetched and judged again, which records a fresh verdict.
   */
  async getInvalid(d: Digest): Promise<InvalidVerdict | undefined> {
    await this.layout.init();
    const bytes = await readFileIfExists(this.layout.invalidPath(d));
    if (!bytes) return undefined;
    try {
      const v = JSON.parse(bytes.toString('utf8')) as Partial<InvalidVerdict>;
      if (v.scope !== 'content' || typeof v.reason !== 'string') return undefined;
      return { digest: d, reason: v.reason, at: typeof v.at === 'string' ? v.at : '', scope: 'content' };
    } catch {
      return undefined;
    }
  }

  /** Every readable record, in directory order. */
  async listRecords(): Promise<ProvenanceRecord[]> {
    await this.layout.init();
    const out: ProvenanceRecord[] = [];
    for (const name of await readdir(join(this.layout.root, 'profiles', 'sha256'))) {
      const m = /^([0-9a-f]{64})\.json$/.exec(name);
      if (!m) continue;
      const record = await this.getRecord(`sha256:${m[1]}`);
      if (record) out.push(record);
    }
    return out;
  }

  /** Deletes the record of `d` (its blob stays: removeBlob once no record names it). */
  async deleteRecord(d: Digest): Promise<void> {
    await this.layout.lock(digestHex(d), async () => {
      await rm(this.layout.recordPath(d), { force: true });
      this.recordCache.delete(d);
    });
  }

  /** Forgets that blob `d` was seen present (it is about to be removed, or may be). */
  forgetBlob(d: Digest): void {
    this.blobsSeen.delete(d);
  }
}
