// test-group: kernel-log (reads or changes the kernel log and its printk rate limit: runs alone, test/run.sh)
// Audit mode end to end (docs/audit-mode.md): a CRI client (playing the kubelet) → the real
// `spoke shim` → real containerd → runc, an artifact admitted by a `mode: audit` rule. The
// artifact's denial (mkdir) is logged by the kernel (type=1326, SCMP_ACT_LOG) and not enforced;
// the baseline's (unshare) still is; `spoke denials` names the container for a call made by a
// forked child that is still alive and counts the calls of exited processes as unattributed;
// flipping the rule to enforce denies mkdir in the next container. `spoke denials --for` (eBPF)
// names the container of a forked child that has exited, which `--since` cannot.

import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startContainerd, Tap, type Containerd } from '../helpers/containerd.js';
import { CriClient, hostNetworkPod, type Msg } from '../helpers/cri-client.js';
import { startRegistry, type TestRegistry } from '../helpers/registry.js';
import { denySyscalls, pushRawArtifact } from '../helpers/artifacts.js';
import { spoke, SPOKE_BIN } from '../helpers/cli.js';
import { BUSYBOX_IMAGE } from '../helpers/busybox-image.js';
import { waitFor } from '../helpers/wait.js';
import { bpfSkip } from '../helpers/recording.js';
import { startShim, tearDownShimRig, type ShimProc } from '../helpers/shim.js';
import { PrintkRateLimit } from '../../src/recorder/source.js';
import type { DenialReport } from '../../src/cli/commands/denials.js';

