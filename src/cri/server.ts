// The CRI shim: an HTTP/2 server on a unix socket in front of the runtime's socket.
//   - owned methods (PullSecurityProfile[Artifact], ListSecurityProfiles, RemoveSecurityProfile)
//     are answered here;
//   - RunPodSandbox / CreateContainer requests with an OCI seccomp or AppArmor profile (or, in
//     annotation mode, spoke profile annotations on the pod) are edited at the wire level
//     (rewrite.ts) and then forwarded; without, forwarded byte for byte;
//   - the Status response gets features.security_profile_oci_artifact = true;
//   - everything else, unknown methods included, is forwarded as raw HTTP/2: request headers
//     (minus connection-specific ones), DATA, response headers, DATA and trailers unchanged.
// Deadlines travel in grpc-timeout; a client RST_STREAM cancels the upstream stream and an
// upstream reset or disconnect ends the client's stream (UNAVAILABLE when nothing was sent yet).
// This file holds the lifecycle and the routing; the parts: relay.ts (raw forwarding), unary.ts
// (request bodies, responses, deadlines), edited.ts and inuse-claims.ts (edited creates and
// removals), connections.ts (limits and probes), socket.ts, oci-feature.ts (the Status edit).

import { constants, createServer, type Http2Server, type IncomingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import { join } from 'node:path';
import { DEFAULT_RUNTIME_HANDLERS } from '../core/constants.js';
import { SpokeError, type ErrorReason } from '../core/errors.js';
import { monotonicNow, type Logger, type MonotonicNow } from '../core/runtime.js';
import { ProfileApplier } from './apply.js';
import { BodyBudget, type Call, type CallHost, type RawHeaders } from './call.js';
import { ConnectionGuard, MAX_HEADER_LIST_BYTES, type ConnectionLimits } from './connections.js';
import type { ShimDeps } from './deps.js';
import { EditedCalls } from './edited.js';
import { CreateGate } from './gc.js';
import { InUseTracker } from './inuse.js';
import {
  unforwardedRefusal,
  methodLabel,
  PATH_CREATE_CONTAINER,
  PATH_LIST_PROFILES,
  PATH_PULL_ARTIFACT,
  PATH_PULL_PROFILE,
  PATH_REMOVE_CONTAINER,
  PATH_REMOVE_POD_SANDBOX,
  PATH_REMOVE_PROFILE,
  PATH_RUN_POD_SANDBOX,
  PATH_STATUS,
  STREAMING,
} from './methods.js';
import { addOciFeature } from './oci-feature.js';
import { OwnedHandlers } from './owned.js';
import { LoggingProfiles } from './logging-profile.js';
import { unkeyedRecording } from './recording.js';
import { forward, noop, type ForwardOptions } from './relay.js';
import { prepareEffectiveDir } from './effective-dir.js';
import { rewriteCreateContainer, rewriteRunPodSandbox, type AnnotationDeps } from './rewrite.js';
import { listenOnSocket, prepareSocketPath, removeOwnSocket, type SocketIdentity } from './socket.js';
import { GrpcCode, toGrpcStatus, type GrpcCodeValue } from './grpc-status.js';
import { endWithStatus, unaryCall } from './unary.js';
import { Upstream } from './upstream.js';

export { CONNECTION_PROBE_MS, GOAWAY_GRACE_MS, MAX_CONCURRENT_STREAMS, REQUEST_BODY_TIMEOUT_MS, type ConnectionLimits } from './connections.js';
export { addOciFeature } from './oci-feature.js';
export { prepareSocketPath } from './socket.js';
export { endWithStatus } from './unary.js';

const { NGHTTP2_CANCEL } = constants;

/** A method the shim handles itself (or edits); every other path is forwarded raw. */
type Route = (call: Call, headers: IncomingHttpHeaders) => Promise<void> | void;

export interface ShimServerOptions<P> {
  listen: string;
  upstream: string;
  deps: ShimDeps<P>;
  /** How long SIGTERM waits for unary calls in flight. Default 30 s. */
  shutdownGraceMs?: number;
  /**
   * The clock shutdownGraceMs is measured on (tests); default performance.now(). On the wall
   * clock, a step forward would cut calls in flight at once and a step back keep the shim
   * draining until the service manager kills it.
   */
  monotonicNow?: MonotonicNow;
  /** Socket mode. Default 0o660. */
  socketMode?: number;
  /** Annotation mode: honour `seccomp|apparmor.profiles.spoke.dev/…` pod annotations (rewrite.ts). */
  annotations?: boolean;
  /**
   * Recording (recording.ts): install the logging profile at start and run containers of pods
   * annotated `recording.spoke.dev/name`, with a proof that verifies under `recordingKey`, under
   * it. Off: the annotation is ignored (logged). On without a key: start() refuses.
   */
  recording?: boolean;
  /** The cluster's recording key (recording.ts, src/core/recording-proof.ts). */
  recordingKey?: Buffer;
  /** Per-connection limits; defaults are the constants above (tests shorten the timers). */
  limits?: Partial<ConnectionLimits>;
  /** Runtime handlers that enforce the profiles spoke applies (rewrite.ts refuseHandler). Default DEFAULT_RUNTIME_HANDLERS. */
  runtimeHandlers?: readonly string[];
}

const NO_OPTIONS: ForwardOptions = Object.freeze({});
const STATUS_OPTIONS: ForwardOptions = Object.freeze({ editResponse: addOciFeature });

/** A closed call's header list: its own is let go (see onStream). */
const NO_RAW_HEADERS: RawHeaders = Object.freeze([]);

export class ShimServer<P = unknown> {
  readonly upstream: Upstream;
  private server: Http2Server | undefined;
  /** The socket file this server bound (removeOwnSocket). */
  private socket: SocketIdentity | undefined;
  private readonly calls = new Set<Call>();
  private readonly connections: ConnectionGuard;
  private draining = false;
  private readonly logger: Logger;
  private readonly applier: ProfileApplier<P>;
  readonly inUse: InUseTracker;
  /** Creates resolving profiles, or gc alone (gc.ts). */
  readonly gate = new CreateGate();
  private readonly owned: OwnedHandlers<P>;
  private readonly edited: EditedCalls<P>;
  private readonly host: CallHost;
  private readonly routes: ReadonlyMap<string, Route>;
  private rebuildTimer: NodeJS.Timeout | undefined;
  /** When the scheduled rebuild runs (performance.now() ms); the earliest request wins. */
  private rebuildDue = Infinity;
  private rebuilding: Promise<unknown> | undefined;
  /** Work waiting for the next unary call to end (afterUnaryCall). */
  private readonly afterUnary: (() => void)[] = [];

  constructor(private readonly opts: ShimServerOptions<P>) {
    this.logger = opts.deps.logger;
    this.connections = new ConnectionGuard(opts.limits, this.calls, (call, code, message, reason) => this.endCall(call, code, message, reason), this.logger);
    this.upstream = new Upstream(opts.upstream, this.logger, {
      onConnect: () => {
        this.scheduleRebuild(0);
        // A (re)started runtime may be another version: its default profile is read again.
        opts.deps.runtimeDefault?.refresh?.(this.upstream);
      },
      onDisconnect: () => opts.deps.runtimeDefault?.forget?.(),
    });
    this.applier = new ProfileApplier(opts.deps);
    this.inUse = new InUseTracker(opts.deps.store, this.logger, {
      upstream: this.upstream,
      seccompRoot: opts.deps.seccompRoot,
      ...(opts.deps.appArmor ? { appArmor: opts.deps.appArmor } : {}),
      scheduleRebuild: (ms) => this.scheduleRebuild(ms),
    });
    this.owned = new OwnedHandlers(opts.deps, this.gate);
    const { pipeline, appArmor } = opts.deps;
    const annotationDeps: AnnotationDeps | undefined = opts.annotations
      ? {
          // No credential: the pipeline's registry client uses the node's auth file only.
          pull: (req) => pipeline.pull(req),
          ready: async (kind, ctx) => {
            if (kind === 'apparmor' && !(appArmor && (await appArmor.enabled()))) {
              throw new SpokeError('FailedPrecondition', `${ctx.who}: AppArmor is not enabled on this node`, {}, { reason: 'APPARMOR_UNAVAILABLE' });
            }
          },
          log: (level, msg, fields) => this.logger.log(level, msg, fields),
        }
      : undefined;
    this.host = {
      upstream: this.upstream,
      logger: this.logger,
      bodies: new BodyBudget(this.connections.limits.maxBufferedRequestBytes),
      report: (call) => this.report(call),
      endCall: (call, code, message, reason) => this.endCall(call, code, message, reason),
    };
    this.edited = new EditedCalls({
      host: this.host,
      deps: opts.deps,
      applier: this.applier,
      inUse: this.inUse,
      gate: this.gate,
      annotationDeps,
      recordingKey: opts.recordingKey,
      scheduleRebuild: (ms) => this.scheduleRebuild(ms),
      runtimeHandlers: new Set(opts.runtimeHandlers ?? DEFAULT_RUNTIME_HANDLERS),
    });
    const pull: Route = (call, headers) => unaryCall(this.host, call, headers, (req, signal, share) => this.owned.pull(req, signal, share));
    this.routes = new Map<string, Route>([
      [PATH_PULL_ARTIFACT, pull],
      [PATH_PULL_PROFILE, pull],
      [PATH_LIST_PROFILES, (call, headers) => unaryCall(this.host, call, headers, (req) => this.owned.list(req))],
      [PATH_REMOVE_PROFILE, (call, headers) => unaryCall(this.host, call, headers, (req) => this.owned.remove(req))],
      [PATH_RUN_POD_SANDBOX, (call, headers) => this.edited.create(call, headers, 'sandbox', rewriteRunPodSandbox)],
      [PATH_CREATE_CONTAINER, (call, headers) => this.edited.create(call, headers, 'container', rewriteCreateContainer)],
      [PATH_STATUS, (call) => forward(this.host, call, STATUS_OPTIONS)],
      [PATH_REMOVE_CONTAINER, (call, headers) => this.edited.remove(call, headers, 'container')],
      [PATH_REMOVE_POD_SANDBOX, (call, headers) => this.edited.remove(call, headers, 'sandbox')],
    ]);
  }

  /** Binds the socket (refusing a path that is not a socket; removing a stale one) and starts. */
  async start(): Promise<void> {
    if (this.opts.recording) {
      if (this.opts.recordingKey === undefined) throw unkeyedRecording();
      // Before the socket exists: no pod can ask for the profile before it is on disk.
      const logging = new LoggingProfiles(join(this.opts.deps.store.root, 'recording'), this.opts.deps.seccomp);
      const profile = await logging.install(this.opts.deps.baseline(), this.opts.deps.seccompRoot);
      this.edited.logging = logging;
      this.logger.log('info', 'recording enabled: logging profile installed', { profile });
    }
    // Before the socket exists: no create runs before the directory is made or checked.
    this.edited.reservedSeccompDirs = await prepareEffectiveDir(this.opts.deps.seccompRoot, this.logger);
    // Containers may have been made or removed while no shim ran: until the rebuild from the
    // runtime (at its first connection), remove and gc keep everything (docs/gc.md).
    await this.opts.deps.store.markInUseIncomplete();
    const path = this.opts.listen;
    await prepareSocketPath(path);
    const server = createServer({
      settings: { initialWindowSize: 4 * 1024 * 1024, maxConcurrentStreams: this.connections.limits.maxConcurrentStreams, maxHeaderListSize: MAX_HEADER_LIST_BYTES },
      maxSessionMemory: 64,
    });
    server.on('session', (s) => this.connections.onSession(s));
    server.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders, _flags: number, rawHeaders: RawHeaders) => this.onStream(stream, headers, rawHeaders));
    server.on('error', (e) => this.logger.log('error', 'server error', { error: e.message }));
    this.socket = await listenOnSocket(server, path, this.opts.socketMode ?? 0o660);
    this.server = server;
    this.connections.start();
    this.upstream.start();
    this.owned.refreshStoreGauges(0);
    this.logger.log('info', 'shim listening', { listen: path, upstream: this.opts.upstream });
  }

  /** Graceful stop: no new calls, unary calls in flight finish, streams end, socket removed. */
  async close(): Promise<void> {
    if (this.draining) return;
    this.draining = true;
    if (this.rebuildTimer) clearTimeout(this.rebuildTimer);
    this.connections.stop();
    const server = this.server;
    const closed = server ? new Promise<void>((r) => server.close(() => r())) : Promise.resolve();
    for (const c of this.calls) {
      if (c.streaming) endWithStatus(c.stream, GrpcCode.UNAVAILABLE, 'spoke shim shutting down', 'CLOSED');
    }
    this.connections.closeAll();
    const grace = this.opts.shutdownGraceMs ?? 30_000;
    const now = this.opts.monotonicNow ?? monotonicNow;
    const until = now() + grace;
    while (this.calls.size > 0 && now() < until) await new Promise((r) => setTimeout(r, 20));
    this.connections.destroyAll();
    await Promise.race([closed, new Promise((r) => setTimeout(r, 1000))]);
    await this.rebuilding?.catch(() => undefined);
    await this.upstream.close();
    const removed = this.socket !== undefined && (await removeOwnSocket(this.opts.listen, this.socket));
    this.logger.log('info', 'shim stopped', { listen: this.opts.listen, socketRemoved: removed });
  }

  /** Gc removed effective file `<sha>.json`: the next create that needs it writes it again. */
  forgetEffective(sha: string): void {
    this.applier.forgetEffective(sha);
  }

  inFlight(): number {
    return this.calls.size;
  }

  /** Unary calls in flight (a long-lived stream such as GetContainerEvents does not count). */
  unaryInFlight(): number {
    let n = 0;
    for (const c of this.calls) if (!c.streaming) n++;
    return n;
  }

  /**
   * Runs `work` once the next unary call ends (its stream closed: the answer sent), or at once
   * when none is in flight: for work a call starts but nobody waits on, which would otherwise
   * share the machine with that call's answer. Under steady load calls keep ending, so it is
   * never put off for long.
   */
  afterUnaryCall(work: () => void): void {
    if (this.unaryInFlight() === 0) work();
    else this.afterUnary.push(work);
  }

  /**
   * Rebuilds the in-use set from the runtime in `delayMs` (coalesced: the earliest request wins;
   * each rebuild says when it wants the next one).
   */
  scheduleRebuild(delayMs: number): void {
    if (this.draining) return;
    const due = performance.now() + delayMs;
    if (this.rebuildTimer && this.rebuildDue <= due) return;
    if (this.rebuildTimer) clearTimeout(this.rebuildTimer);
    this.rebuildDue = due;
    this.rebuildTimer = setTimeout(() => {
      this.rebuildTimer = undefined;
      this.rebuildDue = Infinity;
      this.rebuilding = this.inUse.rebuild().then(
        (r) => {
          if (r.recheckInMs !== undefined) this.scheduleRebuild(r.recheckInMs);
        },
        (e) => {
          this.logger.log('warn', 'in-use rebuild failed; will retry', { error: (e as Error).message });
          this.scheduleRebuild(2000);
        },
      );
    }, delayMs);
    this.rebuildTimer.unref();
  }

  // ------------------------------------------------------------------ routing

  private onStream(stream: ServerHttp2Stream, headers: IncomingHttpHeaders, rawHeaders: RawHeaders): void {
    const rawPath = headers[':path'];
    const path = typeof rawPath === 'string' ? rawPath : '';
    const call: Call = { stream, path, streaming: STREAMING.has(path), started: performance.now(), reported: false, up: undefined, requestDone: false, rawHeaders, release: undefined };
    this.calls.add(call);
    stream.on('close', () => {
      this.calls.delete(call);
      this.report(call);
      if (!call.streaming && this.afterUnary.length > 0) for (const work of this.afterUnary.splice(0)) work();
      // Cancellation: the client went away before the upstream finished. An upstream stream the
      // runtime has ended is closed but, paused with an answer the client never read (up to its
      // 4 MiB window), not destroyed until that answer is read: destroyed here, it lets it go.
      const up = call.up;
      if (up !== undefined && !up.destroyed) {
        if (!up.closed) up.close(NGHTTP2_CANCEL);
        up.destroy();
      }
      // What the call still points at goes with it: this listener, and so the call, may be held
      // past a young collection with the closed stream (relay.ts forward).
      call.release?.();
      call.release = undefined;
      call.rawHeaders = NO_RAW_HEADERS;
    });
    stream.on('error', noop);

    if (this.draining) {
      this.endCall(call, GrpcCode.UNAVAILABLE, 'spoke shim shutting down', 'CLOSED');
      return;
    }
    if (this.calls.size > this.connections.limits.maxCalls) {
      this.endCall(call, GrpcCode.UNAVAILABLE, `spoke shim: ${this.connections.limits.maxCalls} calls in flight, the most it holds at once; try again`, 'OVERLOADED');
      return;
    }
    // nghttp2 asks for a leading slash only under an http(s) :scheme, and grpc-go drops one when
    // there is one: "runtime.v1.RuntimeService/CreateContainer" would reach the runtime as the
    // create it names, unread by the routes below.
    if (!path.startsWith('/')) {
      this.endCall(call, GrpcCode.UNIMPLEMENTED, 'spoke shim: the :path of a gRPC call must start with /', 'UNSPECIFIED');
      return;
    }
    const route = this.routes.get(path);
    if (route === undefined) {
      const refusal = unforwardedRefusal(path);
      if (refusal !== undefined) {
        this.endCall(call, GrpcCode.UNIMPLEMENTED, refusal, 'UNSPECIFIED');
        return;
      }
      forward(this.host, call, NO_OPTIONS);
      return;
    }
    route(call, headers)?.catch((e: unknown) => this.fail(call, e));
  }

  /** Records the forward-duration metric once: at the response headers, or when the call closes. */
  private report(call: Call): void {
    if (call.reported) return;
    call.reported = true;
    this.opts.deps.metrics.forwarded(methodLabel(call.path), (performance.now() - call.started) / 1000);
  }

  private endCall(call: Call, code: GrpcCodeValue, message: string, reason: ErrorReason): void {
    this.report(call);
    endWithStatus(call.stream, code, message, reason);
  }

  private fail(call: Call, e: unknown): void {
    const st = toGrpcStatus(e);
    if (st.code === GrpcCode.INTERNAL) this.logger.log('error', 'call failed', { method: methodLabel(call.path), error: (e as Error).message });
    this.endCall(call, st.code, st.message, st.reason);
  }
}
