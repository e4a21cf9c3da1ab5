// The exec credential plugins of a kubeconfig, run by spoke (src/controller/kube-credentials.ts,
// docs/binding.md#kubeconfig-and-credentials): real plugins (shell scripts in a temp dir), asked
// through client-node's own entry to the credential step (applyToHTTPSOptions), no API server.
// Each plugin appends `run PID` to a file, so the test counts its runs (and ends what was left).

import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { chmodSync, closeSync, copyFileSync, existsSync, openSync, readFileSync, writeFileSync, writeSync } from 'node:fs';
import type { RequestOptions } from 'node:https';
import { createServer, type AddressInfo } from 'node:net';
import { delimiter, join } from 'node:path';
import { after, describe, it } from 'node:test';
import { KubeConfig } from '@kubernetes/client-node';
import { loadKubeConfig } from '../../../src/controller/kube.js';
import { noteApiStatus, takeOverCredentials, withCallSignal, type KubeCredentialOptions } from '../../../src/controller/kube-credentials.js';
import { tempDirMaker } from '../../helpers/temp-dirs.js';
import { waitFor, within } from '../../helpers/wait.js';

const tempDir = tempDirMaker('spoke-kube-plugin-');
/** The real setTimeout, for a test whose own timers are mocked. */
const realSetTimeout = setTimeout;

/** The files counting the plugins' runs, each line `run PID`. */
const runFiles: string[] = [];
const pidsIn = (file: string) => (existsSync(file) ? readFileSync(file, 'utf8').trim().split('\n').filter(Boolean).map((l) => Number(l.split(' ')[1])) : []);

type Members = Record<string, unknown>;

/** A kubeconfig whose user runs `body` (sh) as its exec plugin (with `o` added to its members), and the file that counts its runs. */
function withPlugin(body: string, o: { exec?: Members; cluster?: Members; user?: Members } = {}): { file: string; runs: () => number } {
  const dir = tempDir();
  const runs = join(dir, 'runs');
  runFiles.push(runs);
  const plugin = join(dir, 'plugin.sh');
  writeFileSync(plugin, `#!/bin/sh\necho "run $$" >> "$RUNS"\n${body}\n`);
  chmodSync(plugin, 0o755);
  const file = join(dir, 'kubeconfig');
  writeFileSync(
    file,
    JSON.stringify({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'c', cluster: { server: 'https://127.0.0.1:6443', ...o.cluster } }],
      users: [{ name: 'u', user: { exec: { apiVersion: 'client.authentication.k8s.io/v1', command: plugin, env: [{ name: 'RUNS', value: runs }], ...o.exec }, ...o.user } }],
      contexts: [{ name: 'c', context: { cluster: 'c', user: 'u' } }],
      'current-context': 'c',
    }),
  );
  return { file, runs: () => pidsIn(runs).length };
}

/** What the credential step puts into a request's options; `file` undefined: the default kubeconfig ($KUBECONFIG). */
async function credentialOf(file: string | undefined, o: KubeCredentialOptions = {}): Promise<RequestOptions> {
  const opts: RequestOptions = {};
  await within(loadKubeConfig(file, o).applyToHTTPSOptions(opts), 10_000, 'the credential step');
  return opts;
}

const answer = (status: Record<string, unknown>) => `printf '%s\\n' '${JSON.stringify({ apiVersion: 'client.authentication.k8s.io/v1', kind: 'ExecCredential', status })}'`;
const bearer = (opts: RequestOptions) => (opts.headers as Record<string, string>)['Authorization'];
const pluginFailure = (e: unknown) => (e as { reason?: unknown }).reason === 'CREDENTIAL_PLUGIN';