describe('audit mode under real containerd + runc', { timeout: 300_000 }, () => {
  let ctrd: Containerd;
  let reg: TestRegistry;
  let work: string;
  let tap: Tap;
  let shim: ShimProc | undefined;
  let cri: CriClient;
  let policy: string;
  let nodeConfig: string;
  let denyMkdir: string;
  const printk = new PrintkRateLimit(join(mkdtempSync('/tmp/ska-printk-'), 'saved.json'));
  let seq = 0;

  const oci = (ref: string) => ({ profile_type: 'OCI', oci_ref: ref });
  const writePolicy = (mode: string) =>
    writeFileSync(policy, ['apiVersion: spoke.dev/v1alpha1', 'kind: NodeProfilePolicy', 'rules:', `  - scope: ${reg.host}/profiles`, '    kinds: [seccomp]', '    unsigned: true', `    mode: ${mode}`, `insecure: [${reg.host}]`, ''].join('\n'));

  async function pod(): Promise<{ id: string; config: Msg }> {
    const logDir = join(work, `logs-${++seq}`);
    mkdirSync(logDir, { recursive: true });
    const config = hostNetworkPod(`audit-${seq}`, logDir);
    const id = (await cri.rt('RunPodSandbox', { config })).pod_sandbox_id as string;
    return { id, config };
  }

  async function removePod(id: string): Promise<void> {
    await cri.rt('StopPodSandbox', { pod_sandbox_id: id });
    await cri.rt('RemovePodSandbox', { pod_sandbox_id: id });
  }

  async function denials(config = nodeConfig): Promise<DenialReport> {
    const r = await spoke(['denials', '--config', config, '--since', '10m', '--json']);
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as DenialReport;
  }

  before(async () => {
    // Without auditd the kernel prints audit records through printk, 10 per 5 s by default: lift
    // the limit as the recorder does, so no record of this test is dropped.
    printk.lift();
    ctrd = await startContainerd();
    reg = await startRegistry();
    work = mkdtempSync('/tmp/ska-');
    denyMkdir = (await pushRawArtifact(reg.host, 'profiles/deny-mkdir', { layers: [{ bytes: denySyscalls(['mkdir', 'mkdirat', 'umask']) }] })).reference;
    mkdirSync(join(work, 'seccomp'));
    policy = join(work, 'policy.yaml');
    writePolicy('audit');
    tap = new Tap(join(work, 'tap.sock'), ctrd.socket);
    await tap.start();
    const storeDir = join(work, 'store');
    nodeConfig = join(work, 'config.yaml');
    writeFileSync(nodeConfig, [`upstream: ${ctrd.socket}`, `storeDir: ${storeDir}`, `policy: ${policy}`, `seccompRoot: ${join(work, 'seccomp')}`, ''].join('\n'));
    shim = await startShim(['--listen', join(work, 'shim.sock'), '--upstream', tap.listen, '--store', storeDir, '--seccomp-root', join(work, 'seccomp'), '--policy', policy, '--log-level', 'info']);
    cri = new CriClient(join(work, 'shim.sock'));
    await cri.img('PullSecurityProfile', { image: { image: denyMkdir }, profile_kind: 'Seccomp', sandbox_config: { metadata: { name: 'p', namespace: 'default' } } });
  });

  after(async () => {
    printk.restore();
    await tearDownShimRig({ cri, ctrd, shim, tap, reg, work });
  });

  test('the artifact denial is logged, not enforced; the baseline denial holds; spoke denials names the container; enforce denies the next container', async () => {
    const p = await pod();
    try {
      const cid = await cri.startBusybox(p, 'audited', { seccomp: oci(denyMkdir) });
      const applied = shim!.logs().find((l) => l.msg === 'OCI seccomp profile applied' && l.reference === denyMkdir);
      assert.equal(applied?.mode, 'audit');
      // mkdir: busybox sh forks a child for it (sh -c 'mkdir /tmp/x'), which exits before anything
      // reads the record: counted, unattributed.
      assert.match(await cri.sh(cid, 'mkdir /tmp/short && echo MKDIR_OK || echo MKDIR_DENIED'), /MKDIR_OK/);
      assert.match(await cri.sh(cid, 'unshare -U true && echo UNSHARE_OK || echo UNSHARE_DENIED'), /UNSHARE_DENIED/);
      // umask: a builtin, so the forked subshell makes the call itself, and `exec sleep` keeps
      // that process (its pid) alive: attributed to the container.
      assert.match(await cri.sh(cid, '(umask 077; exec sleep 300) >/dev/null 2>&1 & echo FORKED'), /FORKED/);

      let report: DenialReport | undefined;
      await waitFor(
        async () => {
          report = await denials();
          return report.audit.some((e) => e.containerId === cid) && report.unattributed.some((u) => u.syscall === 'mkdir');
        },
        { timeoutMs: 20_000, intervalMs: 200, what: 'a type=1326 SCMP_ACT_LOG record of the audited container' },
      ).catch((e: Error) => {
        throw new Error(`${e.message}; last report: ${JSON.stringify({ ...report, unattributed: report?.unattributed.slice(0, 5) })}`);
      });
      const mine = report!.audit.filter((e) => e.containerId === cid);
      // (busybox's umask builtin makes the call three times: read, restore, set.)
      assert.deepEqual(
        mine.map((e) => ({ syscall: e.syscall, podNamespace: e.podNamespace, podName: e.podName, container: e.container, reference: e.reference })),
        [{ syscall: 'umask', podNamespace: 'default', podName: `audit-${seq}`, container: 'audited', reference: denyMkdir }],
        'the live forked child’s call is attributed; the exited child’s mkdir is not',
      );
      assert.ok(mine[0]!.count >= 1);
      assert.ok((report!.unattributed.find((u) => u.syscall === 'mkdir')?.count ?? 0) >= 1, 'the exited child’s mkdir is counted as unattributed');

      const reloaded = shim!.nextLog((l) => l.msg === 'node policy reloaded', 20_000);
      writePolicy('enforce');
      await reloaded;
      const enforced = await cri.startBusybox(p, 'enforced', { seccomp: oci(denyMkdir) });
      assert.match(await cri.sh(enforced, 'mkdir /tmp/x && echo MKDIR_OK || echo MKDIR_DENIED'), /MKDIR_DENIED/);
      assert.match(await cri.sh(cid, 'mkdir /tmp/again && echo MKDIR_OK || echo MKDIR_DENIED'), /MKDIR_OK/, 'a running container keeps the profile it was created with');
    } finally {
      await removePod(p.id);
    }
  });
  test('spoke denials --for names the container of a forked child that exited; --since cannot', { skip: bpfSkip() }, async () => {
    // The watcher's runtime calls go through their own tap: the test waits on the poll that has
    // read the container's namespaces instead of guessing how long that takes.
    // (The test before this one leaves the rule at enforce.)
    const reloaded = shim!.nextLog((l) => l.msg === 'node policy reloaded', 20_000);
    writePolicy('audit');
    await reloaded;
    const watchTap = new Tap(join(work, 'watch-tap.sock'), ctrd.socket);
    await watchTap.start();
    const watchConfig = join(work, 'watch-config.yaml');
    writeFileSync(watchConfig, [`upstream: ${watchTap.listen}`, `storeDir: ${join(work, 'store')}`, `policy: ${policy}`, `seccompRoot: ${join(work, 'seccomp')}`, ''].join('\n'));
    const textfile = join(work, 'denials.prom');
    const watcher = spawn(process.execPath, [SPOKE_BIN, 'denials', '--config', watchConfig, '--for', '5m', '--json', '--textfile', textfile], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    watcher.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    const exited = once(watcher, 'close');
    const p = await pod();
    try {
      await new Promise<void>((resolve, reject) => {
        watcher.stderr.on('data', (d: Buffer) => {
          stderr += d.toString();
          if (/spoke denials: watching/.test(stderr)) resolve();
        });
        watcher.once('close', () => reject(new Error(`spoke denials exited before watching: ${stderr}`)));
      });
      // busybox sh forks a child for mkdir, which makes the call and exits; sh then becomes sleep.
      const config = { metadata: { name: 'forks' }, image: { image: BUSYBOX_IMAGE }, command: ['/bin/sh', '-c', 'mkdir /tmp/x; exec sleep 300'], log_path: 'forks.log', linux: { security_context: { seccomp: oci(denyMkdir) } } };
      const cid = (await cri.rt('CreateContainer', { pod_sandbox_id: p.id, config, sandbox_config: p.config })).container_id as string;
      await cri.rt('StartContainer', { container_id: cid });
      await waitFor(
        () => {
          const streams = watchTap.streams();
          const status = streams.findIndex((s) => s.request.includes(Buffer.from(cid)));
          return status >= 0 && streams.length > status + 1;
        },
        { timeoutMs: 20_000, what: 'a poll of spoke denials after it read the container’s namespaces' },
      );
      await cri.rt('StopContainer', { container_id: cid, timeout: 0 });
      watcher.kill('SIGINT');
      const [code] = (await exited) as [number | null];
      assert.equal(code, 0, stderr);
      const report = JSON.parse(stdout) as DenialReport;
      assert.equal(report.source.kind, 'bpf');
      const mine = report.audit.filter((e) => e.containerId === cid);
      assert.deepEqual(
        mine.map((e) => ({ syscall: e.syscall, podNamespace: e.podNamespace, podName: e.podName, container: e.container, reference: e.reference })),
        [{ syscall: 'mkdir', podNamespace: 'default', podName: `audit-${seq}`, container: 'forks', reference: denyMkdir }],
        `${JSON.stringify(report)}\n${stderr}`,
      );
      assert.ok(mine[0]!.count >= 1);
      const digest = denyMkdir.slice(denyMkdir.indexOf('@') + 1);
      assert.match(readFileSync(textfile, 'utf8'), new RegExp(`^spoke_audit_would_deny_calls\\{digest="${digest}",syscall="mkdir"\\} [1-9]\\d*$`, 'm'));

      // The kernel log still holds the record, but its process is gone: --since cannot name it.
      const since = await denials();
      assert.ok(!since.audit.some((e) => e.containerId === cid), 'the exited child’s mkdir is not attributed by --since');
      assert.ok(since.unattributed.some((u) => u.syscall === 'mkdir' && (u.reasons['exited before it was seen'] ?? 0) >= 1));
    } finally {
      if (watcher.exitCode === null && watcher.signalCode === null) watcher.kill('SIGKILL');
      await removePod(p.id);
      await watchTap.stop();
    }
  });
});
