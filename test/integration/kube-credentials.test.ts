// A kubeconfig whose user gets its credential from an exec plugin (client.authentication.k8s.io),
// with real plugins (shell scripts in a temp dir) and the in-test API server
// (test/helpers/fake-apiserver.ts), which takes only the plugin's token: the credential step of
// every client-node call spoke makes is spoke's own (src/controller/kube-credentials.ts,
// docs/binding.md#kubeconfig-and-credentials); its stop, with `spoke controller` as a process.
// Each plugin appends `run PID` (and a hung one `child PID`, the process it started) to a file,
// so the test sees which of its processes live.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { get } from 'node:https';
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { InformerBindingSource, KubeLeaseClient, loadKubeConfig } from '../../src/controller/kube.js';
import { LeaseElector, type LeaseClient } from '../../src/controller/lease.js';
import type { SpokeError } from '../../src/core/errors.js';
import { SPOKE_BIN } from '../helpers/cli.js';
import { FakeApiServer, PROFILE_BINDINGS, type ResourceDef } from '../helpers/fake-apiserver.js';
import { tempDirMaker } from '../helpers/temp-dirs.js';
import { makeTestCa } from '../helpers/tls.js';
import { waitFor, within } from '../helpers/wait.js';

const LEASES: ResourceDef = { group: 'coordination.k8s.io', version: 'v1', plural: 'leases', kind: 'Lease' };
const TOKEN = 'exec-plugin-token';
const TIMING = { leaseDurationMs: 2000, renewDeadlineMs: 1000, retryPeriodMs: 100 };
const tempDir = tempDirMaker('spoke-kube-exec-');

/** The processes a plugin's runs recorded in `file`: `run` lines are the plugin's own, `child` lines what it started. */
function processes(file: string): { runs: number[]; all: number[] } {
  const lines = existsSync(file) ? readFileSync(file, 'utf8').trim().split('\n').filter(Boolean) : [];
  const pid = (l: string) => Number(l.split(' ')[1]);
  return { runs: lines.filter((l) => l.startsWith('run ')).map(pid), all: lines.map(pid) };
}

