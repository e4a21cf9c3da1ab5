// The shim's gc scheduler with the real in-use tracker and store, against a scripted runtime
// (the real-containerd cases are in test/integration/ps-gc.test.ts): a run rebuilds the in-use
// set before it removes anything, a runtime it cannot list removes nothing, and the create gate
// keeps gc and profile resolution apart.

import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { rejectsWith } from '../../helpers/assert.js';
import { encode } from '../../helpers/cri-client.js';
import { CreateGate, EXCLUSIVE_DRAIN_MS, GcScheduler } from '../../../src/cri/gc.js';
import { InUseTracker, type RuntimeCalls } from '../../../src/cri/inuse.js';
import { ProfileStore } from '../../../src/store/store.js';
import { silentLogger } from '../../../src/core/runtime.js';
import { noopMetrics, type Metrics } from '../../../src/observe/metrics.js';
import { packProfile } from '../../../src/publish/pack.js';

const dirs: string[] = [];
after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

/** A scheduler over `store` whose runs rebuild with `tracker`, every artifact old enough at once. */
function schedulerFor(store: ProfileStore, tracker: InUseTracker, seccompRoot: string, metrics: Metrics = noopMetrics): GcScheduler {
  return new GcScheduler({
    store,
    rebuild: () => tracker.rebuild(),
    gate: new CreateGate(),
    forgetEffective: () => undefined,
    effectiveDir: join(seccompRoot, 'spoke'),
    intervalMs: 60_000,
    minAgeMs: 0,
    maxStoreBytes: undefined,
    logger: silentLogger,
    metrics,
  });
}

async function setup(observed: Partial<Metrics> = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'spoke-gcs-'));
  dirs.push(dir);
  const seccompRoot = join(dir, 'seccomp');
  mkdirSync(join(seccompRoot, 'spoke'), { recursive: true });
  const store = new ProfileStore({ root: join(dir, 'store'), fsync: false });
  const p = packProfile(Buffer.from('{"defaultAction":"SCMP_ACT_ALLOW"}'), 'seccomp');
  await store.ingest({ digest: p.manifestDigest, manifestBytes: p.manifest, layerDigest: p.layerDigest, layerBytes: p.layer, kind: 'seccomp', reference: `r.io/p@${p.manifestDigest}`, rule: 'r', servedBy: 'r.io' });
  const sha = 'a'.repeat(64);
  const effective = join(seccompRoot, 'spoke', `${sha}.json`);
  writeFileSync(effective, '{}');
  await store.recordEffective(sha, p.manifestDigest);
  let runtimeUp = true;
  // One container the shim never recorded runs on the effective file (its holder is lost).
  const upstream: RuntimeCalls = {
    unary: async (path) => {
      if (!runtimeUp) throw Object.assign(new Error('unavailable'), { grpcCode: 14 });
      if (path.endsWith('/ListPodSandbox')) return encode('ListPodSandboxResponse', {});
      if (path.endsWith('/ListContainers')) return encode('ListContainersResponse', { containers: [{ id: 'c1', pod_sandbox_id: 's1', metadata: { name: 'app', attempt: 0 } }] });
      return encode('ContainerStatusResponse', { info: { info: JSON.stringify({ config: { linux: { security_context: { seccomp: { profile_type: 2, localhost_ref: effective } } } } }) } });
    },
  };
  const tracker = new InUseTracker(store, silentLogger, { upstream, seccompRoot, procRoot: join(dir, 'no-proc') });
  const runs: string[] = [];
  const metrics: Metrics = { ...noopMetrics, ...observed, gcRun: (r) => runs.push(r) };
  const gc = schedulerFor(store, tracker, seccompRoot, metrics);
  return { store, gc, digest: p.manifestDigest, effective, runs, down: () => (runtimeUp = false) };
}

