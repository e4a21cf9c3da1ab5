// AppArmor unload safety: removing a profile from the kernel unconfines every task it confines,
// so the in-use tracker unloads only after reconciling with the runtime's containers and
// /proc/<pid>/attr/current. Real containerd lists the containers (through the shim's own
// upstream client); this kernel has no AppArmor, so the parser is a fake that records unloads
// and /proc is a directory the test writes.

import { after, before, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startContainerd, type Containerd } from '../helpers/containerd.js';
import { CriClient, encode, hostNetworkPod, type Msg } from '../helpers/cri-client.js';
import { appArmorHolder, InUseTracker, PENDING_GRACE_MS, requestIdentity } from '../../src/cri/inuse.js';
import { Upstream } from '../../src/cri/upstream.js';
import { ProfileStore } from '../../src/store/store.js';
import { packProfile } from '../../src/publish/pack.js';
import { silentLogger } from '../../src/core/runtime.js';
import type { Digest } from '../../src/core/digest.js';

// A stored artifact: a claim holds only what the store has (InUseTracker.claimAppArmor).
const ARTIFACT = packProfile(Buffer.from('{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_ERRNO"}]}'), 'seccomp');
const D: Digest = ARTIFACT.manifestDigest;
const name = (c: string) => `spoke-${c.repeat(64)}`;

