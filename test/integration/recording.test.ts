// The ProfileRecording reconciler on @kubernetes/client-node against the in-test API server
// (test/helpers/fake-apiserver.ts: resourceVersion, 409 conflicts, bookmarks, 410), pushing to a
// real docker-registry over plain HTTP. Every result names a pod the webhook marked (signed
// proof, label) and scheduled on the result's node; results from elsewhere are ignored.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { KubeConfig } from '@kubernetes/client-node';
import { signingKeyLoader } from '../../src/cli/recording-controller.js';
import { startRecordingController, type RecordingController } from '../../src/controller/recording-kube.js';
import { FINALIZE_ANNOTATION, type ProfileRecording, type ProfileRecordingResult } from '../../src/controller/recording.js';
import { signRecordingProof } from '../../src/core/recording-proof.js';
import type { ProfileBinding } from '../../src/controller/types.js';
import { buildRecordedProfile, decodeSeccomp } from '../../src/profiles/seccomp/index.js';
import { UndiciRegistryClient } from '../../src/registry/client.js';
import { fakeKubeConfig, FakeApiServer, PODS, PROFILE_BINDINGS, PROFILE_RECORDINGS, PROFILE_RECORDING_RESULTS } from '../helpers/fake-apiserver.js';
import { RECORDING_KEY } from '../helpers/recording.js';
import { startRegistry, type TestRegistry } from '../helpers/registry.js';
import { makeKey } from '../helpers/signing.js';
import { waitFor } from '../helpers/wait.js';
import { startSlowProxy, type Match, type SlowProxy } from '../helpers/slow-proxy.js';


/** A pod as the webhook leaves it when it marks it for `recording` (annotations, proof, label), scheduled on `node`. */
function markedPod(api: FakeApiServer, o: { recording: string; name: string; node: string; containers: string[]; ns?: string; proofKey?: Buffer }): void {
  const ns = o.ns ?? 'team';
  const proof = signRecordingProof(o.proofKey ?? RECORDING_KEY, { namespace: ns, pod: { name: o.name }, recording: o.recording, containers: undefined }, 2_000_000_000);
  api.create(PODS, {
    metadata: { name: o.name, namespace: ns, labels: { 'recording.spoke.dev/name': o.recording }, annotations: { 'recording.spoke.dev/name': o.recording, 'recording.spoke.dev/proof': proof } },
    spec: { nodeName: o.node, containers: o.containers.map((name) => ({ name, image: 'registry.example.com/app:1' })) },
  });
}

const until = (what: string, cond: () => boolean, ms = 10_000) => waitFor(cond, { timeoutMs: ms, what, intervalMs: 10 });

