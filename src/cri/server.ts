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

import {
  constants,
  createServer,
  type ClientHttp2Stream,
  type Http2Server,
  type IncomingHttpHeaders,
  type OutgoingHttpHeaders,
  type ServerHttp2Session,
  type ServerHttp2Stream,
  type ServerStreamResponseOptions,
} from 'node:http2';
import { connect as netConnect } from 'node:net';
import type { Readable, Writable } from 'node:stream';
import { chmod, lstat, unlink } from 'node:fs/promises';
import { SpokeError } from '../core/errors.js';
import type { Logger } from '../core/runtime.js';
import { ProfileApplier } from './apply.js';
import type { ShimDeps } from './deps.js';
import { decompress, encodeFrame, encodeGrpcMessage, formatGrpcTimeout, FrameError, parseFrames, parseGrpcTimeout, MAX_INSPECTED_MESSAGE_BYTES } from './frame.js';
import { CreateGate, type Lease } from './gc.js';
import { InUseTracker, requestIdentity, type AppArmorClaim } from './inuse.js';
import { decodeId, FEATURE_OCI_ARTIFACT, OCI_FEATURE_TRUE, STATUS_FEATURES } from './messages.js';
import {
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
import { OwnedHandlers } from './owned.js';
import { installLoggingProfile } from './recording.js';
import { rewriteCreateContainer, rewriteRunPodSandbox, type AnnotationDeps, type RewriteDeps, type RewriteResult } from './rewrite.js';
import { GrpcCode, toGrpcStatus, type GrpcCodeValue } from './status.js';
import { Upstream } from './upstream.js';
import { appendToMessageAt, fields, findAll, WIRE_VARINT, WireError } from './wire.js';

const { NGHTTP2_CANCEL, NGHTTP2_FLAG_END_STREAM, NGHTTP2_NO_ERROR, NGHTTP2_STREAM_STATE_HALF_CLOSED_REMOTE, NGHTTP2_STREAM_STATE_CLOSED } = constants;

/**
 * SETTINGS_MAX_CONCURRENT_STREAMS advertised on every client connection (RFC 9113 §6.5.2 asks
 * for at least 100). The kubelet's gRPC client queues calls beyond it; a client that opens more
 * anyway has the excess refused (REFUSED_STREAM), or, once it acknowledged the setting, loses the
 * connection (nghttp2 treats that as a connection error).
 */
export const MAX_CONCURRENT_STREAMS = 256;
/**
 * A request body not complete this long after its call started is answered DEADLINE_EXCEEDED
 * and the stream reset (checked every quarter of it, so it ends within 1.25 times this). It bounds every call, with or without grpc-timeout (a huge grpc-timeout
 * must not keep a half-sent request open): CRI has no client-streaming method, so a client sends
 * each request whole at once; server streams (GetContainerEvents…) finish their request at the
 * start and are not affected.
 */
export const REQUEST_BODY_TIMEOUT_MS = 30_000;
/**
 * Every client connection is pinged this often, and destroyed when it has not answered the
 * previous ping. nghttp2 answers a protocol error (garbage, a bad frame) with GOAWAY and stops
 * reading, and Node reports nothing: without the probe such a connection, and one whose peer
 * never speaks, would keep its fd and session memory forever.
 */
export const CONNECTION_PROBE_MS = 10_000;
/** After a client's GOAWAY, its calls in flight get this long before the connection is destroyed. */
export const GOAWAY_GRACE_MS = 10_000;

export interface ConnectionLimits {
  maxConcurrentStreams: number;
  requestBodyTimeoutMs: number;
  probeMs: number;
  goawayGraceMs: number;
}

const DEFAULT_LIMITS: ConnectionLimits = Object.freeze({
  maxConcurrentStreams: MAX_CONCURRENT_STREAMS,
  requestBodyTimeoutMs: REQUEST_BODY_TIMEOUT_MS,
  probeMs: CONNECTION_PROBE_MS,
  goawayGraceMs: GOAWAY_GRACE_MS,
});

/** Headers that are per-connection in HTTP/1 and forbidden in HTTP/2 (RFC 9113 §8.2.2). */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'http2-settings', 'host']);
const REQUEST_PSEUDO = new Set([':method', ':path', ':scheme', ':authority']);
const GRPC_RESPONSE_HEADERS: OutgoingHttpHeaders = Object.freeze({ ':status': 200, 'content-type': 'application/grpc' });
const GRPC_OK_TRAILERS: OutgoingHttpHeaders = Object.freeze({ 'grpc-status': '0' });
// No `date` header of our own (Node adds one by default): responses carry what the upstream sent.
// `sendDate` is honoured by respond() but missing from @types/node.
const RESPOND_END = Object.freeze({ endStream: true, sendDate: false }) as ServerStreamResponseOptions;
const RESPOND_TRAILERS = Object.freeze({ waitForTrailers: true, sendDate: false }) as ServerStreamResponseOptions;

