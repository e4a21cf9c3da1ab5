// `npm run bench [-- --json]`: spoke measured against its peers and the loopback floor, each in
// the same run, on real components (docker-registry, skopeo, containerd when the shim cases run).
// Writes the table into docs/benchmarks.md (between the bench markers), with --svg <file> a chart
// of it, and with --json test/bench/results.json.

import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, release, tmpdir, totalmem } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
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
import { fmt, measure, measureInterleaved, summarize, verdict, type Stats } from './stats.js';
import { benchPolicyText, floorSignedPull } from './floor.js';
import { chartSvg } from './chart.js';
import { largeArtifact, smallProfile } from './profiles.js';
import { shimCases } from './shim-cases.js';
import { bundleLauncher } from './bundled.js';

export interface Row {
  case: string;
  spoke: string;
  peer: string;
  target: string;
  met: boolean | null;
  /** Not met, and the floor measured in the same run misses the same targets (stats.ts verdict): its figures. */
  belowFloor?: string;
  data?: Record<string, unknown>;
  /** The bar pair of the chart: spoke's figure next to its floor or peer (p50 in ms, or MiB). */
  chart?: { spoke: number; peer: number; peerLabel: string; unit?: 'MiB' };
}

export interface Pushed {
  reference: string;
  digest: Digest;
  layerDigest: Digest;
}

export interface BenchContext {
  reg: TestRegistry;
  dir: string;
  keyPem: string;
  rows: Row[];
  /** Pushes `n` distinct signed 4 KiB profiles; returns their references. */
  pushSigned(n: number, repo: string): Promise<Pushed[]>;
  /** `n` distinct unsigned 1 KiB profiles under open/many, pushed once (each store pulls them cold). */
  unsigned: Pushed[];
  /** Pushes `n` distinct unsigned profiles of about `bytes` bytes under open/many. */
  pushUnsigned(n: number, salt: number, bytes: number): Promise<Pushed[]>;
  signedPolicy(): string;
}

const JSON_OUT = process.argv.includes('--json');
const QUICK = process.argv.includes('--quick');
const SVG_AT = process.argv.indexOf('--svg');
const SVG_OUT = SVG_AT >= 0 ? process.argv[SVG_AT + 1] : undefined;
const N = QUICK ? 20 : 200;
/** `--only merge,pull,cli,shim`: run these groups and print, without rewriting the docs table. */
const ONLY_AT = process.argv.indexOf('--only');
const ONLY = ONLY_AT >= 0 ? new Set((process.argv[ONLY_AT + 1] ?? '').split(',')) : undefined;
const runs = (group: string) => ONLY === undefined || ONLY.has(group);

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
    rows,
    unsigned: [],
    pushUnsigned: (n, salt, bytes) => pushUnsigned(reg, n, salt, bytes),
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
    signedPolicy: () => benchPolicyText(reg.host, pubFile),
  };
  try {
    ctx.unsigned = await pushUnsigned(reg, QUICK ? 300 : 1000);
    if (runs('merge')) await mergeCases(ctx);
    if (runs('pull')) await pullCases(ctx);
    if (runs('cli')) await cliCases(ctx);
    if (runs('shim')) await shimCases(ctx, { n: N, quick: QUICK });
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
  // The first calls of a process run cold (interpreted, then optimised); the shim merges for its
  // whole life, so the figure is taken warm, after 10 runs, and the first call is shown beside it.
  const firstCall = (fn: () => unknown) => {
    const t0 = process.hrtime.bigint();
    fn();
    return Number(process.hrtime.bigint() - t0) / 1e6;
  };
  const validateOnce = () => validateArtifact(decodeSeccomp(bytes));
  // The floor of reading the document at all: the engine's own parser, building its plain values
  // (no UTF-8 check, exact uint64s, member checks or validation), on the same bytes.
  const parseFloorOnce = () => JSON.parse(bytes.toString('utf8')) as unknown;
  const mergeOnce = () => intersect(baseline, undefined, artifact);
  const validateFirst = firstCall(validateOnce);
  const mergeFirst = firstCall(mergeOnce);
  // In-process figures on this VM swing by half from one half-second to the next while a
  // compute-only loop stays flat (docs/benchmarks.md): 200 rounds, the two cases interleaved,
  // take the median over a few seconds of that swing rather than one moment of it.
  const {
    validate: validateStats,
    merge: mergeStats,
    parseFloor: parseFloorStats,
  } = await measureInterleaved(QUICK ? 10 : 200, { validate: validateOnce, merge: mergeOnce, parseFloor: parseFloorOnce }, 10);
  const kib = (bytes.byteLength / 1024).toFixed(0);
  ctx.rows.push({
    case: `decode + validateArtifact of a ${kib} KiB artifact`,
    spoke: `${ms(validateStats)} (${(validateStats.p50 / parseFloorStats.p50).toFixed(2)}× the floor at p50; first call of the process: ${fmt(validateFirst)})`,
    peer: `floor (the same bytes decoded and given to JSON.parse, nothing checked): ${ms(parseFloorStats)}`,
    target: '≤ 10 ms',
    ...verdict([{ spoke: validateStats.p50 <= 10, floor: { meets: parseFloorStats.p50 <= 10, figure: `JSON.parse floor ${fmt(parseFloorStats.p50)}` } }]),
    data: { validateStats, validateFirst, parseFloorStats },
    chart: { spoke: validateStats.p50, peer: parseFloorStats.p50, peerLabel: 'JSON.parse of the same bytes' },
  });
  ctx.rows.push({ case: `merge of a ${kib} KiB artifact with the baseline`, spoke: `${ms(mergeStats)} (first call of the process: ${fmt(mergeFirst)})`, peer: '—', target: '≤ 20 ms', met: mergeStats.p50 <= 20, data: { mergeStats, mergeFirst }, chart: { spoke: mergeStats.p50, peer: 20, peerLabel: 'target' } });
}

