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

import { existsSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { EFFECTIVE_SECCOMP_DIR } from '../core/constants.js';
import { sha256Hex } from '../core/digest.js';
import { LOGGING_PROFILE_NAME, loggingProfileBytes } from '../profiles/seccomp/recorded.js';
import { holdsBytes, removeIfExists, writeFileAtomic } from '../store/fsutil.js';
import type { SeccompOps } from './deps.js';

const FILE_RE = /^log-[0-9a-f]{64}\.json$/;

export class LoggingProfiles<P> {
  private readonly paths = new WeakMap<object, Promise<string>>();

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
    await removeIfExists(join(kubeletSeccompRoot, EFFECTIVE_SECCOMP_DIR, LOGGING_PROFILE_NAME));
    await removeIfExists(join(this.dir, LOGGING_PROFILE_NAME));
    const path = await this.pathFor(baseline);
    const names = await readdir(this.dir).catch(() => [] as string[]);
    await Promise.all(names.filter((n) => FILE_RE.test(n) && join(this.dir, n) !== path).map((n) => removeIfExists(join(this.dir, n))));
    return path;
  }

  /** The logging profile's path for `baseline`, written (atomically, 0644) on first use. */
  async pathFor(baseline: P): Promise<string> {
    const known = this.paths.get(baseline as object);
    if (known !== undefined) {
      const path = await known.catch(() => undefined);
      // One stat: another shim on this store (started with another baseline) or an operator may
      // have removed it since; then it is written again.
      if (path !== undefined && existsSync(path)) return path;
      if (this.paths.get(baseline as object) === known) this.paths.delete(baseline as object);
    }
    let path = this.paths.get(baseline as object);
    if (path === undefined) {
      const written = this.write(baseline);
      this.paths.set(baseline as object, written);
      // A failed write (a full disk) is tried again by the next create, never remembered.
      written.catch(() => {
        if (this.paths.get(baseline as object) === written) this.paths.delete(baseline as object);
      });
      path = written;
    }
    return path;
  }

  private async write(baseline: P): Promise<string> {
    const { bytes } = this.seccomp.intersect(baseline, undefined, this.seccomp.decode(loggingProfileBytes()));
    const path = join(this.dir, `log-${sha256Hex(bytes)}.json`);
    if (!(await holdsBytes(path, bytes))) await writeFileAtomic(path, bytes, join(this.dir, '.tmp'), { mode: 0o644 });
    return path;
  }
}