export interface ShimServerOptions<P> {
  listen: string;
  upstream: string;
  deps: ShimDeps<P>;
  /** How long SIGTERM waits for unary calls in flight. Default 30 s. */
  shutdownGraceMs?: number;
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
}

/** A client connection's liveness probe. */
interface Probe {
  /** A ping was sent and has not been answered yet. */
  awaiting: boolean;
  /** Destroys the connection when the grace after the client's GOAWAY ends. */
  goaway: NodeJS.Timeout | undefined;
}

interface Call {
  stream: ServerHttp2Stream;
  path: string;
  streaming: boolean;
  /** performance.now() when the call arrived. */
  started: number;
  /** The forward-duration metric was recorded (at the response headers, or at close). */
  reported: boolean;
  /** The upstream stream of a forwarded call, until it closes. */
  up: ClientHttp2Stream | undefined;
  /** The client has sent the whole request (END_STREAM), as last seen by the body sweep. */
  requestDone: boolean;
}

interface ForwardOptions {
  body?: Buffer;
  editResponse?: (payload: Buffer) => Buffer;
  teeResponse?: boolean;
  onComplete?: (grpcStatus: string | undefined, responseBody: Buffer | undefined) => Promise<void>;
}

const NO_OPTIONS: ForwardOptions = Object.freeze({});
const STATUS_OPTIONS: ForwardOptions = Object.freeze({ editResponse: addOciFeature });
const noop = (): void => {};

export class ShimServer<P = unknown> {
  readonly upstream: Upstream;
  private server: Http2Server | undefined;
  private readonly sessions = new Map<ServerHttp2Session, Probe>();
  private readonly calls = new Set<Call>();
  private readonly limits: ConnectionLimits;
  private probeTimer: NodeJS.Timeout | undefined;
  private bodyTimer: NodeJS.Timeout | undefined;
  private draining = false;
  private readonly logger: Logger;
  private readonly applier: ProfileApplier<P>;
  readonly inUse: InUseTracker;
  /** Creates resolving profiles, or gc alone (gc.ts). */
  readonly gate = new CreateGate();
  private readonly owned: OwnedHandlers<P>;
  private rebuildTimer: NodeJS.Timeout | undefined;
  /** When the scheduled rebuild runs (performance.now() ms); the earliest request wins. */
  private rebuildDue = Infinity;
  private rebuilding: Promise<unknown> | undefined;
  private readonly annotationDeps: AnnotationDeps | undefined;
  /** The installed logging profile (start(), with `recording`). */
  private loggingProfile: string | undefined;

  constructor(private readonly opts: ShimServerOptions<P>) {
    this.logger = opts.deps.logger;
    this.limits = { ...DEFAULT_LIMITS, ...opts.limits };
    this.upstream = new Upstream(opts.upstream, this.logger, {
      onConnect: () => {
        this.scheduleRebuild(0);
        // A (re)started runtime may be another version: its default profile is read again.
        opts.deps.runtimeDefault?.refresh?.(this.upstream);
      },
    });
    this.applier = new ProfileApplier(opts.deps);
    this.inUse = new InUseTracker(opts.deps.store, this.logger, {
      upstream: this.upstream,
      seccompRoot: opts.deps.seccompRoot,
      ...(opts.deps.appArmor ? { appArmor: opts.deps.appArmor } : {}),
      scheduleRebuild: (ms) => this.scheduleRebuild(ms),
    });
    this.owned = new OwnedHandlers(opts.deps);
    const { pipeline, appArmor } = opts.deps;
    this.annotationDeps = opts.annotations
      ? {
          // No credential: the pipeline's registry client uses the node's auth file only.
          pull: (req) => pipeline.pull(req),
          ready: async (kind, ctx) => {
            if (kind === 'apparmor' && !(appArmor && (await appArmor.enabled()))) {
              throw new SpokeError('FailedPrecondition', `${ctx.who}: AppArmor is not enabled on this node`);
            }
          },
          log: (level, msg, fields) => this.logger.log(level, msg, fields),
        }
      : undefined;
  }

