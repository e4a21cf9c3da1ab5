// Durable file writes: temp file in the same filesystem → write → fsync → rename → fsync dir.
// A crash at any point leaves either the old file or the new one visible, never half of one.
// Several files can be staged (written and fsynced) concurrently and then committed in order,
// so their flushes overlap instead of queueing one after another.

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

/** A file written and flushed under a temp name, not yet visible under its target name. */
export interface StagedFile {
  readonly target: string;
  readonly tmp: string;
  /** Flushed before the rename, and its directory flushed after it. */
  readonly durable: boolean;
}

export interface WriteOptions {
  mode?: number;
  /** false skips the flushes (tests that measure without them). Default true. */
  fsync?: boolean;
}

/** Writes `data` to a temp file in `tmpDir` (same filesystem as `target`) and flushes it. */
export async function stageFile(target: string, data: Uint8Array | string, tmpDir: string, opts: WriteOptions = {}): Promise<StagedFile> {
  await mkdir(tmpDir, { recursive: true });
  const tmp = join(tmpDir, `.tmp-${process.pid}-${randomBytes(8).toString('hex')}`);
  const h = await open(tmp, 'wx', opts.mode ?? 0o644);
  try {
    await h.writeFile(data);
    if (opts.fsync ?? true) await h.sync();
  } catch (e) {
    await h.close();
    await rm(tmp, { force: true });
    throw e;
  }
  await h.close();
  return { target, tmp, durable: opts.fsync ?? true };
}

/**
 * Renames staged files into place in the given order (a file others depend on goes first), then
 * flushes the directory of each durable file once, concurrently.
 */
export async function commitStaged(files: readonly StagedFile[]): Promise<void> {
  try {
    for (const f of files) {
      await mkdir(dirname(f.target), { recursive: true });
      await rename(f.tmp, f.target);
    }
  } catch (e) {
    await discardStaged(files);
    throw e;
  }
  await Promise.all([...new Set(files.filter((f) => f.durable).map((f) => dirname(f.target)))].map(fsyncDir));
}

/** Removes staged temp files that will not be committed (already-renamed ones are gone: rm is forced). */
export async function discardStaged(files: readonly StagedFile[]): Promise<void> {
  await Promise.all(files.map((f) => rm(f.tmp, { force: true })));
}

/** Writes one file atomically: stage, then commit. */
export async function writeFileAtomic(target: string, data: Uint8Array | string, tmpDir: string, opts: WriteOptions = {}): Promise<void> {
  await commitStaged([await stageFile(target, data, tmpDir, opts)]);
}

export async function readFileIfExists(path: string): Promise<Buffer | undefined> {
  try {
    return await readFile(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
}