describe('AppArmor profiles are unloaded only when nothing runs under them', { timeout: 180_000 }, () => {
  let ctrd: Containerd;
  let upstream: Upstream;
  let direct: CriClient;
  let work: string;
  let store: ProfileStore;
  let proc: string;
  let clock: number;
  let unloaded: string[];
  let tracker: InUseTracker;
  let seq = 0;

  async function pod(): Promise<{ id: string; config: Msg }> {
    const logDir = join(work, `logs-${++seq}`);
    mkdirSync(logDir, { recursive: true });
    const config = hostNetworkPod(`aa-${seq}`, logDir);
    return { id: (await direct.rt('RunPodSandbox', { config })).pod_sandbox_id as string, config };
  }

  /** A task in the fake /proc confined by `label`. */
  function confined(pid: number, label: string): void {
    mkdirSync(join(proc, String(pid), 'attr'), { recursive: true });
    writeFileSync(join(proc, String(pid), 'attr', 'current'), `${label} (enforce)\n`);
  }

  before(async () => {
    ctrd = await startContainerd();
    work = mkdtempSync('/tmp/ska-');
    upstream = new Upstream(ctrd.socket, silentLogger, {});
    upstream.start();
    assert.ok(await upstream.waitUp(10_000));
    direct = new CriClient(ctrd.socket);
  });

  beforeEach(async () => {
    const dir = mkdtempSync(join(work, 'case-'));
    store = new ProfileStore({ root: join(dir, 'store') });
    await store.ingest({ digest: D, manifestBytes: ARTIFACT.manifest, layerDigest: ARTIFACT.layerDigest, layerBytes: ARTIFACT.layer, kind: 'seccomp', reference: `reg.example/p@${D}`, rule: 'r', servedBy: 'reg.example' });
    proc = join(dir, 'proc');
    mkdirSync(proc);
    clock = Date.now();
    unloaded = [];
    tracker = new InUseTracker(store, silentLogger, {
      upstream,
      seccompRoot: join(dir, 'seccomp'),
      procRoot: proc,
      now: () => clock,
      appArmor: {
        unload: async (n) => {
          unloaded.push(n);
        },
      },
    });
  });

  after(async () => {
    direct?.close();
    await upstream?.close();
    await ctrd?.stop();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  test('a create whose response was lost keeps its profile loaded; the rebuild hands the holder to the container the runtime made', async () => {
    const p = await pod();
    const request = encode('CreateContainerRequest', { pod_sandbox_id: p.id, config: { metadata: { name: 'lost', attempt: 0 } }, sandbox_config: p.config });
    const claim = await tracker.claimAppArmor(name('1'), D, async () => undefined, requestIdentity('container', request));
    // The runtime made the container, but the shim saw the call fail.
    const cid = await direct.startBusybox(p, 'lost');
    tracker.unconfirmed(undefined, [claim]);
    await tracker.rebuild();
    assert.deepEqual(await store.inUseHolders(D), [appArmorHolder(name('1'), `container:${cid}`)]);
    clock += PENDING_GRACE_MS + 1;
    await tracker.rebuild();
    assert.deepEqual(unloaded, [], 'loaded while its container runs');
    await direct.rt('StopContainer', { container_id: cid, timeout: 0 });
    await direct.rt('RemoveContainer', { container_id: cid });
    await tracker.rebuild();
    assert.deepEqual(unloaded, [name('1')], 'unloaded once the container is gone');
    assert.deepEqual(await store.inUseHolders(D), []);
  });

  test('a failed create whose object the runtime never made: the pending holder outlives the grace period, then goes', async () => {
    const p = await pod();
    const request = encode('CreateContainerRequest', { pod_sandbox_id: p.id, config: { metadata: { name: 'never', attempt: 0 } } });
    const claim = await tracker.claimAppArmor(name('2'), D, async () => undefined, requestIdentity('container', request));
    tracker.unconfirmed(undefined, [claim]);
    const r = await tracker.rebuild();
    assert.deepEqual(unloaded, [], 'the create may still be running in the runtime');
    assert.ok(r.recheckInMs !== undefined && r.recheckInMs <= PENDING_GRACE_MS);
    clock += PENDING_GRACE_MS + 1;
    await tracker.rebuild();
    assert.deepEqual(unloaded, [name('2')]);
  });

  test('a stale pending holder of a crashed shim: never unloaded while /proc shows a task confined by it', async () => {
    await store.markInUse(D, appArmorHolder(name('3'), `pending:${clock - 3_600_000}:0123456789ab`));
    confined(4242, name('3'));
    confined(4243, 'unconfined');
    await tracker.rebuild();
    assert.deepEqual(await store.inUseHolders(D), [], 'the stale holder goes');
    assert.deepEqual(unloaded, [], 'but the profile stays loaded while a task runs under it');
    rmSync(join(proc, '4242'), { recursive: true });
    await tracker.rebuild();
    assert.deepEqual(unloaded, [name('3')], 'checked again at the next rebuild');
  });

  test('/proc that cannot be listed, or a task label that cannot be read: nothing is unloaded until it can', async () => {
    await store.markInUse(D, appArmorHolder(name('5'), `pending:${clock - 3_600_000}:0123456789ab`));
    rmSync(proc, { recursive: true });
    await tracker.rebuild();
    assert.deepEqual(await store.inUseHolders(D), [], 'the stale holder goes');
    assert.deepEqual(unloaded, [], 'no /proc: in doubt, kept loaded');
    mkdirSync(proc);
    confined(4244, 'unconfined');
    // A label that does not read as a file (EISDIR): its task may run under the profile.
    mkdirSync(join(proc, '4245', 'attr', 'current'), { recursive: true });
    await tracker.rebuild();
    assert.deepEqual(unloaded, [], 'an unreadable label: in doubt, kept loaded');
    rmSync(join(proc, '4245'), { recursive: true });
    await tracker.rebuild();
    assert.deepEqual(unloaded, [name('5')], 'checked again at the next rebuild');
  });

  test('runtime unreachable: nothing is unloaded until it can be listed again', async () => {
    const claim = await tracker.claimAppArmor(name('4'), D, async () => undefined);
    await tracker.commitAppArmor([claim], 'container:gone');
    await ctrd.kill();
    try {
      await tracker.released('container:gone');
      assert.deepEqual(unloaded, [], 'in doubt: kept loaded');
    } finally {
      await ctrd.start();
    }
    assert.ok(await upstream.waitUp(20_000));
    await tracker.rebuild();
    assert.deepEqual(unloaded, [name('4')]);
  });
});
