// The fast CLI (the bundle and its V8 code cache, bin/bundle.mjs) and the plain tsc build give the
// same answers: the same stdout, stderr and exit status for every command's help, for profile
// work on files, and for pulls from a real registry into separate stores; the shim, which runs
// from the bundle too, answers the same CRI calls the same either way. And the build really
// made the fast CLI, with a code cache this Node accepts, so a broken bundling step fails here
// instead of silently making every start slow again.

import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Script } from 'node:vm';
import type { ServiceError } from '@grpc/grpc-js';
import { denySyscalls } from '../helpers/artifacts.js';
import { spoke, type CliResult } from '../helpers/cli.js';
import { startContainerd } from '../helpers/containerd.js';
import { CriClient } from '../helpers/cri-client.js';
import { unsignedPolicy } from '../helpers/node.js';
import { startRegistry, type TestRegistry } from '../helpers/registry.js';
import { startShim, stopShim, type ShimProc } from '../helpers/shim.js';
import { shimFiles } from '../helpers/shim-rig.js';

// The whole CLI's bundle, and the pull command's own (bin/start-bundle.cjs OWN_BUNDLES).
const BUNDLES = [new URL('../../spoke.cjs', import.meta.url), new URL('../../spoke-pull.cjs', import.meta.url)];

describe('fast CLI and plain CLI', () => {
  let reg: TestRegistry;
  let dir: string;
  before(async () => {
    reg = await startRegistry();
    dir = mkdtempSync(join(tmpdir(), 'spoke-fast-'));
  });
  after(async () => {
    await reg?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Runs the same command both ways; `args` gets the way, for paths that must differ (a store). */
  const both = async (args: (way: string) => string[]): Promise<CliResult> => {
    const fast = await spoke(args('fast'), { env: { SPOKE_CLI: 'fast' } });
    const plain = await spoke(args('plain'), { env: { SPOKE_CLI: 'plain' } });
    // What may differ between two runs: each way's own store, and wall-clock times.
    const norm = (s: string) =>
      s
        .replaceAll(join(dir, 'fast'), '<store>')
        .replaceAll(join(dir, 'plain'), '<store>')
        .replace(/\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z/g, '<time>');
    assert.deepEqual({ code: fast.code, stdout: norm(fast.stdout), stderr: norm(fast.stderr) }, { code: plain.code, stdout: norm(plain.stdout), stderr: norm(plain.stderr) }, args('fast').join(' '));
    return fast;
  };

  it('the build made the bundles, not older than the tsc output, each with a code cache that this Node accepts', () => {
    for (const bundle of BUNDLES) {
      assert.ok(existsSync(bundle), bundle.pathname);
      // bin/spoke falls back to the plain build for a stale bundle: then the comparisons below would compare plain with plain.
      assert.ok(statSync(bundle).mtimeMs >= statSync(new URL('../../src/cli/main.js', import.meta.url)).mtimeMs, `${bundle.pathname} is fresh`);
      const script = new Script(readFileSync(bundle, 'latin1'), { filename: bundle.pathname, cachedData: readFileSync(new URL(`${bundle.href}.cache`)) });
      assert.equal(script.cachedDataRejected, false, bundle.pathname);
    }
  });

  it('every command: --help, and a usage error', async () => {
    const usage = await both(() => ['--help']);
    const names = usage.stdout.split('\n').flatMap((l) => /^  ([a-z-]+)  /.exec(l)?.slice(1) ?? []);
    assert.ok(names.length >= 15, usage.stdout);
    for (const name of names) {
      assert.equal((await both(() => [name, '--help'])).code, 0, name);
      assert.equal((await both(() => [name, '--no-such-flag'])).code, 2, name);
    }
    await both(() => ['--version']);
    await both(() => ['no-such-command']);
  });

  it('profile work on files: validate, merge, diff, convert', async () => {
    const a = join(dir, 'a.json');
    const b = join(dir, 'b.json');
    writeFileSync(a, denySyscalls(['mkdir', 'mkdirat']));
    writeFileSync(b, denySyscalls(['chmod']));
    await both(() => ['profile', 'validate', '--artifact', a, '--json']);
    await both(() => ['merge', a, '--json']);
    assert.equal((await both(() => ['diff', a, b, '--json'])).code, 1);
    await both(() => ['profile', 'convert', '/usr/share/containers/seccomp.json', '--arch', 'arm64']);
  });

  it('push, pull into a store, store ls, a refused pull', async () => {
    const profile = join(dir, 'p.json');
    writeFileSync(profile, denySyscalls(['mknod']));
    const policy = join(dir, 'policy.yaml');
    writeFileSync(policy, unsignedPolicy([`${reg.host}/profiles`]));
    for (const way of ['fast', 'plain']) writeFileSync(join(dir, `${way}.yaml`), `policy: ${policy}\nstoreDir: ${join(dir, way)}\nlisten: ${join(dir, 'none.sock')}\n`);
    const pushed = await both(() => ['push', profile, `${reg.host}/profiles/same:v1`, '--kind', 'seccomp', '--plain-http']);
    const ref = pushed.stdout.trim().split('\n').at(-1)!;
    const pulled = await both((way) => ['pull', ref, '--kind', 'seccomp', '--config', join(dir, `${way}.yaml`), '--json']);
    assert.equal(pulled.code, 0, pulled.stderr);
    await both((way) => ['store', 'ls', '--config', join(dir, `${way}.yaml`), '--json']);
    assert.equal((await both((way) => ['pull', ref.replace('/profiles/', '/elsewhere/'), '--kind', 'seccomp', '--config', join(dir, `${way}.yaml`)])).code, 1);

    // A plain-HTTP pull from the fast CLI loads none of node:http2, node:tls, node:http,
    // node:fs/promises and node:assert (bin/bundle.mjs, src/registry/options.ts): Node's list of
    // the built-in modules it loaded, written at exit.
    const preload = join(dir, 'loaded.cjs');
    const list = join(dir, 'loaded.txt');
    writeFileSync(preload, `process.on('exit', () => require('node:fs').writeFileSync(${JSON.stringify(list)}, process.moduleLoadList.join('\\n')));\n`);
    const fresh = await spoke(['pull', ref, '--kind', 'seccomp', '--policy', policy, '--store', join(dir, 'loaded-store'), '--config', '/dev/null'], { env: { SPOKE_CLI: 'fast', NODE_OPTIONS: `--require ${preload}` } });
    assert.equal(fresh.code, 0, fresh.stderr);
    const builtins = readFileSync(list, 'utf8').split('\n').filter((m) => m.startsWith('NativeModule '));
    assert.ok(builtins.includes('NativeModule net'), 'the list is read');
    const deferred = ['http2', 'tls', 'http', 'fs/promises', 'assert'].map((m) => `NativeModule ${m}`);
    assert.deepEqual(builtins.filter((m) => deferred.includes(m)), []);
  });

  it('the shim runs from the bundle, or plain with SPOKE_CLI=plain, and answers the same either way', async () => {
    const profile = join(dir, 'shim.json');
    writeFileSync(profile, denySyscalls(['acct']));
    const pushed = await spoke(['push', profile, `${reg.host}/profiles/shim:v1`, '--kind', 'seccomp', '--plain-http']);
    assert.equal(pushed.code, 0, pushed.stderr);
    const ref = pushed.stdout.trim().split('\n').at(-1)!;
    const pullReq = (image: string) => ({ image: { image }, profile_kind: 'Seccomp', sandbox_config: { metadata: { name: 'p', namespace: 'default' } } });
    const ctrd = await startContainerd();
    const shims: ShimProc[] = [];
    const works: string[] = [];
    const answers: unknown[] = [];
    try {
      for (const way of ['fast', 'plain']) {
        const files = shimFiles(`spoke-fast-shim-${way}-`, unsignedPolicy([`${reg.host}/profiles`]));
        works.push(files.work);
        const shim = await startShim(files.args(ctrd.socket, '--log-level', 'info'), { env: { SPOKE_CLI: way } });
        shims.push(shim);
        const ready = await shim.waitForLog((l) => l.msg === 'shim ready');
        assert.equal(ready.build, way === 'fast' ? 'bundle' : 'plain', way);
        const cri = new CriClient(files.sock);
        try {
          const refused = await cri.img('PullSecurityProfileArtifact', pullReq(ref.replace('/profiles/', '/elsewhere/'))).then(
            () => assert.fail('a reference no rule allows was pulled'),
            (e: ServiceError) => ({ code: e.code, details: e.details }),
          );
          answers.push({
            cold: await cri.img('PullSecurityProfileArtifact', pullReq(ref)),
            cached: await cri.img('PullSecurityProfileArtifact', pullReq(ref)),
            refused,
            version: await cri.rt('Version', { version: 'v1' }),
          });
        } finally {
          cri.close();
        }
      }
      assert.deepEqual(answers[0], answers[1]);
    } finally {
      for (const s of shims) await stopShim(s);
      await ctrd.stop();
      for (const w of works) rmSync(w, { recursive: true, force: true });
    }
  });
});
