// A real Debian containerd 1.6 with the CRI plugin, in a temp dir with a short path (unix socket
// paths must stay below 108 bytes), for integration tests (docs/testing.md):
// restrict_oom_score_adj (root lacks CAP_SYS_RESOURCE here), no CNI (pods on the host network),
// two runtime handlers: `runc` (default) and `crun` (io.containerd.runc.v2 with BinaryName crun),
// and the busybox image built locally and imported with `ctr`. stop() removes pods first, then
// stops containerd, unmounts leftovers under the dir, removes it and empty k8s.io cgroups.

import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { waitFor } from './wait.js';
import { mkdtempSync, mkdirSync, readFileSync, readdirSync, rmdirSync, rmSync, writeFileSync, existsSync, openSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { promisify } from 'node:util';
import { buildBusyboxImageTar } from './busybox-image.js';
import { CriClient } from './cri-client.js';

const execFileP = promisify(execFile);

export interface Containerd {
  readonly dir: string;
  readonly socket: string;
  readonly logFile: string;
  /** Kills containerd (SIGKILL when `hard`) and starts it again with the same config. */
  restart(opts?: { hard?: boolean; downMs?: number }): Promise<void>;
  /** Stops containerd without restarting (for "runtime down" tests); start() brings it back. */
  kill(hard?: boolean): Promise<void>;
  start(): Promise<void>;
  /** (Re-)imports the busybox/pause test images. */
  importImages(): Promise<void>;
  /** Removes every pod (stop + remove) through CRI directly. */
  removeAllPods(): Promise<void>;
  stop(): Promise<void>;
}

export const RUNTIME_HANDLERS = ['runc', 'crun'] as const;

function config(dir: string): string {
  return `version = 2
root = "${dir}/root"
state = "${dir}/state"
[grpc]
  address = "${dir}/c.sock"
[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = "${dir}/opt"
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "docker.io/e2e/pause:1"
    restrict_oom_score_adj = true
    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "overlayfs"
      default_runtime_name = "runc"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.crun]
        runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.crun.options]
          BinaryName = "/usr/bin/crun"
    [plugins."io.containerd.grpc.v1.cri".cni]
      conf_dir = "${dir}/cni"
`;
}

async function ctrVersion(socket: string): Promise<boolean> {
  try {
    await execFileP('ctr', ['-a', socket, 'version'], { timeout: 5000 });
    return true;
  } catch {
    return false;
  }
}

/**
 * crun refuses cgroup "hybrid" hosts (v1 controllers + a cgroup2 mount at /sys/fs/cgroup/unified)
 * whose cgroup2 still offers controllers ("cgroups in hybrid mode not supported, drop all
 * controllers from cgroupv2"). On such a host the leftover controllers (here: hugetlb) are bound
 * to v1 hierarchies, as a hybrid host's init normally does, and left mounted: unmounting does
 * not hand a controller back to cgroup2 and leaves containerd 1.6 unable to report stats
 * ("unexpected metrics response: []"). No-op on pure v1 or pure v2 hosts.
 */
export async function fixHybridCgroups(): Promise<string[]> {
  const made: string[] = [];
  const unified = '/sys/fs/cgroup/unified/cgroup.controllers';
  if (!existsSync(unified)) return made;
  const mounts = readFileSync('/proc/mounts', 'utf8').split('\n');
  const v1 = new Set(mounts.filter((l) => l.split(' ')[2] === 'cgroup').flatMap((l) => (l.split(' ')[3] ?? '').split(',')));
  const enabled = readFileSync('/proc/cgroups', 'utf8')
    .split('\n')
    .filter((l) => l && !l.startsWith('#'))
    .map((l) => l.split('\t'))
    .filter((f) => f[3] === '1')
    .map((f) => f[0]!);
  const wanted = new Set(readFileSync(unified, 'utf8').trim().split(/\s+/).filter(Boolean));
  // A controller once bound to v1 and unmounted is in neither place: bind it again.
  if (enabled.includes('hugetlb') && !v1.has('hugetlb')) wanted.add('hugetlb');
  for (const ctl of wanted) {
    if (v1.has(ctl)) continue;
    const mp = join('/sys/fs/cgroup', ctl);
    try {
      mkdirSync(mp, { recursive: true });
      await execFileP('mount', ['-t', 'cgroup', '-o', ctl, 'cgroup', mp]);
      made.push(mp);
    } catch {
      /* not possible here: crun tests will say why */
    }
  }
  return made;
}

export async function startContainerd(): Promise<Containerd> {
  await fixHybridCgroups();
  const dir = mkdtempSync('/tmp/sk-');
  mkdirSync(join(dir, 'cni'));
  const cfg = join(dir, 'config.toml');
  writeFileSync(cfg, config(dir));
  const socket = join(dir, 'c.sock');
  const logFile = join(dir, 'containerd.log');
  let child: ChildProcess | undefined;

  const start = async () => {
    const fd = openSync(logFile, 'a');
    child = spawn('containerd', ['--config', cfg], { stdio: ['ignore', fd, fd] });
    closeSync(fd);
    const c = child;
    await waitFor(async () => {
      if (c.exitCode !== null) throw new Error(`containerd exited (${c.exitCode}); see ${logFile}`);
      return existsSync(socket) && (await ctrVersion(socket));
    }, { timeoutMs: 20_000, what: 'containerd' });
  };

  const kill = async (hard = false) => {
    const c = child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const exited = new Promise<void>((r) => c.once('exit', () => r()));
    c.kill(hard ? 'SIGKILL' : 'SIGTERM');
    const t = setTimeout(() => c.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(t);
    child = undefined;
  };

  await start();
  const tarPath = join(dir, 'images.tar');
  buildBusyboxImageTar(tarPath);
  const importImages = async () => {
    await execFileP('ctr', ['-a', socket, '-n', 'k8s.io', 'images', 'import', tarPath], { timeout: 60_000 });
  };
  await importImages();

  const removeAllPods = async () => {
    const cri = new CriClient(socket);
    try {
      const list = (await cri.rt('ListPodSandbox', {}, { deadlineMs: 20_000 })).items as { id: string }[];
      for (const p of list) {
        await cri.rt('StopPodSandbox', { pod_sandbox_id: p.id }, { deadlineMs: 30_000 }).catch(() => undefined);
        await cri.rt('RemovePodSandbox', { pod_sandbox_id: p.id }, { deadlineMs: 30_000 }).catch(() => undefined);
      }
    } finally {
      cri.close();
    }
  };

  return {
    dir,
    socket,
    logFile,
    start,
    kill,
    importImages,
    async restart(opts = {}) {
      await kill(opts.hard);
      if (opts.downMs) await new Promise((r) => setTimeout(r, opts.downMs));
      await start();
    },
    removeAllPods,
    async stop() {
      if (child && child.exitCode === null) {
        await removeAllPods().catch(() => undefined);
      } else if (existsSync(cfg)) {
        // containerd is down but pods may still run: bring it back to remove them properly.
        await start().catch(() => undefined);
        await removeAllPods().catch(() => undefined);
      }
      await kill();
      // Leftover mounts under our dir (deepest first), then the dir itself.
      const mounts = readFileSync('/proc/mounts', 'utf8')
        .split('\n')
        .map((l) => l.split(' ')[1] ?? '')
        .filter((m) => m.startsWith(dir + '/'))
        .sort((a, b) => b.length - a.length);
      for (const m of mounts) await execFileP('umount', ['-l', m]).catch(() => undefined);
      rmSync(dir, { recursive: true, force: true });
      // containerd leaves empty k8s.io cgroups behind (cgroup v1: one per controller).
      try {
        for (const ctl of readdirSync('/sys/fs/cgroup')) {
          const p = join('/sys/fs/cgroup', ctl, 'k8s.io');
          if (existsSync(p)) {
            try {
              rmdirSync(p);
            } catch {
              /* not empty: another runtime still uses it */
            }
          }
        }
      } catch {
        /* no cgroupfs */
      }
    },
  };
}

// ---------------------------------------------------------------------------------------------
// A recording tap for HTTP/2 traffic between the shim and containerd: a unix-socket relay that
// copies bytes both ways untouched and parses the HTTP/2 frame layer (RFC 9113 §4.1) of each
// direction, so tests can compare the DATA bytes containerd received with what the client sent.

export interface TapStream {
  id: number;
  /** DATA payload bytes (padding removed) client→upstream and upstream→client. */
  request: Buffer;
  response: Buffer;
  /** Frame types seen, e.g. RST_STREAM from either side. */
  requestRst: boolean;
  responseRst: boolean;
  requestHeaders: Buffer[]; // raw HPACK blocks (not decoded)
}

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
const DATA = 0;
const HEADERS = 1;
const RST_STREAM = 3;

class FrameParser {
  private buf = Buffer.alloc(0);
  private skipped = false;
  constructor(
    private readonly prefaced: boolean,
    private readonly onFrame: (type: number, flags: number, stream: number, payload: Buffer) => void,
  ) {}
  push(chunk: Buffer): void {
    this.buf = Buffer.concat([this.buf, chunk]);
    if (this.prefaced && !this.skipped) {
      if (this.buf.length < PREFACE.length) return;
      this.buf = this.buf.subarray(PREFACE.length);
      this.skipped = true;
    }
    while (this.buf.length >= 9) {
      const len = this.buf.readUIntBE(0, 3);
      if (this.buf.length < 9 + len) return;
      const type = this.buf[3]!;
      const flags = this.buf[4]!;
      const stream = this.buf.readUInt32BE(5) & 0x7fffffff;
      this.onFrame(type, flags, stream, this.buf.subarray(9, 9 + len));
      this.buf = this.buf.subarray(9 + len);
    }
  }
}

function unpad(flags: number, payload: Buffer): Buffer {
  if (flags & 0x8) {
    const pad = payload[0]!;
    return payload.subarray(1, payload.length - pad);
  }
  return payload;
}

export class Tap {
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  /** Streams per connection, in order of creation; connections in order of accept. */
  readonly connections: Map<number, TapStream>[] = [];

  constructor(
    readonly listen: string,
    readonly target: string,
  ) {}

  async start(): Promise<void> {
    rmSync(this.listen, { force: true });
    this.server = createServer((client) => {
      const streams = new Map<number, TapStream>();
      this.connections.push(streams);
      const get = (id: number) => {
        let s = streams.get(id);
        if (!s) {
          s = { id, request: Buffer.alloc(0), response: Buffer.alloc(0), requestRst: false, responseRst: false, requestHeaders: [] };
          streams.set(id, s);
        }
        return s;
      };
      const up = connect(this.target);
      this.sockets.add(client);
      this.sockets.add(up);
      const reqParser = new FrameParser(true, (type, flags, id, payload) => {
        if (id === 0) return;
        const s = get(id);
        if (type === DATA) s.request = Buffer.concat([s.request, unpad(flags, payload)]);
        else if (type === HEADERS) s.requestHeaders.push(Buffer.from(payload));
        else if (type === RST_STREAM) s.requestRst = true;
      });
      const resParser = new FrameParser(false, (type, flags, id, payload) => {
        if (id === 0) return;
        const s = get(id);
        if (type === DATA) s.response = Buffer.concat([s.response, unpad(flags, payload)]);
        else if (type === RST_STREAM) s.responseRst = true;
      });
      client.on('data', (c) => {
        reqParser.push(c);
        up.write(c);
      });
      up.on('data', (c) => {
        resParser.push(c);
        client.write(c);
      });
      const end = () => {
        client.destroy();
        up.destroy();
        this.sockets.delete(client);
        this.sockets.delete(up);
      };
      client.on('close', end);
      up.on('close', end);
      client.on('error', end);
      up.on('error', end);
    });
    await new Promise<void>((r) => this.server!.listen(this.listen, () => r()));
  }

  /** All streams seen, oldest first. */
  streams(): TapStream[] {
    return this.connections.flatMap((m) => [...m.values()]);
  }

  /** The most recent stream whose request DATA equals `body` (undefined when none). */
  findByRequest(body: Buffer): TapStream | undefined {
    return this.streams()
      .reverse()
      .find((s) => s.request.equals(body));
  }

  last(): TapStream | undefined {
    const all = this.streams();
    return all[all.length - 1];
  }

  /** Cuts every relayed connection (simulates the runtime going away). */
  cutAll(): void {
    for (const s of this.sockets) s.destroy();
  }

  async stop(): Promise<void> {
    this.cutAll();
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
    rmSync(this.listen, { force: true });
  }
}
