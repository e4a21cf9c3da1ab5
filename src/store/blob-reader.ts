// The store's profile blobs as they are read (docs/architecture.md): present or not, their bytes,
// and whether they still hash to their digest, which is checked once and then trusted while the
// file keeps the identity it had (checkBlob). Bytes that are not what their name says are removed
// where they are found, so the next pull fetches the digest again. Written by records.ts.

import { createHash } from 'node:crypto';
import { lstatSync, statSync, unlinkSync, type Stats } from 'node:fs';
import type { Digest } from '../core/digest.js';
import { SpokeError } from '../core/errors.js';
import { removeIfExists } from './fsutil.js';
import { exists, type StoreLayout } from './layout.js';
import { readFileIfExists, readFileWithStats } from './store-reads.js';

export class BlobReader {
  /** Blob digest → the file's identity (blobIdentity) when its bytes last hashed to the digest. */
  private readonly intactBlobs = new Map<Digest, string>();

  constructor(private readonly layout: StoreLayout) {}

  /**
   * True when the profile blob a record names is present (a cached pull checks it). Looked at on
   * disk each time: another process (`spoke store rm`, `gc`) may have removed it.
   */
  async hasBlob(d: Digest): Promise<boolean> {
    return exists(this.layout.blobPath(d));
  }

  async readBlob(d: Digest, opts: { verify?: boolean } = {}): Promise<Buffer> {
    await this.layout.init();
    if (!opts.verify) {
      const bytes = await readFileIfExists(this.layout.blobPath(d));
      if (!bytes) throw blobNotFound(d);
      return bytes;
    }
    const read = this.readBlobFile(d);
    if (!read) throw blobNotFound(d);
    const { bytes } = read;
    const identity = blobIdentity(read.after);
    const actual = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
    if (actual !== d) {
      this.intactBlobs.delete(d);
      // Bytes that are not what their name says serve nothing: removed (unless the file was
      // replaced since it was read), so that the next pull fetches the digest again instead of
      // every pull and create refusing it until someone runs `spoke store rm`.
      const removed = blobIdentity(read.before) === identity && removeIfUnchanged(this.layout.blobPath(d), identity);
      throw new SpokeError('SecurityProfileInvalid', `stored blob ${d} is corrupt (hashes to ${actual})${removed ? '; removed, so the next pull fetches it again' : ''}`, { digest: d, expected: d, actual }, { reason: 'DIGEST_MISMATCH' });
    }
    // Only an identity the file had both before and after the read belongs to exactly these bytes.
    if (blobIdentity(read.before) === identity) {
      if (this.intactBlobs.size >= MAX_INTACT_BLOBS) this.intactBlobs.clear();
      this.intactBlobs.set(d, identity);
    }
    return bytes;
  }

  /**
   * Blob `d`'s bytes with their file's stats. What is not a regular file there (a FIFO, a link,
   * left while the store was open to others) holds no bytes of the digest: removed, as corrupt
   * bytes are, so the next pull writes the blob; a directory is refused as it is (notSpokesFile).
   */
  private readBlobFile(d: Digest): ReturnType<typeof readFileWithStats> {
    const path = this.layout.blobPath(d);
    try {
      return readFileWithStats(path);
    } catch (e) {
      if (!(e instanceof SpokeError && e.reason === 'STATE_CORRUPT')) throw e;
      // Looked at again just before its removal: a pull may have renamed a good blob over it
      // since (a dangling link reads as no blob), which stays.
      const now = lstatSync(path, { throwIfNoEntry: false });
      if (now?.isDirectory() === true) throw e;
      if (now === undefined || now.isFile()) return readFileWithStats(path);
      unlinkSync(path);
      this.intactBlobs.delete(d);
      throw new SpokeError('SecurityProfileInvalid', `stored blob ${d} is not a regular file; removed, so the next pull fetches it again`, { digest: d }, { reason: 'DIGEST_MISMATCH' });
    }
  }

  /**
   * Fails unless blob `d` is present and holds the bytes its digest names (SecurityProfileInvalid
   * DIGEST_MISMATCH, NotFound). The bytes are hashed once; afterwards, while the file keeps the
   * identity it had when they hashed right, one stat: a write into the file changes its mtime
   * and ctime, a replacement its inode, and ctime cannot be set back from user space.
   */
  async checkBlob(d: Digest): Promise<void> {
    const st = statSync(this.layout.blobPath(d), { throwIfNoEntry: false });
    if (st !== undefined && this.intactBlobs.get(d) === blobIdentity(st)) return;
    await this.readBlob(d, { verify: true });
  }
}

/** Removes `path` if it still has `identity` (blobIdentity); whether it did. */
function removeIfUnchanged(path: string, identity: string): boolean {
  let now: Stats;
  try {
    now = statSync(path);
  } catch {
    return false;
  }
  if (blobIdentity(now) !== identity) return false;
  removeIfExists(path);
  return true;
}

/** A blob's identity for checkBlob: the record's identity and the inode's change time. */
const blobIdentity = (st: Stats): string => `${st.ino}:${st.size}:${st.mtimeMs}:${st.ctimeMs}`;
/** Blobs remembered as intact, at most (then forgotten all at once: the next checks hash again). */
const MAX_INTACT_BLOBS = 4096;

function blobNotFound(d: Digest): SpokeError {
  return new SpokeError('NotFound', `blob ${d} is not in the store`, { digest: d }, { reason: 'NOT_FOUND' });
}
