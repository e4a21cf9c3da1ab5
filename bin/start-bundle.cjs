// Starts a bundle made by bin/bundle-build.mjs from its V8 code cache (`<bundle>.cache`, when
// there is one): bin/spoke for the CLI, and the bench's CLI floor (test/bench/bench.ts), so both
// start the same way. SPOKE_WRITE_CODE_CACHE=1 writes the cache at exit instead, from what the
// run compiled (bin/bundle.mjs runs a pull for it).
'use strict';
const { readFileSync, statSync, writeFileSync } = require('node:fs');
const { createRequire } = require('node:module');
const { dirname, join } = require('node:path');
const { Script } = require('node:vm');

/**
 * Commands with a bundle of their own (bin/bundle.mjs makes them): a short command then reads,
 * deserializes and runs only its own code. `spoke pull` from its own bundle took 2.8–3.5 ms
 * less than from the whole CLI's (docs/benchmarks.md). A fixed table: no path is made from argv.
 */
const OWN_BUNDLES = { pull: 'spoke-pull.cjs' };
exports.OWN_BUNDLES = OWN_BUNDLES;

/**
 * The bundle that starts `command` from `dist`: its own when it has one, else the whole CLI's;
 * undefined when that bundle is missing or older than the tsc output (the plain build runs then).
 */
exports.bundleFor = function bundleFor(dist, command) {
  const mtime = (path) => statSync(path, { throwIfNoEntry: false })?.mtimeMs ?? -1;
  const name = Object.hasOwn(OWN_BUNDLES, command) ? OWN_BUNDLES[command] : 'spoke.cjs';
  const bundle = join(dist, name);
  return mtime(bundle) >= mtime(join(dist, 'src', 'cli', 'main.js')) ? bundle : undefined;
};

/**
 * `liftoffOnly`: for a short command (below). `codeCache: false` compiles without the cache: the
 * shim's heap flags (SHIM_NODE_OPTIONS) make V8 reject a cache made without them, so the shim
 * does not read it.
 */
exports.startBundle = function startBundle(bundle, { liftoffOnly, codeCache = true }) {
  const cacheFile = `${bundle}.cache`;
  let cachedData;
  try {
    if (codeCache) cachedData = readFileSync(cacheFile);
  } catch {
    // no cache: compile as usual
  }
  // The bundle is wrapped and ASCII (bin/bundle-build.mjs).
  const script = new Script(readFileSync(bundle, 'latin1'), { filename: bundle, cachedData });
  if (process.env.SPOKE_WRITE_CODE_CACHE === '1') process.on('exit', () => writeFileSync(cacheFile, script.createCachedData()));
  else if (liftoffOnly) {
    // A short command compiles undici's WebAssembly HTTP parser with the baseline compiler only:
    // V8 otherwise optimises it again in the background, and the process waits for that at exit
    // (~40 ms of a pull here, docs/benchmarks.md). Set after the code cache was read, as V8 checks
    // the cache against the flags it was made with; the cache is made without it.
    require('node:v8').setFlagsFromString('--liftoff-only');
  }
  const mod = { exports: {} };
  script.runInThisContext()(mod.exports, createRequire(bundle), mod, bundle, dirname(bundle));
};
