// What a create may still be refused for after its profile was pulled, through the real
// `spoke shim` process, a real docker-registry and real containerd + runc: the node policy is
// decided again for the pod's namespace under the policy in force now (the shim's own holder
// reloads on file change), signatures count only under the current keys, a Localhost base must
// live under the seccomp root and its errors never quote a file, and an effective profile file
// already on disk is used only when it holds the bytes its name promises.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { startContainerd, Tap, type Containerd } from '../helpers/containerd.js';
import { CriClient, hostNetworkPod, type Msg } from '../helpers/cri-client.js';
import { startRegistry, type TestRegistry } from '../helpers/registry.js';
import { denySyscalls, plantLookalikeEffective, pushRawArtifact } from '../helpers/artifacts.js';
import { makeKey, type TestKey } from '../helpers/signing.js';
import { startShim, tearDownShimRig, type ShimProc } from '../helpers/shim.js';
import { defaultBaselinePath } from '../../src/config/node-config.js';
import { decodeSeccomp } from '../../src/profiles/seccomp/index.js';
import { signArtifact } from '../../src/publish/sign.js';
import { UndiciRegistryClient } from '../../src/registry/client.js';
import type { Digest } from '../../src/core/digest.js';

const grpcError = (code: grpc.status, prefix: string) => (e: grpc.ServiceError) => {
  assert.equal(e.code, code, e.details);
  assert.ok(e.details.startsWith(`${prefix}: `), e.details);
  return true;
};

