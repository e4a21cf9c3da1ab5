// Runs a busybox command in a real runc container with a given seccomp profile (docs/testing.md).
// Each sandbox owns a temp dir with the runc state root and one bundle per run; cleanup() runs
// `runc delete --force` for every container it started and removes the dir, also after failures.
// Processes are started with argument arrays only. The bundle starts from `runc spec` and sets no
// oomScoreAdj (root here lacks CAP_SYS_RESOURCE, docs/testing.md).

import { spawn, spawnSync } from 'node:child_process';
import { accessSync, constants, copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';

const RUN_TIMEOUT_MS = 20_000;
const DEFAULT_APPLETS = ['sh', 'mkdir', 'chmod', 'echo', 'touch', 'cat', 'ls', 'rm', 'true', 'false'];
const SECCOMP_PLACEHOLDER = '"__SPOKE_SECCOMP__"';

/** First executable named `name` in the fixed places, then on PATH; undefined if absent. */
export function findExecutable(name: string, fixed: readonly string[]): string | undefined {
  const candidates = [...fixed, ...(process.env.PATH ?? '').split(delimiter).filter((d) => d !== '').map((d) => join(d, name))];
  return candidates.find((p) => {
    try {
      accessSync(p, constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

export const runcPath = (): string | undefined => findExecutable('runc', ['/usr/sbin/runc', '/usr/bin/runc']);
export const busyboxPath = (): string | undefined => findExecutable('busybox', ['/bin/busybox', '/usr/bin/busybox']);

/** Why runc tests cannot run here, or undefined when they can. */
export function runcUnavailableReason(): string | undefined {
  if (process.getuid?.() !== 0) return 'runc tests need root';
  if (runcPath() === undefined) return 'runc not installed';
  if (busyboxPath() === undefined) return 'busybox (busybox-static) not installed';
  return undefined;
}

export interface RunOptions {
  /** argv inside the container, e.g. ['/bin/sh', '-c', '...']. */
  args: string[];
  /** LinuxSeccomp JSON exactly as runc should see it; omitted = no seccomp filter. */
  seccompJson?: string | Uint8Array;
  /** Extra names in /bin: a symlink to busybox, or a copy when `copy` is set (own exe name for audit matching). */
  extraBinaries?: { name: string; copy?: boolean }[];
  /**
   * The process runs as this uid and gid (runc drops to it, and to the spec's capabilities, after
   * loading the filter when `noNewPrivileges` is false, as Kubernetes leaves it by default).
   */
  user?: { uid: number; gid: number };
  /** Default true, as `runc spec` writes it. */
  noNewPrivileges?: boolean;
}

export interface RunResult {
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface RuncSandbox {
  readonly dir: string;
  run(options: RunOptions): Promise<RunResult>;
  cleanup(): void;
}

function buildRootfs(rootfs: string, busybox: string, extra: RunOptions['extraBinaries']): void {
  for (const d of ['bin', 'tmp', 'proc', 'dev', 'sys', 'etc']) mkdirSync(join(rootfs, d), { recursive: true });
  copyFileSync(busybox, join(rootfs, 'bin', 'busybox'));
  for (const applet of DEFAULT_APPLETS) symlinkSync('busybox', join(rootfs, 'bin', applet));
  for (const b of extra ?? []) {
    if (b.copy) copyFileSync(busybox, join(rootfs, 'bin', b.name));
    else symlinkSync('busybox', join(rootfs, 'bin', b.name));
  }
  writeFileSync(join(rootfs, 'etc', 'passwd'), 'root:x:0:0:root:/:/bin/sh\n');
}

/** `runc spec` output with our process, a writable rootfs, no terminal and the given seccomp. */
function writeConfig(runc: string, bundle: string, options: RunOptions): void {
  const spec = spawnSync(runc, ['spec', '--bundle', bundle], { encoding: 'utf8' });
  if (spec.status !== 0) throw new Error(`runc spec failed: ${spec.stderr}`);
  const config = JSON.parse(readFileSync(join(bundle, 'config.json'), 'utf8')) as {
    process: { terminal: boolean; args: string[]; oomScoreAdj?: number; user: { uid: number; gid: number }; noNewPrivileges?: boolean };
    root: { readonly: boolean };
    linux: { seccomp?: unknown };
  };
  config.process.terminal = false;
  config.process.args = options.args;
  delete config.process.oomScoreAdj;
  if (options.user !== undefined) config.process.user = { uid: options.user.uid, gid: options.user.gid };
  if (options.noNewPrivileges !== undefined) config.process.noNewPrivileges = options.noNewPrivileges;
  config.root.readonly = false;
  let text = JSON.stringify(config);
  if (options.seccompJson !== undefined) {
    const seccomp = typeof options.seccompJson === 'string' ? options.seccompJson : Buffer.from(options.seccompJson).toString('utf8');
    config.linux.seccomp = '__SPOKE_SECCOMP__';
    text = JSON.stringify(config).replace(SECCOMP_PLACEHOLDER, () => seccomp);
  }
  writeFileSync(join(bundle, 'config.json'), text);
}

function runProcess(file: string, args: string[]): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    const timer = setTimeout(() => child.kill('SIGKILL'), RUN_TIMEOUT_MS);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (status, signal) => {
      clearTimeout(timer);
      resolve({ status, signal, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') });
    });
  });
}

export function createRuncSandbox(): RuncSandbox {
  const runc = runcPath();
  const busybox = busyboxPath();
  if (runc === undefined || busybox === undefined) throw new Error(runcUnavailableReason() ?? 'runc unavailable');
  // Short path: runc's state dir holds a unix socket (< 108 bytes).
  const dir = mkdtempSync(join(tmpdir(), 'spoke-runc-'));
  const root = join(dir, 'state');
  const started: string[] = [];
  let runs = 0;
  return {
    dir,
    async run(options) {
      const id = `spoke-${process.pid}-${++runs}`;
      const bundle = join(dir, id);
      buildRootfs(join(bundle, 'rootfs'), busybox, options.extraBinaries);
      writeConfig(runc, bundle, options);
      started.push(id);
      return runProcess(runc, ['--root', root, 'run', '--bundle', bundle, id]);
    },
    cleanup() {
      for (const id of started) spawnSync(runc, ['--root', root, 'delete', '--force', id], { stdio: 'ignore' });
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The kernel log as `dmesg` prints it, or undefined when it cannot be read here. */
export function readKernelLog(): string | undefined {
  const dmesg = findExecutable('dmesg', ['/usr/bin/dmesg', '/bin/dmesg']);
  if (dmesg === undefined) return undefined;
  const r = spawnSync(dmesg, [], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  return r.status === 0 ? r.stdout : undefined;
}
