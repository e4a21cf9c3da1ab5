// state/last-use.json, the shim's gc by last use (collect.ts, docs/gc.md): per artifact and per
// effective file, the last gc run that saw it used (held, or named by a live object's runtime
// config) or the last use noted in memory before that run (a cached pull). Written by gc runs
// only: nothing on the pull or create path.

import { join } from 'node:path';
import { isDigest } from '../core/digest.js';
import { readStoreFileSync } from './store-reads.js';
import { isPlainObject, SHA_HEX_RE } from './layout.js';

export const lastUsePath = (storeRoot: string): string => join(storeRoot, 'state', 'last-use.json');

/**
 * The store's last uses; none when the file is missing, torn (it is not flushed), or not one spoke
 * wrote (a link, another user's: it could keep any profile from gc; docs/security-model.md#atomic-store).
 * The run's write renames a new file over it.
 */
export async function readLastUse(storeRoot: string): Promise<LastUse> {
  const out: LastUse = { artifacts: {}, effective: {}, ahead: {} };
  const read = readStoreFileSync(lastUsePath(storeRoot));
  if (read === 'absent' || read === 'foreign') return out;
  try {
    const parsed = JSON.parse(read.bytes.toString('utf8')) as { artifacts?: unknown; effective?: unknown; ahead?: unknown };
    for (const [k, v] of Object.entries(isPlainObject(parsed.artifacts) ? parsed.artifacts : {})) if (isDigest(k) && Number.isSafeInteger(v)) out.artifacts[k] = v as number;
    for (const [k, v] of Object.entries(isPlainObject(parsed.effective) ? parsed.effective : {})) if (SHA_HEX_RE.test(k) && Number.isSafeInteger(v)) out.effective[k] = v as number;
    for (const [k, v] of Object.entries(isPlainObject(parsed.ahead) ? parsed.ahead : {})) if ((isDigest(k) || SHA_HEX_RE.test(k)) && Number.isFinite(v)) out.ahead[k] = v as number;
  } catch {
    // Torn (not flushed): last uses fall back to pull times and file mtimes.
  }
  return out;
}

export interface LastUse {
  artifacts: Record<string, number>;
  effective: Record<string, number>;
  /** The stamp in the future a key's last use was noted for (lastUseAt). */
  ahead: Record<string, number>;
}

/**
 * The last use of `key`: the later of `stamp` (a pull time, a file's mtime) and `uses[key]`
 * (clamped to `now` by the caller). A stamp in the future was made while the clock ran ahead and
 * says nothing of when: it counts as `now` the first run that sees it, noted in `uses` with the
 * stamp in `ahead` (written to last-use.json), so it ages from that run rather than standing
 * until the clock catches up. Another stamp (the artifact removed and pulled again, a file
 * written again) is a new use: a use noted before it says nothing of it.
 */
export function lastUseAt(stamp: number, uses: Record<string, number>, ahead: Record<string, number>, key: string, now: number): number {
  if (stamp <= now) {
    delete ahead[key];
    return Math.max(stamp, uses[key] ?? 0);
  }
  if (ahead[key] !== stamp) {
    ahead[key] = stamp;
    uses[key] = now;
  }
  return (uses[key] ??= now);
}
