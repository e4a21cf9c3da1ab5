// Content-addressed profile store (DESIGN §2, §3 step 9; issue 3 item 5).
//
// Layout under `root` (every path is built from a digest's hex, never from input text):
//   blobs/sha256/<hex>          profile bytes, named by their own sha256 (one copy per content)
//   profiles/sha256/<hex>.json  one record per artifact (manifest digest): the manifest bytes,
//                               kind, layer, provenance, signature verdicts keyed by policy hash
//   invalid/sha256/<hex>.json   permanent SecurityProfileInvalid verdicts (never re-fetched)
//   state/in-use.json           holders (e.g. "container:<id>", "pin:<name>") → artifact digest
//   tmp/                        temp files, renamed into place (same filesystem)
//   locks/                      short-lived O_EXCL locks for read-modify-write of records
// Writers: the profile blob goes temp → fsync → rename → fsync dir (its content is what a node
// enforces). Records and the runtime's in-use set are renamed into place atomically but not
// flushed: after a crash they are either intact, absent or unreadable, and an unreadable record
// counts as absent (the artifact is pulled and verified again), so a flush there would buy
// nothing but 4–5 ms per pull. The blob is renamed before its record, and a cached pull checks
// the blob is there. Several processes may share one store.

import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { digestHex, isDigest, sha256Digest, type Digest } from '../core/digest.js';
import { SpokeError } from '../core/errors.js';
import type { ProfileKind } from '../core/constants.js';
import { systemClock, type Clock } from '../core/runtime.js';
import { commitStaged, discardStaged, readFileIfExists, stageFile, writeFileAtomic, type StagedFile } from './fsutil.js';
import { withFileLock } from './lock.js';

export interface SignatureVerdict {
  signer: string;
  format: 'bundle' | 'cosign';
  identity?: string;
  at: string;
}

export interface ProvenanceRecord {
  schemaVersion: 1;
  digest: Digest; // the artifact (manifest) digest
  /** The manifest's exact bytes, base64 (kept for re-verifying signatures without a fetch). */
  manifest: string;
  kind: ProfileKind;
  layerDigest: Digest;
  size: number; // profile bytes
  references: string[]; // digest references it was pulled as (bounded)
  rule: string; // the policy rule that admitted the first pull
  pulledAt: string;
  servedBy: string;
  /** policy hash → verdict; "unsigned" rules record nothing here. */
  verdicts: Record<string, SignatureVerdict>;
  /**
   * Fetched at least once with the node's own credentials (or none), so any pod may reuse it
   * (KEP-2535's rule for images). Absent: only fetched with a pod's credentials, or recorded
   * before this was kept; a pod then fetches it again as itself.
   */
  nodeCredentials?: true;
  /**
   * Set when `digest` names a multi-architecture index (docs/multi-arch.md): then `manifest` holds
   * the index's bytes (signatures are on the index digest) and this the manifest taken for the
   * node's platform, whose single layer is `layerDigest`.
   */
  platform?: PlatformManifest;
}

/** The platform's artifact manifest chosen from an index: its digest, exact bytes (base64) and platform. */
export interface PlatformManifest {
  digest: Digest;
  manifest: string;
  os: string;
  architecture: string;
  variant?: string;
}

export interface InvalidVerdict {
  digest: Digest;
  reason: string;
  at: string;
  /**
   * Always `content`: the verdict depends on the bytes alone. Verdict files without it were
   * written by versions that also cached request-dependent refusals (kind, size limit), and
   * are ignored.
   */
  scope: 'content';
}

export interface StoreEntry extends ProvenanceRecord {
  inUse: string[];
}

export interface IngestInput {
  digest: Digest;
  manifestBytes: Uint8Array;
  layerDigest: Digest;
  layerBytes: Uint8Array;
  kind: ProfileKind;
  reference: string;
  rule: string;
  servedBy: string;
  /** Fetched with the node's credentials (no per-request AuthConfig). */
  nodeCredentials?: boolean;
  verdict?: { policyHash: string } & Omit<SignatureVerdict, 'at'>;
  /** `digest` is an index: the manifest taken from it for this node's platform. */
  platform?: { digest: Digest; manifestBytes: Uint8Array; os: string; architecture: string; variant?: string };
}

const MAX_REFERENCES_PER_RECORD = 32;
const MAX_VERDICTS_PER_RECORD = 16;

export interface ProfileStoreOptions {
  root: string;
  clock?: Clock;
  /** false skips fsync (tests and benchmarks that measure the floor without it). Default true. */
  fsync?: boolean;
}

