// A create's inputs that change while it waits before it is forwarded: it is decided again under
// the new ones (docs/shim.md, "Decided again at create"), whatever it waited for.

import assert from 'node:assert/strict';
import { createServer as h2createServer, connect as h2connect, type IncomingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ShimServer } from '../../../src/cri/server.js';
import { encodeFrame } from '../../../src/cri/frame.js';
import { seccompOps, decodeRuntimeDefault } from '../../../src/cri/seccomp.js';
import { RuntimeDefaultSource } from '../../../src/cri/runtime-default.js';
import { PolicyHolder } from '../../../src/config/policy-holder.js';
import { SpokeError } from '../../../src/core/errors.js';
import { sha256Digest, sha256Hex } from '../../../src/core/digest.js';
import { silentLogger } from '../../../src/core/runtime.js';
import { noopMetrics } from '../../../src/observe/metrics.js';
import { decodeSeccomp, type SeccompProfile } from '../../../src/profiles/seccomp/index.js';
import { ProfileStore } from '../../../src/store/store.js';
import type { ShimDeps } from '../../../src/cri/deps.js';
import { encode } from '../../helpers/cri-client.js';
import { denySyscalls } from '../../helpers/artifacts.js';
import { waitFor } from '../../helpers/wait.js';
import { baselineBytes } from '../profiles/seccomp-fixtures.js';
import { signRecordingProof } from '../../../src/core/recording-proof.js';
import { loggingProfileBytes } from '../../../src/profiles/seccomp/recorded.js';

const HOST = 'registry.test';

const runtimeAnswer = (path: string): Buffer =>
  path.endsWith('/CreateContainer')
    ? encode('CreateContainerResponse', { container_id: 'ctr' })
    : path.endsWith('/PodSandboxStatus')
      ? encode('PodSandboxStatusResponse', { status: { id: 'sb1', runtime_handler: '' } })
      : Buffer.alloc(0);