  /** Binds the socket (refusing a path that is not a socket; removing a stale one) and starts. */
  async start(): Promise<void> {
    if (this.opts.recording) {
      if (this.opts.recordingKey === undefined) {
        throw new SpokeError('FailedPrecondition', 'recording needs the cluster recording key (config recordingKey, flag --recording-key): without it any pod could ask for the logging profile', {}, { reason: 'RECORDING_UNPROVEN' });
      }
      // Before the socket exists: no pod can ask for the profile before it is on disk.
      this.loggingProfile = await installLoggingProfile(this.opts.deps.seccompRoot);
      this.logger.log('info', 'recording enabled: logging profile installed', { profile: this.loggingProfile });
    }
    const path = this.opts.listen;
    await prepareSocketPath(path);
    const server = createServer({
      settings: { initialWindowSize: 4 * 1024 * 1024, maxConcurrentStreams: this.limits.maxConcurrentStreams },
      maxSessionMemory: 64,
    });
    server.on('session', (s) => this.onSession(s));
    server.on('stream', (stream, headers) => this.onStream(stream, headers));
    server.on('error', (e) => this.logger.log('error', 'server error', { error: e.message }));
    const oldMask = process.umask(0o117);
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(path, () => {
          server.off('error', reject);
          resolve();
        });
      });
    } finally {
      process.umask(oldMask);
    }
    await chmod(path, this.opts.socketMode ?? 0o660);
    this.server = server;
    this.probeTimer = setInterval(() => this.probeSessions(), this.limits.probeMs).unref();
    this.bodyTimer = setInterval(() => this.endStalledRequests(), Math.max(1, this.limits.requestBodyTimeoutMs / 4)).unref();
    this.upstream.start();
    this.owned.refreshStoreGauges(0);
    this.logger.log('info', 'shim listening', { listen: path, upstream: this.opts.upstream });
  }

  /** Graceful stop: no new calls, unary calls in flight finish, streams end, socket removed. */
  async close(): Promise<void> {
    if (this.draining) return;
    this.draining = true;
    if (this.rebuildTimer) clearTimeout(this.rebuildTimer);
    clearInterval(this.probeTimer);
    clearInterval(this.bodyTimer);
    const server = this.server;
    const closed = server ? new Promise<void>((r) => server.close(() => r())) : Promise.resolve();
    for (const c of this.calls) {
      if (c.streaming) endWithStatus(c.stream, GrpcCode.UNAVAILABLE, 'spoke shim shutting down');
    }
    for (const s of this.sessions.keys()) s.close();
    const grace = this.opts.shutdownGraceMs ?? 30_000;
    const until = Date.now() + grace;
    while (this.calls.size > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
    for (const s of this.sessions.keys()) s.destroy();
    await Promise.race([closed, new Promise((r) => setTimeout(r, 1000))]);
    await this.rebuilding?.catch(() => undefined);
    await this.upstream.close();
    await unlink(this.opts.listen).catch(() => undefined);
    this.logger.log('info', 'shim stopped', { listen: this.opts.listen });
  }

  /** Gc removed effective file `<sha>.json`: the next create that needs it writes it again. */
  forgetEffective(sha: string): void {
    this.applier.forgetEffective(sha);
  }

  inFlight(): number {
    return this.calls.size;
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

  // ------------------------------------------------------------------ connections

  private onSession(s: ServerHttp2Session): void {
    const probe: Probe = { awaiting: false, goaway: undefined };
    this.sessions.set(s, probe);
    s.on('close', () => {
      this.sessions.delete(s);
      if (probe.goaway) clearTimeout(probe.goaway);
    });
    // Node destroys the session after 'error' itself; destroying here as well makes sure the
    // socket goes with it whatever the error.
    s.on('error', () => s.destroy());
    s.on('frameError', (_type: number, _code: number, id: number) => {
      if (id === 0) s.destroy();
    });
    // Node closes the session on the client's GOAWAY, but waits without bound for its streams.
    s.on('goaway', () => {
      probe.goaway ??= setTimeout(() => s.destroy(), this.limits.goawayGraceMs).unref();
    });
  }

  /** Pings every client connection; destroys those that did not answer the previous ping. */
  private probeSessions(): void {
    for (const [s, probe] of this.sessions) {
      if (s.destroyed) continue;
      if (probe.awaiting) {
        this.logger.log('debug', 'client connection did not answer a ping: closed');
        s.destroy();
        continue;
      }
      probe.awaiting = true;
      try {
        s.ping((err) => {
          if (!err) probe.awaiting = false;
        });
      } catch {
        s.destroy();
      }
    }
  }

  /** Ends the calls whose request body is still incomplete after the body timeout. */
  private endStalledRequests(): void {
    const limit = this.limits.requestBodyTimeoutMs;
    const oldest = performance.now() - limit;
    for (const call of this.calls) {
      if (call.requestDone || call.started > oldest) continue;
      const stream = call.stream;
      if (stream.closed || stream.destroyed) continue;
      const state = stream.state.state;
      if (state === NGHTTP2_STREAM_STATE_HALF_CLOSED_REMOTE || state === NGHTTP2_STREAM_STATE_CLOSED) {
        call.requestDone = true;
        continue;
      }
      this.logger.log('debug', 'request body incomplete at the timeout: call ended', { method: methodLabel(call.path) });
      this.endCall(call, GrpcCode.DEADLINE_EXCEEDED, `spoke shim: the request was not complete within ${limit} ms`);
      // RFC 9113 §8.1: a complete response, then RST_STREAM(NO_ERROR) stops the request.
      if (!stream.closed && !stream.destroyed) stream.close(NGHTTP2_NO_ERROR);
    }
  }

  // ------------------------------------------------------------------ routing

  private onStream(stream: ServerHttp2Stream, headers: IncomingHttpHeaders): void {
    const rawPath = headers[':path'];
    const path = typeof rawPath === 'string' ? rawPath : '';
    const call: Call = { stream, path, streaming: STREAMING.has(path), started: performance.now(), reported: false, up: undefined, requestDone: false };
    this.calls.add(call);
    stream.on('close', () => {
      this.calls.delete(call);
      this.report(call);
      // Cancellation: the client went away before the upstream finished.
      const up = call.up;
      if (up !== undefined && !up.closed && !up.destroyed) up.close(NGHTTP2_CANCEL);
    });
    stream.on('error', noop);

    if (this.draining) {
      this.endCall(call, GrpcCode.UNAVAILABLE, 'spoke shim shutting down');
      return;
    }
    switch (path) {
      case PATH_PULL_ARTIFACT:
      case PATH_PULL_PROFILE:
        this.ownedCall(call, headers, (req, signal) => this.owned.pull(req, signal)).catch((e) => this.fail(call, e));
        return;
      case PATH_LIST_PROFILES:
        this.ownedCall(call, headers, (req) => this.owned.list(req)).catch((e) => this.fail(call, e));
        return;
      case PATH_REMOVE_PROFILE:
        this.ownedCall(call, headers, (req) => this.owned.remove(req)).catch((e) => this.fail(call, e));
        return;
      case PATH_RUN_POD_SANDBOX:
        this.editedCall(call, headers, 'sandbox', rewriteRunPodSandbox).catch((e) => this.fail(call, e));
        return;
      case PATH_CREATE_CONTAINER:
        this.editedCall(call, headers, 'container', rewriteCreateContainer).catch((e) => this.fail(call, e));
        return;
      case PATH_STATUS:
        this.forward(call, headers, STATUS_OPTIONS);
        return;
      case PATH_REMOVE_CONTAINER:
      case PATH_REMOVE_POD_SANDBOX:
        this.removeCall(call, headers, path === PATH_REMOVE_CONTAINER ? 'container' : 'sandbox').catch((e) => this.fail(call, e));
        return;
      default:
        this.forward(call, headers, NO_OPTIONS);
    }
  }

  /** Records the forward-duration metric once: at the response headers, or when the call closes. */
  private report(call: Call): void {
    if (call.reported) return;
    call.reported = true;
    this.opts.deps.metrics.forwarded(methodLabel(call.path), (performance.now() - call.started) / 1000);
  }

  private endCall(call: Call, code: GrpcCodeValue, message: string): void {
    this.report(call);
    endWithStatus(call.stream, code, message);
  }

  private fail(call: Call, e: unknown): void {
    const st = toGrpcStatus(e);
    if (st.code === GrpcCode.INTERNAL) this.logger.log('error', 'call failed', { method: methodLabel(call.path), error: (e as Error).message });
    this.endCall(call, st.code, st.message);
  }

  // ------------------------------------------------------------------ owned methods

  private async ownedCall(call: Call, headers: IncomingHttpHeaders, handler: (request: Buffer, signal: () => AbortSignal) => Promise<Buffer>): Promise<void> {
    const stream = call.stream;
    const deadline = deadlineOf(headers, call.started);
    // The abort signal (client cancel, deadline) is made only when the handler asks for it: a
    // cached pull never does, and an AbortController plus a deadline timer per call are a
    // noticeable part of its cost.
    let ac: AbortController | undefined;
    let timer: NodeJS.Timeout | undefined;
    let cancelled: SpokeError | undefined;
    const signal = (): AbortSignal => {
      if (ac === undefined) {
        const c = (ac = new AbortController());
        if (cancelled !== undefined) c.abort(cancelled);
        else if (deadline !== undefined) {
          timer = setTimeout(() => c.abort(new SpokeError('Unavailable', 'deadline exceeded')), Math.max(0, deadline - performance.now()));
        }
      }
      return ac.signal;
    };
    const onClose = () => {
      cancelled ??= new SpokeError('Unavailable', 'the client cancelled the call');
      ac?.abort(cancelled);
    };
    stream.once('close', onClose);
    try {
      const body = await readBody(stream);
      const request = singleMessage(body, headers);
      const response = await handler(request, signal);
      if (deadline !== undefined && performance.now() > deadline) {
        this.endCall(call, GrpcCode.DEADLINE_EXCEEDED, 'deadline exceeded');
        return;
      }
      this.report(call);
      sendUnary(stream, response);
    } catch (e) {
      if (deadline !== undefined && performance.now() >= deadline) this.endCall(call, GrpcCode.DEADLINE_EXCEEDED, 'deadline exceeded');
      else throw e;
    } finally {
      if (timer) clearTimeout(timer);
      stream.off('close', onClose);
    }
  }

  // ------------------------------------------------------------------ edited requests

  private async editedCall(call: Call, headers: IncomingHttpHeaders, role: 'sandbox' | 'container', rewrite: (payload: Buffer, deps: RewriteDeps) => Promise<RewriteResult>): Promise<void> {
    // From the first profile resolved until the holder is recorded, out of gc's reach (gc.ts).
    const lease = this.gate.lease();
    try {
      await this.forwardEdited(call, headers, role, rewrite, lease);
    } finally {
      lease.release();
    }
  }

  private async forwardEdited(
    call: Call,
    headers: IncomingHttpHeaders,
    role: 'sandbox' | 'container',
    rewrite: (payload: Buffer, deps: RewriteDeps) => Promise<RewriteResult>,
    lease: Lease,
  ): Promise<void> {
    const stream = call.stream;
    const deadline = deadlineOf(headers, call.started);
    const body = await readBody(stream);
    let result: RewriteResult;
    let frames;
    try {
      frames = parseFrames(body);
    } catch (e) {
      throw new SpokeError('InvalidArgument', `spoke shim: malformed gRPC request body: ${(e as Error).message}`);
    }
    if (frames.length !== 1) throw new SpokeError('InvalidArgument', `spoke shim: expected one request message, got ${frames.length}`);
    let payload: Buffer;
    try {
      payload = decompress(frames[0]!, headerString(headers['grpc-encoding']));
    } catch (e) {
      throw new SpokeError('InvalidArgument', `spoke shim: ${(e as Error).message}`);
    }
    // AppArmor profiles are loaded while the request is rewritten (claimAppArmor); whatever was
    // claimed is released again if the call ends before it is forwarded; once forwarded, a failed
    // or lost create keeps its claims until a rebuild settles them (inuse.ts).
    const claims: AppArmorClaim[] = [];
    const appArmor = this.opts.deps.appArmor;
    const identity = requestIdentity(role, payload);
    const deps: RewriteDeps = {
      seccomp: async (p, c) => {
        await lease.acquire();
        return this.applier.apply(p, c);
      },
      appArmor: async (p, c) => {
        await lease.acquire();
        const prepared = await this.applier.prepareAppArmor(p, c);
        claims.push(await this.inUse.claimAppArmor(prepared.name, prepared.digest, () => appArmor!.load(prepared.text), identity));
        return prepared;
      },
      ...(this.annotationDeps ? { annotations: withDeadline(this.annotationDeps, deadline) } : {}),
      recording: { loggingProfile: this.loggingProfile, key: this.opts.recordingKey, log: (level, msg, fields) => this.logger.log(level, msg, fields) },
    };
    try {
      result = await rewrite(payload, deps);
    } catch (e) {
      await this.inUse.abortAppArmor(claims).catch(() => undefined);
      if (e instanceof WireError) throw new SpokeError('InvalidArgument', `spoke shim: malformed request message: ${e.message}`);
      throw e;
    }
    if (stream.closed || stream.destroyed) {
      await this.inUse.abortAppArmor(claims).catch(() => undefined);
      return;
    }
    if (!result.edited) {
      // Not ours: the original bytes, headers untouched.
      this.forward(call, headers, { body });
      return;
    }
    const out: IncomingHttpHeaders = { ...headers };
    if (deadline !== undefined) {
      const left = deadline - performance.now();
      if (left <= 0) {
        await this.inUse.abortAppArmor(claims).catch(() => undefined);
        this.endCall(call, GrpcCode.DEADLINE_EXCEEDED, 'deadline exceeded');
        return;
      }
      out['grpc-timeout'] = formatGrpcTimeout(left);
    }
    const holds = result.holds;
    const input = { reference: holds?.reference ?? '', ...(holds?.base ? { base: holds.base } : {}) };
    const pending = holds ? await this.inUse.begin(holds.digest, { effectiveSha: holds.effectiveSha, input, ...(identity ? { identity } : {}) }) : undefined;
    this.forward(call, out, {
      body: encodeFrame(result.payload),
      teeResponse: true,
      onComplete: async (status, responseBody) => {
        if (!pending && claims.length === 0) return;
        if (status === '0' && responseBody) {
          try {
            const id = decodeId(parseFrames(responseBody)[0]?.payload ?? Buffer.alloc(0));
            if (id !== '') {
              if (pending && holds) await this.inUse.commit(pending, `${role}:${id}`, holds.digest);
              await this.inUse.commitAppArmor(claims, `${role}:${id}`);
              return;
            }
          } catch (e) {
            this.logger.log('warn', 'could not record the in-use holder', { error: (e as Error).message });
          }
        }
        // Failed or lost after forwarding: the runtime may have made the object anyway.
        this.inUse.unconfirmed(pending, claims);
      },
    });
  }

  // ------------------------------------------------------------------ removals

  private async removeCall(call: Call, headers: IncomingHttpHeaders, role: 'sandbox' | 'container'): Promise<void> {
    const body = await readBody(call.stream);
    let id = '';
    try {
      const frames = parseFrames(body);
      if (frames.length === 1) id = decodeId(decompress(frames[0]!, headerString(headers['grpc-encoding'])));
    } catch {
      id = '';
    }
    this.forward(call, headers, {
      body,
      onComplete: async (status) => {
        if (status !== '0' || id === '') return;
        await this.inUse.released(`${role}:${id}`).catch((e) => this.logger.log('warn', 'release failed', { error: (e as Error).message }));
        // Containers go with their sandbox: let the runtime's list say which remain.
        if (role === 'sandbox') this.scheduleRebuild(100);
      },
    });
  }

  // ------------------------------------------------------------------ raw forwarding

  /**
   * Forwards one call as raw HTTP/2. The upstream stream is opened at once and the request body
   * relayed as it arrives (or `o.body` sent whole); the response headers are passed on as soon as
   * they arrive, DATA relayed, trailers passed at the end. Without `onComplete` everything happens
   * synchronously in the HTTP/2 callbacks, so a unary exchange leaves in one write each way.
   */
  private forward(call: Call, headers: IncomingHttpHeaders, o: ForwardOptions): void {
    const stream = call.stream;
    if (stream.closed || stream.destroyed) {
      // The client is gone (while an edited request was being prepared): nothing to forward.
      void o.onComplete?.(undefined, undefined);
      return;
    }
    const session = this.upstream.get();
    if (!session) {
      void o.onComplete?.(undefined, undefined);
      this.endCall(call, GrpcCode.UNAVAILABLE, 'spoke shim: the upstream runtime is not available');
      return;
    }
    let up: ClientHttp2Stream;
    try {
      up = session.request(requestHeaders(headers), { endStream: false });
    } catch (e) {
      void o.onComplete?.(undefined, undefined);
      this.endCall(call, GrpcCode.UNAVAILABLE, `spoke shim: upstream request failed: ${(e as Error).message}`);
      return;
    }
    up.on('error', noop);
    call.up = up;
    let responded = false;
    let trailers: OutgoingHttpHeaders | undefined;
    let grpcStatus: string | undefined;
    let tee: Buffer[] | undefined;
    let downRelay: Relay | undefined;
    const onComplete = o.onComplete;
    let completed = false;
    const complete = async () => {
      if (completed) return;
      completed = true;
      if (onComplete) await onComplete(grpcStatus, tee ? Buffer.concat(tee) : undefined).catch(() => undefined);
    };

    // client → upstream
    if (o.body !== undefined) up.end(o.body);
    else relay(stream, up);

    up.on('response', (h, flags) => {
      if (stream.closed || stream.destroyed) return;
      const rh = responseHeaders(h);
      responded = true;
      this.report(call);
      if ((flags & NGHTTP2_FLAG_END_STREAM) !== 0) {
        // Trailers-only response (errors, unknown methods): status and message in one block.
        grpcStatus = headerString(h['grpc-status']);
        if (!onComplete) {
          completed = true;
          stream.respond(rh, RESPOND_END);
          return;
        }
        void complete().finally(() => {
          if (!stream.closed && !stream.destroyed) stream.respond(rh, RESPOND_END);
        });
        return;
      }
      stream.respond(rh, RESPOND_TRAILERS);
      stream.on('wantTrailers', () => {
        if (!onComplete) {
          completed = true;
          sendTrailers(stream, trailers);
          return;
        }
        void complete().finally(() => sendTrailers(stream, trailers));
      });
      if (o.teeResponse || o.editResponse) {
        const chunks: Buffer[] = (tee = []);
        up.on('data', (c: Buffer) => chunks.push(c));
      }
      if (o.editResponse) {
        const edit = o.editResponse;
        up.on('end', () => {
          const body = Buffer.concat(tee!);
          let outBody: Buffer = body;
          try {
            const frames = parseFrames(body, 256 * 1024 * 1024);
            if (frames.length === 1 && !frames[0]!.compressed) outBody = encodeFrame(edit(frames[0]!.payload));
          } catch (e) {
            this.logger.log('warn', 'response not edited: unparseable', { error: (e as Error).message });
          }
          if (!stream.closed && !stream.destroyed) stream.end(outBody);
        });
      } else {
        downRelay = relay(up, stream);
      }
    });

    up.on('trailers', (t) => {
      trailers = responseHeaders(t);
      grpcStatus = headerString(t['grpc-status']);
    });

    up.on('close', () => {
      call.up = undefined;
      if (stream.closed || stream.destroyed) {
        void complete();
        return;
      }
      if (!responded) {
        void complete();
        this.endCall(call, GrpcCode.UNAVAILABLE, 'spoke shim: the upstream runtime closed the stream');
      } else if (trailers === undefined && up.rstCode !== undefined && up.rstCode !== 0) {
        // Reset or disconnect in the middle of a response: what arrived goes out, then UNAVAILABLE.
        downRelay?.flush();
        trailers = { 'grpc-status': String(GrpcCode.UNAVAILABLE), 'grpc-message': encodeGrpcMessage('spoke shim: the upstream runtime reset the stream') };
        if (!stream.writableEnded) stream.end();
      }
    });
  }
}

// ------------------------------------------------------------------ helpers

function headerString(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

/**
 * Annotation pulls end at the CRI call's deadline (grpc-timeout), like PullSecurityProfile. The
 * signal is made only when the pipeline asks for it (a fetch): a cached pull never does.
 */
function withDeadline(deps: AnnotationDeps, deadline: number | undefined): AnnotationDeps {
  if (deadline === undefined) return deps;
  return {
    ...deps,
    pull: (req) => {
      let signal: AbortSignal | undefined;
      return deps.pull({
        ...req,
        get signal() {
          return (signal ??= AbortSignal.timeout(Math.max(0, Math.ceil(deadline - performance.now()))));
        },
      });
    },
  };
}

function deadlineOf(headers: IncomingHttpHeaders, started: number): number | undefined {
  const ms = parseGrpcTimeout(headerString(headers['grpc-timeout']));
  return ms === undefined ? undefined : started + ms;
}

/** Request headers for the upstream: pseudo-headers of a request, minus connection-specific ones. */
function requestHeaders(h: IncomingHttpHeaders): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (const k in h) {
    const v = h[k];
    if (v === undefined) continue;
    if (k.charCodeAt(0) === 0x3a /* : */ ? !REQUEST_PSEUDO.has(k) : HOP_BY_HOP.has(k)) continue;
    out[k] = v;
  }
  return out;
}

function responseHeaders(h: IncomingHttpHeaders): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (const k in h) {
    const v = h[k];
    if (v === undefined) continue;
    if (k.charCodeAt(0) === 0x3a /* : */ ? k !== ':status' : HOP_BY_HOP.has(k)) continue;
    out[k] = v;
  }
  return out;
}

