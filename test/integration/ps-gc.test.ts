// `spoke ps` and the shim's automatic gc, through the real `spoke shim` process on real
// containerd + runc with profiles pulled over CRI from a real docker-registry: ps lists what each
// container runs and explains the merge; gc keeps what a running container uses (also after a
// restart with the in-use file gone: the rebuild comes first), removes what nothing uses, and
// over the byte cap removes the least recently used first, with last uses kept across restarts.
// The shim helper of this branch has no log waiter: runs are awaited by bounded polling of its
// log lines (gcRunsAfter below).

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startContainerd, type Containerd } from '../helpers/containerd.js';
import { CriClient, hostNetworkPod, type Msg } from '../helpers/cri-client.js';
import { freePort, startRegistry, type TestRegistry } from '../helpers/registry.js';
import { request as httpRequest } from 'node:http';
import { ALLOW_ALL_SECCOMP, denySyscalls, pushRawArtifact } from '../helpers/artifacts.js';
import { startShim, stopShim, tearDownShimRig, type ShimProc } from '../helpers/shim.js';
import { spoke } from '../helpers/cli.js';
import { unsignedPolicy } from '../helpers/node.js';
import { ProfileStore } from '../../src/store/store.js';
import type { Digest } from '../../src/core/digest.js';
import type { PsRow } from '../../src/cli/commands/ps.js';

