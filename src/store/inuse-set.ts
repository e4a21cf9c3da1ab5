// The in-use set (runtime holders filled by the shim; pins by `spoke pull --pin`)
//
// Runtime holders (`container:`, `sandbox:`, `pending:`, `apparmor:…`) live in a snapshot,
// state/in-use.json, and a journal of the changes since, state/in-use.log: one JSON line per
// update (`{"del":[holder…],"set":{holder:digest…}}`, written after a newline so that a torn
// tail never swallows the next line), appended with a single write(2) and no lock. A create makes two updates before it answers, and rewriting the snapshot for each cost
// ~0.5 ms here (a new temp file, and a rename over the old file, which makes ext4 allocate and
// free blocks at once); an append costs a few microseconds (docs/benchmarks.md).
//
// Compaction (under the `in-use` lock: the rebuild's replaceInUse, or once the journal passes
// COMPACT_BYTES) renames the journal to in-use.log.old, folds it into a new snapshot, renames
// that into place and removes the old journal; a leftover in-use.log.old (a crash mid-way) is
// folded first. No append is lost to it: after its write, an appender checks that in-use.log is
// still the file it wrote to, before closing it (a removed file's inode number is free for a new
// file only once its last descriptor is closed); if the compaction renamed it away first, the
// line may have missed the fold and is appended again to the new journal (applying a line twice
// changes nothing: holder names are never reused, so no later line undoes it). A reader takes
// the snapshot, the journal and then the old journal (which is the journal it read, told by its
// inode, when a fold renamed it in between), and starts again if the snapshot changed meanwhile.
//
// Neither file is flushed (no fsync on the CreateContainer path), so a crash or power loss can
// leave them empty or torn. An unreadable snapshot or journal counts as empty *and incomplete*:
// writes go on (CreateContainer never fails on it) but the set stays `complete: false` until the
// shim's rebuild from the runtime replaces every runtime holder (replaceInUse); while incomplete,
// gc and remove keep everything. Pins are an admin's intent that exists nowhere else:
// state/pins.json, flushed on every change, and an unreadable pins file is an error, never "no
// pins". Pins found in an older in-use.json are moved to pins.json (flushed) at its next
// compaction.
//
// Each file counts only if spoke wrote it (readStoreFileSync): one another user owns, or a link,
// is unreadable as a torn one is (an incomplete set; pins refused), never absent, since its owner
// could rewrite the holders gc keeps. The next compaction or pins update renames a new file over
// it, and no append is made to such a journal: it is renamed away and folded first
// (docs/security-model.md#atomic-store).

import { closeSync, constants, fstatSync, openSync, renameSync, statSync, writeSync, type Stats } from 'node:fs';
import { type Digest, isDigest } from '../core/digest.js';
import { SpokeError } from '../core/errors.js';
import { removeIfExists, writeFileAtomic } from './fsutil.js';
import { fstatOpened, notSpokesFile, readStoreFileSync, writtenByUs, type StoreFileRead } from './store-reads.js';
import { assertDigest, type StoreLayout } from './layout.js';

/** The journal is folded into the snapshot once it is this long (~200 creates). */
const COMPACT_BYTES = 64 * 1024;
/** Appends whose journal was renamed away under them, and reads whose snapshot changed, are tried this often. */
const ATTEMPTS = 5;

/** One journal line: holders removed, then holders set. */
interface Change {
  del?: string[];
  set?: Record<string, Digest>;
}

interface RuntimeState extends RuntimeHolders {
  legacyPins: Record<string, Digest>;
}

/** A snapshot's identity: a compaction's rename changes the inode, a rewrite in place the size or mtime. */
const sameFile = (a: Stats | undefined, b: Stats | undefined): boolean =>
  a === undefined || b === undefined ? a === b : a.ino === b.ino && a.size === b.size && a.mtimeMs === b.mtimeMs;

const statIfExists = (path: string): Stats | undefined => statSync(path, { throwIfNoEntry: false });

export class InUseSet {
  /** The snapshot this process last read, and whether it was complete (saves a read per append). */
  private seen: { file: Stats | undefined; complete: boolean } | undefined;
  private compacting: Promise<void> | undefined;
  /** The journal as this process's last append left it. */
  private journalEnd: { ino: number; size: number } | undefined;

  constructor(private readonly layout: StoreLayout) {}

  private get inUsePath(): string {
    return this.layout.statePath('in-use.json');
  }

  private get journalPath(): string {
    return this.layout.statePath('in-use.log');
  }

  private get oldJournalPath(): string {
    return this.layout.statePath('in-use.log.old');
  }

