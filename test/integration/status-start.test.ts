// `spoke status` before a restart or an upgrade (docs/shim.md#restarts-and-upgrades): every file
// a shim starting now refuses to start on fails status too, as its own part, with the reason the
// shim gives, and status changes nothing on the way. And a shim that answers UNAVAILABLE (its
// runtime is down) is told apart from a socket nobody answers on, from a server there that is
// not gRPC, and from the shim's own refusal.

import assert from 'node:assert/strict';
import { createServer as createHttpServer } from 'node:http';
import { createServer as createHttp2Server } from 'node:http2';
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { rootCertificates } from 'node:tls';
import { after, before, describe, it } from 'node:test';
import { SpokeError } from '../../src/core/errors.js';
import { defaultBaselinePath } from '../../src/config/index.js';
import { toGrpcStatus } from '../../src/cri/grpc-status.js';
import { endWithStatus } from '../../src/cri/unary.js';
import { spoke } from '../helpers/cli.js';
import { unsignedPolicy } from '../helpers/node.js';
import { startShim, stopShim, type ShimProc } from '../helpers/shim.js';

const shippedBaseline = fileURLToPath(new URL('../../../policy/seccomp-baseline.json', import.meta.url));

/** The reason at the end of the CLI's error line (docs/troubleshooting.md#where-errors-show-up), among the shim's JSON log lines. */
const reasonOf = (stderr: string): string | undefined => /^[A-Za-z]+: .*\(reason ([A-Z_]+)\)$/m.exec(stderr)?.[1];