describe('spoke ps and the shim gc on real containerd', { timeout: 600_000 }, () => {
  let ctrd: Containerd;
  let reg: TestRegistry;
  let work: string;
  let shim: ShimProc | undefined;
  let cri: CriClient;
  let policy: string;
  let seq = 0;
  const refs: Record<string, string> = {};

  const digestOf = (ref: string) => ref.slice(ref.indexOf('@') + 1) as Digest;
  const oci = (ref: string, base?: Msg) => ({ profile_type: 'OCI', oci_ref: ref, ...(base ? { base_profile: base } : {}) });
  const pull = (ref: string) => cri.img('PullSecurityProfileArtifact', { image: { image: ref }, profile_kind: 'Seccomp' });

  /** A node config (shim and CLI read the same file) in its own store and seccomp root. */
  function nodeConfig(name: string, gc = ''): { file: string; storeDir: string; seccompRoot: string } {
    const storeDir = join(work, `store-${name}`);
    const seccompRoot = join(work, `seccomp-${name}`);
    mkdirSync(join(seccompRoot, 'spoke'), { recursive: true });
    const file = join(work, `${name}.yaml`);
    writeFileSync(file, [`listen: ${join(work, 'shim.sock')}`, `upstream: ${ctrd.socket}`, `storeDir: ${storeDir}`, `seccompRoot: ${seccompRoot}`, `policy: ${policy}`, 'logLevel: info', gc, ''].join('\n'));
    return { file, storeDir, seccompRoot };
  }

  async function restart(configFile: string): Promise<void> {
    await stopShim(shim);
    shim = await startShim(['--config', configFile]);
  }

  async function pod(name: string): Promise<{ id: string; config: Msg }> {
    const logDir = join(work, `logs-${++seq}`);
    mkdirSync(logDir, { recursive: true });
    const config = hostNetworkPod(`${name}-${seq}`, logDir, { namespace: 'shop' });
    return { id: (await cri.rt('RunPodSandbox', { config })).pod_sandbox_id as string, config };
  }

  async function removeContainer(id: string): Promise<void> {
    await cri.rt('StopContainer', { container_id: id, timeout: 0 });
    await cri.rt('RemoveContainer', { container_id: id });
  }

  const gcRuns = () => shim!.logs().filter((l) => l.msg === 'gc run');

  /** Waits (bounded) until `n` more gc runs than `seen` were logged; returns the last one. */
  async function gcRunsAfter(seen: number, n = 1): Promise<Record<string, unknown>> {
    return (await shim!.waitForLogs((l) => l.msg === 'gc run', seen + n))[seen + n - 1]!;
  }

  function scrape(port: number): Promise<string> {
    return new Promise((resolve, reject) => {
      httpRequest({ host: '127.0.0.1', port, path: '/metrics' }, (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => resolve(body));
      })
        .on('error', reject)
        .end();
    });
  }

  async function ps(configFile: string, ...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    return spoke(['ps', '--config', configFile, ...args]);
  }

  before(async () => {
    ctrd = await startContainerd();
    reg = await startRegistry();
    work = mkdtempSync('/tmp/skp-');
    // Six-letter names: profiles of equal size (the byte cap test counts in profiles).
    for (const [name, body] of [
      ['permissive', ALLOW_ALL_SECCOMP],
      ['deny-mkdir', denySyscalls(['mkdir', 'mkdirat'])],
      ['deny-chown', denySyscalls(['chown', 'fchown', 'fchownat'])],
      ['chroot', denySyscalls(['chroot'])],
      ['uselib', denySyscalls(['uselib'])],
      ['reboot', denySyscalls(['reboot'])],
    ] as const) {
      refs[name] = (await pushRawArtifact(reg.host, `profiles/${name}`, { layers: [{ bytes: body }] })).reference;
    }
    policy = join(work, 'policy.yaml');
    writeFileSync(policy, unsignedPolicy([`${reg.host}/profiles`]));
    cri = new CriClient(join(work, 'shim.sock'));
  });

  after(() => tearDownShimRig({ cri, ctrd, shim, reg, work }));

  test('ps lists containers run under spoke profiles with reference, digest, effective file and merge summary; --explain attributes; a removed container disappears', async () => {
    const node = nodeConfig('ps');
    const base = join(node.seccompRoot, 'base-deny-chmod.json');
    writeFileSync(base, denySyscalls(['chmod', 'fchmod', 'fchmodat']));
    await restart(node.file);
    await pull(refs.permissive!);
    await pull(refs['deny-mkdir']!);
    const p = await pod('web');
    const app = await cri.startBusybox(p, 'app', { seccomp: oci(refs.permissive!) });
    const side = await cri.startBusybox(p, 'side', { seccomp: oci(refs['deny-mkdir']!, { type: 'Localhost', localhost_ref: base }) });
    await cri.startBusybox(p, 'plain', { seccomp: { profile_type: 'Unconfined' } });

    const r = await ps(node.file, '--json');
    assert.equal(r.code, 0, r.stderr);
    const rows = JSON.parse(r.stdout) as PsRow[];
    assert.deepEqual(rows.map((x) => x.container), ['app', 'side'], 'the Unconfined container is not listed');
    const [a, s] = rows as [PsRow, PsRow];
    assert.equal(a.containerId, app);
    assert.equal(a.podNamespace, 'shop');
    assert.equal(a.podName, (p.config.metadata as Msg).name);
    assert.equal(a.kind, 'seccomp');
    assert.equal(a.reference, refs.permissive);
    assert.equal(a.digest, digestOf(refs.permissive!));
    assert.equal(a.base, null);
    const effectiveBytes = readFileSync(a.effective.path!);
    assert.equal(a.effective.sha256, createHash('sha256').update(effectiveBytes).digest('hex'));
    assert.equal(a.effective.path, join(node.seccompRoot, 'spoke', `${a.effective.sha256}.json`));
    assert.ok(a.constrained!.baseline > 0 && a.constrained!.base === 0, JSON.stringify(a.constrained));
    assert.equal(s.containerId, side);
    assert.equal(s.reference, refs['deny-mkdir']);
    assert.deepEqual(s.base, { type: 'Localhost', path: base, sha256: createHash('sha256').update(readFileSync(base)).digest('hex') });
    assert.ok(s.constrained!.base > 0 && s.constrained!.baseline > 0, JSON.stringify(s.constrained));

    const text = await ps(node.file);
    assert.equal(text.code, 0, text.stderr);
    assert.ok(text.stdout.includes(refs['deny-mkdir']!) && text.stdout.includes(`Localhost ${base}`), text.stdout);

    const ex = await ps(node.file, '--explain', side.slice(0, 12), '--json');
    assert.equal(ex.code, 0, ex.stderr);
    const report = JSON.parse(ex.stdout) as { containerId: string; constraints: { kind: string; syscall?: string; by?: string; artifact?: string; effective?: string }[] };
    assert.equal(report.containerId, side);
    const chmod = report.constraints.find((c) => c.syscall === 'chmod');
    assert.deepEqual([chmod?.by, chmod?.artifact], ['base', 'SCMP_ACT_ALLOW']);
    // The baseline is an allow list: what it does not list (unshare among them) falls to its default.
    assert.ok(report.constraints.some((c) => c.kind === 'defaultAction' && c.artifact === 'SCMP_ACT_ALLOW' && c.by === 'baseline'), ex.stdout);
    assert.ok(!report.constraints.some((c) => c.syscall === 'mkdir'), 'the artifact itself denies mkdir: not a constraint');
    const exText = await ps(node.file, '--explain', side);
    assert.match(exText.stdout, /^ {2}chmod: artifact SCMP_ACT_ALLOW, effective SCMP_ACT_ERRNO.* \(by the pod base profile\)$/m);

    await removeContainer(app);
    const afterRemoval = JSON.parse((await ps(node.file, '--json')).stdout) as PsRow[];
    assert.deepEqual(afterRemoval.map((x) => x.containerId), [side]);
    const gone = await ps(node.file, '--explain', app);
    assert.equal(gone.code, 1);
    assert.match(gone.stderr, /^NotFound: /);
    await cri.rt('StopPodSandbox', { pod_sandbox_id: p.id });
    await cri.rt('RemovePodSandbox', { pod_sandbox_id: p.id });
    assert.deepEqual(JSON.parse((await ps(node.file, '--json')).stdout), []);
  });

  test('gc (interval 1s, minAge 0s): a running container keeps its profile and effective file, also after a restart that lost the in-use file; unused ones go', async () => {
    const node = nodeConfig('gc');
    await restart(node.file);
    const store = new ProfileStore({ root: node.storeDir });
    // Both deny calls the baseline allows: two different effective files.
    await pull(refs['deny-mkdir']!);
    await pull(refs['deny-chown']!);
    const p = await pod('gc');
    const kept = await cri.startBusybox(p, 'kept', { seccomp: oci(refs['deny-mkdir']!) });
    const gone = await cri.startBusybox(p, 'gone', { seccomp: oci(refs['deny-chown']!) });
    const rows = JSON.parse((await ps(node.file, '--json')).stdout) as PsRow[];
    const effectiveOf = (id: string) => rows.find((x) => x.containerId === id)!.effective.path!;
    const [keptFile, goneFile] = [effectiveOf(kept), effectiveOf(gone)];
    await removeContainer(gone);
    const stray = join(node.seccompRoot, 'spoke', 'notes.json');
    writeFileSync(stray, '{}');

    // Without the rebuild first, an empty in-use set would let gc remove the running container's profile.
    await stopShim(shim);
    for (const f of ['in-use.json', 'in-use.log']) rmSync(join(node.storeDir, 'state', f), { force: true });
    const metricsPort = await freePort();
    const gcConfig = nodeConfig('gc', `metrics: 127.0.0.1:${metricsPort}\ngc:\n  interval: 1s\n  minAge: 0s`).file;
    shim = await startShim(['--config', gcConfig]);
    const run = await gcRunsAfter(0);
    process.stdout.write(`# gc run holding the create gate: ${String(run.gateMs)} ms (removing 1 profile, 1 effective file)\n`);
    assert.equal(run.complete, true);
    assert.deepEqual(run.removed, [digestOf(refs['deny-chown']!)]);
    assert.deepEqual(run.effectiveRemoved, [goneFile.slice(-69, -5)]);
    assert.ok(await store.has(digestOf(refs['deny-mkdir']!)));
    assert.ok(!(await store.has(digestOf(refs['deny-chown']!))));
    assert.notEqual(keptFile, goneFile);
    assert.ok(existsSync(keptFile) && !existsSync(goneFile) && existsSync(stray));
    assert.match(await cri.sh(kept, 'echo alive'), /alive/);
    const metrics = await scrape(metricsPort);
    assert.match(metrics, /^spoke_gc_removals_total\{what="profile"\} 1$/m);
    assert.match(metrics, /^spoke_gc_removals_total\{what="effective"\} 1$/m);
    assert.match(metrics, /^spoke_gc_runs_total\{result="ok"\} [1-9]/m);
    const left = await store.list();
    assert.match(metrics, new RegExp(`^spoke_store_bytes ${left.reduce((n, e) => n + e.size, 0)}$`, 'm'));

    await restart(gcConfig);
    await gcRunsAfter(0, 2);
    assert.ok(await store.has(digestOf(refs['deny-mkdir']!)), 'kept across a restart');
    assert.ok(existsSync(keptFile));

    const seen = gcRuns().length;
    await removeContainer(kept);
    const until = Date.now() + 30_000;
    let i = seen;
    while (!((await gcRunsAfter(i++)).removed as string[]).includes(digestOf(refs['deny-mkdir']!))) assert.ok(Date.now() < until, 'gc removed the profile once unused');
    assert.ok(!existsSync(keptFile), 'and its effective file');
    assert.ok(existsSync(stray), 'never a file not named <sha256>.json');
    await cri.rt('StopPodSandbox', { pod_sandbox_id: p.id });
    await cri.rt('RemovePodSandbox', { pod_sandbox_id: p.id });
  });

  test('gc over maxStoreBytes removes the least recently used unused profile, with last uses kept across a restart', async () => {
    const size = denySyscalls(['chroot']).length;
    const node = nodeConfig('lru', `gc:\n  interval: 1s\n  minAge: 1h\n  maxStoreBytes: ${2 * size}`);
    await restart(node.file);
    const store = new ProfileStore({ root: node.storeDir });
    // chroot is pulled first but used (by a running container) after uselib is pulled.
    await pull(refs.chroot!);
    const p = await pod('lru');
    const user = await cri.startBusybox(p, 'user', { seccomp: oci(refs.chroot!) });
    await pull(refs.uselib!);
    await gcRunsAfter(gcRuns().length, 2);
    await removeContainer(user);
    await gcRunsAfter(gcRuns().length);
    assert.deepEqual((await store.list()).map((e) => e.digest).sort(), [digestOf(refs.chroot!), digestOf(refs.uselib!)].sort());

    await restart(node.file);
    await pull(refs.reboot!);
    const until = Date.now() + 30_000;
    let run: Record<string, unknown>;
    for (let i = 0; ((run = await gcRunsAfter(i)).removed as string[]).length === 0; i++) assert.ok(Date.now() < until, 'gc went under the cap');
    assert.deepEqual(run.removed, [digestOf(refs.uselib!)]);
    assert.equal(run.bytes, 2 * size);
    assert.deepEqual((await store.list()).map((e) => e.digest).sort(), [digestOf(refs.chroot!), digestOf(refs.reboot!)].sort());
    await cri.rt('StopPodSandbox', { pod_sandbox_id: p.id });
    await cri.rt('RemovePodSandbox', { pod_sandbox_id: p.id });
  });
});
