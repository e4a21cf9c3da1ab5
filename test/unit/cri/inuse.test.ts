// The in-use tracker's rebuild against a scripted runtime (the real-containerd cases are in
// test/integration/inuse-recovery.test.ts and apparmor-unload.test.ts): pending holders of failed
// creates, runtime configs in both spellings, and objects whose config cannot be read.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { decode, encode } from '../../helpers/cri-client.js';
import { InUseTracker, PENDING_GRACE_MS, requestIdentity, type RuntimeCalls } from '../../../src/cri/inuse.js';
import { ProfileStore } from '../../../src/store/store.js';
import { silentLogger } from '../../../src/core/runtime.js';
import type { Digest } from '../../../src/core/digest.js';
import { ingestInput } from '../store/fixtures.js';

// Two stored artifacts: a create holds only what the store has (InUseTracker.begin).
const A1 = ingestInput('{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_ERRNO"}]}');
const A2 = ingestInput('{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["rmdir"],"action":"SCMP_ACT_ERRNO"}]}');
const D1: Digest = A1.digest;
const D2: Digest = A2.digest;
const SHA = 'e'.repeat(64);
const ROOT = '/var/lib/kubelet/seccomp';

const dirs: string[] = [];
after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

interface FakeContainer {
  id: string;
  sandbox: string;
  name: string;
  /** The `info` JSON of verbose ContainerStatus; undefined: the status call fails. */
  info?: unknown;
}

async function setup(opts: { dir?: string; onListed?: () => Promise<void> } = {}) {
  const dir = opts.dir ?? mkdtempSync(join(tmpdir(), 'spoke-tracker-'));
  dirs.push(dir);
  const store = new ProfileStore({ root: dir });
  await store.ingest(A1);
  await store.ingest(A2);
  const containers: FakeContainer[] = [];
  const sandboxes: { id: string; metadata: Record<string, unknown> }[] = [];
  const upstream: RuntimeCalls = {
    unary: async (path, request) => {
      if (path.endsWith('/ListPodSandbox')) return encode('ListPodSandboxResponse', { items: sandboxes });
      if (path.endsWith('/PodSandboxStatus')) return encode('PodSandboxStatusResponse', {});
      if (path.endsWith('/ListContainers')) {
        const listed = encode('ListContainersResponse', { containers: containers.map((c) => ({ id: c.id, pod_sandbox_id: c.sandbox, metadata: { name: c.name, attempt: 0 } })) });
        await opts.onListed?.();
        return listed;
      }
      const req = decode('ContainerStatusRequest', request);
      assert.equal(req.verbose, true);
      const c = containers.find((x) => path.endsWith('/ContainerStatus') && x.id === req.container_id && x.info !== undefined);
      if (!c) throw Object.assign(new Error('unavailable'), { grpcCode: 14 });
      return encode('ContainerStatusResponse', { info: { info: JSON.stringify(c.info) } });
    },
  };
  let clock = 1_000_000;
  const tracker = new InUseTracker(store, silentLogger, { upstream, seccompRoot: ROOT, procRoot: join(dir, 'no-proc'), now: () => clock });
  return { dir, store, containers, sandboxes, tracker, tick: (ms: number) => (clock += ms) };
}

const identity = (sandbox: string, name: string) => requestIdentity('container', encode('CreateContainerRequest', { pod_sandbox_id: sandbox, config: { metadata: { name, attempt: 0 } } }));

