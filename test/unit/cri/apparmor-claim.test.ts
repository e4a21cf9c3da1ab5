// An AppArmor claim's load (apparmor_parser --replace, up to its 30 s timeout: docs/apparmor.md)
// against the in-use lock every create and removal takes: the load runs outside it, under its
// name's lock, so one namespace's slow compile holds back no other namespace's create, and an
// unload of the name never leaves a holder on a profile the kernel no longer has. Loads and
// unloads are stand-ins on a set that plays the kernel (this machine's kernel has no AppArmor).

import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { encode } from '../../helpers/cri-client.js';
import { rejectsWith } from '../../helpers/assert.js';
import { InUseTracker, type RuntimeCalls } from '../../../src/cri/inuse.js';
import { parseAppArmorHolder } from '../../../src/cri/inuse-holders.js';
import { ProfileStore } from '../../../src/store/store.js';
import { silentLogger } from '../../../src/core/runtime.js';
import type { Digest } from '../../../src/core/digest.js';
import { ingestInput } from '../store/fixtures.js';

// A stored artifact: a create holds only what the store has (InUseTracker.begin).
const SECCOMP_ARTIFACT = ingestInput('{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_ERRNO"}]}');
const SECCOMP: Digest = SECCOMP_ARTIFACT.digest;
// Stored AppArmor artifacts: a claim holds only what the store has (InUseTracker.claimAppArmor).
const TEAM_A_ARTIFACT = ingestInput('#include <tunables/global>\nprofile team-a {}\n');
const TEAM_B_ARTIFACT = ingestInput('#include <tunables/global>\nprofile team-b {}\n');
const TEAM_A: Digest = TEAM_A_ARTIFACT.digest;
const TEAM_B: Digest = TEAM_B_ARTIFACT.digest;
/** A name spoke renders: `spoke-` and 64 hex digits. */
const aaName = (hex: string): string => `spoke-${hex.repeat(64)}`;

const dirs: string[] = [];
after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

/** A promise and the function that settles it. */
function gate(): { opened: Promise<void>; open: () => void } {
  let open = () => {};
  const opened = new Promise<void>((r) => (open = r));
  return { opened, open };
}

async function setup() {
  const dir = mkdtempSync(join(tmpdir(), 'spoke-aa-claim-'));
  dirs.push(dir);
  const store = new ProfileStore({ root: dir });
  await store.ingest(SECCOMP_ARTIFACT);
  await store.ingest(TEAM_A_ARTIFACT);
  await store.ingest(TEAM_B_ARTIFACT);
  // A /proc with no tasks: no task runs under any profile.
  const procRoot = join(dir, 'proc');
  mkdirSync(procRoot);
  const kernel = new Set<string>();
  /** Each kernel load (as it begins and as it takes effect) and unload, in order. */
  const events: string[] = [];
  const live: string[] = [];
  /** When set, the runtime's container listing waits for it (an unload's check under way). */
  let listing: Promise<void> | undefined;
  /** When set, the kernel unload waits for it (apparmor_parser --remove running). */
  let unloading: Promise<void> | undefined;
  const unloadStarted: (() => void)[] = [];
  const listed: (() => void)[] = [];
  const upstream: RuntimeCalls = {
    unary: async (path) => {
      if (path.endsWith('/ListPodSandbox')) return encode('ListPodSandboxResponse', { items: [] });
      if (path.endsWith('/ListContainers')) {
        listed.shift()?.();
        await listing;
        return encode('ListContainersResponse', { containers: live.map((id) => ({ id, pod_sandbox_id: 's', metadata: { name: id, attempt: 0 } })) });
      }
      return encode('ContainerStatusResponse', { info: { info: '{}' } });
    },
  };
  const tracker = new InUseTracker(store, silentLogger, {
    upstream,
    seccompRoot: join(dir, 'seccomp'),
    procRoot,
    appArmor: {
      unload: async (name) => {
        unloadStarted.shift()?.();
        await unloading;
        kernel.delete(name);
        events.push(`unload ${name}`);
      },
    },
  });
  /** A load into the stand-in kernel, after `wait` when given; `started` when it begins. */
  const loader =
    (name: string, o: { wait?: Promise<void>; started?: () => void } = {}) =>
    async () => {
      events.push(`loading ${name}`);
      o.started?.();
      await o.wait;
      kernel.add(name);
      events.push(`load ${name}`);
    };
  /** Every AppArmor holder in the store names a profile the kernel has. */
  const assertHeldLoaded = async () => {
    for (const holders of (await store.inUse()).values()) {
      for (const h of holders) {
        const aa = parseAppArmorHolder(h);
        if (aa) assert.ok(kernel.has(aa.name), `${h} names a profile the kernel does not have (${events.join(', ')})`);
      }
    }
  };
  return {
    store,
    tracker,
    kernel,
    events,
    live,
    loader,
    assertHeldLoaded,
    holdListing: (g: Promise<void> | undefined) => (listing = g),
    holdUnload: (g: Promise<void> | undefined) => (unloading = g),
    onListed: (f: () => void) => listed.push(f),
    onUnloadStarted: (f: () => void) => unloadStarted.push(f),
  };
}

