// Floors built and started as spoke is: a floor that stands in for spoke's CLI or shim runs from a
// bundle made by bin/bundle-build.mjs and started by bin/start-bundle.cjs, exactly as bin/spoke
// starts spoke (docs/benchmarks.md), so that how the code is loaded is not part of a difference.

import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { SPOKE_BIN } from '../helpers/cli.js';

/** How bin/spoke starts a command: see bin/spoke (a short command, or a daemon such as the shim). */
export interface StartAs {
  liftoffOnly: boolean;
  codeCache: boolean;
}

/**
 * Bundles `entry` into `dir/<name>.cjs` and writes `dir/<name>-start.cjs`, which starts it as
 * bin/spoke starts a command `as` says; returns that launcher's path (run it with node and the
 * entry's own arguments).
 */
export async function bundleLauncher(entry: string, dir: string, name: string, as: StartAs): Promise<string> {
  const bin = dirname(SPOKE_BIN);
  const { bundleCommonJs } = (await import(pathToFileURL(join(bin, 'bundle-build.mjs')).href)) as {
    bundleCommonJs(o: { entry: string; outfile: string }): Promise<void>;
  };
  const bundle = join(dir, `${name}.cjs`);
  await bundleCommonJs({ entry, outfile: bundle });
  const launcher = join(dir, `${name}-start.cjs`);
  writeFileSync(launcher, `require(${JSON.stringify(join(bin, 'start-bundle.cjs'))}).startBundle(${JSON.stringify(bundle)}, ${JSON.stringify(as)});\n`);
  return launcher;
}
