// The credential step of every client-node call spoke makes (the generated API clients, the
// reflectors' lists and watches), for a kubeconfig user whose credential comes from an exec
// plugin (client.authentication.k8s.io ExecCredential). client-node 1.x (ExecAuth) runs the
// plugin anew for every call made while it holds no unexpired credential, never ends it, and a
// call's AbortSignal does not reach that step: a plugin that hangs kept one process per Lease try
// running for good. Here (docs/binding.md#kubeconfig-and-credentials):
//  - one run of the plugin at a time: calls made while it runs wait for that run;
//  - a call waits as long as its own signal allows (a Lease try's, given by withCallSignal), not
//    longer; the run goes on for the calls after it, so a plugin slower than one try still
//    serves the next one;
//  - a run is killed, with the processes it started (its process group), once it has run for
//    `timeoutMs`; once `stopGraceMs` passed after `signal` (the credentials' lifetime, which the
//    controller ends when it stops) aborted; and when the process exits. It ends at the
//    plugin's exit, after which neither it nor its group is signalled, and neither its time nor
//    the stop fails it: its stdout is read on for the exit grace at most;
//  - once `signal` aborted, no run starts: a call is sent with the credential kept (a stopping
//    controller releases its Lease with it), or waits for the run under way, and fails without;
//  - the plugin's stdin is empty, as client-go runs a plugin that is not interactive: one that
//    asks for input ends instead of waiting for good;
//  - its credential is kept until its expirationTimestamp or, without one, for good, as client-go
//    keeps it (client-node would run the plugin again for every call), and either way only until
//    the API server refuses it (401, noteApiStatus), as client-go does.
// The gcp and azure auth-providers run their command synchronously in client-node (execSync),
// which stops the event loop while it runs: a user of the current context with one is refused.
// The oidc auth-provider stays client-node's, and starts no process (the docs page says what it
// does). What the plugin is given and what it must write: exec-credential.ts.

import { AsyncLocalStorage } from 'node:async_hooks';
import { spawn } from 'node:child_process';
import { createConfiguration, ServerConfiguration, type ApiConstructor, type ApiType, type KubeConfig, type ResponseContext, type User } from '@kubernetes/client-node';
import { SpokeError, type ErrorContext } from '../core/errors.js';
import { monotonicNow, type MonotonicNow } from '../core/runtime.js';
import { credentialOf, execOf, execSpecOf, type Credential, type ExecSpec } from './exec-credential.js';

type Authenticator = Parameters<KubeConfig['addAuthenticator']>[0];
type RequestOptions = Parameters<Authenticator['applyAuthentication']>[1];

export interface KubeCredentialOptions {
  /**
   * The credentials' lifetime, which the controller ends when it stops: once aborted, none runs
   * again; a plugin still running has `stopGraceMs` to answer, then is killed (CLOSED); a call is
   * sent with the credential kept or the one the run under way gives, and fails (CLOSED) without.
   */
  signal?: AbortSignal;
  /** How long a plugin still running when `signal` aborts may go on before it is killed; default 2 s (DEFAULT_STOP_GRACE_MS). */
  stopGraceMs?: number;
  /** How long a plugin may run before it is killed; default 30 s. */
  timeoutMs?: number;
  /** How long the stdout of a plugin that exited is read on, for what the pipe still holds; default 100 ms (start()). */
  exitGraceMs?: number;
  /** The monotonic clock how long a plugin has run is measured on (the log's runningMs); default performance.now(). */
  now?: MonotonicNow;
  log?: (event: Record<string, unknown>) => void;
}

const DEFAULT_TIMEOUT_MS = 30_000;
/** An ExecCredential is a few KiB; a plugin writing more is broken. */
const MAX_OUTPUT_BYTES = 1 << 20;
const DEFAULT_EXIT_GRACE_MS = 100;
/**
 * Time for a run under way at the stop to answer, so that the calls made while stopping (the Lease
 * release) have a credential: a refresh of a token with an expirationTimestamp (aws eks get-token,
 * 15 min) takes about a second. No longer than a Lease request may take (2 s): a plugin that hangs
 * holds the stop that long at most (docs/binding.md#kubeconfig-and-credentials).
 */
const DEFAULT_STOP_GRACE_MS = 2000;

/** The signal of the call under way: client-node gives its authenticators none, so it travels with the call's async context. */
const callSignal = new AsyncLocalStorage<AbortSignal>();

