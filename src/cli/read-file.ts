// Files a command is given (profiles, keys, certificates, binding files), read whole but never
// past a limit: a size from stat says nothing of a FIFO, /dev/zero or a /proc file, so the read
// itself stops one byte past the limit.

import { statSync } from 'node:fs';
import { SpokeError } from '../core/errors.js';
import { writeSafeLine } from '../core/text.js';
import { octalMode } from './trusted-file.js';
import { readFileUpTo } from '../registry/credentials.js';
import { UsageError } from './errors.js';

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
export function readInputFile(file: string, what: string, limit: number): Buffer {
  let bytes: Buffer;
  try {
    bytes = readFileUpTo(file, limit + 1);
  } catch (e) {
    throw new UsageError(`cannot read ${what} ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  if (bytes.length > limit) throw new SpokeError('InvalidArgument', `${what} ${file} is larger than ${limit} bytes`, { file, limit }, { reason: 'SIZE_LIMIT' });
  return bytes;
}

/**
 * A private key (`--key`, `--sign-key`), with a warning on stderr when its file's group or others
 * have any access: spoke takes unencrypted keys, so the file's mode is all that keeps others from
 * signing profiles that nodes trust (ssh warns and refuses alike; this warns).
 */
export function readPrivateKeyFile(file: string, what: string): string {
  const bytes = readInputFile(file, what, MAX_KEY_FILE_BYTES);
  const st = statSync(file, { throwIfNoEntry: false });
  if (st?.isFile() === true && (st.mode & 0o077) !== 0) {
    writeSafeLine(process.stderr, `warning: ${what} ${file} is open to its group or others (mode ${octalMode(st)}); anyone who can read it can sign profiles that nodes trust: chmod 600 ${file}`);
  }
  return bytes.toString('utf8');
}