export class ProfileStore {
  readonly root: string;
  private readonly clock: Clock;
  private readonly fsync: boolean;
  private ready: Promise<void> | undefined;
  /** Parsed records, reused while the file's identity (ino, size, mtime) is unchanged. */
  private readonly recordCache = new Map<string, { key: string; record: ProvenanceRecord }>();
  private readonly blobsSeen = new Set<Digest>();

  constructor(opts: ProfileStoreOptions) {
    if (!opts.root) throw new SpokeError('InvalidArgument', 'store root directory is required');
    this.root = opts.root;
    this.clock = opts.clock ?? systemClock;
    this.fsync = opts.fsync ?? true;
  }

  private init(): Promise<void> {
    this.ready ??= (async () => {
      for (const d of ['blobs/sha256', 'profiles/sha256', 'invalid/sha256', 'state', 'tmp', 'locks']) {
        await mkdir(join(this.root, d), { recursive: true, mode: 0o755 });
      }
    })();
    return this.ready;
  }

  blobPath(d: Digest): string {
    return join(this.root, 'blobs', 'sha256', digestHex(assertDigest(d)));
  }

  private recordPath(d: Digest): string {
    return join(this.root, 'profiles', 'sha256', `${digestHex(assertDigest(d))}.json`);
  }

  private invalidPath(d: Digest): string {
    return join(this.root, 'invalid', 'sha256', `${digestHex(assertDigest(d))}.json`);
  }

  private get tmpDir(): string {
    return join(this.root, 'tmp');
  }

  private write(target: string, data: Uint8Array | string): Promise<void> {
    return writeFileAtomic(target, data, this.tmpDir, { fsync: this.fsync });
  }

  private lock<T>(name: string, fn: () => Promise<T>): Promise<T> {
    return withFileLock(join(this.root, 'locks', `${name}.lock`), fn);
  }

  /** The record of an artifact, or undefined. Cheap when unchanged since the last read (one stat). */
  async getRecord(d: Digest): Promise<ProvenanceRecord | undefined> {
    await this.init();
    const path = this.recordPath(d);
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
    if (!record) throw new SpokeError('NotFound', `${d} is not in the store`, { digest: d });
    const bytes = await this.readBlob(record.layerDigest, opts);
    return { record, bytes };
  }

  /** The artifact's manifest bytes, checked against its digest. */
  async readManifest(d: Digest): Promise<Buffer> {
    const record = await this.getRecord(d);
    if (!record) throw new SpokeError('NotFound', `${d} is not in the store`, { digest: d });
    const bytes = Buffer.from(record.manifest, 'base64');
    const actual = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
    if (actual !== d) throw new SpokeError('SecurityProfileInvalid', `stored manifest of ${d} is corrupt (hashes to ${actual})`, { digest: d, expected: d, actual });
    return bytes;
  }

  /**
   * True when the profile blob a record names is present (a cached pull checks it). A blob seen
   * once is remembered: blobs are removed only through remove()/gc(), which forget them, and a
   * blob deleted behind the store's back fails closed when the profile is read at apply time.
   */
  async hasBlob(d: Digest): Promise<boolean> {
    if (this.blobsSeen.has(d)) return true;
    const present = await exists(this.blobPath(d));
    if (present) this.blobsSeen.add(d);
    return present;
  }

  async readBlob(d: Digest, opts: { verify?: boolean } = {}): Promise<Buffer> {
    await this.init();
    const bytes = await readFileIfExists(this.blobPath(d));
    if (!bytes) throw new SpokeError('NotFound', `blob ${d} is not in the store`, { digest: d });
    if (opts.verify) {
      const actual = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
      if (actual !== d) {
        throw new SpokeError('SecurityProfileInvalid', `stored blob ${d} is corrupt (hashes to ${actual})`, { digest: d, expected: d, actual });
      }
    }
    return bytes;
  }

