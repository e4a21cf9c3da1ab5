// A small CRI client (RuntimeService/ImageService over a unix socket) for `spoke record`,
// `spoke recorder` and `spoke status`:
// @grpc/grpc-js + protobufjs with proto/api.proto. Objects in, plain objects out (keepCase
// names, enums as strings, longs as strings).

import * as grpc from '@grpc/grpc-js';
import protobuf from 'protobufjs';
import { existsSync } from 'node:fs';
import { connect } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { knownReason, SHIM_REASON_TRAILER, SpokeError } from '../core/errors.js';
import { monotonicNow, type MonotonicNow } from '../core/runtime.js';

export type Msg = Record<string, unknown>;

let root: protobuf.Root | undefined;

function protoPath(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    const p = join(dir, 'proto', 'api.proto');
    if (existsSync(p)) return p;
    dir = dirname(dir);
  }
  throw new SpokeError('Internal', 'proto/api.proto not found next to spoke', {}, { reason: 'FILE_UNREADABLE' });
}

/** proto/api.proto loaded once (also the test suite's CRI client: test/helpers/cri-client.ts). */
export function criRoot(): protobuf.Root {
  if (!root) {
    root = new protobuf.Root();
    root.loadSync(protoPath(), { keepCase: true });
    root.resolveAll();
  }
  return root;
}

