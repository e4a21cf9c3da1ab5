// state/effective/<sha>.json lists the artifact digests whose merge produced the effective
// seccomp file <seccompRoot>/spoke/<sha>.json, so a rebuild can map a container whose runtime
// config names that file back to the artifact it holds. Written once per pair, flushed.
// The pod reference and base profile of each merge are kept beside them (bounded) for `spoke ps`.

import { statSync } from 'node:fs';
import { readdir, rm } from 'node:fs/promises';
import { isDigest, type Digest } from '../core/digest.js';
import { SpokeError } from '../core/errors.js';
import { writeFileAtomic } from './fsutil.js';
import { readStoreFileSync } from './store-reads.js';
import { assertDigest, isPlainObject, SHA_HEX_RE, SHA_JSON_FILE_RE, type StoreLayout } from './layout.js';

const MAX_EFFECTIVE_INPUTS = 32;

/** The base profile of a merge: RuntimeDefault, or a Localhost file by path and the sha256 of the bytes merged. */
export type EffectiveBase = { type: 'RuntimeDefault' } | { type: 'Localhost'; path: string; sha256: string };

/** What a pod asked for when an effective file was merged: its reference as written, and its base. */
export interface EffectiveInput {
  reference: string;
  base?: EffectiveBase;
}

export class EffectiveOrigins {
  constructor(private readonly layout: StoreLayout) {}

  private effectivePath(sha: string): string {
    if (!SHA_HEX_RE.test(sha)) throw new SpokeError('InvalidArgument', `not a sha256 hex: ${JSON.stringify(String(sha).slice(0, 80))}`, {}, { reason: 'DIGEST_INVALID' });
    return this.layout.statePath('effective', `${sha}.json`);
  }

  /**
   * Remembers that effective seccomp file `<sha>.json` was merged from artifact `d` (flushed),
   * and, when given, the pod's reference and base profile of that merge (bounded list).
   */
  async recordEffective(sha: string, d: Digest, input?: EffectiveInput): Promise<void> {
    assertDigest(d);
    const path = this.effectivePath(sha);
    await this.layout.init();
    await this.layout.lock(`effective-${sha}`, async () => {
      const known = await this.readEffective(sha);
      const digests = known.digests.includes(d) ? known.digests : [...known.digests, d];
      let inputs = known.inputs;
      if (input !== undefined) {
        const entry: EffectiveInput & { digest: Digest } = { digest: d, reference: input.reference, ...(input.base ? { base: input.base } : {}) };
        const key = JSON.stringify(entry);
        if (!inputs.some((i) => JSON.stringify(i) === key)) inputs = [...inputs, entry].slice(-MAX_EFFECTIVE_INPUTS);
      }
      if (digests === known.digests && inputs === known.inputs) return;
      await writeFileAtomic(path, JSON.stringify({ digests, ...(inputs.length > 0 ? { inputs } : {}) }) + '\n', this.layout.temp, this.layout.durable);
    });
  }

  /**
   * The origins record's identity (inode, size, modification time), undefined when there is none:
   * any process's rewrite or removal of it (a prune by `spoke store gc`) changes it.
   */
  originsIdentity(sha: string): string | undefined {
    const st = statSync(this.effectivePath(sha), { bigint: true, throwIfNoEntry: false });
    return st === undefined ? undefined : `${st.ino}:${st.size}:${st.mtimeNs}`;
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
    const read = readStoreFileSync(this.effectivePath(sha));
    // One spoke did not write (a link, another user's) is unreadable, as a torn one is: its owner
    // could point a rebuild at other artifacts (docs/security-model.md#atomic-store). The next
    // record renames a new one over it.
    if (read === 'absent' || read === 'foreign') return none;
    let parsed: { digests?: unknown; inputs?: unknown };
    try {
      parsed = JSON.parse(read.bytes.toString('utf8')) as typeof parsed;
    } catch {
      return none;
    }
    const digests = Array.isArray(parsed.digests) ? parsed.digests.filter((d): d is Digest => typeof d === 'string' && isDigest(d)) : [];
    const inputs = Array.isArray(parsed.inputs) ? parsed.inputs.flatMap((i) => parseEffectiveInput(i)) : [];
    return { digests, inputs };
  }

  /** Forgets effective-file origins whose artifacts are no longer stored (a file left with none goes). */
  async prune(has: (d: Digest) => Promise<boolean>): Promise<void> {
    const names = await readdir(this.layout.statePath('effective')).catch(() => [] as string[]);
    for (const name of names) {
      const sha = SHA_JSON_FILE_RE.exec(name)?.[1];
      if (sha === undefined) continue;
      await this.layout.lock(`effective-${sha}`, async () => {
        const known = await this.readEffective(sha);
        const kept: Digest[] = [];
        for (const d of known.digests) if (await has(d)) kept.push(d);
        if (kept.length === known.digests.length) return;
        if (kept.length === 0) await rm(this.effectivePath(sha), { force: true });
        else {
          // The merge inputs of the artifacts kept stay, for `spoke ps --explain`.
          const inputs = known.inputs.filter((i) => kept.includes(i.digest));
          await writeFileAtomic(this.effectivePath(sha), JSON.stringify({ digests: kept, ...(inputs.length > 0 ? { inputs } : {}) }) + '\n', this.layout.temp, this.layout.durable);
        }
      });
    }
  }
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
