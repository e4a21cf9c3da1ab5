// Records moved aside by a removal (records.ts deleteRecord): out of sight in tmp/ while the
// holders are read a last time, then removed or put back (docs/gc.md). A removal that crashed in
// between leaves one there, which the next gc sweep settles.

import { randomUUID } from 'node:crypto';
import { lstatSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { digestHex, type Digest } from '../core/digest.js';
import { SpokeError } from '../core/errors.js';
import { removeIfExists, renameUnlessGone } from './fsutil.js';
import { exists, SHA_HEX_RE, type StoreLayout } from './layout.js';
import { writtenByUs } from './store-reads.js';

/** Records being removed are moved aside under this prefix in tmp/. */
export const RECORD_ASIDE_PREFIX = 'removing-';

/** A new name in tmp/ for `d`'s record while it is being removed. */
export function asidePath(layout: StoreLayout, d: Digest): string {
  return join(layout.tmpDir, `${RECORD_ASIDE_PREFIX}${digestHex(d)}-${randomUUID()}`);
}

/** Whether `aside` (a name under RECORD_ASIDE_PREFIX) is a regular file spoke wrote: a record it moved aside. */
export function isOurAside(aside: string): boolean {
  const st = lstatSync(aside, { throwIfNoEntry: false });
  return st !== undefined && st.isFile() && writtenByUs(st);
}

/**
 * Records a removal left moved aside in tmp/ when it crashed before it ended: each goes back where
 * no record is now, and goes where one is; `forget` drops what a reader cached of the record.
 * Looked at under the record's lock, which a live removal holds until it has put its record back
 * or removed it, so only a dead one's are touched. Not temp files to the age sweep: a record
 * keeps its old mtime.
 */
export async function settleRecordsAside(layout: StoreLayout, forget: (d: Digest) => void): Promise<void> {
  await layout.init();
  for (const name of await readdir(layout.tmpDir)) {
    if (!name.startsWith(RECORD_ASIDE_PREFIX)) continue;
    const hex = name.slice(RECORD_ASIDE_PREFIX.length, RECORD_ASIDE_PREFIX.length + 64);
    if (!SHA_HEX_RE.test(hex)) continue;
    const d: Digest = `sha256:${hex}`;
    const aside = join(layout.tmpDir, name);
    // Only a record spoke moved aside: a directory, a link or another user's file under such a
    // name is no record; the age sweep removes it as any leftover (collect.ts sweepOldTemp).
    if (!isOurAside(aside)) continue;
    await layout
      .lock(hex, async () => {
        if (!isOurAside(aside)) return;
        if (exists(layout.recordPath(d))) removeIfExists(aside);
        else renameUnlessGone(aside, layout.recordPath(d));
        forget(d);
      })
      // A live removal holding the lock for long: left to the next run.
      .catch((e: unknown) => {
        if (!(e instanceof SpokeError && e.reason === 'DEADLINE')) throw e;
      });
  }
}