function sendTrailers(stream: ServerHttp2Stream, trailers: OutgoingHttpHeaders | undefined): void {
  if (stream.closed || stream.destroyed) return;
  try {
    stream.sendTrailers(trailers ?? {});
  } catch {
    /* stream already gone */
  }
}

interface Relay {
  /** Writes the chunk held back, if any (before ending the destination some other way). */
  flush(): void;
}

/**
 * Relays DATA from `src` to `dst` as it arrives, with backpressure, and ends `dst` when `src`
 * ends. The latest chunk is held back until the next one, the end of `src`, or the next turn of
 * the event loop, whichever comes first: a unary message and its END_STREAM usually arrive in
 * one read, and writing them together lets HTTP/2 send the END_STREAM flag (and trailers) on the
 * last DATA frame in the same write instead of an extra frame and an extra loop turn later.
 */
function relay(src: Readable, dst: Writable): Relay {
  let held: Buffer | undefined;
  let timer: NodeJS.Immediate | undefined;
  const write = (c: Buffer) => {
    if (dst.destroyed || dst.writableEnded) return;
    if (!dst.write(c)) {
      src.pause();
      dst.once('drain', () => src.resume());
    }
  };
  const flush = () => {
    if (timer !== undefined) {
      clearImmediate(timer);
      timer = undefined;
    }
    const c = held;
    held = undefined;
    if (c !== undefined) write(c);
  };
  const onImmediate = () => {
    timer = undefined;
    flush();
  };
  src.on('data', (c: Buffer) => {
    if (held !== undefined) write(held);
    held = c;
    timer ??= setImmediate(onImmediate);
  });
  src.on('end', () => {
    if (timer !== undefined) {
      clearImmediate(timer);
      timer = undefined;
    }
    const c = held;
    held = undefined;
    if (dst.destroyed || dst.writableEnded) return;
    if (c !== undefined) dst.end(c);
    else dst.end();
  });
  return { flush };
}

