// How the CLI is bundled for a fast start (bin/bundle.mjs), shared with the bench's CLI floor
// (test/bench/bench.ts), which gets the same start-up measures as spoke: one CommonJS file in
// CommonJS's function wrapper, ASCII only, started by bin/start-bundle.cjs with its V8 code cache
// (docs/benchmarks.md).
import { readFile, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const dist = join(dirname(fileURLToPath(import.meta.url)), '..', 'dist');

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

// Start-up work a short command does not need, deferred to first use in the bundle (each
// measured in docs/benchmarks.md). The build fails if undici's source no longer has a line these
// rewrite.
// - undici's HTTP/1.1 client loads its HTTP/2 client at start, and with it node:http2 and
//   node:tls (~7 ms), though a connection speaks HTTP/2 only after TLS negotiated it: that module
//   is loaded when the first such connection is made.
// - undici reads node:http at load for two things: the class of a response stream to destroy and
//   the default header-size cap (which the registry client sets itself, src/registry/http.ts).
//   Both become reads at use, so node:http (~1 ms) is loaded only if they happen.
const UNDICI_REWRITES = [
  [
    /[\\/]undici[\\/]lib[\\/]dispatcher[\\/]client\.js$/,
    [
      ["const connectH2 = require('./client-h2.js')", "const connectH2 = (client, socket) => require('./client-h2.js')(client, socket)"],
      [
        "const getDefaultNodeMaxHeaderSize = http &&\n  http.maxHeaderSize &&\n  Number.isInteger(http.maxHeaderSize) &&\n  http.maxHeaderSize > 0\n  ? () => http.maxHeaderSize\n  : () => { throw new InvalidArgumentError('http module not available or http.maxHeaderSize invalid') }",
        "const getDefaultNodeMaxHeaderSize = () => {\n  if (http && http.maxHeaderSize && Number.isInteger(http.maxHeaderSize) && http.maxHeaderSize > 0) return http.maxHeaderSize\n  throw new InvalidArgumentError('http module not available or http.maxHeaderSize invalid')\n}",
      ],
    ],
  ],
  [
    /[\\/]undici[\\/]lib[\\/]core[\\/]util\.js$/,
    [
      ["const { IncomingMessage } = require('node:http')", "const http = require('node:http')"],
      ['Object.getPrototypeOf(stream).constructor === IncomingMessage', 'Object.getPrototypeOf(stream).constructor === http.IncomingMessage'],
    ],
  ],
];
const undiciRewrites = {
  name: 'undici-rewrites',
  setup(b) {
    for (const [file, edits] of UNDICI_REWRITES) {
      b.onLoad({ filter: file }, async (args) => {
        let text = await readFile(args.path, 'utf8');
        for (const [from, to] of edits) {
          if (!text.includes(from)) throw new Error(`${args.path}: expected ${JSON.stringify(from)} (undici changed: update bin/bundle-build.mjs)`);
          text = text.replace(from, to);
        }
        return { contents: text, loader: 'js' };
      });
    }
  },
};

// Built-in modules loaded at their first use instead of at start (~1 ms each here):
// node:fs/promises (the store's rarer paths), node:http (above) and, for undici alone,
// node:assert, which undici only calls as assert(value): the wrapper loads it when a value
// fails. In the bundle an ES import of a module becomes a property read at each use, so getters
// on the module object defer the load.
const LAZY_BUILTIN = /^node:(fs\/promises|http|assert)$/;
const requireHere = createRequire(import.meta.url);
const lazyBuiltins = {
  name: 'lazy-builtins',
  setup(b) {
    b.onResolve({ filter: LAZY_BUILTIN }, (args) => {
      if (args.namespace === 'lazy-builtin') return { path: args.path, external: true };
      if (args.path === 'node:assert' && !/[\\/]node_modules[\\/]undici[\\/]/.test(args.importer)) return undefined;
      return { path: args.path, namespace: 'lazy-builtin' };
    });
    b.onLoad({ filter: /.*/, namespace: 'lazy-builtin' }, (args) => {
      const load = `let loaded;\nconst load = () => (loaded ??= require(${JSON.stringify(args.path)}));\n`;
      if (args.path === 'node:assert') return { contents: `${load}module.exports = function assert(value, ...rest) {\n  if (!value) load()(value, ...rest);\n};\n`, loader: 'js' };
      const getters = Object.keys(requireHere(args.path)).map((k) => `Object.defineProperty(exports, ${JSON.stringify(k)}, { enumerable: true, get: () => load()[${JSON.stringify(k)}] });`);
      return { contents: `${load}${getters.join('\n')}\n`, loader: 'js' };
    });
  },
};

/**
 * Bundles `entry` and what it loads into `outfile`, minified (a smaller source to read and hash
 * at every start). The file holds the bundle already inside CommonJS's function wrapper, which
 * bin/start-bundle.cjs compiles as it is read (no copy of the bundle made at each start to add
 * it), and only ASCII (esbuild's default charset), so it is read as latin1 without a UTF-8
 * decoding pass. An entry's shebang is no JavaScript inside the wrapper.
 */
export async function bundleCommonJs({ entry, outfile, external = [] }) {
  await build({
    entryPoints: [entry],
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node20',
    outfile,
    external,
    plugins: [importMetaUrl, undiciRewrites, lazyBuiltins],
    logLevel: 'warning',
    legalComments: 'none',
    minify: true,
  });
  const code = (await readFile(outfile, 'utf8')).replace(/^#![^\n]*\n/, '');
  if (Buffer.byteLength(code, 'utf8') !== code.length) throw new Error(`${outfile}: not ASCII, but bin/start-bundle.cjs reads it as latin1`);
  await writeFile(outfile, `(function (exports, require, module, __filename, __dirname) {${code}\n})`);
}
