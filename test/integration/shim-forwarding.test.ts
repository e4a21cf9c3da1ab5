// Every CRI call not owned by spoke goes through the shim to a real containerd 1.6 unchanged.
// A recording tap between the shim and containerd shows the DATA bytes containerd received and
// sent; they are compared with what the client sent and got.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { lstatSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { startContainerd, Tap, type Containerd } from '../helpers/containerd.js';
import { CriClient, decode, encode, H2CriClient, hostNetworkPod, type Msg } from '../helpers/cri-client.js';
import { BUSYBOX_IMAGE } from '../helpers/busybox-image.js';
import { stubShimDeps } from '../helpers/shim.js';
import { waitFor } from '../helpers/wait.js';
import { ShimServer, addOciFeature } from '../../src/cri/server.js';
import { encodeFrame, encodeGrpcMessage } from '../../src/cri/frame.js';

const RT = '/runtime.v1.RuntimeService/';

describe('shim forwarding against real containerd', { timeout: 300_000 }, () => {
  let ctrd: Containerd;
  let work: string;
  let tap: Tap;
  let shim: ShimServer;
  let direct: CriClient;
  let via: CriClient;
  let shimSock: string;

  before(async () => {
    ctrd = await startContainerd();
    work = mkdtempSync('/tmp/skf-');
    tap = new Tap(join(work, 'tap.sock'), ctrd.socket);
    await tap.start();
    shimSock = join(work, 'shim.sock');
    shim = new ShimServer({ listen: shimSock, upstream: tap.listen, deps: stubShimDeps(join(work, 'store'), join(work, 'seccomp')) });
    await shim.start();
    assert.ok(await shim.upstream.waitUp(5000));
    direct = new CriClient(ctrd.socket);
    via = new CriClient(shimSock);
  });

  after(async () => {
    via?.close();
    direct?.close();
    await shim?.close();
    await tap?.stop();
    await ctrd?.stop();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  test('socket is created with mode 0660', () => {
    assert.equal(statSync(shimSock).mode & 0o777, 0o660);
  });

  test('Version: same answer, request and response bytes unchanged', async () => {
    const req = encode('VersionRequest', { version: 'v1' });
    const got = await via.unaryRaw(`${RT}Version`, req);
    const s = tap.findByRequest(encodeFrame(req));
    assert.ok(s, 'containerd saw the exact request bytes');
    assert.deepEqual(s.response, encodeFrame(got), 'client got the exact response bytes');
    const d = decode('VersionResponse', got);
    assert.equal(d.runtime_name, 'containerd');
    assert.deepEqual(d, await direct.rt('Version', { version: 'v1' }));
  });

  test('the benchmarks\' node:http2 client (H2CriClient) gets the bytes grpc-js gets, and the error', async () => {
    const lean = new H2CriClient(shimSock);
    try {
      const req = encode('VersionRequest', { version: 'v1' });
      assert.deepEqual(await lean.unaryRaw(`${RT}Version`, req), await via.unaryRaw(`${RT}Version`, req));
      assert.equal((await lean.rt('Version', { version: 'v1' })).runtime_name, 'containerd');
      await assert.rejects(lean.rt('ContainerStatus', { container_id: 'no-such-container' }), /grpc-status 5: /);
    } finally {
      lean.close();
    }
  });

  test('unknown fields in a request reach containerd', async () => {
    // VersionRequest{version:"v1"} + field 99 (string) + field 100 (varint): unknown to both sides.
    const req = Buffer.concat([encode('VersionRequest', { version: 'v1' }), Buffer.from([0x9a, 0x06, 0x03, 0x61, 0x62, 0x63, 0xa0, 0x06, 0x2a])]);
    await via.unaryRaw(`${RT}Version`, req);
    assert.ok(tap.findByRequest(encodeFrame(req)));
  });

  test('Status: features.security_profile_oci_artifact set, everything else equal', async () => {
    const req = encode('StatusRequest', { verbose: true });
    const got = await via.unaryRaw(`${RT}Status`, req);
    const s = tap.findByRequest(encodeFrame(req));
    assert.ok(s);
    const upstreamPayload = s.response.subarray(5);
    assert.deepEqual(got, addOciFeature(upstreamPayload), 'only the feature bytes were added');
    const viaMsg = decode('StatusResponse', got);
    const features = viaMsg.features as Msg;
    assert.equal(features.security_profile_oci_artifact, true);
    const up = decode('StatusResponse', upstreamPayload);
    assert.equal(((up.features ?? {}) as Msg).security_profile_oci_artifact ?? false, false);
    delete (viaMsg.features as Msg).security_profile_oci_artifact;
    if (up.features === null) {
      // containerd 1.6 sends no RuntimeFeatures at all: the shim created the message.
      assert.deepEqual(viaMsg.features, { supplemental_groups_policy: false, user_namespaces_host_network: false });
      delete viaMsg.features;
      delete up.features;
    } else delete (up.features as Msg).security_profile_oci_artifact;
    delete viaMsg.info;
    delete up.info;
    assert.deepEqual(viaMsg, up);
  });

  test('unknown method: answered with the upstream own status and message', async () => {
    const path = `${RT}NoSuchMethodFromTheFuture`;
    const a = await direct.unaryFull(path, Buffer.from([0x0a, 0x01, 0x78]));
    const b = await via.unaryFull(path, Buffer.from([0x0a, 0x01, 0x78]));
    assert.ok(a.error && b.error);
    assert.equal(b.error.code, a.error.code);
    assert.equal(b.error.details, a.error.details);
    assert.equal(b.error.code, grpc.status.UNIMPLEMENTED);
  });

  test('error statuses pass through (ContainerStatus of a missing container)', async () => {
    const req = encode('ContainerStatusRequest', { container_id: 'does-not-exist' });
    const a = await direct.unaryFull(`${RT}ContainerStatus`, req);
    const b = await via.unaryFull(`${RT}ContainerStatus`, req);
    assert.ok(a.error && b.error);
    assert.equal(b.error.code, a.error.code);
    assert.equal(b.error.details, a.error.details);
  });

  test('images: list, status, remove', async () => {
    // containerd lists images in map order: compare as sets.
    const byId = (x: Msg) => (x.images as Msg[]).sort((p, q) => String(p.id).localeCompare(String(q.id)));
    const a = await direct.img('ListImages', {});
    const b = await via.img('ListImages', {});
    assert.deepEqual(byId(b), byId(a));
    assert.ok((b.images as Msg[]).some((i) => (i.repo_tags as string[]).includes(BUSYBOX_IMAGE)));
    const st = await via.img('ImageStatus', { image: { image: BUSYBOX_IMAGE } });
    assert.ok(st.image);
    const fs = await via.img('ImageFsInfo', {});
    assert.ok(Array.isArray(fs.image_filesystems));
    // RemoveImage on an extra tag (made with ctr), so the test image stays.
    const { execFileSync } = await import('node:child_process');
    execFileSync('ctr', ['-a', ctrd.socket, '-n', 'k8s.io', 'images', 'tag', BUSYBOX_IMAGE, 'docker.io/e2e/extra:1']);
    // containerd's CRI plugin learns of a tag made with ctr from an event, a moment later: a
    // RemoveImage before that finds nothing to remove and the tag shows up after it.
    for (const deadline = Date.now() + 10_000; !(await direct.img('ImageStatus', { image: { image: 'docker.io/e2e/extra:1' } })).image; ) {
      assert.ok(Date.now() < deadline, 'the CRI plugin never saw the tag made with ctr');
      await new Promise((r) => setTimeout(r, 20));
    }
    await via.img('RemoveImage', { image: { image: 'docker.io/e2e/extra:1' } });
    const after = await direct.img('ListImages', {});
    assert.ok(!(after.images as Msg[]).some((i) => (i.repo_tags as string[]).includes('docker.io/e2e/extra:1')));
    // RemoveImage removes every tag of the image: bring the test images back.
    await ctrd.importImages();
  });

  test('PullImage through the shim from a real registry', async () => {
    // The busybox test image, copied into a real docker-registry with skopeo, then pulled by
    // containerd because the kubelet's PullImage went through the shim.
    const { execFileSync } = await import('node:child_process');
    const { buildBusyboxImageTar } = await import('../helpers/busybox-image.js');
    const { startRegistry } = await import('../helpers/registry.js');
    const reg = await startRegistry();
    try {
      const tar = join(work, 'images-for-registry.tar');
      buildBusyboxImageTar(tar);
      const ref = `${reg.host}/e2e/pulled:1`;
      execFileSync('skopeo', ['copy', '--quiet', '--dest-tls-verify=false', `oci-archive:${tar}:busybox-1`, `docker://${ref}`]);
      const pulled = await via.img('PullImage', { image: { image: ref } });
      assert.match(String(pulled.image_ref), /^sha256:[0-9a-f]{64}$/);
      const st = await direct.img('ImageStatus', { image: { image: ref } });
      assert.ok((st.image as Msg | undefined)?.repo_tags, 'containerd has the image the shim asked for');
      await reg.settle();
      // The layers are already in containerd's content store (same busybox), so it resolves the
      // manifest and config from the registry and reuses the layer.
      assert.ok(reg.requests().some((r) => r.path.startsWith('/v2/e2e/pulled/')), JSON.stringify(reg.requests()));
      // Same image id as the test busybox: RemoveImage drops every tag of it, so re-import.
      await direct.img('RemoveImage', { image: { image: ref } });
      await ctrd.importImages();
    } finally {
      await reg.stop();
    }
  });

  test('sandbox and container lifecycle, exec, stats', async () => {
    const logDir = join(work, 'logs-lifecycle');
    mkdirSync(logDir, { recursive: true });
    const pod = hostNetworkPod('fwd-lifecycle', logDir);
    const runReq = encode('RunPodSandboxRequest', { config: pod, runtime_handler: '' });
    const runRes = decode('RunPodSandboxResponse', await via.unaryRaw(`${RT}RunPodSandbox`, runReq));
    assert.ok(tap.findByRequest(encodeFrame(runReq)), 'RunPodSandbox without an OCI profile is forwarded byte for byte');
    const podId = runRes.pod_sandbox_id as string;
    const ctrConfig = {
      metadata: { name: 'sleeper', attempt: 0 },
      image: { image: BUSYBOX_IMAGE },
      command: ['/bin/sleep', '3600'],
      log_path: 'sleeper.log',
      linux: { security_context: { seccomp: { profile_type: 'RuntimeDefault' } } },
    };
    const createReq = encode('CreateContainerRequest', { pod_sandbox_id: podId, config: ctrConfig, sandbox_config: pod });
    const cid = decode('CreateContainerResponse', await via.unaryRaw(`${RT}CreateContainer`, createReq)).container_id as string;
    assert.ok(tap.findByRequest(encodeFrame(createReq)), 'CreateContainer without an OCI profile is forwarded byte for byte');
    await via.rt('StartContainer', { container_id: cid });
    const st = (await via.rt('ContainerStatus', { container_id: cid })).status as Msg;
    assert.equal(st.state, 'CONTAINER_RUNNING');

    const ex = await via.rt('ExecSync', { container_id: cid, cmd: ['/bin/echo', 'hello-through-shim'], timeout: 10 });
    assert.equal((ex.stdout as Buffer).toString(), 'hello-through-shim\n');
    assert.equal(ex.exit_code, 0);
    const exReq = encode('ExecSyncRequest', { container_id: cid, cmd: ['/bin/sh', '-c', 'echo out; echo err >&2; exit 3'], timeout: 10 });
    const exRes = await via.unaryRaw(`${RT}ExecSync`, exReq);
    const exTap = tap.findByRequest(encodeFrame(exReq));
    assert.ok(exTap);
    assert.deepEqual(exTap.response, encodeFrame(exRes));
    assert.equal(decode('ExecSyncResponse', exRes).exit_code, 3);

    const url = await via.rt('Exec', { container_id: cid, cmd: ['/bin/sh'], stdout: true });
    assert.match(url.url as string, /^http:\/\//, 'Exec returns the streaming URL as data');
    const att = await via.rt('Attach', { container_id: cid, stdout: true });
    assert.match(att.url as string, /^http:\/\//);
    const pf = await via.rt('PortForward', { pod_sandbox_id: podId, port: [80] });
    assert.match(pf.url as string, /^http:\/\//);

    const stats = await via.rt('ContainerStats', { container_id: cid });
    assert.equal(((stats.stats as Msg).attributes as Msg).id, cid);
    const list = await via.rt('ListContainerStats', {});
    assert.ok((list.stats as Msg[]).some((s) => (s.attributes as Msg).id === cid));
    const ctrs = await via.rt('ListContainers', { filter: { pod_sandbox_id: podId } });
    assert.equal((ctrs.containers as Msg[]).length, 1);
    const pods = await via.rt('ListPodSandbox', {});
    assert.ok((pods.items as Msg[]).some((p) => p.id === podId));
    await via.rt('PodSandboxStatus', { pod_sandbox_id: podId });
    await via.rt('UpdateContainerResources', { container_id: cid, linux: { cpu_shares: 512 } });
    await via.rt('ReopenContainerLog', { container_id: cid });

    await via.rt('StopContainer', { container_id: cid, timeout: 0 });
    await via.rt('RemoveContainer', { container_id: cid });
    await via.rt('StopPodSandbox', { pod_sandbox_id: podId });
    await via.rt('RemovePodSandbox', { pod_sandbox_id: podId });

  });

  test('GetContainerEvents: containerd 1.6 answers UNIMPLEMENTED, through the shim too', async () => {
    const result = (c: CriClient) =>
      new Promise<grpc.StatusObject>((resolve) => {
        const st = c.serverStream('RuntimeService', 'GetContainerEvents', {});
        st.on('data', () => {});
        st.on('error', () => {});
        st.on('status', resolve);
      });
    const a = await result(direct);
    const b = await result(via);
    assert.equal(b.code, a.code);
    assert.equal(b.details, a.details);
  });

  test('deadlines propagate: a slow ExecSync ends with DEADLINE_EXCEEDED, upstream cancelled', async () => {
    const logDir = join(work, 'logs-deadline');
    mkdirSync(logDir, { recursive: true });
    const pod = hostNetworkPod('fwd-deadline', logDir);
    const podId = (await via.rt('RunPodSandbox', { config: pod })).pod_sandbox_id as string;
    const cid = (
      await via.rt('CreateContainer', {
        pod_sandbox_id: podId,
        config: { metadata: { name: 'sleeper' }, image: { image: BUSYBOX_IMAGE }, command: ['/bin/sleep', '3600'], log_path: 's.log' },
        sandbox_config: pod,
      })
    ).container_id as string;
    await via.rt('StartContainer', { container_id: cid });
    const req = encode('ExecSyncRequest', { container_id: cid, cmd: ['/bin/sleep', '20'], timeout: 0 });
    const r = await via.unaryFull(`${RT}ExecSync`, req, { deadlineMs: 700 });
    assert.equal(r.error?.code, grpc.status.DEADLINE_EXCEEDED);
    const s = tap.findByRequest(encodeFrame(req));
    assert.ok(s, 'the ExecSync reached containerd');
    // The upstream call ends either by the shim's RST_STREAM (the client's cancel passed on) or by
    // containerd's own deadline (grpc-timeout passed on): which comes first is a race. Either
    // way the slow exec must be gone from the container.
    const cmdlines = () => via.sh(cid, 'for c in /proc/[0-9]*/cmdline; do cat "$c"; echo; done');
    const slowExecRunning = async () => /\/bin\/sleep\x0020\x00/.test(await cmdlines());
    assert.match(await cmdlines(), /\/bin\/sleep\x003600\x00/, 'the process listing sees the container\'s own sleep');
    await waitFor(async () => s.requestRst || s.responseRst || !(await slowExecRunning()), { timeoutMs: 5000, what: 'the condition' });
    assert.equal(await slowExecRunning(), false);
    await via.rt('StopPodSandbox', { pod_sandbox_id: podId });
    await via.rt('RemovePodSandbox', { pod_sandbox_id: podId });
  });

  test('containerd restarted mid-run: UNAVAILABLE while down, then the shim recovers', async () => {
    await ctrd.kill();
    const down = await via.unaryFull(`${RT}Version`, encode('VersionRequest', { version: 'v1' }), { deadlineMs: 5000 });
    assert.equal(down.error?.code, grpc.status.UNAVAILABLE);
    await ctrd.start();
    await waitFor(async () => {
      const r = await via.unaryFull(`${RT}Version`, encode('VersionRequest', { version: 'v1' }), { deadlineMs: 2000 });
      return r.error === null;
    }, { timeoutMs: 15_000, what: 'the shim to reach containerd again' });
    const v = await via.rt('Version', { version: 'v1' });
    assert.equal(v.runtime_name, 'containerd');
  });

  test('socket path: refuses a non-socket, replaces a stale socket, refuses a live one', async () => {
    const file = join(work, 'not-a-socket');
    writeFileSync(file, 'x');
    const s1 = new ShimServer({ listen: file, upstream: ctrd.socket, deps: stubShimDeps(join(work, 'st2'), join(work, 'sc2')) });
    await assert.rejects(s1.start(), /not a socket/);
    assert.equal(readFileSync(file, 'utf8'), 'x');
    // stale: a socket file nobody listens on
    const stale = join(work, 'stale.sock');
    const srv = createServer();
    await new Promise<void>((r) => srv.listen(stale, () => r()));
    // Close without unlinking: copy the path's inode by re-binding is not possible, so simulate
    // staleness by closing the server after hard-linking the socket file elsewhere.
    const { linkSync } = await import('node:fs');
    const keep = join(work, 'stale-copy.sock');
    linkSync(stale, keep);
    await new Promise<void>((r) => srv.close(() => r()));
    linkSync(keep, stale);
    const s2 = new ShimServer({ listen: stale, upstream: ctrd.socket, deps: stubShimDeps(join(work, 'st3'), join(work, 'sc3')) });
    await s2.start();
    const c2 = new CriClient(stale);
    assert.equal((await c2.rt('Version', { version: 'v1' })).runtime_name, 'containerd');
    const s3 = new ShimServer({ listen: stale, upstream: ctrd.socket, deps: stubShimDeps(join(work, 'st4'), join(work, 'sc4')) });
    await assert.rejects(s3.start(), /in use/);
    c2.close();
    await s2.close();
  });

  test('a stopping shim removes only its own socket: not one a shim started since has bound at the path', async () => {
    const sock = join(work, 'handover.sock');
    const old = new ShimServer({ listen: sock, upstream: ctrd.socket, deps: stubShimDeps(join(work, 'st5'), join(work, 'sc5')) });
    await old.start();
    // The path was taken over (removed, then bound by a successor) while the old shim still runs.
    unlinkSync(sock);
    const successor = createServer();
    await new Promise<void>((r) => successor.listen(sock, () => r()));
    try {
      await old.close();
      assert.ok(lstatSync(sock).isSocket(), "the successor's socket is still there");
    } finally {
      await new Promise<void>((r) => successor.close(() => r()));
    }
  });
});

// Streaming, trailers and cancellation semantics, against a small HTTP/2 gRPC upstream whose
// behaviour the test controls (containerd 1.6 has no server-streaming CRI method).
describe('shim forwarding semantics (scripted upstream)', { timeout: 60_000 }, () => {
  let work: string;
  let upstream: import('node:http2').Http2Server;
  let shim: ShimServer;
  let client: CriClient;
  const seen: { path: string; headers: import('node:http2').IncomingHttpHeaders; cancelled: boolean; body: Buffer }[] = [];
  let heldArrived!: () => void;
  const heldArrival = new Promise<void>((r) => (heldArrived = r));
  let releaseHeld!: () => void;
  const held = new Promise<void>((r) => (releaseHeld = r));
  // The Reset call's upstream resets once the client has its first message (the test says so).
  let firstMessageSeen!: () => void;
  const firstMessage = new Promise<void>((r) => (firstMessageSeen = r));

  before(async () => {
    const http2 = await import('node:http2');
    work = mkdtempSync('/tmp/sks-');
    upstream = http2.createServer();
    upstream.on('stream', (stream, headers) => {
      const rec = { path: String(headers[':path']), headers, cancelled: false, body: Buffer.alloc(0) };
      seen.push(rec);
      stream.on('data', (c: Buffer) => (rec.body = Buffer.concat([rec.body, c])));
      stream.on('close', () => {
        if (stream.rstCode === http2.constants.NGHTTP2_CANCEL) rec.cancelled = true;
      });
      stream.on('error', () => {});
      const path = rec.path;
      if (path.endsWith('/Events')) {
        stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'x-test': 'hello' });
        let n = 0;
        const t = setInterval(() => {
          if (stream.closed || stream.destroyed) return clearInterval(t);
          stream.write(encodeFrame(encode('ContainerEventResponse', { container_id: `c${n++}`, created_at: n })));
        }, 30);
        stream.on('close', () => clearInterval(t));
      } else if (path.endsWith('/Unary')) {
        stream.on('end', () => {
          stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'x-head': 'h1' }, { waitForTrailers: true });
          stream.on('wantTrailers', () =>
            stream.sendTrailers({ 'grpc-status': '0', 'x-trace-bin': Buffer.from([0, 1, 2, 255]).toString('base64'), 'x-note': 'trailer-note' }),
          );
          stream.end(encodeFrame(rec.body.subarray(5)));
        });
      } else if (path.endsWith('/Fail')) {
        stream.respond(
          { ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '9', 'grpc-message': encodeGrpcMessage('précondition: échec 100%'), 'x-detail-bin': Buffer.from('detail').toString('base64') },
          { endStream: true },
        );
      } else if (path.endsWith('/Reset')) {
        stream.respond({ ':status': 200, 'content-type': 'application/grpc' });
        stream.write(encodeFrame(Buffer.from([0x0a, 0x01, 0x61])));
        void firstMessage.then(() => stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR));
      } else if (path.endsWith('/Held')) {
        // answered only when the test releases it: a call that is surely in flight
        heldArrived();
        void held.then(() => {
          stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
          stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
          stream.end(encodeFrame(Buffer.alloc(0)));
        });
      } else if (path.endsWith('/Slow')) {
        // never answers; the client's deadline must reach us and cancel the stream
      }
    });
    await new Promise<void>((r) => upstream.listen(join(work, 'up.sock'), () => r()));
    shim = new ShimServer({ listen: join(work, 'shim.sock'), upstream: join(work, 'up.sock'), deps: stubShimDeps(join(work, 'store'), join(work, 'sc')) });
    await shim.start();
    client = new CriClient(join(work, 'shim.sock'));
  });

  after(async () => {
    client?.close();
    await shim?.close();
    await new Promise<void>((r) => upstream.close(() => r()));
    rmSync(work, { recursive: true, force: true });
  });

  test('server stream: messages flow, headers pass, client cancel reaches the upstream', async () => {
    const md = new grpc.Metadata();
    md.set('x-request-note', 'abc');
    md.set('x-req-bin', Buffer.from([9, 8, 7]));
    const call = client.client.makeServerStreamRequest(
      '/runtime.v1.RuntimeService/Events',
      (b: Buffer) => b,
      (b: Buffer) => b,
      Buffer.alloc(0),
      md,
      {},
    );
    const got: Buffer[] = [];
    let headers: grpc.Metadata | undefined;
    call.on('metadata', (m) => (headers = m));
    call.on('data', (b: Buffer) => got.push(b));
    const status = new Promise<grpc.ServiceError>((r) => call.on('error', r));
    await waitFor(() => got.length >= 4, { timeoutMs: 5000, what: 'the condition' });
    call.cancel();
    assert.equal((await status).code, grpc.status.CANCELLED);
    assert.equal(headers?.get('x-test')[0], 'hello');
    assert.equal(decode('ContainerEventResponse', got[0]!).container_id, 'c0');
    const rec = seen.find((s) => s.path === '/runtime.v1.RuntimeService/Events')!;
    assert.equal(rec.headers['x-request-note'], 'abc');
    assert.equal(rec.headers['x-req-bin'], Buffer.from([9, 8, 7]).toString('base64').replace(/=+$/, ''));
    await waitFor(() => rec.cancelled, { timeoutMs: 3000, what: 'the condition' });
  });

  test('unary: body, headers and trailers (binary metadata included) unchanged', async () => {
    const body = Buffer.from([0x0a, 0x03, 0x61, 0x62, 0x63, 0xf8, 0x07, 0x01]);
    const r = await client.unaryFull('/runtime.v1.RuntimeService/Unary', body);
    assert.equal(r.error, null);
    assert.deepEqual(r.response, body);
    assert.equal(r.headers?.get('x-head')[0], 'h1');
    assert.deepEqual(r.trailers?.get('x-trace-bin')[0], Buffer.from([0, 1, 2, 255]));
    assert.equal(r.trailers?.get('x-note')[0], 'trailer-note');
  });

  test('trailers-only error: code, percent-encoded message and metadata unchanged', async () => {
    const r = await client.unaryFull('/runtime.v1.RuntimeService/Fail', Buffer.alloc(0));
    assert.equal(r.error?.code, 9);
    assert.equal(r.error?.details, 'précondition: échec 100%');
    assert.deepEqual(r.error?.metadata.get('x-detail-bin')[0], Buffer.from('detail'));
  });

  test('upstream reset mid-response ends the client call with an error', async () => {
    const call = client.client.makeServerStreamRequest('/runtime.v1.RuntimeService/Reset', (b: Buffer) => b, (b: Buffer) => b, Buffer.alloc(0), new grpc.Metadata(), {});
    const got: Buffer[] = [];
    call.on('data', (b: Buffer) => {
      got.push(b);
      firstMessageSeen();
    });
    const err = await new Promise<grpc.ServiceError>((r) => call.on('error', r));
    assert.equal(got.length, 1);
    // The upstream's RST_STREAM(INTERNAL_ERROR) passed on: grpc-js reports it as INTERNAL.
    assert.equal(err.code, grpc.status.INTERNAL);
  });

  test('deadline: grpc-timeout reaches the upstream and expiry cancels it', async () => {
    const r = await client.unaryFull('/runtime.v1.RuntimeService/Slow', Buffer.alloc(0), { deadlineMs: 400 });
    assert.equal(r.error?.code, grpc.status.DEADLINE_EXCEEDED);
    const rec = seen.find((s) => s.path === '/runtime.v1.RuntimeService/Slow')!;
    assert.match(String(rec.headers['grpc-timeout']), /^[0-9]+[mun]$/);
    await waitFor(() => rec.cancelled, { timeoutMs: 3000, what: 'the condition' });
  });

  test('RunPodSandbox and CreateContainer of another CRI version are refused, never forwarded: their profiles would reach the runtime unread', async () => {
    // containerd 1.6 and 1.7 still serve v1alpha2 and run such a request through their v1 code.
    const pod = encode('RunPodSandboxRequest', { config: hostNetworkPod('alpha', work) });
    for (const path of ['/runtime.v1alpha2.RuntimeService/RunPodSandbox', '/runtime.v1alpha2.RuntimeService/CreateContainer', '/runtime.v2.RuntimeService/CreateContainer']) {
      const r = await client.unaryFull(path, pod, { deadlineMs: 2000 });
      assert.equal(r.error?.code, grpc.status.UNIMPLEMENTED, path);
      assert.equal(seen.filter((s) => s.path === path).length, 0, path);
    }
    // Every other call of another version is forwarded as it was (this upstream never answers it).
    await client.unaryFull('/runtime.v1alpha2.RuntimeService/Version', Buffer.alloc(0), { deadlineMs: 300 });
    assert.equal(seen.filter((s) => s.path === '/runtime.v1alpha2.RuntimeService/Version').length, 1);
  });

  test('restores are refused, never forwarded: a restored pod or container runs under the filters its checkpoint saved, with profiles the shim does not read', async () => {
    // RestorePod carries a PodSandboxConfig (and container configs) whose profiles would reach the
    // runtime unread; the restored processes get back the seccomp filters of their checkpoint.
    const pod = encode('RunPodSandboxRequest', { config: hostNetworkPod('restored', work) });
    for (const path of ['/runtime.v1.RuntimeService/RestorePod', '/runtime.v1.RuntimeService/RestoreContainer', '/runtime.v1alpha2.RuntimeService/RestorePod']) {
      const r = await client.unaryFull(path, pod, { deadlineMs: 2000 });
      assert.equal(r.error?.code, grpc.status.UNIMPLEMENTED, path);
      assert.match(r.error?.details ?? '', /checkpoint/, path);
      assert.equal(seen.filter((s) => s.path === path).length, 0, path);
    }
  });

  test('a call of a service other than the CRI runtime and image services is refused, never forwarded: the runtime socket serves its own API too', async () => {
    // containerd serves its native API on the socket the shim forwards to: a Containers/Update
    // or Tasks/Create there would change or start a container the shim never inspected.
    const paths = [
      '/containerd.services.containers.v1.Containers/Update',
      '/containerd.services.tasks.v1.Tasks/Create',
      '/grpc.health.v1.Health/Check',
      '/runtime.v1.RuntimeServiceX/Version',
      '/runtime.v1.RuntimeService/',
      '/runtime.v1.RuntimeService/Version/x',
      '/runtime..RuntimeService/Version',
      '/Runtime.v1.RuntimeService/Version',
    ];
    for (const path of paths) {
      const r = await client.unaryFull(path, Buffer.alloc(0), { deadlineMs: 2000 });
      assert.equal(r.error?.code, grpc.status.UNIMPLEMENTED, path);
      assert.equal(seen.filter((s) => s.path === path).length, 0, path);
    }
    // A method of the CRI services the shim does not know (a later CRI's) is forwarded as it was.
    const r = await client.unaryFull('/runtime.v1.ImageService/Unary', Buffer.from([1, 2, 3]));
    assert.equal(r.error, null);
    assert.deepEqual(r.response, Buffer.from([1, 2, 3]));
  });

  test('a :path without its leading slash is refused, never forwarded: the runtime reads it as the method it names', async () => {
    // nghttp2 asks for the slash only under an http(s) :scheme; grpc-go drops one leading slash
    // if there is one and routes on the rest, so "runtime.v1.RuntimeService/CreateContainer"
    // would be a create the shim never inspected.
    const http2 = await import('node:http2');
    const { connect: netConnect } = await import('node:net');
    const session = http2.connect('http://localhost', { createConnection: () => netConnect(join(work, 'shim.sock')) });
    try {
      for (const path of ['runtime.v1.RuntimeService/CreateContainer', 'runtime.v1alpha2.RuntimeService/RunPodSandbox', 'runtime.v1.RuntimeService/Unary']) {
        const earlier = seen.length;
        const req = session.request({ ':method': 'POST', ':scheme': 'grpc', ':path': path, 'content-type': 'application/grpc', te: 'trailers' });
        const status = new Promise<string | undefined>((resolve) => {
          let got: string | undefined;
          req.on('response', (h) => (got ??= h['grpc-status'] as string | undefined));
          req.on('trailers', (h) => (got ??= h['grpc-status'] as string | undefined));
          req.on('close', () => resolve(got));
          req.on('error', () => {});
          req.on('data', () => {});
        });
        req.end(encodeFrame(Buffer.alloc(0)));
        assert.equal(await status, String(grpc.status.UNIMPLEMENTED), path);
        assert.equal(seen.slice(earlier).filter((s) => s.path === path || s.path === `/${path}`).length, 0, path);
      }
    } finally {
      session.destroy();
    }
  });

  test('graceful shutdown: unary calls in flight finish, streams end, socket removed', async () => {
    const sock = join(work, 'g.sock');
    const s = new ShimServer({ listen: sock, upstream: join(work, 'up.sock'), deps: stubShimDeps(join(work, 'st9'), join(work, 'sc9')), shutdownGraceMs: 5000 });
    await s.start();
    const c = new CriClient(sock);
    const stream = c.client.makeServerStreamRequest('/runtime.v1.RuntimeService/Events', (b: Buffer) => b, (b: Buffer) => b, Buffer.alloc(0), new grpc.Metadata(), {});
    const firstEvent = new Promise<void>((r) => stream.once('data', () => r()));
    stream.on('data', () => {});
    const streamEnd = new Promise<grpc.StatusObject>((r) => stream.on('status', r));
    stream.on('error', () => {});
    await firstEvent;
    const unary = c.unaryFull('/runtime.v1.RuntimeService/Held', Buffer.alloc(0));
    await heldArrival;
    const closing = s.close();
    releaseHeld();
    await closing;
    assert.equal((await unary).error, null);
    assert.equal((await streamEnd).code, grpc.status.UNAVAILABLE);
    assert.throws(() => statSync(sock), /ENOENT/);
    c.close();
  });
});
