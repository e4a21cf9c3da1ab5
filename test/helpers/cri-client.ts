// A CRI client for tests on @grpc/grpc-js, with the proto spoke's own CRI client loads
// (src/recorder/cri.ts criRoot). Plays the kubelet.
// Typed loosely (objects in, plain objects out: keepCase field names, enums as strings, longs
// as strings, defaults filled). `raw()` sends and receives bytes for byte-equality checks.

import * as grpc from '@grpc/grpc-js';
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

export class CriClient {
  readonly client: grpc.Client;

  constructor(readonly socket: string) {
    this.client = new grpc.Client(`unix://${socket}`, grpc.credentials.createInsecure(), {
      'grpc.max_receive_message_length': 64 * 1024 * 1024,
      'grpc.enable_retries': 0,
    });
  }

  private methodOf(service: 'RuntimeService' | 'ImageService', name: string): protobuf.Method {
    const m = criRoot().lookupService(`runtime.v1.${service}`).methods[name];
    if (!m) throw new Error(`no method ${service}.${name}`);
    m.resolve();
    return m;
  }

  /** Unary call with objects. */
  call(service: 'RuntimeService' | 'ImageService', name: string, req: Msg = {}, opts: CallOptions = {}): Promise<Msg> {
    const m = this.methodOf(service, name);
    return this.unaryRaw(`/runtime.v1.${service}/${name}`, encode(m.requestType, req), opts).then((b) => decode(m.responseType, b));
  }

  rt(name: string, req: Msg = {}, opts: CallOptions = {}): Promise<Msg> {
    return this.call('RuntimeService', name, req, opts);
  }

  img(name: string, req: Msg = {}, opts: CallOptions = {}): Promise<Msg> {
    return this.call('ImageService', name, req, opts);
  }

  /** Unary call with bytes in and out (any path, known or not). */
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
    const m = this.methodOf(service, name);
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