async function pullCases(ctx: BenchContext): Promise<void> {
  const n = N;
  const artifacts = await ctx.pushSigned(n + 3, 'bench/cold');
  const node: TestNode = testNode(ctx.signedPolicy());
  const pool = new Pool(ctx.reg.url, { connections: 4 });
  try {
    const { cold, floor } = await measureInterleaved(n, {
      floor: (i) => floorSignedPull(pool, 'bench/cold', artifacts[i < 0 ? 0 : i]!, node.dir, `floor-${i}`),
      cold: (i) => node.pipeline.pull({ reference: artifacts[i < 0 ? n - i - 1 : i]!.reference, kind: 'seccomp' }),
    });
    ctx.rows.push({
      case: 'cold pull in-process (policy, manifest, blob, keyed signature, validate, store) of a 4 KiB profile',
      spoke: `${ms(cold)} (${(cold.p50 / floor.p50).toFixed(2)}× at p50)`,
      peer: `floor (index → bundle manifest → bundle blob beside manifest → blob, keep-alive undici, fsync file + dir): ${ms(floor)}`,
      target: '≤ 1.5× floor',
      met: cold.p50 <= 1.5 * floor.p50,
      data: { cold, floor },
      chart: { spoke: cold.p50, peer: floor.p50, peerLabel: 'lean client floor' },
    });
    const warm = await measure(n * 5, () => node.pipeline.pull({ reference: artifacts[0]!.reference, kind: 'seccomp' }));
    ctx.rows.push({ case: 'warm (cached) pull in-process', spoke: ms(warm), peer: '—', target: '≤ 0.5 ms p50', met: warm.p50 <= 0.5, data: { warm } });

    // 500 concurrent pulls of one new digest: one manifest GET and one blob GET.
    const [fresh] = await ctx.pushSigned(1, 'bench/herd');
    await ctx.reg.resetRequests();
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
    const many = ctx.unsigned.map((a) => a.reference);
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

async function pushUnsigned(reg: TestRegistry, n: number, salt = 1_000_000, bytes = 1024): Promise<Pushed[]> {
  const client = new UndiciRegistryClient({ plainHttp: true });
  const refs: Pushed[] = [];
  try {
    for (let i = 0; i < n; i++) {
      const r = await pushProfile(client, { registry: reg.host, repository: 'open/many' }, undefined, smallProfile(salt + i, bytes), 'seccomp');
      refs.push({ reference: r.reference, digest: r.digest, layerDigest: r.packed.layerDigest });
    }
  } finally {
    await client.close();
  }
  return refs;
}

function timeProcess(cmd: string, args: string[], env?: NodeJS.ProcessEnv): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'], env: env && { ...process.env, ...env } });
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(Number(process.hrtime.bigint() - t0) / 1e6) : reject(new Error(`${cmd} exited ${code}: ${err.slice(0, 300)}`))));
  });
}