describe('spoke status checks what the shim refuses to start on', { timeout: 120_000 }, () => {
  let dir: string;
  let policy: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'spoke-status-start-'));
    policy = join(dir, 'policy.yaml');
    writeFileSync(policy, unsignedPolicy(['registry.example/profiles']));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  /** A config of its own dirs; `extra` lines added. No runtime behind it. */
  const configWith = (name: string, extra: string[]): { config: string; seccompRoot: string; storeDir: string } => {
    const seccompRoot = join(dir, name, 'seccomp');
    const storeDir = join(dir, name, 'store');
    mkdirSync(join(dir, name), { recursive: true });
    const config = join(dir, name, 'config.yaml');
    writeFileSync(config, [`policy: ${policy}`, `storeDir: ${storeDir}`, `seccompRoot: ${seccompRoot}`, `listen: ${join(dir, name, 'spoke.sock')}`, `upstream: ${join(dir, name, 'none.sock')}`, ...extra].join('\n') + '\n');
    return { config, seccompRoot, storeDir };
  };

  /** A file every user may write. */
  const writeOpen = (file: string, data: string | Buffer) => {
    writeFileSync(file, data);
    chmodSync(file, 0o666);
  };
  /** A file kept by `uid`:`gid` with `mode`. */
  const writeKeptBy = (file: string, data: string | Buffer, uid: number, gid: number, mode: number) => {
    writeFileSync(file, data);
    chmodSync(file, mode);
    chownSync(file, uid, gid);
  };
  // `args`: the shim's flags, which status takes too (--recording: the recording key is read only
  // then; --recording-key: the key file, which wins over the config's).
  const cases: { part: string; extra: (d: string) => string[]; setup?: (d: string) => void; args?: (d: string) => string[] }[] = [
    { part: 'authFile', extra: (d) => [`authFile: ${join(d, 'missing-auth.json')}`] },
    { part: 'authFile', extra: (d) => [`authFile: ${join(d, 'auth.json')}`], setup: (d) => writeFileSync(join(d, 'auth.json'), '{"auths": [') },
    { part: 'caFile', extra: (d) => [`caFile: ${join(d, 'missing-ca.pem')}`] },
    { part: 'caFile', extra: (d) => [`caFile: ${join(d, 'ca.pem')}`], setup: (d) => writeFileSync(join(d, 'ca.pem'), 'not a certificate\n') },
    { part: 'runtimeDefault', extra: (d) => [`runtimeDefault: ${join(d, 'rd.json')}`], setup: (d) => writeFileSync(join(d, 'rd.json'), '{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["read"],"action":"SCMP_ACT_NOPE"}]}') },
    { part: 'runtimeDefault', extra: (d) => [`runtimeDefault: ${join(d, 'missing-rd.json')}`] },
    { part: 'recordingKey', extra: (d) => [`recordingKey: ${join(d, 'key')}`], setup: (d) => writeFileSync(join(d, 'key'), 'short'), args: () => ['--recording'] },
    // A good key in the config, a bad one by flag: the shim reads the flag's, and refuses it.
    {
      part: 'recordingKey',
      extra: (d) => [`recordingKey: ${join(d, 'good-key')}`],
      setup: (d) => {
        writeFileSync(join(d, 'good-key'), 'k'.repeat(32));
        writeFileSync(join(d, 'flag-key'), 'short');
      },
      args: (d) => ['--recording', '--recording-key', join(d, 'flag-key')],
    },
    { part: 'listen', extra: () => [], setup: (d) => writeFileSync(join(d, 'spoke.sock'), 'not a socket') },
    // The shim's file flags, which status takes as the shim does: a bad file by flag over a good
    // one (or none) in the config is the one both read.
    {
      part: 'caFile',
      extra: (d) => [`caFile: ${join(d, 'good-ca.pem')}`],
      setup: (d) => {
        writeFileSync(join(d, 'good-ca.pem'), rootCertificates[0]!);
        writeFileSync(join(d, 'flag-ca.pem'), 'not a certificate\n');
      },
      args: (d) => ['--ca-file', join(d, 'flag-ca.pem')],
    },
    { part: 'authFile', extra: () => [], setup: (d) => writeFileSync(join(d, 'flag-auth.json'), '{"auths": ['), args: (d) => ['--auth-file', join(d, 'flag-auth.json')] },
    { part: 'baseline', extra: () => [], setup: (d) => writeFileSync(join(d, 'flag-baseline.json'), '{"defaultAction":'), args: (d) => ['--baseline', join(d, 'flag-baseline.json')] },
    { part: 'listen', extra: () => [], setup: (d) => writeFileSync(join(d, 'flag.sock'), 'not a socket'), args: (d) => ['--listen', join(d, 'flag.sock')] },
    // A socket directory any user could write: whoever answers there gets every pod's spec.
    { part: 'listen', extra: () => [], setup: (d) => (mkdirSync(join(d, 'open-run')), chmodSync(join(d, 'open-run'), 0o1777)), args: (d) => ['--listen', join(d, 'open-run', 'spoke.sock')] },
    // ... and one still to make, under such a directory.
    { part: 'listen', extra: () => [], setup: (d) => (mkdirSync(join(d, 'open-up')), chmodSync(join(d, 'open-up'), 0o777)), args: (d) => ['--listen', join(d, 'open-up', 'run', 'spoke', 'spoke.sock')] },
    // Files any user could have written (src/cli/trusted-file.ts): a baseline, and a recording key.
    { part: 'baseline', extra: () => [], setup: (d) => writeOpen(join(d, 'open-baseline.json'), readFileSync(defaultBaselinePath())), args: (d) => ['--baseline', join(d, 'open-baseline.json')] },
    { part: 'recordingKey', extra: (d) => [`recordingKey: ${join(d, 'open-key')}`], setup: (d) => writeOpen(join(d, 'open-key'), 'k'.repeat(32)), args: () => ['--recording'] },
    // The registries' trust and the node's credentials, and the runtime default a RuntimeDefault
    // base means: good files, but any user could have written them.
    { part: 'authFile', extra: (d) => [`authFile: ${join(d, 'open-auth.json')}`], setup: (d) => writeOpen(join(d, 'open-auth.json'), '{"auths": {}}') },
    { part: 'caFile', extra: (d) => [`caFile: ${join(d, 'open-ca.pem')}`], setup: (d) => writeOpen(join(d, 'open-ca.pem'), rootCertificates[0]!) },
    { part: 'runtimeDefault', extra: (d) => [`runtimeDefault: ${join(d, 'open-rd.json')}`], setup: (d) => writeOpen(join(d, 'open-rd.json'), readFileSync(defaultBaselinePath())) },
    // Good files another user keeps, or a group other than root's may write.
    { part: 'caFile', extra: (d) => [`caFile: ${join(d, 'owned-ca.pem')}`], setup: (d) => writeKeptBy(join(d, 'owned-ca.pem'), rootCertificates[0]!, 12345, 12345, 0o644) },
    { part: 'authFile', extra: (d) => [`authFile: ${join(d, 'group-auth.json')}`], setup: (d) => writeKeptBy(join(d, 'group-auth.json'), '{"auths": {}}', 0, 12345, 0o660) },
  ];

  for (const [i, c] of cases.entries()) {
    it(`${c.part} (${i}): status fails that part with the reason the shim refuses to start with, and changes nothing`, async () => {
      const name = `case-${i}`;
      const { config, seccompRoot, storeDir } = configWith(name, c.extra(join(dir, name)));
      c.setup?.(join(dir, name));
      const args = c.args?.(join(dir, name)) ?? [];
      const listenBefore = existsSync(join(dir, name, 'spoke.sock')) ? readFileSync(join(dir, name, 'spoke.sock')) : undefined;

      const status = await spoke(['status', '--config', config, '--json', ...args]);
      assert.equal(status.code, 1, status.stderr);
      const s = JSON.parse(status.stdout) as Record<string, { ok: boolean; reason?: string; file?: string }> & { ok: boolean };
      assert.equal(s.ok, false);
      const part = s[c.part];
      assert.ok(part, `status has a ${c.part} part: ${status.stdout}`);
      assert.equal(part.ok, false, status.stdout);
      assert.ok(part.file?.startsWith(join(dir, name)), `the part names its file: ${status.stdout}`);
      // Status wrote nothing: no effective directory, no store (locks), the listen path as it was.
      assert.equal(existsSync(join(seccompRoot, 'spoke')), false);
      assert.equal(existsSync(storeDir), false);
      if (listenBefore) assert.deepEqual(readFileSync(join(dir, name, 'spoke.sock')), listenBefore);

      const shim = await spoke(['shim', '--config', config, ...args]);
      assert.equal(shim.code, 1, shim.stderr);
      assert.equal(part.reason, reasonOf(shim.stderr), `status: ${status.stdout}\nshim: ${shim.stderr}`);
      assert.notEqual(part.reason, undefined);
    });
  }

  it('a node config any user could have written: status and the shim refuse it alike (FILE_UNSAFE), reading no file it names', async () => {
    const { config, storeDir } = configWith('open-config', []);
    chmodSync(config, 0o666);
    const status = await spoke(['status', '--config', config, '--json']);
    assert.notEqual(status.code, 0, status.stdout);
    assert.equal(reasonOf(status.stderr), 'FILE_UNSAFE', status.stderr);
    const shim = await spoke(['shim', '--config', config]);
    assert.notEqual(shim.code, 0);
    assert.equal(reasonOf(shim.stderr), 'FILE_UNSAFE', shim.stderr);
    assert.equal(existsSync(storeDir), false);
    // Kept by its owner alone, the same file is read.
    chmodSync(config, 0o644);
    const ok = await spoke(['status', '--config', config, '--json']);
    assert.equal((JSON.parse(ok.stdout) as { policy: { ok: boolean } }).policy.ok, true, ok.stdout);
  });

  it('--recording without a recordingKey: status --recording fails the recordingKey part with the reason the shim --recording refuses to start with', async () => {
    const { config } = configWith('unkeyed', []);
    const status = await spoke(['status', '--config', config, '--json', '--recording']);
    assert.equal(status.code, 1, status.stderr);
    const part = (JSON.parse(status.stdout) as Record<string, { ok: boolean; reason?: string }>).recordingKey;
    assert.equal(part?.ok, false, status.stdout);
    const shim = await spoke(['shim', '--config', config, '--recording']);
    assert.equal(shim.code, 1, shim.stderr);
    assert.equal(part.reason, reasonOf(shim.stderr), `status: ${status.stdout}\nshim: ${shim.stderr}`);
    assert.equal(part.reason, 'RECORDING_UNPROVEN');
  });

  it('--recording-key FILE and no recordingKey in the config: status --recording checks the flag\'s key, as the shim reads it, and passes a good one', async () => {
    const { config } = configWith('flag-keyed', []);
    const key = join(dir, 'flag-keyed', 'key');
    writeFileSync(key, 'k'.repeat(32));
    const status = await spoke(['status', '--config', config, '--json', '--recording', '--recording-key', key]);
    const part = (JSON.parse(status.stdout) as Record<string, { ok: boolean; detail?: string }>).recordingKey;
    assert.deepEqual([part?.ok, part?.detail], [true, key], status.stdout);
  });

  it('--ca-file FILE, the shim\'s flag: status checks the flag\'s bundle, as the shim reads it, and passes a good one', async () => {
    const { config } = configWith('flag-ca', []);
    const ca = join(dir, 'flag-ca', 'ca.pem');
    writeFileSync(ca, rootCertificates[0]!);
    const status = await spoke(['status', '--config', config, '--json', '--ca-file', ca]);
    const part = (JSON.parse(status.stdout) as Record<string, { ok: boolean; detail?: string }>).caFile;
    assert.deepEqual([part?.ok, part?.detail], [true, ca], status.stdout);
  });

  it("the shim's whole command line: status takes every flag the shim takes, says which it does not check, and refuses what the shim refuses", async () => {
    const name = 'whole-line';
    const d = join(dir, name);
    const { config, seccompRoot, storeDir } = configWith(name, []);
    writeFileSync(join(d, 'key'), 'k'.repeat(32));
    writeFileSync(join(d, 'auth.json'), '{"auths": {}}');
    writeFileSync(join(d, 'ca.pem'), rootCertificates[0]!);
    const line = [
      ...['--config', config, '--listen', join(d, 'spoke.sock'), '--store', storeDir, '--seccomp-root', seccompRoot, '--baseline', shippedBaseline, '--policy', policy],
      ...['--auth-file', join(d, 'auth.json'), '--ca-file', join(d, 'ca.pem'), '--recording', '--recording-key', join(d, 'key')],
      ...['--upstream', join(d, 'runtime.sock'), '--metrics', '127.0.0.1:9464', '--log-level', 'debug', '--annotations'],
    ];
    // Every flag the shim's --help lists is on that line: a flag added to the shim is one status takes.
    const shimFlags = [...(await spoke(['shim', '--help'])).stdout.matchAll(/^ {2}(--[a-z-]+)/gm)].map((m) => m[1]);
    assert.deepEqual(shimFlags.filter((f) => !line.includes(f!)), [], 'the line has every flag of spoke shim --help');

    const json = await spoke(['status', ...line, '--json']);
    assert.equal(json.code, 1, `checked, failing on the shim part only (no shim runs): ${json.stderr}`);
    const s = JSON.parse(json.stdout) as Record<string, { ok: boolean }> & { ignoredFlags: string[] };
    assert.deepEqual(s.ignoredFlags, ['--upstream', '--metrics', '--log-level', '--annotations'], json.stdout);
    const parts = ['policy', 'baseline', 'authFile', 'caFile', 'recordingKey', 'store', 'listen', 'shim'];
    assert.deepEqual(parts.map((p) => s[p]?.ok), [true, true, true, true, true, true, true, false], json.stdout);
    const text = await spoke(['status', ...line]);
    assert.deepEqual(
      text.stdout.split('\n').filter((l) => l.startsWith('note ')),
      ['note accepted, not checked (status checks nothing they name): --upstream, --metrics, --log-level, --annotations'],
      text.stdout,
    );
    // Without them: no note, and an empty list.
    assert.doesNotMatch((await spoke(['status', '--config', config])).stdout, /^note /m);
    assert.deepEqual((JSON.parse((await spoke(['status', '--config', config, '--json'])).stdout) as { ignoredFlags: string[] }).ignoredFlags, []);

    // Values are read as the shim reads them: what it refuses, status refuses, the same way.
    for (const bad of [['--annotations=yes'], ['--log-level', 'loud'], ['--metrics', 'no-port'], ['--no-such-flag']]) {
      const st = await spoke(['status', '--config', config, '--json', ...bad]);
      const sh = await spoke(['shim', '--config', config, ...bad]);
      assert.deepEqual([st.code, st.stdout], [sh.code, ''], `${bad.join(' ')}: status ${st.stderr}\nshim ${sh.stderr}`);
      assert.notEqual(st.code, 0, bad.join(' '));
      assert.equal(reasonOf(st.stderr), reasonOf(sh.stderr), `${bad.join(' ')}: status ${st.stderr}\nshim ${sh.stderr}`);
    }
  });

  it('a recordingKey the shim would refuse, without --recording: a warning with its reason, not a failure (the shim without --recording never reads it)', async () => {
    const { config } = configWith('unread-key', [`recordingKey: ${join(dir, 'unread-key', 'key')}`]);
    writeFileSync(join(dir, 'unread-key', 'key'), 'short');
    const status = await spoke(['status', '--config', config, '--json']);
    const part = (JSON.parse(status.stdout) as Record<string, { ok: boolean; reason?: string; warning?: string; file?: string }>).recordingKey;
    assert.deepEqual([part?.ok, part?.reason, part?.file, typeof part?.warning], [true, 'KEY_INVALID', join(dir, 'unread-key', 'key'), 'string'], status.stdout);
    const text = await spoke(['status', '--config', config]);
    assert.match(text.stdout, /^warn recordingKey\s.*\(reason KEY_INVALID\)$/m);
  });

  it('a store that exists: status reads it and makes, re-modes and locks nothing in it', async () => {
    const name = 'store-there';
    const { config, storeDir } = configWith(name, []);
    mkdirSync(join(storeDir, 'profiles'), { recursive: true, mode: 0o755 });
    chmodSync(storeDir, 0o755);
    const before = readdirSync(storeDir, { recursive: true }).sort();
    const status = await spoke(['status', '--config', config, '--json']);
    const s = JSON.parse(status.stdout) as Record<string, { ok: boolean; artifacts?: number }>;
    assert.equal(s.store?.ok, true, status.stdout);
    assert.equal(s.store?.artifacts, 0);
    assert.deepEqual(readdirSync(storeDir, { recursive: true }).sort(), before, 'no directory or lock file made');
    assert.equal(statSync(storeDir).mode & 0o777, 0o755, 'the store root keeps its mode');
  });

  it('with every file good and no shim running, those parts are ok', async () => {
    const name = 'good';
    const d = join(dir, name);
    const { config } = configWith(name, [`authFile: ${join(d, 'auth.json')}`, `runtimeDefault: ${join(d, 'rd.json')}`, `recordingKey: ${join(d, 'key')}`]);
    writeFileSync(join(d, 'auth.json'), '{"auths": {}}');
    writeFileSync(join(d, 'rd.json'), '{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW"}]}');
    writeFileSync(join(d, 'key'), 'k'.repeat(32));
    const s = JSON.parse((await spoke(['status', '--config', config, '--json'])).stdout) as Record<string, { ok: boolean }>;
    for (const p of ['policy', 'baseline', 'authFile', 'runtimeDefault', 'recordingKey', 'store', 'listen']) assert.equal(s[p]?.ok, true, `${p}: ${JSON.stringify(s[p])}`);
  });
});

