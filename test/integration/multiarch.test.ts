// Multi-architecture profiles (docs/multi-arch.md) against the real docker-registry: an OCI image
// index built here with plain HTTP calls (not by spoke), pulled for this node's platform and for
// an injected one; an index without the node's platform; signatures required on the index digest;
// `spoke push --platform` and `spoke sign` of the index through the CLI; `spoke store ls`.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { verdictUnder } from '../../src/store/store.js';
import { nodePlatform, PullPipeline } from '../../src/pull.js';
import { SpokeError } from '../../src/core/errors.js';
import type { Digest } from '../../src/core/digest.js';
import { UndiciRegistryClient } from '../../src/registry/client.js';
import { ProfileStore } from '../../src/store/store.js';
import { signArtifact } from '../../src/publish/sign.js';
import { makeKey, OCI_INDEX, OCI_MANIFEST, pushTestArtifact, SECCOMP_CONFIG, type PushedArtifact } from '../helpers/signing.js';
import { putIndex as putIndexOver, type IndexEntry } from '../helpers/multiarch.js';
import { startRegistry, type TestRegistry } from '../helpers/registry.js';
import { testNode, unsignedPolicy, type TestNode } from '../helpers/node.js';
import { spoke } from '../helpers/cli.js';

const AMD64_PROFILE = { defaultAction: 'SCMP_ACT_ALLOW', architectures: ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32'], syscalls: [{ names: ['mkdir'], action: 'SCMP_ACT_ERRNO' }] };
const ARM64_PROFILE = { defaultAction: 'SCMP_ACT_ALLOW', architectures: ['SCMP_ARCH_AARCH64', 'SCMP_ARCH_ARM'], syscalls: [{ names: ['mkdirat'], action: 'SCMP_ACT_ERRNO' }] };

const putIndex = (reg: TestRegistry, repository: string, entries: IndexEntry[], extra: Record<string, unknown> = {}) => putIndexOver(reg.url, reg.host, repository, entries, extra);

async function rejects(p: Promise<unknown>, code: string, reason?: string): Promise<SpokeError> {
  let caught: unknown;
  await assert.rejects(p, (e: unknown) => {
    caught = e;
    return e instanceof SpokeError && e.code === code && (reason === undefined || e.reason === reason);
  });
  return caught as SpokeError;
}

describe('multi-architecture profiles', () => {
  let reg: TestRegistry;
  let node: TestNode;
  let amd64: PushedArtifact;
  let arm64: PushedArtifact;
  before(async () => {
    reg = await startRegistry();
    node = testNode(unsignedPolicy([`${reg.host}/multi`]));
    amd64 = await pushTestArtifact(reg.url, reg.host, 'multi/profile', AMD64_PROFILE);
    arm64 = await pushTestArtifact(reg.url, reg.host, 'multi/profile', ARM64_PROFILE);
  });
  after(async () => {
    await node.dispose();
    await reg.stop();
  });

  it('this node is linux/amd64 (the tests below assume it)', () => {
    assert.deepEqual(nodePlatform(), { os: 'linux', architecture: 'amd64' });
  });

  it("pulls this node's platform from an index built with plain HTTP, records both digests, then serves it cached", async () => {
    const index = await putIndex(reg, 'multi/profile', [
      { artifact: arm64, platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } },
      { artifact: amd64, platform: { os: 'linux', architecture: 'amd64' } },
    ]);
    const first = await node.pipeline.pull({ reference: index.reference, kind: 'seccomp' });
    assert.equal(first.cached, false);
    assert.equal(first.digest, index.digest);
    assert.deepEqual(first.platform, { digest: amd64.digest, platform: 'linux/amd64' });
    assert.deepEqual(JSON.parse(readFileSync(first.path, 'utf8')), AMD64_PROFILE);
    const record = await node.store.getRecord(index.digest);
    assert.equal(record?.platform?.digest, amd64.digest);
    assert.equal(record?.platform?.architecture, 'amd64');
    assert.deepEqual(Buffer.from(record!.manifest, 'base64'), index.bytes);
    assert.deepEqual(Buffer.from(record!.platform!.manifest, 'base64'), amd64.manifest);
    assert.deepEqual((await node.store.verify()).corrupt, []);

    await reg.resetRequests();
    const second = await node.pipeline.pull({ reference: index.reference, kind: 'seccomp' });
    assert.equal(second.cached, true);
    assert.deepEqual(second.platform, first.platform);
    await reg.settle();
    assert.deepEqual(reg.requests(), []);

    const ls = await spoke(['store', 'ls', '--store', node.config.storeDir, '--json']);
    assert.equal(ls.code, 0, ls.stderr);
    const entry = (JSON.parse(ls.stdout) as { digest: string; platform?: { digest: string; architecture: string } }[]).find((e) => e.digest === index.digest);
    assert.equal(entry?.platform?.digest, amd64.digest);
    assert.equal(entry?.platform?.architecture, 'amd64');
    const text = await spoke(['store', 'ls', '--store', node.config.storeDir]);
    assert.match(text.stdout, new RegExp(`${index.digest}  seccomp[^\\n]*\\n  index; linux/amd64 manifest: ${amd64.digest}`));
  });

  it('a store shared with a node of another platform: its record of the index is refused, never this node\'s cached pull', async () => {
    const index = await putIndex(reg, 'multi/profile', [
      { artifact: amd64, platform: { os: 'linux', architecture: 'amd64' } },
      { artifact: arm64, platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } },
    ]);
    const root = join(node.dir, 'shared-store');
    const client = new UndiciRegistryClient({ insecure: [reg.host] });
    const pipelineOn = (platform: { os: string; architecture: string }) =>
      new PullPipeline({ policy: () => node.policy.current(), registry: () => ({ client, release: () => {} }), pullTimeoutMs: 30_000, store: new ProfileStore({ root }), platform });
    try {
      assert.equal((await pipelineOn({ os: 'linux', architecture: 'arm64' }).pull({ reference: index.reference, kind: 'seccomp' })).platform?.platform, 'linux/arm64/v8');
      // One record per digest holds one platform's profile: a store serves the nodes of one platform.
      await rejects(pipelineOn({ os: 'linux', architecture: 'amd64' }).pull({ reference: index.reference, kind: 'seccomp' }), 'FailedPrecondition', 'STORE_PLATFORM');
      // The same when the other node's record was fetched with a pod's credentials, which this
      // pull may not reuse: it fetches its own platform's profile, and the record it finds at
      // ingest is still the other platform's. Refused, not answered with that record.
      const other = join(node.dir, 'shared-store-credentialed');
      const on = (architecture: string) => new PullPipeline({ policy: () => node.policy.current(), registry: () => ({ client, release: () => {} }), pullTimeoutMs: 30_000, store: new ProfileStore({ root: other }), platform: { os: 'linux', architecture } });
      await on('arm64').pull({ reference: index.reference, kind: 'seccomp', credential: { kind: 'basic', username: 'pod', password: 'secret' } });
      await rejects(on('amd64').pull({ reference: index.reference, kind: 'seccomp' }), 'FailedPrecondition', 'STORE_PLATFORM');
    } finally {
      await client.close();
    }
  });

  it('with an injected arm64 platform takes the arm64 manifest of the same index', async () => {
    const index = await putIndex(reg, 'multi/profile', [
      { artifact: amd64, platform: { os: 'linux', architecture: 'amd64' } },
      { artifact: arm64, platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } },
    ]);
    const store = new ProfileStore({ root: join(node.dir, 'arm64-store') });
    const client = new UndiciRegistryClient({ insecure: [reg.host] });
    const armNode = new PullPipeline({
      policy: () => node.policy.current(),
      registry: () => ({ client, release: () => {} }),
      pullTimeoutMs: 30_000,
      store,
      platform: { os: 'linux', architecture: 'arm64' },
    });
    try {
      const r = await armNode.pull({ reference: index.reference, kind: 'seccomp' });
      assert.equal(r.digest, index.digest);
      assert.deepEqual(r.platform, { digest: arm64.digest, platform: 'linux/arm64/v8' });
      assert.deepEqual(JSON.parse(readFileSync(r.path, 'utf8')), ARM64_PROFILE);
    } finally {
      await client.close();
    }
  });

  it("refuses an index without this node's platform, naming the platform, and records no verdict on the index", async () => {
    const index = await putIndex(reg, 'multi/profile', [
      { artifact: arm64, platform: { os: 'linux', architecture: 'arm64' } },
      { artifact: amd64, platform: { os: 'linux', architecture: 's390x' } },
    ]);
    const err = await rejects(node.pipeline.pull({ reference: index.reference, kind: 'seccomp' }), 'SecurityProfileInvalid', 'PLATFORM_MISSING');
    assert.equal(err.context.expected, 'linux/amd64');
    assert.match(err.message, /linux\/amd64/);
    assert.equal(await node.store.getRecord(index.digest), undefined);
    // Other nodes (arm64 here) may use this index: the refusal is not a verdict on its content.
    assert.equal(await node.store.getInvalid(index.digest), undefined);
  });

  it('refuses an index listing one platform twice, and remembers that verdict on the index digest', async () => {
    const index = await putIndex(reg, 'multi/profile', [
      { artifact: amd64, platform: { os: 'linux', architecture: 'arm64' } },
      { artifact: arm64, platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } },
    ]);
    await rejects(node.pipeline.pull({ reference: index.reference, kind: 'seccomp' }), 'SecurityProfileInvalid');
    assert.ok(await node.store.getInvalid(index.digest));
    await reg.resetRequests();
    await rejects(node.pipeline.pull({ reference: index.reference, kind: 'seccomp' }), 'SecurityProfileInvalid');
    await reg.settle();
    assert.deepEqual(reg.requests(), []);
  });

  it("refuses an index whose descriptor lies about the manifest's size, as a verdict on the index", async () => {
    const liar = { digest: amd64.digest, manifest: Buffer.alloc(amd64.manifest.length + 1) };
    const index = await putIndex(reg, 'multi/profile', [{ artifact: liar, platform: { os: 'linux', architecture: 'amd64' } }]);
    await rejects(node.pipeline.pull({ reference: index.reference, kind: 'seccomp' }), 'SecurityProfileInvalid', 'SIZE_LIMIT');
    assert.ok(await node.store.getInvalid(index.digest));
    assert.equal(await node.store.getInvalid(amd64.digest as Digest), undefined);
  });

  it('an index whose entry is another index is refused as a verdict on the outer index: the inner one stays pullable', async () => {
    // A registry that answers a manifest request with an index whatever the Accept header says
    // (docker-registry honours it). Verdicts are kept by digest for every scope: the inner
    // index's bytes are only wrong where the outer one calls them an image manifest.
    const inner = await putIndex(reg, 'multi/profile', [{ artifact: amd64, platform: { os: 'linux', architecture: 'amd64' } }]);
    const outerBytes = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, artifactType: SECCOMP_CONFIG, manifests: [{ mediaType: OCI_MANIFEST, digest: inner.digest, size: inner.bytes.length, platform: { os: 'linux', architecture: 'amd64' } }] }));
    const outerDigest = `sha256:${createHash('sha256').update(outerBytes).digest('hex')}` as Digest;
    const served = new Map([[outerDigest, outerBytes], [inner.digest, inner.bytes]]);
    const hostile = createServer((req, res) => {
      const bytes = served.get(req.url!.split('/manifests/')[1] as Digest);
      if (!bytes) return void res.writeHead(404).end();
      res.writeHead(200, { 'content-type': OCI_INDEX, 'content-length': bytes.length }).end(bytes);
    });
    await new Promise<void>((resolve) => hostile.listen(0, '127.0.0.1', resolve));
    const host = `127.0.0.1:${(hostile.address() as AddressInfo).port}`;
    const other = testNode(unsignedPolicy([`${host}/tenant-a`, `${reg.host}/multi`]));
    try {
      await rejects(other.pipeline.pull({ reference: `${host}/tenant-a@${outerDigest}`, kind: 'seccomp' }), 'SecurityProfileInvalid', 'MANIFEST_INVALID');
      assert.ok(await other.store.getInvalid(outerDigest));
      assert.equal(await other.store.getInvalid(inner.digest), undefined);
      const pulled = await other.pipeline.pull({ reference: inner.reference, kind: 'seccomp' });
      assert.equal(pulled.platform?.digest, amd64.digest);
    } finally {
      await other.dispose();
      hostile.close();
    }
  });

  it("remembers an invalid platform profile under the platform manifest's digest, and refuses it again without fetching it", async () => {
    const broken = await pushTestArtifact(reg.url, reg.host, 'multi/profile', { defaultAction: 'SCMP_ACT_NOPE' });
    const index = await putIndex(reg, 'multi/profile', [
      { artifact: broken, platform: { os: 'linux', architecture: 'amd64' } },
      { artifact: arm64, platform: { os: 'linux', architecture: 'arm64' } },
    ]);
    await rejects(node.pipeline.pull({ reference: index.reference, kind: 'seccomp' }), 'SecurityProfileInvalid');
    assert.ok(await node.store.getInvalid(broken.digest as Digest));
    assert.equal(await node.store.getInvalid(index.digest), undefined);
    await reg.resetRequests();
    await rejects(node.pipeline.pull({ reference: index.reference, kind: 'seccomp' }), 'SecurityProfileInvalid');
    await reg.settle();
    assert.deepEqual(
      reg.requests().map((r) => r.path),
      [`/v2/multi/profile/manifests/${index.digest}`],
    );
  });

  it('refuses an index whose artifactType is another kind, as a kind mismatch', async () => {
    const index = await putIndex(reg, 'multi/profile', [{ artifact: amd64, platform: { os: 'linux', architecture: 'amd64' } }], { artifactType: 'application/vnd.cncf.apparmor-profile.config.v1+json' });
    await rejects(node.pipeline.pull({ reference: index.reference, kind: 'seccomp' }), 'SecurityProfileInvalid', 'KIND_MISMATCH');
    assert.equal(await node.store.getInvalid(index.digest), undefined);
  });

  it('verifies a signature required by the policy on the index digest, not on the platform manifest', async () => {
    const key = makeKey('p256');
    const pub = join(node.dir, 'multi.pub');
    writeFileSync(pub, key.publicPem);
    const signedNode = testNode(
      ['apiVersion: spoke.dev/v1alpha1', 'kind: NodeProfilePolicy', 'signers:', `  ci: { publicKey: ${pub} }`, 'rules:', `  - scope: ${reg.host}/signed`, '    kinds: [seccomp]', '    signedBy: [ci]', `insecure: [${reg.host}]`].join('\n'),
    );
    const client = new UndiciRegistryClient({ plainHttp: true });
    try {
      const a = await pushTestArtifact(reg.url, reg.host, 'signed/multi', AMD64_PROFILE);
      const b = await pushTestArtifact(reg.url, reg.host, 'signed/multi', ARM64_PROFILE);
      const index = await putIndex(reg, 'signed/multi', [
        { artifact: a, platform: { os: 'linux', architecture: 'amd64' } },
        { artifact: b, platform: { os: 'linux', architecture: 'arm64' } },
      ]);
      const repo = { registry: reg.host, repository: 'signed/multi' };
      // Only the platform manifest signed: the index, the reference as written, is not.
      await signArtifact({ registry: client, repo, digest: a.digest as Digest, manifestBytes: a.manifest, key: key.privatePem, format: 'bundle' });
      await rejects(signedNode.pipeline.pull({ reference: index.reference, kind: 'seccomp' }), 'SignatureValidationFailed');
      assert.equal(await signedNode.store.getRecord(index.digest), undefined);

      await signArtifact({ registry: client, repo, digest: index.digest, manifestBytes: index.bytes, key: key.privatePem, format: 'bundle' });
      const r = await signedNode.pipeline.pull({ reference: index.reference, kind: 'seccomp' });
      assert.equal(r.signer?.signer, 'ci');
      assert.deepEqual(r.platform, { digest: a.digest, platform: 'linux/amd64' });
      const record = await signedNode.store.getRecord(index.digest);
      assert.equal(verdictUnder(record!, signedNode.policy.current().hash, [{ name: 'ci', type: 'publicKey' }])?.signer, 'ci');
    } finally {
      await client.close();
      await signedNode.dispose();
    }
  });

  it('spoke push --platform pushes both artifacts and the index, prints the index last; spoke sign signs the index', async () => {
    const a = join(node.dir, 'a.json');
    const b = join(node.dir, 'b.json');
    writeFileSync(a, JSON.stringify(AMD64_PROFILE));
    writeFileSync(b, JSON.stringify(ARM64_PROFILE));
    const pushed = await spoke(['push', '--kind', 'seccomp', '--platform', `linux/amd64=${a}`, '--platform', `linux/arm64=${b}`, `${reg.host}/multi/pushed:v1`, '--plain-http']);
    assert.equal(pushed.code, 0, pushed.stderr);
    const lines = pushed.stdout.trim().split('\n');
    const reference = lines.at(-1)!;
    assert.match(reference, new RegExp(`^${reg.host}/multi/pushed@sha256:[0-9a-f]{64}$`));
    assert.match(lines[0]!, /^linux\/amd64: /);
    assert.match(lines[1]!, /^linux\/arm64: /);

    // The registry holds an OCI index at the tag, naming both platforms.
    const res = await fetch(`${reg.url}/v2/multi/pushed/manifests/v1`, { headers: { accept: OCI_INDEX } });
    const index = (await res.json()) as { mediaType: string; manifests: { digest: string; platform: { architecture: string } }[] };
    assert.equal(index.mediaType, OCI_INDEX);
    assert.deepEqual(
      index.manifests.map((m) => m.platform.architecture),
      ['amd64', 'arm64'],
    );
    assert.equal(lines[0], `linux/amd64: ${reg.host}/multi/pushed@${index.manifests[0]!.digest}`);

    const r = await node.pipeline.pull({ reference, kind: 'seccomp' });
    assert.equal(r.platform?.digest, index.manifests[0]!.digest);
    assert.deepEqual(JSON.parse(readFileSync(r.path, 'utf8')), AMD64_PROFILE);

    const key = makeKey('p256');
    const keyFile = join(node.dir, 'push.key');
    writeFileSync(keyFile, key.privatePem, { mode: 0o644 });
    chmodSync(keyFile, 0o644);
    writeFileSync(join(node.dir, 'push.pub'), key.publicPem);
    // An unencrypted key that others may read is used, with a warning: its mode is its only guard.
    const open = await spoke(['sign', reference, '--key', keyFile, '--plain-http']);
    assert.equal(open.code, 0, open.stderr);
    assert.match(open.stderr, /warning: key .*push\.key is open to its group or others \(mode 0644\).*chmod 600/);
    chmodSync(keyFile, 0o600);
    const signed = await spoke(['sign', reference, '--key', keyFile, '--plain-http']);
    assert.equal(signed.code, 0, signed.stderr);
    assert.doesNotMatch(signed.stderr, /warning/);
    const signedNode = testNode(
      ['apiVersion: spoke.dev/v1alpha1', 'kind: NodeProfilePolicy', 'signers:', `  ci: { publicKey: ${join(node.dir, 'push.pub')} }`, 'rules:', `  - scope: ${reg.host}/multi/pushed`, '    kinds: [seccomp]', '    signedBy: [ci]', `insecure: [${reg.host}]`].join('\n'),
    );
    try {
      const s = await signedNode.pipeline.pull({ reference, kind: 'seccomp' });
      assert.equal(s.signer?.signer, 'ci');
      // spoke verify checks the index reference as a pull would.
      const verified = await spoke(['verify', reference, '--policy', signedNode.policyFile, '--json']);
      assert.equal(verified.code, 0, verified.stderr);
      assert.deepEqual(JSON.parse(verified.stdout).signer, 'ci');
    } finally {
      await signedNode.dispose();
    }
  });

  it('spoke push refuses a platform given twice, malformed, or with a profile for another architecture, and pushes nothing', async () => {
    const a = join(node.dir, 'a2.json');
    writeFileSync(a, JSON.stringify(AMD64_PROFILE));
    const twice = await spoke(['push', '--kind', 'seccomp', '--platform', `linux/amd64=${a}`, '--platform', `linux/amd64/v1=${a}`, `${reg.host}/multi/twice:v1`, '--plain-http']);
    assert.notEqual(twice.code, 0);
    assert.match(twice.stderr, /linux\/amd64/);
    const bad = await spoke(['push', '--kind', 'seccomp', '--platform', `amd64=${a}`, `${reg.host}/multi/twice:v1`, '--plain-http']);
    assert.equal(bad.code, 2);
    // An amd64 profile given as the arm64 one: refused, naming the architecture it lacks.
    const swapped = await spoke(['push', '--kind', 'seccomp', '--platform', `linux/arm64=${a}`, `${reg.host}/multi/twice:v1`, '--plain-http']);
    assert.notEqual(swapped.code, 0);
    assert.match(swapped.stderr, /linux\/arm64: .*not SCMP_ARCH_AARCH64/);
    // Kernel names no node matches (nodes use the OCI names), and a profile for another OS.
    const kernelName = await spoke(['push', '--kind', 'seccomp', '--platform', `linux/x86_64=${a}`, `${reg.host}/multi/twice:v1`, '--plain-http']);
    assert.notEqual(kernelName.code, 0);
    assert.match(kernelName.stderr, /x86_64 .*amd64/);
    const windows = await spoke(['push', '--kind', 'seccomp', '--platform', `windows/amd64=${a}`, `${reg.host}/multi/twice:v1`, '--plain-http']);
    assert.notEqual(windows.code, 0);
    assert.match(windows.stderr, /linux/);
    const res = await fetch(`${reg.url}/v2/multi/twice/tags/list`);
    assert.equal(res.status, 404);
    await res.arrayBuffer();
  });
});
