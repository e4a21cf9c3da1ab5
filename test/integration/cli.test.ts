// The CLI as a user runs it: exit codes, one-line errors with their class, --json, and many
// processes sharing one store.

import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { lstatSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { MEDIA_TYPE_OCI_MANIFEST } from '../../src/core/constants.js';
import { packProfile } from '../../src/publish/pack.js';
import { ProfileStore } from '../../src/store/store.js';
import { sha256Digest } from '../../src/core/digest.js';
import { bpfSupport } from '../../src/recorder/bpf.js';
import { spoke } from '../helpers/cli.js';
import { startRegistry, type TestRegistry } from '../helpers/registry.js';
import { denySyscalls, pushRawArtifact } from '../helpers/artifacts.js';
import { unsignedPolicy } from '../helpers/node.js';

describe('spoke CLI', () => {
  let reg: TestRegistry;
  let dir: string;
  let profile: string;
  let policy: string;
  let config: string;
  before(async () => {
    reg = await startRegistry();
    dir = mkdtempSync(join(tmpdir(), 'spoke-cli-'));
    profile = join(dir, 'deny-mkdir.json');
    writeFileSync(profile, denySyscalls(['mkdir', 'mkdirat']));
    policy = join(dir, 'policy.yaml');
    writeFileSync(policy, unsignedPolicy([`${reg.host}/profiles`]));
    config = join(dir, 'config.yaml');
    writeFileSync(config, `policy: ${policy}\nstoreDir: ${join(dir, 'store')}\nlisten: ${join(dir, 'no-shim.sock')}\n`);
  });
  after(async () => {
    await reg.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('--help on every command exits 0; unknown flags exit 2', async () => {
    for (const cmd of ['push', 'pull', 'inspect', 'policy', 'store', 'sign', 'verify', 'profile', 'merge', 'shim', 'status', 'record', 'binding', 'controller']) {
      const r = await spoke([cmd, '--help']);
      assert.equal(r.code, 0, `${cmd} --help`);
      assert.match(r.stdout, /^usage: spoke /);
    }
    const bad = await spoke(['pull', '--no-such-flag']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /^InvalidArgument: /);
  });

  it('push prints the digest reference last and is deterministic', async () => {
    const a = await spoke(['push', profile, `${reg.host}/profiles/deny-mkdir:v1`, '--kind', 'seccomp', '--plain-http']);
    assert.equal(a.code, 0, a.stderr);
    const lastA = a.stdout.trim().split('\n').at(-1)!;
    assert.match(lastA, new RegExp(`^${reg.host.replace(/\./g, '\\.')}/profiles/deny-mkdir@sha256:[0-9a-f]{64}$`));
    const b = await spoke(['push', profile, `${reg.host}/profiles/deny-mkdir:v2`, '--kind', 'seccomp', '--plain-http', '--json']);
    assert.equal(JSON.parse(b.stdout).reference, lastA);
  });

  it('push refuses an invalid profile before anything leaves the machine', async () => {
    const bad = join(dir, 'bad.json');
    writeFileSync(bad, '{"defaultAction":"SCMP_ACT_NOTIFY"}');
    await reg.resetRequests();
    const r = await spoke(['push', bad, `${reg.host}/profiles/bad:v1`, '--kind', 'seccomp', '--plain-http']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^SecurityProfileInvalid: /);
    await reg.settle();
    assert.deepEqual(reg.requests(), []);
  });

  it('merge refuses, as the shim does at a create, a merge whose effective profile would answer PR_CAPBSET_DROP with EINVAL', async () => {
    // Each passes alone: EINVAL on another prctl option (35) in the baseline, EPERM on prctl(·, 5) in the artifact.
    const baseline = join(dir, 'einval-baseline.json');
    writeFileSync(baseline, JSON.stringify({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['prctl'], action: 'SCMP_ACT_ERRNO', errnoRet: 22, args: [{ index: 0, value: 35, op: 'SCMP_CMP_EQ' }] }] }));
    const artifact = join(dir, 'eperm-artifact.json');
    writeFileSync(artifact, JSON.stringify({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['prctl'], action: 'SCMP_ACT_ERRNO', errnoRet: 1, args: [{ index: 1, value: 5, op: 'SCMP_CMP_EQ' }] }] }));
    const r = await spoke(['merge', artifact, '--baseline', baseline]);
    assert.equal(r.code, 1, r.stderr);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /^FailedPrecondition: .*PR_CAPBSET_DROP.* \(reason MERGE_UNSAFE\)$/m);
  });

  it('pull, inspect, store ls; refused pulls exit 1 with one line starting with the class', async () => {
    const pushed = await spoke(['push', profile, `${reg.host}/profiles/deny-mkdir:v1`, '--kind', 'seccomp', '--plain-http']);
    const ref = pushed.stdout.trim().split('\n').at(-1)!;
    const pulled = await spoke(['pull', ref, '--kind', 'seccomp', '--config', config, '--json']);
    assert.equal(pulled.code, 0, pulled.stderr);
    const [result] = JSON.parse(pulled.stdout);
    assert.equal(result.resolvedRef, ref);
    assert.equal(result.cached, false);
    const again = await spoke(['pull', ref, '--kind', 'seccomp', '--config', config, '--json']);
    assert.equal(JSON.parse(again.stdout)[0].cached, true);

    const inspected = await spoke(['inspect', ref, '--plain-http', '--json']);
    assert.equal(JSON.parse(inspected.stdout).kind, 'seccomp');

    const ls = await spoke(['store', 'ls', '--config', config, '--json']);
    assert.equal(JSON.parse(ls.stdout)[0].digest, result.digest);

    const refused = await spoke(['pull', ref.replace('/profiles/', '/elsewhere/'), '--kind', 'seccomp', '--config', config]);
    assert.equal(refused.code, 1);
    assert.equal(refused.stderr.trim().split('\n').length, 1);
    assert.match(refused.stderr, /^PermissionDenied: /);

    const tag = await spoke(['pull', `${reg.host}/profiles/deny-mkdir:v1`, '--kind', 'seccomp', '--config', config]);
    assert.equal(tag.code, 1);
    assert.match(tag.stderr, /^InvalidArgument: .*not pinned by digest/);
  });

  it("inspect shows a registry's text on the line it belongs to: a newline in a media type cannot forge another line", async () => {
    const forged = 'application/vnd.example\nsignature:     verified by security-team (cosign)';
    const { reference } = await pushRawArtifact(reg.host, 'profiles/forged', { artifactType: forged, layers: [{ bytes: denySyscalls(['mkdir']) }] });
    const shown = await spoke(['inspect', reference, '--plain-http']);
    assert.equal(shown.code, 0, shown.stderr);
    assert.ok(!shown.stdout.split('\n').some((l) => l.startsWith('signature:')), shown.stdout);
    assert.match(shown.stdout, /^artifactType: {2}application\/vnd\.example\\nsignature: {5}verified/m);
    assert.equal(JSON.parse((await spoke(['inspect', reference, '--plain-http', '--json'])).stdout).artifactType, forged, 'JSON keeps the text as it is');
  });

  it('policy check exits 0 when allowed and 1 when denied, naming the rule', async () => {
    const d = `sha256:${'b'.repeat(64)}`;
    const allow = await spoke(['policy', 'check', `${reg.host}/profiles/x@${d}`, '--policy', policy, '--json']);
    assert.equal(allow.code, 0);
    assert.equal(JSON.parse(allow.stdout).decision, 'allow');
    const deny = await spoke(['policy', 'check', `${reg.host}/profilesevil/x@${d}`, '--policy', policy]);
    assert.equal(deny.code, 1);
    assert.match(deny.stdout, /^DENY /);
    const lint = await spoke(['policy', 'lint', policy]);
    assert.equal(lint.code, 0, lint.stdout + lint.stderr);
  });

  it('policy lint, check and verify read the file as the shim does: invalid UTF-8 is an error, never replaced', async () => {
    const broken = join(dir, 'broken-utf8.yaml');
    writeFileSync(broken, Buffer.concat([readFileSync(policy), Buffer.from('# \xff\n', 'latin1')]));
    for (const args of [
      ['policy', 'lint', broken],
      ['policy', 'check', `${reg.host}/profiles/x@sha256:${'b'.repeat(64)}`, '--policy', broken],
      ['verify', `${reg.host}/profiles/x@sha256:${'b'.repeat(64)}`, '--policy', broken],
    ]) {
      const r = await spoke(args);
      assert.notEqual(r.code, 0, args.join(' '));
      assert.match(r.stderr + r.stdout, /broken-utf8\.yaml:1: (error: )?\(document\): not valid UTF-8/);
      assert.doesNotMatch(r.stderr + r.stdout, /broken-utf8\.yaml:1: .*broken-utf8\.yaml:1:/, 'the place is said once');
    }
    // spoke status too: it reports the policy the shim would refuse as not ok.
    const brokenConfig = join(dir, 'broken-utf8-config.yaml');
    writeFileSync(brokenConfig, `policy: ${broken}\nstoreDir: ${join(dir, 'status-store')}\n`);
    const status = JSON.parse((await spoke(['status', '--config', brokenConfig, '--json'])).stdout);
    assert.equal(status.policy.ok, false);
    assert.doesNotMatch(status.policy.detail, /broken-utf8\.yaml:1: .*broken-utf8\.yaml:1:/);
    assert.match(status.policy.detail, /not valid UTF-8/);
  });

  it('verify gives up at one deadline for the whole verification, not one per request (--timeout)', async () => {
    const packed = packProfile(Buffer.from(denySyscalls(['mkdir'])), 'seccomp');
    const held: ServerResponse[] = [];
    const seen: string[] = [];
    // Serves the manifest; every signature lookup is accepted and never answered.
    const server = createServer((req, res) => {
      seen.push(req.url ?? '');
      if (req.url === `/v2/slow/p/manifests/${packed.manifestDigest}`) return void res.writeHead(200, { 'content-type': MEDIA_TYPE_OCI_MANIFEST }).end(packed.manifest);
      held.push(res);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
    const pub = join(dir, 'verify-deadline.pub');
    writeFileSync(pub, generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ type: 'spki', format: 'pem' }));
    const signedPolicy = join(dir, 'verify-deadline.yaml');
    writeFileSync(signedPolicy, ['apiVersion: spoke.dev/v1alpha1', 'kind: NodeProfilePolicy', 'signers:', `  ci: { publicKey: ${pub} }`, 'rules:', `  - scope: ${host}/slow`, '    kinds: [seccomp]', '    signedBy: [ci]', `insecure: [${host}]`].join('\n'));
    try {
      const r = await spoke(['verify', `${host}/slow/p@${packed.manifestDigest}`, '--policy', signedPolicy, '--timeout', '1s']);
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, /\(reason DEADLINE\)$/m);
      assert.ok(seen.some((u) => u.includes(`sha256-${packed.manifestDigest.slice(7)}`) || u.includes('/referrers/')), seen.join(' '));
      for (const timeout of ['soon', '30d', '0s']) {
        const bad = await spoke(['verify', `${host}/slow/p@${packed.manifestDigest}`, '--policy', signedPolicy, '--timeout', timeout]);
        assert.equal(bad.code, 2, timeout);
      }
    } finally {
      for (const res of held) res.destroy();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    }
  });

  it('push, sign, inspect and diff give up at one deadline for the whole command (--timeout)', async () => {
    const held: ServerResponse[] = [];
    // Accepts every request and never answers it, as a stalled registry does.
    const server = createServer((_req, res) => void held.push(res));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
    const key = join(dir, 'deadline.key');
    writeFileSync(key, generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }));
    const ref = `${host}/stalled/p@sha256:${'a'.repeat(64)}`;
    try {
      const commands: [string[], number][] = [
        [['push', profile, `${host}/stalled/p:v1`, '--kind', 'seccomp'], 1],
        [['sign', ref, '--key', key], 1],
        [['inspect', ref], 1],
        [['diff', profile, ref], 2],
      ];
      for (const [args, code] of commands) {
        const r = await spoke([...args, '--plain-http', '--timeout', '1s']);
        assert.equal(r.code, code, `${args[0]}: ${r.stderr}`);
        assert.match(r.stderr, /did not finish within 1s .*\(reason DEADLINE\)$/m, args[0]);
        for (const timeout of ['soon', '30d', '0s']) {
          const bad = await spoke([...args, '--plain-http', '--timeout', timeout]);
          assert.equal(bad.code, 2, `${args[0]} --timeout ${timeout}`);
          assert.match(bad.stderr, /--timeout/);
        }
      }
      assert.ok(held.length >= 4, `every command reached the registry (${held.length} requests)`);
    } finally {
      for (const res of held) res.destroy();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    }
  });

  it('status reports each part and fails when the shim is not answering', async () => {
    const r = await spoke(['status', '--config', config, '--json']);
    assert.equal(r.code, 1);
    const s = JSON.parse(r.stdout);
    assert.equal(s.policy.ok, true);
    assert.equal(s.baseline.ok, true);
    assert.equal(s.store.ok, true);
    assert.equal(s.shim.ok, false);
    assert.equal(s.ok, false);
    // What this node can record with: bpf (default) where root, BTF and bpftrace are all there.
    assert.deepEqual(s.recorder.backends, bpfSupport().ok ? ['bpf', 'audit'] : ['audit']);
  });

  it('status counts a profile blob two artifacts share once in the store\'s bytes, as spoke_store_bytes and gc\'s maxStoreBytes do', async () => {
    const storeDir = join(dir, 'shared-blob-store');
    const shared = join(dir, 'shared-blob.yaml');
    writeFileSync(shared, `policy: ${policy}\nstoreDir: ${storeDir}\nlisten: ${join(dir, 'no-shim.sock')}\n`);
    const store = new ProfileStore({ root: storeDir });
    const p = packProfile(Buffer.from(denySyscalls(['rmdir'])), 'seccomp');
    // A second manifest of the same layer (another annotation, say): one blob on disk.
    const other = Buffer.from(JSON.stringify({ ...JSON.parse(p.manifest.toString('utf8')), annotations: { another: 'manifest' } }));
    for (const [digest, manifestBytes] of [[p.manifestDigest, p.manifest], [sha256Digest(other), other]] as const) {
      await store.ingest({ digest, manifestBytes, layerDigest: p.layerDigest, layerBytes: p.layer, kind: 'seccomp', reference: `r.example/p@${digest}`, rule: 'r', servedBy: 'r.example' });
    }
    const s = JSON.parse((await spoke(['status', '--config', shared, '--json'])).stdout);
    assert.equal(s.store.artifacts, 2);
    assert.equal(s.store.bytes, p.layer.length);
  });

  it('status fails, changing nothing, when <seccompRoot>/spoke is one the shim would refuse to start with (a link): check before a restart', async () => {
    const root = join(dir, 'linked-seccomp-root');
    mkdirSync(join(root, 'elsewhere'), { recursive: true });
    symlinkSync(join(root, 'elsewhere'), join(root, 'spoke'));
    const linked = join(dir, 'linked-config.yaml');
    writeFileSync(linked, `policy: ${policy}\nstoreDir: ${join(dir, 'store')}\nlisten: ${join(dir, 'no-shim.sock')}\nseccompRoot: ${root}\n`);
    const s = JSON.parse((await spoke(['status', '--config', linked, '--json'])).stdout);
    assert.equal(s.store.ok, false);
    assert.match(s.store.detail, /spoke is not a directory \(a link\?\)/);
    assert.ok(lstatSync(join(root, 'spoke')).isSymbolicLink(), 'left as it was');
  });

  it('20 concurrent spoke pull processes on one store all succeed', async () => {
    const pushed = await spoke(['push', profile, `${reg.host}/profiles/concurrent:v1`, '--kind', 'seccomp', '--plain-http']);
    const ref = pushed.stdout.trim().split('\n').at(-1)!;
    const shared = join(dir, 'shared-config.yaml');
    writeFileSync(shared, `policy: ${policy}\nstoreDir: ${join(dir, 'shared-store')}\n`);
    const runs = await Promise.all(Array.from({ length: 20 }, () => spoke(['pull', ref, '--kind', 'seccomp', '--config', shared, '--json'])));
    for (const r of runs) assert.equal(r.code, 0, r.stderr);
    const paths = new Set(runs.map((r) => JSON.parse(r.stdout)[0].path));
    assert.equal(paths.size, 1);
    const verify = await spoke(['store', 'verify', '--config', shared, '--json']);
    assert.equal(verify.code, 0);
    assert.equal(JSON.parse(verify.stdout).ok.length, 1);
  });
});
