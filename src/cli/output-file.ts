// Files a command writes where its user says (--output, textfiles): replaced whole by a rename
// from the same directory, so a reader never sees half a file and a link at that path is replaced,
// not followed (a command run as root writing into a shared directory must not overwrite the
// file another user's link points to).

import { dirname, resolve } from 'node:path';
import { writeFileAtomic } from '../store/fsutil.js';

/** Writes `data` to `path` (mode 0644 when made) through a temp file in its directory. */
export async function writeOutputFile(path: string, data: Uint8Array | string): Promise<void> {
  const target = resolve(path);
  await writeFileAtomic(target, data, dirname(target), { mode: 0o644 });
}
