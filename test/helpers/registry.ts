// A real Debian docker-registry 2.8 on 127.0.0.1, in a temp dir, for integration tests and
// benchmarks (docs/testing.md). The access log (combined format on stdout/stderr) is parsed so tests
// can prove how many requests a pull made.

import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface AccessLogEntry {
  method: string;
  path: string;
  status: number;
}

export interface RegistryOptions {
  /** Extra YAML appended under `auth:` e.g. htpasswd or token. Given as a raw YAML block. */
  authYaml?: string;
  /** Extra files written into the registry's dir before start: name -> contents. */
  files?: Record<string, string | Buffer>;
  /** Serve HTTPS with this certificate and key (PEM file paths); `url` is then https://. */
  tls?: { certFile: string; keyFile: string };
}

export interface TestRegistry {
  readonly host: string; // 127.0.0.1:PORT
  readonly port: number;
  readonly url: string; // http://127.0.0.1:PORT
  readonly dir: string; // temp dir; storage under dir/data
  readonly storageDir: string;
  /** Access log entries seen so far. */
  requests(): AccessLogEntry[];
  /**
   * Forgets every request answered so far (call before the step you count): waits for the access
   * log to catch up first (settle), so a late line of an earlier step is not counted as the next one's.
   */
  resetRequests(): Promise<void>;
  /**
   * Waits until the access log has caught up with every response already received: sends a
   * marker request and returns once the registry has logged it (markers never show in requests()).
   */
  settle(): Promise<void>;
  stop(): Promise<void>;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      const port = typeof a === 'object' && a ? a.port : 0;
      s.close(() => resolve(port));
    });
  });
}

function tcpConnect(port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const sock = connect(port, '127.0.0.1', () => {
      sock.destroy();
      resolve();
    });
    sock.once('error', reject);
  });
}

const MARKER_PARAM = 'spoke-settle-marker';

/** One GET to the registry's base endpoint, the answer read and dropped (TLS: the test's own certificate, not checked). */
function markerRequest(port: number, tls: boolean, marker: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = (tls ? httpsRequest : httpRequest)({ host: '127.0.0.1', port, path: `/v2/?${MARKER_PARAM}=${marker}`, method: 'GET', rejectUnauthorized: false, agent: false }, (res) => {
      res.resume();
      res.once('end', resolve);
      res.once('error', reject);
    });
    req.once('error', reject);
    req.end();
  });
}

const ACCESS_RE = /^\S{1,64} - \S{1,256} \[[^\]]{1,64}\] "([A-Z]{1,10}) (\S{1,2048}) HTTP\/[0-9.]{1,4}" ([0-9]{3}) /;

/** The port freePort() found was taken by another process before the registry bound it. */
class PortTaken extends Error {}

/**
 * Starts docker-registry on a free port of 127.0.0.1. freePort() closes the port it found before
 * the registry binds it, so another test file's server may take it first: the registry then
 * exits, and a marker request answered by the other server never reaches this registry's log.
 * Either way it is started again on another port.
 */
export async function startRegistry(opts: RegistryOptions = {}): Promise<TestRegistry> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await startRegistryOn(await freePort(), opts);
    } catch (e) {
      if (!(e instanceof PortTaken) || attempt >= 5) throw e;
    }
  }
}

