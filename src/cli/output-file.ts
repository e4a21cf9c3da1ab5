// Files a command writes where its user says (--output, textfiles): replaced whole by a rename
// from the same directory, so a reader never sees half a file and a link at that path is replaced,
// not followed (a command run as root writing into a shared directory must not overwrite the
// file another user's link points to). A path that is, or links to, no regular file (a pipe, a
// terminal or device: /dev/stdout) is refused: a rename would replace the link or device node.

import { statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { writeFileAtomic } from '../store/fsutil.js';
import { UsageError } from './errors.js';

/** Writes `data` to `path` (mode 0644 when made) through a temp file in its directory. */
export async function writeOutputFile(path: string, data: Uint8Array | string): Promise<void> {
  const target = resolve(path);
  const st = statSync(target, { throwIfNoEntry: false });
  if (st !== undefined && !st.isFile()) {
    throw new UsageError(`${path} is not a regular file: an output is written as a new file in its place`);
  }
  await writeFileAtomic(target, data, dirname(target), { mode: 0o644 });
}