/** Runs `call` (a client-node call), whose credential step waits for a plugin no longer than `signal` allows. */
export function withCallSignal<T>(signal: AbortSignal, call: () => Promise<T>): Promise<T> {
  return callSignal.run(signal, call);
}

/**
 * Makes the credential step of `kc`'s current user spoke's (above), the only user spoke calls as:
 * its exec plugin is taken off it, so that client-node's ExecAuth no longer claims it, and run by
 * an authenticator added to `kc`. `file` is the kubeconfig file that user came from (none: the
 * in-cluster service account's).
 */
export function takeOverCredentials(kc: KubeConfig, file: string | undefined, o: KubeCredentialOptions = {}): void {
  const user = kc.getCurrentUser();
  if (!user) return;
  const source = file ?? 'the default kubeconfig';
  const provider = (user.authProvider as { name?: unknown } | null | undefined)?.name;
  if (provider === 'gcp' || provider === 'azure') {
    throw new SpokeError(
      'InvalidArgument',
      `kubeconfig ${source}: the current user's ${provider} auth-provider runs its command synchronously in client-node, which stops the controller while it runs (kubectl dropped it in 1.26): use its exec plugin (gke-gcloud-auth-plugin, kubelogin)`,
      { file: source },
      { reason: 'OPTION_INVALID' },
    );
  }
  if (execOf(user) === undefined) return;
  // client-node's ExecAuth claims a user by `exec` or an exec auth-provider, ahead of the
  // authenticators added to it; without both, this one is asked.
  kc.users = kc.users.map((u) => (u.name === user.name ? { ...u, exec: undefined, authProvider: undefined } : u));
  // As client-go's exec authenticator steps aside (UpdateTransportConfig), the plugin is neither
  // run nor checked (its apiVersion, interactiveMode, command) for a user with a token, basic auth
  // or a client certificate and key of its own: those are sent
  // (docs/binding.md#kubeconfig-and-credentials).
  if (user.token || user.username || ((user.certData || user.certFile) && (user.keyData || user.keyFile))) return;
  const plugin = new ExecPlugin(execSpecOf(user, kc.getCurrentCluster(), source, file), o);
  plugins.set(kc, plugin);
  kc.addAuthenticator({
    isAuthProvider: (u: User) => u.name === user.name,
    applyAuthentication: async (_u: User, opts: RequestOptions) => applyCredential(await plugin.credential(callSignal.getStore()), opts),
  });
}

function applyCredential(c: Credential, opts: RequestOptions): void {
  if (c.cert !== undefined) opts.cert = c.cert;
  if (c.key !== undefined) opts.key = c.key;
  if (c.token !== undefined) opts.headers = { ...opts.headers, Authorization: `Bearer ${c.token}` };
}

/** The plugin run for each KubeConfig whose credential step spoke took over. */
const plugins = new WeakMap<KubeConfig, ExecPlugin>();

/**
 * What the API server answered a call made as `kc`'s user: a 401 drops the credential the plugin
 * gave, so that the next call runs it again, as client-go does, instead of sending a refused one
 * (revoked, or saying it never expires) until its expirationTimestamp, or for good without one.
 * A call made with an older credential may drop a newer one: the plugin then runs once more than
 * it needed to.
 */
export function noteApiStatus(kc: KubeConfig, status: number | undefined): void {
  if (status === 401) plugins.get(kc)?.drop();
}

/** `kc.makeApiClient(type)`, whose calls tell `kc`'s credentials what the API server answered (noteApiStatus). */
export function makeApiClient<T extends ApiType>(kc: KubeConfig, type: ApiConstructor<T>): T {
  const server = kc.getCurrentCluster()?.server;
  if (!server) throw new SpokeError('InvalidArgument', 'the kubeconfig has no current cluster', {}, { reason: 'OPTION_INVALID' });
  const post = async (res: ResponseContext) => {
    noteApiStatus(kc, res.httpStatusCode);
    return res;
  };
  return new type(createConfiguration({ baseServer: new ServerConfiguration(server, {}), authMethods: { default: kc }, promiseMiddleware: [{ pre: async (ctx) => ctx, post }] }));
}

interface Run {
  done: Promise<Credential>;
  pid: number | undefined;
  /** When it started, on the monotonic clock (KubeCredentialOptions.now). */
  startedAt: number;
  /** Whether its plugin has exited: its run ends once its stdout is read (the exit grace at most), and nothing is signalled any more. */
  exited(): boolean;
  /**
   * Kills the run (its plugin, unless it exited, with its group) and fails its calls with the
   * error `failure` makes, told whether a process was signalled, unless it already ended; whether
   * a process was signalled.
   */
  end(failure: (signalled: boolean) => SpokeError): boolean;
  /** A call stopped waiting for this run: said once per run. */
  waiterLeft: boolean;
}

