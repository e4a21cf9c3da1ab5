// Starts the real `spoke shim` process (bin/spoke) and waits for its "shim ready" log line.

import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, rmSync } from 'node:fs';
import { SHIM_NODE_OPTIONS } from '../../src/cli/commands/shim.js';
import type { ShimDeps } from '../../src/cri/deps.js';
import { seccompOps } from '../../src/cri/seccomp.js';
import { SpokeError } from '../../src/core/errors.js';
import { silentLogger } from '../../src/core/runtime.js';
import { noopMetrics } from '../../src/observe/metrics.js';
import type { SeccompProfile } from '../../src/profiles/seccomp/index.js';
import { ProfileStore } from '../../src/store/store.js';
import { SPOKE_BIN } from './cli.js';

/** Deps for an in-process ShimServer that only forwards: a real store, no pulls, no merges. */
export function stubShimDeps(storeDir: string, seccompRoot: string): ShimDeps {
  // One object, as the shim's baseline is between reloads.
  const baseline = {};
  return {
    pipeline: { pull: async () => Promise.reject(new SpokeError('PermissionDenied', 'no pulls in this test')) },
    store: new ProfileStore({ root: storeDir, fsync: false }),
    seccomp: {
      decode: () => ({}),
      decodeArtifact: () => ({}),
      validateBase: () => {},
      intersect: () => {
        throw new Error('not used');
      },
      audit: () => {
        throw new Error('not used');
      },
      formatConstraint: String,
    },
    baseline: () => baseline,
    seccompRoot,
    logger: silentLogger,
    metrics: noopMetrics,
    policy: async () => Promise.reject(new SpokeError('PermissionDenied', 'no node policy in this test')),
  };
}

/** Deps for an in-process ProfileApplier with the real seccomp library and a fixed `baseline`; no logs, no metrics. */
export function applierDeps(o: Pick<ShimDeps<SeccompProfile>, 'pipeline' | 'store' | 'seccompRoot' | 'policy' | 'runtimeDefault' | 'appArmor'> & { baseline: SeccompProfile }): ShimDeps<SeccompProfile> {
  const { baseline, ...rest } = o;
  return { ...rest, seccomp: seccompOps, baseline: () => baseline, logger: silentLogger, metrics: noopMetrics };
}

export interface ShimProc {
  child: ChildProcess;
  /** JSON log lines written so far. */
  logs: () => Record<string, unknown>[];
  /** Everything written on stderr (JSON logs and anything else). */
  stderr: () => string;
  /** Resolves the first JSON log line (so far or to come) that `match` accepts; rejects when the shim exits first. */
  waitForLog: (match: (l: Record<string, unknown>) => boolean, timeoutMs?: number) => Promise<Record<string, unknown>>;
  /** Like waitForLog, for a line written after this call only. */
  nextLog: (match: (l: Record<string, unknown>) => boolean, timeoutMs?: number) => Promise<Record<string, unknown>>;
  /** Resolves every JSON log line `match` accepts once there are at least `count` of them. */
  waitForLogs: (match: (l: Record<string, unknown>) => boolean, count: number, timeoutMs?: number) => Promise<Record<string, unknown>[]>;
  exited: Promise<number>;
  /** Spawn to "shim ready", in milliseconds. */
  readyMs: number;
}

