// CRI cases: the real `spoke shim` in front of real containerd, driven by a CRI client (the
// kubelet's role), each figure next to the same call made straight to containerd.

import { spawn } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startContainerd } from '../helpers/containerd.js';
import { CriClient, encode, hostNetworkPod, type Msg } from '../helpers/cri-client.js';
import { BUSYBOX_IMAGE } from '../helpers/busybox-image.js';
import { startShim, stopShim, type ShimProc } from '../helpers/shim.js';
import { fmt, measure, type Stats } from './stats.js';
import type { BenchContext } from './bench.js';

const ms = (s: Stats) => `p50 ${fmt(s.p50)}, p99 ${fmt(s.p99)}`;
const RT = '/runtime.v1.RuntimeService/';

function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m?.[1] ?? 0) / 1024;
}

/** The peer for footprint: an empty @grpc/grpc-js server on a unix socket, in its own process. */
async function emptyGrpcServerRss(sock: string): Promise<number> {
  const grpcPath = import.meta.resolve('@grpc/grpc-js');
  const script = `const g = await import(${JSON.stringify(grpcPath)}); const s = new g.Server(); s.bindAsync('unix://${sock}', g.ServerCredentials.createInsecure(), () => console.log('up'));`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((r) => child.stdout.once('data', () => r()));
  await new Promise((r) => setTimeout(r, 1000));
  const rss = rssMiB(child.pid!);
  child.kill('SIGTERM');
  return rss;
}