describe('InUseTracker.begin', () => {
  it('a create whose profile another process removed before it recorded its holder fails, holding nothing (spoke store rm racing it)', async () => {
    const t = await setup();
    const tracker = new InUseTracker(t.store, silentLogger, { upstream: { unary: async () => Buffer.alloc(0) }, seccompRoot: join(t.store.root, '..', 'seccomp'), procRoot: join(t.store.root, 'no-proc') });
    // `spoke store rm` in another process: no holder yet, so the record and its blob go.
    await new ProfileStore({ root: t.store.root, fsync: false }).remove(t.digest);
    await rejectsWith(tracker.begin(t.digest), { code: 'NotFound', reason: 'NOT_FOUND' });
    assert.deepEqual(await t.store.inUseHolders(t.digest), [], 'no holder left for an artifact without its record');
  });
});

describe('GcScheduler', () => {
  it('rebuilds the in-use set from the runtime before it removes: an unrecorded container keeps its profile and effective file', async () => {
    const t = await setup();
    assert.deepEqual(await t.store.inUseHolders(t.digest), [], 'nothing recorded: a gc without the rebuild would remove both');
    const r = await t.gc.runOnce();
    assert.deepEqual([r?.complete, r?.removed, r?.effectiveRemoved], [true, [], []]);
    assert.ok(await t.store.has(t.digest));
    assert.ok(existsSync(t.effective));
    assert.deepEqual(await t.store.inUseHolders(t.digest), ['container:c1']);
  });

  it('the shim forgets a removed effective file before gc lets creates back in: a create waiting on the gate is never handed it', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'spoke-gcf-'));
    dirs.push(dir);
    const seccompRoot = join(dir, 'seccomp');
    mkdirSync(join(seccompRoot, 'spoke'), { recursive: true });
    const store = new ProfileStore({ root: join(dir, 'store'), fsync: false });
    const sha = 'b'.repeat(64);
    writeFileSync(join(seccompRoot, 'spoke', `${sha}.json`), '{}');
    const upstream: RuntimeCalls = { unary: async (path) => encode(path.endsWith('/ListPodSandbox') ? 'ListPodSandboxResponse' : 'ListContainersResponse', {}) };
    const tracker = new InUseTracker(store, silentLogger, { upstream, seccompRoot, procRoot: join(dir, 'no-proc') });
    const gate = new CreateGate();
    const forgotten: { sha: string; gcHeldTheGate: boolean }[] = [];
    const gc = new GcScheduler({
      store,
      rebuild: () => tracker.rebuild(),
      gate,
      forgetEffective: (s) => forgotten.push({ sha: s, gcHeldTheGate: gate.held }),
      effectiveDir: join(seccompRoot, 'spoke'),
      intervalMs: 60_000,
      minAgeMs: 0,
      maxStoreBytes: undefined,
      logger: silentLogger,
      metrics: noopMetrics,
    });
    assert.deepEqual((await gc.runOnce())?.effectiveRemoved, [sha]);
    assert.deepEqual(forgotten, [{ sha, gcHeldTheGate: true }]);
  });

  it('a run counts the invalid verdicts it removed in its metrics', async () => {
    const removals: [string, number][] = [];
    const t = await setup({ gcRemoved: (what, count) => removals.push([what, count]) });
    await t.store.recordInvalid(`sha256:${'c'.repeat(64)}`, 'not a seccomp profile');
    assert.equal((await t.gc.runOnce())?.invalidRemoved, 1);
    assert.deepEqual(removals.filter(([what]) => what === 'invalid'), [['invalid', 1]]);
  });

  it('a runtime that cannot be listed: the run is skipped and nothing is removed', async () => {
    const t = await setup();
    t.down();
    assert.equal(await t.gc.runOnce(), undefined);
    assert.deepEqual(t.runs, ['failed']);
    assert.ok(await t.store.has(t.digest));
    assert.ok(existsSync(t.effective));
  });
});

