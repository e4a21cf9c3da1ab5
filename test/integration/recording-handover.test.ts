// A ProfileRecording being published when its replica stops leading (docs/binding.md#replicas):
// the ex-leader pushes, signs, binds and writes nothing more; the new leader publishes it once.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { signingKeyLoader } from '../../src/cli/recording-controller.js';
import { startRecordingController } from '../../src/controller/recording-kube.js';
import { FINALIZE_ANNOTATION, type ProfileRecording } from '../../src/controller/recording.js';
import { signRecordingProof } from '../../src/core/recording-proof.js';
import { UndiciRegistryClient } from '../../src/registry/client.js';
import { fakeKubeConfig, FakeApiServer, PODS, PROFILE_BINDINGS, PROFILE_RECORDINGS, PROFILE_RECORDING_RESULTS } from '../helpers/fake-apiserver.js';
import { RECORDING_KEY } from '../helpers/recording.js';
import { startRegistry } from '../helpers/registry.js';
import { makeKey } from '../helpers/signing.js';
import { startSlowProxy } from '../helpers/slow-proxy.js';
import { waitFor } from '../helpers/wait.js';


describe('recording handover between replicas', () => {
  it('a publish under way when its replica stops leading is aborted and writes no status; the new leader pushes and signs it once', async () => {
    const reg = await startRegistry();
    const proxy = await startSlowProxy(reg.port);
    const api = new FakeApiServer({ resources: [PROFILE_RECORDINGS, PROFILE_RECORDING_RESULTS, PROFILE_BINDINGS, PODS] });
    const kc = fakeKubeConfig(await api.listen());
    const keyDir = mkdtempSync(join(tmpdir(), 'spoke-handover-keys-'));
    writeFileSync(join(keyDir, 'release'), makeKey('p256').privatePem);
    writeFileSync(join(keyDir, 'release.namespaces'), 'team\n');
    const replica = () => {
      const registry = new UndiciRegistryClient({ insecure: [proxy.host] });
      const ctl = startRecordingController(kc, { registry, allowedRepositories: [`${proxy.host}/{namespace}`], signingKey: signingKeyLoader(keyDir), recordingKey: RECORDING_KEY, backoffInitialMs: 100, reflector: { watchTimeoutSeconds: 60 } });
      return { ctl, registry };
    };
    const a = replica();
    const b = replica();
    await b.ctl.follow(); // a leads, b follows
    const held = proxy.hold((q) => q.method === 'POST' && q.path.includes('/blobs/uploads/'));
    try {
      await a.ctl.waitForSync(5000);
      await b.ctl.waitForSync(5000);
      const r = api.create(PROFILE_RECORDINGS, { metadata: { name: 'web', namespace: 'team' }, spec: { podSelector: {}, publish: { repository: `${proxy.host}/team`, signWith: 'release' } } });
      const proof = signRecordingProof(RECORDING_KEY, { namespace: 'team', pod: { name: 'p' }, recording: 'web', containers: undefined }, 2_000_000_000);
      api.create(PODS, { metadata: { name: 'p', namespace: 'team', labels: { 'recording.spoke.dev/name': 'web' }, annotations: { 'recording.spoke.dev/name': 'web', 'recording.spoke.dev/proof': proof } }, spec: { nodeName: 'n', containers: [{ name: 'app', image: 'registry.example.com/app:1' }] } });
      api.create(PROFILE_RECORDING_RESULTS, { metadata: { name: 'web-0', namespace: 'team', ownerReferences: [{ apiVersion: 'spoke.dev/v1alpha1', kind: 'ProfileRecording', name: 'web', uid: r.metadata.uid }] }, spec: { recording: 'web', pod: 'p', container: 'app', runtime: 'runc', node: 'n', syscalls: ['read'] } });
      const status = () => (api.get(PROFILE_RECORDINGS, 'team', 'web') as unknown as ProfileRecording).status;
      await waitFor(() => status()?.results === 1, { timeoutMs: 10_000, what: 'the result counted' });
      const cur = api.get(PROFILE_RECORDINGS, 'team', 'web');
      assert.ok(cur);
      api.update(PROFILE_RECORDINGS, { ...cur, metadata: { ...cur.metadata, annotations: { [FINALIZE_ANNOTATION]: '1' } } });
      await held.arrived(); // a is pushing

      // The handover, as the Lease callbacks do it: a's onStoppedLeading returns once its publish ended.
      const writesBefore = a.ctl.reconciler.stats.statusWrites;
      await a.ctl.follow();
      b.ctl.lead();
      held.release();
      await waitFor(() => status()?.phase === 'Completed', { timeoutMs: 15_000, what: 'Completed' });
      await b.ctl.reconciler.idle();
      await a.ctl.reconciler.idle();

      assert.deepEqual({ pushes: a.ctl.reconciler.stats.pushes, signatures: a.ctl.reconciler.stats.signatures, statusWrites: a.ctl.reconciler.stats.statusWrites - writesBefore }, { pushes: 0, signatures: 0, statusWrites: 0 }, 'the ex-leader did nothing more');
      assert.equal(b.ctl.reconciler.stats.signatures, 1, 'signed once, by the new leader');
    } finally {
      held.release();
      await a.ctl.stop();
      await b.ctl.stop();
      await a.registry.close();
      await b.registry.close();
      await api.close();
      await proxy.close();
      await reg.stop();
      rmSync(keyDir, { recursive: true, force: true });
    }
  });
});
