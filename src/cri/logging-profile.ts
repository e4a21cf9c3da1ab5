// The logging profile a proven, recorded container runs under (`spoke shim --recording`,
// docs/recording.md): the node's seccomp baseline merged with SCMP_ACT_LOG the way every OCI
// profile is merged with it (KEP-6061 §4, intersect.ts). LOG is stricter than ALLOW in that
// order, so a call the baseline lets through is logged, and a call it denies keeps the
// baseline's verdict. A recorded container is therefore never looser than the baseline, which a
// pod author who copies a recording's labels onto a pod would otherwise escape for the proof's
// lifetime; and the recording loses nothing a profile could keep, since whatever it records is
// merged with the same baseline again when it is pulled.
//
// One file per baseline, named by its content, under `<store>/recording/`: never under the
// kubelet's seccomp root, where a pod's `localhostProfile` could name it. A reloaded baseline
// gets its own file before its first recorded create; files of earlier baselines, and the
// allow-all file earlier versions wrote, are removed at start.

import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { EFFECTIVE_SECCOMP_DIR } from '../core/constants.js';
import { sha256Hex } from '../core/digest.js';
import { LOGGING_PROFILE_NAME, loggingProfileBytes } from '../profiles/seccomp/recorded.js';
import { CheckedFiles } from '../store/checked-files.js';
import { removeIfExists } from '../store/fsutil.js';
import type { SeccompOps } from './deps.js';

const FILE_RE = /^log-[0-9a-f]{64}\.json$/;

export class LoggingProfiles<P> {
  /** Per baseline object (a reloaded baseline is a new one): its merge with LOG, and where it goes. */
  private readonly merged = new WeakMap<object, { path: string; bytes: Buffer }>();
  private readonly files = new CheckedFiles();

  constructor(
    private readonly dir: string,
    private readonly seccomp: Pick<SeccompOps<P>, 'decode' | 'intersect'>,
  ) {}

  /**
   * Writes the file for `baseline` and removes every other logging profile: those of earlier
   * baselines here, and the allow-all one earlier versions kept here and under the kubelet's
   * seccomp root. Before the socket exists, so no create runs under a removed file.
   */
  async install(baseline: P, kubeletSeccompRoot: string): Promise<string> {
    removeIfExists(join(kubeletSeccompRoot, EFFECTIVE_SECCOMP_DIR, LOGGING_PROFILE_NAME));
    removeIfExists(join(this.dir, LOGGING_PROFILE_NAME));
    const path = await this.pathFor(baseline);
    const names = await readdir(this.dir).catch(() => [] as string[]);
    for (const n of names) if (FILE_RE.test(n) && join(this.dir, n) !== path) removeIfExists(join(this.dir, n));
    return path;
  }

  /**
   * The logging profile's path for `baseline`, written (atomically, 0644) when first asked for,
   * and again whenever it is found changed or removed (another shim on this store started with
   * another baseline, an operator): CheckedFiles. A failed write (a full disk) fails this create
   * only; the next one tries again.
   */
  async pathFor(baseline: P): Promise<string> {
    let made = this.merged.get(baseline as object);
    if (made === undefined) {
      const { bytes } = this.seccomp.intersect(baseline, undefined, this.seccomp.decode(loggingProfileBytes()));
      made = { path: join(this.dir, `log-${sha256Hex(bytes)}.json`), bytes };
      this.merged.set(baseline as object, made);
    }
    await this.files.ensure(made.path, made.bytes, join(this.dir, '.tmp'), 0o644);
    return made.path;
  }
}