class ExecPlugin {
  private kept: Credential | undefined;
  private run: Run | undefined;
  private readonly timeoutMs: number;
  private readonly now: MonotonicNow;

  constructor(
    private readonly spec: ExecSpec,
    private readonly o: KubeCredentialOptions,
  ) {
    this.timeoutMs = o.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.now = o.now ?? monotonicNow;
    o.signal?.addEventListener('abort', () => this.close(), { once: true });
  }

  /** The API server refused the credential kept: the next call runs the plugin again. */
  drop(): void {
    this.kept = undefined;
  }

  async credential(signal: AbortSignal | undefined): Promise<Credential> {
    // Its expirationTimestamp is a time the plugin wrote: the wall clock's, as client-go compares it.
    if (this.kept && this.kept.expiresAt > Date.now()) return this.kept;
    // Closed, no run starts; the one under way (close()) may still answer.
    if (this.o.signal?.aborted && !this.run) throw this.closed();
    const run = (this.run ??= this.start());
    if (signal === undefined) return run.done;
    return new Promise<Credential>((resolve, reject) => {
      const leave = () => {
        const runningMs = this.runningMs(run);
        if (!run.waiterLeft) {
          run.waiterLeft = true;
          this.o.log?.({ msg: 'a request stopped waiting for the kubeconfig exec credential plugin; it runs on for the next ones until it answers or its time runs out', command: this.spec.command, pid: run.pid, runningMs, timeoutMs: this.timeoutMs, reason: 'CANCELLED', level: 'warning' });
        }
        reject(new SpokeError('Unavailable', `gave up waiting for the kubeconfig exec credential plugin ${this.spec.command} (running for ${runningMs} ms)`, { command: this.spec.command }, { reason: 'CANCELLED', cause: signal.reason }));
      };
      if (signal.aborted) return leave();
      signal.addEventListener('abort', leave, { once: true });
      void run.done.then(resolve, reject).finally(() => signal.removeEventListener('abort', leave));
    });
  }

  /**
   * The credentials' lifetime ended: the run under way has the stop grace to answer, for the calls
   * waiting and those made while stopping; then it is killed, and they fail. One whose plugin has
   * exited by then is not killed: its answer is written, and its stdout is read on for the exit
   * grace at most, as any other's (docs/binding.md#kubeconfig-and-credentials).
   */
  private close(): void {
    const run = this.run;
    if (!run || run.exited()) return;
    const grace = setTimeout(() => {
      if (this.run === run && !run.exited()) this.kill(run);
    }, this.o.stopGraceMs ?? DEFAULT_STOP_GRACE_MS);
    const ended = () => clearTimeout(grace);
    run.done.then(ended, ended);
  }

  /** The run under way at the stop did not answer within the stop grace. */
  private kill(run: Run): void {
    const runningMs = this.runningMs(run);
    const fields = { command: this.spec.command, pid: run.pid, runningMs, reason: 'CLOSED' };
    if (run.end(() => this.closed())) this.o.log?.({ msg: 'the kubeconfig exec credential plugin was killed, with the processes it started: the credentials are closed', ...fields });
    else this.o.log?.({ msg: 'the kubeconfig exec credential plugin\'s run was given up, no process signalled (none started, or they run as another user): the credentials are closed', ...fields });
  }