export function endWithStatus(stream: ServerHttp2Stream, code: GrpcCodeValue, message: string): void {
  if (stream.closed || stream.destroyed) return;
  const trailers = { 'grpc-status': String(code), 'grpc-message': encodeGrpcMessage(message) };
  try {
    if (!stream.headersSent) {
      stream.respond({ ':status': 200, 'content-type': 'application/grpc', ...trailers }, RESPOND_END);
    } else {
      stream.close(NGHTTP2_CANCEL);
    }
  } catch {
    stream.destroy();
  }
}

function sendUnary(stream: ServerHttp2Stream, payload: Buffer): void {
  if (stream.closed || stream.destroyed) return;
  stream.respond(GRPC_RESPONSE_HEADERS, RESPOND_TRAILERS);
  stream.on('wantTrailers', () => {
    try {
      stream.sendTrailers(GRPC_OK_TRAILERS);
    } catch {
      /* gone */
    }
  });
  stream.end(encodeFrame(payload));
}

function readBody(stream: ServerHttp2Stream, max = MAX_INSPECTED_MESSAGE_BYTES + 5): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (c: Buffer) => {
      size += c.length;
      if (size > max) {
        cleanup();
        reject(new SpokeError('InvalidArgument', `request larger than ${max} bytes`));
        return;
      }
      chunks.push(c);
    };
    const onEnd = () => {
      cleanup();
      resolve(Buffer.concat(chunks));
    };
    const onClose = () => {
      cleanup();
      reject(new SpokeError('Unavailable', 'the client closed the stream before the request was complete'));
    };
    const cleanup = () => {
      stream.off('data', onData);
      stream.off('end', onEnd);
      stream.off('close', onClose);
    };
    stream.on('data', onData);
    stream.once('end', onEnd);
    stream.once('close', onClose);
  });
}

