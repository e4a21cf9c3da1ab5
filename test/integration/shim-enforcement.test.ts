// OCI seccomp profiles enforced end to end: a CRI client (playing the kubelet) → the real
// `spoke shim` process → real containerd 1.6 → runc or crun, with profiles pulled over CRI
// from a real docker-registry. Runs under both runtime handlers.

import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, request as httpRequest, type Server } from 'node:http';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { RUNTIME_HANDLERS } from '../helpers/containerd.js';
import { freePort } from '../helpers/registry.js';
import type { Msg } from '../helpers/cri-client.js';
import { ALLOW_ALL_SECCOMP, denySyscalls, pushRawArtifact } from '../helpers/artifacts.js';
import { ProfileStore } from '../../src/store/store.js';
import { waitFor } from '../helpers/wait.js';
import { startShim, stopShim } from '../helpers/shim.js';
import type { Digest } from '../../src/core/digest.js';
import { unsignedPolicy } from '../helpers/node.js';
import { startShimRig, type Pod, type ShimRig } from '../helpers/shim-rig.js';

function rssKiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m?.[1] ?? 0);
}

describe('OCI seccomp profiles enforced through the shim', { timeout: 600_000 }, () => {
  let rig: ShimRig;
  let metricsPort: number;
  let denyMkdir: string;
  let permissive: string;
  let neverPulled: string;
  let baseChmod: string;

  const pullReq = (ref: string, extra: Msg = {}) => ({ image: { image: ref }, profile_kind: 'Seccomp', sandbox_config: { metadata: { name: 'p', namespace: 'default' } }, ...extra });
  const oci = (ref: string, base?: Msg) => ({ profile_type: 'OCI', oci_ref: ref, ...(base ? { base_profile: base } : {}) });

  const pod = (handler: string, seccomp?: Msg) => rig.pod({ handler, ...(seccomp ? { seccomp } : {}) });
  const removePod = (id: string) => rig.removePod(id);
  const container = (p: Pod, name: string, seccomp?: Msg) => rig.cri.startBusybox(p, name, seccomp ? { seccomp } : undefined);
  const sh = (cid: string, script: string) => rig.cri.sh(cid, script);

  const probe = async (cid: string) => ({
    mkdir: /MKDIR_OK/.test(await sh(cid, `mkdir /tmp/m$$ && echo MKDIR_OK || echo MKDIR_DENIED`)),
    chmod: /CHMOD_OK/.test(await sh(cid, `touch /tmp/f$$ && chmod 600 /tmp/f$$ && echo CHMOD_OK || echo CHMOD_DENIED`)),
    unshare: /UNSHARE_OK/.test(await sh(cid, `unshare -U true && echo UNSHARE_OK || echo UNSHARE_DENIED`)),
  });

  before(async () => {
    rig = await startShimRig('ske-', {
      extraArgs: async (files) => {
        // Localhost bases live under the kubelet's seccomp root (a path outside it is refused).
        mkdirSync(files.seccompRoot);
        baseChmod = join(files.seccompRoot, 'base-deny-chmod.json');
        writeFileSync(baseChmod, denySyscalls(['chmod', 'fchmod', 'fchmodat']));
        metricsPort = await freePort();
        return ['--metrics', `127.0.0.1:${metricsPort}`, '--log-level', 'info'];
      },
    });
    denyMkdir = (await pushRawArtifact(rig.reg.host, 'profiles/deny-mkdir', { layers: [{ bytes: denySyscalls(['mkdir', 'mkdirat']) }] })).reference;
    permissive = (await pushRawArtifact(rig.reg.host, 'profiles/permissive', { layers: [{ bytes: ALLOW_ALL_SECCOMP }] })).reference;
    neverPulled = (await pushRawArtifact(rig.reg.host, 'profiles/never', { layers: [{ bytes: denySyscalls(['chown']) }] })).reference;
    assert.equal(rig.shim!.logs().find((l) => l.msg === 'shim ready')?.metrics, `127.0.0.1:${metricsPort}`, 'the ready line names the metrics address bound');
  });

  after(() => rig.tearDown());

  test('start-up: the ready log says how long it took; the socket answers at once', async () => {
    const ready = rig.shim!.logs().find((l) => l.msg === 'shim ready')!;
    assert.ok(Number.isFinite(ready.startupMs) && (ready.startupMs as number) >= 0, 'the ready log carries its start-up time');
    // Footprint and start-up time are benchmark figures (npm run bench), never asserted here.
    process.stdout.write(`# shim ready after ${Math.round(rig.shim!.readyMs)} ms (spawn → ready log; in-process ${String(ready.startupMs)} ms), RSS ${(rssKiB(rig.shim!.child.pid!) / 1024).toFixed(1)} MiB\n`);
    const version = await rig.cri.unaryFull('/runtime.v1.RuntimeService/Version', Buffer.alloc(0), { deadlineMs: 5000 });
    assert.equal(version.error, null);
  });

  test('Status advertises the feature', async () => {
    const st = await rig.cri.rt('Status', {});
    assert.equal((st.features as Msg).security_profile_oci_artifact, true);
  });

  test('pull over CRI: first from the registry, second cached with zero registry requests', async () => {
    await rig.reg.resetRequests();
    let t = performance.now();
    const first = await rig.cri.img('PullSecurityProfileArtifact', pullReq(denyMkdir));
    const coldMs = performance.now() - t;
    assert.equal(first.resolved_ref, denyMkdir);
    assert.equal(first.cached, false);
    await rig.reg.settle();
    assert.ok(rig.reg.requests().length >= 2);
    await rig.reg.resetRequests();
    t = performance.now();
    const second = await rig.cri.img('PullSecurityProfile', pullReq(denyMkdir));
    const warmMs = performance.now() - t;
    process.stdout.write(`# pull over CRI: cold ${coldMs.toFixed(1)} ms (first pull also loads the pipeline), warm ${warmMs.toFixed(2)} ms\n`);
    assert.equal(second.cached, true);
    assert.equal(second.resolved_ref, denyMkdir);
    await rig.reg.settle();
    assert.deepEqual(rig.reg.requests(), []);
    await rig.cri.img('PullSecurityProfile', pullReq(permissive));
    const log = rig.shim!.logs().find((l) => l.msg === 'security profile pull' && l.reference === denyMkdir);
    assert.ok(log && typeof log.digest === 'string' && typeof log.rule === 'string');
  });

  test('pull refusals: unlisted registry, bad kinds, tags', async () => {
    const other = denyMkdir.replace('/profiles/', '/elsewhere/');
    await assert.rejects(rig.cri.img('PullSecurityProfileArtifact', pullReq(other)), (e: grpc.ServiceError) => e.code === grpc.status.PERMISSION_DENIED && /^PermissionDenied: /.test(e.details));
    await assert.rejects(rig.cri.img('PullSecurityProfileArtifact', pullReq(denyMkdir, { profile_kind: 'SecurityProfileKindUnspecified' })), (e: grpc.ServiceError) => e.code === grpc.status.INVALID_ARGUMENT && /^SecurityProfileInvalid: /.test(e.details));
    // Kind AppArmor is pulled now (shim-annotations.test.ts); here the node policy allows only seccomp.
    await assert.rejects(rig.cri.img('PullSecurityProfileArtifact', pullReq(denyMkdir, { profile_kind: 'AppArmor' })), (e: grpc.ServiceError) => e.code === grpc.status.PERMISSION_DENIED && /apparmor/.test(e.details));
    await assert.rejects(rig.cri.img('PullSecurityProfileArtifact', pullReq(`${rig.reg.host}/profiles/deny-mkdir:latest`)), (e: grpc.ServiceError) => e.code === grpc.status.INVALID_ARGUMENT && /^SecurityProfileInvalid: /.test(e.details));
    // Profiles never show up as images.
    const imgs = await rig.cri.img('ListImages', {});
    assert.ok(!(imgs.images as Msg[]).some((i) => JSON.stringify(i).includes('profiles/')));
  });

  for (const handler of RUNTIME_HANDLERS) {
    describe(`runtime handler ${handler}`, () => {
      test('OCI profile denying mkdir, layered on a Localhost base (chmod) and the baseline (unshare)', async () => {
        const p = await pod(handler);
        try {
          const ctl = await container(p, 'control', { profile_type: 'Unconfined' });
          assert.deepEqual(await probe(ctl), { mkdir: true, chmod: true, unshare: true }, 'control container: everything allowed');
          const cid = await container(p, 'enforced', oci(denyMkdir, { type: 'Localhost', localhost_ref: baseChmod }));
          assert.deepEqual(await probe(cid), { mkdir: false, chmod: false, unshare: false });
          assert.match(await sh(cid, 'mkdir /tmp/x'), /Operation not permitted/);
          assert.match(await sh(cid, 'echo still-works'), /still-works/);
          const list = await rig.cri.img('ListSecurityProfiles', {});
          const entry = (list.profiles as Msg[]).find((x) => (x.references as string[]).includes(denyMkdir));
          assert.equal(entry?.in_use, true);
        } finally {
          await removePod(p.id);
        }
      });

      test('permissive artifact is still constrained by the baseline', async () => {
        const p = await pod(handler);
        try {
          const cid = await container(p, 'permissive', oci(permissive));
          assert.deepEqual(await probe(cid), { mkdir: true, chmod: true, unshare: false });
          const logs = rig.shim!.logs().filter((l) => l.msg === 'SecurityProfileMergeConstrained' && l.reference === permissive);
          assert.ok(logs.length > 0, 'the constraint was logged');
        } finally {
          await removePod(p.id);
        }
      });

      test('pod-level profile: applied to the sandbox and inherited by containers', async () => {
        const p = await pod(handler, oci(denyMkdir, { type: 'RuntimeDefault' }));
        try {
          // kubelet sends the inherited profile in the container config …
          const a = await container(p, 'inherits', oci(denyMkdir, { type: 'RuntimeDefault' }));
          // … and a container config without any profile inherits the pod's too.
          const b = await container(p, 'bare');
          for (const cid of [a, b]) assert.deepEqual(await probe(cid), { mkdir: false, chmod: true, unshare: false });
        } finally {
          await removePod(p.id);
        }
      });
    });
  }

  test('never-pulled reference: create fails, containerd never sees the call', async () => {
    const p = await pod('');
    try {
      const before = rig.tap.streams().length;
      await assert.rejects(container(p, 'never-pulled-ctr', oci(neverPulled)), (e: grpc.ServiceError) => e.code === grpc.status.FAILED_PRECONDITION && /has not been pulled/.test(e.details));
      const after = rig.tap.streams().slice(before);
      assert.ok(!after.some((s) => s.request.includes(Buffer.from('never-pulled-ctr'))), 'no request carrying the container reached containerd');
      assert.ok(!rig.tap.streams().some((s) => s.request.includes(Buffer.from(neverPulled))), 'containerd never saw an OCI reference');
      // OCI type 3 never reached the upstream in any request: every OCI ref was replaced.
      for (const ref of [denyMkdir, permissive]) assert.ok(!rig.tap.streams().some((s) => s.request.includes(Buffer.from(ref))));
    } finally {
      await removePod(p.id);
    }
  });

  test('shim restarted with a running pod: in-use set rebuilt, gc keeps the profile', async () => {
    const p = await pod('');
    const cid = await container(p, 'survivor', oci(denyMkdir));
    const digest = denyMkdir.slice(denyMkdir.indexOf('@') + 1) as Digest;
    assert.equal(await stopShim(rig.shim), 0);
    rig.shim = await startShim(rig.shimArgs);
    const store = new ProfileStore({ root: rig.files.storeDir });
    await rig.shim.waitForLog((l) => l.msg === 'in-use set rebuilt from the runtime');
    assert.ok((await store.inUseHolders(digest)).includes(`container:${cid}`));
    const gc = await store.gc({ minAgeMs: 0 });
    assert.ok(!gc.removed.includes(digest), 'gc kept the profile of the running container');
    await assert.rejects(rig.cri.img('RemoveSecurityProfile', { digest }), (e: grpc.ServiceError) => e.code === grpc.status.FAILED_PRECONDITION);
    assert.deepEqual(await probe(cid), { mkdir: false, chmod: true, unshare: false });
    await removePod(p.id);
    // after RemovePodSandbox the holders go (rebuild), and removal works
    await waitFor(async () => (await store.inUseHolders(digest)).length === 0, { timeoutMs: 10_000, what: 'the holders to go' });
    await rig.cri.img('RemoveSecurityProfile', { digest });
    const list = await rig.cri.img('ListSecurityProfiles', {});
    assert.ok(!(list.profiles as Msg[]).some((x) => x.digest === digest));
    // Removing it again is not an error (the kubelet's contract: gc may have removed it between
    // the kubelet's list and its remove).
    await rig.cri.img('RemoveSecurityProfile', { digest });
  });

  test('metrics are served with the docs/configuration.md names; the store gauges follow pulls', async () => {
    await rig.cri.rt('Version', { version: 'v1' });
    const fresh = (await pushRawArtifact(rig.reg.host, 'profiles/metrics', { layers: [{ bytes: denySyscalls(['acct']) }] })).reference;
    await rig.cri.img('PullSecurityProfileArtifact', pullReq(fresh));
    const scrape = () =>
      new Promise<string>((resolve, reject) => {
        httpRequest({ host: '127.0.0.1', port: metricsPort, path: '/metrics' }, (res) => {
          let s = '';
          res.on('data', (d: Buffer) => (s += d.toString()));
          res.on('end', () => resolve(s));
        })
          .on('error', reject)
          .end();
      });
    const entries = await new ProfileStore({ root: rig.files.storeDir }).list();
    assert.ok(entries.length > 0);
    // The gauges are recounted off the call's path after a fetch: wait for it.
    let body = '';
    await waitFor(async () => new RegExp(`^spoke_store_artifacts ${entries.length}$`, 'm').test((body = await scrape())), { timeoutMs: 5000, what: 'the store gauges' });
    // Values this test caused, not just names (a registered metric shows its name at zero).
    assert.match(body, /^spoke_profile_pull_duration_seconds_count\{cached="false"\} [1-9]\d*$/m);
    assert.match(body, /^spoke_policy_decisions_total\{decision="allow"\} [1-9]\d*$/m);
    assert.match(body, /^spoke_profile_pull_errors_total\{reason="other"\} \d+$/m);
    assert.match(body, /^spoke_merge_constrained_total \d+$/m);
    assert.match(body, /spoke_cri_forward_duration_seconds_count\{method="Version"\} [1-9]/);
    assert.match(body, new RegExp(`^spoke_store_artifacts ${entries.length}$`, 'm'));
    assert.match(body, new RegExp(`^spoke_store_bytes ${entries.reduce((n, e) => n + e.size, 0)}$`, 'm'));
  });

  test('SIGTERM during a pull: the pull completes, then the shim exits and removes its socket', async () => {
    // A registry front that holds every request until the test releases it, and says when one arrived.
    let arrived!: () => void;
    const inFlight = new Promise<void>((r) => (arrived = r));
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    const slow: Server = createHttpServer((req, res) => {
      arrived();
      void released.then(() => {
        const up = httpRequest({ host: '127.0.0.1', port: rig.reg.port, path: req.url, method: req.method, headers: { ...req.headers, host: rig.reg.host } }, (r) => {
          res.writeHead(r.statusCode ?? 502, r.headers);
          r.pipe(res);
        });
        req.pipe(up);
      });
    });
    await new Promise<void>((r) => slow.listen(0, '127.0.0.1', () => r()));
    try {
      const slowHost = `127.0.0.1:${(slow.address() as AddressInfo).port}`;
      const pushed = await pushRawArtifact(rig.reg.host, 'profiles/slow', { layers: [{ bytes: denySyscalls(['mknod']) }] });
      const ref = pushed.reference.replace(rig.reg.host, slowHost);
      const policy = join(rig.files.work, 'policy-slow.yaml');
      writeFileSync(policy, unsignedPolicy([`${slowHost}/profiles`]));
      await stopShim(rig.shim);
      const args = [...rig.shimArgs];
      args[args.indexOf('--policy') + 1] = policy;
      rig.shim = await startShim(args);
      const pull = rig.cri.img('PullSecurityProfileArtifact', pullReq(ref), { deadlineMs: 30_000 });
      await inFlight;
      rig.shim.child.kill('SIGTERM');
      const shuttingDown = await rig.shim.waitForLog((l) => l.msg === 'shutting down');
      assert.equal(shuttingDown.inFlight, 1, 'the pull is in flight when the shim starts to stop');
      release();
      const res = await pull;
      assert.equal(res.cached, false);
      assert.equal(await rig.shim.exited, 0);
      assert.ok(!existsSync(rig.files.sock), 'socket removed');
      const refused = await rig.cri.unaryFull('/runtime.v1.RuntimeService/Version', Buffer.alloc(0), { deadlineMs: 2000 });
      assert.equal(refused.error?.code, grpc.status.UNAVAILABLE);
    } finally {
      release();
      await new Promise<void>((r) => slow.close(() => r()));
      rig.shim = undefined;
    }
  });
});