describe('an AppArmor claim whose load is slow', () => {
  it("holds back no other namespace's create: a seccomp-only create and another profile's create begin and commit while it loads", async () => {
    const t = await setup();
    const compiling = gate();
    const started = gate();
    let claimedB = false;
    const claimB = t.tracker.claimAppArmor(aaName('b'), TEAM_B, t.loader(aaName('b'), { wait: compiling.opened, started: started.open }), 'team-b');
    void claimB.then(() => (claimedB = true));
    await started.opened;

    // team-a, seccomp only: its pending holder, then the move to its container.
    const pending = await t.tracker.begin(SECCOMP, { identity: 'team-a' });
    await t.tracker.commitCreate('container:a1', { pending, digest: SECCOMP }, []);
    assert.deepEqual(await t.store.inUseHolders(SECCOMP), ['container:a1']);

    // team-a, another AppArmor profile: loaded and claimed, then committed.
    const claimA = await t.tracker.claimAppArmor(aaName('a'), TEAM_A, t.loader(aaName('a')), 'team-a');
    await t.tracker.commitCreate('container:a2', undefined, [claimA]);
    assert.deepEqual(await t.store.inUseHolders(TEAM_A), [`apparmor:${aaName('a')}@container:a2`]);

    // A removal, too, goes through while team-b's profile compiles.
    await t.tracker.released('container:a1');
    assert.deepEqual(await t.store.inUseHolders(SECCOMP), []);

    assert.equal(claimedB, false, "team-b's claim waits for its load");
    assert.deepEqual(await t.store.inUseHolders(TEAM_B), [], 'no holder before the profile is loaded');
    compiling.open();
    const b = await claimB;
    assert.deepEqual(await t.store.inUseHolders(TEAM_B), [b.pending]);
    assert.ok(t.kernel.has(aaName('b')));
    await t.assertHeldLoaded();
  });

  it('a second claim of the same name waits for the first one to load it, and loads it no second time', async () => {
    const t = await setup();
    const compiling = gate();
    const started = gate();
    let loads = 0;
    const load = t.loader(aaName('c'), { wait: compiling.opened, started: started.open });
    const counted = async () => {
      loads++;
      await load();
    };
    const first = t.tracker.claimAppArmor(aaName('c'), TEAM_A, counted, 'one');
    await started.opened;
    let secondDone = false;
    const second = t.tracker.claimAppArmor(aaName('c'), TEAM_A, counted, 'two');
    void second.then(() => (secondDone = true));
    // An unrelated create's turn of the in-use lock: the second claim, had it not waited for the
    // load, would have recorded its holder by now.
    await t.tracker.begin(SECCOMP);
    assert.equal(secondDone, false);
    compiling.open();
    await first;
    await second;
    assert.equal(loads, 1);
    assert.equal((await t.store.inUseHolders(TEAM_A)).length, 2);
    await t.assertHeldLoaded();
  });
});

