// `npm run demo`: the whole story on one machine, with real components in a temp dir.
// A registry, containerd and the spoke shim start; a profile is published and signed; the
// "kubelet" (a CRI client) pulls it over PullSecurityProfileArtifact and starts a pod whose
// container tries mkdir, which the OCI profile denies; then an unlisted registry is refused.

import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ServiceError } from '@grpc/grpc-js';
import { startContainerd, type Containerd } from '../helpers/containerd.js';
import { CriClient, hostNetworkPod, type Msg } from '../helpers/cri-client.js';
import { BUSYBOX_IMAGE } from '../helpers/busybox-image.js';
import { freePort, startRegistry, type TestRegistry } from '../helpers/registry.js';
import { makeKey } from '../helpers/signing.js';
import { spoke } from '../helpers/cli.js';
import { startShim, stopShim, type ShimProc } from '../helpers/shim.js';

const say = (s: string) => process.stdout.write(`\n\x1b[1m▶ ${s}\x1b[0m\n`);
const show = (s: string) => process.stdout.write(`  ${s.trimEnd().replace(/\n/g, '\n  ')}\n`);

async function main(): Promise<void> {
  const work = mkdtempSync('/tmp/spoke-demo-');
  let reg: TestRegistry | undefined;
  let ctrd: Containerd | undefined;
  let shim: ShimProc | undefined;
  let cri: CriClient | undefined;
  try {
    say('Starting a registry (docker-registry on 127.0.0.1) and containerd (runc) in a temp dir');
    reg = await startRegistry();
    ctrd = await startContainerd();
    show(`registry ${reg.url}, containerd ${ctrd.socket}`);

    say('Publishing: a seccomp profile that denies mkdir, pushed and signed with a local key');
    const key = makeKey('p256');
    writeFileSync(join(work, 'platform.key'), key.privatePem);
    writeFileSync(join(work, 'platform.pub'), key.publicPem);
    const profile = { defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['mkdir', 'mkdirat'], action: 'SCMP_ACT_ERRNO' }] };
    writeFileSync(join(work, 'deny-mkdir.json'), JSON.stringify(profile, null, 2));
    show(`$ spoke push deny-mkdir.json ${reg.host}/security/profiles/deny-mkdir:v1 --kind seccomp --sign-key platform.key --plain-http`);
    const pushed = await spoke(['push', join(work, 'deny-mkdir.json'), `${reg.host}/security/profiles/deny-mkdir:v1`, '--kind', 'seccomp', '--sign-key', join(work, 'platform.key'), '--plain-http']);
    if (pushed.code !== 0) throw new Error(pushed.stderr);
    const ref = pushed.stdout.trim().split('\n').at(-1)!;
    show(ref);

    say('The node admin policy: deny by default; this registry path only, signed by "platform"');
    const policy = [
      'apiVersion: spoke.dev/v1alpha1',
      'kind: NodeProfilePolicy',
      'signers:',
      `  platform: { publicKey: ${join(work, 'platform.pub')} }`,
      'rules:',
      `  - scope: ${reg.host}/security/profiles`,
      '    kinds: [seccomp]',
      '    signedBy: [platform]',
      `insecure: [${reg.host}]`,
      '',
    ].join('\n');
    writeFileSync(join(work, 'policy.yaml'), policy);
    show(policy);

    say('Starting spoke shim between the "kubelet" and containerd');
    const sock = join(work, 'spoke.sock');
    shim = await startShim(['--listen', sock, '--upstream', ctrd.socket, '--store', join(work, 'store'), '--seccomp-root', join(work, 'seccomp'), '--policy', join(work, 'policy.yaml'), '--log-level', 'info']);
    cri = new CriClient(sock);
    const status = await cri.rt('Status', {});
    show(`ready in ${Math.round(shim.readyMs)} ms; Status.features.security_profile_oci_artifact = ${String((status.features as Msg).security_profile_oci_artifact)}`);

    say('kubelet → PullSecurityProfileArtifact (policy, manifest, blob, signature, validation, store)');
    const sandboxConfig = { metadata: { name: 'demo', namespace: 'default' } };
    let t = performance.now();
    const first = await cri.img('PullSecurityProfileArtifact', { image: { image: ref }, profile_kind: 'Seccomp', sandbox_config: sandboxConfig });
    show(`resolved_ref=${String(first.resolved_ref)} cached=${String(first.cached)} (${(performance.now() - t).toFixed(1)} ms)`);
    t = performance.now();
    const second = await cri.img('PullSecurityProfileArtifact', { image: { image: ref }, profile_kind: 'Seccomp', sandbox_config: sandboxConfig });
    show(`again: cached=${String(second.cached)}, no registry request (${(performance.now() - t).toFixed(2)} ms)`);

    say('A pod whose container has seccompProfile {type: OCI, oci: {reference}} tries mkdir');
    const logDir = join(work, 'logs');
    mkdirSync(logDir);
    const podConfig = hostNetworkPod('demo', logDir);
    const podId = (await cri.rt('RunPodSandbox', { config: podConfig })).pod_sandbox_id as string;
    const ctr = {
      metadata: { name: 'app' },
      image: { image: BUSYBOX_IMAGE },
      command: ['/bin/sleep', '3600'],
      log_path: 'app.log',
      linux: { security_context: { seccomp: { profile_type: 'OCI', oci_ref: ref } } },
    };
    const cid = (await cri.rt('CreateContainer', { pod_sandbox_id: podId, config: ctr, sandbox_config: podConfig })).container_id as string;
    await cri.rt('StartContainer', { container_id: cid });
    const run = async (script: string) => {
      const r = await cri!.rt('ExecSync', { container_id: cid, cmd: ['/bin/sh', '-c', script], timeout: 10 });
      return `${(r.stdout as Buffer).toString()}${(r.stderr as Buffer).toString()}`;
    };
    show(`$ mkdir /tmp/x   →   ${await run('mkdir /tmp/x 2>&1 && echo created || echo "exit $?"')}`);
    show(`$ touch /tmp/y   →   ${await run('touch /tmp/y && echo created')}`);
    show('containerd received a Localhost profile under <seccompRoot>/spoke/<sha256>.json: baseline ∩ artifact');
    await cri.rt('StopPodSandbox', { pod_sandbox_id: podId });
    await cri.rt('RemovePodSandbox', { pod_sandbox_id: podId });

    say('A pull from a registry the policy does not list is refused before any network request');
    const other = `127.0.0.1:${await freePort()}/anything/profile@sha256:${'0'.repeat(64)}`;
    try {
      await cri.img('PullSecurityProfileArtifact', { image: { image: other }, profile_kind: 'Seccomp', sandbox_config: sandboxConfig });
      throw new Error('the unlisted registry was not refused');
    } catch (e) {
      const err = e as ServiceError;
      if (err.code === undefined) throw e;
      show(`gRPC ${err.code} (PERMISSION_DENIED = 7): ${err.details}`);
    }
    say('Done: cleaning up');
  } finally {
    cri?.close();
    await ctrd?.removeAllPods().catch(() => undefined);
    await stopShim(shim);
    await ctrd?.stop();
    await reg?.stop();
    rmSync(work, { recursive: true, force: true });
  }
}

main().catch((e) => {
  process.stderr.write(`demo failed: ${(e as Error).stack ?? String(e)}\n`);
  process.exitCode = 1;
});