describe('in-use rebuild', () => {
  it('a failed create keeps its pending holder through the grace period, then a rebuild drops it', async () => {
    const t = await setup();
    const pending = await t.tracker.begin(D1, { identity: identity('s1', 'never') });
    t.tracker.unconfirmed(pending, []);
    const r = await t.tracker.rebuild();
    assert.deepEqual(await t.store.inUseHolders(D1), [pending]);
    assert.equal(r.recheckInMs, PENDING_GRACE_MS);
    t.tick(PENDING_GRACE_MS);
    await t.tracker.rebuild();
    assert.deepEqual(await t.store.inUseHolders(D1), []);
  });

  it('a pending holder stamped ahead of the clock (the clock stepped back) is rechecked within Node timer range, and dropped once it cannot be a recent create', async () => {
    // A 30-day step back once asked for a recheck ~30 days away: past 2^31-1 ms, which setTimeout fires at once, in a loop.
    const t = await setup();
    const lost = await t.tracker.begin(D1, { identity: identity('s1', 'never') });
    t.tracker.unconfirmed(lost, []);
    t.tick(-30 * 86_400_000);
    const r = await t.tracker.rebuild();
    assert.ok(r.recheckInMs === undefined || r.recheckInMs <= PENDING_GRACE_MS, String(r.recheckInMs));
    assert.deepEqual(await t.store.inUseHolders(D1), [], 'stamped further ahead than the grace: no create of the last grace period');
    // A small step back keeps it, rechecked within two grace periods.
    const recent = await t.tracker.begin(D2, { identity: identity('s1', 'again') });
    t.tracker.unconfirmed(recent, []);
    t.tick(-PENDING_GRACE_MS / 2);
    const r2 = await t.tracker.rebuild();
    assert.deepEqual(await t.store.inUseHolders(D2), [recent]);
    assert.ok(r2.recheckInMs !== undefined && r2.recheckInMs <= 2 * PENDING_GRACE_MS, String(r2.recheckInMs));
  });

  it('a pending holder in flight is never dropped, whatever its age', async () => {
    const t = await setup();
    const pending = await t.tracker.begin(D1);
    t.tick(10 * PENDING_GRACE_MS);
    await t.tracker.rebuild();
    assert.deepEqual(await t.store.inUseHolders(D1), [pending]);
  });

  it('the container a lost create made takes over its pending holder', async () => {
    const t = await setup();
    const pending = await t.tracker.begin(D1, { identity: identity('s1', 'web') });
    t.tracker.unconfirmed(pending, []);
    t.containers.push({ id: 'c1', sandbox: 's1', name: 'web', info: {} });
    await t.tracker.rebuild();
    assert.deepEqual(await t.store.inUseHolders(D1), ['container:c1']);
  });

  it('two pending holders of one lost create with different artifacts: neither takes the container over the other; both stay held while it lives', async () => {
    const t = await setup();
    const first = await t.tracker.begin(D1, { identity: identity('s1', 'web') });
    t.tracker.unconfirmed(first, []);
    const retry = await t.tracker.begin(D2, { identity: identity('s1', 'web') });
    t.tracker.unconfirmed(retry, []);
    t.containers.push({ id: 'c1', sandbox: 's1', name: 'web', info: {} });
    t.tick(PENDING_GRACE_MS);
    await t.tracker.rebuild();
    assert.deepEqual([await t.store.inUseHolders(D1), await t.store.inUseHolders(D2)], [[first], [retry]], 'which one c1 runs cannot be told from the holders');
    t.containers.pop();
    await t.tracker.rebuild();
    assert.deepEqual([await t.store.inUseHolders(D1), await t.store.inUseHolders(D2)], [[], []], 'gone with the container');
  });

  it('the sandbox a lost RunPodSandbox made takes over its pending holder', async () => {
    const t = await setup();
    const config = { metadata: { name: 'pod', uid: 'u1', namespace: 'ns', attempt: 1 } };
    const pending = await t.tracker.begin(D1, { identity: requestIdentity('sandbox', encode('RunPodSandboxRequest', { config }))! });
    t.tracker.unconfirmed(pending, []);
    t.sandboxes.push({ id: 'p1', metadata: config.metadata }, { id: 'p2', metadata: { ...config.metadata, attempt: 2 } });
    await t.tracker.rebuild();
    assert.deepEqual(await t.store.inUseHolders(D1), ['sandbox:p1']);
  });

  it('two shims on one store (a rolling update with surge): a holder the other commits during a rebuild is kept', async () => {
    // B's create commits container:X after A's rebuild listed the runtime (X not yet listed):
    // A's rebuild must not take X for dead, or D is left with no holder while X runs.
    let commit: () => Promise<void> = async () => {};
    const a = await setup({ onListed: () => commit() });
    const b = await setup({ dir: a.dir });
    const pending = await b.tracker.begin(D1, { identity: identity('s1', 'web') });
    commit = async () => {
      commit = async () => {};
      a.containers.push({ id: 'X', sandbox: 's1', name: 'web', info: {} });
      await b.tracker.commitCreate('container:X', { pending, digest: D1 }, []);
    };
    await a.tracker.rebuild();
    assert.deepEqual(await a.store.inUseHolders(D1), ['container:X']);
    // The next rebuild sees X in the runtime and keeps it; once X is gone, it drops it.
    await a.tracker.rebuild();
    assert.deepEqual(await a.store.inUseHolders(D1), ['container:X']);
    a.containers.length = 0;
    await a.tracker.rebuild();
    assert.deepEqual(await a.store.inUseHolders(D1), []);
  });

  it('runtime configs naming a spoke effective file get a holder, in either spelling; other paths do not', async () => {
    const t = await setup();
    await t.store.recordEffective(SHA, D2);
    t.containers.push(
      { id: 'a', sandbox: 's', name: 'a', info: { config: { linux: { security_context: { seccomp: { profile_type: 2, localhost_ref: `${ROOT}/spoke/${SHA}.json` } } } } } },
      { id: 'b', sandbox: 's', name: 'b', info: { config: { linux: { security_context: { seccomp_profile_path: `localhost/${ROOT}/spoke/${SHA}.json` } } } } },
      { id: 'c', sandbox: 's', name: 'c', info: { config: { linux: { security_context: { seccomp: { profile_type: 2, localhost_ref: `${ROOT}/other/${SHA}.json` } } } } } },
      { id: 'd', sandbox: 's', name: 'd', info: { runtimeSpec: { annotations: { 'example.com/seccomp': `localhost/${ROOT}/spoke/${SHA}.json`, other: 'x' } } } },
    );
    const r = await t.tracker.rebuild();
    assert.equal(r.found, 3);
    assert.deepEqual((await t.store.inUseHolders(D2)).sort(), ['container:a', 'container:b', 'container:d']);
  });

  it('a live container whose config cannot be read leaves the set incomplete: gc removes nothing', async () => {
    const t = await setup();
    t.containers.push({ id: 'x', sandbox: 's', name: 'x' });
    const r = await t.tracker.rebuild();
    assert.ok(r.recheckInMs !== undefined, 'tried again soon');
    assert.equal((await t.store.inUseState()).complete, false);
  });
});

describe('commit after the answer', () => {
  it('a removal that comes while the create is still being committed releases its holders', async () => {
    const t = await setup();
    const pending = await t.tracker.begin(D1);
    const name = `spoke-${'f'.repeat(64)}`;
    const claim = { name, digest: D2, pending: `apparmor:${name}@${pending}` };
    await t.store.markInUse(D2, claim.pending);
    // The create was answered: the commit runs, and the kubelet's RemoveContainer arrives before it ends.
    const commit = t.tracker.commitCreate('container:c1', { pending, digest: D1 }, [claim]);
    const removal = t.tracker.released('container:c1');
    await Promise.all([commit, removal]);
    assert.deepEqual(Object.fromEntries(await t.store.inUse()), {});
  });
});