describe('an unload of a name racing a create that loads and claims it', () => {
  /**
   * `name` loaded by a shim before this one and held by `container:<id>`, which the runtime ran
   * at this shim's rebuild and no longer runs. This shim did not load it: its next create loads
   * it again (docs/apparmor.md).
   */
  async function heldByGoneContainer(t: Awaited<ReturnType<typeof setup>>, name: string, id: string): Promise<void> {
    t.kernel.add(name);
    await t.store.markInUse(TEAM_A, `apparmor:${name}@container:${id}`);
    t.live.push(id);
    await t.tracker.rebuild();
    t.live.length = 0;
  }

  it('the last holder goes while the create loads the profile: not unloaded, and the removal does not wait for the load', async () => {
    const t = await setup();
    const name = aaName('d');
    await heldByGoneContainer(t, name, 'old');
    const compiling = gate();
    const started = gate();
    const claim = t.tracker.claimAppArmor(name, TEAM_A, t.loader(name, { wait: compiling.opened, started: started.open }), 'new');
    await started.opened;
    await t.tracker.released('container:old');
    compiling.open();
    const c = await claim;
    assert.deepEqual(await t.store.inUseHolders(TEAM_A), [c.pending]);
    assert.ok(!t.events.includes(`unload ${name}`), t.events.join(', '));
    await t.assertHeldLoaded();
    // The create is given up: nothing holds it any more, and it goes.
    await t.tracker.abortAppArmor([c]);
    assert.ok(!t.kernel.has(name));
  });

  it('the create comes while the unload checks the runtime: it loads and claims, and the unload leaves the name alone', async () => {
    const t = await setup();
    const name = aaName('e');
    await heldByGoneContainer(t, name, 'old');
    const checking = gate();
    const listedOnce = gate();
    t.holdListing(checking.opened);
    t.onListed(listedOnce.open);
    const removal = t.tracker.released('container:old');
    await listedOnce.opened;
    const claim = t.tracker.claimAppArmor(name, TEAM_A, t.loader(name), 'new');
    t.holdListing(undefined);
    checking.open();
    await removal;
    const c = await claim;
    assert.deepEqual(await t.store.inUseHolders(TEAM_A), [c.pending]);
    await t.assertHeldLoaded();
  });

  it('the create comes while apparmor_parser --remove runs: its load waits for the unload, then loads the name again', async () => {
    const t = await setup();
    const name = aaName('f');
    await heldByGoneContainer(t, name, 'old');
    const removing = gate();
    const removeStarted = gate();
    t.holdUnload(removing.opened);
    t.onUnloadStarted(removeStarted.open);
    const removal = t.tracker.released('container:old');
    await removeStarted.opened;
    const claim = t.tracker.claimAppArmor(name, TEAM_A, t.loader(name), 'new');
    t.holdUnload(undefined);
    removing.open();
    await removal;
    const c = await claim;
    // apparmor_parser --replace starts only once --remove is done: run at once, the remove
    // could finish last and take away the profile the create claims.
    assert.deepEqual(t.events.slice(-3), [`unload ${name}`, `loading ${name}`, `load ${name}`]);
    assert.deepEqual(await t.store.inUseHolders(TEAM_A), [c.pending]);
    await t.assertHeldLoaded();
  });

  it('a rebuild that drops the name while a create loads it keeps it loaded; once the create is given up it goes', async () => {
    const t = await setup();
    const name = aaName('9');
    await heldByGoneContainer(t, name, 'old');
    const compiling = gate();
    const started = gate();
    const claim = t.tracker.claimAppArmor(name, TEAM_A, t.loader(name, { wait: compiling.opened, started: started.open }), 'new');
    await started.opened;
    await t.tracker.rebuild();
    assert.ok(!t.events.includes(`unload ${name}`), t.events.join(', '));
    compiling.open();
    const c = await claim;
    await t.assertHeldLoaded();
    await t.tracker.abortAppArmor([c]);
    assert.ok(!t.kernel.has(name), 'unloaded once nothing holds it');
  });
});

describe('an AppArmor claim that cannot record its profile', () => {
  it('unloads what it loaded when the origins record fails (a full disk): no profile stays in the kernel with no holder, where no rebuild would look', async () => {
    const t = await setup();
    const name = aaName('c');
    const full = Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' });
    const recordEffective = t.store.recordEffective.bind(t.store);
    t.store.recordEffective = async () => Promise.reject(full);
    try {
      await assert.rejects(t.tracker.claimAppArmor(name, TEAM_A, t.loader(name), 'team-a'), (e: unknown) => e === full);
    } finally {
      t.store.recordEffective = recordEffective;
    }
    assert.equal(t.kernel.has(name), false, `loaded with no holder: ${t.events.join(', ')}`);
  });

  it('fails NotFound, holding nothing and unloading what it loaded, when another process removed the artifact before its holder was recorded (spoke store rm racing it)', async () => {
    const t = await setup();
    const name = aaName('7');
    const artifact = ingestInput('#include <tunables/global>\nprofile spoke-removed-meanwhile {}\n');
    await t.store.ingest(artifact);
    // \`spoke store rm\` in another process: no holder yet, so the record and its blob go.
    await new ProfileStore({ root: t.store.root }).remove(artifact.digest);
    await rejectsWith(t.tracker.claimAppArmor(name, artifact.digest, t.loader(name), 'team-a'), { code: 'NotFound', reason: 'NOT_FOUND' });
    assert.deepEqual(await t.store.inUseHolders(artifact.digest), [], 'no holder left for an artifact without its record');
    assert.equal(t.kernel.has(name), false, `loaded with no holder: ${t.events.join(', ')}`);
  });
});
