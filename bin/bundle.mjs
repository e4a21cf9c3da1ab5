#!/usr/bin/env node
// Run by `npm run build` after tsc: bundles the CLI (dist/src/cli/main.js and everything it
// loads, commands included) into one CommonJS file, dist/spoke.cjs, and records a V8 code cache
// for it, dist/spoke.cjs.cache, from a warm-up run of `spoke pull` against a throwaway registry on
// 127.0.0.1 served from this script (the cache then holds the bytecode of everything a pull runs:
// policy, registry client, checks, store, not only the top level). bin/spoke starts from
// these when they exist (docs/benchmarks.md: a cold Node process spends most of a short command
// resolving, reading and compiling ~200 modules; one file with its compiled code cached does not).
// SPOKE_CLI=plain makes bin/spoke use the unbundled build instead; the tests run both.
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { promisify } from 'node:util';
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
          if (!text.includes(from)) throw new Error(`${args.path}: expected ${JSON.stringify(from)} (undici changed: update bin/bundle.mjs)`);
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
  plugins: [importMetaUrl, undiciRewrites, lazyBuiltins],
  logLevel: 'warning',
  legalComments: 'none',
  // Smaller source to read and hash at every start; SPOKE_CLI=plain gives readable stacks.
  minify: true,
});

// The file holds the bundle already inside CommonJS's function wrapper, which bin/spoke compiles
// as it is read (no copy of 1.7 MB made at each start to add it), and only ASCII (esbuild's
// default charset), so bin/spoke reads it as latin1 without a UTF-8 decoding pass. The entry's
// shebang is no JavaScript inside the wrapper.
const code = (await readFile(outfile, 'utf8')).replace(/^#![^\n]*\n/, '');
if (Buffer.byteLength(code, 'utf8') !== code.length) throw new Error(`${outfile}: not ASCII, but bin/spoke reads it as latin1`);
await writeFile(outfile, `(function (exports, require, module, __filename, __dirname) {${code}\n})`);

// Warm-up: one unsigned pull of a small seccomp artifact from a registry that answers only the
// two GETs a pull makes (OCI distribution spec: manifests and blobs by digest).
const { packProfile } = await import(join(dist, 'src/publish/pack.js'));
const packed = packProfile(Buffer.from('{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW"}]}'), 'seccomp');
const served = new Map([
  [`/v2/warm/up/manifests/${packed.manifestDigest}`, { type: 'application/vnd.oci.image.manifest.v1+json', body: packed.manifest }],
  [`/v2/warm/up/blobs/${packed.layerDigest}`, { type: 'application/octet-stream', body: packed.layer }],
]);
const server = createServer((req, res) => {
  const hit = served.get(req.url ?? '');
  if (!hit) return void res.writeHead(404).end();
  res.writeHead(200, { 'content-type': hit.type, 'content-length': hit.body.byteLength, 'docker-content-digest': req.url.split('/').pop() });
  res.end(req.method === 'HEAD' ? undefined : hit.body);
});
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const host = `127.0.0.1:${server.address().port}`;
const work = await mkdtemp(join(tmpdir(), 'spoke-warm-up-'));
try {
  const policy = join(work, 'policy.yaml');
  await writeFile(policy, `apiVersion: spoke.dev/v1alpha1\nkind: NodeProfilePolicy\nrules:\n  - scope: ${host}/warm\n    kinds: [seccomp]\n    unsigned: true\ninsecure: [${host}]\n`);
  await promisify(execFile)(process.execPath, [join(root, 'bin', 'spoke'), 'pull', `${host}/warm/up@${packed.manifestDigest}`, '--kind', 'seccomp', '--policy', policy, '--store', join(work, 'store'), '--config', '/dev/null'], {
    env: { ...process.env, SPOKE_CLI: 'fast', SPOKE_WRITE_CODE_CACHE: '1' },
    timeout: 60_000,
  });
} finally {
  server.close();
  await rm(work, { recursive: true, force: true });
}
