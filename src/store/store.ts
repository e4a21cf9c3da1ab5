// Content-addressed profile store (DESIGN §2, §3 step 9; issue 3 item 5).
//
// Layout under `root` (every path is built from a digest's hex, never from input text):
//   blobs/sha256/<hex>          profile bytes, named by their own sha256 (one copy per content)
//   profiles/sha256/<hex>.json  one record per artifact (manifest digest): the manifest bytes,
//                               kind, layer, provenance, signature verdicts keyed by policy hash
//   invalid/sha256/<hex>.json   permanent SecurityProfileInvalid verdicts (never re-fetched)
//   state/in-use.json           runtime holders ("container:<id>", "pending:…") → artifact digest
//   state/pins.json             pins ("pin:<name>") → artifact digest (flushed)
//   state/effective/<sha>.json  artifacts an effective seccomp file was merged from, and with
//                               which pod reference and base profile (`spoke ps`)
//   state/last-use.json         when the shim's gc last saw each artifact / effective file used
//   tmp/                        temp files, renamed into place (same filesystem)
//   locks/                      short-lived O_EXCL locks for read-modify-write of records
// Writers: the profile blob goes temp → fsync → rename → fsync dir (its content is what a node
// enforces). Records and the runtime's in-use set are renamed into place atomically but not
// flushed (the in-use set's recovery is described at its section below): after a crash they are either intact, absent or unreadable, and an unreadable record
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

  // ---- in-use set (runtime holders filled by the shim; pins by `spoke pull --pin`) ----
  //
  // Two files. state/in-use.json holds the runtime's holders (`container:`, `sandbox:`,
  // `pending:`, `apparmor:…`): renamed atomically but not flushed (no fsync on the
  // CreateContainer path), so a crash or power loss can leave it empty or torn. An unreadable
  // file counts as empty *and incomplete*: writes go on (CreateContainer never fails on it) but
  // the file keeps `complete: false` until the shim's rebuild from the runtime replaces every
  // runtime holder (replaceInUse); while incomplete, gc and remove keep everything. Pins are an
  // admin's intent that exists nowhere else: state/pins.json, flushed on every change, and an
  // unreadable pins file is an error, never "no pins". Pins found in an older in-use.json are
  // moved to pins.json (flushed) before that file is rewritten without them.
  //
  // state/effective/<sha>.json lists the artifact digests whose merge produced the effective
  // seccomp file <seccompRoot>/spoke/<sha>.json, so a rebuild can map a container whose runtime
  // config names that file back to the artifact it holds. Written once per pair, flushed.

  private get inUsePath(): string {
    return join(this.root, 'state', 'in-use.json');
  }

  private get pinsPath(): string {
    return join(this.root, 'state', 'pins.json');
  }

  private effectivePath(sha: string): string {
    if (!SHA_HEX_RE.test(sha)) throw new SpokeError('InvalidArgument', `not a sha256 hex: ${JSON.stringify(String(sha).slice(0, 80))}`);
    return join(this.root, 'state', 'effective', `${sha}.json`);
  }

  /** The runtime holders; an unreadable file is empty and incomplete. Pins of older files are returned apart. */
  private async readRuntime(): Promise<RuntimeHolders & { legacyPins: Record<string, Digest> }> {
    const bytes = await readFileIfExists(this.inUsePath);
    if (!bytes) return { holders: {}, complete: true, legacyPins: {} };
    const parsed = parseHolderFile(bytes);
    if (!parsed) return { holders: {}, complete: false, legacyPins: {} };
    const holders: Record<string, Digest> = {};
    const legacyPins: Record<string, Digest> = {};
    for (const [h, d] of Object.entries(parsed.holders)) (isPin(h) ? legacyPins : holders)[h] = d;
    return { holders, complete: parsed.complete, legacyPins };
  }

  private async readPins(): Promise<Record<string, Digest>> {
    const bytes = await readFileIfExists(this.pinsPath);
    if (!bytes) return {};
    const parsed = parseHolderFile(bytes);
    if (!parsed) throw new SpokeError('Internal', `${this.pinsPath} is unreadable; pins are kept only there, so nothing is removed until it is repaired`, { file: this.pinsPath });
    return parsed.holders;
  }

  private async updatePins(fn: (pins: Record<string, Digest>) => void): Promise<void> {
    await this.init();
    await this.lock('pins', async () => {
      const pins = await this.readPins();
      fn(pins);
      await writeFileAtomic(this.pinsPath, JSON.stringify({ holders: pins }, null, 1) + '\n', this.tmpDir, { fsync: this.fsync });
    });
  }

  /**
   * Read-modify-write of the runtime holders under their lock (atomic, not flushed: see above).
   * `complete` true marks the set rebuilt from the runtime. Returns whether the set is complete
   * after the write: false tells the caller to rebuild it from the runtime.
   */
  private async updateRuntime(fn: (holders: Record<string, Digest>) => void, complete?: boolean): Promise<boolean> {
    await this.init();
    return this.lock('in-use', async () => {
      const cur = await this.readRuntime();
      const legacy = Object.entries(cur.legacyPins);
      if (legacy.length > 0) await this.updatePins((p) => legacy.forEach(([h, d]) => (p[h] ??= d)));
      fn(cur.holders);
      const done = complete ?? cur.complete;
      await writeFileAtomic(this.inUsePath, JSON.stringify({ holders: cur.holders, complete: done }, null, 1) + '\n', this.tmpDir, { fsync: false });
      return done;
    });
  }

  /**
   * Records that `holder` (e.g. `container:<id>`, `pin:<name>`) uses artifact `d`; gc keeps it
   * while held. Resolves false when the runtime holders were unreadable (rebuild them).
   */
  async markInUse(d: Digest, holder: string): Promise<boolean> {
    assertDigest(d);
    if (isPin(holder)) {
      await this.updatePins((p) => {
        p[holder] = d;
      });
      return true;
    }
    return this.updateRuntime((h) => {
      h[holder] = d;
    });
  }

  /** Hands `d` from one runtime holder to another in one update (a pending create becoming its container). */
  async transferInUse(from: string, to: string, d: Digest): Promise<boolean> {
    assertDigest(d);
    if (isPin(from) || isPin(to)) throw new SpokeError('InvalidArgument', 'pins are not transferred');
    return this.updateRuntime((h) => {
      delete h[from];
      h[to] = d;
    });
  }

  async release(holder: string): Promise<boolean> {
    if (isPin(holder)) {
      await this.updatePins((p) => {
        delete p[holder];
      });
      return true;
    }
    return this.updateRuntime((h) => {
      delete h[holder];
    });
  }

  /**
   * The shim's rebuild: replaces every runtime holder whose name starts with one of `prefixes`
   * with `holders` (pins live elsewhere and are never touched). `complete` (default true) says
   * the rebuild saw everything the runtime runs; false leaves the set marked incomplete.
   */
  async replaceInUse(holders: ReadonlyMap<string, Digest>, prefixes: readonly string[] = ['container:', 'sandbox:'], opts: { complete?: boolean } = {}): Promise<void> {
    for (const k of holders.keys()) if (isPin(k)) throw new SpokeError('InvalidArgument', 'pins are not runtime holders');
    await this.updateRuntime((h) => {
      for (const k of Object.keys(h)) if (prefixes.some((p) => k.startsWith(p))) delete h[k];
      for (const [k, d] of holders) h[k] = assertDigest(d);
    }, opts.complete ?? true);
  }

  /** Every holder (runtime and pins) by artifact digest. */
  async inUse(): Promise<Map<Digest, string[]>> {
    return (await this.inUseState()).byDigest;
  }

  /**
   * Every holder by digest, and whether the runtime holders are known complete (false after a
   * crash left in-use.json unreadable, until the shim's next rebuild).
   */
  async inUseState(): Promise<{ byDigest: Map<Digest, string[]>; complete: boolean }> {
    await this.init();
    const runtime = await this.readRuntime();
    const pins = await this.readPins();
    const byDigest = new Map<Digest, string[]>();
    for (const [holder, d] of [...Object.entries(runtime.holders), ...Object.entries(runtime.legacyPins), ...Object.entries(pins)]) {
      const list = byDigest.get(d) ?? [];
      if (!list.includes(holder)) list.push(holder);
      byDigest.set(d, list);
    }
    return { byDigest, complete: runtime.complete };
  }

  async inUseHolders(d: Digest): Promise<string[]> {
    return (await this.inUse()).get(d) ?? [];
  }

  /**
   * Remembers that effective seccomp file `<sha>.json` was merged from artifact `d` (flushed),
   * and, when given, the pod's reference and base profile of that merge (bounded list).
   */
  async recordEffective(sha: string, d: Digest, input?: EffectiveInput): Promise<void> {
    assertDigest(d);
    const path = this.effectivePath(sha);
    await this.init();
    await this.lock(`effective-${sha}`, async () => {
      const known = await this.readEffective(sha);
      const digests = known.digests.includes(d) ? known.digests : [...known.digests, d];
      let inputs = known.inputs;
      if (input !== undefined) {
        const entry: EffectiveInput & { digest: Digest } = { digest: d, reference: input.reference, ...(input.base ? { base: input.base } : {}) };
        const key = JSON.stringify(entry);
        if (!inputs.some((i) => JSON.stringify(i) === key)) inputs = [...inputs, entry].slice(-MAX_EFFECTIVE_INPUTS);
      }
      if (digests === known.digests && inputs === known.inputs) return;
      await writeFileAtomic(path, JSON.stringify({ digests, ...(inputs.length > 0 ? { inputs } : {}) }) + '\n', this.tmpDir, { fsync: this.fsync });
    });
  }

  /** The artifacts whose merge produced effective file `<sha>.json` (empty when unknown). */
  async effectiveDigests(sha: string): Promise<Digest[]> {
    return (await this.readEffective(sha)).digests;
  }

  /** The merges recorded for effective file `<sha>.json`: artifact, pod reference, base profile. */
  async effectiveInputs(sha: string): Promise<(EffectiveInput & { digest: Digest })[]> {
    return (await this.readEffective(sha)).inputs;
  }

  private async readEffective(sha: string): Promise<{ digests: Digest[]; inputs: (EffectiveInput & { digest: Digest })[] }> {
    const none = { digests: [], inputs: [] };
    const bytes = await readFileIfExists(this.effectivePath(sha));
    if (!bytes) return none;
    let parsed: { digests?: unknown; inputs?: unknown };
    try {
      parsed = JSON.parse(bytes.toString('utf8')) as typeof parsed;
    } catch {
      return none;
    }
    const digests = Array.isArray(parsed.digests) ? parsed.digests.filter((d): d is Digest => typeof d === 'string' && isDigest(d)) : [];
    const inputs = Array.isArray(parsed.inputs) ? parsed.inputs.flatMap((i) => parseEffectiveInput(i)) : [];
    return { digests, inputs };
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

  /**
   * Removes an artifact. Refused (FailedPrecondition) while a container, sandbox or pin holds it,
   * and while the runtime holders are unknown (unreadable in-use set not yet rebuilt).
   */
  async remove(d: Digest): Promise<void> {
    const state = await this.inUseState();
    if (!state.complete) {
      throw new SpokeError('FailedPrecondition', `${d} not removed: the in-use set is being rebuilt from the runtime (it was unreadable); try again once the shim has rebuilt it`, { digest: d });
    }
    const holders = state.byDigest.get(d) ?? [];
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
  async gc(opts: { dryRun?: boolean; minAgeMs?: number } = {}): Promise<{ removed: Digest[]; kept: Digest[]; inUseComplete: boolean }> {
    const now = this.clock.now();
    const removed: Digest[] = [];
    const kept: Digest[] = [];
    // Runtime holders unknown (in-use.json unreadable, not yet rebuilt by the shim): any artifact
    // may be in use, so nothing is removed.
    if (!(await this.inUseState()).complete) {
      return { removed, kept: (await this.list()).map((e) => e.digest), inUseComplete: false };
    }
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
    return { removed, kept, inUseComplete: true };
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
    await this.pruneEffective();
  }

  /** Forgets effective-file origins whose artifacts are no longer stored (a file left with none goes). */
  private async pruneEffective(): Promise<void> {
    const names = await readdir(join(this.root, 'state', 'effective')).catch(() => [] as string[]);
    for (const name of names) {
      const sha = /^([0-9a-f]{64})\.json$/.exec(name)?.[1];
      if (sha === undefined) continue;
      await this.lock(`effective-${sha}`, async () => {
        const known = await this.effectiveDigests(sha);
        const kept: Digest[] = [];
        for (const d of known) if (await this.has(d)) kept.push(d);
        if (kept.length === known.length) return;
        if (kept.length === 0) await rm(this.effectivePath(sha), { force: true });
        else await writeFileAtomic(this.effectivePath(sha), JSON.stringify({ digests: kept }) + '\n', this.tmpDir, { fsync: this.fsync });
      });
    }
  }

  // ---- the shim's gc by last use (src/cri/gc.ts, docs/gc.md) ----
  //
  // state/last-use.json records, per artifact and per effective file, the last gc run that saw
  // it used (held, or named by a live object's runtime config). An artifact's last use is the
  // later of that and its pull; an effective file's the later of that and its mtime (written at
  // a create). Written by gc runs only: nothing on the pull or create path.

  private get lastUsePath(): string {
    return join(this.root, 'state', 'last-use.json');
  }

  private async readLastUse(): Promise<LastUse> {
    const out: LastUse = { artifacts: {}, effective: {} };
    const bytes = await readFileIfExists(this.lastUsePath);
    if (!bytes) return out;
    try {
      const parsed = JSON.parse(bytes.toString('utf8')) as { artifacts?: unknown; effective?: unknown };
      for (const [k, v] of Object.entries(isPlainObject(parsed.artifacts) ? parsed.artifacts : {})) if (isDigest(k) && Number.isSafeInteger(v)) out.artifacts[k] = v as number;
      for (const [k, v] of Object.entries(isPlainObject(parsed.effective) ? parsed.effective : {})) if (SHA_HEX_RE.test(k) && Number.isSafeInteger(v)) out.effective[k] = v as number;
    } catch {
      // Torn (not flushed): last uses fall back to pull times and file mtimes.
    }
    return out;
  }

  /**
   * One gc run of the shim. Nothing is removed while the runtime holders are incomplete. Effective
   * files `<effectiveDir>/<64 hex>.json` (no other name is touched) go when no live object names
   * them (`effectiveInUse`), none of the artifacts they were merged from is held, and they were
   * last used at least `minAgeMs` ago. Artifacts no holder uses go once last used `minAgeMs` ago;
   * then, while the profile bytes exceed `maxStoreBytes`, unused ones least recently used first.
   * The caller keeps creates from resolving profiles meanwhile (src/cri/gc.ts).
   */
  async collect(opts: { minAgeMs: number; maxStoreBytes?: number | undefined; effectiveDir: string; effectiveInUse: ReadonlySet<string> }): Promise<CollectResult> {
    await this.init();
    const now = this.clock.now();
    const state = await this.inUseState();
    if (!state.complete) {
      const entries = await this.list();
      return { complete: false, removed: [], effectiveRemoved: [], artifacts: entries.length, bytes: blobBytes(entries) };
    }
    const last = await this.readLastUse();
    for (const d of state.byDigest.keys()) last.artifacts[d] = now;

    const effectiveRemoved: string[] = [];
    let names: string[] = [];
    try {
      names = await readdir(opts.effectiveDir);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
    const present = new Set<string>();
    for (const name of names) {
      const sha = EFFECTIVE_FILE_RE.exec(name)?.[1];
      if (sha === undefined) continue;
      present.add(sha);
      const held = opts.effectiveInUse.has(sha) || (await this.effectiveDigests(sha)).some((d) => state.byDigest.has(d));
      if (held) {
        last.effective[sha] = now;
        continue;
      }
      const st = await stat(join(opts.effectiveDir, name)).catch(() => undefined);
      if (!st?.isFile()) continue;
      if (now - Math.max(st.mtimeMs, last.effective[sha] ?? 0) < opts.minAgeMs) continue;
      await rm(join(opts.effectiveDir, name), { force: true });
      effectiveRemoved.push(sha);
      present.delete(sha);
    }

    const removed: Digest[] = [];
    let entries = await this.list();
    const lastUseOf = (e: StoreEntry): number => Math.max(Date.parse(e.pulledAt) || 0, last.artifacts[e.digest] ?? 0);
    const tryRemove = async (e: StoreEntry): Promise<boolean> => {
      try {
        await this.remove(e.digest);
      } catch (err) {
        // Became held since it was listed: kept.
        if (err instanceof SpokeError && err.code === 'FailedPrecondition') return false;
        throw err;
      }
      removed.push(e.digest);
      return true;
    };
    for (const e of entries) if (e.inUse.length === 0 && now - lastUseOf(e) >= opts.minAgeMs) await tryRemove(e);
    entries = entries.filter((e) => !removed.includes(e.digest));
    if (opts.maxStoreBytes !== undefined && blobBytes(entries) > opts.maxStoreBytes) {
      const lru = entries.filter((e) => e.inUse.length === 0).sort((a, b) => lastUseOf(a) - lastUseOf(b) || a.digest.localeCompare(b.digest));
      for (const e of lru) {
        if (blobBytes(entries) <= opts.maxStoreBytes) break;
        if (await tryRemove(e)) entries = entries.filter((x) => x.digest !== e.digest);
      }
    }
    await this.sweep(now);

    const kept = new Set<string>(entries.map((e) => e.digest));
    for (const d of Object.keys(last.artifacts)) if (!kept.has(d)) delete last.artifacts[d];
    for (const sha of Object.keys(last.effective)) if (!present.has(sha)) delete last.effective[sha];
    await writeFileAtomic(this.lastUsePath, JSON.stringify(last) + '\n', this.tmpDir, { fsync: false });
    return { complete: true, removed, effectiveRemoved, artifacts: entries.length, bytes: blobBytes(entries) };
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

const SHA_HEX_RE = /^[0-9a-f]{64}$/;
const EFFECTIVE_FILE_RE = /^([0-9a-f]{64})\.json$/;
const MAX_EFFECTIVE_INPUTS = 32;

/** The base profile of a merge: RuntimeDefault, or a Localhost file by path and the sha256 of the bytes merged. */
export type EffectiveBase = { type: 'RuntimeDefault' } | { type: 'Localhost'; path: string; sha256: string };

/** What a pod asked for when an effective file was merged: its reference as written, and its base. */
export interface EffectiveInput {
  reference: string;
  base?: EffectiveBase;
}

export interface CollectResult {
  /** False: the in-use set was incomplete and nothing was removed. */
  complete: boolean;
  removed: Digest[];
  effectiveRemoved: string[];
  /** What the store holds after the run. */
  artifacts: number;
  bytes: number;
}

interface LastUse {
  artifacts: Record<string, number>;
  effective: Record<string, number>;
}

/** Profile bytes on disk: each blob once. */
function blobBytes(entries: readonly ProvenanceRecord[]): number {
  const seen = new Map<string, number>();
  for (const e of entries) seen.set(e.layerDigest, e.size);
  let n = 0;
  for (const v of seen.values()) n += v;
  return n;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function parseEffectiveInput(v: unknown): (EffectiveInput & { digest: Digest })[] {
  if (!isPlainObject(v) || typeof v.digest !== 'string' || !isDigest(v.digest) || typeof v.reference !== 'string') return [];
  const b = v.base;
  let base: EffectiveBase | undefined;
  if (isPlainObject(b) && b.type === 'RuntimeDefault') base = { type: 'RuntimeDefault' };
  else if (isPlainObject(b) && b.type === 'Localhost' && typeof b.path === 'string' && typeof b.sha256 === 'string' && SHA_HEX_RE.test(b.sha256)) base = { type: 'Localhost', path: b.path, sha256: b.sha256 };
  else if (b !== undefined) return [];
  return [{ digest: v.digest, reference: v.reference, ...(base ? { base } : {}) }];
}

interface RuntimeHolders {
  holders: Record<string, Digest>;
  /** False from a read of an unreadable file until a rebuild (replaceInUse) rewrites the set. */
  complete: boolean;
}

const isPin = (holder: string): boolean => holder.startsWith('pin:');

/** `{holders: {name: digest}, complete?}`; undefined when the bytes are not that (torn, garbage). */
function parseHolderFile(bytes: Buffer): RuntimeHolders | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(bytes.toString('utf8'));
  } catch {
    return undefined;
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return undefined;
  const { holders, complete } = parsed as { holders?: unknown; complete?: unknown };
  if (typeof holders !== 'object' || holders === null || Array.isArray(holders)) return undefined;
  const out: Record<string, Digest> = {};
  for (const [holder, d] of Object.entries(holders)) if (typeof d === 'string' && isDigest(d)) out[holder] = d;
  return { holders: out, complete: complete !== false };
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
