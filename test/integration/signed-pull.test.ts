// Signatures in the pull pipeline (docs/signatures.md): rules with signedBy, verdicts cached per
// policy hash, key rotation re-verifies without re-downloading, failures never cached as success.

import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { spokeError } from '../helpers/assert.js';
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { verdictUnder } from '../../src/store/store.js';
import { UndiciRegistryClient } from '../../src/registry/client.js';
import { PullPipeline } from '../../src/pull.js';
import { JsonLogger } from '../../src/observe/log.js';
import { sigstoreVerifier } from '../../src/cli/wiring.js';
import { Pool, type Dispatcher } from 'undici';
import { ProfileStore, type StagedBlob } from '../../src/store/store.js';
import { SpokeError } from '../../src/core/errors.js';
import { sha256Digest } from '../../src/core/digest.js';
import { signArtifact } from '../../src/publish/sign.js';
import type { Digest } from '../../src/core/digest.js';
import { makeKey, pushTestArtifact, type TestKey } from '../helpers/signing.js';
import { startRegistry, type TestRegistry } from '../helpers/registry.js';
import { startSlowProxy } from '../helpers/slow-proxy.js';
import { testNode, type TestNode } from '../helpers/node.js';
import { spoke } from '../helpers/cli.js';
import { rejectedFor, rejectsWith } from '../helpers/assert.js';

async function sign(reg: TestRegistry, repository: string, digest: string, manifest: Buffer, key: TestKey, format: 'bundle' | 'cosign' = 'bundle'): Promise<void> {
  const client = new UndiciRegistryClient({ plainHttp: true });
  try {
    await signArtifact({ registry: client, repo: { registry: reg.host, repository }, digest: digest as Digest, manifestBytes: manifest, key: key.privatePem, format });
  } finally {
    await client.close();
  }
}

function policy(reg: TestRegistry, signers: Record<string, string>, signedBy: string[], extraRules = ''): string {
  return [
    'apiVersion: spoke.dev/v1alpha1',
    'kind: NodeProfilePolicy',
    'signers:',
    ...Object.entries(signers).map(([name, file]) => `  ${name}: { publicKey: ${file} }`),
    'rules:',
    `  - scope: ${reg.host}/signed`,
    '    kinds: [seccomp]',
    `    signedBy: [${signedBy.join(', ')}]`,
    extraRules,
    `insecure: [${reg.host}]`,
  ].join('\n');
}