  private get pinsPath(): string {
    return this.layout.statePath('pins.json');
  }

  /** The snapshot's runtime holders; an unreadable file is empty and incomplete. Pins of older files are returned apart. */
  private readSnapshot(file: Stats | undefined): RuntimeState {
    const state = snapshotState(readStoreFileSync(this.inUsePath));
    this.seen = { file, complete: state.complete };
    return state;
  }

  /**
   * The runtime holders: snapshot, journal and old journal read consistently (see the header);
   * undefined when a compaction changed the snapshot under every attempt.
   */
  private readRuntimeOnce(attempts = ATTEMPTS): RuntimeState | undefined {
    for (let attempt = 1; attempt <= attempts; attempt++) {
      const before = statIfExists(this.inUsePath);
      const state = this.readSnapshot(before);
      const journal = readStoreFileSync(this.journalPath);
      const old = readStoreFileSync(this.oldJournalPath);
      if (!sameFile(before, statIfExists(this.inUsePath))) continue;
      // The old journal holds the earlier changes. Read after the journal, it can be that same file,
      // renamed meanwhile (with any lines appended since): then it alone has them all, in order.
      const oldWhole = applyJournal(state.holders, old);
      const sameJournal = typeof old === 'object' && typeof journal === 'object' && journal.st.ino === old.st.ino;
      const journalWhole = sameJournal || applyJournal(state.holders, journal);
      const complete = state.complete && oldWhole && journalWhole;
      this.seen = { file: before, complete };
      return { ...state, complete };
    }
    return undefined;
  }

  /**
   * As readRuntimeOnce, then under the lock (no compaction runs) when compactions kept changing
   * the snapshot; a snapshot still changing there (rewritten by hand) is an incomplete set.
   */
  private async readRuntime(): Promise<RuntimeState> {
    const incomplete = (): RuntimeState => ({ holders: {}, complete: false, legacyPins: {} });
    // A reader that takes no lock (StoreLayoutOptions.readOnly) calls a set still changing incomplete.
    if (this.layout.readOnly) return this.readRuntimeOnce() ?? incomplete();
    return this.readRuntimeOnce() ?? (await this.layout.lock('in-use', async () => this.readRuntimeOnce() ?? incomplete()));
  }

  private async readPins(): Promise<Record<string, Digest>> {
    const read = readStoreFileSync(this.pinsPath);
    if (read === 'absent') return {};
    const parsed = read === 'foreign' ? undefined : parseHolderFile(read.bytes);
    if (!parsed) throw new SpokeError('Internal', `${this.pinsPath} is unreadable, or not a file spoke wrote; pins are kept only there, so nothing is removed until it is repaired`, { file: this.pinsPath }, { reason: 'STATE_CORRUPT' });
    return parsed.holders;
  }

  private async updatePins(fn: (pins: Record<string, Digest>) => void): Promise<void> {
    await this.layout.init();
    await this.layout.lock('pins', async () => {
      const pins = await this.readPins();
      fn(pins);
      await writeFileAtomic(this.pinsPath, JSON.stringify({ holders: pins }, null, 1) + '\n', this.layout.temp, this.layout.durable);
    });
  }

  /**
   * Appends one change to the journal (see the header). Returns whether the set is complete: false
   * tells the caller to rebuild it from the runtime.
   */
  private async appendRuntime(change: Change): Promise<boolean> {
    await this.layout.init();
    const line = Buffer.from('\n' + JSON.stringify(change));
    for (let attempt = 1; attempt <= ATTEMPTS; attempt++) {
      const fd = this.openJournal();
      // Not spoke's (see the header): renamed away and folded, the change with it.
      if (fd === undefined) return this.compact((h) => applyChange(h, change));
      let written: Stats;
      let now: Stats | undefined;
      try {
        // A regular file takes less than asked only when the disk is full (or a size limit): the
        // rest of the line is never written, and the holder was not recorded.
        const n = writeSync(fd, line);
        if (n !== line.length) {
          throw new SpokeError('Unavailable', `in-use journal ${this.journalPath}: ${n} of ${line.length} bytes written (disk full?); the holder was not recorded`, { file: this.journalPath, expected: line.length, actual: n }, { reason: 'FILE_UNWRITABLE' });
        }
        written = fstatSync(fd);
        // Looked at while the file is still open: a journal a compaction removed keeps its inode
        // number only until its last close, and a new journal created after that can get the same
        // number (ext4 reuses it at once), which would pass for the file written to.
        now = statIfExists(this.journalPath);
      } finally {
        closeSync(fd);
      }
      if (now === undefined || now.ino !== written.ino || now.dev !== written.dev) continue;
      // Anything but our own line since our last append (another writer, a torn tail, a new
      // journal): the set is read again, so a torn line there is seen and the set rebuilt.
      const ours = this.journalEnd !== undefined && this.journalEnd.ino === written.ino && this.journalEnd.size + line.length === written.size;
      this.journalEnd = { ino: written.ino, size: written.size };
      if (written.size > COMPACT_BYTES) this.compactSoon();
      return ours ? this.complete() : (await this.readRuntime()).complete;
    }
    // Renamed away under every attempt: fold it in under the lock instead.
    return this.compact((h) => applyChange(h, change));
  }

