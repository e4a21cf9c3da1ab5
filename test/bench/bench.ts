// `npm run bench [-- --json]`: spoke measured against its peers and the loopback floor, each in
// the same run, on real components (docker-registry, skopeo, containerd when the shim cases run).
// Writes the README table (between the bench markers) and, with --json, test/bench/results.json.

import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, openSync, fsyncSync, closeSync } from 'node:fs';
import { cpus, release, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Pool } from 'undici';
import { UndiciRegistryClient } from '../../src/registry/client.js';
import { signArtifact } from '../../src/publish/sign.js';
import { pushProfile } from '../../src/publish/push.js';
import { decodeSeccomp, intersect, validateArtifact, validateBaseline } from '../../src/profiles/seccomp/index.js';
import { defaultBaselinePath } from '../../src/config/node-config.js';
import type { Digest } from '../../src/core/digest.js';
import { startRegistry, type TestRegistry } from '../helpers/registry.js';
import { testNode, type TestNode } from '../helpers/node.js';
import { makeKey } from '../helpers/signing.js';
import { SPOKE_BIN } from '../helpers/cli.js';
import { fmt, measure, summarize, type Stats } from './stats.js';
import { largeArtifact, smallProfile } from './profiles.js';
import { shimCases } from './shim-cases.js';

export interface Row {
  case: string;
  spoke: string;
  peer: string;
  target: string;
  met: boolean | null;
  data?: Record<string, unknown>;
}

export interface BenchContext {
  reg: TestRegistry;
  dir: string;
  keyPem: string;
  pubFile: string;
  rows: Row[];
  /** Pushes `n` distinct signed 4 KiB profiles; returns their references. */
  pushSigned(n: number, repo: string): Promise<{ reference: string; digest: Digest; layerDigest: Digest }[]>;
  signedPolicy(): string;
}

const JSON_OUT = process.argv.includes('--json');
const QUICK = process.argv.includes('--quick');
const N = QUICK ? 20 : 200;

const ms = (s: Stats) => `p50 ${fmt(s.p50)}, p99 ${fmt(s.p99)}`;

async function main(): Promise<void> {
  const started = new Date();
  const reg = await startRegistry();
  const dir = mkdtempSync(join(tmpdir(), 'spoke-bench-'));
  const key = makeKey('p256');
  const pubFile = join(dir, 'platform.pub');
  writeFileSync(pubFile, key.publicPem);
  const rows: Row[] = [];
  let salt = 0;
  const ctx: BenchContext = {
    reg,
    dir,
    keyPem: key.privatePem,
    pubFile,
    rows,
    async pushSigned(n, repo) {
      const client = new UndiciRegistryClient({ plainHttp: true });
      const out = [];
      try {
        for (let i = 0; i < n; i++) {
          const r = await pushProfile(client, { registry: reg.host, repository: repo }, undefined, smallProfile(++salt), 'seccomp');
          await signArtifact({ registry: client, repo: { registry: reg.host, repository: repo }, digest: r.digest, manifestBytes: r.packed.manifest, key: key.privatePem, format: 'bundle' });
          out.push({ reference: r.reference, digest: r.digest, layerDigest: r.packed.layerDigest });
        }
      } finally {
        await client.close();
      }
      return out;
    },
    signedPolicy: () =>
      [
        'apiVersion: spoke.dev/v1alpha1',
        'kind: NodeProfilePolicy',
        `signers:\n  platform: { publicKey: ${pubFile} }`,
        'rules:',
        `  - scope: ${reg.host}/bench\n    kinds: [seccomp]\n    signedBy: [platform]`,
        `  - scope: ${reg.host}/open\n    kinds: [seccomp]\n    unsigned: true`,
        `insecure: [${reg.host}]`,
      ].join('\n'),
  };
  try {
    await mergeCases(ctx);
    await pullCases(ctx);
    await cliCases(ctx);
    await shimCases(ctx, { n: N, quick: QUICK });
  } finally {
    await reg.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  report(rows, started);
}

async function mergeCases(ctx: BenchContext): Promise<void> {
  const baseline = decodeSeccomp(readFileSync(defaultBaselinePath()));
  validateBaseline(baseline);
  const bytes = largeArtifact();
  const artifact = decodeSeccomp(bytes);
  const validateStats = await measure(QUICK ? 5 : 30, () => validateArtifact(decodeSeccomp(bytes)), 2);
  const mergeStats = await measure(QUICK ? 5 : 30, () => intersect(baseline, undefined, artifact), 2);
  const kib = (bytes.byteLength / 1024).toFixed(0);
  ctx.rows.push({ case: `decode + validateArtifact of a ${kib} KiB artifact`, spoke: ms(validateStats), peer: '—', target: '≤ 10 ms', met: validateStats.p50 <= 10, data: { validateStats } });
  ctx.rows.push({ case: `merge of a ${kib} KiB artifact with the baseline`, spoke: ms(mergeStats), peer: '—', target: '≤ 20 ms', met: mergeStats.p50 <= 20, data: { mergeStats } });
}

/** The floor: the same two GETs with bare undici on a warm pool, plus one fsync'd file write. */
async function floorPull(pool: Pool, repo: string, digest: string, layerDigest: string, dir: string, i: number): Promise<void> {
  const m = await pool.request({ path: `/v2/${repo}/manifests/${digest}`, method: 'GET', headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } });
  await m.body.arrayBuffer();
  const b = await pool.request({ path: `/v2/${repo}/blobs/${layerDigest}`, method: 'GET' });
  const data = Buffer.from(await b.body.arrayBuffer());
  const f = join(dir, `floor-${i}`);
  const fd = openSync(f, 'w');
  writeFileSync(fd, data);
  fsyncSync(fd);
  closeSync(fd);
}

