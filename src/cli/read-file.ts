// Files a command is given (profiles, keys, certificates, binding files), read whole but never
// past a limit: a size from stat says nothing of a FIFO, /dev/zero or a /proc file, so the read
// itself stops one byte past the limit.

import { open, type FileHandle } from 'node:fs/promises';
import { SpokeError } from '../core/errors.js';
import { readFileUpTo } from '../registry/credentials.js';
import { UsageError } from './errors.js';

const CHUNK_BYTES = 64 * 1024;
/** Keys, certificates and their chains: far larger than any PEM file of theirs. */
export const MAX_KEY_FILE_BYTES = 1024 * 1024;

/**
 * Files a command reads through a loader with limits of its own (policies, signer keys and trusted
 * roots, the node config, baselines): at most one byte past the largest of those, so the loader's
 * check refuses what is longer and nothing is read without end.
 */
export const MAX_NAMED_FILE_BYTES = 16 * 1024 * 1024;

export function readNamedFile(path: string): Buffer {
  return readFileUpTo(path, MAX_NAMED_FILE_BYTES + 1);
}

/** `file`'s bytes; refused (InvalidArgument, SIZE_LIMIT) past `limit`, UsageError when it cannot be read. */
export async function readInputFile(file: string, what: string, limit: number): Promise<Buffer> {
  const unreadable = (e: unknown): UsageError => new UsageError(`cannot read ${what} ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  const tooLarge = () => new SpokeError('InvalidArgument', `${what} ${file} is larger than ${limit} bytes`, { file, limit }, { reason: 'SIZE_LIMIT' });
  let handle: FileHandle;
  try {
    handle = await open(file, 'r');
  } catch (e) {
    throw unreadable(e);
  }
  try {
    const st = await handle.stat().catch((e: unknown) => {
      throw unreadable(e);
    });
    if (st.isFile() && st.size > limit) throw tooLarge();
    const chunks: Buffer[] = [];
    let total = 0;
    for (;;) {
      const buf = Buffer.allocUnsafe(Math.min(CHUNK_BYTES, limit + 1 - total));
      const { bytesRead } = await handle.read(buf, 0, buf.length, null).catch((e: unknown) => {
        throw unreadable(e);
      });
      if (bytesRead === 0) break;
      chunks.push(buf.subarray(0, bytesRead));
      total += bytesRead;
      if (total > limit) throw tooLarge();
    }
    return Buffer.concat(chunks, total);
  } finally {
    await handle.close();
  }
}