/** `env`: added to this process's environment (SPOKE_CLI=plain runs the plain build). */
export async function startShim(args: string[], opts: { timeoutMs?: number; env?: Record<string, string> } = {}): Promise<ShimProc> {
  const t0 = performance.now();
  // Started as deployed: with the heap settings of the systemd unit.
  const child = spawn(process.execPath, [SPOKE_BIN, 'shim', ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...opts.env, NODE_OPTIONS: SHIM_NODE_OPTIONS } });
  let err = '';
  const watchers = new Set<() => void>();
  child.stderr!.on('data', (d: Buffer) => {
    err += d.toString();
    for (const w of [...watchers]) w();
  });
  child.stdout!.on('data', () => {});
  const exited = new Promise<number>((r) => child.on('exit', (code) => r(code ?? -1)));
  const logs = () =>
    err
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  // Checked again on every write to stderr (and at exit): an event, never a poll.
  const whenLogged = <T>(probe: () => T | undefined, timeoutMs: number): Promise<T> =>
    new Promise((resolve, reject) => {
      const check = () => {
        const hit = probe();
        if (hit !== undefined) done(() => resolve(hit));
        else if (child.exitCode !== null) done(() => reject(new Error(`shim exited ${child.exitCode}: ${err}`)));
      };
      const timer = setTimeout(() => done(() => reject(new Error(`shim log not seen within ${timeoutMs} ms: ${err}`))), timeoutMs);
      const onExit = () => check();
      const done = (settle: () => void) => {
        clearTimeout(timer);
        watchers.delete(check);
        child.off('exit', onExit);
        settle();
      };
      watchers.add(check);
      child.on('exit', onExit);
      check();
    });
  const waitForLog = (match: (l: Record<string, unknown>) => boolean, timeoutMs = 15_000, from = 0) => whenLogged(() => logs().slice(from).find(match), timeoutMs);
  const waitForLogs = (match: (l: Record<string, unknown>) => boolean, count: number, timeoutMs = 30_000) =>
    whenLogged(() => {
      const found = logs().filter(match);
      return found.length >= count ? found : undefined;
    }, timeoutMs);
  try {
    await waitForLog((l) => l.msg === 'shim ready', opts.timeoutMs);
  } catch (e) {
    // A shim that never got ready is stopped: left running, its pipes would keep the test
    // file's process (and the suite) waiting.
    if (child.exitCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
    throw e;
  }
  const nextLog = (match: (l: Record<string, unknown>) => boolean, timeoutMs?: number) => waitForLog(match, timeoutMs, logs().length);
  return { child, logs, waitForLog, nextLog, waitForLogs, stderr: () => err, exited, readyMs: performance.now() - t0 };
}

/**
 * From now on the shim's stderr is read by another process (`cat`, appending to `path`), as
 * journald or the runtime's log collector reads it on a node: a caller measuring calls to the shim
 * is not woken by its log lines, which a kubelet never reads. `logs`, `stderr` and the log waits
 * see nothing written after this call. The reader exits when the shim does.
 */
export function handLogToReader(s: ShimProc, path: string): ChildProcess {
  const stderr = s.child.stderr!;
  stderr.removeAllListeners('data');
  stderr.pause();
  const out = openSync(path, 'a');
  try {
    return spawn('cat', [], { stdio: [stderr, out, 'ignore'] });
  } finally {
    closeSync(out);
    stderr.destroy();
  }
}

/** SIGTERM, then SIGKILL after 40 s; resolves the exit code. */
export async function stopShim(s: ShimProc | undefined): Promise<number | undefined> {
  if (!s || s.child.exitCode !== null) return s?.child.exitCode ?? undefined;
  s.child.kill('SIGTERM');
  const t = setTimeout(() => s.child.kill('SIGKILL'), 40_000);
  const code = await s.exited;
  clearTimeout(t);
  return code;
}

/** Everything a shim test starts, torn down in order: client, pods, shim, tap, containerd, registry, temp dir. */
export async function tearDownShimRig(r: {
  cri?: { close(): void };
  ctrd?: { removeAllPods(): Promise<void>; stop(): Promise<void> };
  shim?: ShimProc;
  tap?: { stop(): Promise<void> };
  reg?: { stop(): Promise<void> };
  work?: string;
}): Promise<void> {
  r.cri?.close();
  await r.ctrd?.removeAllPods().catch(() => undefined);
  await stopShim(r.shim);
  await r.tap?.stop();
  await r.ctrd?.stop();
  await r.reg?.stop();
  if (r.work) rmSync(r.work, { recursive: true, force: true });
}
