// A create's inputs that change while it waits before it is forwarded: it is decided again under
// the new ones (docs/shim.md, "Decided again at create"), whatever it waited for. A real applier,
// store, policy and seccomp library behind the shim; the runtime is scripted.

import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { encodeFrame } from '../../../src/cri/frame.js';
import { decodeRuntimeDefault, seccompOps } from '../../../src/cri/seccomp.js';
import { RuntimeDefaultSource } from '../../../src/cri/runtime-default.js';
import type { ShimDeps } from '../../../src/cri/deps.js';
import { PolicyHolder } from '../../../src/config/policy-holder.js';
import { SpokeError } from '../../../src/core/errors.js';
import { sha256Digest, sha256Hex, type Digest } from '../../../src/core/digest.js';
import { signRecordingProof } from '../../../src/core/recording-proof.js';
import { silentLogger } from '../../../src/core/runtime.js';
import { noopMetrics } from '../../../src/observe/metrics.js';
import { decodeSeccomp, type SeccompProfile } from '../../../src/profiles/seccomp/index.js';
import { loggingProfileBytes } from '../../../src/profiles/seccomp/recorded.js';
import { ProfileStore } from '../../../src/store/store.js';
import { denySyscalls } from '../../helpers/artifacts.js';
import { encode } from '../../helpers/cri-client.js';
import { holdInUseQueue } from '../../helpers/inuse-queue.js';
import { answering, runtimeAnswer, shimRig } from '../../helpers/inproc-shim.js';
import { waitFor } from '../../helpers/wait.js';
import { baselineBytes } from '../profiles/seccomp-fixtures.js';

const HOST = 'registry.test';
const LAYER = denySyscalls(['chmod']);

/**
 * A shim whose store holds one artifact (`reference`, denying chmod) that the node policy allows,
 * with the real seccomp library and `baseline()` as the node baseline; the creates the runtime
 * received are in `creates`, and `slowCall(path)` may hold the runtime's answer to a call.
 */
function createRig(prefix: string, o: { baseline: () => SeccompProfile; runtimeDefault?: ShimDeps<SeccompProfile>['runtimeDefault']; recordingKey?: Buffer; slowCall?: (path: string) => Promise<void> | void }) {
  const creates: Buffer[] = [];
  let holder: PolicyHolder | undefined;
  const rig = shimRig<SeccompProfile>(
    prefix,
    answering(runtimeAnswer, (path, body) => {
      if (path.endsWith('/CreateContainer')) creates.push(body);
      return o.slowCall?.(path);
    }),
    {
      deps: (work) => {
        const policyFile = join(work, 'policy.yaml');
        writeFileSync(policyFile, `apiVersion: spoke.dev/v1alpha1\nkind: NodeProfilePolicy\nrules:\n  - scope: ${HOST}\n    kinds: [seccomp]\n    unsigned: true\n`);
        const policy = new PolicyHolder({ file: policyFile });
        holder = policy;
        return {
          pipeline: { pull: async () => Promise.reject(new SpokeError('PermissionDenied', 'no pulls in this test')) },
          store: new ProfileStore({ root: join(work, 'store'), fsync: false }),
          seccomp: seccompOps,
          baseline: o.baseline,
          seccompRoot: join(work, 'sc'),
          logger: silentLogger,
          metrics: noopMetrics,
          policy: async () => policy.current(),
          ...(o.runtimeDefault ? { runtimeDefault: o.runtimeDefault } : {}),
        };
      },
      ...(o.recordingKey ? { server: { recording: true, recordingKey: o.recordingKey } } : {}),
    },
  );
  const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, config: { size: 2 }, layers: [{ digest: sha256Digest(LAYER), size: LAYER.length }] }));
  const reference = `${HOST}/p@${sha256Digest(manifest)}`;
  return {
    rig,
    creates,
    reference,
    async start() {
      await (rig.deps.store as ProfileStore).ingest({ digest: sha256Digest(manifest), manifestBytes: manifest, layerDigest: sha256Digest(LAYER), layerBytes: LAYER, kind: 'seccomp', reference, rule: 'rules[0]', servedBy: HOST });
      await rig.start();
    },
    async stop() {
      await rig.stop();
      holder?.close();
    },
    /** Sends a create of container `c` in pod `ns/pod`; resolves its grpc-status once the call closes. */
    create(securityContext: object, sandboxAnnotations: Record<string, string> = {}): Promise<string | undefined> {
      const session = rig.connect();
      const req = session.request({ ':method': 'POST', ':path': '/runtime.v1.RuntimeService/CreateContainer', 'content-type': 'application/grpc', te: 'trailers' });
      req.on('error', () => {});
      req.on('data', () => {});
      let status: string | undefined;
      req.on('response', (h) => (status ??= h['grpc-status'] as string | undefined));
      req.on('trailers', (t) => (status = t['grpc-status'] as string));
      req.end(
        encodeFrame(
          encode('CreateContainerRequest', {
            pod_sandbox_id: 'sb1',
            config: { metadata: { name: 'c', attempt: 0 }, linux: { security_context: securityContext } },
            sandbox_config: { metadata: { name: 'pod', namespace: 'ns', uid: 'u' }, annotations: sandboxAnnotations },
          }),
        ),
      );
      return new Promise((resolve) =>
        req.on('close', () => {
          session.close();
          resolve(status);
        }),
      );
    },
  };
}