describe('the runtime default changes while a create waits before it is forwarded', () => {
  const work = mkdtempSync(join(tmpdir(), 'spoke-create-rd-'));
  const creates: Buffer[] = [];
  const upstream = h2createServer();
  upstream.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => {
    const chunks: Buffer[] = [];
    stream.on('error', () => {});
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('end', () => {
      if (String(headers[':path']).endsWith('/CreateContainer')) creates.push(Buffer.concat(chunks));
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
      stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
      stream.end(encodeFrame(runtimeAnswer(String(headers[':path']))));
    });
  });
  const baseline = decodeSeccomp(baselineBytes());
  // The runtime before the restart allows mkdir by default; the one after denies it.
  let rdBytes = denySyscalls(['kexec_load']);
  const RD1 = rdBytes;
  const RD2 = denySyscalls(['kexec_load', 'mkdir', 'mkdirat']);
  const rd = new RuntimeDefaultSource<SeccompProfile>({ decode: decodeRuntimeDefault, logger: silentLogger, read: async () => ({ bytes: rdBytes, sandboxImage: 'pause' }) });
  const store = new ProfileStore({ root: join(work, 'store'), fsync: false });
  const policyFile = join(work, 'policy.yaml');
  writeFileSync(policyFile, `apiVersion: spoke.dev/v1alpha1\nkind: NodeProfilePolicy\nrules:\n  - scope: ${HOST}\n    kinds: [seccomp]\n    unsigned: true\n`);
  const holder = new PolicyHolder({ file: policyFile });
  const deps: ShimDeps<SeccompProfile> = {
    pipeline: { pull: async () => Promise.reject(new SpokeError('PermissionDenied', 'no pulls')) },
    store,
    seccomp: seccompOps,
    baseline: () => baseline,
    seccompRoot: join(work, 'sc'),
    logger: silentLogger,
    metrics: noopMetrics,
    policy: async () => holder.current(),
    runtimeDefault: rd,
  };
  const shim = new ShimServer<SeccompProfile>({ listen: join(work, 'shim.sock'), upstream: join(work, 'up.sock'), deps });
  const layer = denySyscalls(['chmod']);
  let reference = '';

  before(async () => {
    const layerDigest = sha256Digest(layer);
    const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, config: { size: 2 }, layers: [{ digest: layerDigest, size: layer.length }] }));
    const digest = sha256Digest(manifest);
    reference = `${HOST}/p@${digest}`;
    await store.ingest({ digest, manifestBytes: manifest, layerDigest, layerBytes: layer, kind: 'seccomp', reference, rule: 'rules[0]', servedBy: HOST });
    await new Promise<void>((r) => upstream.listen(join(work, 'up.sock'), () => r()));
    await shim.start();
    rd.refresh(shim.upstream);
    await rd.get();
  });
  after(async () => {
    await shim.close();
    await new Promise<void>((r) => upstream.close(() => r()));
    holder.close();
    rmSync(work, { recursive: true, force: true });
  });

  const effectiveSha = (rdb: Buffer) => sha256Hex(seccompOps.intersect(baseline, decodeRuntimeDefault(rdb), seccompOps.decodeArtifact(layer)).bytes);

  it('a create merged with the old runtime default is not forwarded to the restarted runtime', async () => {
    assert.notEqual(effectiveSha(RD1), effectiveSha(RD2));
    // Another create's AppArmor load holds the in-use queue (as in shim-hostile-client.test.ts).
    let release = () => {};
    const blocked = new Promise<void>((r) => (release = r));
    const load = shim.inUse.claimAppArmor(`spoke-${'d'.repeat(64)}`, sha256Digest(layer), async () => {
      await blocked;
    });
    const inUse = shim.inUse as unknown as { begin: (...a: unknown[]) => Promise<string> };
    const begin = inUse.begin.bind(inUse);
    let began = 0;
    inUse.begin = async (...a: unknown[]) => {
      began++;
      return begin(...a);
    };
    const session = h2connect('http://localhost', { createConnection: () => netConnect(join(work, 'shim.sock')) });
    session.on('error', () => {});
    const req = session.request({ ':method': 'POST', ':path': '/runtime.v1.RuntimeService/CreateContainer', 'content-type': 'application/grpc', te: 'trailers' });
    req.on('error', () => {});
    req.on('data', () => {});
    let status: string | undefined;
    req.on('trailers', (t) => (status = t['grpc-status'] as string));
    req.on('response', (h) => (status ??= h['grpc-status'] as string | undefined));
    const closed = new Promise((r) => req.on('close', r));
    req.end(
      encodeFrame(
        encode('CreateContainerRequest', {
          pod_sandbox_id: 'sb1',
          config: { metadata: { name: 'c', attempt: 0 }, linux: { security_context: { seccomp: { profile_type: 'OCI', oci_ref: reference, base_profile: { type: 'RuntimeDefault' } } } } },
          sandbox_config: { metadata: { name: 'pod', namespace: 'ns', uid: 'u' } },
        }),
      ),
    );
    try {
      await waitFor(() => began === 1, { timeoutMs: 5000, what: 'the create waiting in the in-use queue' });
      // The runtime restarts (another version): the shim forgets its default and reads the new one.
      rd.forget();
      rdBytes = RD2;
      rd.refresh(shim.upstream);
      assert.equal((await rd.get()).sha, sha256Hex(RD2));
      release();
      await closed;
    } finally {
      inUse.begin = begin;
      release();
      await shim.inUse.abortAppArmor([await load]);
      session.close();
    }
    assert.equal(status, '0');
    assert.equal(creates.length, 1);
    const sent = creates[0]!.toString('latin1');
    const used = /spoke\/([0-9a-f]{64})\.json/.exec(sent)?.[1];
    assert.equal(used, effectiveSha(RD2), `forwarded under the old runtime default's merge (${used === effectiveSha(RD1) ? 'RD1' : '?'})`);
  });
});