  /**
   * The journal open for appending (made when missing), or undefined when what is there is not a
   * file spoke wrote: a link (never followed) or a FIFO (never waited on: ENXIO without a reader)
   * is not opened, another user's file is closed unwritten.
   */
  private openJournal(): number | undefined {
    let fd: number;
    try {
      fd = openSync(this.journalPath, constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_NOFOLLOW | constants.O_NONBLOCK, 0o644);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ELOOP' || code === 'ENXIO') return undefined;
      if (code === 'EISDIR') throw notSpokesFile(this.journalPath, 'is a directory');
      throw e;
    }
    const st = fstatOpened(fd);
    if (st.isFile() && writtenByUs(st)) return fd;
    closeSync(fd);
    return undefined;
  }

  /** Whether the runtime holders are known complete, reading the set only when the snapshot changed since this process last did. */
  private async complete(): Promise<boolean> {
    const file = statIfExists(this.inUsePath);
    if (this.seen === undefined || !sameFile(this.seen.file, file)) return (await this.readRuntime()).complete;
    return this.seen.complete;
  }

  /** A compaction in the background (errors are left to the next one: the journal stays). */
  private compactSoon(): void {
    this.compacting ??= this.compact()
      .then(() => undefined, () => undefined)
      .finally(() => {
        this.compacting = undefined;
      });
  }

  /**
   * Folds the journal into a new snapshot under the lock (see the header), applying `fn` last.
   * `complete` true marks the set rebuilt from the runtime. Returns whether the set is complete.
   */
  private async compact(fn?: (holders: Record<string, Digest>) => void, complete?: boolean): Promise<boolean> {
    await this.layout.init();
    return this.layout.lock('in-use', async () => {
      // A crash's leftover first: the journal cannot be renamed onto it.
      if (statIfExists(this.oldJournalPath) !== undefined) await this.fold();
      try {
        renameSync(this.journalPath, this.oldJournalPath);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      }
      return this.fold(fn, complete);
    });
  }

  /** Snapshot + old journal (+ `fn`) → a new snapshot; then the old journal goes. Under the lock. */
  private async fold(fn?: (holders: Record<string, Digest>) => void, complete?: boolean): Promise<boolean> {
    const cur = this.readSnapshot(statIfExists(this.inUsePath));
    const journalRead = applyJournal(cur.holders, readStoreFileSync(this.oldJournalPath));
    const legacy = Object.entries(cur.legacyPins);
    if (legacy.length > 0) await this.updatePins((p) => legacy.forEach(([h, d]) => (p[h] ??= d)));
    fn?.(cur.holders);
    const done = complete ?? (cur.complete && journalRead);
    await writeFileAtomic(this.inUsePath, JSON.stringify({ holders: cur.holders, complete: done }, null, 1) + '\n', this.layout.temp, { fsync: false });
    removeIfExists(this.oldJournalPath);
    this.seen = { file: statIfExists(this.inUsePath), complete: done };
    return done;
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
    return this.appendRuntime({ set: { [holder]: d } });
  }

  /** Hands `d` from one runtime holder to another in one update (a pending create becoming its container). */
  async transferInUse(from: string, to: string, d: Digest): Promise<boolean> {
    assertDigest(d);
    if (isPin(from) || isPin(to)) throw new SpokeError('InvalidArgument', 'pins are not transferred', {}, { reason: 'INVARIANT' });
    return this.appendRuntime({ del: [from], set: { [to]: d } });
  }

  async release(holder: string): Promise<boolean> {
    if (isPin(holder)) {
      await this.updatePins((p) => {
        delete p[holder];
      });
      return true;
    }
    return this.appendRuntime({ del: [holder] });
  }