  /** Stores an artifact that passed every check; the record (written last) makes it visible. */
  async ingest(input: IngestInput): Promise<string> {
    await this.init();
    const blobPath = this.blobPath(input.layerDigest);
    const now = new Date(this.clock.now()).toISOString();
    const staged: StagedFile[] = [];
    try {
      // Content-addressed: an existing blob file already holds these bytes (one copy).
      const blob = (await exists(blobPath)) ? undefined : stageFile(blobPath, input.layerBytes, this.tmpDir, { fsync: this.fsync });
      await this.lock(digestHex(input.digest), async () => {
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
        const [stagedBlob, stagedRecord] = await Promise.all([blob, stageFile(this.recordPath(input.digest), JSON.stringify(record, null, 1) + '\n', this.tmpDir, { fsync: false })]);
        if (stagedBlob) staged.push(stagedBlob);
        staged.push(stagedRecord);
        await commitStaged(staged);
        this.recordCache.delete(input.digest);
      });
    } catch (e) {
      await discardStaged(staged);
      throw e;
    }
    await rm(this.invalidPath(input.digest), { force: true });
    return blobPath;
  }

  /** Adds a reference and/or a verdict to an existing record (cached pulls, re-verification). */
  async annotate(d: Digest, update: { reference?: string; verdict?: { policyHash: string } & Omit<SignatureVerdict, 'at'> }): Promise<void> {
    await this.lock(digestHex(d), async () => {
      const existing = await this.getRecord(d);
      if (!existing) throw new SpokeError('NotFound', `${d} is not in the store`, { digest: d });
      const record = structuredClone(existing);
      if (update.reference) addReference(record, update.reference);
      if (update.verdict) {
        const { policyHash, ...v } = update.verdict;
        setVerdict(record, policyHash, { ...v, at: new Date(this.clock.now()).toISOString() });
      }
      await writeFileAtomic(this.recordPath(d), JSON.stringify(record, null, 1) + '\n', this.tmpDir, { fsync: false });
      this.recordCache.delete(d);
    });
  }

  /**
   * Forgets every verdict on `d`: the invalid verdict, and the signature verdicts of its record
   * (the profile itself stays; the next pull judges and verifies it again).
   */
  async forget(d: Digest): Promise<{ invalid: boolean; signatures: number }> {
    await this.init();
    const invalid = (await readFileIfExists(this.invalidPath(d))) !== undefined;
    await rm(this.invalidPath(d), { force: true });
    let signatures = 0;
    await this.lock(digestHex(d), async () => {
      const existing = await this.getRecord(d);
      if (!existing) return;
      signatures = Object.keys(existing.verdicts).length;
      if (signatures === 0) return;
      const record = { ...structuredClone(existing), verdicts: {} };
      await writeFileAtomic(this.recordPath(d), JSON.stringify(record, null, 1) + '\n', this.tmpDir, { fsync: false });
      this.recordCache.delete(d);
    });
    return { invalid, signatures };
  }

  /** Remembers that the content of `d` is not an acceptable profile. Only for verdicts on the content alone. */
  async recordInvalid(d: Digest, reason: string): Promise<void> {
    await this.init();
    const v: InvalidVerdict = { digest: d, reason: reason.slice(0, 1024), at: new Date(this.clock.now()).toISOString(), scope: 'content' };
    await this.write(this.invalidPath(d), JSON.stringify(v) + '\n');
  }

  /**
   * The content verdict on `d`, if any. A file that cannot be read or lacks `scope: content`
   * counts as none: the digest is fetched and judged again, which records a fresh verdict.
   */
  async getInvalid(d: Digest): Promise<InvalidVerdict | undefined> {
    await this.init();
    const bytes = await readFileIfExists(this.invalidPath(d));
    if (!bytes) return undefined;
    try {
      const v = JSON.parse(bytes.toString('utf8')) as Partial<InvalidVerdict>;
      if (v.scope !== 'content' || typeof v.reason !== 'string') return undefined;
      return { digest: d, reason: v.reason, at: typeof v.at === 'string' ? v.at : '', scope: 'content' };
    } catch {
      return undefined;
    }
  }

  // ---- in-use set (filled by the shim; pins by `spoke pull --pin`) ----

  private get inUsePath(): string {
    return join(this.root, 'state', 'in-use.json');
  }

  private async readInUse(): Promise<Record<string, Digest>> {
    const bytes = await readFileIfExists(this.inUsePath);
    if (!bytes) return {};
    const parsed = JSON.parse(bytes.toString('utf8')) as { holders?: Record<string, string> };
    const out: Record<string, Digest> = {};
    for (const [holder, d] of Object.entries(parsed.holders ?? {})) if (isDigest(d)) out[holder] = d;
    return out;
  }