describe('the seccomp baseline is reloaded after a recorded create chose its logging profile', () => {
  const work = mkdtempSync(join(tmpdir(), 'spoke-create-rec-'));
  const creates: Buffer[] = [];
  let statusAsked = 0;
  let releaseStatus = () => {};
  const statusHeld = new Promise<void>((r) => (releaseStatus = r));
  const upstream = h2createServer();
  upstream.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => {
    const path = String(headers[':path']);
    const chunks: Buffer[] = [];
    stream.on('error', () => {});
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('end', async () => {
      if (path.endsWith('/CreateContainer')) creates.push(Buffer.concat(chunks));
      // The runtime is slow to say which handler the sandbox runs under.
      if (path.endsWith('/PodSandboxStatus')) {
        statusAsked++;
        await statusHeld;
      }
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
      stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
      stream.end(encodeFrame(runtimeAnswer(path)));
    });
  });
  const B1 = decodeSeccomp(baselineBytes());
  // The admin tightens the baseline: mkdir/mkdirat are no longer allowed.
  const tightened = JSON.parse(baselineBytes().toString('utf8')) as { syscalls: { names: string[] }[] };
  for (const s of tightened.syscalls) s.names = s.names.filter((n) => n !== 'mkdir' && n !== 'mkdirat');
  const B2 = decodeSeccomp(Buffer.from(JSON.stringify(tightened)));
  let baseline: SeccompProfile = B1;
  const store = new ProfileStore({ root: join(work, 'store'), fsync: false });
  const policyFile = join(work, 'policy.yaml');
  writeFileSync(policyFile, `apiVersion: spoke.dev/v1alpha1\nkind: NodeProfilePolicy\nrules:\n  - scope: ${HOST}\n    kinds: [seccomp]\n    unsigned: true\n`);
  const holder = new PolicyHolder({ file: policyFile });
  const KEY = Buffer.alloc(32, 7);
  const deps: ShimDeps<SeccompProfile> = {
    pipeline: { pull: async () => Promise.reject(new SpokeError('PermissionDenied', 'no pulls')) },
    store,
    seccomp: seccompOps,
    baseline: () => baseline,
    seccompRoot: join(work, 'sc'),
    logger: silentLogger,
    metrics: noopMetrics,
    policy: async () => holder.current(),
  };
  const shim = new ShimServer<SeccompProfile>({ listen: join(work, 'shim.sock'), upstream: join(work, 'up.sock'), deps, recording: true, recordingKey: KEY });
  const layer = denySyscalls(['chmod']);
  let reference = '';

  before(async () => {
    const layerDigest = sha256Digest(layer);
    const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, config: { size: 2 }, layers: [{ digest: layerDigest, size: layer.length }] }));
    const digest = sha256Digest(manifest);
    reference = `${HOST}/p@${digest}`;
    await store.ingest({ digest, manifestBytes: manifest, layerDigest, layerBytes: layer, kind: 'seccomp', reference, rule: 'rules[0]', servedBy: HOST });
    await new Promise<void>((r) => upstream.listen(join(work, 'up.sock'), () => r()));
    await shim.start();
  });
  after(async () => {
    releaseStatus();
    await shim.close();
    await new Promise<void>((r) => upstream.close(() => r()));
    holder.close();
    rmSync(work, { recursive: true, force: true });
  });

  const logSha = (b: SeccompProfile) => sha256Hex(seccompOps.intersect(b, undefined, seccompOps.decode(loggingProfileBytes())).bytes);

  it('a recorded container created after the baseline was tightened runs under the tightened baseline', async () => {
    assert.notEqual(logSha(B1), logSha(B2));
    const proof = signRecordingProof(KEY, { namespace: 'ns', pod: { name: 'pod' }, recording: 'rec', containers: ['c'] }, Math.floor(Date.now() / 1000) + 3600);
    const session = h2connect('http://localhost', { createConnection: () => netConnect(join(work, 'shim.sock')) });
    session.on('error', () => {});
    const req = session.request({ ':method': 'POST', ':path': '/runtime.v1.RuntimeService/CreateContainer', 'content-type': 'application/grpc', te: 'trailers' });
    req.on('error', () => {});
    req.on('data', () => {});
    let status: string | undefined;
    req.on('trailers', (t) => (status = t['grpc-status'] as string));
    const closed = new Promise((r) => req.on('close', r));
    req.end(
      encodeFrame(
        encode('CreateContainerRequest', {
          pod_sandbox_id: 'sb1',
          // The binding the webhook wrote beside the marking: the container's own OCI profile.
          config: { metadata: { name: 'c', attempt: 0 }, linux: { security_context: { seccomp: { profile_type: 'OCI', oci_ref: reference } } } },
          sandbox_config: {
            metadata: { name: 'pod', namespace: 'ns', uid: 'u' },
            annotations: { 'recording.spoke.dev/name': 'rec', 'recording.spoke.dev/containers': 'c', 'recording.spoke.dev/proof': proof },
          },
        }),
      ),
    );
    try {
      await waitFor(() => statusAsked === 1, { timeoutMs: 5000, what: 'the create asking for its sandbox handler' });
      // The baseline file is tightened and reloaded (watch or SIGHUP): a new baseline object.
      baseline = B2;
    } finally {
      releaseStatus();
      await closed;
      session.close();
    }
    assert.equal(status, '0');
    assert.equal(creates.length, 1);
    const used = /log-([0-9a-f]{64})\.json/.exec(creates[0]!.toString('latin1'))?.[1];
    assert.equal(used, logSha(B2), `forwarded with the logging profile of the ${used === logSha(B1) ? 'old (looser) baseline' : '?'}`);
  });
});