describe('GcScheduler and origins removed by others', () => {
  /** A store and seccomp root, and one artifact `d` that `ingest` stores (again). */
  function originsRig() {
    const dir = mkdtempSync(join(tmpdir(), 'spoke-gco-'));
    dirs.push(dir);
    const seccompRoot = join(dir, 'seccomp');
    mkdirSync(join(seccompRoot, 'spoke'), { recursive: true });
    const store = new ProfileStore({ root: join(dir, 'store'), fsync: false });
    const p = packProfile(Buffer.from('{"defaultAction":"SCMP_ACT_ALLOW"}'), 'seccomp');
    const d = p.manifestDigest;
    const reference = `r.io/p@${d}`;
    const ingest = () => store.ingest({ digest: d, manifestBytes: p.manifest, layerDigest: p.layerDigest, layerBytes: p.layer, kind: 'seccomp', reference, rule: 'r', servedBy: 'r.io' });
    return { dir, seccompRoot, store, d, reference, ingest };
  }

  it('after a run whose sweep pruned the origins of an artifact removed elsewhere, a create records its origin again: the rebuild can still map its container', async () => {
    const { dir, seccompRoot, store, d, reference, ingest } = originsRig();
    const sha = 'e'.repeat(64);
    const effective = join(seccompRoot, 'spoke', `${sha}.json`);
    let running: string[] = [];
    const upstream: RuntimeCalls = {
      unary: async (path) => {
        if (path.endsWith('/ListPodSandbox')) return encode('ListPodSandboxResponse', {});
        if (path.endsWith('/ListContainers')) return encode('ListContainersResponse', { containers: running.map((id) => ({ id, pod_sandbox_id: 's1', metadata: { name: id, attempt: 0 } })) });
        return encode('ContainerStatusResponse', { info: { info: JSON.stringify({ config: { linux: { security_context: { seccomp: { profile_type: 2, localhost_ref: effective } } } } }) } });
      },
    };
    const tracker = new InUseTracker(store, silentLogger, { upstream, seccompRoot, procRoot: join(dir, 'no-proc') });
    const gc = schedulerFor(store, tracker, seccompRoot);
    const create = async (id: string) => {
      writeFileSync(effective, '{}');
      const pending = await tracker.begin(d, { effectiveSha: sha, input: { reference } });
      await tracker.commitCreate(`container:${id}`, { pending, digest: d }, []);
      running.push(id);
    };
    await ingest();
    await create('c1');
    running = [];
    await tracker.released('container:c1');
    await store.remove(d); // RemoveSecurityProfile, or spoke store rm: not this scheduler's removal
    assert.deepEqual((await gc.runOnce())?.removed, []);
    await ingest();
    await create('c2');
    assert.deepEqual(await store.effectiveDigests(sha), [d]);
    // The in-use set lost: the rebuild from the runtime maps c2's effective file to its artifact.
    writeFileSync(join(dir, 'store', 'state', 'in-use.json'), '{"holders":');
    writeFileSync(join(dir, 'store', 'state', 'in-use.log'), '');
    assert.deepEqual((await gc.runOnce())?.removed, []);
    assert.ok(await store.has(d));
  });

  it('origins pruned by another process (`spoke store gc`) with no run of this shim in between are recorded again at the next create', async () => {
    const { dir, seccompRoot, store, d, ingest } = originsRig();
    const sha = 'f'.repeat(64);
    const upstream: RuntimeCalls = { unary: async () => Promise.reject(new Error('not called')) };
    const tracker = new InUseTracker(store, silentLogger, { upstream, seccompRoot, procRoot: join(dir, 'no-proc') });
    const create = async (id: string) => {
      const pending = await tracker.begin(d, { effectiveSha: sha });
      await tracker.commitCreate(`container:${id}`, { pending, digest: d }, []);
    };
    await ingest();
    await create('c1');
    await tracker.released('container:c1');
    // Another process (a cron `spoke store gc`) removes the unused artifact and prunes its origins.
    assert.deepEqual((await new ProfileStore({ root: join(dir, 'store'), fsync: false }).gc()).removed, [d]);
    assert.deepEqual(await store.effectiveDigests(sha), []);
    await ingest();
    await create('c2');
    assert.deepEqual(await store.effectiveDigests(sha), [d]);
  });
});

