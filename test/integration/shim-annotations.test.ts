// Annotation mode end to end (docs/annotation-mode.md): a CRI client playing a kubelet WITHOUT KEP-6061 (no OCI
// profile type in any request; only pod annotations) → the real `spoke shim --annotations` →
// real containerd → runc. The shim pulls the annotated references itself (node policy, node
// credentials), applies them as Localhost, and the kernel enforces them. Also: AppArmor over the
// shim on this machine, whose kernel has no AppArmor.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { decode, type Msg } from '../helpers/cri-client.js';
import { ALLOW_ALL_SECCOMP, denySyscalls, pushRawArtifact } from '../helpers/artifacts.js';
import { ProfileStore } from '../../src/store/store.js';
import { CONFIG_MEDIA_TYPE } from '../../src/core/constants.js';
import { validateAppArmorArtifactBytes } from '../../src/profiles/apparmor/index.js';
import { findApparmorParser, kernelHasAppArmor } from '../../src/apparmor/parser.js';
import { createAppArmorOps } from '../../src/cri/apparmor.js';
import { SpokeError } from '../../src/core/errors.js';
import type { Digest } from '../../src/core/digest.js';
import { requireTool } from '../helpers/skip.js';
import { startShimRig, type Pod, type ShimRig } from '../helpers/shim-rig.js';

const SC = 'seccomp.profiles.spoke.dev/';
const AA = 'apparmor.profiles.spoke.dev/';
const HANDLER = 'runc';

const APPARMOR_PROFILE = Buffer.from(
  JSON.stringify({
    executable: { allowedExecutables: ['/bin/**', '/usr/bin/**'], allowedLibraries: ['/lib/**'] },
    filesystem: { readOnlyPaths: ['/etc/**'], writeOnlyPaths: [], readWritePaths: ['/tmp/**'] },
    network: { allowRaw: false, allowedProtocols: { allowTcp: true, allowUdp: false } },
    capability: { allowedCapabilities: ['CHOWN', 'SETUID'] },
  }),
);