describe('kubeconfig exec credential plugins', () => {
  // A plugin the code under test left running (one waiting on its stdin) would keep the file's process alive.
  after(() => {
    for (const pid of runFiles.flatMap(pidsIn)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // ended
      }
    }
  });

  it('a token becomes the bearer token; a client certificate and key, the TLS client credential', async () => {
    const { file } = withPlugin(answer({ token: 'tok', clientCertificateData: 'CERT', clientKeyData: 'KEY' }));
    const opts = await credentialOf(file);
    assert.equal(bearer(opts), 'Bearer tok');
    assert.deepEqual([opts.cert, opts.key], ['CERT', 'KEY']);
  });

  it('a credential is kept until its expirationTimestamp, and one that expired runs the plugin again', async () => {
    const kept = withPlugin(answer({ token: 'tok', expirationTimestamp: new Date(Date.now() + 3_600_000).toISOString() }));
    const kc = loadKubeConfig(kept.file);
    await kc.applyToHTTPSOptions({});
    await kc.applyToHTTPSOptions({});
    assert.equal(kept.runs(), 1);
    const expired = withPlugin(answer({ token: 'tok', expirationTimestamp: '2020-01-01T00:00:00Z' }));
    const kc2 = loadKubeConfig(expired.file);
    await kc2.applyToHTTPSOptions({});
    await kc2.applyToHTTPSOptions({});
    assert.equal(expired.runs(), 2);
  });

  // client-go keeps such a credential for the process's life, unless the API server refuses it;
  // client-node ran the plugin again for every call.
  it('a credential without an expirationTimestamp is kept until the API server refuses it (401), as client-go keeps it, and the next call then runs the plugin again', async () => {
    const { file, runs } = withPlugin(answer({ token: 'tok' }));
    const kc = loadKubeConfig(file);
    for (let call = 0; call < 3; call++) {
      const opts: RequestOptions = {};
      await kc.applyToHTTPSOptions(opts);
      assert.equal(bearer(opts), 'Bearer tok');
    }
    assert.equal(runs(), 1, 'one run for every call');
    // Not a refused credential: a 403 says what it may do, and leaves it kept.
    noteApiStatus(kc, 403);
    await kc.applyToHTTPSOptions({});
    assert.equal(runs(), 1, 'kept after a 403');
    noteApiStatus(kc, 401);
    await kc.applyToHTTPSOptions({});
    await kc.applyToHTTPSOptions({});
    assert.equal(runs(), 2, 'one more run after the 401, kept again');
  });

  it('an expirationTimestamp that is not an RFC 3339 time with a zone is CREDENTIAL_PLUGIN, as client-go refuses it; one with an offset and fractional seconds is kept', async () => {
    for (const expirationTimestamp of ['01/01/2030', '2030-01-01T00:00:00', '2030-01-01', '2030-02-30T00:00:00Z', '2030-01-01T24:00:00Z', 'Tue, 01 Jan 2030 00:00:00 GMT']) {
      await assert.rejects(credentialOf(withPlugin(answer({ token: 'tok', expirationTimestamp })).file), pluginFailure, expirationTimestamp);
    }
    const kept = withPlugin(answer({ token: 'tok', expirationTimestamp: '2999-01-01T00:00:00.123456789+02:00' }));
    const kc = loadKubeConfig(kept.file);
    await kc.applyToHTTPSOptions({});
    await kc.applyToHTTPSOptions({});
    assert.equal(kept.runs(), 1);
  });

  it('an answer of another apiVersion than its kubeconfig names, or not an ExecCredential, is CREDENTIAL_PLUGIN; a v1beta1 plugin answers in v1beta1', async () => {
    const v1beta1 = 'client.authentication.k8s.io/v1beta1';
    const reply = (doc: Record<string, unknown>) => `printf '%s\\n' '${JSON.stringify({ status: { token: 'tok' }, ...doc })}'`;
    for (const doc of [{ apiVersion: v1beta1, kind: 'ExecCredential' }, { kind: 'ExecCredential' }, { apiVersion: 'client.authentication.k8s.io/v1', kind: 'Status' }]) {
      await assert.rejects(credentialOf(withPlugin(reply(doc)).file), pluginFailure, JSON.stringify(doc));
    }
    const { file } = withPlugin(reply({ apiVersion: v1beta1, kind: 'ExecCredential' }), { exec: { apiVersion: v1beta1 } });
    assert.equal(bearer(await credentialOf(file)), 'Bearer tok');
  });

  // Its stderr may hold what it was given or got (`set -x`, a URL with a code): it is in no
  // message and no log line (docs/security-model.md#bounded-everything).
  it('a plugin that fails is CREDENTIAL_PLUGIN with its exit status; what it wrote to stderr is neither in the message nor logged', async () => {
    const { file } = withPlugin("echo '+ curl https://idp.example/token?code=SECRET-CODE' >&2\necho 'error: refresh token SECRET expired' >&2\nexit 3");
    const logs: Record<string, unknown>[] = [];
    await assert.rejects(credentialOf(file, { log: (e) => void logs.push(e) }), (e: unknown) => pluginFailure(e) && (e as { context?: { status?: unknown } }).context?.status === 3 && !(e as Error).message.includes('SECRET'));
    assert.ok(!JSON.stringify(logs).includes('SECRET'), JSON.stringify(logs));
  });

  it('a plugin that cannot be run, or writes no ExecCredential, is CREDENTIAL_PLUGIN', async () => {
    const { file } = withPlugin('', { exec: { command: '/absent/plugin' } });
    await assert.rejects(credentialOf(file), (e: unknown) => pluginFailure(e) && (e as { context?: { errno?: unknown } }).context?.errno === 'ENOENT');
    for (const body of ["echo 'not json'", answer({}), answer({ clientCertificateData: 'CERT' })]) {
      await assert.rejects(credentialOf(withPlugin(body).file), pluginFailure, body);
    }
  });

  it('a plugin that could not be run is run again at the next call: installed meanwhile, it answers; no run leaves its exit hook behind', async () => {
    const exitHooks = process.listenerCount('exit');
    const { file, runs } = withPlugin(answer({ token: 'tok' }), { exec: { command: './later.sh' } });
    const kc = loadKubeConfig(file);
    await assert.rejects(kc.applyToHTTPSOptions({}), pluginFailure);
    copyFileSync(join(file, '..', 'plugin.sh'), join(file, '..', 'later.sh'));
    const opts: RequestOptions = {};
    await kc.applyToHTTPSOptions(opts);
    assert.equal(bearer(opts), 'Bearer tok');
    noteApiStatus(kc, 401);
    await kc.applyToHTTPSOptions({});
    assert.equal(runs(), 2);
    assert.equal(process.listenerCount('exit'), exitHooks, 'the hook that kills a run still going at the exit is removed when the run ends, its start failed or not');
  });

  it('a bare command is looked up in PATH and given its args; its environment is the controller\'s with the kubeconfig\'s env over it', async () => {
    const script = `printf '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"%s.%s"}}' "$SPOKE_TEST_PARENT" "$SPOKE_TEST_BOTH"`;
    const { file } = withPlugin('', { exec: { command: 'sh', args: ['-c', script], env: [{ name: 'SPOKE_TEST_BOTH', value: 'kubeconfig' }] } });
    Object.assign(process.env, { SPOKE_TEST_PARENT: 'controller', SPOKE_TEST_BOTH: 'controller' });
    try {
      assert.equal(bearer(await credentialOf(file)), 'Bearer controller.kubeconfig');
    } finally {
      delete process.env['SPOKE_TEST_PARENT'];
      delete process.env['SPOKE_TEST_BOTH'];
    }
  });

  it('a plugin that writes more than 1 MiB is ended then, as CREDENTIAL_PLUGIN, not read on until its time runs out; what it writes to stderr never holds it', async () => {
    await assert.rejects(credentialOf(withPlugin('exec yes').file, { timeoutMs: 8000 }), pluginFailure);
    // More than a pipe holds, which would stop a plugin whose stderr nobody reads.
    const { file } = withPlugin(`head -c 1048576 /dev/zero >&2\n${answer({ token: 'tok' })}`);
    assert.equal(bearer(await credentialOf(file, { timeoutMs: 8000 })), 'Bearer tok');
  });

  // node-fetch throws on such a header with the value in its message, which the reflector logged
  // at every retry; a client certificate and key are PEM text.
  it('a token with a character a header cannot carry, or a certificate or key that is not text, is CREDENTIAL_PLUGIN, and the message quotes none of it', async () => {
    for (const status of [{ token: 'SECRET-TOKEN\n' }, { token: 'SECRET TOKEN' }, { token: 'SECRET-T\u00f6KEN' }, { clientCertificateData: 'CERT', clientKeyData: 'SECRET-KEY\u0000' }]) {
      await assert.rejects(credentialOf(withPlugin(answer(status)).file), (e: unknown) => pluginFailure(e) && !(e as Error).message.includes('SECRET'), JSON.stringify(status));
    }
  });

  it("a command with a '/' that is not absolute is run from the directory of the kubeconfig file that defined the user, as client-go runs it, not from spoke's", async () => {
    const { file } = withPlugin(answer({ token: 'tok' }), { exec: { command: './plugin.sh' } });
    assert.equal(bearer(await credentialOf(file)), 'Bearer tok');
    // From $KUBECONFIG's list: the file that defined the user, not the first one.
    const first = join(tempDir(), 'kubeconfig');
    writeFileSync(first, JSON.stringify({ apiVersion: 'v1', kind: 'Config', clusters: [], users: [], contexts: [] }));
    const before = process.env['KUBECONFIG'];
    process.env['KUBECONFIG'] = [first, file].join(delimiter);
    try {
      assert.equal(bearer(await credentialOf(undefined)), 'Bearer tok');
    } finally {
      if (before === undefined) delete process.env['KUBECONFIG'];
      else process.env['KUBECONFIG'] = before;
    }
    // A user defined in two listed files is the first file's (client-go's merge): its plugin runs from there.
    const one = withPlugin(answer({ token: 'one' }), { exec: { command: './plugin.sh' } });
    const two = withPlugin(answer({ token: 'two' }), { exec: { command: './plugin.sh' } });
    for (const [list, token] of [[[one.file, two.file], 'Bearer one'], [[two.file, one.file], 'Bearer two']] as const) {
      process.env['KUBECONFIG'] = list.join(delimiter);
      try {
        const opts = await credentialOf(undefined).catch((e: unknown) => assert.fail(`KUBECONFIG=${list.join(delimiter)} is refused: ${String(e)}`));
        assert.equal(bearer(opts), token);
      } finally {
        if (before === undefined) delete process.env['KUBECONFIG'];
        else process.env['KUBECONFIG'] = before;
      }
    }
    // A kubeconfig read from no file has no directory to run it from.
    const unfiled = new KubeConfig();
    unfiled.loadFromString(readFileSync(file, 'utf8'));
    assert.throws(() => takeOverCredentials(unfiled, undefined), (e: unknown) => (e as { reason?: unknown }).reason === 'OPTION_INVALID');
  });

  // A process the plugin leaves running holds its stdout open: its end is the plugin's exit.
  it('a plugin answers with what it wrote by its exit: a process it left running that holds its stdout neither holds the call nor adds to the answer', async () => {
    const early = withPlugin(`${answer({ token: 'tok' })}\n(sleep 5) &`);
    assert.equal(bearer(await credentialOf(early.file, { timeoutMs: 2000 })), 'Bearer tok');
    const late = withPlugin(`(sleep 1; ${answer({ token: 'tok', expirationTimestamp: '2999-01-01T00:00:00Z' })}) &`);
    const kc = loadKubeConfig(late.file);
    await assert.rejects(within(kc.applyToHTTPSOptions({}), 900, 'the call'), pluginFailure);
    await assert.rejects(within(kc.applyToHTTPSOptions({}), 900, 'the call'), pluginFailure);
    assert.equal(late.runs(), 2, 'what came after the run ended was not kept');
  });

  // Its time bounds the plugin's run; once it exited, the read of its stdout is bounded by the
  // exit grace alone, and nothing is left to kill.
  it('a plugin that exited within its time is not failed DEADLINE, nor said killed, when its time runs out while its stdout is still read', async (t) => {
    const { file } = withPlugin(`sleep 600 &\necho "$!" > "$(dirname "$RUNS")/child"\n${answer({ token: 'tok' })}`);
    const dir = join(file, '..');
    // The run's timers are the test's; the polling below takes the real ones.
    t.mock.timers.enable({ apis: ['setTimeout'] });
    const logs: Record<string, unknown>[] = [];
    const kc = loadKubeConfig(file, { timeoutMs: 1000, exitGraceMs: 60_000, log: (e) => void logs.push(e) });
    const opts: RequestOptions = {};
    const outcome = kc.applyToHTTPSOptions(opts).then(
      () => 'answered',
      (e: unknown) => `failed: ${String((e as { reason?: unknown }).reason ?? e)}`,
    );
    // Its /proc entry goes when node reaps it, which is when node sees its exit.
    const exited = () => existsSync(join(dir, 'child')) && pidsIn(join(dir, 'runs')).every((pid) => !existsSync(`/proc/${pid}`));
    for (const until = Date.now() + 5000; !exited(); ) {
      assert.ok(Date.now() < until, 'the plugin exited within 5 s');
      await new Promise((r) => realSetTimeout(r, 5));
    }
    const child = Number(readFileSync(join(dir, 'child'), 'utf8'));
    try {
      t.mock.timers.tick(1000);
    } finally {
      // What held its stdout ends: the read ends there.
      process.kill(child, 'SIGKILL');
    }
    assert.equal(await outcome, 'answered');
    assert.equal(bearer(opts), 'Bearer tok');
    assert.ok(!logs.some((e) => String(e['msg']).includes('killed')), `nothing was killed, and no line says so: ${JSON.stringify(logs)}`);
  });

  it('KUBERNETES_EXEC_INFO tells the plugin, as client-go does, that it is not interactive, and the cluster when provideClusterInfo asks for it', async () => {
    const info = (file: string) => JSON.parse(readFileSync(join(file, '..', 'info'), 'utf8')) as unknown;
    const body = `printf '%s' "$KUBERNETES_EXEC_INFO" > "$(dirname "$RUNS")/info"\n${answer({ token: 'tok' })}`;
    const v1 = 'client.authentication.k8s.io/v1';
    const plain = withPlugin(body);
    await credentialOf(plain.file);
    assert.deepEqual(info(plain.file), { apiVersion: v1, kind: 'ExecCredential', spec: { interactive: false } });
    const cluster = { 'certificate-authority-data': 'Q0EtREFUQQ==', 'tls-server-name': 'api.example', 'proxy-url': 'http://proxy.example:3128' };
    const told = withPlugin(body, { exec: { provideClusterInfo: true }, cluster });
    await credentialOf(told.file);
    assert.deepEqual(info(told.file), { apiVersion: v1, kind: 'ExecCredential', spec: { interactive: false, cluster: { server: 'https://127.0.0.1:6443', ...cluster } } });
    // A CA file (relative: the kubeconfig's directory) is given as its content; so is skipping TLS verification.
    const fromFile = withPlugin(body, { exec: { provideClusterInfo: true }, cluster: { 'certificate-authority': 'ca.pem', 'insecure-skip-tls-verify': true } });
    writeFileSync(join(fromFile.file, '..', 'ca.pem'), 'CA-FILE');
    await credentialOf(fromFile.file);
    assert.deepEqual(info(fromFile.file), { apiVersion: v1, kind: 'ExecCredential', spec: { interactive: false, cluster: { server: 'https://127.0.0.1:6443', 'certificate-authority-data': Buffer.from('CA-FILE').toString('base64'), 'insecure-skip-tls-verify': true } } });
  });

  // client-go's exec authenticator (UpdateTransportConfig) steps aside for a kubeconfig that has
  // a token, basic auth or a client certificate and key.
  it('a user with a token, a username or a client certificate and key of its own does not run its plugin, as client-go does not', async () => {
    const cases: [Members, (o: RequestOptions) => unknown, unknown][] = [
      [{ token: 'static' }, bearer, 'Bearer static'],
      [{ username: 'name', password: 'word' }, (o) => o.auth, 'name:word'],
      [{ 'client-certificate-data': Buffer.from('STATIC-CERT').toString('base64'), 'client-key-data': Buffer.from('STATIC-KEY').toString('base64') }, (o) => String(o.cert), 'STATIC-CERT'],
    ];
    for (const [user, read, expected] of cases) {
      const { file, runs } = withPlugin(`${answer({ token: 'tok', clientCertificateData: 'CERT', clientKeyData: 'KEY' })}\nexit 1`, { user });
      assert.equal(read(await credentialOf(file)), expected, JSON.stringify(user));
      assert.equal(runs(), 0, JSON.stringify(user));
    }
  });

  it('a plugin that reads its stdin finds it empty, as a plugin that is not interactive does, instead of waiting for good', async () => {
    const { file } = withPlugin(`cat > /dev/null\n${answer({ token: 'tok' })}`);
    assert.equal(bearer(await credentialOf(file)), 'Bearer tok');
  });

  // What docs/binding.md#kubeconfig-and-credentials says of the oidc auth-provider, which stays
  // client-node's: a client-node that refreshes the token would make that page untrue.
  it('an expired oidc ID token fails the call at once, without asking the issuer', async () => {
    let asked = 0;
    const issuer = createServer((socket) => {
      asked++;
      socket.destroy();
    });
    await new Promise<void>((resolve) => issuer.listen(0, '127.0.0.1', resolve));
    try {
      const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
      const config = { 'client-id': 'spoke', 'refresh-token': 'r', 'idp-issuer-url': `https://127.0.0.1:${(issuer.address() as AddressInfo).port}`, 'id-token': `${b64({ alg: 'none' })}.${b64({ exp: 1000 })}.x` };
      const file = join(tempDir(), 'kubeconfig');
      writeFileSync(file, JSON.stringify({ apiVersion: 'v1', kind: 'Config', clusters: [{ name: 'c', cluster: { server: 'https://127.0.0.1:6443' } }], users: [{ name: 'u', user: { 'auth-provider': { name: 'oidc', config } } }], contexts: [{ name: 'c', context: { cluster: 'c', user: 'u' } }], 'current-context': 'c' }));
      await assert.rejects(credentialOf(file), /"server" must be an instance of URL/);
      assert.equal(asked, 0);
    } finally {
      issuer.close();
    }
  });

  // The calls the controller makes while it stops (the Lease release, the last status writes)
  // are sent with the credential kept (docs/binding.md#kubeconfig-and-credentials).
  it('once the credentials are closed, the plugin runs no more: a call fails (CLOSED) unless a credential is kept, which is still sent until the API server refuses it', async () => {
    const closed = (e: unknown) => (e as { reason?: unknown }).reason === 'CLOSED';
    const { file, runs } = withPlugin(answer({ token: 'tok' }));
    await assert.rejects(credentialOf(file, { signal: AbortSignal.abort() }), closed);
    assert.equal(runs(), 0);
    const lifetime = new AbortController();
    const kc = loadKubeConfig(file, { signal: lifetime.signal });
    await kc.applyToHTTPSOptions({});
    lifetime.abort();
    const opts: RequestOptions = {};
    await kc.applyToHTTPSOptions(opts).catch((e: unknown) => assert.fail(`the kept credential is not sent: ${String(e)}`));
    assert.equal(bearer(opts), 'Bearer tok');
    noteApiStatus(kc, 401);
    await assert.rejects(kc.applyToHTTPSOptions({}), closed);
    assert.equal(runs(), 1);
  });

  // A token with an expirationTimestamp (EKS: 15 min) is refreshed by a run of about a second:
  // a stop in it would otherwise leave the Lease release without a credential
  // (docs/binding.md#kubeconfig-and-credentials).
  it('a run under way when the credentials close is given the stop grace to answer: its credential serves the calls that waited and those made then, and none starts after', async () => {
    const closed = (e: unknown) => (e as { reason?: unknown }).reason === 'CLOSED';
    const { file, runs } = withPlugin(`read go < "$(dirname "$RUNS")/go"\n${answer({ token: 'tok' })}`);
    const go = join(file, '..', 'go');
    execFileSync('mkfifo', [go]);
    // Open for reading and writing: neither this open nor the plugin's waits for the other, and
    // what is written never blocks, whether the plugin reads it or not.
    const fd = openSync(go, 'r+');
    try {
      const lifetime = new AbortController();
      const logs: Record<string, unknown>[] = [];
      // A grace no machine's load runs out.
      const kc = loadKubeConfig(file, { signal: lifetime.signal, stopGraceMs: 60_000, log: (e) => void logs.push(e) });
      const outcome = (opts: RequestOptions) => kc.applyToHTTPSOptions(opts).then(
        () => bearer(opts),
        (e: unknown) => `failed: ${String((e as { reason?: unknown }).reason ?? e)}`,
      );
      const waited = outcome({});
      await waitFor(() => runs() === 1, { timeoutMs: 5000, what: 'the plugin to start' });
      lifetime.abort();
      const made = outcome({});
      writeSync(fd, 'go\n');
      assert.equal(await within(waited, 10_000, 'the call that waited'), 'Bearer tok');
      assert.equal(await within(made, 10_000, 'the call made while stopping'), 'Bearer tok');
      assert.ok(!logs.some((e) => e['reason'] === 'CLOSED'), JSON.stringify(logs));
      noteApiStatus(kc, 401);
      await assert.rejects(kc.applyToHTTPSOptions({}), closed);
      assert.equal(runs(), 1);
    } finally {
      closeSync(fd);
    }
  });

  it('a run under way when the credentials close that does not answer within the stop grace is killed then, with the processes it started (CLOSED)', async () => {
    const { file, runs } = withPlugin(`sleep 600 &\necho "$!" > "$(dirname "$RUNS")/child"\nwait`);
    const lifetime = new AbortController();
    const logs: Record<string, unknown>[] = [];
    const kc = loadKubeConfig(file, { signal: lifetime.signal, stopGraceMs: 50, log: (e) => void logs.push(e) });
    const call = kc.applyToHTTPSOptions({});
    call.catch(() => undefined);
    await waitFor(() => runs() === 1 && existsSync(join(file, '..', 'child')), { timeoutMs: 5000, what: 'the plugin to start' });
    lifetime.abort();
    await assert.rejects(within(call, 10_000, 'the call'), (e: unknown) => (e as { reason?: unknown }).reason === 'CLOSED');
    const line = logs.find((e) => e['reason'] === 'CLOSED');
    assert.match(String(line?.['msg']), /was killed, with the processes it started/, JSON.stringify(logs));
    const child = Number(readFileSync(join(file, '..', 'child'), 'utf8'));
    await waitFor(() => !existsSync(`/proc/${child}`) || /^\d+ \(.*\) Z /.test(readFileSync(`/proc/${child}/stat`, 'utf8')), { timeoutMs: 5000, what: 'the process it started to be killed' });
  });

  // No timer runs once the process exits (its time, the stop grace): the exit itself kills the run.
  it('a plugin still running when the process exits is killed then, with the processes it started, also in its stop grace', async () => {
    const kube = new URL('../../../src/controller/kube.js', import.meta.url).href;
    for (const stopping of [false, true]) {
      const { file } = withPlugin(`sleep 600 &\necho "$!" > "$(dirname "$RUNS")/child"\nwait`);
      const childFile = join(file, '..', 'child');
      const script = [
        `import { existsSync } from 'node:fs';`,
        `import { loadKubeConfig } from ${JSON.stringify(kube)};`,
        `const lifetime = new AbortController();`,
        `loadKubeConfig(${JSON.stringify(file)}, { signal: lifetime.signal, stopGraceMs: 600000 }).applyToHTTPSOptions({}).catch(() => undefined);`,
        `const started = () => existsSync(${JSON.stringify(childFile)}) ? (${stopping ? 'lifetime.abort(), ' : ''}process.exit(0)) : setTimeout(started, 5);`,
        `started();`,
      ].join('\n');
      const node = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'ignore', 'inherit'] });
      const [code] = (await within(once(node, 'exit'), 10_000, 'the process to exit')) as [number | null];
      assert.equal(code, 0);
      const pids = [...pidsIn(join(file, '..', 'runs')), Number(readFileSync(childFile, 'utf8'))];
      const gone = (pid: number) => !existsSync(`/proc/${pid}`) || /^\d+ \(.*\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
      await waitFor(() => pids.every(gone), { timeoutMs: 5000, what: `the plugin and the process it started to be killed (${stopping ? 'in the stop grace' : 'running'})` });
    }
  });

  // On the wall clock, a step (NTP correcting a node that booted with its RTC off) would show in it.
  it('how long a plugin has run, in the lines that say a request stopped waiting for it (CANCELLED) and that it was killed at the stop (CLOSED), is measured on the monotonic clock', async () => {
    const { file, runs } = withPlugin('exec sleep 600');
    let clock = 1000;
    const lifetime = new AbortController();
    const logs: Record<string, unknown>[] = [];
    const kc = loadKubeConfig(file, { signal: lifetime.signal, stopGraceMs: 0, now: () => clock, log: (e) => void logs.push(e) });
    const request = new AbortController();
    const left = withCallSignal(request.signal, () => kc.applyToHTTPSOptions({}));
    const waiting = kc.applyToHTTPSOptions({});
    await waitFor(() => runs() === 1, { timeoutMs: 5000, what: 'the plugin to start' });
    clock += 3000;
    request.abort();
    await assert.rejects(left, (e: unknown) => (e as { reason?: unknown }).reason === 'CANCELLED');
    clock += 5000;
    lifetime.abort();
    await assert.rejects(within(waiting, 10_000, 'the call waiting'), (e: unknown) => (e as { reason?: unknown }).reason === 'CLOSED');
    assert.deepEqual(
      logs.map((e) => [e['reason'], e['runningMs']]),
      [
        ['CANCELLED', 3000],
        ['CLOSED', 8000],
      ],
    );
  });
});
