// The in-use set (runtime holders filled by the shim; pins by `spoke pull --pin`)
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

import { type Digest, isDigest } from '../core/digest.js';
import { SpokeError } from '../core/errors.js';
import { readFileIfExists, writeFileAtomic } from './fsutil.js';
import { assertDigest, type StoreLayout } from './layout.js';

export class InUseSet {
  constructor(private readonly layout: StoreLayout) {}

  private get inUsePath(): string {
    return this.layout.statePath('in-use.json');
  }

  private get pinsPath(): string {
    return this.layout.statePath('pins.json');
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
    if (!parsed) throw new SpokeError('Internal', `${this.pinsPath} is unreadable; pins are kept only there, so nothing is removed until it is repaired`, { file: this.pinsPath }, { reason: 'STATE_CORRUPT' });
    return parsed.holders;
  }

  private async updatePins(fn: (pins: Record<string, Digest>) => void): Promise<void> {
    await this.layout.init();
    await this.layout.lock('pins', async () => {
      const pins = await this.readPins();
      fn(pins);
      await writeFileAtomic(this.pinsPath, JSON.stringify({ holders: pins }, null, 1) + '\n', this.layout.temp, { fsync: this.layout.fsync });
    });
  }

  /**
   * Read-modify-write of the runtime holders under their lock (atomic, not flushed: see above).
   * `complete` true marks the set rebuilt from the runtime. Returns whether the set is complete
   * after the write: false tells the caller to rebuild it from the runtime.
   */
  private async updateRuntime(fn: (holders: Record<string, Digest>) => void, complete?: boolean): Promise<boolean> {
    await this.layout.init();
    return this.layout.lock('in-use', async () => {
      const cur = await this.readRuntime();
      const legacy = Object.entries(cur.legacyPins);
      if (legacy.length > 0) await this.updatePins((p) => legacy.forEach(([h, d]) => (p[h] ??= d)));
      fn(cur.holders);
      const done = complete ?? cur.complete;
      await writeFileAtomic(this.inUsePath, JSON.stringify({ holders: cur.holders, complete: done }, null, 1) + '\n', this.layout.temp, { fsync: false });
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
    if (isPin(from) || isPin(to)) throw new SpokeError('InvalidArgument', 'pins are not transferred', {}, { reason: 'INVARIANT' });
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
    for (const k of holders.keys()) if (isPin(k)) throw new SpokeError('InvalidArgument', 'pins are not runtime holders', {}, { reason: 'INVARIANT' });
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
