// The in-use set after faults, through the real `spoke shim` on real containerd + runc: a torn or
// garbage in-use file (it is not flushed) never fails a create, `store ls` or `store gc`, and the
// shim rebuilds it from the runtime; a container the runtime runs but the shim never recorded
// (its create response was lost) gets a holder from its runtime config, so gc keeps its profile.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startContainerd, type Containerd } from '../helpers/containerd.js';
import { CriClient, hostNetworkPod, type Msg } from '../helpers/cri-client.js';
import { startRegistry, type TestRegistry } from '../helpers/registry.js';
import { denySyscalls, pushRawArtifact } from '../helpers/artifacts.js';
import { startShim, tearDownShimRig, type ShimProc } from '../helpers/shim.js';
import { spoke } from '../helpers/cli.js';
import { unsignedPolicy } from '../helpers/node.js';
import { ProfileStore } from '../../src/store/store.js';
import type { Digest } from '../../src/core/digest.js';

const REBUILT = 'in-use set rebuilt from the runtime';

describe('in-use set recovery through the shim', { timeout: 300_000 }, () => {
  let ctrd: Containerd;
  let reg: TestRegistry;
  let work: string;
  let shim: ShimProc | undefined;
  let cri: CriClient;
  let direct: CriClient;
  let storeDir: string;
  let seccompRoot: string;
  let ref: string;
  let digest: Digest;
  let seq = 0;

  const oci = () => ({ profile_type: 'OCI', oci_ref: ref });
  const rebuilds = () => shim!.logs().filter((l) => l.msg === REBUILT).length;

  /** Waits for a rebuild after `count` were logged (the shim logs each one). */
  async function rebuiltAfter(count: number): Promise<void> {
    await shim!.waitForLogs((l) => l.msg === REBUILT, count + 1);
  }

  async function pod(client: CriClient): Promise<{ id: string; config: Msg }> {
    const logDir = join(work, `logs-${++seq}`);
    mkdirSync(logDir, { recursive: true });
    const config = hostNetworkPod(`rec-${seq}`, logDir);
    return { id: (await client.rt('RunPodSandbox', { config })).pod_sandbox_id as string, config };
  }

  async function gcDryRun(): Promise<{ removed: string[]; inUseComplete: boolean }> {
    const r = await spoke(['store', 'gc', '--dry-run', '--json', '--store', storeDir, '--config', join(work, 'none.yaml')]);
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as { removed: string[]; inUseComplete: boolean };
  }

  before(async () => {
    ctrd = await startContainerd();
    reg = await startRegistry();
    work = mkdtempSync('/tmp/skr-');
    ref = (await pushRawArtifact(reg.host, 'profiles/recover', { layers: [{ bytes: denySyscalls(['mkdir', 'mkdirat']) }] })).reference;
    digest = ref.slice(ref.indexOf('@') + 1) as Digest;
    const policy = join(work, 'policy.yaml');
    writeFileSync(policy, unsignedPolicy([`${reg.host}/profiles`]));
    writeFileSync(join(work, 'none.yaml'), '{}\n');
    storeDir = join(work, 'store');
    seccompRoot = join(work, 'seccomp');
    shim = await startShim(['--listen', join(work, 'shim.sock'), '--upstream', ctrd.socket, '--store', storeDir, '--seccomp-root', seccompRoot, '--policy', policy, '--log-level', 'info']);
    cri = new CriClient(join(work, 'shim.sock'));
    direct = new CriClient(ctrd.socket);
    await cri.img('PullSecurityProfileArtifact', { image: { image: ref }, profile_kind: 'Seccomp' });
  });

  after(async () => {
    direct?.close();
    await tearDownShimRig({ cri, ctrd, shim, reg, work });
  });

  for (const [name, bytes] of [
    ['truncated', '{"holders":{"container:'],
    ['garbage', Buffer.from([0xde, 0xad, 0x00, 0xbe, 0xef])],
  ] as const) {
    test(`${name} in-use file: OCI CreateContainer, store ls and gc work; the set is rebuilt from the runtime`, async () => {
      const p = await pod(cri);
      for (const f of ['in-use.json', 'in-use.log']) writeFileSync(join(storeDir, 'state', f), bytes);
      const seen = rebuilds();
      const cid = await cri.startBusybox(p, 'after-crash', { seccomp: oci() });
      assert.match(await cri.sh(cid, 'mkdir /tmp/x || echo DENIED'), /DENIED/, 'the profile is enforced');
      const ls = await spoke(['store', 'ls', '--json', '--store', storeDir, '--config', join(work, 'none.yaml')]);
      assert.equal(ls.code, 0, ls.stderr);
      await rebuiltAfter(seen);
      assert.ok((await new ProfileStore({ root: storeDir }).inUseHolders(digest)).includes(`container:${cid}`));
      const gc = await gcDryRun();
      assert.equal(gc.inUseComplete, true);
      assert.ok(!gc.removed.includes(digest), 'gc keeps the profile of the running container');
      await cri.rt('StopPodSandbox', { pod_sandbox_id: p.id });
      // The removal schedules a rebuild: the next test starts once it is done, not under it.
      const removed = rebuilds();
      await cri.rt('RemovePodSandbox', { pod_sandbox_id: p.id });
      await rebuiltAfter(removed);
    });
  }

  test('a container whose create response was lost gets a holder from its runtime config; gc keeps its profile', async () => {
    // The shim makes the effective file (and remembers which artifact it came from) …
    const viaShim = await pod(cri);
    const first = await cri.startBusybox(viaShim, 'recorded', { seccomp: oci() });
    await cri.rt('StopContainer', { container_id: first, timeout: 0 });
    await cri.rt('RemoveContainer', { container_id: first });
    const effective = readdirSync(join(seccompRoot, 'spoke')).filter((f) => /^[0-9a-f]{64}\.json$/.test(f));
    assert.equal(effective.length, 1);
    // … and a container runs on that file without the shim ever recording it.
    const lost = await direct.startBusybox(viaShim, 'unrecorded', { seccomp: { profile_type: 'Localhost', localhost_ref: join(seccompRoot, 'spoke', effective[0]!) } });
    const store = new ProfileStore({ root: storeDir });
    assert.deepEqual(await store.inUseHolders(digest), []);
    assert.ok((await gcDryRun()).removed.includes(digest), 'before the rebuild gc would remove the profile');

    const seen = rebuilds();
    await ctrd.restart({ hard: true });
    await rebuiltAfter(seen);
    assert.deepEqual(await store.inUseHolders(digest), [`container:${lost}`]);
    assert.ok(!(await gcDryRun()).removed.includes(digest), 'gc keeps the profile of the unrecorded container');
    assert.match(await direct.sh(lost, 'mkdir /tmp/y || echo DENIED'), /DENIED/);
    await cri.rt('StopPodSandbox', { pod_sandbox_id: viaShim.id });
    await cri.rt('RemovePodSandbox', { pod_sandbox_id: viaShim.id });
  });
});