  /**
   * Read-modify-write of the in-use set under its lock. Runtime holders (containers, sandboxes)
   * are rebuilt from the runtime whenever the shim starts or reconnects, so their updates are
   * atomic but not flushed (no fsync on the CreateContainer path); pins exist only here, so
   * changes that touch a pin are flushed.
   */
  private async updateInUse(fn: (holders: Record<string, Digest>) => void, durable: boolean): Promise<void> {
    await this.init();
    await this.lock('in-use', async () => {
      const holders = await this.readInUse();
      fn(holders);
      await writeFileAtomic(this.inUsePath, JSON.stringify({ holders }, null, 1) + '\n', this.tmpDir, { fsync: this.fsync && durable });
    });
  }

  /** Records that `holder` (e.g. `container:<id>`) uses artifact `d`; gc keeps it while held. */
  markInUse(d: Digest, holder: string): Promise<void> {
    assertDigest(d);
    return this.updateInUse((h) => {
      h[holder] = d;
    }, holder.startsWith('pin:'));
  }

  /** Hands `d` from one holder to another in one update (a pending create becoming its container). */
  transferInUse(from: string, to: string, d: Digest): Promise<void> {
    assertDigest(d);
    return this.updateInUse((h) => {
      delete h[from];
      h[to] = d;
    }, from.startsWith('pin:') || to.startsWith('pin:'));
  }

  release(holder: string): Promise<void> {
    return this.updateInUse((h) => {
      delete h[holder];
    }, holder.startsWith('pin:'));
  }

  /** Replaces every holder whose name starts with `prefix` (e.g. the runtime's) with `holders`. */
  replaceInUse(holders: ReadonlyMap<string, Digest>, prefixes: readonly string[] = ['container:', 'sandbox:']): Promise<void> {
    return this.updateInUse((h) => {
      for (const k of Object.keys(h)) if (prefixes.some((p) => k.startsWith(p))) delete h[k];
      for (const [k, d] of holders) h[k] = assertDigest(d);
    }, false);
  }

  async inUse(): Promise<Map<Digest, string[]>> {
    await this.init();
    const out = new Map<Digest, string[]>();
    for (const [holder, d] of Object.entries(await this.readInUse())) {
      const list = out.get(d) ?? [];
      list.push(holder);
      out.set(d, list);
    }
    return out;
  }

  async inUseHolders(d: Digest): Promise<string[]> {
    return (await this.inUse()).get(d) ?? [];
  }

  // ---- listing, removal, gc, verification ----

  async list(): Promise<StoreEntry[]> {
    await this.init();
    const inUse = await this.inUse();
    const out: StoreEntry[] = [];
    for (const name of await readdir(join(this.root, 'profiles', 'sha256'))) {
      const m = /^([0-9a-f]{64})\.json$/.exec(name);
      if (!m) continue;
      const record = await this.getRecord(`sha256:${m[1]}`);
      if (record) out.push({ ...record, inUse: inUse.get(record.digest) ?? [] });
    }
    return out.sort((a, b) => a.pulledAt.localeCompare(b.pulledAt) || a.digest.localeCompare(b.digest));
  }

  /** Removes an artifact. Refused (FailedPrecondition) while a container, sandbox or pin holds it. */
  async remove(d: Digest): Promise<void> {
    const holders = await this.inUseHolders(d);
    if (holders.length > 0) {
      throw new SpokeError('FailedPrecondition', `${d} is in use by ${holders.slice(0, 5).join(', ')}${holders.length > 5 ? ', …' : ''}`, { digest: d });
    }
    const record = await this.getRecord(d);
    if (!record) throw new SpokeError('NotFound', `${d} is not in the store`, { digest: d });
    await this.lock(digestHex(d), async () => {
      await rm(this.recordPath(d), { force: true });
      this.recordCache.delete(d);
    });
    await this.removeUnreferencedBlobs([record.layerDigest]);
  }

  /** Deletes blobs among `candidates` that no remaining record names. */
  private async removeUnreferencedBlobs(candidates: Digest[]): Promise<void> {
    const referenced = new Set<string>();
    for (const r of await this.list()) referenced.add(r.layerDigest);
    for (const c of candidates) {
      if (referenced.has(c)) continue;
      this.blobsSeen.delete(c);
      await rm(this.blobPath(c), { force: true });
    }
  }