async function startRegistryOn(port: number, opts: RegistryOptions): Promise<TestRegistry> {
  const dir = mkdtempSync(join(tmpdir(), 'spoke-reg-'));
  const storageDir = join(dir, 'data');
  mkdirSync(storageDir);
  for (const [name, body] of Object.entries(opts.files ?? {})) writeFileSync(join(dir, name), body);
  const config = [
    'version: 0.1',
    'log: { level: error, accesslog: { disabled: false } }',
    'storage:',
    `  filesystem: { rootdirectory: ${storageDir} }`,
    '  delete: { enabled: true }',
    '  cache: { blobdescriptor: "" }',
    `http: { addr: 127.0.0.1:${port}, secret: spoke-test-secret${
      opts.tls ? `, tls: { certificate: ${opts.tls.certFile}, key: ${opts.tls.keyFile} }` : ''
    } }`,
    ...(opts.authYaml ? ['auth:', ...opts.authYaml.split('\n').map((l) => `  ${l}`)] : []),
  ].join('\n');
  writeFileSync(join(dir, 'config.yml'), config + '\n');
  const child: ChildProcess = spawn('docker-registry', ['serve', join(dir, 'config.yml')], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log: AccessLogEntry[] = [];
  let pending = '';
  // The last of what it printed, for the error when it does not start.
  let tail = '';
  const markers = new Map<string, () => void>();
  const onData = (chunk: Buffer) => {
    pending += chunk.toString('utf8');
    tail = (tail + chunk.toString('utf8')).slice(-2000);
    let nl;
    while ((nl = pending.indexOf('\n')) >= 0) {
      const line = pending.slice(0, nl);
      pending = pending.slice(nl + 1);
      const m = ACCESS_RE.exec(line);
      if (!m) continue;
      const marker = new URL(m[2]!, 'http://x').searchParams.get(MARKER_PARAM);
      if (marker !== null) markers.get(marker)?.();
      else log.push({ method: m[1]!, path: m[2]!, status: Number(m[3]) });
    }
  };
  const settle = async (): Promise<void> => {
    const marker = randomBytes(8).toString('hex');
    const logged = new Promise<void>((resolve) => markers.set(marker, resolve));
    await markerRequest(port, opts.tls !== undefined, marker);
    await logged;
    markers.delete(marker);
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  const exited = new Promise<never>((_resolve, reject) => child.once('exit', (code) => reject(new PortTaken(`docker-registry exited with ${code} on port ${port}: ${tail}`))));
  exited.catch(() => undefined);
  const giveUp = (e: Error) => {
    if (child.exitCode === null) child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
    return e;
  };
  const url = `${opts.tls ? 'https' : 'http'}://127.0.0.1:${port}`;
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (child.exitCode !== null) throw giveUp(new PortTaken(`docker-registry exited with ${child.exitCode} on port ${port}: ${tail}`));
    try {
      // With TLS the certificate is the test's own: a TCP connect says the registry is up.
      if (opts.tls) {
        await tcpConnect(port);
        break;
      }
      const r = await fetch(`${url}/v2/`);
      await r.arrayBuffer();
      if (r.status === 200 || r.status === 401) break;
    } catch {
      /* not up yet */
    }
    if (Date.now() > deadline) throw giveUp(new Error(`docker-registry did not start within 10 s: ${tail}`));
    await new Promise((r) => setTimeout(r, 30));
  }
  // The start-up probes are logged too: wait for them, then forget them. A marker that never
  // shows in this registry's log went to another server on the port.
  try {
    await Promise.race([settle(), exited]);
  } catch (e) {
    if (e instanceof PortTaken) throw giveUp(e);
    // The marker failed: another server on the port (which reset it) while this registry, unable
    // to bind, is exiting. Its exit says so; one that stays up is another failure.
    const gone = await Promise.race([exited.catch(() => true), new Promise<false>((r) => setTimeout(() => r(false), 5000).unref())]);
    throw giveUp(gone ? new PortTaken(`docker-registry exited on port ${port}: ${tail}`) : (e as Error));
  }
  log = [];
  return {
    host: `127.0.0.1:${port}`,
    port,
    url,
    dir,
    storageDir,
    requests: () => log.slice(),
    resetRequests: async () => {
      await settle();
      log = [];
    },
    settle,
    stop: async () => {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Path of a blob's data file in the registry's filesystem storage (for tampering tests). */
export function registryBlobPath(reg: TestRegistry, digest: string): string {
  const hex = digest.slice('sha256:'.length);
  return join(reg.storageDir, 'docker/registry/v2/blobs/sha256', hex.slice(0, 2), hex, 'data');
}