describe('create-time trust through the shim', { timeout: 600_000 }, () => {
  let ctrd: Containerd;
  let reg: TestRegistry;
  let work: string;
  let tap: Tap;
  let shim: ShimProc;
  let cri: CriClient;
  let policyDir: string;
  let seccompRoot: string;
  let keyA: TestKey;
  let keyB: TestKey;
  let teamRef: string;
  let signed: { reference: string; digest: string; manifest: Buffer };
  let seq = 0;

  const pullReq = (ref: string, namespace: string) => ({ image: { image: ref }, profile_kind: 'Seccomp', sandbox_config: { metadata: { name: 'p', namespace } } });
  const oci = (ref: string, base?: Msg) => ({ profile_type: 'OCI', oci_ref: ref, ...(base ? { base_profile: base } : {}) });

  function writePolicy(extraRules: string[] = []): void {
    writeFileSync(
      join(policyDir, 'policy.yaml'),
      [
        'apiVersion: spoke.dev/v1alpha1',
        'kind: NodeProfilePolicy',
        'signers:',
        `  platform: { publicKey: ${join(policyDir, 'platform.pub')} }`,
        'rules:',
        `  - scope: ${reg.host}/team`,
        '    kinds: [seccomp]',
        '    unsigned: true',
        '    namespaces: [team-a]',
        `  - scope: ${reg.host}/signed`,
        '    kinds: [seccomp]',
        '    signedBy: [platform]',
        ...extraRules,
        `insecure: [${reg.host}]`,
        '',
      ].join('\n'),
    );
  }

  /** Runs `change`, then waits for the shim's own policy holder to log the reload it causes. */
  async function reloaded(change: () => void): Promise<void> {
    const next = shim.nextLog((l) => l.msg === 'node policy reloaded', 20_000);
    change();
    await next;
  }

  async function pod(namespace: string, podSeccomp?: Msg): Promise<{ id: string; config: Msg }> {
    const logDir = join(work, `logs-${++seq}`);
    mkdirSync(logDir, { recursive: true });
    const config = hostNetworkPod(`ct-${seq}`, logDir, { namespace, ...(podSeccomp ? { seccomp: podSeccomp } : {}) });
    const id = (await cri.rt('RunPodSandbox', { config })).pod_sandbox_id as string;
    return { id, config };
  }

  async function sign(repository: string, artifact: { digest: string; manifest: Buffer }, key: TestKey): Promise<void> {
    const client = new UndiciRegistryClient({ plainHttp: true });
    try {
      await signArtifact({ registry: client, repo: { registry: reg.host, repository }, digest: artifact.digest as Digest, manifestBytes: artifact.manifest, key: key.privatePem, format: 'bundle' });
    } finally {
      await client.close();
    }
  }

  const container = (p: { id: string; config: Msg }, name: string, seccomp: Msg) => cri.startBusybox(p, name, { seccomp });
  const reachedContainerd = (name: string) => tap.streams().some((s) => s.request.includes(Buffer.from(name)));
  const mkdirAllowed = async (cid: string) => /MKDIR_OK/.test(await cri.sh(cid, 'mkdir /tmp/m$$ && echo MKDIR_OK || echo MKDIR_DENIED'));
  const chmodAllowed = async (cid: string) => /CHMOD_OK/.test(await cri.sh(cid, 'touch /tmp/f$$ && chmod 600 /tmp/f$$ && echo CHMOD_OK || echo CHMOD_DENIED'));

  before(async () => {
    ctrd = await startContainerd();
    reg = await startRegistry();
    work = mkdtempSync('/tmp/skt-');
    policyDir = join(work, 'policy');
    mkdirSync(policyDir);
    seccompRoot = join(work, 'seccomp');
    mkdirSync(seccompRoot);
    keyA = makeKey('p256');
    keyB = makeKey('p256');
    writeFileSync(join(policyDir, 'platform.pub'), keyA.publicPem);
    writePolicy();
    teamRef = (await pushRawArtifact(reg.host, 'team/deny-chmod', { layers: [{ bytes: denySyscalls(['chmod', 'fchmod', 'fchmodat']) }] })).reference;
    signed = await pushRawArtifact(reg.host, 'signed/deny-chmod', { layers: [{ bytes: denySyscalls(['chmod', 'fchmod', 'fchmodat', 'fchmodat2']) }] });
    await sign('signed/deny-chmod', signed, keyA);
    tap = new Tap(join(work, 'tap.sock'), ctrd.socket);
    await tap.start();
    shim = await startShim([
      '--listen', join(work, 'shim.sock'),
      '--upstream', tap.listen,
      '--store', join(work, 'store'),
      '--seccomp-root', seccompRoot,
      '--baseline', defaultBaselinePath(),
      '--policy', join(policyDir, 'policy.yaml'),
    ]);
    cri = new CriClient(join(work, 'shim.sock'));
  });

  after(() => tearDownShimRig({ cri, ctrd, shim, tap, reg, work }));

  test('a digest pulled for namespace team-a serves no pod in team-b', async () => {
    await cri.img('PullSecurityProfileArtifact', pullReq(teamRef, 'team-a'));
    const b = await pod('team-b');
    await assert.rejects(container(b, 'ctr-in-team-b', oci(teamRef)), grpcError(grpc.status.PERMISSION_DENIED, 'PermissionDenied'));
    assert.ok(!reachedContainerd('ctr-in-team-b'), 'the refused create never reached containerd');
    // The pod-level profile at RunPodSandbox is decided the same way.
    await assert.rejects(pod('team-b', oci(teamRef)), grpcError(grpc.status.PERMISSION_DENIED, 'PermissionDenied'));
    const a = await pod('team-a');
    const cid = await container(a, 'ctr-in-team-a', oci(teamRef));
    assert.equal(await chmodAllowed(cid), false, 'the profile is enforced for the namespace the rule admits');
    // Named directly as a Localhost profile, the merge made for team-a serves no pod either.
    const merged = readdirSync(join(seccompRoot, 'spoke')).filter((f) => /^[0-9a-f]{64}\.json$/.test(f));
    assert.ok(merged.length > 0);
    for (const [i, file] of merged.entries()) {
      const name = `ctr-localhost-merge-${i}`;
      await assert.rejects(container(b, name, { profile_type: 'Localhost', localhost_ref: join(seccompRoot, 'spoke', file) }), grpcError(grpc.status.PERMISSION_DENIED, 'PermissionDenied'));
      assert.ok(!reachedContainerd(name), 'the refused create never reached containerd');
    }
  });

  test('Localhost bases: /etc/passwd and files outside or unreadable as profiles are refused without quoting them', async () => {
    const a = await pod('team-a');
    const copy = join(seccompRoot, 'passwd-copy.json');
    copyFileSync('/etc/passwd', copy);
    const firstLine = readFileSync('/etc/passwd', 'utf8').split('\n')[0]!;
    for (const [path, name] of [['/etc/passwd', 'base-etc-passwd'], [copy, 'base-passwd-copy']] as const) {
      await assert.rejects(container(a, name, oci(teamRef, { type: 'Localhost', localhost_ref: path })), (e: grpc.ServiceError) => {
        assert.equal(e.code, grpc.status.INVALID_ARGUMENT, e.details);
        assert.ok(!e.details.includes(firstLine.slice(0, 5)), `the error quotes the file: ${e.details}`);
        return true;
      });
      assert.ok(!reachedContainerd(name));
    }
  });

  test('a deny rule added after the pull refuses the next create', async () => {
    await reloaded(() => writePolicy([`  - scope: ${reg.host}/team/deny-chmod`, '    action: deny']));
    const a = await pod('team-a');
    await assert.rejects(container(a, 'ctr-after-deny', oci(teamRef)), grpcError(grpc.status.PERMISSION_DENIED, 'PermissionDenied'));
    assert.ok(!reachedContainerd('ctr-after-deny'));
  });

  test('a signer key replaced after the pull: refused until the artifact carries a signature by the current key', async () => {
    await cri.img('PullSecurityProfileArtifact', pullReq(signed.reference, 'default'));
    const p = await pod('default');
    await container(p, 'signed-before', oci(signed.reference));
    await reloaded(() => writeFileSync(join(policyDir, 'platform.pub'), keyB.publicPem));
    await assert.rejects(container(p, 'signed-after-revoke', oci(signed.reference)), grpcError(grpc.status.FAILED_PRECONDITION, 'SignatureValidationFailed'));
    assert.ok(!reachedContainerd('signed-after-revoke'));
    // Signed by the new key: the create verifies again (no new pull) and passes.
    await sign('signed/deny-chmod', signed, keyB);
    const cid = await container(p, 'signed-by-new-key', oci(signed.reference));
    assert.equal(await chmodAllowed(cid), false);
  });

  test('an effective profile file of the right size with other bytes is replaced before use', async () => {
    const layer = denySyscalls(['mkdir', 'mkdirat']);
    const ref = (await pushRawArtifact(reg.host, 'team/deny-mkdir', { layers: [{ bytes: layer }] })).reference;
    await reloaded(() => writePolicy());
    await cri.img('PullSecurityProfileArtifact', pullReq(ref, 'team-a'));
    // Same length, everything allowed: a size check alone would run the container under it.
    const { path, sha } = plantLookalikeEffective(seccompRoot, decodeSeccomp(readFileSync(defaultBaselinePath())), layer);
    const a = await pod('team-a');
    const cid = await container(a, 'effective-replaced', oci(ref));
    assert.equal(createHash('sha256').update(readFileSync(path)).digest('hex'), sha);
    assert.equal(await mkdirAllowed(cid), false, 'the container runs under the real effective profile');
  });
});
