// Shared fetches ("flights") against a real docker-registry behind a proxy that can hold
// requests, trickle bodies or cut connections: one caller's failure is never another's, every
// flight ends at its total deadline, transport faults are transient, and a policy reload never
// closes the registry client under a pull in flight.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { SpokeError } from '../../src/core/errors.js';
import type { Digest } from '../../src/core/digest.js';
import { createPromMetrics } from '../../src/observe/metrics.js';
import { credentialsFromEntries } from '../../src/registry/credentials.js';
import type { Credential } from '../../src/registry/types.js';
import { denySyscalls, pushRawArtifact } from '../helpers/artifacts.js';
import { storeFiles, testNode, unsignedPolicy, type TestNode } from '../helpers/node.js';
import { startRegistry, type TestRegistry } from '../helpers/registry.js';
import { blobs, manifests, startSlowProxy, type SlowProxy } from '../helpers/slow-proxy.js';
import { rejectsWith } from '../helpers/assert.js';
import { makeKey } from '../helpers/signing.js';
import { signArtifact } from '../../src/publish/sign.js';
import { UndiciRegistryClient } from '../../src/registry/client.js';
import { spoke } from '../helpers/cli.js';

/** The same artifact, named through the proxy. */
const via = (proxy: SlowProxy, reg: TestRegistry, reference: string) => reference.replace(reg.host, proxy.host);
const seen = (proxy: SlowProxy, match: typeof manifests) => proxy.requests().filter(match).length;

/** Until `n` callers wait on flights of `reference` (each joins after its store lookup). */
async function joined(node: TestNode, reference: string, n: number): Promise<void> {
  while (node.pipeline.waiting(reference) < n) await new Promise((r) => setImmediate(r));
}