  /**
   * The shim's rebuild: replaces every runtime holder whose name starts with one of `prefixes`
   * with `holders` (pins live elsewhere and are never touched). `complete` (default true) says
   * the rebuild saw everything the runtime runs; false leaves the set marked incomplete.
   * `seen`: the holders the rebuild was planned from (read before it listed the runtime). What
   * another process on this store (a second shim during a rolling update) changed since wins:
   * a holder it wrote is for an object the listing may have missed, and stays; one of `seen` it
   * removed (its create committed under another name, its object removed) is not put back.
   */
  async replaceInUse(holders: ReadonlyMap<string, Digest>, prefixes: readonly string[] = ['container:', 'sandbox:'], opts: { complete?: boolean; seen?: ReadonlySet<string> } = {}): Promise<void> {
    for (const k of holders.keys()) if (isPin(k)) throw new SpokeError('InvalidArgument', 'pins are not runtime holders', {}, { reason: 'INVARIANT' });
    const { seen } = opts;
    await this.compact((h) => {
      const present = new Set(Object.keys(h));
      for (const k of present) if (prefixes.some((p) => k.startsWith(p)) && (seen === undefined || seen.has(k))) delete h[k];
      for (const [k, d] of holders) if (seen === undefined || !seen.has(k) || present.has(k)) h[k] = assertDigest(d);
    }, opts.complete ?? true);
  }

  /**
   * The runtime holders are not known complete until the next rebuild (replaceInUse): a shim
   * starting marks them so, since containers may have been made or removed while none ran.
   */
  async markIncomplete(): Promise<void> {
    await this.layout.init();
    await this.compact(undefined, false);
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
    await this.layout.init();
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
}

interface RuntimeHolders {
  holders: Record<string, Digest>;
  /** False from a read of an unreadable file until a rebuild (replaceInUse) rewrites the set. */
  complete: boolean;
}

const isPin = (holder: string): boolean => holder.startsWith('pin:');

/** The snapshot's runtime holders and legacy pins apart; absent: empty and complete; unreadable or foreign: empty and incomplete. */
function snapshotState(read: StoreFileRead): RuntimeState {
  if (read === 'absent') return { holders: {}, complete: true, legacyPins: {} };
  const parsed = read === 'foreign' ? undefined : parseHolderFile(read.bytes);
  if (!parsed) return { holders: {}, complete: false, legacyPins: {} };
  const holders: Record<string, Digest> = {};
  const legacyPins: Record<string, Digest> = {};
  for (const [h, d] of Object.entries(parsed.holders)) (isPin(h) ? legacyPins : holders)[h] = d;
  return { holders, complete: parsed.complete, legacyPins };
}

function applyChange(holders: Record<string, Digest>, change: Change): void {
  for (const h of change.del ?? []) delete holders[h];
  for (const [h, d] of Object.entries(change.set ?? {})) holders[h] = d;
}

/**
 * Applies a journal's lines in order; false when a line is not a change (torn by a crash, or
 * garbage), or the journal is not spoke's (none of it applies): the lines that are still apply,
 * and the set counts as incomplete. Every line is
 * written after a newline, so one appended after a torn tail starts a line of its own, and a
 * torn line never parses (a JSON object's last byte is its closing brace).
 */
function applyJournal(holders: Record<string, Digest>, read: StoreFileRead): boolean {
  if (read === 'absent') return true;
  if (read === 'foreign') return false;
  let whole = true;
  for (const line of read.bytes.toString('utf8').split('\n')) {
    if (line === '') continue;
    const change = parseChange(line);
    if (change) applyChange(holders, change);
    else whole = false;
  }
  return whole;
}

/** One journal line, checked: runtime holders only, digests only. */
function parseChange(line: string): Change | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(line);
  } catch {
    return undefined;
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return undefined;
  const { del, set } = parsed as { del?: unknown; set?: unknown };
  if (del !== undefined && !(Array.isArray(del) && del.every((h) => typeof h === 'string' && !isPin(h)))) return undefined;
  if (set !== undefined && (typeof set !== 'object' || set === null || Array.isArray(set))) return undefined;
  for (const [h, d] of Object.entries((set ?? {}) as Record<string, unknown>)) if (isPin(h) || typeof d !== 'string' || !isDigest(d)) return undefined;
  return { ...(del !== undefined ? { del: del as string[] } : {}), ...(set !== undefined ? { set: set as Record<string, Digest> } : {}) };
}

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
  // One entry that does not name a digest makes the whole file unreadable: skipping it would drop
  // a holder from a set still counted complete (gc would remove what it holds).
  for (const [holder, d] of Object.entries(holders)) {
    if (typeof d !== 'string' || !isDigest(d)) return undefined;
    out[holder] = d;
  }
  return { holders: out, complete: complete !== false };
}