/** Whether `pid` runs: a zombie (killed, and not yet reaped by init, which a killed plugin's child is left to) does not. */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return !/^\d+ \(.*\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

/** The files of the test's plugins: whatever process they name is ended once the tests ran, whatever the code under test left. */
const started: string[] = [];
function endStarted(): void {
  for (const pid of started.flatMap((file) => processes(file).all)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

/** A kubeconfig for `server` whose user runs `body` (sh) as its exec plugin; `$PIDS` is the file it records its processes in. */
function execKubeConfig(server: string, body: string): { file: string; pids: string } {
  const dir = tempDir();
  const pids = join(dir, 'pids');
  started.push(pids);
  const plugin = join(dir, 'plugin.sh');
  writeFileSync(plugin, `#!/bin/sh\necho "run $$" >> "$PIDS"\n${body}\n`);
  chmodSync(plugin, 0o755);
  const file = join(dir, 'kubeconfig');
  const exec = { apiVersion: 'client.authentication.k8s.io/v1', command: plugin, env: [{ name: 'PIDS', value: pids }], interactiveMode: 'Never' };
  writeFileSync(
    file,
    JSON.stringify({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'fake', cluster: { server, 'insecure-skip-tls-verify': true } }],
      users: [{ name: 'plugin-user', user: { exec } }],
      contexts: [{ name: 'fake', context: { cluster: 'fake', user: 'plugin-user', namespace: 'spoke-system' } }],
      'current-context': 'fake',
    }),
  );
  return { file, pids };
}

/** A plugin that answers with the token the API server takes, valid for an hour. */
const ANSWERS = `printf '%s\\n' '${JSON.stringify({ apiVersion: 'client.authentication.k8s.io/v1', kind: 'ExecCredential', status: { token: TOKEN, expirationTimestamp: new Date(Date.now() + 3_600_000).toISOString() } })}'`;
/** A plugin that answers with the token the API server takes, saying it never expires. */
const NEVER_EXPIRES = `printf '%s\\n' '${JSON.stringify({ apiVersion: 'client.authentication.k8s.io/v1', kind: 'ExecCredential', status: { token: TOKEN, expirationTimestamp: '9999-12-31T23:59:59Z' } })}'`;
/** A plugin that answers with the token the API server takes, without an expirationTimestamp: kept until the API server refuses it, as client-go keeps it. */
const NO_EXPIRY = `printf '%s\\n' '${JSON.stringify({ apiVersion: 'client.authentication.k8s.io/v1', kind: 'ExecCredential', status: { token: TOKEN } })}'`;
/** A plugin that never answers, and whose process has a child of its own. */
const HANGS = 'sleep 600 &\necho "child $!" >> "$PIDS"\nwait';

/**
 * `spoke controller` as a process with the kubeconfig `file`, listening on a free port. `up`
 * resolves once it answered /healthz (it takes SIGTERM as its stop from its first log line on).
 */
function startController(file: string): { log: () => string; said: (text: string) => Promise<void>; up: Promise<void>; stop: () => Promise<number | null>; kill: () => void } {
  const tls = makeTestCa(tempDir(), 'controller');
  const child = spawn(process.execPath, [SPOKE_BIN, 'controller', '--tls-cert', tls.certFile, '--tls-key', tls.keyFile, '--listen', '127.0.0.1:0', '--kubeconfig', file], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  const exited = once(child, 'exit').then(([code]) => code as number | null);
  const port = new Promise<number>((resolve, reject) => {
    child.stderr.on('data', (d: Buffer) => {
      log += d.toString();
      const m = /"msg":"listening".*?"port":(\d+)/.exec(log);
      if (m) resolve(Number(m[1]));
    });
    void exited.then(() => reject(new Error(`the controller exited: ${log}`)));
  });
  const up = port.then(
    (p) =>
      new Promise<void>((resolve, reject) => {
        get({ host: '127.0.0.1', port: p, path: '/healthz', rejectUnauthorized: false }, (res) => {
          res.resume();
          if (res.statusCode === 200) resolve();
          else reject(new Error(`/healthz answered ${res.statusCode}`));
        }).on('error', reject);
      }),
  );
  return {
    log: () => log,
    said: (text) =>
      new Promise<void>((resolve) => {
        if (log.includes(text)) return resolve();
        child.stderr.on('data', () => log.includes(text) && resolve());
      }),
    up,
    stop: () => {
      child.kill('SIGTERM');
      return exited;
    },
    kill: () => void child.kill('SIGKILL'),
  };
}

describe('a kubeconfig exec credential plugin', () => {
  let fake: FakeApiServer;
  let server: string;
  before(async () => {
    fake = new FakeApiServer({ resources: [LEASES, PROFILE_BINDINGS], token: TOKEN });
    server = await fake.listen();
  });
  after(async () => {
    endStarted();
    await fake.close();
  });

  it('that answers authenticates the Lease calls and the caches; calls made together share one run of it, and its credential serves until it expires', async () => {
    const { file, pids } = execKubeConfig(server, ANSWERS);
    const lifetime = new AbortController();
    const kc = loadKubeConfig(file, { signal: lifetime.signal });
    const lease = new KubeLeaseClient(kc, 'spoke-system', 'exec-answers');
    const bindings = new InformerBindingSource(kc, {});
    const signal = new AbortController().signal;
    try {
      bindings.start();
      const [read] = await Promise.all([lease.get(signal), lease.get(signal), bindings.waitForSync(5000)]);
      assert.equal(read, undefined);
      const created = await lease.create({ holderIdentity: 'a', leaseDurationSeconds: 2 }, signal);
      assert.equal(created.spec?.holderIdentity, 'a');
      assert.equal((await lease.get(signal))?.spec?.holderIdentity, 'a');
      assert.equal(processes(pids).runs.length, 1, 'one run for every call while its credential had not expired');
    } finally {
      await bindings.stop();
      lifetime.abort();
    }
  });

  for (const [which, plugin] of [['though it said it never expires', NEVER_EXPIRES], ['which it gave without an expirationTimestamp', NO_EXPIRY]] as const) {
    it(`whose credential the API server refuses (401) runs again at the next call, ${which}: the Lease calls, the caches' lists and watches`, async () => {
      const { file, pids } = execKubeConfig(server, plugin);
      const lifetime = new AbortController();
      const kc = loadKubeConfig(file, { signal: lifetime.signal });
      const lease = new KubeLeaseClient(kc, 'spoke-system', 'exec-refused');
      const bindings = new InformerBindingSource(kc, { backoffInitialMs: 10 });
      const signal = new AbortController().signal;
      const runs = () => processes(pids).runs.length;
      try {
        assert.equal(await lease.get(signal), undefined);
        assert.equal(await lease.get(signal), undefined);
        assert.equal(runs(), 1, 'one run while the API server took its credential');
        fake.inject({ match: 'leases', code: 401, times: 1 });
        await assert.rejects(lease.get(signal), (e: unknown) => (e as { code?: unknown }).code === 401);
        assert.equal(await lease.get(signal), undefined);
        assert.equal(runs(), 2, 'the Lease call after the 401 ran the plugin again');
        fake.inject({ match: 'list', code: 401, times: 1 });
        fake.inject({ match: 'watch', code: 401, times: 1 });
        bindings.start();
        await bindings.waitForSync(5000);
        await waitFor(() => runs() >= 4, { timeoutMs: 5000, what: 'the plugin to run again after the refused list and the refused watch' });
        assert.equal(runs(), 4);
      } finally {
        await bindings.stop();
        lifetime.abort();
      }
    });
  }

  // Reaped, its pid (the number of its group) may be another process's by the time a kill comes.
  // Its answer is written by then: a stop in the exit grace lets the read end, and its credential
  // serves the calls made while stopping (the Lease release).
  it('that exited is signalled no more, nor its group, also while its run still reads its stdout; closing the credentials then lets that read end, and its credential serves', async () => {
    const { file, pids } = execKubeConfig(server, `sleep 600 &\necho "child $!" >> "$PIDS"\n${ANSWERS}`);
    const lifetime = new AbortController();
    const logs: Record<string, unknown>[] = [];
    // Its stdout, held by what it left running, is read on for a minute after its exit: the
    // credentials are closed in that time, whatever the machine's load.
    const kc = loadKubeConfig(file, { signal: lifetime.signal, exitGraceMs: 60_000, log: (e) => void logs.push(e) });
    const lease = new KubeLeaseClient(kc, 'spoke-system', 'exec-exited');
    const outcome = (p: Promise<unknown>) => p.then(
      () => 'answered',
      (e: unknown) => `failed: ${String((e as { reason?: unknown }).reason ?? e)}`,
    );
    const call = outcome(lease.get(new AbortController().signal));
    // Its /proc entry goes when node reaps it, which is when node sees its exit.
    await waitFor(() => processes(pids).all.length === 2 && !existsSync(`/proc/${processes(pids).runs[0]}`), { timeoutMs: 5000, intervalMs: 5, what: 'the plugin to exit' });
    lifetime.abort();
    const child = processes(pids).all[1]!;
    assert.ok(alive(child), 'what the plugin left running was not killed with its group');
    const whileClosed = outcome(lease.get(new AbortController().signal));
    // What held its stdout ends: the read ends there, with what the plugin wrote by its exit.
    process.kill(child, 'SIGKILL');
    assert.equal(await within(call, 5000, 'the call'), 'answered');
    assert.equal(await within(whileClosed, 5000, 'the call made once closed'), 'answered', 'a call made once the credentials are closed is sent with that run\'s credential');
    assert.equal(processes(pids).runs.length, 1);
    assert.ok(!logs.some((e) => String(e['msg']).includes('killed')), `nothing was killed, and no line says so: ${JSON.stringify(logs)}`);
  });

  it('that hangs: each Lease try stops waiting for it at its deadline, one run serves every try (not one each), and stop() does not wait for it', async () => {
    const { file, pids } = execKubeConfig(server, HANGS);
    const lifetime = new AbortController();
    const logs: Record<string, unknown>[] = [];
    const log = (e: Record<string, unknown>) => void logs.push(e);
    const kc = loadKubeConfig(file, { signal: lifetime.signal, log });
    const real = new KubeLeaseClient(kc, 'spoke-system', 'exec-hangs');
    let tries = 0;
    const counted: LeaseClient = {
      get: (signal) => {
        tries++;
        return real.get(signal);
      },
      create: (spec, signal) => real.create(spec, signal),
      replace: (l, signal) => real.replace(l, signal),
    };
    const elector = new LeaseElector({ client: counted, identity: 'a', ...TIMING, log, onStartedLeading: () => assert.fail('led without a credential'), onStoppedLeading: () => undefined });
    elector.start();
    try {
      await waitFor(() => tries >= 6 && processes(pids).all.length >= 2, { timeoutMs: 10_000, what: 'six Lease tries and the plugin started' });
      const { runs, all } = processes(pids);
      assert.equal(runs.length, 1, `one run of the plugin for ${tries} tries`);
      assert.equal(all.filter(alive).length, 2, 'that run and its child are alive, no other');
      await within(elector.stop(), 5000, 'stop() while the plugin hangs');
      assert.ok(!logs.some((e) => String(e['msg']).includes('still unanswered at stop')), 'no Lease request was left waiting for the plugin at stop');
      const note = logs.find((e) => e['reason'] === 'CANCELLED' && e['command'] === join(file, '..', 'plugin.sh'));
      assert.ok(note, `the log says a request stopped waiting for the plugin: ${JSON.stringify(logs)}`);
      lifetime.abort();
      await waitFor(() => !all.some(alive), { timeoutMs: 5000, what: 'the plugin and its child to be killed once the credentials are closed' });
    } finally {
      await elector.stop();
      lifetime.abort();
    }
  });

  // The caches' lists wait for its run with no deadline of their own: unless the stop ends the
  // run, they hold the stop until its 30 s run out, and those not stopped yet then run it again.
  it('that hangs is killed, with the process it started, when spoke controller stops (SIGTERM), once the stop grace (2 s) ran out, not once its time does: the calls waiting for it hold no stop', async () => {
    const { file, pids } = execKubeConfig(server, HANGS);
    const controller = startController(file);
    try {
      await within(controller.up, 10_000, 'the controller to answer');
      await waitFor(() => processes(pids).all.length === 2, { timeoutMs: 10_000, what: 'the plugin to start' });
      const exited = controller.stop().then((code) => `exited with ${code}`);
      const timedOut = controller.said('did not answer in time').then(() => 'the plugin was killed for its time first');
      const first = await within(Promise.race([exited, timedOut]), 60_000, 'the controller to exit');
      const log = controller.log();
      assert.equal(first, 'exited with 0', log);
      assert.match(log, /"msg":"the kubeconfig exec credential plugin was killed, with the processes it started: the credentials are closed"[^\n]*"reason":"CLOSED"/);
      const { runs, all } = processes(pids);
      assert.equal(runs.length, 1, 'no run started while stopping');
      await waitFor(() => !all.some(alive), { timeoutMs: 5000, what: 'the plugin and its child to be gone' });
    } finally {
      controller.kill();
    }
  });

  it('whose credential is kept still authenticates the calls spoke controller makes while it stops: it releases the Lease it holds', async () => {
    const { file, pids } = execKubeConfig(server, NO_EXPIRY);
    const holder = () => (fake.get(LEASES, 'spoke-system', 'spoke-controller')?.spec as { holderIdentity?: string } | undefined)?.holderIdentity;
    const controller = startController(file);
    try {
      await within(controller.up, 10_000, 'the controller to answer');
      await waitFor(() => Boolean(holder()), { timeoutMs: 10_000, what: 'the controller to take the Lease' });
      const code = await within(controller.stop(), 60_000, 'the controller to exit');
      assert.equal(code, 0, controller.log());
      assert.equal(holder(), '', `released: ${controller.log()}`);
      assert.equal(processes(pids).runs.length, 1, 'one run for every call');
    } finally {
      controller.kill();
    }
  });

  it('that does not answer within its time is killed with the process it started; the calls waiting for it fail with DEADLINE, and the next call runs it again', async () => {
    const { file, pids } = execKubeConfig(server, HANGS);
    const lifetime = new AbortController();
    const logs: Record<string, unknown>[] = [];
    const kc = loadKubeConfig(file, { signal: lifetime.signal, timeoutMs: 300, log: (e) => void logs.push(e) });
    const lease = new KubeLeaseClient(kc, 'spoke-system', 'exec-times-out');
    const deadline = (e: unknown) => (e as SpokeError).reason === 'DEADLINE' && (e as SpokeError).context.command === join(file, '..', 'plugin.sh');
    try {
      for (let call = 1; call <= 2; call++) {
        await assert.rejects(within(lease.get(new AbortController().signal), 5000, `call ${call} to end`), deadline);
        const { runs, all } = processes(pids);
        assert.equal(runs.length, call, `call ${call} ran the plugin once`);
        await waitFor(() => !all.some(alive), { timeoutMs: 5000, what: 'the plugin and its child to be killed' });
      }
      assert.equal(logs.filter((e) => e['reason'] === 'DEADLINE').length, 2, `each kill is logged: ${JSON.stringify(logs)}`);
    } finally {
      lifetime.abort();
    }
  });

  it('that does not answer within its time and cannot be signalled (it runs as another user) fails with DEADLINE saying it was not signalled', async () => {
    const { file, pids } = execKubeConfig(server, HANGS);
    const lifetime = new AbortController();
    const kc = loadKubeConfig(file, { signal: lifetime.signal, timeoutMs: 300 });
    const lease = new KubeLeaseClient(kc, 'spoke-system', 'exec-not-signalled');
    // What the kernel answers a kill of a group whose processes all run as another user.
    const kill = process.kill;
    process.kill = ((pid: number, sig?: string | number) => {
      if (pid < 0) throw Object.assign(new Error('kill EPERM'), { code: 'EPERM', errno: -1, syscall: 'kill' });
      return kill.call(process, pid, sig);
    }) as typeof process.kill;
    try {
      const e = await within(lease.get(new AbortController().signal).then(() => undefined, (x: unknown) => x), 5000, 'the call to end');
      const err = e as SpokeError;
      assert.equal(err.reason, 'DEADLINE', String(e));
      assert.equal(err.context.signalled, false, `the error says no process was signalled: ${err.message}`);
    } finally {
      process.kill = kill;
      lifetime.abort();
      for (const pid of processes(pids).all) if (alive(pid)) process.kill(pid, 'SIGKILL');
    }
  });
});