describe('the runtime default changes while a create waits before it is forwarded', () => {
  const baseline = decodeSeccomp(baselineBytes());
  // The runtime before the restart allows mkdir by default; the one after denies it.
  const RD1 = denySyscalls(['kexec_load']);
  const RD2 = denySyscalls(['kexec_load', 'mkdir', 'mkdirat']);
  let rdBytes = RD1;
  const rd = new RuntimeDefaultSource<SeccompProfile>({ decode: decodeRuntimeDefault, logger: silentLogger, read: async () => ({ bytes: rdBytes, sandboxImage: 'pause' }) });
  const t = createRig('spoke-create-rd-', { baseline: () => baseline, runtimeDefault: rd });
  before(async () => {
    await t.start();
    rd.refresh(t.rig.shim.upstream);
    await rd.get();
  });
  after(() => t.stop());

  const effectiveSha = (rdb: Buffer) => sha256Hex(seccompOps.intersect(baseline, decodeRuntimeDefault(rdb), seccompOps.decodeArtifact(LAYER)).bytes);

  it('a create merged with the old runtime default is merged again with the new one before it is forwarded', async () => {
    assert.notEqual(effectiveSha(RD1), effectiveSha(RD2));
    // Another create's AppArmor claim holds the in-use queue; the create waits there to record
    // its pending holder, the last wait before forwarding.
    // The claim's artifact is the stored one: a claim holds only what the store has.
    const queue = await holdInUseQueue(t.rig.shim.inUse, t.rig.deps.store, 'd', t.reference.slice(t.reference.indexOf('@') + 1) as Digest);
    try {
      const status = t.create({ seccomp: { profile_type: 'OCI', oci_ref: t.reference, base_profile: { type: 'RuntimeDefault' } } });
      await queue.createWaiting();
      // The runtime restarts (another version): the shim forgets its default and reads the new one.
      rd.forget();
      rdBytes = RD2;
      rd.refresh(t.rig.shim.upstream);
      assert.equal((await rd.get()).sha, sha256Hex(RD2));
      queue.release();
      assert.equal(await status, '0');
    } finally {
      await queue.restore();
    }
    assert.equal(t.creates.length, 1);
    const used = /spoke\/([0-9a-f]{64})\.json/.exec(t.creates[0]!.toString('latin1'))?.[1];
    assert.equal(used, effectiveSha(RD2), `forwarded under the old runtime default's merge (${used === effectiveSha(RD1) ? 'RD1' : '?'})`);
  });
});

describe('the seccomp baseline is reloaded after a recorded create chose its logging profile', () => {
  const B1 = decodeSeccomp(baselineBytes());
  // The admin tightens the baseline: mkdir and mkdirat are no longer allowed.
  const tightened = JSON.parse(baselineBytes().toString('utf8')) as { syscalls: { names: string[] }[] };
  for (const s of tightened.syscalls) s.names = s.names.filter((n) => n !== 'mkdir' && n !== 'mkdirat');
  const B2 = decodeSeccomp(Buffer.from(JSON.stringify(tightened)));
  let baseline: SeccompProfile = B1;
  const KEY = Buffer.alloc(32, 7);
  // The runtime is slow to say which handler the sandbox runs under, asked after the logging
  // profile is chosen.
  let statusAsked = 0;
  let releaseStatus = () => {};
  const statusHeld = new Promise<void>((r) => (releaseStatus = r));
  const t = createRig('spoke-create-rec-', {
    baseline: () => baseline,
    recordingKey: KEY,
    slowCall: (path) => {
      if (!path.endsWith('/PodSandboxStatus')) return;
      statusAsked++;
      return statusHeld;
    },
  });
  before(() => t.start());
  after(async () => {
    releaseStatus();
    await t.stop();
  });

  const logSha = (b: SeccompProfile) => sha256Hex(seccompOps.intersect(b, undefined, seccompOps.decode(loggingProfileBytes())).bytes);

  it('a recorded container whose create waited through the reload records under the tightened baseline', async () => {
    assert.notEqual(logSha(B1), logSha(B2));
    const proof = signRecordingProof(KEY, { namespace: 'ns', pod: { name: 'pod' }, recording: 'rec', containers: ['c'] }, Math.floor(Date.now() / 1000) + 3600);
    // The binding the webhook wrote beside the marking: the container's own OCI profile.
    const status = t.create({ seccomp: { profile_type: 'OCI', oci_ref: t.reference } }, { 'recording.spoke.dev/name': 'rec', 'recording.spoke.dev/containers': 'c', 'recording.spoke.dev/proof': proof });
    try {
      await waitFor(() => statusAsked === 1, { timeoutMs: 5000, what: 'the create asking for its sandbox handler' });
      // The baseline file is tightened and reloaded (watch or SIGHUP): a new baseline object.
      baseline = B2;
    } finally {
      releaseStatus();
    }
    assert.equal(await status, '0');
    assert.equal(t.creates.length, 1);
    const used = /log-([0-9a-f]{64})\.json/.exec(t.creates[0]!.toString('latin1'))?.[1];
    assert.equal(used, logSha(B2), `forwarded with the logging profile of the ${used === logSha(B1) ? 'old (looser) baseline' : '?'}`);
  });
});
