#!/usr/bin/env node
// Run by `npm run build` after tsc: bundles the CLI (dist/src/cli/main.js and everything it
// loads, commands included) into one CommonJS file, dist/spoke.cjs, and records a V8 code cache
// for it, dist/spoke.cjs.cache, from a warm-up run of `spoke pull --help`. bin/spoke starts from
// these when they exist (docs/benchmarks.md: a cold Node process spends most of a short command
// resolving, reading and compiling ~200 modules; one file with its compiled code cached does not).
// SPOKE_CLI=plain makes bin/spoke use the unbundled build instead; the tests run both.
import { execFileSync } from 'node:child_process';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const dist = join(root, 'dist');
const outfile = join(dist, 'spoke.cjs');

// A module's own URL, as the bundle sees it: its place in dist/, found from the bundle's
// directory at run time (never the build machine's path, never the working directory).
const importMetaUrl = {
  name: 'import-meta-url',
  setup(b) {
    b.onLoad({ filter: /[\\/]dist[\\/]src[\\/].*\.js$/ }, async (args) => {
      const text = await readFile(args.path, 'utf8');
      if (!text.includes('import.meta.url')) return undefined;
      const rel = relative(dist, args.path).split('\\').join('/');
      const expr = `require("node:url").pathToFileURL(require("node:path").join(__dirname, ${JSON.stringify(rel)})).href`;
      return { contents: text.replaceAll('import.meta.url', expr), loader: 'js' };
    });
  },
};

await rm(`${outfile}.cache`, { force: true });
await build({
  entryPoints: [join(dist, 'src/cli/main.js')],
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node20',
  outfile,
  // The Kubernetes client is ESM-only and used by the controller alone: loaded from
  // node_modules with import() when that command runs.
  external: ['@kubernetes/client-node'],
  plugins: [importMetaUrl],
  logLevel: 'warning',
  legalComments: 'none',
  // Smaller source to read and hash at every start; SPOKE_CLI=plain gives readable stacks.
  minify: true,
});

// The entry's shebang is no JavaScript inside the loader's function wrapper.
await writeFile(outfile, (await readFile(outfile, 'utf8')).replace(/^#![^\n]*\n/, ''));

// Warm-up: the code cache then holds what a short command compiles (the entry, the argument
// parser, the pull command and its modules), not only the top level.
execFileSync(process.execPath, [join(root, 'bin', 'spoke'), 'pull', '--help'], {
  env: { ...process.env, SPOKE_CLI: 'fast', SPOKE_WRITE_CODE_CACHE: '1' },
  stdio: ['ignore', 'ignore', 'inherit'],
});
