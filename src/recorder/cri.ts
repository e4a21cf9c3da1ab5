// A small CRI client (RuntimeService/ImageService over a unix socket) for `spoke record`,
// `spoke recorder` and `spoke status`:
// @grpc/grpc-js + protobufjs with proto/api.proto. Objects in, plain objects out (keepCase
// names, enums as strings, longs as strings).

import * as grpc from '@grpc/grpc-js';
import protobuf from 'protobufjs';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SpokeError } from '../core/errors.js';
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

/**
 * A failed CRI call in spoke's own words: grpc-js's connection details ("No connection
 * established. Last error: … Resolution note: …") are not passed through; the runtime's own
 * error text is, when it answered. `answered`: the call went over a connection that is up, so an
 * UNAVAILABLE is the answer of what listens on the socket (a shim whose runtime is down, a
 * runtime not ready), RUNTIME_ERROR with its message, not a socket nobody answers on (TRANSPORT).
 */
export function criError(name: string, socket: string, deadlineMs: number, err: grpc.ServiceError, answered = false): SpokeError {
  const context = { socket, grpcCode: err.code };
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
  return new SpokeError(code, `CRI ${name}: the runtime answered ${status}: ${said}`, { ...context, grpcMessage: said }, { cause: err, reason: code === 'NotFound' ? 'NOT_FOUND' : 'RUNTIME_ERROR' });
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
      this.client.makeUnaryRequest(`/runtime.v1.${service}/${name}`, id, id, body, new grpc.Metadata(), { deadline: Date.now() + deadlineMs }, (err, res) => {
        if (err) {
          // The connection still up once the call failed: the server ended the call, it did not
          // fail to connect or drop (grpc-js says which only in its message text).
          const answered = this.client.getChannel().getConnectivityState(false) === grpc.connectivityState.READY;
          reject(criError(name, this.socket, deadlineMs, err, answered));
          return;
        }
        resolve(resType.toObject(resType.decode(res!), { longs: String, enums: String, defaults: true }) as Msg);
      });
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