describe('ProfileRecording reconciler: fake API server + real registry', () => {
  let fake: FakeApiServer;
  let reg: TestRegistry;
  let kc: KubeConfig;
  let registry: UndiciRegistryClient;
  let ctl: RecordingController;
  const key = makeKey('p256');
  const keyDir = mkdtempSync(join(tmpdir(), 'spoke-rec-keys-'));
  writeFileSync(join(keyDir, 'release'), key.privatePem);
  writeFileSync(join(keyDir, 'release.namespaces'), 'team\n');
  // A public key where the private one belongs: allowed for team, but it cannot sign.
  writeFileSync(join(keyDir, 'mixup'), key.publicPem);
  writeFileSync(join(keyDir, 'mixup.namespaces'), 'team\n');

  const rec = (name: string, spec: Record<string, unknown>, ns = 'team') => ({
    metadata: { name, namespace: ns },
    spec: { podSelector: { matchLabels: { app: name } }, publish: { repository: `${reg.host}/rec/${ns}` }, ...spec },
  });
  const get = (name: string, ns = 'team') => fake.get(PROFILE_RECORDINGS, ns, name) as unknown as ProfileRecording;
  let n = 0;
  /** A result from node-1 for a fresh pod the webhook marked and the scheduler put on node-1. */
  const result = (recording: string, container: string, syscalls: string[], image = `${'registry.example.com'}/app/${recording}:1.0`, ns = 'team'): ProfileRecordingResult => {
    const owner = fake.get(PROFILE_RECORDINGS, ns, recording)!;
    const pod = `${recording}-pod-${n}`;
    markedPod(fake, { recording, name: pod, node: 'node-1', containers: [container], ns });
    return {
      metadata: { name: `${recording}-${n++}`, namespace: ns, ownerReferences: [{ apiVersion: 'spoke.dev/v1alpha1', kind: 'ProfileRecording', name: recording, uid: owner.metadata.uid as string }] },
      spec: { recording, pod, container, runtime: 'runc', node: 'node-1', syscalls, image },
    };
  };
  const annotate = (name: string, value: string, ns = 'team') => {
    const cur = fake.get(PROFILE_RECORDINGS, ns, name)!;
    fake.update(PROFILE_RECORDINGS, { ...cur, metadata: { ...cur.metadata, annotations: { ...((cur.metadata.annotations as Record<string, string>) ?? {}), [FINALIZE_ANNOTATION]: value } } });
  };
  const manifestPuts = () => reg.requests().filter((r) => r.method === 'PUT' && r.path.includes('/manifests/')).length;

  before(async () => {
    reg = await startRegistry();
    fake = new FakeApiServer({ resources: [PROFILE_RECORDINGS, PROFILE_RECORDING_RESULTS, PROFILE_BINDINGS, PODS], token: 'rec-token' });
    const server = await fake.listen();
    kc = fakeKubeConfig(server, 'rec-token');
    registry = new UndiciRegistryClient({ insecure: [reg.host] });
    fake.create(PROFILE_RECORDINGS, rec('web', { bind: true }));
    ctl = startRecordingController(kc, {
      registry,
      allowedRepositories: [`${reg.host}/rec/{namespace}`],
      // The Secret as mounted: the key, and the namespaces that may sign with it.
      signingKey: signingKeyLoader(keyDir),
      recordingKey: RECORDING_KEY,
      conflictDelayMs: 20,
      backoffInitialMs: 50,
      reflector: { backoffInitialMs: 20, watchTimeoutSeconds: 60 },
      log: process.env.DEBUG_RECORDING ? (e) => console.error(e) : undefined,
    });
    await ctl.waitForSync(5000);
  });

  after(async () => {
    await ctl?.stop();
    await registry?.close();
    await fake?.close();
    await reg?.stop();
    rmSync(keyDir, { recursive: true, force: true });
  });

  it('counts results while recording, finalizes on the annotation, pushes, writes status (409 retried), binds once', async () => {
    await until('phase Recording', () => get('web').status?.phase === 'Recording');
    assert.equal(get('web').status?.results, 0);
    assert.equal(fake.watcherCount, 4, 'recordings, results, marked pods and bindings are watched');
    assert.ok(fake.requests.some((r) => r.path === '/api/v1/pods' && r.query.labelSelector === 'recording.spoke.dev/name'), 'only labelled pods are listed');

    fake.create(PROFILE_RECORDING_RESULTS, result('web', 'app', ['read', 'write', 'openat']));
    fake.create(PROFILE_RECORDING_RESULTS, result('web', 'app', ['read', 'mkdir']));
    fake.create(PROFILE_RECORDING_RESULTS, result('web', 'sidecar', ['recvfrom', 'sendto'], 'docker.io/library/envoy:1.30'));
    await until('3 results counted', () => get('web').status?.results === 3);
    assert.match(get('web').status?.conditions?.find((c) => c.type === 'Finalized')?.message ?? '', /annotate recording\.spoke\.dev\/finalize/);

    await reg.resetRequests();
    const conflictsBefore = ctl.reconciler.stats.conflicts;
    fake.inject({ method: 'PUT', match: '/profilerecordings/web/status', code: 409, times: 1 });
    annotate('web', '1');
    await until('phase Completed', () => get('web').status?.phase === 'Completed');
    const st = get('web').status!;
    assert.equal(ctl.reconciler.stats.conflicts, conflictsBefore + 1, 'the 409 was retried');
    assert.equal(st.finalizeToken, '1');
    assert.equal(st.results, 3);
    assert.deepEqual(
      st.profiles?.map((p) => p.containers),
      [['app'], ['sidecar']],
    );
    const finalized = st.conditions?.find((c) => c.type === 'Finalized');
    assert.equal(finalized?.status, 'True');
    assert.equal(st.conditions?.find((c) => c.type === 'Bound')?.status, 'True');

    // The registry has exactly the deterministic profile bytes under each digest reference.
    await reg.settle();
    assert.equal(manifestPuts(), 2, 'each profile pushed once despite the conflict');
    for (const [p, calls] of [
      [st.profiles![0]!, ['read', 'write', 'openat', 'mkdir']],
      [st.profiles![1]!, ['recvfrom', 'sendto']],
    ] as const) {
      const [, digest] = p.reference.split('@') as [string, string];
      assert.ok(p.reference.startsWith(`${reg.host}/rec/team@sha256:`), p.reference);
      const manifest = await (await fetch(`${reg.url}/v2/rec/team/manifests/${digest}`, { headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } })).json() as { layers: { digest: string }[]; artifactType: string };
      assert.equal(manifest.artifactType, 'application/vnd.cncf.seccomp-profile.config.v1+json');
      const layer = Buffer.from(await (await fetch(`${reg.url}/v2/rec/team/blobs/${manifest.layers[0]!.digest}`)).arrayBuffer());
      assert.ok(layer.equals(buildRecordedProfile(new Set(calls), 'runc', { ia32: true }).bytes), 'results without ia32 (made here) open the i386 ABI');
      assert.equal(decodeSeccomp(layer).defaultAction, 'SCMP_ACT_ERRNO');
    }
    const tagged = await fetch(`${reg.url}/v2/rec/team/manifests/web-app`, { method: 'HEAD', headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } });
    assert.equal(tagged.status, 200);
    assert.equal(tagged.headers.get('docker-content-digest'), st.profiles![0]!.reference.split('@')[1]);

    // One binding per profile, with the recording's selector and the recorded image.
    const bindings = fake.list(PROFILE_BINDINGS) as unknown as ProfileBinding[];
    assert.deepEqual(bindings.map((b) => b.metadata.name).sort(), ['web-app', 'web-sidecar']);
    const app = bindings.find((b) => b.metadata.name === 'web-app')!;
    assert.equal(app.spec.reference, st.profiles![0]!.reference);
    assert.equal(app.spec.image, 'registry.example.com/app/web:1.0');
    assert.deepEqual(app.spec.podSelector, { matchLabels: { app: 'web' } });
    assert.deepEqual(app.spec.containers, ['app']);
    assert.equal(bindings.find((b) => b.metadata.name === 'web-sidecar')!.spec.image, 'docker.io/library/envoy:1.30');
    assert.deepEqual(
      st.profiles?.map((p) => p.binding),
      ['web-app', 'web-sidecar'],
    );
  });

  it('a second reconcile pushes, writes and creates nothing', async () => {
    await until('binding cache', () => ctl.bindings.get('team', 'web-app') !== undefined);
    await ctl.reconciler.idle();
    const rv = get('web').metadata.resourceVersion;
    const revision = fake.currentRevision;
    await reg.resetRequests();
    const out = await ctl.reconciler.reconcile('team', 'web');
    assert.deepEqual(out, { action: 'none', pushed: 0, bindingsCreated: 0 });
    // A resync of everything, and a late result: counted, but the snapshot stays.
    ctl.reconciler.enqueueAll();
    await ctl.reconciler.idle();
    assert.equal(get('web').metadata.resourceVersion, rv);
    assert.equal(fake.currentRevision, revision, 'no write at all');
    fake.create(PROFILE_RECORDING_RESULTS, result('web', 'app', ['ptrace']));
    await until('late result counted', () => get('web').status?.results === 4);
    await ctl.reconciler.idle();
    await reg.settle();
    assert.equal(manifestPuts(), 0);
    assert.equal(fake.list(PROFILE_BINDINGS).length, 2);
    assert.equal(get('web').status?.phase, 'Completed');
    assert.equal(fake.requests.filter((r) => r.method === 'POST' && r.path.includes('profilebindings')).length, 2, 'bindings created exactly once');
  });

  it('a new finalize value rebuilds; an existing binding with another reference is reported, not replaced', async () => {
    annotate('web', '2');
    await until('rebuilt', () => get('web').status?.finalizeToken === '2' && get('web').status?.phase === 'Completed');
    const st = get('web').status!;
    const bound = st.conditions?.find((c) => c.type === 'Bound');
    assert.equal(bound?.status, 'False');
    assert.equal(bound?.reason, 'BindingExists');
    assert.match(bound?.message ?? '', /web-app exists with reference .*; delete it to bind/);
    assert.equal((fake.get(PROFILE_BINDINGS, 'team', 'web-sidecar') as unknown as ProfileBinding).spec.reference, st.profiles![1]!.reference, 'sidecar profile unchanged: same digest, binding kept');
    // Deleting the stale binding lets the controller create the new one.
    fake.remove(PROFILE_BINDINGS, 'team', 'web-app');
    await until('binding cache dropped it', () => ctl.bindings.get('team', 'web-app') === undefined);
    ctl.reconciler.enqueue('team/web');
    await until('rebound', () => get('web').status?.conditions?.find((c) => c.type === 'Bound')?.status === 'True');
    assert.equal((fake.get(PROFILE_BINDINGS, 'team', 'web-app') as unknown as ProfileBinding).spec.reference, st.profiles![0]!.reference);
  });

  it('Containers strategy with signWith: one profile, signed with the mounted key', async () => {
    fake.create(PROFILE_RECORDINGS, rec('api', { mergeStrategy: 'Containers', publish: { repository: `${reg.host}/rec/team`, signWith: 'release' } }));
    await until('recording', () => get('api').status?.phase === 'Recording');
    const usable = get('api').status?.conditions?.find((c) => c.type === 'SigningKeyUsable');
    assert.deepEqual([usable?.status, usable?.reason], ['True', 'Allowed']);
    fake.create(PROFILE_RECORDING_RESULTS, result('api', 'main', ['read', 'write']));
    fake.create(PROFILE_RECORDING_RESULTS, result('api', 'helper', ['nanosleep', 'clock_nanosleep']));
    await until('2 results', () => get('api').status?.results === 2);
    annotate('api', 'now');
    await until('completed', () => get('api').status?.phase === 'Completed');
    const st = get('api').status!;
    assert.equal(st.profiles?.length, 1);
    assert.deepEqual(st.profiles![0]!.containers, ['helper', 'main']);
    assert.equal(st.profiles![0]!.signed, true);
    assert.equal(ctl.reconciler.stats.signatures, 1);
    // Without the referrers API the bundle is found through the tag-schema index sha256-<hex>.
    const digest = st.profiles![0]!.reference.split('@')[1]!;
    const idx = await fetch(`${reg.url}/v2/rec/team/manifests/sha256-${digest.slice(7)}`, { headers: { accept: 'application/vnd.oci.image.index.v1+json' } });
    assert.equal(idx.status, 200);
    const body = (await idx.json()) as { manifests: { artifactType?: string }[] };
    assert.ok(body.manifests.some((m) => m.artifactType === 'application/vnd.dev.sigstore.bundle.v0.3+json'));
    assert.equal(fake.list(PROFILE_BINDINGS).filter((b) => (b.metadata.name as string).startsWith('api')).length, 0, 'bind: false creates nothing');
  });

  it('a rotated key signs again at the next finalize, though the profile is the same', async () => {
    const before = ctl.reconciler.stats.signatures;
    const reference = get('api').status!.profiles![0]!.reference;
    writeFileSync(join(keyDir, 'release'), makeKey('p256').privatePem);
    annotate('api', 'rotated');
    await until('refinalized', () => get('api').status?.finalizeToken === 'rotated' && get('api').status?.phase === 'Completed');
    assert.equal(get('api').status!.profiles![0]!.reference, reference, 'the same profile');
    assert.equal(ctl.reconciler.stats.signatures, before + 1, 'signed with the new key');
    const idx = await fetch(`${reg.url}/v2/rec/team/manifests/sha256-${reference.split('@')[1]!.slice(7)}`, { headers: { accept: 'application/vnd.oci.image.index.v1+json' } });
    const body = (await idx.json()) as { manifests: { artifactType?: string }[] };
    assert.equal(body.manifests.filter((m) => m.artifactType === 'application/vnd.dev.sigstore.bundle.v0.3+json').length, 2, 'a bundle by each key');
    writeFileSync(join(keyDir, 'release'), key.privatePem);
  });

  it('permanent problems end in Failed with the reason; nothing is pushed', async () => {
    await reg.resetRequests();
    fake.create(PROFILE_RECORDINGS, rec('empty', {}));
    annotate('empty', '1');
    await until('waiting', () => get('empty').status?.phase === 'Finalizing');
    assert.equal(get('empty').status?.conditions?.find((c) => c.type === 'Finalized')?.reason, 'WaitingForResults');
    assert.equal(get('empty').status?.profiles, undefined);

    fake.create(PROFILE_RECORDINGS, rec('elsewhere', { publish: { repository: `${reg.host}/rec/other-team` } }));
    fake.create(PROFILE_RECORDING_RESULTS, result('elsewhere', 'app', ['read']));
    await until('result seen', () => get('elsewhere').status?.results === 1);
    annotate('elsewhere', '1');
    await until('failed', () => get('elsewhere').status?.phase === 'Failed');
    assert.equal(get('elsewhere').status?.conditions?.find((c) => c.type === 'Finalized')?.reason, 'RepositoryNotAllowed');

    fake.create(PROFILE_RECORDINGS, rec('nokey', { publish: { repository: `${reg.host}/rec/team`, signWith: 'missing' } }));
    fake.create(PROFILE_RECORDING_RESULTS, result('nokey', 'app', ['read']));
    await until('result seen', () => get('nokey').status?.results === 1);
    annotate('nokey', '1');
    await until('failed', () => get('nokey').status?.phase === 'Failed');
    assert.equal(get('nokey').status?.conditions?.find((c) => c.type === 'Finalized')?.reason, 'SigningKeyUnavailable');
    assert.match(get('nokey').status?.conditions?.find((c) => c.type === 'Finalized')?.message ?? '', /no signing key missing/);

    // release may sign for team only (release.namespaces): a recording elsewhere that names it
    // fails, though its repository is allowed, and pushes nothing unsigned in its place.
    // Said while it records, before anyone waits for a profile that cannot be signed.
    fake.create(PROFILE_RECORDINGS, rec('guest', { publish: { repository: `${reg.host}/rec/guests`, signWith: 'release' } }, 'guests'));
    await until('recording', () => get('guest', 'guests').status?.phase === 'Recording');
    const early = get('guest', 'guests').status?.conditions?.find((c) => c.type === 'SigningKeyUsable');
    assert.deepEqual([early?.status, early?.reason], ['False', 'SigningKeyNotAllowed']);
    fake.create(PROFILE_RECORDING_RESULTS, result('guest', 'app', ['read'], undefined, 'guests'));
    await until('result seen', () => get('guest', 'guests').status?.results === 1);
    annotate('guest', '1', 'guests');
    await until('failed', () => get('guest', 'guests').status?.phase === 'Failed');
    const notAllowed = get('guest', 'guests').status?.conditions?.find((c) => c.type === 'Finalized');
    assert.equal(notAllowed?.reason, 'SigningKeyNotAllowed');
    assert.match(notAllowed?.message ?? '', /release\.namespaces/);
    // A key the namespace may use that cannot sign: known while recording; nothing pushed unsigned.
    fake.create(PROFILE_RECORDINGS, rec('mixed', { publish: { repository: `${reg.host}/rec/team`, signWith: 'mixup' } }));
    await until('recording', () => get('mixed').status?.phase === 'Recording');
    const unusable = get('mixed').status?.conditions?.find((c) => c.type === 'SigningKeyUsable');
    assert.deepEqual([unusable?.status, unusable?.reason], ['False', 'SigningKeyInvalid']);
    fake.create(PROFILE_RECORDING_RESULTS, result('mixed', 'app', ['read']));
    await until('result seen', () => get('mixed').status?.results === 1);
    annotate('mixed', '1');
    await until('failed', () => get('mixed').status?.phase === 'Failed');
    const invalid = get('mixed').status?.conditions?.find((c) => c.type === 'Finalized');
    assert.equal(invalid?.reason, 'SigningKeyInvalid');
    assert.match(invalid?.message ?? '', /not an unencrypted PEM private key/);
    fake.create(PROFILE_RECORDINGS, rec('lossy', {}));
    const lossy = result('lossy', 'app', ['read']);
    fake.create(PROFILE_RECORDING_RESULTS, { ...lossy, spec: { ...lossy.spec, lostRecords: 2 } });
    await until('result seen', () => get('lossy').status?.results === 1);
    annotate('lossy', '1');
    await until('failed', () => get('lossy').status?.phase === 'Failed');
    assert.equal(get('lossy').status?.conditions?.find((c) => c.type === 'Finalized')?.reason, 'IncompleteRecording');
    assert.match(get('lossy').status?.conditions?.find((c) => c.type === 'Finalized')?.message ?? '', /lost 2 audit record/);
    await reg.settle();
    assert.equal(manifestPuts(), 0);

    // A result arriving after an early finalize: built as soon as it is seen.
    fake.create(PROFILE_RECORDING_RESULTS, result('empty', 'app', ['read', 'write']));
    await until('completed', () => get('empty').status?.phase === 'Completed');
  });

  it('a result counts only from the node that runs its marked pod; others are ignored and named', async () => {
    fake.create(PROFILE_RECORDINGS, rec('guard', {}));
    await until('recording', () => get('guard').status?.phase === 'Recording');
    const uid = fake.get(PROFILE_RECORDINGS, 'team', 'guard')!.metadata.uid as string;
    const owned = (name: string, spec: Partial<ProfileRecordingResult['spec']>): ProfileRecordingResult => ({
      metadata: { name, namespace: 'team', ownerReferences: [{ apiVersion: 'spoke.dev/v1alpha1', kind: 'ProfileRecording', name: 'guard', uid }] },
      spec: { recording: 'guard', pod: 'guard-web', container: 'app', runtime: 'runc', node: 'node-1', syscalls: ['read'], ...spec },
    });
    markedPod(fake, { recording: 'guard', name: 'guard-web', node: 'node-1', containers: ['app'] });
    // labelled and annotated by a pod author, not by the webhook: its proof is under another key
    markedPod(fake, { recording: 'guard', name: 'guard-forged', node: 'node-2', containers: ['app'], proofKey: Buffer.alloc(32, 1) });
    fake.create(PROFILE_RECORDING_RESULTS, owned('from-node-1', { syscalls: ['read', 'write'] }));
    fake.create(PROFILE_RECORDING_RESULTS, owned('node-2-claims-node-1-pod', { node: 'node-2', syscalls: ['ptrace'] }));
    fake.create(PROFILE_RECORDING_RESULTS, owned('node-2-own-forged-pod', { node: 'node-2', pod: 'guard-forged', syscalls: ['kexec_load'] }));
    fake.create(PROFILE_RECORDING_RESULTS, owned('node-2-no-such-pod', { node: 'node-2', pod: 'guard-elsewhere', syscalls: ['mount'] }));
    fake.create(PROFILE_RECORDING_RESULTS, owned('unrecorded-container', { container: 'sidecar', syscalls: ['bpf'] }));
    await until('judged', () => get('guard').status?.conditions?.find((c) => c.type === 'ResultsAccepted')?.message?.includes('4 result(s) ignored') === true);
    const st = get('guard').status!;
    assert.equal(st.results, 1);
    const cond = st.conditions!.find((c) => c.type === 'ResultsAccepted')!;
    assert.equal(cond.status, 'False');
    assert.equal(cond.reason, 'ResultsIgnored');
    assert.match(cond.message, /node-2-claims-node-1-pod: reported by node "node-2", but pod team\/guard-web runs on node node-1/);
    assert.match(cond.message, /node-2-own-forged-pod: pod team\/guard-forged carries no valid marking from the webhook/);
    assert.match(cond.message, /node-2-no-such-pod: pod team\/guard-elsewhere is not a pod marked for recording/);
    assert.match(cond.message, /unrecorded-container: pod team\/guard-web does not record a container named "sidecar"/);

    // The accepted result stays accepted after its pod is gone; the profile holds only its calls.
    fake.remove(PODS, 'team', 'guard-web');
    await until('pod cache dropped it', () => ctl.pods.get('team', 'guard-web') === undefined);
    annotate('guard', '1');
    await until('completed', () => get('guard').status?.phase === 'Completed');
    const p = get('guard').status!.profiles![0]!;
    assert.equal(p.results, 1);
    assert.match(get('guard').status!.conditions!.find((c) => c.type === 'Finalized')!.message, /; 4 result\(s\) ignored and not in the profile \(condition ResultsAccepted\)$/);
    const digest = p.reference.split('@')[1]!;
    const manifest = (await (await fetch(`${reg.url}/v2/rec/team/manifests/${digest}`, { headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } })).json()) as { layers: { digest: string }[] };
    const layer = Buffer.from(await (await fetch(`${reg.url}/v2/rec/team/blobs/${manifest.layers[0]!.digest}`)).arrayBuffer());
    assert.ok(layer.equals(buildRecordedProfile(new Set(['read', 'write']), 'runc', { ia32: true }).bytes), 'ptrace, kexec_load, mount and bpf from the ignored results are not in the profile');
  });

  /**
   * A controller of its own (the main one would refuse the repository) with one recording of one
   * result on `host`, set to finalize: its status, its controller, and its tear-down.
   */
  const finalizing = async (name: string, host: string, registry: UndiciRegistryClient, publishTimeoutMs?: number, o: { bind?: boolean; signWith?: string } = {}) => {
    const api = new FakeApiServer({ resources: [PROFILE_RECORDINGS, PROFILE_RECORDING_RESULTS, PROFILE_BINDINGS, PODS] });
    const kc2 = fakeKubeConfig(await api.listen());
    const events: Record<string, unknown>[] = [];
    const log = (e: Record<string, unknown>) => {
      events.push(e);
      if (process.env.DEBUG_RECORDING) console.error(e);
    };
    const ctl2 = startRecordingController(kc2, { registry, allowedRepositories: [`${host}/{namespace}`], recordingKey: RECORDING_KEY, signingKey: signingKeyLoader(keyDir), backoffInitialMs: 100, ...(publishTimeoutMs ? { publishTimeoutMs } : {}), reflector: { watchTimeoutSeconds: 60 }, log });
    const close = async () => {
      await ctl2.stop();
      await api.close();
    };
    try {
      await ctl2.waitForSync(5000);
      const r = api.create(PROFILE_RECORDINGS, { metadata: { name, namespace: 'team' }, spec: { podSelector: {}, publish: { repository: `${host}/team`, ...(o.signWith ? { signWith: o.signWith } : {}) }, ...(o.bind ? { bind: true } : {}) } });
      markedPod(api, { recording: name, name: 'p', node: 'n', containers: ['app'] });
      api.create(PROFILE_RECORDING_RESULTS, {
        metadata: { name: `${name}-0`, namespace: 'team', ownerReferences: [{ apiVersion: 'spoke.dev/v1alpha1', kind: 'ProfileRecording', name, uid: r.metadata.uid }] },
        spec: { recording: name, pod: 'p', container: 'app', runtime: 'runc', node: 'n', syscalls: ['read'] },
      });
      const st = () => (api.get(PROFILE_RECORDINGS, 'team', name) as unknown as ProfileRecording).status;
      await until('result counted', () => st()?.results === 1);
      const cur = api.get(PROFILE_RECORDINGS, 'team', name)!;
      api.update(PROFILE_RECORDINGS, { ...cur, metadata: { ...cur.metadata, annotations: { [FINALIZE_ANNOTATION]: '1' } } });
      return { st, stats: ctl2.reconciler.stats, close, api, ctl: ctl2, events };
    } catch (e) {
      await close();
      throw e;
    }
  };

  /**
   * A recording finalizing through a proxy that holds every blob upload until `held.release()`
   * (each request would wait for its own deadline); `test` runs while they are held.
   */
  const withHeldUploads = async (
    name: string,
    o: { publishTimeoutMs?: number; bind?: boolean },
    test: (f: Awaited<ReturnType<typeof finalizing>>, held: ReturnType<SlowProxy['hold']>, uploads: Match, proxy: SlowProxy) => Promise<void>,
  ) => {
    const proxy = await startSlowProxy(reg.port);
    const uploads: Match = (r) => r.method === 'POST' && r.path.includes('/blobs/uploads/');
    const held = proxy.hold(uploads);
    const slow = new UndiciRegistryClient({ insecure: [proxy.host] });
    try {
      const f = await finalizing(name, proxy.host, slow, o.publishTimeoutMs, { bind: o.bind });
      try {
        await test(f, held, uploads, proxy);
      } finally {
        await f.close();
      }
    } finally {
      held.release();
      await slow.close();
      await proxy.close();
    }
  };

  it('a registry that holds a publish past its whole deadline: the publish ends, keeps Finalizing, and is retried', async () => {
    await withHeldUploads('held', { publishTimeoutMs: 300 }, async (f, held, uploads, proxy) => {
      await held.arrived();
      await proxy.abandoned(uploads);
      await until('publish failed at its deadline', () => /took longer than 0\.3 s \(retrying\)/.test(f.st()?.conditions?.find((c) => c.type === 'Finalized')?.message ?? ''), 15_000);
      assert.equal(f.st()?.conditions?.find((c) => c.type === 'Finalized')?.reason, 'PublishFailed');
      await until('retried', () => f.stats.errors >= 2, 15_000);
      assert.equal(f.st()?.phase, 'Finalizing');
      assert.equal(f.stats.pushes, 0);
    });
  });

  it('a recording deleted while its profile is pushed: nothing is bound from the deleted snapshot', async () => {
    await withHeldUploads('deleted', { bind: true }, async (f, held) => {
      await held.arrived();
      f.api.remove(PROFILE_RECORDINGS, 'team', 'deleted');
      await until('the deletion reached the cache', () => f.ctl.recordings.get('team', 'deleted') === undefined);
      held.release();
      await until('the publish saw it', () => f.events.some((e) => String(e.msg).startsWith('recording deleted, re-created or finalized again while publishing')), 15_000);
      assert.deepEqual(f.api.list(PROFILE_BINDINGS), [], 'no binding from a deleted recording');
      assert.equal(f.stats.bindingsCreated, 0);
      assert.ok(!f.events.some((e) => e.msg === 'recording finalized'));
    });
  });

  it('a signed publish whose signature the registry refuses to attach never tags the unsigned profile', async () => {
    const proxy = await startSlowProxy(reg.port);
    // The tag-schema index the signature hangs from (this registry has no referrers API).
    proxy.refuse((r) => r.method === 'PUT' && r.path.includes('/manifests/sha256-'), 403);
    const client = new UndiciRegistryClient({ insecure: [proxy.host] });
    try {
      const f = await finalizing('refused', proxy.host, client, undefined, { signWith: 'release' });
      try {
        // The registry's 403 is a permanent refusal: the recording fails, naming it.
        await until('the publish failed', () => f.st()?.conditions?.find((c) => c.type === 'Finalized')?.reason === 'PublishFailed', 15_000);
        const puts = proxy.requests().filter((r) => r.method === 'PUT' && r.path.includes('/manifests/')).map((r) => r.path.split('/manifests/')[1]!);
        assert.ok(puts.some((ref) => ref.startsWith('sha256-')), `the signature was tried: ${puts.join(' ')}`);
        assert.ok(puts.every((ref) => ref.startsWith('sha256')), `by digest and the tag-schema index only, no tag: ${puts.join(' ')}`);
      } finally {
        await f.close();
      }
    } finally {
      await client.close();
      await proxy.close();
    }
  });

  it('a registry outage keeps Finalizing and is retried with backoff', async () => {
    const down = new UndiciRegistryClient({ insecure: ['127.0.0.1:9'], timeoutMs: 500 });
    try {
      const f = await finalizing('offline', '127.0.0.1:9', down);
      try {
        await until('finalizing', () => f.st()?.phase === 'Finalizing', 15_000);
        assert.equal(f.st()?.conditions?.find((c) => c.type === 'Finalized')?.reason, 'PublishFailed');
        await until('retried', () => f.stats.errors >= 2, 15_000);
        assert.equal(f.st()?.phase, 'Finalizing');
      } finally {
        await f.close();
      }
    } finally {
      await down.close();
    }
  });
});
