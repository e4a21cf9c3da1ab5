// A CRI client for tests on @grpc/grpc-js, with the proto spoke's own CRI client loads
// (src/recorder/cri.ts criRoot). Plays the kubelet. H2CriClient: unary calls only, on bare
// node:http2, for the benchmarks' timings.
// Typed loosely (objects in, plain objects out: keepCase field names, enums as strings, longs
// as strings, defaults filled). `raw()` sends and receives bytes for byte-equality checks.

import * as grpc from '@grpc/grpc-js';
import { connect as http2Connect, type ClientHttp2Session, type IncomingHttpHeaders } from 'node:http2';
import { connect as netConnect } from 'node:net';
import { BUSYBOX_IMAGE } from './busybox-image.js';
import type protobuf from 'protobufjs';
import { criRoot, type Msg } from '../../src/recorder/cri.js';

export { criRoot, type Msg };

export function type(name: string): protobuf.Type {
  return criRoot().lookupType(`runtime.v1.${name}`);
}

export function encode(typeName: string, obj: Msg): Buffer {
  const t = type(typeName);
  return Buffer.from(t.encode(t.fromObject(obj)).finish());
}

export function decode(typeName: string, bytes: Uint8Array): Msg {
  const t = type(typeName);
  return t.toObject(t.decode(bytes), { longs: String, enums: String, defaults: true, bytes: Buffer }) as Msg;
}

export interface CallOptions {
  deadlineMs?: number;
  metadata?: grpc.Metadata;
}

function methodOf(service: 'RuntimeService' | 'ImageService', name: string): protobuf.Method {
  const m = criRoot().lookupService(`runtime.v1.${service}`).methods[name];
  if (!m) throw new Error(`no method ${service}.${name}`);
  m.resolve();
  return m;
}

/** Unary CRI calls with objects, over whatever moves a request's bytes (unaryRaw). */
abstract class UnaryCriCalls {
  /** Unary call with bytes in and out (any path, known or not). */
  abstract unaryRaw(path: string, request: Buffer, opts?: CallOptions): Promise<Buffer>;

  /** Unary call with objects. */
  call(service: 'RuntimeService' | 'ImageService', name: string, req: Msg = {}, opts: CallOptions = {}): Promise<Msg> {
    const m = methodOf(service, name);
    return this.unaryRaw(`/runtime.v1.${service}/${name}`, encode(m.requestType, req), opts).then((b) => decode(m.responseType, b));
  }

  rt(name: string, req: Msg = {}, opts: CallOptions = {}): Promise<Msg> {
    return this.call('RuntimeService', name, req, opts);
  }

  img(name: string, req: Msg = {}, opts: CallOptions = {}): Promise<Msg> {
    return this.call('ImageService', name, req, opts);
  }
}

export class CriClient extends UnaryCriCalls {
  readonly client: grpc.Client;

  constructor(readonly socket: string) {
    super();
    this.client = new grpc.Client(`unix://${socket}`, grpc.credentials.createInsecure(), {
      'grpc.max_receive_message_length': 64 * 1024 * 1024,
      'grpc.enable_retries': 0,
    });
  }

  async unaryRaw(path: string, request: Buffer, opts: CallOptions = {}): Promise<Buffer> {
    const r = await this.unaryFull(path, request, opts);
    if (r.error) throw r.error;
    return r.response!;
  }

  /** Unary call with bytes in and out, also returning the response metadata and trailers (status metadata). */
  unaryFull(path: string, request: Buffer, opts: CallOptions = {}): Promise<{ error: grpc.ServiceError | null; response?: Buffer; headers?: grpc.Metadata; trailers?: grpc.Metadata }> {
    const id = (b: Buffer) => b;
    return new Promise((resolve) => {
      let headers: grpc.Metadata | undefined;
      let trailers: grpc.Metadata | undefined;
      const call = this.client.makeUnaryRequest(
        path,
        id,
        id,
        request,
        opts.metadata ?? new grpc.Metadata(),
        { deadline: Date.now() + (opts.deadlineMs ?? 60_000) },
        (err, res) => {
          setImmediate(() => resolve({ error: err, ...(res ? { response: res } : {}), ...(headers ? { headers } : {}), ...(trailers ? { trailers } : {}) }));
        },
      );
      call.on('metadata', (m) => (headers = m));
      call.on('status', (s) => (trailers = s.metadata));
    });
  }

