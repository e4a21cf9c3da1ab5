// Listing, removal, gc and verification of the store: what `spoke store gc|verify|rm` and the
// shim's gc by last use (src/cri/gc.ts, docs/gc.md) run.

import { randomUUID } from 'node:crypto';
import { readdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { digestHex, sha256Digest, type Digest } from '../core/digest.js';
import { SpokeError } from '../core/errors.js';
import { renameUnlessGone, writeFileAtomic } from './fsutil.js';
import { lastUseAt, lastUsePath, readLastUse, type LastUse } from './last-use.js';
import { exists, SHA_HEX_RE, SHA_JSON_FILE_RE, type StoreLayout } from './layout.js';
import type { ProvenanceRecord, StoreEntry } from './record-format.js';
import type { BlobReader } from './blob-reader.js';
import { isOurAside, RECORD_ASIDE_PREFIX } from './record-aside.js';
import type { RecordStore } from './records.js';
import type { InUseSet } from './inuse-set.js';
import type { EffectiveOrigins } from './effective.js';

/** Cached pulls' uses kept in memory between gc runs (collect.ts noteUse), at most: one entry per digest pulled. */
const MAX_NOTED_USES = 65_536;
/** Blobs being removed are moved aside under this prefix in their directory (removeBlobs). */
const REMOVING_PREFIX = '.removing-';


export class StoreCollector {
  /**
   * When this object began noting uses. Cached pulls are noted in memory only and written down by
   * the next run: a shim that stopped or crashed before one took its uses with it, so any
   * artifact may have been used just before that, and each counts as used at this moment. A
   * moment stamped while the clock ran ahead counts as the first run that sees it so (as
   * lastUseAt reads any stamp in the future).
   */
  private openedAt: number;

  constructor(
    private readonly layout: StoreLayout,
    private readonly records: RecordStore,
    private readonly blobs: BlobReader,
    private readonly holders: InUseSet,
    private readonly effective: EffectiveOrigins,
  ) {
    this.openedAt = layout.clock.now();
  }

  /** Every record with its holders, oldest pull first. */
  async list(): Promise<StoreEntry[]> {
    await this.layout.init();
    const inUse = await this.holders.inUse();
    const out: StoreEntry[] = [];
    for (const record of await this.records.listRecords()) out.push({ ...record, inUse: inUse.get(record.digest) ?? [] });
    return out.sort((a, b) => a.pulledAt.localeCompare(b.pulledAt) || a.digest.localeCompare(b.digest));
  }

  /**
   * Removes an artifact. Refused (FailedPrecondition) while a container, sandbox or pin holds it,
   * and while the runtime holders are unknown (unreadable in-use set not yet rebuilt).
   */
  async remove(d: Digest): Promise<void> {
    const layer = await this.removeRecord(d);
    const named = new Set((await this.list()).map((r) => r.layerDigest));
    if (!named.has(layer)) await this.removeBlobs([layer]);
  }

  /**
   * The record of `d` removed, as remove() refuses or allows it; its blob is left to the caller.
   * `keep` is asked in the step that unlinks the record (a use noted since a gc run began).
   */
  private async removeRecord(d: Digest, keep?: () => boolean): Promise<Digest> {
    const state = await this.holders.inUseState();
    if (!state.complete) {
      throw new SpokeError('FailedPrecondition', `${d} not removed: the in-use set is being rebuilt from the runtime (a shim started, or the set was unreadable); try again once the shim has rebuilt it`, { digest: d }, { reason: 'IN_USE' });
    }
    const holders = state.byDigest.get(d) ?? [];
    if (holders.length > 0) {
      throw new SpokeError('FailedPrecondition', `${d} is in use by ${holders.slice(0, 5).join(', ')}${holders.length > 5 ? ', …' : ''}`, { digest: d }, { reason: 'IN_USE' });
    }
    const record = await this.records.getRecord(d);
    if (!record) throw new SpokeError('NotFound', `${d} is not in the store`, { digest: d }, { reason: 'NOT_FOUND' });
    const unheld = async () => {
      const now = await this.holders.inUseState();
      return now.complete && !now.byDigest.has(d);
    };
    const outcome = await this.records.deleteRecord(d, keep ?? (() => false), unheld);
    if (outcome === 'used') throw new SpokeError('FailedPrecondition', `${d} not removed: used since the gc run began`, { digest: d }, { reason: 'IN_USE' });
    if (outcome === 'held') throw new SpokeError('FailedPrecondition', `${d} not removed: a create recorded its holder while it was being removed`, { digest: d }, { reason: 'IN_USE' });
    return record.layerDigest;
  }

  /**
   * Deletes the blobs among `candidates`, which no record named when the caller listed them. An
   * ingest may link a record naming one meanwhile (it does not write a blob that exists): each
   * blob is moved aside first, the records are listed again, and a blob a record names now is put
   * back. The ingest looks for its blob after linking its record and writes it again when it is
   * gone (records.ts), so one of the two always sees the other. A crash in between leaves the
   * blob aside, never the record's claim to it: the next sweep puts it back (or the next pull
   * finds it missing and fetches it again). A blob another process put back first is left as it is.
   */
  private async removeBlobs(candidates: readonly Digest[]): Promise<void> {
    const aside: { d: Digest; moved: string }[] = [];
    for (const d of candidates) {
      const moved = join(this.layout.root, 'blobs', 'sha256', `${REMOVING_PREFIX}${digestHex(d)}-${randomUUID()}`);
      try {
        await rename(this.layout.blobPath(d), moved);
        aside.push({ d, moved });
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      }
    }
    if (aside.length === 0) return;
    // The records alone: a failure to read the in-use set here would leave the blobs aside.
    const named = new Set((await this.records.listRecords()).map((r) => r.layerDigest));
    for (const { d, moved } of aside) {
      if (named.has(d)) renameUnlessGone(moved, this.layout.blobPath(d));
      else await rm(moved, { force: true });
    }
  }

  /**
   * Removes `d`'s record for a gc run (its blob goes in the run's sweep): kept when it became held
   * or was used (a cached pull: noteUse) since it was listed, gone when another process removed it
   * first. `spoke store gc` keeps no uses: its process pulls nothing.
   */
  private async removeListed(d: Digest): Promise<'removed' | 'kept' | 'gone'> {
    try {
      await this.removeRecord(d, () => this.noted.has(d));
      return 'removed';
    } catch (e) {
      if (e instanceof SpokeError && e.code === 'FailedPrecondition') return 'kept';
      if (e instanceof SpokeError && e.code === 'NotFound') return 'gone';
      throw e;
    }
  }

  /**
   * Removes every artifact no holder uses and not pulled within `minAgeMs`, then blobs no record
   * names and temp files older than an hour (leftovers of crashed writers).
   */
  async gc(opts: { dryRun?: boolean; minAgeMs?: number } = {}): Promise<{ removed: Digest[]; kept: Digest[]; inUseComplete: boolean }> {
    const now = this.layout.clock.now();
    const removed: Digest[] = [];
    const kept: Digest[] = [];
    // Runtime holders unknown (in-use.json unreadable, not yet rebuilt by the shim): any artifact
    // may be in use, so nothing is removed.
    if (!(await this.holders.inUseState()).complete) {
      return { removed, kept: (await this.list()).map((e) => e.digest), inUseComplete: false };
    }
    for (const entry of await this.list()) {
      const young = now - Date.parse(entry.pulledAt) < (opts.minAgeMs ?? 0);
      if (entry.inUse.length > 0 || young) {
        kept.push(entry.digest);
        continue;
      }
      const outcome = opts.dryRun ? 'removed' : await this.removeListed(entry.digest);
      if (outcome === 'removed') removed.push(entry.digest);
      else if (outcome === 'kept') kept.push(entry.digest);
    }
    if (!opts.dryRun) await this.sweep(now);
    return { removed, kept, inUseComplete: true };
  }

  private async sweep(now: number): Promise<void> {
    // Records a crashed removal left aside go back before the records are listed (and their
    // blobs judged); they are no old temp files.
    await this.records.settleAside();
    await sweepOldTemp(this.layout.tmpDir, now, RECORD_ASIDE_PREFIX);
    await this.layout.sweepLockOwners();
    const entries = await this.list();
    // A held artifact without a readable record (records are not flushed: a crash can leave one
    // torn) still needs its blob and its effective files' origins, and which blob is its is
    // unknown: no blob is removed and no origin pruned until a pull writes its record again.
    const listed = new Set<string>(entries.map((e) => e.digest));
    for (const d of (await this.holders.inUseState()).byDigest.keys()) if (!listed.has(d)) return;
    const referenced = new Set<string>();
    for (const r of entries) referenced.add(digestHex(r.layerDigest));
    const blobDir = join(this.layout.root, 'blobs', 'sha256');
    const unreferenced: Digest[] = [];
    const names = await readdir(blobDir);
    const present = new Set(names);
    for (const name of names) {
      const blob = SHA_HEX_RE.test(name);
      if (blob ? referenced.has(name) : !name.startsWith(REMOVING_PREFIX)) continue;
      // Moved aside by a removal that crashed before it put it back, and named by a record: back.
      const asideOf = blob ? undefined : name.slice(REMOVING_PREFIX.length, REMOVING_PREFIX.length + 64);
      if (asideOf !== undefined && referenced.has(asideOf) && !present.has(asideOf)) {
        renameUnlessGone(join(blobDir, name), join(blobDir, asideOf));
        present.add(asideOf);
        continue;
      }
      const st = await stat(join(blobDir, name)).catch(() => undefined);
      if (st === undefined) continue;
      // A concurrent ingest writes blobs before its record: leave young blobs alone.
      if (blob && now - st.mtimeMs > 60_000) unreferenced.push(`sha256:${name}`);
      // Moved aside by a removal that crashed before it ended (removeBlobs; a rename sets ctime).
      else if (!blob && now - st.ctimeMs > 3_600_000) await rm(join(blobDir, name), { force: true });
    }
    await this.removeBlobs(unreferenced);
    await this.effective.prune((d) => this.records.has(d));
  }

  // ---- the shim's gc by last use (src/cri/gc.ts, docs/gc.md; the file: last-use.ts) ----
  //
  // An artifact's last use is the later of what last-use.json says and its pull; an effective
  // file's the later of that and its mtime (written at a create). A time in the future was stamped
  // while the clock ran ahead: it counts as the first run that saw it so (lastUseAt).

  /**
   * Uses noted since the running or last run took them (ProfileStore.noteUse), by digest, at most
   * MAX_NOTED_USES (twice that once a failed run gave back what it took). A run removes no
   * artifact with a use noted here (removeRecord checks it in the step that unlinks the record).
   */
  private noted = new Map<Digest, number>();

  /**
   * Notes a use of `digest` (a cached pull) and says whether its record is still there. Noted and
   * checked in one synchronous step: a gc run's removal is one too (removeRecord), so either the
   * run sees the use and keeps the record, or the caller sees it gone and fetches again.
   */
  noteUse(digest: Digest): boolean {
    // A full map is dropped whole: those uses then fall back to pull times, as before notes.
    if (this.noted.size >= MAX_NOTED_USES && !this.noted.has(digest)) this.noted.clear();
    this.noted.set(digest, this.layout.clock.now());
    return exists(this.layout.recordPath(digest));
  }

  /**
   * One gc run of the shim. Nothing is removed while the runtime holders are incomplete. Effective
   * files `<effectiveDir>/<64 hex>.json` (no other name is touched) go when no live object names
   * them (`effectiveInUse`), none of the artifacts they were merged from is held, and they were
   * last used at least `minAgeMs` ago. Artifacts no holder uses go once last used `minAgeMs` ago;
   * then, while the profile bytes exceed `maxStoreBytes`, unused ones least recently used first.
   * The caller keeps creates from resolving profiles meanwhile (src/cri/gc.ts).
   */
  async collect(opts: CollectOptions): Promise<CollectResult> {
    await this.layout.init();
    const now = this.layout.clock.now();
    const state = await this.holders.inUseState();
    if (!state.complete) {
      const entries = await this.list();
      return { complete: false, removed: [], effectiveRemoved: [], invalidRemoved: 0, artifacts: entries.length, bytes: blobBytes(entries) };
    }
    if (this.openedAt > now) this.openedAt = now;
    const last = await readLastUse(this.layout.root);
    // The run takes the uses noted so far: those noted from here on keep their artifacts from this
    // run (removeListed) and wait for the next. A run that fails gives back what it took, which
    // it has not written down.
    const taken = this.noted;
    this.noted = new Map();
    try {
      return await this.collectAfterUses(opts, now, state.byDigest, last, taken);
    } catch (e) {
      for (const [d, at] of taken) this.noted.set(d, Math.max(this.noted.get(d) ?? 0, at));
      throw e;
    }
  }

  private async collectAfterUses(opts: CollectOptions, now: number, byDigest: ReadonlyMap<Digest, string[]>, last: LastUse, taken: ReadonlyMap<Digest, number>): Promise<CollectResult> {
    for (const d of byDigest.keys()) last.artifacts[d] = now;
    for (const [d, at] of taken) last.artifacts[d] = Math.max(last.artifacts[d] ?? 0, at);
    for (const uses of [last.artifacts, last.effective]) for (const [k, at] of Object.entries(uses)) uses[k] = Math.min(at, now);

    const effectiveRemoved: string[] = [];
    let names: string[] = [];
    try {
      names = await readdir(opts.effectiveDir);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
    const present = new Set<string>();
    for (const name of names) {
      const sha = SHA_JSON_FILE_RE.exec(name)?.[1];
      if (sha === undefined) continue;
      present.add(sha);
      const held = opts.effectiveInUse.has(sha) || (await this.effective.effectiveDigests(sha)).some((d) => byDigest.has(d));
      if (held) {
        last.effective[sha] = now;
        continue;
      }
      const st = await stat(join(opts.effectiveDir, name)).catch(() => undefined);
      if (!st?.isFile()) continue;
      if (now - lastUseAt(st.mtimeMs, last.effective, last.ahead, sha, now) < opts.minAgeMs) continue;
      await rm(join(opts.effectiveDir, name), { force: true });
      effectiveRemoved.push(sha);
      present.delete(sha);
    }

    const removed: Digest[] = [];
    let entries = await this.list();
    const lastUses = new Map(entries.map((e) => [e.digest, lastUseAt(Date.parse(e.pulledAt) || 0, last.artifacts, last.ahead, e.digest, now)]));
    const lastUseOf = (e: StoreEntry): number => lastUses.get(e.digest)!;
    const gone = new Set<string>();
    const tryRemove = async (e: StoreEntry): Promise<boolean> => {
      const outcome = await this.removeListed(e.digest);
      if (outcome === 'removed') removed.push(e.digest);
      if (outcome === 'gone') gone.add(e.digest);
      return outcome !== 'kept';
    };
    for (const e of entries) if (e.inUse.length === 0 && now - Math.max(lastUseOf(e), this.openedAt) >= opts.minAgeMs) await tryRemove(e);
    entries = entries.filter((e) => !removed.includes(e.digest) && !gone.has(e.digest));
    if (opts.maxStoreBytes !== undefined && blobBytes(entries) > opts.maxStoreBytes) {
      const lru = entries.filter((e) => e.inUse.length === 0).sort((a, b) => lastUseOf(a) - lastUseOf(b) || a.digest.localeCompare(b.digest));
      for (const e of lru) {
        if (blobBytes(entries) <= opts.maxStoreBytes) break;
        if (await tryRemove(e)) entries = entries.filter((x) => x.digest !== e.digest);
      }
    }
    const invalidRemoved = await this.removeOldVerdicts(now, opts.minAgeMs);
    await this.sweep(now);
    // The shim's other temp directories: effective files and the recording's logging profile.
    await sweepOldTemp(join(opts.effectiveDir, '.tmp'), now);
    await sweepOldTemp(join(this.layout.root, 'recording', '.tmp'), now);

    const kept = new Set<string>(entries.map((e) => e.digest));
    for (const d of Object.keys(last.artifacts)) if (!kept.has(d)) delete last.artifacts[d];
    for (const sha of Object.keys(last.effective)) if (!present.has(sha)) delete last.effective[sha];
    for (const k of Object.keys(last.ahead)) if (!(k in last.artifacts) && !(k in last.effective)) delete last.ahead[k];
    await writeFileAtomic(lastUsePath(this.layout.root), JSON.stringify(last) + '\n', this.layout.temp, { fsync: false });
    return { complete: true, removed, effectiveRemoved, invalidRemoved, artifacts: entries.length, bytes: blobBytes(entries) };
  }

  /**
   * Removes the content verdicts (invalid/) written `minAgeMs` or more before `now`, or after it
   * (while the clock ran ahead); returns how many. A verdict is only a cache, one file per digest
   * judged: without it the digest is fetched and judged again, and without this a namespace could
   * grow the directory for good with distinct broken artifacts.
   */
  private async removeOldVerdicts(now: number, minAgeMs: number): Promise<number> {
    const dir = join(this.layout.root, 'invalid', 'sha256');
    let removed = 0;
    for (const name of await readdir(dir)) {
      if (!SHA_JSON_FILE_RE.test(name)) continue;
      const st = await stat(join(dir, name)).catch(() => undefined);
      if (!st?.isFile()) continue;
      const age = now - st.mtimeMs;
      if (age >= 0 && age < minAgeMs) continue;
      await rm(join(dir, name), { force: true });
      removed++;
    }
    return removed;
  }

  /** Re-hashes every blob of every record; returns the digests whose bytes are wrong or missing. */
  async verify(): Promise<{ ok: Digest[]; corrupt: { digest: Digest; reason: string }[] }> {
    const ok: Digest[] = [];
    const corrupt: { digest: Digest; reason: string }[] = [];
    for (const r of await this.list()) {
      try {
        await this.records.readManifest(r.digest);
        if (r.platform && sha256Digest(Buffer.from(r.platform.manifest, 'base64')) !== r.platform.digest) throw new Error(`stored manifest of platform ${r.platform.digest} is corrupt`);
        await this.blobs.readBlob(r.layerDigest, { verify: true });
        ok.push(r.digest);
      } catch (e) {
        corrupt.push({ digest: r.digest, reason: (e as Error).message });
      }
    }
    return { ok, corrupt };
  }
}

export interface CollectOptions {
  minAgeMs: number;
  maxStoreBytes?: number | undefined;
  effectiveDir: string;
  effectiveInUse: ReadonlySet<string>;
}

export interface CollectResult {
  /** False: the in-use set was incomplete and nothing was removed. */
  complete: boolean;
  removed: Digest[];
  effectiveRemoved: string[];
  /** Content verdicts (invalid/) removed. */
  invalidRemoved: number;
  /** What the store holds after the run. */
  artifacts: number;
  bytes: number;
}

/** Profile bytes on disk: each blob once (spoke_store_bytes, and gc's maxStoreBytes). */
export function blobBytes(entries: readonly Pick<ProvenanceRecord, 'layerDigest' | 'size'>[]): number {
  const seen = new Map<string, number>();
  for (const e of entries) seen.set(e.layerDigest, e.size);
  let n = 0;
  for (const v of seen.values()) n += v;
  return n;
}

/**
 * Removes the files in `dir` (if any) older than an hour: leftovers of writers that crashed. Records
 * moved aside (names starting with `skip`, regular files spoke wrote) are another's to settle.
 */
async function sweepOldTemp(dir: string, now: number, skip?: string): Promise<void> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw e;
  }
  for (const name of names) {
    if (skip !== undefined && name.startsWith(skip) && isOurAside(join(dir, name))) continue;
    const st = await stat(join(dir, name)).catch(() => undefined);
    if (st?.isFile() && now - st.mtimeMs > 3_600_000) await rm(join(dir, name), { force: true });
  }
}
