// Content-addressed profile store (docs/architecture.md). ProfileStore is the facade callers use;
// its parts are records.ts (artifact records and verdicts, and the writing of blobs; their format
// in record-format.ts), blob-reader.ts (the blobs as read and checked), inuse-set.ts (the in-use set and pins), effective.ts (effective-file
// origins) and collect.ts (listing, removal, gc, verification), over the layout and file
// primitives they share (layout.ts).
//
// Layout under `root` (every path is built from a digest's hex, never from input text):
//   blobs/sha256/<hex>          profile bytes, named by their own sha256 (one copy per content)
//   profiles/sha256/<hex>.json  one record per artifact (manifest digest): the manifest bytes,
//                               kind, layer, provenance, signature verdicts keyed by policy hash
//   invalid/sha256/<hex>.json   SecurityProfileInvalid verdicts (not re-fetched; gc drops old ones)
//   state/in-use.json           runtime holders ("container:<id>", "pending:…") → artifact digest,
//   state/in-use.log            and the changes since, appended (inuse-set.ts)
//   state/pins.json             pins ("pin:<name>") → artifact digest (flushed)
//   state/effective/<sha>.json  artifacts an effective seccomp file was merged from, and with
//                               which pod reference and base profile (`spoke ps`)
//   state/last-use.json         when the shim's gc last saw each artifact / effective file used
//   tmp/                        temp files, renamed into place (same filesystem)
//   locks/                      short-lived O_EXCL locks for read-modify-write of records
// Writers: the profile blob goes temp → fsync → rename → fsync dir (its content is what a node
// enforces). Records and the runtime's in-use set are renamed into place atomically but not
// flushed (the in-use set's recovery is described in inuse-set.ts): after a crash they are
// either intact, absent or unreadable, and an unreadable record counts as absent (the artifact
// is pulled and verified again), so a flush there would buy nothing but 4–5 ms per pull. The
// blob is renamed before its record, and a cached pull checks the blob is there. A new record is
// linked into place (create-if-absent), so a first pull takes no lock; only a record that exists
// is updated under its lock. Several processes may share one store. Only the flushes leave the
// event loop: the metadata steps are synchronous (fsutil.ts).

import { isDigest, type Digest } from '../core/digest.js';
import { BlobReader } from './blob-reader.js';
import { StoreCollector, type CollectOptions, type CollectResult } from './collect.js';
import { EffectiveOrigins, type EffectiveInput } from './effective.js';
import { InUseSet } from './inuse-set.js';
import { exists, StoreLayout, type StoreLayoutOptions } from './layout.js';
import type { IngestInput, InvalidVerdict, ProvenanceRecord, RecordInput, SignatureVerdict, StoreEntry } from './record-format.js';
import { RecordStore, type Ingested, type StagedAhead, type StagedBlob, type StagedRecord } from './records.js';

export { blobBytes, type CollectResult } from './collect.js';
export type { EffectiveBase, EffectiveInput } from './effective.js';
export type { Ingested, StagedAhead, StagedBlob, StagedRecord } from './records.js';
export type { IngestInput, InvalidVerdict, PlatformManifest, ProvenanceRecord, RecordInput, SignatureVerdict, StoreEntry } from './record-format.js';
export { verdictUnder } from './record-format.js';

export interface ProfileStoreOptions extends StoreLayoutOptions {
  /**
   * The artifact rules this process judges content by, recorded with each content verdict: a
   * verdict recorded under other rules counts as none (records.ts getInvalid). The CLI and the
   * shim pass their build (src/cli/version.ts contentRules). Default ''.
   */
  contentRules?: string;
}

export class ProfileStore {
  readonly root: string;
  private readonly layout: StoreLayout;
  private readonly records: RecordStore;
  private readonly blobs: BlobReader;
  private readonly holders: InUseSet;
  private readonly effective: EffectiveOrigins;
  private readonly collector: StoreCollector;

  constructor(opts: ProfileStoreOptions) {
    this.layout = new StoreLayout(opts);
    this.root = this.layout.root;
    this.blobs = new BlobReader(this.layout);
    this.records = new RecordStore(this.layout, opts.contentRules ?? '', this.blobs);
    this.holders = new InUseSet(this.layout);
    this.effective = new EffectiveOrigins(this.layout);
    this.collector = new StoreCollector(this.layout, this.records, this.blobs, this.holders, this.effective);
  }

  blobPath(d: Digest): string {
    return this.layout.blobPath(d);
  }

  /** Makes the temp files of `preparedTempFiles` ahead (fsutil.ts TempDir); resolves when they are. */
  prepareTempFiles(): Promise<void> {
    return this.layout.temp.prepare();
  }

  // ---- records, blobs and verdicts (records.ts, blob-reader.ts) ----

  getRecord(d: Digest): Promise<ProvenanceRecord | undefined> {
    return this.records.getRecord(d);
  }

  has(d: Digest): Promise<boolean> {
    return this.records.has(d);
  }

  readProfile(d: Digest, opts: { verify?: boolean } = {}): Promise<{ record: ProvenanceRecord; bytes: Buffer }> {
    return this.records.readProfile(d, opts);
  }

  readManifest(d: Digest): Promise<Buffer> {
    return this.records.readManifest(d);
  }