describe('annotation mode through the shim (no OCI type in any request)', { timeout: 600_000 }, () => {
  let rig: ShimRig;
  let denyMkdir: string;
  let permissive: string;
  let appArmorRef: string;

  const pod = (annotations: Record<string, string>, seccomp?: Msg) => rig.pod({ handler: HANDLER, annotations, ...(seccomp ? { seccomp } : {}) });
  const container = (p: Pod, name: string, sec: Msg = {}) => rig.cri.startBusybox(p, name, sec);
  const sh = (cid: string, script: string) => rig.cri.sh(cid, script);
  const mkdirAllowed = async (cid: string) => /MKDIR_OK/.test(await sh(cid, 'mkdir /tmp/m$$ && echo MKDIR_OK || echo MKDIR_DENIED'));

  /** The request bodies containerd received for `method` that mention `needle`. */
  function upstreamRequests(method: string, needle: string): Msg[] {
    return rig.tap
      .streams()
      .filter((s) => s.request.length > 5 && s.request.includes(Buffer.from(needle)))
      .map((s) => {
        try {
          return decode(method, s.request.subarray(5));
        } catch {
          return undefined;
        }
      })
      .filter((m): m is Msg => m !== undefined);
  }

  const grpcError = (code: grpc.status, re: RegExp) => (e: grpc.ServiceError) => {
    assert.equal(e.code, code, `${grpc.status[e.code]}: ${e.details}`);
    assert.match(e.details, re);
    return true;
  };

  before(async () => {
    rig = await startShimRig('ska-', { kinds: ['seccomp', 'apparmor'], extraArgs: () => ['--annotations', '--log-level', 'debug'] });
    denyMkdir = (await pushRawArtifact(rig.reg.host, 'profiles/ann-deny-mkdir', { layers: [{ bytes: denySyscalls(['mkdir', 'mkdirat']) }] })).reference;
    permissive = (await pushRawArtifact(rig.reg.host, 'profiles/ann-permissive', { layers: [{ bytes: ALLOW_ALL_SECCOMP }] })).reference;
    appArmorRef = (await pushRawArtifact(rig.reg.host, 'profiles/ann-apparmor', { configMediaType: CONFIG_MEDIA_TYPE.apparmor, layers: [{ bytes: APPARMOR_PROFILE }] })).reference;
  });

  after(() => rig.tearDown());

  test('the shim runs in annotation mode', () => {
    assert.equal(rig.shim!.logs().find((l) => l.msg === 'shim ready')?.annotations, true);
  });

  test('container annotation, never pulled over CRI: the shim pulls it and mkdir is denied (Unconfined replaced)', async () => {
    const p = await pod({ [`${SC}app`]: denyMkdir });
    const ctl = await container(p, 'control', { seccomp: { profile_type: 'Unconfined' } });
    assert.equal(await mkdirAllowed(ctl), true, 'a container without annotation keeps Unconfined');
    const cid = await container(p, 'app', { seccomp: { profile_type: 'Unconfined' } });
    assert.equal(await mkdirAllowed(cid), false);
    assert.match(await sh(cid, 'mkdir /tmp/x'), /Operation not permitted/);
    assert.match(await sh(cid, 'echo still-works'), /still-works/);
    // pulled by the shim, stored and held by the container
    const digest = denyMkdir.slice(denyMkdir.indexOf('@') + 1) as Digest;
    const store = new ProfileStore({ root: rig.files.storeDir });
    assert.equal((await store.getRecord(digest))?.kind, 'seccomp');
    assert.ok((await store.inUseHolders(digest)).includes(`container:${cid}`));
    // containerd saw a Localhost profile under the seccomp root, never an OCI type
    const seen = upstreamRequests('CreateContainerRequest', 'app.log').map((r) => ((((r.config as Msg).linux as Msg | undefined)?.security_context as Msg | undefined)?.seccomp as Msg | undefined));
    assert.ok(seen.some((s) => s?.profile_type === 'Localhost' && String(s.localhost_ref).startsWith(join(rig.files.seccompRoot, 'spoke'))));
    assert.ok(!seen.some((s) => s?.profile_type === 'OCI'));
  });

  test('RuntimeDefault and unset are replaced; /pod applies to the sandbox and every container', async () => {
    const p = await pod({ [`${SC}pod`]: denyMkdir }, { profile_type: 'RuntimeDefault' });
    // the sandbox (pause) runs under the profile: containerd got Localhost, the process has a filter
    const run = upstreamRequests('RunPodSandboxRequest', p.name).at(-1)!;
    const sbSeccomp = (((run.config as Msg).linux as Msg).security_context as Msg).seccomp as Msg;
    assert.equal(sbSeccomp.profile_type, 'Localhost');
    const st = await rig.cri.rt('PodSandboxStatus', { pod_sandbox_id: p.id, verbose: true });
    const pid = (JSON.parse(((st.info as Record<string, string>).info ?? '{}')) as { pid?: number }).pid;
    assert.ok(pid, 'PodSandboxStatus verbose info has the pause pid');
    assert.match(readFileSync(`/proc/${pid}/status`, 'utf8'), /Seccomp:\s+2/);
    const a = await container(p, 'rd', { seccomp: { profile_type: 'RuntimeDefault' } });
    const b = await container(p, 'bare');
    assert.equal(await mkdirAllowed(a), false);
    assert.equal(await mkdirAllowed(b), false);
  });

  test('container-specific annotation wins over /pod', async () => {
    const p = await pod({ [`${SC}pod`]: denyMkdir, [`${SC}free`]: permissive });
    const cid = await container(p, 'free', { seccomp: { profile_type: 'RuntimeDefault' } });
    assert.equal(await mkdirAllowed(cid), true);
  });

  test('a KEP OCI profile in the request wins over the annotation (annotation ignored, logged)', async () => {
    await rig.cri.img('PullSecurityProfileArtifact', { image: { image: permissive }, profile_kind: 'Seccomp', sandbox_config: { metadata: { name: 'p', namespace: 'default' } } });
    const p = await pod({ [`${SC}kep`]: denyMkdir });
    const cid = await container(p, 'kep', { seccomp: { profile_type: 'OCI', oci_ref: permissive } });
    assert.equal(await mkdirAllowed(cid), true, 'the permissive OCI profile, not the annotation');
    assert.ok(rig.shim!.logs().some((l) => /annotation ignored/.test(String(l.msg)) && l.annotation === `${SC}kep`));
  });

  test('Localhost + annotation: INVALID_ARGUMENT naming the annotation; containerd never sees the create', async () => {
    const localhost = join(rig.files.work, 'local.json');
    writeFileSync(localhost, ALLOW_ALL_SECCOMP);
    const p = await pod({ [`${SC}local`]: denyMkdir });
    await assert.rejects(container(p, 'local', { seccomp: { profile_type: 'Localhost', localhost_ref: localhost } }), grpcError(grpc.status.INVALID_ARGUMENT, /annotation seccomp\.profiles\.spoke\.dev\/local conflicts with the explicit Localhost/));
    assert.deepEqual(upstreamRequests('CreateContainerRequest', 'local.log'), []);
  });

  test("a profile given in the deprecated seccomp_profile_path (an older kubelet's): Localhost is a conflict, runtime/default stays the base", async () => {
    // containerd applies the string when the field is absent, and the field once the shim sets it.
    const strict = join(rig.files.work, 'deprecated-strict.json');
    writeFileSync(strict, denySyscalls(['mkdir', 'mkdirat']));
    const p = await pod({ [`${SC}pod`]: permissive });
    await assert.rejects(container(p, 'oldlocal', { seccomp_profile_path: `localhost/${strict}` }), grpcError(grpc.status.INVALID_ARGUMENT, /annotation seccomp\.profiles\.spoke\.dev\/pod conflicts with the explicit Localhost/));
    assert.deepEqual(upstreamRequests('CreateContainerRequest', 'oldlocal.log'), []);
    // The same merge as for the field's RuntimeDefault: one content-addressed effective profile.
    const effective = async (cid: string) => {
      const st = await rig.cri.rt('ContainerStatus', { container_id: cid, verbose: true });
      const info = JSON.parse((st.info as Record<string, string>).info ?? '{}') as { config: { linux: { security_context: { seccomp: { localhost_ref: string } } } } };
      return info.config.linux.security_context.seccomp.localhost_ref;
    };
    const viaField = await effective(await container(p, 'newrd', { seccomp: { profile_type: 'RuntimeDefault' } }));
    const viaString = await effective(await container(p, 'oldrd', { seccomp_profile_path: 'runtime/default' }));
    assert.equal(viaString, viaField);
    assert.ok(viaField.startsWith(join(rig.files.seccompRoot, 'spoke')));
  });

  test('privileged container + annotation: INVALID_ARGUMENT naming the annotation', async () => {
    const p = await pod({ [`${SC}pod`]: denyMkdir });
    await assert.rejects(container(p, 'priv', { privileged: true, seccomp: { profile_type: 'Unconfined' } }), grpcError(grpc.status.INVALID_ARGUMENT, /annotation seccomp\.profiles\.spoke\.dev\/pod conflicts with a privileged container/));
    assert.deepEqual(upstreamRequests('CreateContainerRequest', 'priv.log'), []);
  });

  test('refused reference (unlisted registry path): the create fails naming the annotation, never unconfined', async () => {
    const refused = denyMkdir.replace('/profiles/', '/elsewhere/');
    const p = await pod({ [`${SC}refused`]: refused });
    await rig.reg.resetRequests();
    await assert.rejects(container(p, 'refused', { seccomp: { profile_type: 'Unconfined' } }), grpcError(grpc.status.PERMISSION_DENIED, /^PermissionDenied: .*annotation seccomp\.profiles\.spoke\.dev\/refused: /));
    await rig.reg.settle();
    assert.deepEqual(rig.reg.requests(), [], 'policy refused before any registry request');
    assert.deepEqual(upstreamRequests('CreateContainerRequest', 'refused.log'), []);
    // a malformed value fails the same way
    const q = await pod({ [`${SC}tagged`]: `${rig.reg.host}/profiles/ann-deny-mkdir:latest` });
    await assert.rejects(container(q, 'tagged'), grpcError(grpc.status.INVALID_ARGUMENT, /annotation seccomp\.profiles\.spoke\.dev\/tagged: invalid reference/));
    // a refused /pod annotation fails the sandbox itself
    await assert.rejects(pod({ [`${SC}pod`]: refused }), grpcError(grpc.status.PERMISSION_DENIED, /annotation seccomp\.profiles\.spoke\.dev\/pod: /));
  });

  test('AppArmor on this AppArmor-less kernel: annotation and OCI field fail FAILED_PRECONDITION', { skip: kernelHasAppArmor() ? 'this kernel has AppArmor' : false }, async () => {
    const p = await pod({ [`${AA}aa`]: appArmorRef });
    await assert.rejects(container(p, 'aa'), grpcError(grpc.status.FAILED_PRECONDITION, /annotation apparmor\.profiles\.spoke\.dev\/aa: .*AppArmor is not enabled on this node/));
    await assert.rejects(container(p, 'aa-field', { apparmor: { profile_type: 'OCI', oci_ref: appArmorRef } }), grpcError(grpc.status.FAILED_PRECONDITION, /AppArmor is not enabled on this node/));
    // a pod-level AppArmor OCI profile fails the sandbox
    const config = rig.podConfig({ name: 'ann-aa-pod' });
    ((config.linux as Msg).security_context as Msg).apparmor = { profile_type: 'OCI', oci_ref: appArmorRef };
    await assert.rejects(rig.cri.rt('RunPodSandbox', { config, runtime_handler: HANDLER }), grpcError(grpc.status.FAILED_PRECONDITION, /AppArmor is not enabled on this node/));
    assert.deepEqual(upstreamRequests('CreateContainerRequest', 'aa.log'), []);
    assert.ok(!rig.tap.streams().some((s) => s.request.includes(Buffer.from(appArmorRef)) && !s.request.includes(Buffer.from(AA))), 'no AppArmor OCI reference reached containerd');
  });

  test('PullSecurityProfileArtifact kind AppArmor pulls and stores a valid AppArmor artifact', async () => {
    const res = await rig.cri.img('PullSecurityProfileArtifact', { image: { image: appArmorRef }, profile_kind: 'AppArmor', sandbox_config: { metadata: { name: 'p', namespace: 'default' } } });
    assert.equal(res.resolved_ref, appArmorRef);
    const digest = appArmorRef.slice(appArmorRef.indexOf('@') + 1) as Digest;
    const store = new ProfileStore({ root: rig.files.storeDir });
    assert.equal((await store.getRecord(digest))?.kind, 'apparmor');
    const { bytes } = await store.readProfile(digest, { verify: true });
    validateAppArmorArtifactBytes(bytes);
    const list = await rig.cri.img('ListSecurityProfiles', { profile_kind: 'AppArmor' });
    assert.ok((list.profiles as Msg[]).some((x) => x.digest === digest && x.profile_kind === 'AppArmor'));
    // a seccomp artifact asked for as AppArmor is refused as invalid
    await assert.rejects(
      rig.cri.img('PullSecurityProfileArtifact', { image: { image: denyMkdir }, profile_kind: 'AppArmor' }),
      grpcError(grpc.status.INVALID_ARGUMENT, /^SecurityProfileInvalid: /),
    );
  });

  test('shim AppArmor ops: shipped baseline ∩ artifact, rendered, accepted by apparmor_parser -Q; load refused here', { skip: requireTool(findApparmorParser() ? undefined : 'apparmor_parser not installed') }, async () => {
    const ops = createAppArmorOps();
    const wide = Buffer.from(JSON.stringify({ ...JSON.parse(APPARMOR_PROFILE.toString()), capability: { allowedCapabilities: ['CHOWN', 'SYS_ADMIN'] } }));
    const r = await ops.prepare(wide);
    assert.match(r.name, /^spoke-[0-9a-f]{64}$/);
    assert.ok(r.text.includes(`profile ${r.name} `));
    assert.ok(r.constrained.some((c) => /SYS_ADMIN: dropped/.test(c)), 'the node baseline removed SYS_ADMIN');
    assert.ok(!/sys_admin/.test(r.text));
    assert.equal((await ops.prepare(wide)).name, r.name, 'deterministic name');
    if (!kernelHasAppArmor()) {
      assert.equal(await ops.enabled(), false);
      await assert.rejects(ops.load(r), (e: unknown) => e instanceof SpokeError && e.code === 'FailedPrecondition');
    }
  });

  test('recording.spoke.dev/name without --recording: ignored (logged), the request reaches containerd unchanged', async () => {
    const p = await pod({ 'recording.spoke.dev/name': 'rec-off' });
    const cid = await container(p, 'recoff', { seccomp: { profile_type: 'RuntimeDefault' } });
    const seen = upstreamRequests('CreateContainerRequest', 'recoff.log').map((r) => (((r.config as Msg).linux as Msg).security_context as Msg).seccomp as Msg);
    assert.deepEqual(seen.map((s) => s.profile_type), ['RuntimeDefault']);
    assert.match(await sh(cid, 'grep Seccomp: /proc/self/status'), /Seccomp:\s+2/, 'RuntimeDefault, as sent');
    assert.ok(rig.shim!.logs().some((l) => /recording annotation ignored: the shim runs without --recording/.test(String(l.msg)) && l.recording === 'rec-off'));
  });

  test('removing the pods releases every holder', async () => {
    for (const id of rig.pods) {
      await rig.cri.rt('StopPodSandbox', { pod_sandbox_id: id }).catch(() => undefined);
      await rig.cri.rt('RemovePodSandbox', { pod_sandbox_id: id }).catch(() => undefined);
    }
    const store = new ProfileStore({ root: rig.files.storeDir });
    const digest = denyMkdir.slice(denyMkdir.indexOf('@') + 1) as Digest;
    const until = Date.now() + 10_000;
    while ((await store.inUseHolders(digest)).length > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(await store.inUseHolders(digest), []);
  });
});