describe('spoke status tells a shim whose runtime is down from a socket nobody answers on', { timeout: 120_000 }, () => {
  let dir: string;
  let shim: ShimProc | undefined;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'spoke-status-shim-'));
  });
  after(async () => {
    await stopShim(shim);
    rmSync(dir, { recursive: true, force: true });
  });

  it('the shim up with no runtime behind it: answering, the runtime unavailable (RUNTIME_ERROR); no shim: not answering (TRANSPORT)', async () => {
    const policy = join(dir, 'policy.yaml');
    writeFileSync(policy, unsignedPolicy(['registry.example/profiles']));
    const config = join(dir, 'config.yaml');
    // The upstream socket is never made: the shim serves, and answers UNAVAILABLE for the runtime.
    writeFileSync(config, [`policy: ${policy}`, `storeDir: ${join(dir, 'store')}`, `seccompRoot: ${join(dir, 'seccomp')}`, `listen: ${join(dir, 'spoke.sock')}`, `upstream: ${join(dir, 'none.sock')}`].join('\n') + '\n');

    const down = await spoke(['status', '--config', config, '--json']);
    assert.equal(down.code, 1);
    const before = JSON.parse(down.stdout) as { shim: { ok: boolean; answering?: boolean; reason?: string } };
    assert.deepEqual([before.shim.ok, before.shim.answering, before.shim.reason], [false, false, 'TRANSPORT'], down.stdout);

    shim = await startShim(['--config', config]);
    const up = await spoke(['status', '--config', config, '--json']);
    assert.equal(up.code, 1);
    const s = JSON.parse(up.stdout) as { listen: { ok: boolean }; shim: { ok: boolean; answering?: boolean; reason?: string } };
    assert.deepEqual([s.shim.ok, s.shim.answering, s.shim.reason], [false, true, 'RUNTIME_ERROR'], up.stdout);
    assert.equal(s.listen.ok, true, 'the running shim\'s socket is no refusal');
  });

  it('the shim up in front of a runtime that takes calls and never answers: answering, the runtime hangs (DEADLINE), not the shim\'s socket', async () => {
    await stopShim(shim);
    shim = undefined;
    const runtime = join(dir, 'hung.sock');
    // An HTTP/2 server that takes every stream and answers none, as a wedged runtime does.
    const hung = createHttp2Server();
    hung.on('stream', () => undefined);
    await new Promise<void>((resolve) => hung.listen(runtime, resolve));
    try {
      const policy = join(dir, 'policy.yaml');
      const config = join(dir, 'config-hung.yaml');
      writeFileSync(config, [`policy: ${policy}`, `storeDir: ${join(dir, 'store-hung')}`, `seccompRoot: ${join(dir, 'seccomp-hung')}`, `listen: ${join(dir, 'hung-spoke.sock')}`, `upstream: ${runtime}`].join('\n') + '\n');
      shim = await startShim(['--config', config]);
      const st = await spoke(['status', '--config', config, '--json']);
      assert.equal(st.code, 1);
      const s = JSON.parse(st.stdout) as { shim: { ok: boolean; answering?: boolean; reason?: string; detail: string } };
      assert.deepEqual([s.shim.ok, s.shim.answering, s.shim.reason], [false, true, 'DEADLINE'], st.stdout);
    } finally {
      await stopShim(shim);
      shim = undefined;
      hung.close();
    }
  });
});