  private start(): Run {
    const { command, args, env } = this.spec;
    // Its own process group (detached), so that a kill reaches what it started too. Its stderr
    // is not read: it may hold what the plugin was given or got (`set -x`, a URL with a code),
    // which no message or log line may quote (docs/security-model.md#bounded-everything).
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'ignore'], detached: true, env: { ...process.env, ...env } });
    let settle: { resolve: (c: Credential) => void; reject: (e: SpokeError) => void } | undefined;
    const done = new Promise<Credential>((resolve, reject) => (settle = { resolve, reject }));
    // A run nobody waits for any more may still fail.
    done.catch(() => undefined);
    let grace: NodeJS.Timeout | undefined;
    /** Ends the run, once: what comes after (a late 'close', more output) changes nothing. */
    const finish = (outcome: Credential | SpokeError) => {
      if (!settle) return;
      const s = settle;
      settle = undefined;
      clearTimeout(timer);
      clearTimeout(grace);
      process.off('exit', atExit);
      // The next call may run the plugin again.
      if (this.run === run) this.run = undefined;
      // A process it started may hold its stdout for as long as it runs: nothing more is read.
      child.stdout.destroy();
      if (outcome instanceof SpokeError) return s.reject(outcome);
      this.kept = outcome;
      s.resolve(outcome);
    };
    /** Set at its 'exit', when node has reaped it. */
    let exited = false;
    /** Whether a process was signalled. */
    const kill = (): boolean => {
      // Started detached, it leads a session of its own, and so can never leave its group,
      // which is there for as long as it runs or is not reaped. Once reaped, its pid, the
      // group's number, may be another process's: what it left running is its own then.
      if (exited || child.pid === undefined) return false;
      try {
        process.kill(-child.pid, 'SIGKILL');
        return true;
      } catch {
        // EPERM: all of them run as another user (a set-uid plugin), and go on until they end.
        return false;
      }
    };
    // A run still going when the process exits is killed with it: no timer (its time, the stop
    // grace) runs then.
    const atExit = () => void kill();
    process.once('exit', atExit);
    const run: Run = {
      done,
      pid: child.pid,
      startedAt: this.now(),
      waiterLeft: false,
      exited: () => exited,
      end: (failure) => {
        if (!settle) return false;
        const signalled = kill();
        finish(failure(signalled));
        return signalled;
      },
    };
    // Until its exit: the read after it is bounded by the exit grace.
    const timer = setTimeout(() => {
      const signalled = run.end(
        (killed) =>
          new SpokeError(
            'Unavailable',
            `the kubeconfig exec credential plugin ${command} did not answer within ${this.timeoutMs} ms: ${killed ? 'killed' : 'given up, no process signalled (it runs as another user)'}`,
            { command, limit: this.timeoutMs, signalled: killed },
            { reason: 'DEADLINE' },
          ),
      );
      const what = signalled ? 'killed, with the processes it started' : 'its run is given up, no process signalled (they run as another user)';
      this.o.log?.({ msg: `the kubeconfig exec credential plugin did not answer in time: ${what}`, command, pid: child.pid, timeoutMs: this.timeoutMs, reason: 'DEADLINE', level: 'warning' });
    }, this.timeoutMs);
    const stdout: Buffer[] = [];
    let outBytes = 0;
    child.stdout.on('data', (b: Buffer) => {
      outBytes += b.length;
      if (outBytes > MAX_OUTPUT_BYTES) run.end(() => this.failed(`wrote more than ${MAX_OUTPUT_BYTES} bytes`));
      else stdout.push(b);
    });
    child.on('error', (e: NodeJS.ErrnoException) => finish(this.failed(`cannot be run (${e.code ?? e.message})`, { errno: e.code })));
    child.on('exit', (code, signal) => {
      exited = true;
      // It exited within its time: what is left, the read of its stdout, has the exit grace.
      clearTimeout(timer);
      // Its answer is what it wrote by its exit: 'close' waits for every process holding its
      // stdout, which one it left running may hold for good, so it is waited for only the exit
      // grace (100 ms), time enough to read what the pipe still holds
      // (docs/binding.md#kubeconfig-and-credentials).
      const answered = () => {
        if (!settle) return;
        if (code !== 0) return finish(this.failed(signal ? `was ended by ${signal}` : `exited with status ${code}`, { status: code ?? undefined, signal: signal ?? undefined }));
        try {
          finish(credentialOf(Buffer.concat(stdout).toString('utf8'), this.spec.apiVersion, (what) => this.failed(what)));
        } catch (e) {
          finish(e as SpokeError);
        }
      };
      grace = setTimeout(answered, this.o.exitGraceMs ?? DEFAULT_EXIT_GRACE_MS);
      child.once('close', answered);
    });
    return run;
  }

  /** How long `run` has run, in whole ms: on the monotonic clock, which no step of the wall clock moves. */
  private runningMs(run: Run): number {
    return Math.round(this.now() - run.startedAt);
  }

  private failed(what: string, context: ErrorContext = {}): SpokeError {
    return new SpokeError('Unauthenticated', `the kubeconfig exec credential plugin ${this.spec.command} ${what}`, { command: this.spec.command, ...context }, { reason: 'CREDENTIAL_PLUGIN' });
  }

  private closed(): SpokeError {
    return new SpokeError('Unavailable', `the kubeconfig credentials are closed: the exec credential plugin ${this.spec.command} is not run`, { command: this.spec.command }, { reason: 'CLOSED' });
  }
}