describe('signed pulls', () => {
  let reg: TestRegistry;
  let node: TestNode;
  let keyA: TestKey;
  let keyB: TestKey;
  let fileA: string;
  let fileB: string;
  before(async () => {
    reg = await startRegistry();
    keyA = makeKey('p256');
    keyB = makeKey('ed25519');
    node = testNode('apiVersion: spoke.dev/v1alpha1\nkind: NodeProfilePolicy\nrules: []\n');
    fileA = join(node.dir, 'a.pub');
    fileB = join(node.dir, 'b.pub');
    writeFileSync(fileA, keyA.publicPem);
    writeFileSync(fileB, keyB.publicPem);
  });
  after(async () => {
    await node.dispose();
    await reg.stop();
  });

  it('admits a profile signed by the rule signer, then serves it cached with no request', async () => {
    node.writePolicy(policy(reg, { platform: fileA }, ['platform']));
    const a = await pushTestArtifact(reg.url, reg.host, 'signed/one', { defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['mkdir'], action: 'SCMP_ACT_ERRNO' }] });
    await sign(reg, 'signed/one', a.digest, a.manifest, keyA);
    const first = await node.pipeline.pull({ reference: a.reference, kind: 'seccomp' });
    assert.equal(first.cached, false);
    assert.equal(first.signer?.signer, 'platform');
    assert.equal(first.signer?.format, 'bundle');
    const record = await node.store.getRecord(a.digest as Digest);
    assert.equal(verdictUnder(record!, node.policy.current().hash, [{ name: 'platform', type: 'publicKey' }])?.signer, 'platform');
    await reg.resetRequests();
    const second = await node.pipeline.pull({ reference: a.reference, kind: 'seccomp' });
    assert.equal(second.cached, true);
    await reg.settle();
    assert.deepEqual(reg.requests(), []);
  });

  it('a signed fetch is one info line naming the rule, the signer, the signature format and the identity, whoever calls the pipeline (annotation mode, a create, the CLI); a cached pull is debug', async () => {
    node.writePolicy(policy(reg, { platform: fileA }, ['platform']));
    const a = await pushTestArtifact(reg.url, reg.host, 'signed/logged', { defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['chmod'], action: 'SCMP_ACT_ERRNO' }] });
    await sign(reg, 'signed/logged', a.digest, a.manifest, keyA);
    const lines: Record<string, unknown>[] = [];
    const logger = new JsonLogger({ level: 'info', write: (line) => lines.push(JSON.parse(line) as Record<string, unknown>) });
    const client = new UndiciRegistryClient({ plainHttp: true });
    try {
      const pipeline = new PullPipeline({ policy: () => node.policy.current(), registry: () => ({ client, release: () => undefined }), pullTimeoutMs: 60_000, store: node.store, verifier: sigstoreVerifier, logger });
      await pipeline.pull({ reference: a.reference, kind: 'seccomp', namespace: 'team-a' });
      await pipeline.pull({ reference: a.reference, kind: 'seccomp', namespace: 'team-a' });
    } finally {
      await client.close();
    }
    const pulls = lines.filter((l) => l.reference === a.reference);
    assert.deepEqual(pulls.map((l) => [l.level, l.msg, l.cached, l.signer, l.signatureFormat, l.namespace]), [['info', 'security profile pull', false, 'platform', 'bundle', 'team-a']]);
    assert.equal(typeof pulls[0]!.rule, 'string');
  });

  it('refuses an unsigned profile, stores nothing, and refuses again on retry', async () => {
    node.writePolicy(policy(reg, { platform: fileA }, ['platform']));
    const a = await pushTestArtifact(reg.url, reg.host, 'signed/unsigned', { defaultAction: 'SCMP_ACT_LOG' });
    await rejectsWith(node.pipeline.pull({ reference: a.reference, kind: 'seccomp' }), { code: 'SignatureValidationFailed', reason: 'NOT_SIGNED' });
    assert.equal(await node.store.has(a.digest as Digest), false);
    await rejectsWith(node.pipeline.pull({ reference: a.reference, kind: 'seccomp' }), { code: 'SignatureValidationFailed', reason: 'NOT_SIGNED' });
  });

  it('refuses a signature by a key the rule does not name', async () => {
    node.writePolicy(policy(reg, { platform: fileA, other: fileB }, ['platform']));
    const a = await pushTestArtifact(reg.url, reg.host, 'signed/wrong-key', { defaultAction: 'SCMP_ACT_TRAP' });
    await sign(reg, 'signed/wrong-key', a.digest, a.manifest, keyB);
    // Found, and refused: its signature does not verify with the key of the one signer the rule names.
    rejectedFor(await rejectsWith(node.pipeline.pull({ reference: a.reference, kind: 'seccomp' }), { code: 'SignatureValidationFailed', reason: 'SIGNATURE_INVALID' }), 'SIGNATURE_INVALID');
  });

  it('accepts either of two signers, in either format', async () => {
    node.writePolicy(policy(reg, { platform: fileA, ci: fileB }, ['platform', 'ci']));
    const a = await pushTestArtifact(reg.url, reg.host, 'signed/either', { defaultAction: 'SCMP_ACT_KILL' });
    await sign(reg, 'signed/either', a.digest, a.manifest, keyB, 'cosign');
    const r = await node.pipeline.pull({ reference: a.reference, kind: 'seccomp' });
    assert.equal(r.signer?.signer, 'ci');
    assert.equal(r.signer?.format, 'cosign');
  });

  it('keeps a verdict per signer under one policy: namespaces whose rules need different signers of one digest both pull it cached, with no request', async () => {
    const rules = (signedBy: string, ns: string) => [`  - scope: ${reg.host}/shared`, '    kinds: [seccomp]', `    signedBy: [${signedBy}]`, `    namespaces: [${ns}]`].join('\n');
    node.writePolicy(['apiVersion: spoke.dev/v1alpha1', 'kind: NodeProfilePolicy', 'signers:', `  a: { publicKey: ${fileA} }`, `  b: { publicKey: ${fileB} }`, 'rules:', rules('a', 'team-a'), rules('b', 'team-b'), `insecure: [${reg.host}]`].join('\n'));
    const a = await pushTestArtifact(reg.url, reg.host, 'shared/both', { defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['mkdir'], action: 'SCMP_ACT_ERRNO' }] });
    await sign(reg, 'shared/both', a.digest, a.manifest, keyA);
    await sign(reg, 'shared/both', a.digest, a.manifest, keyB);
    assert.equal((await node.pipeline.pull({ reference: a.reference, kind: 'seccomp', namespace: 'team-a' })).signer?.signer, 'a');
    assert.equal((await node.pipeline.pull({ reference: a.reference, kind: 'seccomp', namespace: 'team-b' })).signer?.signer, 'b');
    await reg.resetRequests();
    for (const [ns, signer] of [['team-a', 'a'], ['team-b', 'b'], ['team-a', 'a']] as const) {
      const r = await node.pipeline.pull({ reference: a.reference, kind: 'seccomp', namespace: ns });
      assert.equal(r.cached, true, ns);
      assert.equal(r.signer?.signer, signer, ns);
    }
    await reg.settle();
    assert.deepEqual(reg.requests(), [], 'no registry request for either verdict');
  });

  it('re-verifies a cached digest after key rotation without re-downloading the profile', async () => {
    node.writePolicy(policy(reg, { platform: fileA }, ['platform']));
    const a = await pushTestArtifact(reg.url, reg.host, 'signed/rotate', { defaultAction: 'SCMP_ACT_ERRNO', syscalls: [{ names: ['read', 'write', 'exit_group'], action: 'SCMP_ACT_ALLOW' }] });
    await sign(reg, 'signed/rotate', a.digest, a.manifest, keyA);
    await node.pipeline.pull({ reference: a.reference, kind: 'seccomp' });
    const layerDigest = (await node.store.getRecord(a.digest as Digest))!.layerDigest;

    // Rotate: the policy now trusts only key B, which has not signed this digest.
    node.writePolicy(policy(reg, { platform: fileB }, ['platform']));
    await reg.resetRequests();
    // A's signature is found and does not verify with B's key.
    rejectedFor(await rejectsWith(node.pipeline.pull({ reference: a.reference, kind: 'seccomp' }), { code: 'SignatureValidationFailed', reason: 'SIGNATURE_INVALID' }), 'SIGNATURE_INVALID');
    await reg.settle();
    assert.ok(reg.requests().length > 0, 're-verification looked for signatures');
    assert.equal(reg.requests().filter((r) => r.path.endsWith(`/blobs/${layerDigest}`)).length, 0, 'profile blob not re-downloaded');

    // B signs too: the next pull re-verifies and records the new verdict; the one after is cached.
    await sign(reg, 'signed/rotate', a.digest, a.manifest, keyB);
    const r = await node.pipeline.pull({ reference: a.reference, kind: 'seccomp' });
    assert.equal(r.cached, false);
    assert.equal(r.signer?.signer, 'platform');
    assert.equal((await node.pipeline.pull({ reference: a.reference, kind: 'seccomp' })).cached, true);
  });

  it('a key file removed after the pull: pulls under its signer fail closed (SIGNER_UNAVAILABLE), cached or not; other signers still verify; spoke status names it', async () => {
    const fileC = join(node.dir, 'revoked.pub');
    const fileD = join(node.dir, 'kept.pub');
    writeFileSync(fileC, keyA.publicPem);
    writeFileSync(fileD, keyB.publicPem);
    node.writePolicy(policy(reg, { platform: fileC, ci: fileD }, ['platform', 'ci']));
    const a = await pushTestArtifact(reg.url, reg.host, 'signed/revoked-a', { defaultAction: 'SCMP_ACT_ERRNO', syscalls: [{ names: ['brk'], action: 'SCMP_ACT_ALLOW' }] });
    const b = await pushTestArtifact(reg.url, reg.host, 'signed/revoked-b', { defaultAction: 'SCMP_ACT_ERRNO', syscalls: [{ names: ['mmap'], action: 'SCMP_ACT_ALLOW' }] });
    await sign(reg, 'signed/revoked-a', a.digest, a.manifest, keyA);
    await sign(reg, 'signed/revoked-b', b.digest, b.manifest, keyB);
    assert.equal((await node.pipeline.pull({ reference: a.reference, kind: 'seccomp' })).signer?.signer, 'platform');
    assert.equal((await node.pipeline.pull({ reference: a.reference, kind: 'seccomp' })).cached, true);
    await node.pipeline.pull({ reference: b.reference, kind: 'seccomp' });

    rmSync(fileC);
    assert.ok(node.policy.reload().ok, 'the reload keeps the rest of the policy');
    const revoked = spokeError({ code: 'SignatureValidationFailed', reason: 'SIGNER_UNAVAILABLE' });
    await assert.rejects(node.pipeline.pull({ reference: a.reference, kind: 'seccomp' }), revoked);
    assert.equal((await node.pipeline.pull({ reference: b.reference, kind: 'seccomp' })).signer?.signer, 'ci');
    // A rule whose only signer is gone refuses before any signature lookup.
    node.writePolicy(policy(reg, { platform: fileC }, ['platform']));
    await reg.resetRequests();
    await assert.rejects(node.pipeline.pull({ reference: a.reference, kind: 'seccomp' }), revoked);
    await reg.settle();
    assert.deepEqual(reg.requests(), []);

    const config = join(node.dir, 'status.yaml');
    writeFileSync(config, `policy: ${node.policyFile}\nstoreDir: ${node.config.storeDir}\nlisten: ${join(node.dir, 'no-shim.sock')}\n`);
    const status = await spoke(['status', '--config', config, '--json']);
    assert.equal(status.code, 1);
    const part = JSON.parse(status.stdout).policy as { ok: boolean; signersUnavailable?: { name: string; file: string }[] };
    assert.equal(part.ok, false);
    assert.deepEqual(part.signersUnavailable?.map((s) => [s.name, s.file]), [['platform', fileC]]);
  });

  it('judges the profile while its signature is still being verified: invalid content is refused as such, nothing stored, without waiting for the verdict', { timeout: 20_000 }, async () => {
    node.writePolicy(policy(reg, { platform: fileA }, ['platform']));
    const a = await pushTestArtifact(reg.url, reg.host, 'signed/invalid', { defaultAction: 'SCMP_ACT_ALLOW', notAMember: true });
    // A verifier whose verdict is held until the test lets it go: the old order (verdict, then
    // validation) left the pull waiting on it until the test's timeout.
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    let asked = 0;
    const client = new UndiciRegistryClient({ plainHttp: true });
    const pipeline = new PullPipeline({
      policy: () => node.policy.current(),
      registry: () => ({ client, release: () => undefined }),
      pullTimeoutMs: 60_000,
      store: node.store,
      verifier: async () => {
        asked++;
        await held;
        return { signer: 'platform', format: 'bundle' };
      },
    });
    try {
      await rejectsWith(pipeline.pull({ reference: a.reference, kind: 'seccomp' }), { code: 'SecurityProfileInvalid', reason: 'PROFILE_INVALID' });
      assert.equal(asked, 1, 'the signature was being verified meanwhile');
      assert.equal(await node.store.getRecord(a.digest as Digest), undefined, 'nothing stored');
      assert.ok(await node.store.getInvalid(a.digest as Digest), 'the content verdict is remembered');
    } finally {
      release();
      await client.close();
    }
  });

  it('a verifier that fails before reading the manifest, then a manifest that fails: the pull is refused and nothing is left unhandled (which would end the process)', async () => {
    node.writePolicy(policy(reg, { platform: fileA }, ['platform']));
    const unhandled: unknown[] = [];
    const note = (e: unknown) => unhandled.push(e);
    process.on('unhandledRejection', note);
    const client = new UndiciRegistryClient({ plainHttp: true });
    try {
      const pipeline = new PullPipeline({
        policy: () => node.policy.current(),
        registry: () => ({ client, release: () => undefined }),
        pullTimeoutMs: 60_000,
        store: node.store,
        verifier: () => Promise.reject(new SpokeError('SignatureValidationFailed', 'refused by the test', {}, { reason: 'SIGNATURE_INVALID' })),
      });
      // A digest the registry does not have: its manifest is answered 404.
      await rejectsWith(pipeline.pull({ reference: `${reg.host}/signed/absent@${sha256Digest(Buffer.from('absent'))}`, kind: 'seccomp' }), { code: 'NotFound' });
      // Node says an unhandled rejection once the microtasks of the turn that rejected have run.
      for (let i = 0; i < 3; i++) await new Promise((r) => setImmediate(r));
    } finally {
      process.off('unhandledRejection', note);
      await client.close();
    }
    assert.deepEqual(unhandled, []);
  });

  it("writes a keyed pull's blob under a temp name while its signature is verified: placed with the verdict, removed with a refusal", { timeout: 20_000 }, async () => {
    node.writePolicy(policy(reg, { platform: fileA }, ['platform']));
    const tmp = join(node.store.root, 'tmp');
    const client = new UndiciRegistryClient({ plainHttp: true });
    try {
      for (const outcome of ['verdict', 'refusal'] as const) {
        const profile = { defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: [outcome === 'verdict' ? 'fchownat' : 'fchmodat'], action: 'SCMP_ACT_ERRNO' }] };
        const layer = Buffer.from(JSON.stringify(profile));
        const a = await pushTestArtifact(reg.url, reg.host, `signed/early-${outcome}`, profile);
        const tempsHolding = () => readdirSync(tmp).filter((n) => readFileSync(join(tmp, n)).equals(layer)).length;
        let staged!: () => void;
        const stagedNow = new Promise<void>((r) => (staged = r));
        // The store as the pipeline sees it, telling the test when the blob has been staged.
        class WatchedStore extends ProfileStore {
          override async stageBlob(d: Digest, bytes: Uint8Array): Promise<StagedBlob> {
            const s = await super.stageBlob(d, bytes);
            staged();
            return s;
          }
        }
        let decide!: (ok: boolean) => void;
        const verdict = new Promise<boolean>((r) => (decide = r));
        const pipeline = new PullPipeline({
          policy: () => node.policy.current(),
          registry: () => ({ client, release: () => undefined }),
          pullTimeoutMs: 60_000,
          store: new WatchedStore({ root: node.store.root }),
          verifier: async () => {
            if (await verdict) return { signer: 'platform', format: 'bundle' };
            throw new SpokeError('SignatureValidationFailed', 'refused by the test', {}, { reason: 'SIGNATURE_INVALID' });
          },
        });
        const pulled = pipeline.pull({ reference: a.reference, kind: 'seccomp' });
        pulled.catch(() => {});
        await Promise.race([stagedNow, pulled.then(() => assert.fail(`${outcome}: pulled before staging`), (e: unknown) => assert.fail(`${outcome}: ${String(e)}`))]);
        const blobPath = node.store.blobPath(sha256Digest(layer));
        assert.equal(existsSync(blobPath), false, `${outcome}: nothing in the store while the signature is pending`);
        assert.equal(tempsHolding(), 1, `${outcome}: the blob is written under a temp name meanwhile`);
        decide(outcome === 'verdict');
        if (outcome === 'verdict') {
          assert.equal((await pulled).signer?.signer, 'platform');
          assert.deepEqual(readFileSync(blobPath), layer);
        } else {
          await rejectsWith(pulled, { code: 'SignatureValidationFailed', reason: 'SIGNATURE_INVALID' });
          assert.equal(existsSync(blobPath), false);
          assert.equal(await node.store.getRecord(a.digest as Digest), undefined);
        }
        assert.equal(tempsHolding(), 0, `${outcome}: no temp file left`);
      }
    } finally {
      await client.close();
    }
  });

  it("a keyed pull's signature chain, the longer one, sends its first request before the manifest's", async () => {
    node.writePolicy(policy(reg, { platform: fileA }, ['platform']));
    const sent: string[] = [];
    // The order the client hands requests to undici: the order they are written.
    class Recording extends Pool {
      override dispatch(options: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
        sent.push(options.path);
        return super.dispatch(options, handler);
      }
    }
    const client = new UndiciRegistryClient({ plainHttp: true, dispatcherFactory: (origin) => new Recording(origin) });
    try {
      const pipeline = new PullPipeline({ policy: () => node.policy.current(), registry: () => ({ client, release: () => undefined }), pullTimeoutMs: 60_000, store: node.store, verifier: sigstoreVerifier });
      const pull = async (n: number) => {
        const a = await pushTestArtifact(reg.url, reg.host, 'signed/order', { defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['fchownat'], action: 'SCMP_ACT_ERRNO', errnoRet: n }] });
        await sign(reg, 'signed/order', a.digest, a.manifest, keyA);
        sent.length = 0;
        assert.equal((await pipeline.pull({ reference: a.reference, kind: 'seccomp' })).signer?.signer, 'platform');
        return { manifest: sent.indexOf(`/v2/signed/order/manifests/${a.digest}`), index: sent.indexOf(`/v2/signed/order/manifests/sha256-${a.digest.slice(7)}`) };
      };
      // The first keyed pull from a repository asks its registry for the referrers API too and
      // learns it has none; from then on the chain starts at the tag-schema index.
      await pull(1);
      const { manifest, index } = await pull(2);
      assert.ok(manifest >= 0 && index >= 0, sent.join(' '));
      assert.ok(index < manifest, `the tag-schema index first: ${sent.join(' ')}`);
    } finally {
      await client.close();
    }
  });

  it('a rule with unsigned: true still pulls unsigned artifacts', async () => {
    node.writePolicy(policy(reg, { platform: fileA }, ['platform'], `  - scope: ${reg.host}/open\n    kinds: [seccomp]\n    unsigned: true`));
    const a = await pushTestArtifact(reg.url, reg.host, 'open/x', { defaultAction: 'SCMP_ACT_ALLOW' });
    const r = await node.pipeline.pull({ reference: a.reference, kind: 'seccomp' });
    assert.equal(r.signer, undefined);
  });

  it('spoke push --sign-key with a key it refuses pushes nothing: the tag is not moved to an unsigned artifact', async () => {
    const keyFile = join(node.dir, 'weak.key');
    writeFileSync(keyFile, generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey.export({ type: 'pkcs8', format: 'pem' }));
    const profile = join(node.dir, 'weak.json');
    writeFileSync(profile, JSON.stringify({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['chown'], action: 'SCMP_ACT_ERRNO' }] }));
    const pushed = await spoke(['push', profile, `${reg.host}/signed/weak:v1`, '--kind', 'seccomp', '--plain-http', '--sign-key', keyFile]);
    assert.notEqual(pushed.code, 0);
    assert.match(pushed.stderr, /RSA key of 1024 bits is too weak \(at least 2048\)/);
    assert.equal(pushed.stdout, '');
    await reg.settle();
    assert.equal(reg.requests().filter((r) => r.path.includes('/signed/weak/')).length, 0, 'nothing reached the registry');
  });

  it('spoke verify of a reference no rule allows for any kind asks the registry nothing', async () => {
    node.writePolicy(policy(reg, { platform: fileA }, ['platform']));
    const denied = `${reg.host}/elsewhere/p@sha256:${'ab'.repeat(32)}`;
    const out = await spoke(['verify', denied, '--policy', node.policyFile, '--json']);
    assert.equal(out.code, 1, out.stderr);
    assert.match(out.stderr, /^PermissionDenied: /);
    await reg.settle();
    assert.equal(reg.requests().filter((r) => r.path.includes('/elsewhere/')).length, 0, 'nothing reached the registry');
  });

  it('spoke push --sign-key whose signature the registry refuses to attach leaves the tag unmoved: the artifact went by digest only', async () => {
    const proxy = await startSlowProxy(reg.port);
    try {
      // The tag-schema index the signature hangs from (this registry has no referrers API).
      proxy.refuse((r) => r.method === 'PUT' && r.path.includes('/manifests/sha256-'), 403);
      const keyFile = join(node.dir, 'refused.key');
      writeFileSync(keyFile, keyA.privatePem);
      const profile = join(node.dir, 'refused.json');
      writeFileSync(profile, JSON.stringify({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['fchown'], action: 'SCMP_ACT_ERRNO' }] }));
      const pushed = await spoke(['push', profile, `${proxy.host}/signed/refused:v1`, '--kind', 'seccomp', '--plain-http', '--sign-key', keyFile]);
      assert.notEqual(pushed.code, 0, pushed.stderr);
      assert.equal(pushed.stdout, '');
      const puts = proxy.requests().filter((r) => r.method === 'PUT' && r.path.includes('/manifests/'));
      assert.ok(puts.some((r) => r.path.includes('/manifests/sha256-')), `the signature was tried: ${puts.map((r) => r.path).join(' ')}`);
      assert.ok(!puts.some((r) => r.path.endsWith('/manifests/v1')), `the tag was not put: ${puts.map((r) => r.path).join(' ')}`);
      const tagged = await fetch(`${reg.url}/v2/signed/refused/manifests/v1`, { method: 'HEAD', headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } });
      assert.equal(tagged.status, 404);
    } finally {
      await proxy.close();
    }
  });

  it('spoke push --platform --sign-key puts the index by digest, signs it, and moves the tag to it last', async () => {
    const keyFile = join(node.dir, 'multi.key');
    writeFileSync(keyFile, keyA.privatePem);
    const amd = join(node.dir, 'multi-amd64.json');
    const arm = join(node.dir, 'multi-arm64.json');
    writeFileSync(amd, JSON.stringify({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['chmod'], action: 'SCMP_ACT_ERRNO' }] }));
    writeFileSync(arm, JSON.stringify({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['fchmod'], action: 'SCMP_ACT_ERRNO' }] }));
    await reg.resetRequests();
    const pushed = await spoke(['push', `${reg.host}/signed/multi:v1`, '--kind', 'seccomp', '--plain-http', '--sign-key', keyFile, '--platform', `linux/amd64=${amd}`, '--platform', `linux/arm64=${arm}`]);
    assert.equal(pushed.code, 0, pushed.stderr);
    const ref = pushed.stdout.trim().split('\n').at(-1)!;
    const digest = ref.split('@')[1]!;
    await reg.settle();
    const puts = reg.requests().filter((r) => r.method === 'PUT' && r.path.includes('/signed/multi/manifests/')).map((r) => r.path.split('/manifests/')[1]!);
    assert.ok(!puts.slice(0, -1).includes('v1'), `the tag once only, last: ${puts.join(' ')}`);
    assert.equal(puts.at(-1), 'v1', puts.join(' '));
    assert.ok(puts.indexOf(digest) >= 0 && puts.indexOf(digest) < puts.findIndex((x) => x.startsWith('sha256-')), `the index by digest before its signature: ${puts.join(' ')}`);
    const tagged = await fetch(`${reg.url}/v2/signed/multi/manifests/v1`, { method: 'HEAD', headers: { accept: 'application/vnd.oci.image.index.v1+json' } });
    assert.equal(tagged.headers.get('docker-content-digest'), digest);
    assert.equal(tagged.headers.get('content-type'), 'application/vnd.oci.image.index.v1+json');
  });

  it('spoke push --sign-key, then spoke verify and spoke store ls show the signer', async () => {
    node.writePolicy(policy(reg, { platform: fileA }, ['platform']));
    const keyFile = join(node.dir, 'a.key');
    writeFileSync(keyFile, keyA.privatePem);
    const profile = join(node.dir, 'p.json');
    writeFileSync(profile, JSON.stringify({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['chmod'], action: 'SCMP_ACT_ERRNO' }] }));
    await reg.resetRequests();
    const pushed = await spoke(['push', profile, `${reg.host}/signed/cli:v1`, '--kind', 'seccomp', '--plain-http', '--sign-key', keyFile]);
    assert.equal(pushed.code, 0, pushed.stderr);
    const ref = pushed.stdout.trim().split('\n').at(-1)!;
    // The tag moves last, to the digest printed, once the signature hangs from it.
    await reg.settle();
    const puts = reg.requests().filter((r) => r.method === 'PUT' && r.path.includes('/signed/cli/manifests/')).map((r) => r.path.split('/manifests/')[1]);
    assert.deepEqual([puts[0], puts.at(-1)], [ref.split('@')[1], 'v1'], puts.join(' '));
    const tagged = await fetch(`${reg.url}/v2/signed/cli/manifests/v1`, { method: 'HEAD', headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } });
    assert.equal(tagged.headers.get('docker-content-digest'), ref.split('@')[1]);
    const verified = await spoke(['verify', ref, '--policy', node.policyFile, '--json']);
    assert.equal(verified.code, 0, verified.stderr);
    assert.equal(JSON.parse(verified.stdout).signer, 'platform');
    const config = join(node.dir, 'config.yaml');
    writeFileSync(config, `policy: ${node.policyFile}\nstoreDir: ${node.config.storeDir}\n`);
    assert.equal((await spoke(['pull', ref, '--kind', 'seccomp', '--config', config])).code, 0);
    const ls = await spoke(['store', 'ls', '--config', config]);
    assert.match(ls.stdout, /signer: platform \(bundle\)/);
  });
});