async function pullCases(ctx: BenchContext): Promise<void> {
  const n = N;
  const artifacts = await ctx.pushSigned(n + 3, 'bench/cold');
  const node: TestNode = testNode(ctx.signedPolicy());
  const pool = new Pool(ctx.reg.url, { connections: 4 });
  try {
    const floor = await measure(n, (i) => {
      const a = artifacts[i < 0 ? 0 : i]!;
      return floorPull(pool, 'bench/cold', a.digest, a.layerDigest, node.dir, i);
    });
    const cold = await measure(n, (i) => node.pipeline.pull({ reference: artifacts[i < 0 ? n - i - 1 : i]!.reference, kind: 'seccomp' }));
    ctx.rows.push({
      case: 'cold pull in-process (policy, manifest, blob, keyed signature, validate, store) of a 4 KiB profile',
      spoke: ms(cold),
      peer: `floor (2 GETs bare undici + fsync): ${ms(floor)}`,
      target: '≤ 2× floor',
      met: cold.p50 <= 2 * floor.p50,
      data: { cold, floor },
    });
    const warm = await measure(n * 5, () => node.pipeline.pull({ reference: artifacts[0]!.reference, kind: 'seccomp' }));
    ctx.rows.push({ case: 'warm (cached) pull in-process', spoke: ms(warm), peer: '—', target: '≤ 0.5 ms p50', met: warm.p50 <= 0.5, data: { warm } });

    // 500 concurrent pulls of one new digest: one manifest GET and one blob GET.
    const [fresh] = await ctx.pushSigned(1, 'bench/herd');
    ctx.reg.resetRequests();
    const t0 = process.hrtime.bigint();
    const all = await Promise.allSettled(Array.from({ length: 500 }, () => node.pipeline.pull({ reference: fresh!.reference, kind: 'seccomp' })));
    const herdMs = Number(process.hrtime.bigint() - t0) / 1e6;
    await ctx.reg.settle();
    const reqs = ctx.reg.requests();
    const manifestGets = reqs.filter((r) => r.method === 'GET' && r.path.endsWith(`/manifests/${fresh!.digest}`)).length;
    const blobGets = reqs.filter((r) => r.method === 'GET' && r.path.endsWith(`/blobs/${fresh!.layerDigest}`)).length;
    const answered = all.filter((r) => r.status === 'fulfilled').length;
    ctx.rows.push({
      case: '500 concurrent pulls of one new digest',
      spoke: `${answered}/500 answered in ${fmt(herdMs)}; ${manifestGets} manifest GET + ${blobGets} blob GET (+ ${reqs.length - manifestGets - blobGets} signature lookups)`,
      peer: '—',
      target: 'exactly 1 + 1, all answered',
      met: manifestGets === 1 && blobGets === 1 && answered === 500,
    });

    // 1,000 distinct digests, 16 at a time: throughput and memory.
    const many = await pushUnsigned(ctx, QUICK ? 100 : 1000);
    global.gc?.();
    const rssBefore = process.memoryUsage().rss;
    const t1 = process.hrtime.bigint();
    let next = 0;
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        while (next < many.length) {
          const ref = many[next++]!;
          await node.pipeline.pull({ reference: ref, kind: 'seccomp' });
        }
      }),
    );
    const secs = Number(process.hrtime.bigint() - t1) / 1e9;
    global.gc?.();
    const rssAfter = process.memoryUsage().rss;
    ctx.rows.push({
      case: `${many.length} distinct digests pulled, 16 at a time`,
      spoke: `${(many.length / secs).toFixed(0)} pulls/s; RSS ${(rssBefore / 2 ** 20).toFixed(0)} → ${(rssAfter / 2 ** 20).toFixed(0)} MiB`,
      peer: '—',
      target: 'throughput reported; memory flat',
      met: rssAfter - rssBefore < 32 * 2 ** 20,
    });
  } finally {
    await pool.close();
    await node.dispose();
  }
}

