// Recording through the real `spoke shim --recording` on real containerd + runc: only a pod
// marking the controller signed with the cluster's recording key (recording.spoke.dev/proof)
// gets the logging profile (the node baseline, with SCMP_ACT_LOG for what it lets through). A
// made-up marking — a name alone, a proof under another key, a proof copied from another pod, an
// expired one — leaves the container under the profile it asked for. What runc was given is read back from containerd (verbose
// ContainerStatus: the OCI runtime spec), and the kernel's view from /proc/self/status.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { startContainerd, type Containerd } from '../helpers/containerd.js';
import { CriClient, hostNetworkPod, type Msg } from '../helpers/cri-client.js';
import { startShim, tearDownShimRig, type ShimProc } from '../helpers/shim.js';
import { spoke } from '../helpers/cli.js';
import { RECORDING_PROOF_ANNOTATION, signRecordingProof } from '../../src/core/recording-proof.js';

const KEY = Buffer.alloc(32, 0x5a);

interface SeccompSpec {
  defaultAction?: string;
  syscalls?: { names: string[]; action: string }[];
}
/** Whether runc was given the logging profile: calls logged (RuntimeDefault logs none). */
const logs = (spec: SeccompSpec | undefined) => spec?.syscalls?.some((s) => s.action === 'SCMP_ACT_LOG') === true;
const NAME = 'recording.spoke.dev/name';
const CONTAINERS = 'recording.spoke.dev/containers';

