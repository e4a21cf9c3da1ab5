// The pull pipeline against a real docker-registry (docs/architecture.md, "The pull pipeline").

import assert from 'node:assert/strict';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { after, before, describe, it } from 'node:test';
import { CONFIG_MEDIA_TYPE, MEDIA_TYPE_OCI_EMPTY } from '../../src/core/constants.js';
import { digestHex, sha256Digest, type Digest } from '../../src/core/digest.js';
import type { ErrorReason } from '../../src/core/errors.js';
import { freePort, registryBlobPath, startRegistry, type TestRegistry } from '../helpers/registry.js';
import { ALLOW_ALL_SECCOMP, denySyscalls, pushRawArtifact } from '../helpers/artifacts.js';
import { storeFiles, testNode, unsignedPolicy, withTestNode, type TestNode } from '../helpers/node.js';
import { rejectsWith } from '../helpers/assert.js';
import { settlesWithinTurn } from '../helpers/event-loop.js';
import { PullPipeline } from '../../src/pull.js';
import { UndiciRegistryClient } from '../../src/registry/client.js';
import type { ProfileStore } from '../../src/store/store.js';
import type { Logger } from '../../src/core/runtime.js';
import { blobs, startSlowProxy, type SlowProxy } from '../helpers/slow-proxy.js';

const count = (reg: TestRegistry, method: string, part: string) => reg.requests().filter((r) => r.method === method && r.path.includes(part)).length;

/** Replaces the stored bytes of blob `layer` in `reg`'s storage with `bytes` (the registry serves them unchecked). */
const tamper = (reg: TestRegistry, layer: Buffer, bytes: Buffer) => writeFileSync(registryBlobPath(reg, sha256Digest(layer)), bytes);