async function pushUnsigned(ctx: BenchContext, n: number): Promise<string[]> {
  const client = new UndiciRegistryClient({ plainHttp: true });
  const refs: string[] = [];
  try {
    for (let i = 0; i < n; i++) {
      const r = await pushProfile(client, { registry: ctx.reg.host, repository: 'open/many' }, undefined, smallProfile(1_000_000 + i, 1024), 'seccomp');
      refs.push(r.reference);
    }
  } finally {
    await client.close();
  }
  return refs;
}

function timeProcess(cmd: string, args: string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(Number(process.hrtime.bigint() - t0) / 1e6) : reject(new Error(`${cmd} exited ${code}: ${err.slice(0, 300)}`))));
  });
}

async function cliCases(ctx: BenchContext): Promise<void> {
  const n = QUICK ? 5 : 30;
  const refs = await pushUnsigned(ctx, 2 * n + 4);
  const policy = join(ctx.dir, 'cli-policy.yaml');
  writeFileSync(policy, ctx.signedPolicy());
  const nodeStats: number[] = [];
  const spokeStats: number[] = [];
  const skopeoStats: number[] = [];
  for (let i = 0; i < n + 2; i++) {
    const store = join(ctx.dir, `cli-store-${i}`);
    const a = await timeProcess(process.execPath, ['-e', '0']);
    const b = await timeProcess(process.execPath, [SPOKE_BIN, 'pull', refs[2 * i]!, '--kind', 'seccomp', '--policy', policy, '--store', store, '--config', '/dev/null']);
    const c = await timeProcess('skopeo', ['copy', '--quiet', '--src-tls-verify=false', `docker://${refs[2 * i + 1]!}`, `oci:${join(ctx.dir, `skopeo-${i}`)}`]);
    if (i >= 2) {
      nodeStats.push(a);
      spokeStats.push(b);
      skopeoStats.push(c);
    }
  }
  const nodeS = summarize(nodeStats);
  const spokeS = summarize(spokeStats);
  const skopeoS = summarize(skopeoStats);
  const beyond = spokeS.p50 - nodeS.p50;
  ctx.rows.push({
    case: 'cold pull, CLI, whole process (spoke pull)',
    spoke: `${ms(spokeS)} (beyond bare node: ${fmt(beyond)})`,
    peer: `skopeo copy: ${ms(skopeoS)}; node -e 0: ${ms(nodeS)}`,
    target: 'beyond-node ≤ 1.0× skopeo (stretch: whole ≤ 1.0× skopeo)',
    met: beyond <= skopeoS.p50,
    data: { spoke: spokeS, skopeo: skopeoS, node: nodeS, stretchMet: spokeS.p50 <= skopeoS.p50 },
  });
}

function machine(): Record<string, string | number> {
  const c = cpus();
  return { cpuModel: c[0]?.model ?? 'unknown', cores: c.length, kernel: release(), memoryGiB: Math.round(totalmem() / 2 ** 30), node: process.version };
}

function report(rows: Row[], started: Date): void {
  const m = machine();
  const header = `Measured ${started.toISOString().slice(0, 10)} on ${m.cores} × ${m.cpuModel}, Linux ${m.kernel}, Node ${m.node}${QUICK ? ' (--quick)' : ''}.`;
  const table = [
    '| case | spoke | peer / floor (same run) | target | met |',
    '|---|---|---|---|---|',
    ...rows.map((r) => `| ${r.case} | ${r.spoke} | ${r.peer} | ${r.target} | ${r.met === null ? '—' : r.met ? 'yes' : '**no**'} |`),
  ].join('\n');
  process.stdout.write(`${header}\n\n${table}\n`);
  const readme = fileURLToPath(new URL('../../../README.md', import.meta.url));
  try {
    const text = readFileSync(readme, 'utf8');
    const start = text.indexOf('<!-- bench:start -->');
    const end = text.indexOf('<!-- bench:end -->');
    if (start >= 0 && end > start) {
      writeFileSync(readme, `${text.slice(0, start)}<!-- bench:start -->\n${header}\n\n${table}\n${text.slice(end)}`);
    }
  } catch {
    /* no README: print only */
  }
  if (JSON_OUT) {
    const out = fileURLToPath(new URL('../../../test/bench/results.json', import.meta.url));
    writeFileSync(out, JSON.stringify({ date: started.toISOString(), machine: m, quick: QUICK, rows }, null, 2) + '\n');
    process.stdout.write(`wrote ${out}\n`);
  }
}

main().catch((e) => {
  process.stderr.write(`bench failed: ${(e as Error).stack ?? String(e)}\n`);
  process.exitCode = 1;
});