function singleMessage(body: Buffer, headers: IncomingHttpHeaders): Buffer {
  try {
    const frames = parseFrames(body);
    if (frames.length !== 1) throw new FrameError(`expected one request message, got ${frames.length}`);
    return decompress(frames[0]!, headerString(headers['grpc-encoding']));
  } catch (e) {
    throw new SpokeError('InvalidArgument', `malformed gRPC request: ${(e as Error).message}`);
  }
}

/** StatusResponse: features.security_profile_oci_artifact = true, every other byte kept. */
export function addOciFeature(payload: Buffer): Buffer {
  const feats = findAll(payload, STATUS_FEATURES);
  if (feats.length > 0) {
    const last = feats[feats.length - 1]!;
    let already = false;
    for (const f of fields(payload, last.valueStart, last.end)) {
      if (f.field === FEATURE_OCI_ARTIFACT && f.wireType === WIRE_VARINT) already = f.varint !== 0;
    }
    if (already) return payload;
  }
  return appendToMessageAt(payload, [STATUS_FEATURES], OCI_FEATURE_TRUE);
}

/** Refuses a path that exists and is not a socket; removes a stale socket; refuses a live one. */
export async function prepareSocketPath(path: string): Promise<void> {
  let st;
  try {
    st = await lstat(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw e;
  }
  if (!st.isSocket()) {
    throw new SpokeError('InvalidArgument', `${path} exists and is not a socket; refusing to replace it`, { path });
  }
  const live = await new Promise<boolean>((resolve) => {
    const s = netConnect(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
  if (live) throw new SpokeError('InvalidArgument', `${path} is in use by another process`, { path });
  await unlink(path);
}
