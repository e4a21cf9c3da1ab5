// Base profiles and privileged containers end to end: a CRI client (playing the kubelet) → the
// real `spoke shim` process → real containerd 1.6 → runc. The RuntimeDefault base is the
// runtime's real default, read live; the checks compare against containerd's RuntimeDefault as
// read from a container's runtime spec, with the seccomp reference evaluator.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { CriClient, type Msg } from '../helpers/cri-client.js';
import { ALLOW_ALL_SECCOMP, denySyscalls, pushRawArtifact } from '../helpers/artifacts.js';
import { PAUSE_IMAGE } from '../helpers/busybox-image.js';
import { spoke } from '../helpers/cli.js';
import { startShim, stopShim, type ShimProc } from '../helpers/shim.js';
import { ProfileStore } from '../../src/store/store.js';
import type { Digest } from '../../src/core/digest.js';
import { actionRank, decodeSeccomp, evaluate, X86_SYSCALL_NAMES, type SeccompProfile } from '../../src/profiles/seccomp/index.js';
import { startShimRig, type PodOptions, type ShimRig } from '../helpers/shim-rig.js';

const HANDLER = 'runc';
const execFileP = promisify(execFile);
/** Argument vectors that reach the conditional rules of containerd's default (clone namespace flags, personality values). */
const PROBE_ARGS: bigint[][] = [[0n], [0x10000000n], [0x7e020000n], [0x0040000n], [0xffffffffn]];

