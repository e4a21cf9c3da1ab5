// Artifact records on disk: the per-artifact provenance record (manifest bytes, kind, layer,
// references, signature verdicts keyed by policy hash), its cache, the content verdicts
// (invalid/), and the writing of the profile blob with its record (ingest); blobs are read by
// blob-reader.ts. The format: record-format.ts. Layout and write rules: store.ts.

import { createHash } from 'node:crypto';
import { lstatSync, renameSync, unlinkSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { digestHex, type Digest } from '../core/digest.js';
import { SpokeError } from '../core/errors.js';
import { commitStaged, discardStaged, fileIdentity, removeIfExists, renameUnlessGone, sameIdentity, stageFile, writeFileAtomic, type FileIdentity, type StagedFile } from './fsutil.js';
import type { BlobReader } from './blob-reader.js';
import { readFileIfExists, readStoreFileSync, writtenByUs } from './store-reads.js';
import { exists, SHA_JSON_FILE_RE, type StoreLayout } from './layout.js';
import { asidePath, settleRecordsAside } from './record-aside.js';
import { addReference, parseRecord, setVerdict, updatedRecord, type IngestInput, type InvalidVerdict, type ProvenanceRecord, type RecordInput, type SignatureVerdict } from './record-format.js';

/** What ingest placed: the blob's path and the record now in the store. */
export interface Ingested {
  blobPath: string;
  record: ProvenanceRecord;
}

/**
 * A profile blob written and flushed under a temp name ahead of its ingest (stageBlob): nothing
 * in the store names it until ingest places it; discard() removes it.
 */
export class StagedBlob {
  constructor(
    readonly layerDigest: Digest,
    /** undefined: the blob was in the store already when staged (one copy). */
    readonly file: StagedFile | undefined,
  ) {}

  discard(): Promise<void> {
    return discardStaged(this.file ? [this.file] : []);
  }
}

/**
 * A first provenance record written (unflushed) under a temp name ahead of its ingest
 * (stageRecord): nothing in the store names it until ingest links it; discard() removes it.
 */
export class StagedRecord {
  constructor(
    readonly record: ProvenanceRecord,
    readonly file: StagedFile,
  ) {}

  discard(): Promise<void> {
    return discardStaged([this.file]);
  }
}

/** What a pull wrote ahead of its ingest, placed by it instead of being written again. */
export interface StagedAhead {
  blob?: StagedBlob;
  record?: StagedRecord;
}

/** Records read between two turns of the event loop in a listing. */
const LIST_BATCH = 64;

export class RecordStore {
  /** Parsed records, reused while the file's identity (ino, size, mtime) is unchanged. */
  private readonly recordCache = new Map<string, { identity: FileIdentity; record: ProvenanceRecord }>();

  /** `contentRules`: ProfileStoreOptions.contentRules. `blobs`: the blobs the records name. */
  constructor(
    private readonly layout: StoreLayout,
    private readonly contentRules: string,
    private readonly blobs: BlobReader,
  ) {}

  /**
   * The record of an artifact, or undefined. Cheap when unchanged since the last read: one
   * synchronous stat (fsutil.ts), so a cached pull never leaves the event loop.
   */
  async getRecord(d: Digest): Promise<ProvenanceRecord | undefined> {
    await this.layout.init();
    const path = this.layout.recordPath(d);
    // The name itself, not where a link leads: a record is never a link (placed by rename or
    // link(2)), and one someone else could have written is none (fsutil.ts writtenByUs).
    const st = lstatSync(path, { throwIfNoEntry: false });
    if (st === undefined || !st.isFile() || !writtenByUs(st)) {
      this.recordCache.delete(d);
      return undefined;
    }
    const hit = this.recordCache.get(d);
    if (hit && sameIdentity(hit.identity, st)) return hit.record;
    const read = readStoreFileSync(path, true);
    const record = typeof read === 'object' ? parseRecord(read.bytes, d) : undefined;
    // Unreadable (e.g. torn by a crash: records are not flushed): a miss, rewritten by the next pull.
    if (!record || typeof read !== 'object') return undefined;
    this.recordCache.set(d, { identity: fileIdentity(read.st), record });
    return record;
  }

  async has(d: Digest): Promise<boolean> {
    return (await this.getRecord(d)) !== undefined;
  }

  /** The profile bytes of an artifact. NotFound when absent; `verify` re-hashes them. */
  async readProfile(d: Digest, opts: { verify?: boolean } = {}): Promise<{ record: ProvenanceRecord; bytes: Buffer }> {
    const record = await this.getRecord(d);
    if (!record) throw new SpokeError('NotFound', `${d} is not in the store`, { digest: d }, { reason: 'NOT_FOUND' });
    const bytes = await this.blobs.readBlob(record.layerDigest, opts);
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
   * Stores an artifact that passed every check; the record (placed last) makes it visible. A new
   * record is placed with link(2), which fails if another writer placed one first: only then is
   * the record's lock taken to merge into it, so a first pull takes no lock at all.
   */
  async ingest(input: IngestInput, early: StagedAhead = {}, abandoned?: AbortSignal): Promise<Ingested> {
    // What was staged ahead is this call's to place or remove, whatever fails.
    try {
      return await this.place(input, early, abandoned);
    } catch (e) {
      await early.blob?.discard();
      await early.record?.discard();
      throw e;
    }
  }

  private async place(input: IngestInput, early: StagedAhead, abandoned: AbortSignal | undefined): Promise<Ingested> {
    await this.layout.init();
    const blobPath = this.layout.blobPath(input.layerDigest);
    const recordPath = this.layout.recordPath(input.digest);
    const now = new Date(this.layout.clock.now()).toISOString();
    const staged: StagedFile[] = [];
    let placed: ProvenanceRecord;
    /** The record file this call wrote: once placed (commitStaged), it is this call's to take back. */
    let ours: StagedFile | undefined;
    try {
      if (early.blob !== undefined && early.blob.layerDigest !== input.layerDigest) {
        throw new SpokeError('Internal', `a blob staged for ${early.blob.layerDigest} was handed to the ingest of ${input.layerDigest}`, {}, { reason: 'INVARIANT' });
      }
      const ahead = early.record?.record;
      if (ahead !== undefined && (ahead.digest !== input.digest || ahead.layerDigest !== input.layerDigest || ahead.size !== input.layerBytes.byteLength)) {
        throw new SpokeError('Internal', `a record staged for ${ahead.digest} (${ahead.layerDigest}) was handed to the ingest of ${input.digest} (${input.layerDigest})`, {}, { reason: 'INVARIANT' });
      }
      const blob = early.blob ? early.blob.file : this.stageBlobFile(blobPath, input.layerBytes);
      // Staged while the blob is flushed, unless staged ahead; the blob is placed first.
      const [blobStaging, recordStaging] = await Promise.allSettled([blob, early.record ?? this.stageRecord(input, input.layerBytes.byteLength, now)]);
      // What either side wrote is this call's to remove, whichever side failed.
      if (blobStaging.status === 'fulfilled' && blobStaging.value) staged.push(blobStaging.value);
      if (recordStaging.status === 'fulfilled') staged.push(recordStaging.value.file);
      if (blobStaging.status === 'rejected') throw blobStaging.reason;
      if (recordStaging.status === 'rejected') throw recordStaging.reason;
      const stagedBlob = blobStaging.value;
      const { record, file: stagedRecord } = recordStaging.value;
      ours = stagedRecord;
      // A pull answered with a refusal while its files were written and flushed (its deadline,
      // or every caller gone) places nothing: no turn passes from here to the renames.
      abandoned?.throwIfAborted();
      const lost = await commitStaged(staged);
      // The blob was there, so it was not written: a removal may have taken it since, having
      // listed the records before this one was linked. It looks again after moving the blob
      // aside (collect.ts removeBlobs); this looks after linking: one of the two sees the other.
      if (stagedBlob === undefined && !exists(blobPath)) {
        const again = await this.stageBlobFile(blobPath, input.layerBytes);
        if (again) await commitStaged([again]);
      }
      // Stopped while the directories were flushed (in the thread pool): taken back below.
      abandoned?.throwIfAborted();
      if (lost.length === 0) {
        // The file keeps the identity it was written with, so the pull's next read is a cache hit.
        this.recordCache.set(input.digest, { identity: stagedRecord.identity, record });
        placed = record;
      } else {
        placed = await this.layout.lock(digestHex(input.digest), async () => {
          abandoned?.throwIfAborted();
          const merged = updatedRecord(await this.getRecord(input.digest), input, input.layerBytes.byteLength, now);
          await writeFileAtomic(recordPath, formatRecord(merged), this.layout.temp, { fsync: false });
          this.recordCache.delete(input.digest);
          return merged;
        });
      }
      removeIfExists(this.layout.invalidPath(input.digest));
    } catch (e) {
      await discardStaged(staged);
      // A failure once the record was in place (a directory's flush, the old verdict's removal):
      // the record goes too, so that a pull answered with the failure is not answered from the
      // store next. Its blob, which another record may name by now, is left to gc.
      if (ours?.placed === true) await this.takeBack(input.digest, ours.identity);
      throw e;
    }
    return { blobPath, record: placed };
  }

  /**
   * Removes the record of `digest` if it is still the file of identity `ours` (nobody replaced it
   * since: a merge or an annotation renames another file over it, under the record's lock, which
   * this takes too); best effort.
   */
  private async takeBack(digest: Digest, ours: FileIdentity): Promise<void> {
    const path = this.layout.recordPath(digest);
    await this.layout
      .lock(digestHex(digest), async () => {
        const st = lstatSync(path, { throwIfNoEntry: false });
        if (st !== undefined && sameIdentity(fileIdentity(st), ours)) unlinkSync(path);
        this.recordCache.delete(digest);
      })
      // The disk fails again: the record stays, as after a crash, and is read as any record is.
      .catch(() => undefined);
  }

  /**
   * Writes the first record of `input.digest` (unflushed, as records are) under a temp name ahead
   * of its ingest, which links it only where no record is yet: see StagedRecord. `size`: the
   * profile's, which the record names.
   */
  async stageRecord(input: RecordInput, size: number, now = new Date(this.layout.clock.now()).toISOString()): Promise<StagedRecord> {
    await this.layout.init();
    const record = updatedRecord(undefined, input, size, now);
    return new StagedRecord(record, await stageFile(this.layout.recordPath(input.digest), formatRecord(record), this.layout.temp, { fsync: false, exclusive: true }));
  }

  /**
   * Writes and flushes the blob `layerDigest` under a temp name ahead of its ingest, so that the
   * flush overlaps what the ingest must wait for (a keyed pull's signature requests): see
   * StagedBlob. Nothing when the blob is in the store already.
   */
  async stageBlob(layerDigest: Digest, bytes: Uint8Array): Promise<StagedBlob> {
    await this.layout.init();
    return new StagedBlob(layerDigest, await this.stageBlobFile(this.layout.blobPath(layerDigest), bytes));
  }

  /**
   * The blob written and flushed under a temp name, or nothing when a file is at `path` already:
   * content-addressed, it holds these bytes (one copy). Looked at on disk:
   * another process may have removed it since.
   */
  private async stageBlobFile(path: string, bytes: Uint8Array): Promise<StagedFile | undefined> {
    return exists(path) ? undefined : stageFile(path, bytes, this.layout.temp, this.layout.durable);
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
      await writeFileAtomic(this.layout.recordPath(d), formatRecord(record), this.layout.temp, { fsync: false });
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
    removeIfExists(this.layout.invalidPath(d));
    let signatures = 0;
    await this.layout.lock(digestHex(d), async () => {
      const existing = await this.getRecord(d);
      if (!existing) return;
      signatures = Object.keys(existing.verdicts).length;
      if (signatures === 0) return;
      const record = { ...structuredClone(existing), verdicts: {} };
      await writeFileAtomic(this.layout.recordPath(d), formatRecord(record), this.layout.temp, { fsync: false });
      this.recordCache.delete(d);
    });
    return { invalid, signatures };
  }

  /** Remembers that the content of `d` is not an acceptable profile. Only for verdicts on the content alone. */
  async recordInvalid(d: Digest, reason: string): Promise<void> {
    await this.layout.init();
    const v: InvalidVerdict = { digest: d, reason: reason.slice(0, 1024), at: new Date(this.layout.clock.now()).toISOString(), scope: 'content', rules: this.contentRules };
    await this.layout.write(this.layout.invalidPath(d), JSON.stringify(v) + '\n');
  }

  /**
   * The content verdict on `d`, if any. A file that cannot be read, lacks `scope: content` or
   * was judged by other rules than this store's `contentRules` (another spoke build) counts as
   * none: the digest is fetched and judged again, which records a fresh verdict.
   */
  async getInvalid(d: Digest): Promise<InvalidVerdict | undefined> {
    await this.layout.init();
    const read = readStoreFileSync(this.layout.invalidPath(d));
    if (typeof read !== 'object') return undefined;
    const bytes = read.bytes;
    try {
      const v = JSON.parse(bytes.toString('utf8')) as Partial<InvalidVerdict>;
      if (v.scope !== 'content' || typeof v.reason !== 'string' || v.rules !== this.contentRules) return undefined;
      return { digest: d, reason: v.reason, at: typeof v.at === 'string' ? v.at : '', scope: 'content', rules: v.rules };
    } catch {
      return undefined;
    }
  }

  /**
   * Every readable record, in directory order. The reads are synchronous (fsutil.ts), so a long
   * listing lets the event loop serve other calls every LIST_BATCH records.
   */
  async listRecords(): Promise<ProvenanceRecord[]> {
    await this.layout.init();
    const out: ProvenanceRecord[] = [];
    let n = 0;
    // Made by init(), unless the store is read only (StoreLayoutOptions.readOnly): none yet.
    const names = await readdir(join(this.layout.root, 'profiles', 'sha256')).catch((e: NodeJS.ErrnoException) => (e.code === 'ENOENT' && this.layout.readOnly ? [] : Promise.reject(e)));
    for (const name of names) {
      const m = SHA_JSON_FILE_RE.exec(name);
      if (!m) continue;
      if (++n % LIST_BATCH === 0) await new Promise((r) => setImmediate(r));
      const record = await this.getRecord(`sha256:${m[1]}`);
      if (record) out.push(record);
    }
    return out;
  }

  /**
   * Deletes the record of `d` (its blob stays: removeBlob once no record names it) unless `keep`,
   * asked under the digest's lock before the record is touched (collect.ts noteUse), says it was
   * used, or `unheld`, asked once the record is out of sight, says it is held now.
   */
  async deleteRecord(d: Digest, keep: () => boolean, unheld: () => Promise<boolean>): Promise<'deleted' | 'used' | 'held'> {
    return this.layout.lock(digestHex(d), async () => {
      if (keep()) return 'used';
      const path = this.layout.recordPath(d);
      this.recordCache.delete(d);
      // Out of sight first, then the holders asked again: a create in another process records its
      // holder before it checks that the record is still there (src/cri/inuse.ts begin), so
      // either `unheld` sees that holder and the record goes back, or the create finds it gone
      // and fails; neither leaves a held artifact without its record (docs/gc.md).
      const aside = asidePath(this.layout, d);
      try {
        renameSync(path, aside);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') return 'deleted';
        throw e;
      }
      let removable = false;
      try {
        removable = await unheld();
      } finally {
        if (removable) removeIfExists(aside);
        else renameUnlessGone(aside, path);
      }
      return removable ? 'deleted' : 'held';
    });
  }

  /** Records a removal that crashed left moved aside, settled (record-aside.ts). */
  settleAside(): Promise<void> {
    return settleRecordsAside(this.layout, (d) => this.recordCache.delete(d));
  }
}

const formatRecord = (record: ProvenanceRecord): string => JSON.stringify(record, null, 1) + '\n';