  hasBlob(d: Digest): Promise<boolean> {
    return this.blobs.hasBlob(d);
  }

  readBlob(d: Digest, opts: { verify?: boolean } = {}): Promise<Buffer> {
    return this.blobs.readBlob(d, opts);
  }

  checkBlob(d: Digest): Promise<void> {
    return this.blobs.checkBlob(d);
  }

  /**
   * `early`: the blob and record staged ahead (stageBlob, stageRecord), placed instead of written
   * again. `abandoned`: once it fires, nothing is placed (the pull was answered with a refusal).
   */
  ingest(input: IngestInput, early?: StagedAhead, abandoned?: AbortSignal): Promise<Ingested> {
    // A pull is a use (docs/gc.md, last use), and the kubelet creates next. One merged into a
    // record already there (fetched again with a pod's credentials, or for a lost blob) keeps that
    // record's first pull time, so it is noted as a cached pull is, before the record is updated:
    // a gc run under way then keeps the record (collect.ts noteUse). A new record's pull time says
    // as much. A digest no path can be made from is refused by the ingest, which removes what was
    // staged for it.
    if (isDigest(input.digest) && exists(this.layout.recordPath(input.digest))) this.collector.noteUse(input.digest);
    return this.records.ingest(input, early, abandoned);
  }

  /** `size`: the profile's, in bytes. */
  stageRecord(input: RecordInput, size: number): Promise<StagedRecord> {
    return this.records.stageRecord(input, size);
  }

  stageBlob(layerDigest: Digest, bytes: Uint8Array): Promise<StagedBlob> {
    return this.records.stageBlob(layerDigest, bytes);
  }

  annotate(d: Digest, update: { reference?: string; verdict?: { policyHash: string } & Omit<SignatureVerdict, 'at'> }): Promise<void> {
    return this.records.annotate(d, update);
  }

  forget(d: Digest): Promise<{ invalid: boolean; signatures: number }> {
    return this.records.forget(d);
  }

  recordInvalid(d: Digest, reason: string): Promise<void> {
    return this.records.recordInvalid(d, reason);
  }

  getInvalid(d: Digest): Promise<InvalidVerdict | undefined> {
    return this.records.getInvalid(d);
  }

  // ---- in-use set and pins (inuse-set.ts) ----

  markInUse(d: Digest, holder: string): Promise<boolean> {
    return this.holders.markInUse(d, holder);
  }

  transferInUse(from: string, to: string, d: Digest): Promise<boolean> {
    return this.holders.transferInUse(from, to, d);
  }

  release(holder: string): Promise<boolean> {
    return this.holders.release(holder);
  }

  replaceInUse(holders: ReadonlyMap<string, Digest>, prefixes?: readonly string[], opts: { complete?: boolean; seen?: ReadonlySet<string> } = {}): Promise<void> {
    return this.holders.replaceInUse(holders, prefixes, opts);
  }

  inUse(): Promise<Map<Digest, string[]>> {
    return this.holders.inUse();
  }

  inUseState(): Promise<{ byDigest: Map<Digest, string[]>; complete: boolean }> {
    return this.holders.inUseState();
  }

  /** See InUseSet.markIncomplete. */
  markInUseIncomplete(): Promise<void> {
    return this.holders.markIncomplete();
  }

  inUseHolders(d: Digest): Promise<string[]> {
    return this.holders.inUseHolders(d);
  }

  // ---- effective-file origins (effective.ts) ----

  recordEffective(sha: string, d: Digest, input?: EffectiveInput): Promise<void> {
    return this.effective.recordEffective(sha, d, input);
  }

  /** The identity of effective file `<sha>.json`'s origins record (effective.ts), undefined when there is none. */
  originsIdentity(sha: string): string | undefined {
    return this.effective.originsIdentity(sha);
  }

  effectiveDigests(sha: string): Promise<Digest[]> {
    return this.effective.effectiveDigests(sha);
  }

  effectiveInputs(sha: string): Promise<(EffectiveInput & { digest: Digest })[]> {
    return this.effective.effectiveInputs(sha);
  }

  // ---- listing, removal, gc, verification (collect.ts) ----

  list(): Promise<StoreEntry[]> {
    return this.collector.list();
  }

  remove(d: Digest): Promise<void> {
    return this.collector.remove(d);
  }

  gc(opts: { dryRun?: boolean; minAgeMs?: number } = {}): Promise<{ removed: Digest[]; kept: Digest[]; inUseComplete: boolean }> {
    return this.collector.gc(opts);
  }

  collect(opts: CollectOptions): Promise<CollectResult> {
    return this.collector.collect(opts);
  }

  /**
   * `digest` was used now without a holder: a cached pull, after which the kubelet creates its
   * containers. Kept in memory (nothing written on the pull path) until the next gc run, which
   * takes it for the artifact's last use (collect.ts). False when its record is gone (a gc run
   * removed it since the caller looked): the caller fetches again instead of answering from here.
   */
  noteUse(digest: Digest): boolean {
    return this.collector.noteUse(digest);
  }

  verify(): Promise<{ ok: Digest[]; corrupt: { digest: Digest; reason: string }[] }> {
    return this.collector.verify();
  }
}