describe('base profiles and privileged containers through the shim', { timeout: 600_000 }, () => {
  let rig: ShimRig;
  let permissive: string;
  let denyMkdir: string;
  let privRef: string;

  const pullReq = (ref: string) => ({ image: { image: ref }, profile_kind: 'Seccomp', sandbox_config: { metadata: { name: 'p', namespace: 'default' } } });
  const oci = (ref: string, base?: Msg) => ({ profile_type: 'OCI', oci_ref: ref, ...(base ? { base_profile: base } : {}) });
  const RD_BASE = { type: 'RuntimeDefault' };

  const pod = (o: PodOptions = {}) => rig.pod({ ...o, handler: HANDLER });
  const removePod = (id: string) => rig.removePod(id);

  /** linux.seccomp of a container's runtime spec, as containerd reports it. */
  async function specSeccomp(client: CriClient, cid: string): Promise<Msg> {
    const st = await client.rt('ContainerStatus', { container_id: cid, verbose: true });
    const info = JSON.parse((st.info as Record<string, string>).info!) as { runtimeSpec: { linux: { seccomp: Msg } } };
    return info.runtimeSpec.linux.seccomp;
  }
  const asProfile = (m: Msg): SeccompProfile => decodeSeccomp(Buffer.from(JSON.stringify(m)));

  const unshareAllowed = async (cid: string) => /UNSHARE_OK/.test(await rig.cri.sh(cid, 'unshare -U true && echo UNSHARE_OK || echo UNSHARE_DENIED'));

  const waitForLog = (s: ShimProc, pred: (l: Record<string, unknown>) => boolean, count = 1) => s.waitForLogs(pred, count);
  const rdRead = (l: Record<string, unknown>) => l.msg === 'runtime default profile read from the runtime';

  /** containerd's RuntimeDefault, read from the runtime spec of a container created with it (directly, not through the shim). */
  /** The RuntimeDefault containerd writes into a container's spec: one that drops every capability, as the probe does, or one that keeps the default set. */
  async function liveRuntimeDefault(capabilities: 'none' | 'default' = 'none'): Promise<Msg> {
    const direct = new CriClient(rig.ctrd.socket);
    try {
      const config = rig.podConfig();
      const id = (await direct.rt('RunPodSandbox', { config, runtime_handler: HANDLER })).pod_sandbox_id as string;
      try {
        const securityContext = { seccomp: { profile_type: 'RuntimeDefault' }, ...(capabilities === 'none' ? { capabilities: { drop_capabilities: ['ALL'] } } : {}) };
        const cid = (await direct.rt('CreateContainer', { pod_sandbox_id: id, config: { metadata: { name: 'rd' }, image: { image: PAUSE_IMAGE }, linux: { security_context: securityContext } }, sandbox_config: config }))
          .container_id as string;
        return await specSeccomp(direct, cid);
      } finally {
        await direct.rt('StopPodSandbox', { pod_sandbox_id: id });
        await direct.rt('RemovePodSandbox', { pod_sandbox_id: id });
      }
    } finally {
      direct.close();
    }
  }

  before(async () => {
    rig = await startShimRig('skb-', {
      extraArgs: (files) => {
        // A baseline that permits everything: whatever is denied below comes from the RuntimeDefault base.
        const loose = join(files.work, 'loose-baseline.json');
        writeFileSync(loose, ALLOW_ALL_SECCOMP);
        return ['--baseline', loose, '--annotations', '--log-level', 'info'];
      },
    });
    permissive = (await pushRawArtifact(rig.reg.host, 'profiles/permissive', { layers: [{ bytes: ALLOW_ALL_SECCOMP }] })).reference;
    denyMkdir = (await pushRawArtifact(rig.reg.host, 'profiles/deny-mkdir', { layers: [{ bytes: denySyscalls(['mkdir', 'mkdirat']) }] })).reference;
    privRef = (await pushRawArtifact(rig.reg.host, 'profiles/priv', { layers: [{ bytes: denySyscalls(['chown']) }] })).reference;
    for (const ref of [permissive, denyMkdir, privRef]) await rig.cri.img('PullSecurityProfileArtifact', pullReq(ref));
  });

  after(() => rig.tearDown());

  test('spoke runtime-default prints the RuntimeDefault containerd puts in a container runtime spec', async () => {
    const help = await spoke(['runtime-default', '--help']);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /^usage: spoke runtime-default /);
    const r = await spoke(['runtime-default', '--upstream', rig.ctrd.socket, '--json']);
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout) as { sandboxImage: string; sha256: string; profile: Msg };
    assert.equal(out.sandboxImage, PAUSE_IMAGE);
    assert.match(out.sha256, /^[0-9a-f]{64}$/);
    const live = await liveRuntimeDefault();
    assert.deepEqual(out.profile, live);
    // The strictest default: containerd opens chroot for a container that keeps CAP_SYS_CHROOT
    // (the default set), and the probe keeps no capability, so its base never allows more.
    const chroot = (p: Msg) => evaluate(asProfile(p), { syscall: 'chroot', args: [] }).action;
    assert.equal(chroot(live), 'SCMP_ACT_ERRNO');
    assert.equal(chroot(await liveRuntimeDefault('default')), 'SCMP_ACT_ALLOW');
    // Without --json: the profile alone, a file the config key runtimeDefault can pin.
    const plain = await spoke(['runtime-default', '--upstream', rig.ctrd.socket]);
    assert.equal(plain.code, 0, plain.stderr);
    assert.deepEqual(decodeSeccomp(Buffer.from(plain.stdout)), asProfile(live));
    // The probe is gone.
    const direct = new CriClient(rig.ctrd.socket);
    try {
      const pods = (await direct.rt('ListPodSandbox', { filter: { label_selector: { 'spoke.dev/runtime-default-probe': 'true' } } })).items as Msg[];
      assert.deepEqual(pods, []);
    } finally {
      direct.close();
    }
  });

  test('at start the shim reads the runtime default from containerd and warns that the baseline is looser', async () => {
    const [read] = await waitForLog(rig.shim!, rdRead);
    assert.equal(read!.sandboxImage, PAUSE_IMAGE);
    process.stdout.write(`# runtime default read from containerd in ${String(read!.ms)} ms (probe sandbox + container, created, read, removed)\n`);
    const warn = (await waitForLog(rig.shim!, (l) => l.level === 'warn' && /baseline is looser than the runtime default/.test(String(l.msg))))[0]!;
    // An ALLOW-everything baseline differs from the runtime default first of all in its default action.
    assert.ok((warn.rules as string[]).includes('default action'), JSON.stringify(warn.rules));
    // A reloaded baseline is compared again.
    rig.shim!.child.kill('SIGHUP');
    await waitForLog(rig.shim!, (l) => l.level === 'warn' && /baseline is looser than the runtime default/.test(String(l.msg)), 2);
  });

  test('privileged container with an OCI profile: INVALID_ARGUMENT naming it, nothing in use, containerd never sees the create', async () => {
    const p = await pod({ privileged: true });
    try {
      const digest = privRef.slice(privRef.indexOf('@') + 1) as Digest;
      const before = rig.tap.streams().length;
      await assert.rejects(rig.cri.startBusybox(p, 'priv-ctr', { privileged: true, seccomp: oci(privRef) }), (e: grpc.ServiceError) => e.code === grpc.status.INVALID_ARGUMENT && e.details.includes(`container default/${p.name}/priv-ctr`));
      assert.ok(!rig.tap.streams().slice(before).some((s) => s.request.includes(Buffer.from('priv-ctr'))), 'no request carrying the container reached containerd');
      assert.deepEqual(await new ProfileStore({ root: rig.files.storeDir }).inUseHolders(digest), []);
      const entry = ((await rig.cri.img('ListSecurityProfiles', {})).profiles as Msg[]).find((x) => x.digest === digest);
      assert.equal(entry?.in_use, false);
      // The same privileged container without the OCI profile is created: the refusal is about OCI.
      await rig.cri.startBusybox(p, 'priv-ok', { privileged: true, seccomp: { profile_type: 'Unconfined' } });
    } finally {
      await removePod(p.id);
    }
  });

  test('privileged sandbox with a pod-level OCI profile: INVALID_ARGUMENT, containerd never sees RunPodSandbox', async () => {
    const before = rig.tap.streams().length;
    await assert.rejects(pod({ name: 'priv-sandbox', privileged: true, seccomp: oci(privRef) }), (e: grpc.ServiceError) => e.code === grpc.status.INVALID_ARGUMENT && e.details.includes('sandbox default/priv-sandbox'));
    assert.ok(!rig.tap.streams().slice(before).some((s) => s.request.includes(Buffer.from('priv-sandbox'))));
  });

  test('loose baseline ∩ RuntimeDefault ∩ permissive artifact denies every call containerd RuntimeDefault denies; runc enforces it', async () => {
    const rd = asProfile(await liveRuntimeDefault());
    const p = await pod();
    try {
      const merged = await rig.cri.startBusybox(p, 'merged', { seccomp: oci(permissive, RD_BASE) });
      const plain = await rig.cri.startBusybox(p, 'plain', { seccomp: oci(permissive) });
      const effective = asProfile(await specSeccomp(rig.cri, merged));
      const names = new Set([...X86_SYSCALL_NAMES, ...(rd.syscalls ?? []).flatMap((s) => s.names)]);
      let denied = 0;
      for (const syscall of names) {
        for (const args of PROBE_ARGS) {
          const want = evaluate(rd, { syscall, args });
          if (want.action === 'SCMP_ACT_ALLOW' || want.action === 'SCMP_ACT_LOG') continue;
          denied++;
          const got = evaluate(effective, { syscall, args });
          assert.ok(actionRank(got.action) <= actionRank(want.action), `${syscall}(${args.join(',')}): RuntimeDefault ${want.action}, effective ${got.action}`);
        }
      }
      assert.ok(denied > 100, `${denied} denied cases compared`);
      // unshare(CLONE_NEWUSER): containerd's default denies it without CAP_SYS_ADMIN.
      assert.equal(await unshareAllowed(plain), true, 'the loose baseline alone lets the permissive artifact unshare');
      assert.equal(await unshareAllowed(merged), false, 'with the RuntimeDefault base, unshare is denied');
      assert.match(await rig.cri.sh(merged, 'echo still-works'), /still-works/);
    } finally {
      await removePod(p.id);
    }
  });

  test('annotation mode: an annotation replacing RuntimeDefault keeps it as the base; replacing Unconfined does not', async () => {
    const p = await pod({ annotations: { 'seccomp.profiles.spoke.dev/pod': permissive } });
    try {
      const rd = await rig.cri.startBusybox(p, 'ann-rd', { seccomp: { profile_type: 'RuntimeDefault' } });
      const unconfined = await rig.cri.startBusybox(p, 'ann-unconfined', { seccomp: { profile_type: 'Unconfined' } });
      assert.equal(await unshareAllowed(rd), false);
      assert.equal(await unshareAllowed(unconfined), true);
    } finally {
      await removePod(p.id);
    }
  });

  test('an empty base_profile (BaseTypeUnspecified) means no base', async () => {
    const p = await pod();
    try {
      const cid = await rig.cri.startBusybox(p, 'unspecified', { seccomp: oci(denyMkdir, {}) });
      assert.match(await rig.cri.sh(cid, 'mkdir /tmp/x$$ && echo MKDIR_OK || echo MKDIR_DENIED'), /MKDIR_DENIED/);
      assert.equal(await unshareAllowed(cid), true, 'no RuntimeDefault base was added');
      // What `spoke ps` reports for the merge says so too.
      const applied = rig.shim!.logs().find((l) => l.msg === 'OCI seccomp profile applied' && String(l.who).endsWith('/unspecified'));
      const sha = String(applied?.effective).split('/').pop()!.replace(/\.json$/, '');
      const inputs = await new ProfileStore({ root: rig.files.storeDir }).effectiveInputs(sha);
      assert.ok(inputs.length > 0, `no inputs recorded for ${sha}`);
      assert.deepEqual(inputs.map((i) => i.base), inputs.map(() => undefined));
    } finally {
      await removePod(p.id);
    }
  });

  test('runtime default unknown (sandbox image gone): a RuntimeDefault-based profile fails UNAVAILABLE, never runs without its base; it recovers', async () => {
    const p = await pod();
    try {
      const failures = rig.shim!.logs().filter((l) => /runtime default profile unavailable/.test(String(l.msg))).length;
      await execFileP('ctr', ['-a', rig.ctrd.socket, '-n', 'k8s.io', 'images', 'rm', PAUSE_IMAGE]);
      rig.tap.cutAll(); // the shim reconnects and reads the runtime default again: the probe cannot be created
      await waitForLog(rig.shim!, (l) => /runtime default profile unavailable/.test(String(l.msg)), failures + 1);
      const before = rig.tap.streams().length;
      await assert.rejects(rig.cri.startBusybox(p, 'rd-unknown', { seccomp: oci(permissive, RD_BASE) }), (e: grpc.ServiceError) => e.code === grpc.status.UNAVAILABLE && e.details.startsWith(`Unavailable: container default/${p.name}/rd-unknown: cannot honour the RuntimeDefault base`));
      assert.ok(!rig.tap.streams().slice(before).some((s) => s.request.includes(Buffer.from('rd-unknown'))), 'containerd never saw the create');
      // Without a RuntimeDefault base nothing is missing.
      await rig.cri.startBusybox(p, 'no-base', { seccomp: oci(denyMkdir) });
      const reads = rig.shim!.logs().filter(rdRead).length;
      await rig.ctrd.importImages();
      rig.tap.cutAll();
      await waitForLog(rig.shim!, rdRead, reads + 1);
      const cid = await rig.cri.startBusybox(p, 'rd-known', { seccomp: oci(permissive, RD_BASE) });
      assert.equal(await unshareAllowed(cid), false);
    } finally {
      await removePod(p.id);
    }
  });

  test('containerd restarted: the shim reads the runtime default again; RuntimeDefault-based profiles keep working', async () => {
    const reads = rig.shim!.logs().filter(rdRead).length;
    await rig.ctrd.restart();
    await waitForLog(rig.shim!, rdRead, reads + 1);
    const p = await pod();
    try {
      const cid = await rig.cri.startBusybox(p, 'after-restart', { seccomp: oci(permissive, RD_BASE) });
      assert.equal(await unshareAllowed(cid), false);
    } finally {
      await removePod(p.id);
    }
  });

  test('runtimeDefault: FILE pins the profile; the runtime is not read', async () => {
    await stopShim(rig.shim);
    rig.shim = undefined;
    const pinned = join(rig.files.work, 'pinned-runtime-default.json');
    writeFileSync(pinned, denySyscalls(['mkdir', 'mkdirat']));
    const config = join(rig.files.work, 'config.yaml');
    writeFileSync(config, `runtimeDefault: ${pinned}\n`);
    rig.shim = await startShim([...rig.shimArgs, '--config', config]);
    const p = await pod();
    try {
      const cid = await rig.cri.startBusybox(p, 'pinned', { seccomp: oci(permissive, RD_BASE) });
      assert.match(await rig.cri.sh(cid, 'mkdir /tmp/x$$ && echo MKDIR_OK || echo MKDIR_DENIED'), /MKDIR_DENIED/);
      assert.equal(await unshareAllowed(cid), true, 'the pinned profile, not containerd’s, is the base');
      assert.ok(rig.shim.logs().some((l) => l.msg === 'runtime default profile pinned' && l.file === pinned));
      assert.ok(!rig.shim.logs().some(rdRead));
    } finally {
      await removePod(p.id);
    }
  });
});