/** A host pid from verbose (Container|PodSandbox)Status `info.info` JSON (containerd, CRI-O: `pid`). */
export function pidFromVerboseInfo(res: Msg): number | undefined {
  const raw = (res.info as Record<string, string> | undefined)?.info;
  try {
    const pid = raw === undefined || raw.length > 1 << 22 ? undefined : (JSON.parse(raw) as { pid?: unknown }).pid;
    return typeof pid === 'number' && Number.isSafeInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** What the helpers below need of a CRI client (RuntimeCriClient, or the test suite's). */
export interface RuntimeCalls {
  rt(name: string, req?: Msg): Promise<Msg>;
}

/** A container to run to its exit under a Localhost seccomp profile (recording, replaying a recorded profile). */
export interface ProfiledContainer {
  name: string;
  image: string;
  command: string[];
  /** The Localhost profile's path (under the kubelet's seccomp root). */
  profilePath: string;
}

/** The ids of every container the runtime lists now. */
export async function containerIds(cri: RuntimeCalls): Promise<Set<string>> {
  return new Set((((await cri.rt('ListContainers', {})).containers ?? []) as { id: string }[]).map((c) => c.id));
}

/** Creates and starts `c` in the running pod `pod` (log: <name>.log in the pod's log directory); resolves its id. */
export async function startProfiledContainer(cri: RuntimeCalls, pod: { id: string; config: Msg }, c: ProfiledContainer): Promise<string> {
  const id = (
    await cri.rt('CreateContainer', {
      pod_sandbox_id: pod.id,
      sandbox_config: pod.config,
      config: {
        metadata: { name: c.name, attempt: 0 },
        image: { image: c.image },
        command: c.command,
        log_path: `${c.name}.log`,
        linux: { security_context: { seccomp: { profile_type: 'Localhost', localhost_ref: c.profilePath } } },
      },
    })
  ).container_id as string;
  await cri.rt('StartContainer', { container_id: id });
  return id;
}

/**
 * Polls the container's status until it exited (DEADLINE after `timeoutMs`; the signal's reason
 * once aborted); resolves its exit code. `timeoutMs` is measured on `now` (tests; default
 * performance.now()): on the wall clock a step forward would end the recording early and one
 * back keep waiting for a workload that hangs.
 */
export async function waitForExit(cri: RuntimeCalls, containerId: string, timeoutMs: number, signal?: AbortSignal, now: MonotonicNow = monotonicNow): Promise<number> {
  const until = now() + timeoutMs;
  for (;;) {
    if (signal?.aborted) throw signal.reason;
    const st = (await cri.rt('ContainerStatus', { container_id: containerId })).status as { state: string; exit_code: number };
    if (st.state === 'CONTAINER_EXITED') return st.exit_code;
    if (now() > until) throw new SpokeError('Internal', `the workload did not exit within ${timeoutMs / 1000} s`, { limit: timeoutMs }, { reason: 'DEADLINE' });
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The system error grpc-js buried in a connection failure (`connect ENOENT /x.sock`), if any. */
const CONNECT_ERRNO_RE = /\bconnect (E[A-Z]{2,15})\b/;

/** A gRPC server's content type (application/grpc, application/grpc+proto, …). */
const GRPC_CONTENT_TYPE_RE = /^application\/grpc(?:[+;]|$)/i;

const firstText = (md: grpc.Metadata | undefined, key: string): string | undefined => {
  const v = md?.get(key)[0];
  return typeof v === 'string' ? v : undefined;
};

/**
 * A failed CRI call in spoke's own words: grpc-js's connection details ("No connection
 * established. Last error: … Resolution note: …") are not passed through; the runtime's own
 * error text is, when it answered. `answered`: the call went over a connection that is up, so an
 * UNAVAILABLE is the answer of what listens on the socket (a shim whose runtime is down, a
 * runtime not ready), RUNTIME_ERROR with its message, not a socket nobody answers on (TRANSPORT).
 * `headers`: the answer's response headers, when it sent any before its status. An answer whose
 * content type is not gRPC's is from a server that does not speak gRPC (NOT_GRPC), whatever
 * status grpc-js made of its HTTP status. A status the shim gave itself carries its reason
 * (SHIM_REASON_TRAILER): context.shimReason.
 */
export function criError(name: string, socket: string, deadlineMs: number, err: grpc.ServiceError, answered = false, headers?: grpc.Metadata): SpokeError {
  const context = { socket, grpcCode: err.code };
  const contentType = firstText(headers, 'content-type') ?? firstText(err.metadata, 'content-type');
  if (contentType !== undefined && !GRPC_CONTENT_TYPE_RE.test(contentType)) {
    const said = (err.details ?? '').slice(0, 200);
    return new SpokeError('Unavailable', `CRI ${name}: what answers on ${socket} is not a gRPC server (content-type ${contentType.slice(0, 100)}: ${said})`, { ...context, contentType: contentType.slice(0, 100) }, { cause: err, reason: 'NOT_GRPC' });
  }
  if (err.code === grpc.status.UNAVAILABLE && !answered) {
    const errno = CONNECT_ERRNO_RE.exec((err.details ?? '').slice(0, 2000))?.[1];
    const why = errno === 'ENOENT' ? 'no socket there' : errno === 'ECONNREFUSED' ? 'nothing listens on it' : errno === 'EACCES' ? 'permission denied' : errno ?? 'not reachable';
    return new SpokeError('Unavailable', `CRI ${name}: nothing answers on ${socket} (${why})`, context, { cause: err, reason: 'TRANSPORT' });
  }
  if (err.code === grpc.status.DEADLINE_EXCEEDED) {
    // Over a connection that is up, what listens took the call: what it waits on (the runtime
    // behind a shim) is what hangs.
    const why = answered ? ', though it took the call (what it waits on does not answer)' : '';
    return new SpokeError('Unavailable', `CRI ${name}: ${socket} did not answer within ${deadlineMs} ms${why}`, { ...context, connected: answered }, { cause: err, reason: 'DEADLINE' });
  }
  const code = err.code === grpc.status.NOT_FOUND ? 'NotFound' : err.code === grpc.status.UNAVAILABLE ? 'Unavailable' : 'Internal';
  const status = (grpc.status as unknown as Record<number, string>)[err.code] ?? String(err.code);
  const said = (err.details ?? '').slice(0, 500);
  const shimReason = knownReason(firstText(err.metadata, SHIM_REASON_TRAILER));
  return new SpokeError(code, `CRI ${name}: the runtime answered ${status}: ${said}`, { ...context, grpcMessage: said, ...(shimReason === undefined ? {} : { shimReason }) }, { cause: err, reason: code === 'NotFound' ? 'NOT_FOUND' : 'RUNTIME_ERROR' });
}

/** HTTP/2's client connection preface and an empty SETTINGS frame (RFC 9113 §3.4). */
const H2_CLIENT_PREFACE = Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1'), Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0])]);
const H2_FRAME_HEADER_BYTES = 9;
const H2_SETTINGS = 4;

/**
 * Whether what listens on `socket` speaks HTTP/2, which gRPC runs on: true when its first frame
 * is SETTINGS on stream 0 (the server's preface, RFC 9113 §3.4); false when it answers the
 * client's preface with anything else (an HTTP/1 server's "HTTP/1.1 400"), or closes after a few
 * bytes; undefined when nothing can be told within `ms` (no connection, no byte). grpc-js tells
 * such a server from a socket nobody listens on only in its message text.
 */
export function speaksHttp2(socket: string, ms: number): Promise<boolean | undefined> {
  return new Promise((resolve) => {
    let got = Buffer.alloc(0);
    let settled = false;
    const conn = connect(socket);
    const done = (answer: boolean | undefined): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      conn.destroy();
      resolve(answer);
    };
    const timer = setTimeout(() => done(undefined), ms);
    conn.on('connect', () => conn.write(H2_CLIENT_PREFACE));
    conn.on('data', (d: Buffer) => {
      got = Buffer.concat([got, d]);
      if (got.length >= H2_FRAME_HEADER_BYTES) done(got[3] === H2_SETTINGS && (got.readUInt32BE(5) & 0x7fffffff) === 0);
    });
    conn.on('error', () => done(got.length > 0 ? false : undefined));
    conn.on('close', () => done(got.length > 0 ? false : undefined));
  });
}

export class RuntimeCriClient {
  private readonly client: grpc.Client;

  constructor(readonly socket: string) {
    this.client = new grpc.Client(`unix://${socket}`, grpc.credentials.createInsecure(), { 'grpc.max_receive_message_length': 16 * 1024 * 1024 });
  }

  call(service: 'RuntimeService' | 'ImageService', name: string, req: Msg, deadlineMs = 60_000): Promise<Msg> {
    const method = criRoot().lookupService(`runtime.v1.${service}`).methods[name];
    if (!method) throw new SpokeError('Internal', `no CRI method ${service}.${name}`, {}, { reason: 'INVARIANT' });
    method.resolve();
    const reqType = method.resolvedRequestType!;
    const resType = method.resolvedResponseType!;
    const body = Buffer.from(reqType.encode(reqType.fromObject(req)).finish());
    const id = (b: Buffer) => b;
    return new Promise((resolve, reject) => {
      let headers: grpc.Metadata | undefined;
      const call = this.client.makeUnaryRequest(`/runtime.v1.${service}/${name}`, id, id, body, new grpc.Metadata(), { deadline: Date.now() + deadlineMs }, (err, res) => {
        if (err) {
          // The connection still up once the call failed: the server ended the call, it did not
          // fail to connect or drop (grpc-js says which only in its message text).
          const answered = this.client.getChannel().getConnectivityState(false) === grpc.connectivityState.READY;
          reject(criError(name, this.socket, deadlineMs, err, answered, headers));
          return;
        }
        resolve(resType.toObject(resType.decode(res!), { longs: String, enums: String, defaults: true }) as Msg);
      });
      call.on('metadata', (m: grpc.Metadata) => (headers = m));
    });
  }

  rt(name: string, req: Msg = {}, deadlineMs?: number): Promise<Msg> {
    return this.call('RuntimeService', name, req, deadlineMs);
  }

  img(name: string, req: Msg = {}, deadlineMs?: number): Promise<Msg> {
    return this.call('ImageService', name, req, deadlineMs);
  }

  /** Container id → pod name/namespace through ListContainers (labels the kubelet sets). */
  async podOf(containerId: string): Promise<{ name: string; namespace: string } | undefined> {
    const list = (await this.rt('ListContainers', { filter: { id: containerId } })).containers as { labels?: Record<string, string> }[];
    const labels = list[0]?.labels ?? {};
    const name = labels['io.kubernetes.pod.name'];
    const namespace = labels['io.kubernetes.pod.namespace'];
    return name !== undefined && namespace !== undefined ? { name, namespace } : undefined;
  }

  close(): void {
    this.client.close();
  }
}
