// Durable file writes: temp file in the same filesystem → write → fsync → rename → fsync dir.
// A crash at any point leaves either the old file or the new one visible, never half of one.

import { randomBytes } from 'node:crypto';
import { mkdir, open, rename, rm, readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';

export async function fsyncDir(dir: string): Promise<void> {
  const h = await open(dir, 'r');
  try {
    await h.sync();
  } finally {
    await h.close();
  }
}

/**
 * Writes `data` to `target` atomically. `tmpDir` must be on the same filesystem as `target`
 * (rename is atomic only within one filesystem). `fsync` false skips the flushes (tests only).
 */
export async function writeFileAtomic(target: string, data: Uint8Array | string, tmpDir: string, opts: { mode?: number; fsync?: boolean } = {}): Promise<void> {
  const fsync = opts.fsync ?? true;
  await mkdir(tmpDir, { recursive: true });
  const tmp = join(tmpDir, `.tmp-${process.pid}-${randomBytes(8).toString('hex')}`);
  const h = await open(tmp, 'wx', opts.mode ?? 0o644);
  try {
    await h.writeFile(data);
    if (fsync) await h.sync();
  } catch (e) {
    await h.close();
    await rm(tmp, { force: true });
    throw e;
  }
  await h.close();
  try {
    await mkdir(dirname(target), { recursive: true });
    await rename(tmp, target);
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
  if (fsync) await fsyncDir(dirname(target));
}

export async function readFileIfExists(path: string): Promise<Buffer | undefined> {
  try {
    return await readFile(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
}