describe('pull pipeline against a real registry', () => {
  let reg: TestRegistry;
  before(async () => {
    reg = await startRegistry();
  });
  after(async () => {
    await reg.stop();
  });

  it('pulls, then serves the second pull from the store with zero registry requests', () =>
    withTestNode(unsignedPolicy([`${reg.host}/profiles`]), async (node) => {
      const { reference, digest } = await pushRawArtifact(reg.host, 'profiles/deny-mkdir', { layers: [{ bytes: denySyscalls(['mkdir', 'mkdirat']) }] });
      await reg.resetRequests();
      const first = await node.pipeline.pull({ reference, kind: 'seccomp' });
      assert.equal(first.cached, false);
      assert.equal(first.digest, digest);
      assert.equal(first.resolvedRef, reference);
      assert.ok(existsSync(first.path));
      await reg.settle();
      assert.equal(count(reg, 'GET', '/manifests/'), 1);
      assert.equal(count(reg, 'GET', '/blobs/'), 1);
      await reg.resetRequests();
      const second = await node.pipeline.pull({ reference, kind: 'seccomp' });
      assert.equal(second.cached, true);
      assert.equal(second.path, first.path);
      await reg.settle();
      assert.deepEqual(reg.requests(), []);
    }));

  it('a stored blob that no longer hashes to its digest (disk damage) is fetched again by the next pull, in this process or another', () =>
    withTestNode(unsignedPolicy([`${reg.host}/profiles`]), async (node) => {
      const layer = denySyscalls(['symlink']);
      const { reference } = await pushRawArtifact(reg.host, 'profiles/deny-symlink', { layers: [{ bytes: layer }] });
      const first = await node.pipeline.pull({ reference, kind: 'seccomp' });
      const damaged = Buffer.from(layer);
      damaged[damaged.length - 2] ^= 1;
      // This process judged the profile at its fetch; a create's check finds the damage.
      writeFileSync(first.path, damaged);
      await rejectsWith(node.store.checkBlob(sha256Digest(layer)), { code: 'SecurityProfileInvalid', reason: 'DIGEST_MISMATCH' });
      const again = await node.pipeline.pull({ reference, kind: 'seccomp' });
      assert.equal(again.cached, false);
      assert.deepEqual(readFileSync(again.path), layer);
      // Another process's pipeline (nothing judged yet) finds the damage itself.
      writeFileSync(first.path, damaged);
      const client = new UndiciRegistryClient({ plainHttp: true });
      try {
        const other = new PullPipeline({ policy: () => node.policy.current(), registry: () => ({ client, release: () => {} }), pullTimeoutMs: 30_000, store: node.store });
        const third = await other.pull({ reference, kind: 'seccomp' });
        assert.equal(third.cached, false);
        assert.deepEqual(readFileSync(third.path), layer);
      } finally {
        await client.close();
      }
    }));

  it('a log sink that fails on the outcome line does not fail a pull that stored its profile', () =>
    withTestNode(unsignedPolicy([`${reg.host}/profiles`]), async (node) => {
      const { reference } = await pushRawArtifact(reg.host, 'profiles/deny-rename', { layers: [{ bytes: denySyscalls(['rename']) }] });
      const client = new UndiciRegistryClient({ plainHttp: true });
      let refused = 0;
      const logger: Logger = {
        log: (_level, msg) => {
          if (msg !== 'security profile pull') return;
          refused++;
          throw Object.assign(new Error('write EPIPE'), { code: 'EPIPE' });
        },
      };
      try {
        const pipeline = new PullPipeline({ policy: () => node.policy.current(), registry: () => ({ client, release: () => {} }), pullTimeoutMs: 30_000, store: node.store, logger });
        const first = await pipeline.pull({ reference, kind: 'seccomp' });
        assert.equal(first.cached, false);
        assert.equal((await pipeline.pull({ reference, kind: 'seccomp' })).cached, true);
        assert.equal(refused, 2, 'both outcome lines reached the sink');
      } finally {
        await client.close();
      }
    }));

  it('a cached pull counts as a use: the next gc run writes it down as the profile\'s last use (docs/gc.md)', () =>
    withTestNode(unsignedPolicy([`${reg.host}/profiles`]), async (node) => {
      const { reference, digest } = await pushRawArtifact(reg.host, 'profiles/deny-unlink', { layers: [{ bytes: denySyscalls(['unlink']) }] });
      await node.pipeline.pull({ reference, kind: 'seccomp' });
      const lastUse = async () => {
        await node.store.collect({ minAgeMs: 3_600_000, effectiveDir: join(node.dir, 'seccomp', 'spoke'), effectiveInUse: new Set() });
        return (JSON.parse(readFileSync(join(node.store.root, 'state', 'last-use.json'), 'utf8')) as { artifacts: Record<string, number> }).artifacts[digest];
      };
      assert.equal(await lastUse(), undefined, 'pulled, never used');
      const before = Date.now();
      assert.equal((await node.pipeline.pull({ reference, kind: 'seccomp' })).cached, true);
      assert.ok((await lastUse())! >= before);
    }));

  it('a cached pull whose record a gc run removed after the lookup fetches again instead of answering from the store', () =>
    withTestNode(unsignedPolicy([`${reg.host}/profiles`]), async (node) => {
      const { reference, digest } = await pushRawArtifact(reg.host, 'profiles/deny-chown', { layers: [{ bytes: denySyscalls(['chown']) }] });
      await node.pipeline.pull({ reference, kind: 'seccomp' });
      const recordFile = join(node.store.root, 'profiles', 'sha256', `${digestHex(digest as Digest)}.json`);
      // The run's removal lands between the pull's lookup and its noted use (collect.ts noteUse).
      const store = Object.create(node.store) as ProfileStore;
      store.getRecord = async (d) => {
        const record = await node.store.getRecord(d);
        rmSync(recordFile);
        return record;
      };
      const client = new UndiciRegistryClient({ plainHttp: true });
      try {
        const pipeline = new PullPipeline({ policy: () => node.policy.current(), registry: () => ({ client, release: () => {} }), pullTimeoutMs: 30_000, store });
        await reg.resetRequests();
        const again = await pipeline.pull({ reference, kind: 'seccomp' });
        assert.equal(again.cached, false);
        await reg.settle();
        assert.equal(count(reg, 'GET', '/manifests/'), 1);
        assert.ok(existsSync(recordFile), 'the fetch wrote the record again');
      } finally {
        await client.close();
      }
    }));

  it('answers a cached pull without a file-system trip through the thread pool (one stat, made synchronously)', () =>
    withTestNode(unsignedPolicy([`${reg.host}/profiles`]), async (node) => {
      const { reference } = await pushRawArtifact(reg.host, 'profiles/deny-rmdir', { layers: [{ bytes: denySyscalls(['rmdir']) }] });
      await node.pipeline.pull({ reference, kind: 'seccomp' });
      const { value, turned } = await settlesWithinTurn(() => node.pipeline.pull({ reference, kind: 'seccomp' }));
      assert.equal(value.cached, true);
      assert.equal(turned, false, 'the cached pull waited on the event loop');
    }));

  it('refuses a namespace that is not a Kubernetes namespace name (InvalidArgument), before any lookup: none is kept', () =>
    withTestNode(unsignedPolicy([`${reg.host}/profiles`]), async (node) => {
      const { reference } = await pushRawArtifact(reg.host, 'profiles/deny-fchmod', { layers: [{ bytes: denySyscalls(['fchmod']) }] });
      await node.pipeline.pull({ reference, kind: 'seccomp', namespace: 'team-a' });
      await reg.resetRequests();
      for (const namespace of ['x'.repeat(64), 'Team-A', '-a', 'a_b', 'a'.repeat(256 * 1024)]) {
        await rejectsWith(node.pipeline.pull({ reference, kind: 'seccomp', namespace }), { code: 'InvalidArgument', reason: 'OPTION_INVALID' });
        assert.equal(node.pipeline.pulledIn(namespace, reference), false, namespace.slice(0, 20));
      }
      await reg.settle();
      assert.deepEqual(reg.requests(), []);
      assert.equal((await node.pipeline.pull({ reference, kind: 'seccomp', namespace: 'x'.repeat(63) })).cached, true);
    }));

  it('refuses a reference no rule allows without any request to any registry', () =>
    withTestNode(unsignedPolicy([`${reg.host}/profiles`]), async (node) => {
      const { reference } = await pushRawArtifact(reg.host, 'other/deny', { layers: [{ bytes: denySyscalls(['chmod']) }] });
      const scopeTrap = reference.replace('/other/', '/profilesevil/');
      await reg.resetRequests();
      // Denied by default: no rule matches, so the refusal names none (a rule that denies is named).
      const denied = { code: 'PermissionDenied', reason: 'POLICY_DENIED' } as const;
      assert.equal((await rejectsWith(node.pipeline.pull({ reference, kind: 'seccomp' }), denied)).context.rule, undefined);
      assert.equal((await rejectsWith(node.pipeline.pull({ reference: scopeTrap, kind: 'seccomp' }), denied)).context.rule, undefined);
      await rejectsWith(node.pipeline.pull({ reference: reference.replace('@sha256:', ':latest@sha256:'), kind: 'seccomp' }), { code: 'InvalidArgument', reason: 'TAG_NOT_DIGEST' });
      await reg.settle();
      assert.deepEqual(reg.requests(), []);
      assert.deepEqual(storeFiles(node), []);
    }));

  it('refuses a digest already in the store once the policy no longer allows it', () =>
    withTestNode(unsignedPolicy([`${reg.host}/profiles`]), async (node) => {
      const { reference } = await pushRawArtifact(reg.host, 'profiles/cached', { layers: [{ bytes: denySyscalls(['unshare']) }] });
      await node.pipeline.pull({ reference, kind: 'seccomp' });
      node.writePolicy(unsignedPolicy([`${reg.host}/elsewhere`]));
      await rejectsWith(node.pipeline.pull({ reference, kind: 'seccomp' }), { code: 'PermissionDenied', reason: 'POLICY_DENIED' });
    }));

  it('a blob tampered in registry storage is RegistryUnavailable (the source, not the digest): nothing stored, no verdict', () =>
    withTestNode(unsignedPolicy([`${reg.host}/profiles`]), async (node) => {
      const layer = denySyscalls(['ptrace']);
      const { reference, digest } = await pushRawArtifact(reg.host, 'profiles/tampered', { layers: [{ bytes: layer }] });
      tamper(reg, layer, ALLOW_ALL_SECCOMP);
      const e = await rejectsWith(node.pipeline.pull({ reference, kind: 'seccomp' }), { code: 'RegistryUnavailable' });
      assert.equal(e.reason, 'DIGEST_MISMATCH');
      assert.deepEqual(storeFiles(node), []);
      assert.equal(await node.store.getInvalid(digest as Digest), undefined);
    }));

  describe('artifact checks on real pushed artifacts', () => {
    const cases: { name: string; spec: Parameters<typeof pushRawArtifact>[2]; reason: ErrorReason }[] = [
      { name: 'wrong config media type', spec: { configMediaType: 'application/vnd.oci.image.config.v1+json', layers: [{ bytes: ALLOW_ALL_SECCOMP }] }, reason: 'KIND_MISMATCH' },
      { name: 'generic unknown config', spec: { configMediaType: 'application/vnd.unknown.config.v1+json', layers: [{ bytes: ALLOW_ALL_SECCOMP }] }, reason: 'KIND_MISMATCH' },
      { name: 'AppArmor artifact pulled as seccomp', spec: { configMediaType: CONFIG_MEDIA_TYPE.apparmor, layers: [{ bytes: ALLOW_ALL_SECCOMP }] }, reason: 'KIND_MISMATCH' },
      { name: 'artifactType disagreeing with config', spec: { artifactType: CONFIG_MEDIA_TYPE.apparmor, layers: [{ bytes: ALLOW_ALL_SECCOMP }] }, reason: 'KIND_MISMATCH' },
      { name: 'empty config without artifactType', spec: { configMediaType: MEDIA_TYPE_OCI_EMPTY, artifactType: null, layers: [{ bytes: ALLOW_ALL_SECCOMP }] }, reason: 'KIND_MISMATCH' },
      { name: 'two layers', spec: { layers: [{ bytes: ALLOW_ALL_SECCOMP }, { bytes: denySyscalls(['bpf']) }] }, reason: 'MANIFEST_INVALID' },
      { name: 'gzip layer', spec: { layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', bytes: gzipSync(ALLOW_ALL_SECCOMP) }] }, reason: 'ARCHIVE_REFUSED' },
      { name: 'tar layer', spec: { layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', bytes: tarOf('profile.json', ALLOW_ALL_SECCOMP) }] }, reason: 'ARCHIVE_REFUSED' },
      { name: 'oversized layer', spec: { layers: [{ bytes: Buffer.alloc(2 * 1024 * 1024, 0x20) }] }, reason: 'SIZE_LIMIT' },
      { name: 'manifest lying about size (smaller)', spec: { layers: [{ bytes: ALLOW_ALL_SECCOMP, size: 10 }] }, reason: 'SIZE_LIMIT' },
      { name: 'external urls', spec: { layers: [{ bytes: ALLOW_ALL_SECCOMP, urls: ['https://example.com/x'] }] }, reason: 'MANIFEST_INVALID' },
      { name: 'not JSON', spec: { layers: [{ bytes: Buffer.from('defaultAction: SCMP_ACT_ALLOW\n') }] }, reason: 'JSON_INVALID' },
      { name: 'duplicate JSON members', spec: { layers: [{ bytes: Buffer.from('{"defaultAction":"SCMP_ACT_ERRNO","defaultAction":"SCMP_ACT_ALLOW"}') }] }, reason: 'JSON_INVALID' },
      { name: 'invalid UTF-8', spec: { layers: [{ bytes: Buffer.from([0x7b, 0x22, 0xff, 0x22, 0x3a, 0x31, 0x7d]) }] }, reason: 'JSON_INVALID' },
    ];
    for (const c of cases) {
      it(`refuses: ${c.name}`, () =>
        withTestNode(unsignedPolicy([`${reg.host}/bad`]), async (node) => {
          const { reference } = await pushRawArtifact(reg.host, `bad/${c.name.replace(/[^a-z0-9]+/gi, '-').replace(/^-|-$/g, '').toLowerCase()}`, c.spec);
          await rejectsWith(node.pipeline.pull({ reference, kind: 'seccomp' }), { code: 'SecurityProfileInvalid', reason: c.reason });
          assert.deepEqual(storeFiles(node), []);
        }));
    }

    it('remembers a permanent verdict: the second pull of an invalid digest makes no request', () =>
      withTestNode(unsignedPolicy([`${reg.host}/bad`]), async (node) => {
        const { reference } = await pushRawArtifact(reg.host, 'bad/remembered', { layers: [{ bytes: ALLOW_ALL_SECCOMP }, { bytes: ALLOW_ALL_SECCOMP }] });
        await rejectsWith(node.pipeline.pull({ reference, kind: 'seccomp' }), { code: 'SecurityProfileInvalid', reason: 'MANIFEST_INVALID' });
        await reg.resetRequests();
        await rejectsWith(node.pipeline.pull({ reference, kind: 'seccomp' }), { code: 'SecurityProfileInvalid', reason: 'KNOWN_INVALID' });
        await reg.settle();
        assert.deepEqual(reg.requests(), []);
      }));
  });

  it('200 concurrent pulls of one digest make one manifest GET and one blob GET', () =>
    withTestNode(unsignedPolicy([`${reg.host}/profiles`]), async (node) => {
      const { reference } = await pushRawArtifact(reg.host, 'profiles/concurrent', { layers: [{ bytes: denySyscalls(['keyctl']) }] });
      await reg.resetRequests();
      const results = await Promise.all(Array.from({ length: 200 }, () => node.pipeline.pull({ reference, kind: 'seccomp' })));
      assert.equal(results.length, 200);
      assert.ok(results.every((r) => r.path === results[0]!.path));
      await reg.settle();
      assert.equal(count(reg, 'GET', '/manifests/'), 1);
      assert.equal(count(reg, 'GET', '/blobs/'), 1);
    }));

  it('blobs held at once are bounded across pulls: a pull past the budget waits for one to finish, then completes', () =>
    withTestNode(unsignedPolicy([`${reg.host}/profiles`]), async (node) => {
      const a = await pushRawArtifact(reg.host, 'profiles/budget-a', { layers: [{ bytes: denySyscalls(['keyctl', 'request_key']) }] });
      const b = await pushRawArtifact(reg.host, 'profiles/budget-b', { layers: [{ bytes: denySyscalls(['add_key']) }] });
      const proxy = await startSlowProxy(reg.port);
      node.writePolicy(unsignedPolicy([`${proxy.host}/profiles`]));
      const held = proxy.hold(blobs);
      const client = new UndiciRegistryClient({ insecure: [proxy.host] });
      let waits!: () => void;
      const waiting = new Promise<void>((resolve, reject) => {
        const bound = setTimeout(() => reject(new Error('the second pull never waited for the budget')), 20_000);
        waits = () => {
          clearTimeout(bound);
          resolve();
        };
      });
      const logger: Logger = { log: (_level, msg) => msg.startsWith('pull waits for memory') && waits() };
      // Room for one of these blobs (about 170 bytes each) at a time.
      const pipeline = new PullPipeline({ policy: () => node.policy.current(), registry: () => ({ client, release: () => {} }), pullTimeoutMs: 30_000, store: node.store, logger, blobBytesInFlight: 300 });
      try {
        const first = pipeline.pull({ reference: a.reference.replace(reg.host, proxy.host), kind: 'seccomp' });
        await held.arrived(1);
        const second = pipeline.pull({ reference: b.reference.replace(reg.host, proxy.host), kind: 'seccomp' });
        await waiting;
        assert.equal(proxy.requests().filter(blobs).length, 1, 'the second blob is not asked for while the first is held');
        held.release();
        const [ra, rb] = await Promise.all([first, second]);
        assert.deepEqual([ra.digest, rb.digest], [a.digest, b.digest]);
        assert.equal(proxy.requests().filter(blobs).length, 2);
      } finally {
        held.release();
        await client.close();
        await proxy.close();
      }
    }));

  /**
   * A node whose policy lets team-b pull through a slow proxy (16 MiB artifacts) beside `rules`,
   * with `stalls` pulls of team-b whose blobs the proxy holds; `fn` runs once two of them hold
   * their bytes (team-b's half of the blob budget), and what it returns is waited for once the
   * blobs are released. A pull left waiting fails at the 5 s timeout.
   */
  async function withTeamBStalled(rules: string[], stalls: number, fn: (node: TestNode, proxy: SlowProxy) => Promise<unknown>): Promise<void> {
    const proxy = await startSlowProxy(reg.port);
    const teamB = [`  - scope: ${proxy.host}/team-b`, '    kinds: [seccomp]', '    unsigned: true', '    namespaces: [team-b]'];
    const policy = ['apiVersion: spoke.dev/v1alpha1', 'kind: NodeProfilePolicy', 'rules:', ...teamB, ...rules, `insecure: [${reg.host}, ${proxy.host}]`, 'limits: { maxArtifactBytes: 16777216 }'].join('\n');
    const node = testNode(policy, { pullTimeout: 5000 });
    const hold = proxy.hold(blobs);
    try {
      const big = Buffer.alloc(16 * 1024 * 1024, 0x20);
      const stalled: Promise<unknown>[] = [];
      for (let i = 0; i < stalls; i++) {
        const { reference } = await pushRawArtifact(reg.host, 'team-b/big', { configBytes: Buffer.from(`{"n":${i}}`), layers: [{ bytes: big }] });
        stalled.push(node.pipeline.pull({ reference: reference.replace(reg.host, proxy.host), kind: 'seccomp', namespace: 'team-b' }).catch((e: unknown) => e));
      }
      await hold.arrived(2);
      const settling = await fn(node, proxy);
      hold.release();
      await Promise.all([...stalled, settling]);
    } finally {
      hold.release();
      await node.dispose();
      await proxy.close();
    }
  }

  it("one namespace's pulls whose blobs stall hold at most half the blob budget: another namespace's pull goes ahead", () =>
    // The old single line held team-a behind team-b until team-b's pulls timed out.
    withTeamBStalled([`  - scope: ${reg.host}/team-a`, '    kinds: [seccomp]', '    unsigned: true', '    namespaces: [team-a]'], 4, async (node, proxy) => {
      const { reference } = await pushRawArtifact(reg.host, 'team-a/small', { layers: [{ bytes: denySyscalls(['mkdir']) }] });
      assert.equal((await node.pipeline.pull({ reference, kind: 'seccomp', namespace: 'team-a' })).cached, false);
      assert.equal(proxy.requests().filter(blobs).length, 2, "team-b's other two wait for its own bytes back");
    }));

  it("a namespace at its half of the blob budget shares no fetch with another namespace: a reference both may pull is fetched for each", () =>
    withTeamBStalled([`  - scope: ${reg.host}/shared`, '    kinds: [seccomp]', '    unsigned: true'], 2, async (node) => {
      const { reference } = await pushRawArtifact(reg.host, 'shared/common', { layers: [{ bytes: denySyscalls(['mkdir']) }] });
      // team-b asks first: its fetch waits at team-b's half. team-a's joined that fetch and
      // waited with it until the pull timeout, and ended only with it.
      const teamBs = node.pipeline.pull({ reference, kind: 'seccomp', namespace: 'team-b' }).catch((e: unknown) => e);
      while (node.pipeline.waiting(reference) === 0) await new Promise((r) => setImmediate(r));
      assert.equal((await node.pipeline.pull({ reference, kind: 'seccomp', namespace: 'team-a' })).digest, reference.slice(reference.indexOf('@') + 1));
      let teamBDone = false;
      void teamBs.then(() => (teamBDone = true));
      await new Promise((r) => setImmediate(r));
      assert.equal(teamBDone, false, "team-a's pull ended while team-b's still waits at its half: it did not wait with it");
      return teamBs;
    }));

  describe('mirrors', () => {
    let mirror: TestRegistry;
    before(async () => {
      mirror = await startRegistry();
    });
    after(async () => {
      await mirror.stop();
    });

    /** reg/profiles allowed unsigned, `mirrorHost` its mirror; both plain HTTP. */
    const mirrorPolicy = (mirrorHost: string) => unsignedPolicy([`${reg.host}/profiles`], `mirrors:\n  ${reg.host}: [${mirrorHost}]\n`).replace(`insecure: [${reg.host}]`, `insecure: [${reg.host}, ${mirrorHost}]`);

    /** One layer pushed to both the source and the mirror under `repo`: the source's reference and digest. */
    async function pushToBoth(repo: string, layer: Buffer): Promise<{ reference: string; digest: string }> {
      const pushed = await pushRawArtifact(reg.host, repo, { layers: [{ bytes: layer }] });
      await pushRawArtifact(mirror.host, repo, { layers: [{ bytes: layer }] });
      return pushed;
    }

    it('falls back to the source when the mirror is down, and keeps the requested name', async () => {
      const deadPort = await freePort();
      await withTestNode(mirrorPolicy(`127.0.0.1:${deadPort}`), async (node) => {
        const { reference } = await pushRawArtifact(reg.host, 'profiles/mirror-down', { layers: [{ bytes: denySyscalls(['acct']) }] });
        const r = await node.pipeline.pull({ reference, kind: 'seccomp' });
        assert.equal(r.resolvedRef, reference);
        assert.equal(r.servedBy, reg.host);
      });
    });

    it('serves from the mirror when it has the artifact, keeping the requested name', () =>
      withTestNode(mirrorPolicy(mirror.host), async (node) => {
        const layer = denySyscalls(['swapon']);
        const { reference } = await pushToBoth('profiles/mirrored', layer);
        await reg.resetRequests();
        const r = await node.pipeline.pull({ reference, kind: 'seccomp' });
        assert.equal(r.resolvedRef, reference);
        assert.equal(r.servedBy, mirror.host);
        await reg.settle();
        assert.deepEqual(reg.requests(), []);
      }));

    it('falls back to the source when a mirror serves tampered or oversized bytes, caching no verdict', () =>
      withTestNode(mirrorPolicy(mirror.host), async (node) => {
        const tampered = denySyscalls(['syslog']);
        const a = await pushToBoth('profiles/mirror-tampered', tampered);
        tamper(mirror, tampered, ALLOW_ALL_SECCOMP);
        const oversized = denySyscalls(['vhangup']);
        const b = await pushToBoth('profiles/mirror-oversized', oversized);
        tamper(mirror, oversized, Buffer.alloc(2 * 1024 * 1024, 0x20));
        for (const { reference, digest } of [a, b]) {
          await reg.resetRequests();
          const r = await node.pipeline.pull({ reference, kind: 'seccomp' });
          assert.equal(r.servedBy, mirror.host, 'the manifest came from the mirror');
          await reg.settle();
          assert.equal(count(reg, 'GET', '/blobs/'), 1, 'the blob came from the source');
          assert.equal(await node.store.getInvalid(digest as Digest), undefined);
        }
      }));

    it('RegistryUnavailable (DIGEST_MISMATCH) when every source serves wrong bytes', () =>
      withTestNode(mirrorPolicy(mirror.host), async (node) => {
        const layer = denySyscalls(['quotactl']);
        const { reference, digest } = await pushToBoth('profiles/all-tampered', layer);
        tamper(mirror, layer, ALLOW_ALL_SECCOMP);
        tamper(reg, layer, ALLOW_ALL_SECCOMP);
        const e = await rejectsWith(node.pipeline.pull({ reference, kind: 'seccomp' }), { code: 'RegistryUnavailable' });
        assert.equal(e.reason, 'DIGEST_MISMATCH');
        assert.deepEqual(storeFiles(node), []);
        assert.equal(await node.store.getInvalid(digest as Digest), undefined);
      }));
  });

  // The test's timeout is a hang guard (the client's own timeouts end the pull well before it), not a timing assertion.
  it('reports RegistryUnavailable when the registry is down', { timeout: 30_000 }, async () => {
    const port = await freePort();
    await withTestNode(unsignedPolicy([`127.0.0.1:${port}/profiles`]), async (node) => {
      await rejectsWith(node.pipeline.pull({ reference: `127.0.0.1:${port}/profiles/x@sha256:${'a'.repeat(64)}`, kind: 'seccomp' }), { code: 'RegistryUnavailable' });
    });
  });
});

/** A minimal one-file ustar archive (header + data + end blocks). */
function tarOf(name: string, data: Buffer): Buffer {
  const header = Buffer.alloc(512, 0);
  header.write(name, 0, 'latin1');
  header.write('0000644\0', 100, 'latin1');
  header.write('0000000\0', 108, 'latin1');
  header.write('0000000\0', 116, 'latin1');
  header.write(data.byteLength.toString(8).padStart(11, '0') + '\0', 124, 'latin1');
  header.write('00000000000\0', 136, 'latin1');
  header.write('        ', 148, 'latin1');
  header.write('0', 156, 'latin1');
  header.write('ustar\0', 257, 'latin1');
  header.write('00', 263, 'latin1');
  let sum = 0;
  for (const b of header) sum += b;
  header.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1');
  const pad = Buffer.alloc((512 - (data.byteLength % 512)) % 512, 0);
  return Buffer.concat([header, data, pad, Buffer.alloc(1024, 0)]);
}