export async function shimCases(ctx: BenchContext, opts: { n: number; quick: boolean }): Promise<void> {
  const n = opts.n;
  const ctrd = await startContainerd();
  const work = join(ctx.dir, 'shim');
  mkdirSync(work, { recursive: true });
  const policy = join(work, 'policy.yaml');
  writeFileSync(policy, ctx.signedPolicy());
  const sock = join(work, 's.sock');
  const args = ['--listen', sock, '--upstream', ctrd.socket, '--store', join(work, 'store'), '--seccomp-root', join(work, 'seccomp'), '--policy', policy, '--log-level', 'warn'];
  let shim: ShimProc | undefined;
  const direct = new CriClient(ctrd.socket);
  try {
    // Start to ready: spawn → the "shim ready" log line, several times.
    const starts: number[] = [];
    for (let i = 0; i < (opts.quick ? 2 : 5); i++) {
      const s = await startShim([...args.slice(0, -1), 'info']);
      starts.push(s.readyMs);
      await stopShim(s);
    }
    starts.sort((a, b) => a - b);
    const startP50 = starts[Math.floor(starts.length / 2)]!;
    ctx.rows.push({ case: 'shim start to ready (spawn → ready log)', spoke: `p50 ${fmt(startP50)}`, peer: '—', target: '≤ 300 ms', met: startP50 <= 300 });

    shim = await startShim([...args.slice(0, -1), 'info']);
    const viaShim = new CriClient(sock);
    await viaShim.rt('Version', { version: 'v1' });
    await new Promise((r) => setTimeout(r, 1000));
    const idleRss = rssMiB(shim.child.pid!);
    const peerRss = await emptyGrpcServerRss(join(work, 'g.sock'));

    // Forwarded calls vs direct, interleaved so both see the same machine state.
    const versionReq = encode('VersionRequest', { version: 'v1' });
    const vDirect = await measure(n * 5, () => direct.unaryRaw(`${RT}Version`, versionReq));
    const vShim = await measure(n * 5, () => viaShim.unaryRaw(`${RT}Version`, versionReq));
    ctx.rows.push({
      case: 'forwarded CRI Version',
      spoke: `${ms(vShim)} (added p50 ${fmt(vShim.p50 - vDirect.p50)})`,
      peer: `straight to containerd: ${ms(vDirect)}`,
      target: '≤ 0.25 ms added at p50',
      met: vShim.p50 - vDirect.p50 <= 0.25,
      data: { vShim, vDirect },
    });

    // 100 containers for ListContainers.
    const logDir = join(work, 'logs');
    mkdirSync(logDir, { recursive: true });
    const podConfig = hostNetworkPod('bench', logDir);
    const podId = (await direct.rt('RunPodSandbox', { config: podConfig })).pod_sandbox_id as string;
    const containers = opts.quick ? 20 : 100;
    for (let i = 0; i < containers; i++) {
      await direct.rt('CreateContainer', { pod_sandbox_id: podId, config: { metadata: { name: `c${i}` }, image: { image: BUSYBOX_IMAGE }, command: ['/bin/sleep', '3600'], log_path: `c${i}.log` }, sandbox_config: podConfig });
    }
    const listReq = encode('ListContainersRequest', {});
    const lDirect = await measure(n, () => direct.unaryRaw(`${RT}ListContainers`, listReq));
    const lShim = await measure(n, () => viaShim.unaryRaw(`${RT}ListContainers`, listReq));
    ctx.rows.push({
      case: `forwarded CRI ListContainers (${containers} containers)`,
      spoke: `${ms(lShim)} (added p50 ${fmt(lShim.p50 - lDirect.p50)})`,
      peer: `straight to containerd: ${ms(lDirect)}`,
      target: '≤ 0.25 ms added at p50',
      met: lShim.p50 - lDirect.p50 <= 0.25,
    });

    // Cold and warm pulls over CRI (signed 4 KiB profiles, keyed signature verified).
    const artifacts = await ctx.pushSigned(n + 3, 'bench/cri');
    const pullReq = (ref: string) => ({ image: { image: ref }, profile_kind: 'Seccomp', sandbox_config: { metadata: { name: 'p', namespace: 'default' } } });
    await viaShim.img('PullSecurityProfileArtifact', pullReq(artifacts[n + 2]!.reference)); // loads the lazy pipeline once
    const cold = await measure(n, (i) => viaShim.img('PullSecurityProfileArtifact', pullReq(artifacts[i < 0 ? n - i - 1 : i]!.reference)), 2);
    ctx.rows.push({ case: 'cold pull over CRI (policy, manifest, blob, keyed signature, validate, store), 4 KiB', spoke: ms(cold), peer: 'floor: see the in-process row above', target: '≤ 3 ms p50, ≤ 5 ms p99', met: cold.p50 <= 3 && cold.p99 <= 5, data: { cold } });
    const warm = await measure(n * 5, () => viaShim.img('PullSecurityProfileArtifact', pullReq(artifacts[0]!.reference)));
    ctx.rows.push({
      case: 'warm (cached) pull over CRI',
      spoke: ms(warm),
      peer: `Version straight to containerd: ${ms(vDirect)}`,
      target: '≤ 0.5 ms p50; p99 ≤ max(1 ms, peer p99)',
      met: warm.p50 <= 0.5 && warm.p99 <= Math.max(1, vDirect.p99),
      data: { warm },
    });

    // CreateContainer with the OCI profile vs the same effective profile as Localhost.
    const ref = artifacts[0]!.reference;
    let seq = 0;
    const create = async (seccomp: Msg) => {
      const name = `cc${seq++}`;
      return (await viaShim.rt('CreateContainer', { pod_sandbox_id: podId, config: { metadata: { name }, image: { image: BUSYBOX_IMAGE }, command: ['/bin/sleep', '1'], log_path: `${name}.log`, linux: { security_context: { seccomp } } }, sandbox_config: podConfig })).container_id as string;
    };
    await create({ profile_type: 'OCI', oci_ref: ref });
    // The effective profile the shim wrote (content-addressed) is the Localhost peer's profile.
    const effectiveDir = join(work, 'seccomp', 'spoke');
    const localhostRef = join(effectiveDir, readdirSync(effectiveDir).find((f) => /^[0-9a-f]{64}\.json$/.test(f))!);
    const cLocal = await measure(opts.quick ? 10 : 40, () => create({ profile_type: 'Localhost', localhost_ref: localhostRef }), 2);
    const cOci = await measure(opts.quick ? 10 : 40, () => create({ profile_type: 'OCI', oci_ref: ref }), 2);
    ctx.rows.push({
      case: 'CreateContainer with an OCI profile',
      spoke: `${ms(cOci)} (${(cOci.p50 / cLocal.p50).toFixed(2)}× at p50)`,
      peer: `same profile as Localhost: ${ms(cLocal)}`,
      target: '≤ 1.1×',
      met: cOci.p50 <= 1.1 * cLocal.p50,
    });
    await direct.rt('StopPodSandbox', { pod_sandbox_id: podId });
    await direct.rt('RemovePodSandbox', { pod_sandbox_id: podId });

    // RSS after 10,000 pulls (warm, across the pulled digests).
    for (let i = 0; i < (opts.quick ? 1000 : 10_000); i++) await viaShim.img('PullSecurityProfileArtifact', pullReq(artifacts[i % n]!.reference));
    await new Promise((r) => setTimeout(r, 1000));
    const loadedRss = rssMiB(shim.child.pid!);
    ctx.rows.push({
      case: 'shim RSS idle, and after 10,000 pulls',
      spoke: `idle ${idleRss.toFixed(1)} MiB; after ${(loadedRss).toFixed(1)} MiB`,
      peer: `empty @grpc/grpc-js server: ${peerRss.toFixed(1)} MiB`,
      target: '≤ 64 MiB idle (72 at most), ≤ 96 MiB after load',
      met: idleRss <= 72 && loadedRss <= 96,
    });
    viaShim.close();
  } finally {
    direct.close();
    await ctrd.removeAllPods().catch(() => undefined);
    await stopShim(shim);
    await ctrd.stop();
  }
}