/**
 * The CLI floor (floor-cli.ts), bundled and started as spoke's CLI is: returns the path of its
 * launcher, with its code cache written by one warm-up pull of `warmRef`.
 */
async function prepareCliFloor(dir: string, warmRef: string): Promise<string> {
  const launcher = await bundleLauncher(fileURLToPath(new URL('./floor-cli.js', import.meta.url)), dir, 'floor-cli', { liftoffOnly: true, codeCache: true });
  const warmDir = join(dir, 'floor-warm-up');
  mkdirSync(warmDir);
  await timeProcess(process.execPath, [launcher, warmRef, warmDir], { SPOKE_WRITE_CODE_CACHE: '1' });
  return launcher;
}

async function cliCases(ctx: BenchContext): Promise<void> {
  const n = QUICK ? 5 : 30;
  const refs = (await pushUnsigned(ctx.reg, 3 * n + 7, 2_000_000)).map((a) => a.reference);
  const floorCli = await prepareCliFloor(ctx.dir, refs[3 * n + 6]!);
  const policy = join(ctx.dir, 'cli-policy.yaml');
  writeFileSync(policy, ctx.signedPolicy());
  const nodeStats: number[] = [];
  const spokeStats: number[] = [];
  const skopeoStats: number[] = [];
  const floorStats: number[] = [];
  // Each run pulls a digest new to the store, into the one store all runs share, as a node or a
  // CI job has one (the first run, a warm-up, makes its directories); the floor writes into one
  // existing directory likewise.
  const store = join(ctx.dir, 'cli-store');
  const floorDir = join(ctx.dir, 'cli-floor');
  mkdirSync(floorDir);
  for (let i = 0; i < n + 2; i++) {
    const a = await timeProcess(process.execPath, ['-e', '0']);
    const b = await timeProcess(process.execPath, [SPOKE_BIN, 'pull', refs[3 * i]!, '--kind', 'seccomp', '--policy', policy, '--store', store, '--config', '/dev/null']);
    const c = await timeProcess('skopeo', ['copy', '--quiet', '--src-tls-verify=false', `docker://${refs[3 * i + 1]!}`, `oci:${join(ctx.dir, `skopeo-${i}`)}`]);
    const d = await timeProcess(process.execPath, [floorCli, refs[3 * i + 2]!, floorDir]);
    if (i >= 2) {
      nodeStats.push(a);
      spokeStats.push(b);
      skopeoStats.push(c);
      floorStats.push(d);
    }
  }
  const nodeS = summarize(nodeStats);
  const spokeS = summarize(spokeStats);
  const skopeoS = summarize(skopeoStats);
  const floorS = summarize(floorStats);
  const beyond = spokeS.p50 - nodeS.p50;
  const floorBeyond = floorS.p50 - nodeS.p50;
  ctx.rows.push({
    case: 'cold pull, CLI, whole process (spoke pull)',
    spoke: `${ms(spokeS)} (beyond bare node: ${fmt(beyond)}; ${(beyond / floorBeyond).toFixed(2)}× the undici floor's)`,
    peer: `skopeo copy: ${ms(skopeoS)}; node -e 0: ${ms(nodeS)}; undici floor (the same two requests with undici, each body checked against its digest, fsync file + dir; bundled and started from its code cache as spoke is): ${ms(floorS)} (beyond bare node: ${fmt(floorBeyond)}, ${(floorBeyond / skopeoS.p50).toFixed(2)}× skopeo)`,
    target: `beyond-node ≤ 1.0× skopeo (stretch: whole ≤ 2× node -e 0: ${spokeS.p50 <= 2 * nodeS.p50 ? 'met' : 'not met'})`,
    ...verdict([{ spoke: beyond <= skopeoS.p50, floor: { meets: floorBeyond <= skopeoS.p50, figure: `undici floor ${fmt(floorBeyond)} beyond node, skopeo ${fmt(skopeoS.p50)}` } }]),
    data: { spoke: spokeS, skopeo: skopeoS, node: nodeS, undiciFloor: floorS, stretchMet: spokeS.p50 <= 2 * nodeS.p50 },
    chart: { spoke: beyond, peer: skopeoS.p50, peerLabel: 'skopeo copy (spoke: beyond node -e 0)' },
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
    ...rows.map((r) => `| ${r.case} | ${r.spoke} | ${r.peer} | ${r.target} | ${metCell(r)} |`),
  ].join('\n');
  process.stdout.write(`${header}\n\n${table}\n`);
  if (ONLY !== undefined) return;
  const page = fileURLToPath(new URL('../../../docs/benchmarks.md', import.meta.url));
  const chart = SVG_OUT === undefined ? '' : `\n![spoke next to its floors and peers, p50](${relative(dirname(page), resolve(SVG_OUT))})\n`;
  writeTable(page, `${header}\n\n${table}\n${chart}`);
  const readme = fileURLToPath(new URL('../../../README.md', import.meta.url));
  writeTable(readme, `${summary(rows, header)}${SVG_OUT === undefined ? '' : `\n![spoke next to its floors and peers, p50](${relative(dirname(readme), resolve(SVG_OUT))})\n`}`);
  if (SVG_OUT !== undefined) {
    writeFileSync(SVG_OUT, chartSvg(rows, header));
    process.stdout.write(`wrote ${SVG_OUT}\n`);
  }
  if (JSON_OUT) {
    const out = fileURLToPath(new URL('../../../test/bench/results.json', import.meta.url));
    writeFileSync(out, JSON.stringify({ date: started.toISOString(), machine: m, quick: QUICK, rows }, null, 2) + '\n');
    process.stdout.write(`wrote ${out}\n`);
  }
}

/** The met column: yes, no, or no with the floor that misses the same target in this run. */
function metCell(r: Row): string {
  if (r.met === null) return '—';
  if (r.met) return 'yes';
  return r.belowFloor === undefined ? '**no**' : `no: target below the floor (${r.belowFloor})`;
}

/** README's short form: each charted figure's p50 next to its floor or peer, and the full table's link. */
function summary(rows: Row[], header: string): string {
  const value = (v: number, unit?: 'MiB') => (unit === 'MiB' ? `${v.toFixed(1)} MiB` : fmt(v));
  const lines = rows
    .filter((r) => r.chart !== undefined)
    .map((r) => `| ${r.case} | ${value(r.chart!.spoke, r.chart!.unit)} | ${r.chart!.peerLabel}: ${value(r.chart!.peer, r.chart!.unit)} | ${r.target} | ${metCell(r)} |`);
  return [`${header} p50 figures; p99, every peer and why: [docs/benchmarks.md](docs/benchmarks.md).`, '', '| case | spoke | floor or peer | target | met |', '|---|---|---|---|---|', ...lines, ''].join('\n');
}

const START = '<!-- bench:start -->';
const END = '<!-- bench:end -->';

/** Replaces the region between the bench markers; a file without them gets them at its end. */
function writeTable(file: string, region: string): void {
  const text = existsSync(file) ? readFileSync(file, 'utf8') : '';
  const start = text.indexOf(START);
  const end = text.indexOf(END);
  if (start >= 0 && end > start) writeFileSync(file, `${text.slice(0, start)}${START}\n${region}${text.slice(end)}`);
  else writeFileSync(file, `${text}${text === '' || text.endsWith('\n') ? '' : '\n'}${START}\n${region}${END}\n`);
}

main().catch((e) => {
  process.stderr.write(`bench failed: ${(e as Error).stack ?? String(e)}\n`);
  process.exitCode = 1;
});