describe('spoke status does not take an UNAVAILABLE that is not the runtime\'s for the runtime behind the shim', { timeout: 120_000 }, () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'spoke-status-other-'));
    writeFileSync(join(dir, 'policy.yaml'), unsignedPolicy(['registry.example/profiles']));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  /** Status's shim part with `server` listening at the config's listen path. */
  const shimPartWith = async (name: string, server: { listen(path: string, cb: () => void): unknown; close(): unknown }) => {
    const listen = join(dir, `${name}.sock`);
    const config = join(dir, `${name}.yaml`);
    writeFileSync(config, [`policy: ${join(dir, 'policy.yaml')}`, `storeDir: ${join(dir, `store-${name}`)}`, `seccompRoot: ${join(dir, `seccomp-${name}`)}`, `listen: ${listen}`].join('\n') + '\n');
    await new Promise<void>((resolve) => server.listen(listen, resolve));
    try {
      const st = await spoke(['status', '--config', config, '--json']);
      assert.equal(st.code, 1, st.stderr);
      return (JSON.parse(st.stdout) as { shim: { ok: boolean; answering?: boolean; reason?: string; detail: string } }).shim;
    } finally {
      server.close();
    }
  };

  it('an HTTP/2 server that is not gRPC (503, text/html): the socket is not a gRPC server (NOT_GRPC), not answering', async () => {
    const h2 = createHttp2Server((_req, res) => {
      res.writeHead(503, { 'content-type': 'text/html' });
      res.end('<html><body>Service Unavailable</body></html>');
    });
    const shim = await shimPartWith('h2', h2);
    assert.deepEqual([shim.ok, shim.answering, shim.reason], [false, false, 'NOT_GRPC'], shim.detail);
  });

  it('an HTTP/1 server: the socket is not a gRPC server (NOT_GRPC), not "nothing answers"', async () => {
    const h1 = createHttpServer((_req, res) => {
      res.writeHead(503);
      res.end('Service Unavailable');
    });
    const shim = await shimPartWith('h1', h1);
    assert.deepEqual([shim.ok, shim.answering, shim.reason], [false, false, 'NOT_GRPC'], shim.detail);
  });

  it("the shim's own overload refusal: the shim refused (OVERLOADED), not its runtime", async () => {
    // Every call refused as the shim refuses one past its body budget, by the shim's own encoder.
    const refusing = createHttp2Server();
    refusing.on('stream', (s) => {
      s.resume();
      const st = toGrpcStatus(new SpokeError('Unavailable', 'the shim is reading 67108864 bytes of request bodies already; try again', {}, { reason: 'OVERLOADED' }));
      endWithStatus(s, st.code, st.message, st.reason);
    });
    const shim = await shimPartWith('overloaded', refusing);
    assert.deepEqual([shim.ok, shim.answering, shim.reason], [false, true, 'OVERLOADED'], shim.detail);
    assert.doesNotMatch(shim.detail, /runtime behind it/);
  });
});
