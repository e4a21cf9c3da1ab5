// Annotation-mode pulls end at the CRI call's deadline: the real `spoke shim --annotations` in
// front of real containerd, a real docker-registry behind a proxy that trickles the manifest a
// byte a second. When the kubelet's RunPodSandbox deadline passes, the shim gives up the registry
// request too, rather than keeping it open until the pull timeout (2 min).

import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { startContainerd, type Containerd } from '../helpers/containerd.js';
import { CriClient, hostNetworkPod } from '../helpers/cri-client.js';
import { denySyscalls, pushRawArtifact } from '../helpers/artifacts.js';
import { startRegistry, type TestRegistry } from '../helpers/registry.js';
import { startShim, tearDownShimRig, type ShimProc } from '../helpers/shim.js';
import { manifests, startSlowProxy, type SlowProxy } from '../helpers/slow-proxy.js';
import { unsignedPolicy } from '../helpers/node.js';
import { shimFiles } from '../helpers/shim-rig.js';

// Well under the 2 min pull timeout: only the call's deadline can end the request in time.
describe('annotation-mode pulls under the CRI deadline', { timeout: 60_000 }, () => {
  let ctrd: Containerd;
  let reg: TestRegistry;
  let proxy: SlowProxy;
  let work: string;
  let shim: ShimProc | undefined;
  let cri: CriClient;

  before(async () => {
    ctrd = await startContainerd();
    reg = await startRegistry();
    proxy = await startSlowProxy(reg.port);
    const files = shimFiles('skd-', unsignedPolicy([`${proxy.host}/profiles`]));
    work = files.work;
    shim = await startShim(files.args(ctrd.socket, '--annotations'));
    cri = new CriClient(files.sock);
  });

  after(async () => {
    await proxy.close();
    await tearDownShimRig({ cri, ctrd, shim, reg, work });
  });

  it('RunPodSandbox with a deadline: the trickling registry request is given up when the deadline passes', async () => {
    const { reference } = await pushRawArtifact(reg.host, 'profiles/ann-deadline', { layers: [{ bytes: denySyscalls(['mkdir']) }] });
    proxy.trickle(manifests, 1000);
    const logDir = join(work, 'logs');
    mkdirSync(logDir, { recursive: true });
    const config = { ...hostNetworkPod('ann-deadline', logDir), annotations: { 'seccomp.profiles.spoke.dev/pod': reference.replace(reg.host, proxy.host) } };
    const call = cri.rt('RunPodSandbox', { config, runtime_handler: 'runc' }, { deadlineMs: 1_500 });
    await assert.rejects(call, (e: grpc.ServiceError) => {
      assert.equal(e.code, grpc.status.DEADLINE_EXCEEDED, e.details);
      return true;
    });
    // The shim's pull left with the deadline, and it was the flight's only caller: the
    // registry request is abandoned (a manifest at 1 byte/s would otherwise take minutes).
    await proxy.abandoned(manifests);
  });
});