describe('single-flight pulls through a slow registry', () => {
  let reg: TestRegistry;
  let proxy: SlowProxy;
  before(async () => {
    reg = await startRegistry();
  });
  after(async () => {
    await reg.stop();
  });

  const withProxy = async (fn: (node: TestNode) => Promise<void>, config: Parameters<typeof testNode>[1] = {}, opts: Parameters<typeof testNode>[2] = {}) => {
    proxy = await startSlowProxy(reg.port);
    const node = testNode(unsignedPolicy([`${proxy.host}/profiles`, `${reg.host}/profiles`]), config, opts);
    try {
      await fn(node);
    } finally {
      await node.dispose();
      await proxy.close();
    }
  };

  it('a cancelled first caller does not fail the second caller of the same flight', () =>
    withProxy(async (node) => {
      const { reference } = await pushRawArtifact(reg.host, 'profiles/cancel-first', { layers: [{ bytes: denySyscalls(['mkdir']) }] });
      const ref = via(proxy, reg, reference);
      const hold = proxy.hold(manifests);
      const ac = new AbortController();
      const first = rejectsWith(node.pipeline.pull({ reference: ref, kind: 'seccomp', signal: ac.signal }), { code: 'Unavailable' });
      await hold.arrived();
      const second = node.pipeline.pull({ reference: ref, kind: 'seccomp' });
      await joined(node, ref, 2);
      ac.abort(new SpokeError('Unavailable', 'the client cancelled the call'));
      await first;
      hold.release();
      const r = await second;
      assert.equal(r.cached, false);
      assert.equal(seen(proxy, manifests), 1, 'the second caller joined the first one\'s flight');
    }));

  it('a flight every caller has left is aborted, and the next caller starts afresh', () =>
    withProxy(async (node) => {
      const { reference } = await pushRawArtifact(reg.host, 'profiles/all-gone', { layers: [{ bytes: denySyscalls(['rmdir']) }] });
      const ref = via(proxy, reg, reference);
      const hold = proxy.hold(manifests);
      const a = new AbortController();
      const b = new AbortController();
      const first = rejectsWith(node.pipeline.pull({ reference: ref, kind: 'seccomp', signal: a.signal }), { code: 'Unavailable' });
      const second = rejectsWith(node.pipeline.pull({ reference: ref, kind: 'seccomp', signal: b.signal }), { code: 'Unavailable' });
      await hold.arrived();
      await joined(node, ref, 2);
      a.abort(new SpokeError('Unavailable', 'gone'));
      b.abort(new SpokeError('Unavailable', 'gone'));
      await Promise.all([first, second]);
      assert.equal(node.pipeline.waiting(ref), 0);
      // The flight itself was stopped: its registry request is given up while still held.
      await proxy.abandoned(manifests);
      hold.release();
      const third = await node.pipeline.pull({ reference: ref, kind: 'seccomp' });
      assert.equal(third.cached, false);
      assert.equal(seen(proxy, manifests), 2, 'the third caller made a flight of its own');
    }));

  it('a flight aborted while its artifact is being stored places nothing: its callers were answered with the refusal', () =>
    withProxy(async (node) => {
      const { reference } = await pushRawArtifact(reg.host, 'profiles/gone-at-store', { layers: [{ bytes: denySyscalls(['chroot']) }] });
      const ref = via(proxy, reg, reference);
      const caller = new AbortController();
      // The caller leaves just as the pipeline starts storing (the moment its blob is written and flushed).
      const ingest = node.store.ingest.bind(node.store);
      let storing: Promise<unknown> | undefined;
      node.store.ingest = (...args: Parameters<typeof ingest>) => {
        caller.abort(new SpokeError('Unavailable', 'the client cancelled the call', {}, { reason: 'CANCELLED' }));
        const p = ingest(...args);
        storing = p;
        return p;
      };
      await rejectsWith(node.pipeline.pull({ reference: ref, kind: 'seccomp', signal: caller.signal }), { code: 'Unavailable' });
      assert.ok(storing, 'the pipeline reached its store step');
      await storing.catch(() => undefined);
      node.store.ingest = ingest;
      assert.deepEqual(storeFiles(node), [], 'no blob, record or temp file after the answered refusal');
      const again = await node.pipeline.pull({ reference: ref, kind: 'seccomp' });
      assert.equal(again.cached, false, 'the next pull fetches: nothing was stored for the refused one');
    }));

  it('a body trickled at 1 byte/s ends at the flight total deadline with RegistryUnavailable, and no verdict', { timeout: 60_000 }, () =>
    withProxy(
      async (node) => {
        const { reference, digest } = await pushRawArtifact(reg.host, 'profiles/trickle', { layers: [{ bytes: denySyscalls(['chroot']) }] });
        proxy.trickle(blobs, 1000);
        // No caller signal at all (as a CLI pull, or a CRI call without grpc-timeout).
        await rejectsWith(node.pipeline.pull({ reference: via(proxy, reg, reference), kind: 'seccomp' }), { code: 'RegistryUnavailable', reason: 'DEADLINE' });
        assert.equal(await node.store.getInvalid(digest as Digest), undefined);
        assert.equal(await node.store.getRecord(digest as Digest), undefined);
      },
      { pullTimeout: 2_000 },
    ));

  it('a connection closed mid-body is RegistryUnavailable (TRANSPORT), counted as registry_unavailable, no verdict', async () => {
    const metrics = await createPromMetrics();
    await withProxy(
      async (node) => {
        const { reference, digest } = await pushRawArtifact(reg.host, 'profiles/cut', { layers: [{ bytes: denySyscalls(['pivot_root']) }] });
        proxy.cut(blobs, 10);
        await rejectsWith(node.pipeline.pull({ reference: via(proxy, reg, reference), kind: 'seccomp' }), { code: 'RegistryUnavailable', reason: 'TRANSPORT' });
        assert.equal(await node.store.getInvalid(digest as Digest), undefined);
        const { body } = await metrics.render();
        assert.match(body, /^spoke_profile_pull_errors_total\{reason="registry_unavailable"\} 1$/m);
        assert.match(body, /^spoke_profile_pull_errors_total\{reason="other"\} 0$/m);
      },
      {},
      { observer: metrics },
    );
  });

  it('a policy reload does not close the registry client under a pull in flight', () =>
    withProxy(async (node) => {
      const { reference } = await pushRawArtifact(reg.host, 'profiles/reload-a', { layers: [{ bytes: denySyscalls(['swapoff']) }] });
      const other = await pushRawArtifact(reg.host, 'profiles/reload-b', { layers: [{ bytes: denySyscalls(['sethostname']) }] });
      const hold = proxy.hold(manifests);
      const inFlight = node.pipeline.pull({ reference: via(proxy, reg, reference), kind: 'seccomp' });
      await hold.arrived();
      // A new policy (another hash), then a pull under it: the old client is replaced.
      node.writePolicy(unsignedPolicy([`${proxy.host}/profiles`, `${reg.host}/profiles`, `${reg.host}/elsewhere`]));
      assert.equal((await node.pipeline.pull({ reference: other.reference, kind: 'seccomp' })).cached, false);
      hold.release();
      assert.equal((await inFlight).cached, false);
    }));

  /**
   * Two rules at one scope that differ by namespace: team-a's admits the profile unsigned, and
   * `signed` says what team-b's and team-c's require. The keys' files sit in the node's dir.
   */
  const namespacedPolicy = (dir: string, host: string, keys: Record<string, string>, signed: { teamB: string; teamC?: string }) => {
    for (const [name, pem] of Object.entries(keys)) writeFileSync(join(dir, `${name}.pub`), pem);
    return [
      'apiVersion: spoke.dev/v1alpha1',
      'kind: NodeProfilePolicy',
      'signers:',
      ...Object.keys(keys).map((name) => `  ${name}: { publicKey: ${join(dir, `${name}.pub`)} }`),
      'rules:',
      `  - scope: ${host}/teams\n    kinds: [seccomp]\n    namespaces: [team-a]\n    unsigned: true`,
      `  - scope: ${host}/teams\n    kinds: [seccomp]\n    namespaces: [team-b]\n    signedBy: [${signed.teamB}]`,
      ...(signed.teamC ? [`  - scope: ${host}/teams\n    kinds: [seccomp]\n    namespaces: [team-c]\n    signedBy: [${signed.teamC}]`] : []),
      `insecure: [${host}]`,
    ].join('\n');
  };

  it('a pull joins only a fetch decided by the same rules: a namespace that requires a signature never takes an unsigned rule\'s result', async () => {
    proxy = await startSlowProxy(reg.port);
    const node = testNode(unsignedPolicy([`${proxy.host}/none`]));
    try {
      node.writePolicy(namespacedPolicy(node.dir, proxy.host, { platform: makeKey().publicPem }, { teamB: 'platform' }));
      const { reference } = await pushRawArtifact(reg.host, 'teams/unsigned', { layers: [{ bytes: denySyscalls(['swapon']) }] });
      const ref = via(proxy, reg, reference);
      const hold = proxy.hold(manifests);
      const teamA = node.pipeline.pull({ reference: ref, kind: 'seccomp', namespace: 'team-a' });
      await hold.arrived();
      const teamB = rejectsWith(node.pipeline.pull({ reference: ref, kind: 'seccomp', namespace: 'team-b' }), { code: 'SignatureValidationFailed', reason: 'NOT_SIGNED' });
      await joined(node, ref, 2);
      hold.release();
      assert.equal((await teamA).signer, undefined);
      await teamB;
    } finally {
      await node.dispose();
      await proxy.close();
    }
  });

  it("a flight that fails ends the requests it no longer needs: a signature discovery the registry answers slowly is given up, not left running", { timeout: 20_000 }, async () => {
    proxy = await startSlowProxy(reg.port);
    const node = testNode(unsignedPolicy([`${proxy.host}/none`]));
    try {
      node.writePolicy(namespacedPolicy(node.dir, proxy.host, { platform: makeKey().publicPem }, { teamB: 'platform' }));
      const { reference } = await pushRawArtifact(reg.host, 'teams/not-json', { layers: [{ bytes: Buffer.from('not a profile') }] });
      // The referrers API and the tag schema, the signature's discovery, answered a byte every
      // half second: each byte restarts the client's body timeout.
      const discovery: typeof manifests = (r) => r.path.includes('/referrers/') || r.path.includes('/manifests/sha256-');
      proxy.trickle(discovery, 500);
      await rejectsWith(node.pipeline.pull({ reference: via(proxy, reg, reference), kind: 'seccomp', namespace: 'team-b' }), { code: 'SecurityProfileInvalid' });
      // Given up within this test's time only by the flight's end.
      await proxy.abandoned(discovery);
    } finally {
      await node.dispose();
      await proxy.close();
    }
  });

  it('a re-verification is shared only under the same rules: a namespace whose signer did not sign is refused beside one whose signer did', async () => {
    proxy = await startSlowProxy(reg.port);
    const node = testNode(unsignedPolicy([`${proxy.host}/none`]));
    const signerA = makeKey();
    const client = new UndiciRegistryClient({ insecure: [reg.host] });
    try {
      node.writePolicy(namespacedPolicy(node.dir, proxy.host, { a: signerA.publicPem, b: makeKey().publicPem }, { teamB: 'a', teamC: 'b' }));
      const pushed = await pushRawArtifact(reg.host, 'teams/signed', { layers: [{ bytes: denySyscalls(['swapoff']) }] });
      const repo = { registry: reg.host, repository: 'teams/signed' };
      await signArtifact({ registry: client, repo, digest: pushed.digest as Digest, manifestBytes: pushed.manifest, key: signerA.privatePem, format: 'cosign' });
      const ref = via(proxy, reg, pushed.reference);
      // In the store, verified under no signer: each signed rule's pull verifies it again.
      assert.equal((await node.pipeline.pull({ reference: ref, kind: 'seccomp', namespace: 'team-a' })).cached, false);
      const hold = proxy.hold(manifests);
      const teamB = node.pipeline.pull({ reference: ref, kind: 'seccomp', namespace: 'team-b' });
      await hold.arrived();
      const teamC = rejectsWith(node.pipeline.pull({ reference: ref, kind: 'seccomp', namespace: 'team-c' }), { code: 'SignatureValidationFailed' });
      await joined(node, ref, 2);
      hold.release();
      assert.equal((await teamB).signer?.signer, 'a');
      await teamC;
    } finally {
      await client.close();
      await node.dispose();
      await proxy.close();
    }
  });
});