  /**
   * Removes every artifact no holder uses and not pulled within `minAgeMs`, then blobs no record
   * names and temp files older than an hour (leftovers of crashed writers).
   */
  async gc(opts: { dryRun?: boolean; minAgeMs?: number } = {}): Promise<{ removed: Digest[]; kept: Digest[] }> {
    const now = this.clock.now();
    const removed: Digest[] = [];
    const kept: Digest[] = [];
    for (const entry of await this.list()) {
      const young = now - Date.parse(entry.pulledAt) < (opts.minAgeMs ?? 0);
      if (entry.inUse.length > 0 || young) {
        kept.push(entry.digest);
        continue;
      }
      removed.push(entry.digest);
      if (!opts.dryRun) {
        try {
          await this.remove(entry.digest);
        } catch (e) {
          // Became in use between listing and removal: keep it.
          if (e instanceof SpokeError && e.code === 'FailedPrecondition') {
            removed.pop();
            kept.push(entry.digest);
          } else throw e;
        }
      }
    }
    if (!opts.dryRun) await this.sweep(now);
    return { removed, kept };
  }

  private async sweep(now: number): Promise<void> {
    const referenced = new Set<string>();
    for (const r of await this.list()) referenced.add(digestHex(r.layerDigest));
    const blobDir = join(this.root, 'blobs', 'sha256');
    for (const name of await readdir(blobDir)) {
      if (/^[0-9a-f]{64}$/.test(name) && !referenced.has(name)) {
        this.blobsSeen.delete(`sha256:${name}`);
        // A concurrent ingest writes blobs before its record: leave young blobs alone.
        const st = await stat(join(blobDir, name)).catch(() => undefined);
        if (st && now - st.mtimeMs > 60_000) await rm(join(blobDir, name), { force: true });
      }
    }
    for (const name of await readdir(this.tmpDir)) {
      const st = await stat(join(this.tmpDir, name)).catch(() => undefined);
      if (st && now - st.mtimeMs > 3_600_000) await rm(join(this.tmpDir, name), { force: true });
    }
  }

  /** Re-hashes every blob of every record; returns the digests whose bytes are wrong or missing. */
  async verify(): Promise<{ ok: Digest[]; corrupt: { digest: Digest; reason: string }[] }> {
    const ok: Digest[] = [];
    const corrupt: { digest: Digest; reason: string }[] = [];
    for (const r of await this.list()) {
      try {
        await this.readManifest(r.digest);
        if (r.platform && sha256Digest(Buffer.from(r.platform.manifest, 'base64')) !== r.platform.digest) throw new Error(`stored manifest of platform ${r.platform.digest} is corrupt`);
        await this.readBlob(r.layerDigest, { verify: true });
        ok.push(r.digest);
      } catch (e) {
        corrupt.push({ digest: r.digest, reason: (e as Error).message });
      }
    }
    return { ok, corrupt };
  }
}

function platformManifest(p: NonNullable<IngestInput['platform']>): PlatformManifest {
  const { digest, manifestBytes, os, architecture, variant } = p;
  return { digest, manifest: Buffer.from(manifestBytes).toString('base64'), os, architecture, ...(variant !== undefined ? { variant } : {}) };
}

function assertDigest(d: string): Digest {
  if (!isDigest(d)) throw new SpokeError('InvalidArgument', `not a sha256 digest: ${JSON.stringify(String(d).slice(0, 80))}`);
  return d;
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

function addReference(record: ProvenanceRecord, reference: string): void {
  if (record.references.includes(reference)) return;
  record.references.push(reference);
  if (record.references.length > MAX_REFERENCES_PER_RECORD) record.references.shift();
}

function setVerdict(record: ProvenanceRecord, policyHash: string, v: SignatureVerdict): void {
  record.verdicts[policyHash] = v;
  const keys = Object.keys(record.verdicts);
  // Oldest verdicts first out: only the current policy's verdict matters.
  if (keys.length > MAX_VERDICTS_PER_RECORD) {
    keys.sort((a, b) => record.verdicts[a]!.at.localeCompare(record.verdicts[b]!.at));
    delete record.verdicts[keys[0]!];
  }
}

function parseRecord(bytes: Buffer, d: Digest): ProvenanceRecord | undefined {
  let r: ProvenanceRecord;
  try {
    r = JSON.parse(bytes.toString('utf8')) as ProvenanceRecord;
  } catch {
    return undefined;
  }
  const ok = typeof r === 'object' && r !== null && r.schemaVersion === 1 && r.digest === d && isDigest(r.layerDigest) && typeof r.manifest === 'string' && Array.isArray(r.references) && typeof r.verdicts === 'object' && (r.platform === undefined || (isDigest(r.platform.digest) && typeof r.platform.manifest === 'string'));
  return ok ? r : undefined;
}