describe('CreateGate', () => {
  it('gc waits for a quiet moment without holding back creates (a lease may span a pull of minutes); a create asking while gc runs waits for it', async () => {
    const gate = new CreateGate();
    const order: string[] = [];
    const first = gate.lease();
    await first.acquire();
    let releaseGc!: () => void;
    const gcRunning = new Promise<void>((r) => (releaseGc = r));
    let gcStarted!: () => void;
    const started = new Promise<void>((r) => (gcStarted = r));
    const gc = gate.exclusive(async () => {
      order.push('gc');
      gcStarted();
      await gcRunning;
    });
    // Asked while gc waits for the first create: let in at once.
    const second = gate.lease();
    await second.acquire();
    order.push('second acquired');
    first.release();
    assert.equal(gate.held, false, 'one create still holds the gate');
    second.release();
    await started;
    assert.equal(gate.held, true);
    // Asked while gc runs: waits for it.
    const third = gate.lease();
    const thirdAcquired = third.acquire().then(() => order.push('third acquired'));
    await new Promise((r) => setImmediate(r));
    assert.ok(!order.includes('third acquired'), 'the third create waits while gc runs');
    releaseGc();
    await Promise.all([gc, thirdAcquired]);
    assert.deepEqual(order, ['second acquired', 'gc', 'third acquired']);
    third.release();
  });

  it('gc starved by creates that overlap without a gap holds new creates back for a moment, lets those in flight finish, and runs', async () => {
    const gate = new CreateGate();
    let stop = false;
    let creates = 0;
    // Each create asks for the gate while the one before still holds it (the next turn of the
    // event loop), and leaves just after: never a moment with none in flight.
    const create = async (): Promise<void> => {
      const lease = gate.lease();
      await lease.acquire();
      creates++;
      const next = stop ? undefined : new Promise((r) => setImmediate(r)).then(create);
      await new Promise((r) => setImmediate(r));
      lease.release();
      await next;
    };
    const stream = create();
    const ran = await gate.exclusive(async () => 'ran', 50, { drain: true });
    stop = true;
    await stream;
    assert.equal(ran, 'ran');
    assert.ok(creates > 1);
  });

  it('gc gives up when the creates in flight do not leave it a quiet moment in time, even holding new ones back: Unavailable, OVERLOADED, nothing runs, and the creates held back go on', async (t) => {
    t.mock.timers.enable({ apis: ['setTimeout'] });
    const gate = new CreateGate();
    const stuck = gate.lease();
    await stuck.acquire();
    let ran = false;
    const gc = gate.exclusive(
      async () => {
        ran = true;
      },
      10_000,
      { drain: true },
    );
    const refused = rejectsWith(gc, { code: 'Unavailable', reason: 'OVERLOADED' });
    t.mock.timers.tick(10_000);
    // gc now holds new creates back while it waits for the one in flight.
    await new Promise((r) => setImmediate(r));
    const late = gate.lease();
    let lateIn = false;
    const lateAcquired = late.acquire().then(() => (lateIn = true));
    await new Promise((r) => setImmediate(r));
    assert.equal(lateIn, false, 'a create asked while gc drains waits');
    t.mock.timers.tick(EXCLUSIVE_DRAIN_MS);
    await refused;
    await lateAcquired;
    assert.equal(ran, false);
    assert.equal(gate.held, false);
    // The gate still works: once the creates leave, the next run goes ahead.
    stuck.release();
    late.release();
    assert.equal(await gate.exclusive(async () => 'ran'), 'ran');
  });

  it('a removal never holds creates back: it gives up after its wait while gc, waiting beside it, drains', async (t) => {
    t.mock.timers.enable({ apis: ['setTimeout'] });
    const gate = new CreateGate();
    const stuck = gate.lease();
    await stuck.acquire();
    const gc = rejectsWith(
      gate.exclusive(async () => 'gc', 10_000, { drain: true }),
      { code: 'Unavailable', reason: 'OVERLOADED' },
    );
    const removal = rejectsWith(
      gate.exclusive(async () => 'removed', 10_000),
      { code: 'Unavailable', reason: 'OVERLOADED' },
    );
    t.mock.timers.tick(10_000);
    await removal;
    // gc drains: a create asked now waits for it, and for it only.
    await new Promise((r) => setImmediate(r));
    const late = gate.lease();
    let lateIn = false;
    const lateAcquired = late.acquire().then(() => (lateIn = true));
    await new Promise((r) => setImmediate(r));
    assert.equal(lateIn, false);
    t.mock.timers.tick(EXCLUSIVE_DRAIN_MS);
    await gc;
    await lateAcquired;
    stuck.release();
    late.release();
  });
});