describe('flights are keyed by credential identity (htpasswd registry)', () => {
  let reg: TestRegistry;
  let dir: string;
  let proxy: SlowProxy;
  const alice: Credential = { kind: 'basic', username: 'alice', password: 's3cret' };
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'spoke-htp-'));
    writeFileSync(join(dir, 'htpasswd'), `${execFileSync('htpasswd', ['-Bbn', 'alice', 's3cret'], { encoding: 'utf8' }).trim()}\n`);
    reg = await startRegistry({ authYaml: `htpasswd:\n  realm: spoke-test\n  path: ${join(dir, 'htpasswd')}` });
    proxy = await startSlowProxy(reg.port);
  });
  after(async () => {
    await proxy.close();
    await reg.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('an anonymous pull never joins a credentialed one, nor reuses what it fetched', async () => {
    const node = testNode(unsignedPolicy([`${proxy.host}/private`]));
    try {
      const { reference } = await pushRawArtifact(reg.host, 'private/profile', { layers: [{ bytes: denySyscalls(['kexec_load']) }] }, credentialsFromEntries({ [reg.host]: alice }));
      const ref = via(proxy, reg, reference);
      const hold = proxy.hold(manifests);
      const credentialed = node.pipeline.pull({ reference: ref, kind: 'seccomp', credential: alice });
      await hold.arrived();
      const anonymous = rejectsWith(node.pipeline.pull({ reference: ref, kind: 'seccomp' }), { code: 'Unauthenticated', reason: 'AUTH_REQUIRED' });
      hold.release();
      assert.equal((await credentialed).cached, false);
      await anonymous;
      // The cache follows KEP-2535: a pod without credentials cannot reuse what a pod's
      // credentials fetched; a pod with the same credentials can; other credentials are checked.
      await rejectsWith(node.pipeline.pull({ reference: ref, kind: 'seccomp' }), { code: 'Unauthenticated', reason: 'AUTH_REQUIRED' });
      assert.equal((await node.pipeline.pull({ reference: ref, kind: 'seccomp', credential: alice })).cached, true);
      await rejectsWith(node.pipeline.pull({ reference: ref, kind: 'seccomp', credential: { ...alice, password: 'wrong' } }), { code: 'Unauthenticated', reason: 'AUTH_REFUSED' });
    } finally {
      await node.dispose();
    }
  });

  it("a node pull without an authFile never uses the docker login of the user it runs as", async () => {
    // The shim runs as root: root's ~/.docker/config.json (or $DOCKER_CONFIG, $REGISTRY_AUTH_FILE)
    // is not the node's credential, and a pod's pull must not go out under it.
    const { reference } = await pushRawArtifact(reg.host, 'private/cli', { layers: [{ bytes: denySyscalls(['swapon']) }] }, credentialsFromEntries({ [reg.host]: alice }));
    const home = join(dir, 'docker-home');
    mkdirSync(home);
    writeFileSync(join(home, 'config.json'), JSON.stringify({ auths: { [reg.host]: { auth: Buffer.from('alice:s3cret').toString('base64') } } }));
    writeFileSync(join(dir, 'policy.yaml'), unsignedPolicy([`${reg.host}/private`]));
    const config = join(dir, 'config.yaml');
    writeFileSync(config, `policy: ${join(dir, 'policy.yaml')}\nstoreDir: ${join(dir, 'store')}\n`);
    const env = { DOCKER_CONFIG: home, REGISTRY_AUTH_FILE: join(home, 'config.json') };
    const anonymous = await spoke(['pull', reference, '--kind', 'seccomp', '--config', config], { env });
    assert.equal(anonymous.code, 1, anonymous.stdout);
    assert.match(anonymous.stderr, /^Unauthenticated: /);
    // Named as the node's auth file, the same file is used.
    const named = await spoke(['pull', reference, '--kind', 'seccomp', '--config', config, '--auth-file', join(home, 'config.json')], { env });
    assert.equal(named.code, 0, named.stderr);
  });
});
