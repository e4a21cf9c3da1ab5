#!/usr/bin/env node
// Run by `npm run build` after tsc: bundles the CLI (dist/src/cli/main.js and everything it
// loads, commands included) into one CommonJS file, dist/spoke.cjs, and the pull command alone
// (dist/src/cli/pull-main.js) into dist/spoke-pull.cjs (bin/start-bundle.cjs OWN_BUNDLES), and
// records a V8 code cache for each, `<bundle>.cache`, from a warm-up run of `spoke pull` through
// it against a throwaway registry on 127.0.0.1 served from this script (the cache then holds the bytecode of everything a pull runs:
// policy, registry client, checks, store, not only the top level). bin/spoke starts from
// these when they exist (docs/benchmarks.md: a cold Node process spends most of a short command
// resolving, reading and compiling ~200 modules; one file with its compiled code cached does not).
// SPOKE_CLI=plain makes bin/spoke use the unbundled build instead; the tests run both.
import { execFile } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import { bundleCommonJs } from './bundle-build.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const dist = join(root, 'dist');
const outfile = join(dist, 'spoke.cjs');
const pullOutfile = join(dist, createRequire(import.meta.url)('./start-bundle.cjs').OWN_BUNDLES.pull);

await rm(`${outfile}.cache`, { force: true });
await rm(`${pullOutfile}.cache`, { force: true });
// The Kubernetes client is ESM-only and used by the controller alone: loaded from node_modules
// with import() when that command runs. SPOKE_CLI=plain gives readable stacks.
await bundleCommonJs({ entry: join(dist, 'src/cli/main.js'), outfile, external: ['@kubernetes/client-node'] });
await bundleCommonJs({ entry: join(dist, 'src/cli/pull-main.js'), outfile: pullOutfile });

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
  // A policy shaped as a node's is (docs/configuration.md): a signer with its key file and a
  // signed rule beside the unsigned one the warm-up pulls under, so the cache also holds the
  // bytecode of reading keys and signed rules, which every such policy runs at each start.
  const policy = join(work, 'policy.yaml');
  const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  await writeFile(join(work, 'platform.pub'), publicKey.export({ type: 'spki', format: 'pem' }));
  await writeFile(
    policy,
    [
      'apiVersion: spoke.dev/v1alpha1',
      'kind: NodeProfilePolicy',
      'signers:',
      '  platform: { publicKey: platform.pub }',
      'rules:',
      `  - scope: ${host}/signed`,
      '    kinds: [seccomp]',
      '    signedBy: [platform]',
      `  - scope: ${host}/warm`,
      '    kinds: [seccomp]',
      '    unsigned: true',
      `insecure: [${host}]`,
      '',
    ].join('\n'),
  );
  // Each bundle is started as bin/spoke starts it, from a launcher in the warm-up directory.
  for (const [i, bundle] of [outfile, pullOutfile].entries()) {
    const launcher = join(work, `start-${i}.cjs`);
    await writeFile(launcher, `require(${JSON.stringify(join(root, 'bin', 'start-bundle.cjs'))}).startBundle(${JSON.stringify(bundle)}, { liftoffOnly: true });\n`);
    await promisify(execFile)(process.execPath, [launcher, 'pull', `${host}/warm/up@${packed.manifestDigest}`, '--kind', 'seccomp', '--policy', policy, '--store', join(work, `store-${i}`), '--config', '/dev/null'], {
      env: { ...process.env, SPOKE_WRITE_CODE_CACHE: '1' },
      timeout: 60_000,
    });
  }
} finally {
  server.close();
  await rm(work, { recursive: true, force: true });
}