  /** Server-streaming call (GetContainerEvents…) with objects out. */
  serverStream(service: 'RuntimeService' | 'ImageService', name: string, req: Msg = {}, opts: CallOptions = {}): grpc.ClientReadableStream<Msg> {
    const m = methodOf(service, name);
    return this.client.makeServerStreamRequest(
      `/runtime.v1.${service}/${name}`,
      (o: Msg) => encode(m.requestType, o),
      (b: Buffer) => decode(m.responseType, b),
      req,
      opts.metadata ?? new grpc.Metadata(),
      opts.deadlineMs ? { deadline: Date.now() + opts.deadlineMs } : {},
    );
  }

  /**
   * Creates and starts a busybox container that sleeps, in pod `p`, with `securityContext`
   * (linux.security_context) when given; resolves its id.
   */
  async startBusybox(p: { id: string; config: Msg }, name: string, securityContext?: Msg): Promise<string> {
    const config: Msg = {
      metadata: { name },
      image: { image: BUSYBOX_IMAGE },
      command: ['/bin/sleep', '3600'],
      log_path: `${name}.log`,
      ...(securityContext && Object.keys(securityContext).length > 0 ? { linux: { security_context: securityContext } } : {}),
    };
    const id = (await this.rt('CreateContainer', { pod_sandbox_id: p.id, config, sandbox_config: p.config })).container_id as string;
    await this.rt('StartContainer', { container_id: id });
    return id;
  }

  /** `sh -c script` in a running container through ExecSync: stdout then stderr. */
  async sh(containerId: string, script: string): Promise<string> {
    const r = await this.rt('ExecSync', { container_id: containerId, cmd: ['/bin/sh', '-c', script], timeout: 10 });
    return (r.stdout as Buffer).toString() + (r.stderr as Buffer).toString();
  }

  close(): void {
    this.client.close();
  }
}

/**
 * The least a gRPC unary client does, on node:http2: one session, per call one stream with the
 * request's single message, the response's message and grpc-status read back. The benchmarks
 * time CRI calls with it: @grpc/grpc-js spends several times a node:http2 request's own cost per
 * call here, on the same two cores as the process measured (docs/benchmarks.md). Unary calls
 * only, no compression, no metadata.
 */
export class H2CriClient extends UnaryCriCalls {
  private readonly session: ClientHttp2Session;

  constructor(readonly socket: string) {
    super();
    this.session = http2Connect('http://localhost', { createConnection: () => netConnect(socket) });
    this.session.on('error', () => {}); // each call reports its own failure
  }

  unaryRaw(path: string, request: Buffer, opts: CallOptions = {}): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      const stream = this.session.request({ ':method': 'POST', ':path': path, 'content-type': 'application/grpc', te: 'trailers', 'grpc-timeout': `${opts.deadlineMs ?? 60_000}m` });
      const chunks: Buffer[] = [];
      let status: IncomingHttpHeaders = {};
      stream.on('response', (h) => {
        if (h['grpc-status'] !== undefined) status = h; // trailers-only answer
      });
      stream.on('trailers', (t) => (status = t));
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('error', reject);
      stream.on('close', () => {
        const code = status['grpc-status'];
        if (code !== '0') {
          reject(new Error(`${path}: grpc-status ${String(code)}: ${decodeURIComponent(String(status['grpc-message'] ?? ''))}`));
          return;
        }
        const body = Buffer.concat(chunks);
        const length = body.length >= 5 ? body.readUInt32BE(1) : -1;
        if (body[0] !== 0 || body.length !== 5 + length) reject(new Error(`${path}: not one uncompressed gRPC message (${body.length} bytes)`));
        else resolve(body.subarray(5));
      });
      const frame = Buffer.allocUnsafe(5 + request.length);
      frame[0] = 0;
      frame.writeUInt32BE(request.length, 1);
      request.copy(frame, 5);
      stream.end(frame);
    });
  }

  close(): void {
    this.session.close();
  }
}

/** A pod config that works on this kind of machine: host network, no hostname (runc refuses one). */
export function hostNetworkPod(name: string, logDir: string, extra: { seccomp?: Msg; namespace?: string } = {}): Msg {
  return {
    metadata: { name, uid: `uid-${name}`, namespace: extra.namespace ?? 'default', attempt: 0 },
    log_directory: logDir,
    labels: { app: 'spoke-test' },
    linux: {
      security_context: {
        namespace_options: { network: 'NODE', pid: 'POD', ipc: 'POD' },
        ...(extra.seccomp ? { seccomp: extra.seccomp } : {}),
      },
    },
  };
}