describe('spoke shim --recording: only a proven marking yields the logging profile', { timeout: 600_000 }, () => {
  let ctrd: Containerd;
  let work: string;
  let shim: ShimProc | undefined;
  let cri: CriClient;
  let keyFile: string;
  let policy: string;
  let logging: string;
  let seq = 0;

  const inAnHour = () => Math.floor(Date.now() / 1000) + 3600;
  const proof = (o: { pod: string; namespace?: string; key?: Buffer; expiresAt?: number; containers?: string[] }) =>
    signRecordingProof(o.key ?? KEY, { namespace: o.namespace ?? 'team', pod: { name: o.pod }, recording: 'rec', containers: o.containers }, o.expiresAt ?? inAnHour());

  /** A pod `name` in namespace team with `annotations`, and one busybox container `app` asking for RuntimeDefault. */
  async function run(name: string, annotations: Record<string, string>, seccomp: Msg = { profile_type: 'RuntimeDefault' }): Promise<{ cid: string; spec: SeccompSpec | undefined; status: string }> {
    const logDir = join(work, `logs-${++seq}`);
    mkdirSync(logDir, { recursive: true });
    const config = { ...hostNetworkPod(name, logDir, { namespace: 'team' }), annotations };
    const id = (await cri.rt('RunPodSandbox', { config, runtime_handler: 'runc' })).pod_sandbox_id as string;
    const cid = await cri.startBusybox({ id, config }, 'app', { seccomp });
    const st = await cri.rt('ContainerStatus', { container_id: cid, verbose: true });
    const info = JSON.parse((st.info as Record<string, string>).info ?? '{}') as { runtimeSpec?: { linux?: { seccomp?: SeccompSpec } } };
    return { cid, spec: info.runtimeSpec?.linux?.seccomp, status: await cri.sh(cid, 'grep Seccomp: /proc/self/status') };
  }

  const unproven = (failure: string, pod: string) =>
    shim!.logs().some((l) => l.msg === 'recording annotation not proven by the controller; the container keeps its profile' && l.failure === failure && String(l.who).includes(`team/${pod}`) && l.reason === 'RECORDING_UNPROVEN');

  before(async () => {
    ctrd = await startContainerd();
    work = mkdtempSync('/tmp/skr-');
    keyFile = join(work, 'recording.key');
    writeFileSync(keyFile, KEY, { mode: 0o600 });
    policy = join(work, 'policy.yaml');
    writeFileSync(policy, ['apiVersion: spoke.dev/v1alpha1', 'kind: NodeProfilePolicy', 'rules:', '  - scope: registry.example.com/profiles', '    kinds: [seccomp]', '    unsigned: true', ''].join('\n'));
    // Where earlier versions installed an allow-all one: under the kubelet's seccomp root, and
    // in the store.
    mkdirSync(join(work, 'seccomp', 'spoke'), { recursive: true });
    writeFileSync(join(work, 'seccomp', 'spoke', 'spoke-record-log.json'), '{"defaultAction":"SCMP_ACT_LOG"}');
    mkdirSync(join(work, 'store', 'recording'), { recursive: true });
    writeFileSync(join(work, 'store', 'recording', 'spoke-record-log.json'), '{"defaultAction":"SCMP_ACT_LOG"}');
    shim = await startShim(['--listen', join(work, 'shim.sock'), '--upstream', ctrd.socket, '--store', join(work, 'store'), '--seccomp-root', join(work, 'seccomp'), '--policy', policy, '--recording', '--recording-key', keyFile]);
    cri = new CriClient(join(work, 'shim.sock'));
    logging = String(shim.logs().find((l) => l.msg === 'recording enabled: logging profile installed')?.profile);
  });

  after(() => tearDownShimRig({ cri, ctrd, shim, work }));

  test('--recording without a recording key refuses to start; a short key too', async () => {
    const base = ['shim', '--listen', join(work, 'nokey.sock'), '--upstream', ctrd.socket, '--store', join(work, 'store-nokey'), '--seccomp-root', join(work, 'seccomp-nokey'), '--policy', policy, '--recording'];
    const none = await spoke(base);
    assert.notEqual(none.code, 0);
    assert.match(none.stderr, /recording needs the cluster recording key/);
    const short = join(work, 'short.key');
    writeFileSync(short, 'secret\n');
    const r = await spoke([...base, '--recording-key', short]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /recording key .*short\.key: 7 bytes; it must hold 32 to 4096 bytes/);
  });

  test('the logging profile lives outside the kubelet\'s seccomp root: no pod can name it as its Localhost profile', () => {
    // A pod's localhostProfile is a path under the kubelet's seccomp root; the shim's edit of a
    // proven marking is the only way to the logging profile. An earlier version's copy there is gone.
    assert.equal(existsSync(join(work, 'seccomp', 'spoke', 'spoke-record-log.json')), false);
    assert.equal(existsSync(join(work, 'store', 'recording', 'spoke-record-log.json')), false);
    assert.match(logging, /\/store\/recording\/log-[0-9a-f]{64}\.json$/);
    assert.equal(existsSync(logging), true);
    assert.ok(relative(join(work, 'seccomp'), logging).startsWith('..'));
  });

  test('a properly signed marking: the logging profile, the kernel filters, mkdir logged and allowed, what the baseline denies denied', async () => {
    assert.equal(shim!.logs().find((l) => l.msg === 'shim ready')?.recording, true);
    const r = await run('signed', { [NAME]: 'rec', [RECORDING_PROOF_ANNOTATION]: proof({ pod: 'signed' }) });
    assert.ok(logs(r.spec), 'runc was given the logging profile');
    const file = JSON.parse(readFileSync(logging, 'utf8')) as SeccompSpec;
    assert.equal(r.spec?.defaultAction, file.defaultAction);
    assert.ok(file.syscalls?.some((s) => s.action === 'SCMP_ACT_LOG' && s.names.includes('mkdir')));
    assert.match(r.status, /Seccomp:\s+2/);
    assert.match(await cri.sh(r.cid, 'mkdir /tmp/m$$ && echo MKDIR_OK || echo MKDIR_DENIED'), /MKDIR_OK/);
    // unshare(2) is outside the node baseline (policy/seccomp-baseline.json): a recorded container
    // is never looser than the baseline every OCI profile is merged with. Without a filter this
    // kernel lets a container make a user namespace (the control), so the denial is the filter's.
    const unshare = (cid: string) => cri.sh(cid, 'unshare -U true && echo UNSHARE_OK || echo UNSHARE_DENIED');
    const control = await run('unconfined', {}, { profile_type: 'Unconfined' });
    assert.match(await unshare(control.cid), /UNSHARE_OK/);
    assert.match(await unshare(r.cid), /UNSHARE_DENIED/);
    assert.ok(shim!.logs().some((l) => /runs under the logging profile/.test(String(l.msg)) && l.recording === 'rec'));
  });

  test('made-up markings never yield the logging profile: the container keeps RuntimeDefault (logged)', async () => {
    const cases: [string, Record<string, string>, string][] = [
      ['name-only', { [NAME]: 'anything' }, 'missing'],
      ['junk-proof', { [NAME]: 'rec', [RECORDING_PROOF_ANNOTATION]: 'trust-me' }, 'malformed'],
      ['other-key', { [NAME]: 'rec', [RECORDING_PROOF_ANNOTATION]: proof({ pod: 'other-key', key: Buffer.alloc(32, 1) }) }, 'mismatch'],
      ['copied', { [NAME]: 'rec', [RECORDING_PROOF_ANNOTATION]: proof({ pod: 'signed' }) }, 'mismatch'],
      ['other-namespace', { [NAME]: 'rec', [RECORDING_PROOF_ANNOTATION]: proof({ pod: 'other-namespace', namespace: 'team-b' }) }, 'mismatch'],
      ['widened', { [NAME]: 'rec', [RECORDING_PROOF_ANNOTATION]: proof({ pod: 'widened', containers: ['sidecar'] }) }, 'mismatch'],
      ['expired', { [NAME]: 'rec', [RECORDING_PROOF_ANNOTATION]: proof({ pod: 'expired', expiresAt: Math.floor(Date.now() / 1000) - 1 }) }, 'expired'],
    ];
    for (const [pod, annotations, failure] of cases) {
      const r = await run(pod, annotations);
      assert.equal(r.spec?.defaultAction, 'SCMP_ACT_ERRNO', `${pod}: containerd's RuntimeDefault`);
      assert.ok(!logs(r.spec), `${pod}: not the logging profile`);
      assert.match(r.status, /Seccomp:\s+2/, pod);
      assert.ok(unproven(failure, pod), `${pod}: logged as ${failure}`);
    }
  });

  test('a signed marking that lists containers records only those', async () => {
    const r = await run('listed', { [NAME]: 'rec', [CONTAINERS]: 'app', [RECORDING_PROOF_ANNOTATION]: proof({ pod: 'listed', containers: ['app'] }) });
    assert.ok(logs(r.spec));
    const other = await run('unlisted', { [NAME]: 'rec', [CONTAINERS]: 'sidecar', [RECORDING_PROOF_ANNOTATION]: proof({ pod: 'unlisted', containers: ['sidecar'] }) });
    assert.ok(!logs(other.spec));
  });
});
