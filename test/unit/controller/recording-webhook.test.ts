// The pod webhook marks pods for recording (binding.ts rules R1–R6): a ProfileRecording of the
// pod's namespace that selects it and is not finalized adds recording.spoke.dev/name and the
// signed recording.spoke.dev/proof (JSON Patch, escaped pointer); two recordings deny; recorded
// containers still get their seccomp binding, which applies once the recording's proof expires;
// privileged or explicitly profiled containers are not recorded; recording annotations the
// webhook did not set are removed.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { reviewPod } from '../../../src/controller/admission.js';
import { MAX_NAMESPACE_RECORDINGS, mutatePod, type MutationResult } from '../../../src/controller/binding.js';
import { StaticBindingSource, StaticRecordingSource, type RecordingSource } from '../../../src/controller/source.js';
import type { ProfileRecording } from '../../../src/controller/recording.js';
import type { Container, Pod, ProfileBinding } from '../../../src/controller/types.js';
import { signRecordingProof, verifyRecordingProof } from '../../../src/core/recording-proof.js';
import { applyPatch, type Op } from '../../helpers/json-patch.js';

const REF_A = `registry.example.com/profiles/a@sha256:${'a'.repeat(64)}`;
const KEY = Buffer.alloc(32, 3);
const NOW = 1_800_000_000;
const PROOF = { key: KEY, namespace: 'team', now: NOW, ttlSeconds: 3600 };
/** The proof the webhook writes for pod team/p at NOW. */
const proofFor = (recording: string, containers?: string[]) => signRecordingProof(KEY, { namespace: 'team', pod: { name: 'p' }, recording, containers }, NOW + 3600);

function recording(name: string, spec: Partial<ProfileRecording['spec']> = {}, annotations?: Record<string, string>): ProfileRecording {
  return {
    apiVersion: 'spoke.dev/v1alpha1',
    kind: 'ProfileRecording',
    metadata: { name, namespace: 'team', ...(annotations ? { annotations } : {}) },
    spec: { podSelector: { matchLabels: { app: 'web' } }, publish: { repository: 'registry.example.com/recorded/web' }, ...spec },
  };
}

function binding(name: string, spec: Partial<ProfileBinding['spec']> = {}): ProfileBinding {
  return { apiVersion: 'spoke.dev/v1alpha1', kind: 'ProfileBinding', metadata: { name, namespace: 'team' }, spec: { kind: 'seccomp', reference: REF_A, image: '*', ...spec } };
}

function pod(containers: Container[], o: { init?: Container[]; labels?: Record<string, string>; annotations?: Record<string, string>; podSc?: Record<string, unknown> } = {}): Pod {
  const meta: Record<string, unknown> = { name: 'p', namespace: 'team', labels: o.labels ?? { app: 'web' } };
  if (o.annotations) meta.annotations = o.annotations;
  const spec: Record<string, unknown> = { containers };
  if (o.init) spec.initContainers = o.init;
  if (o.podSc) spec.securityContext = o.podSc;
  return { apiVersion: 'v1', kind: 'Pod', metadata: meta, spec };
}

function mutate(p: Pod, bs: ProfileBinding[], rs: ProfileRecording[] | undefined, mode: 'field' | 'annotations' = 'field'): { r: MutationResult; out: Pod } {
  const r = mutatePod(p, bs, { mode, ...(rs ? { recordings: rs } : {}), recordingProof: PROOF });
  return { r, out: 'denied' in r ? p : applyPatch(p, r.patch as Op[]) };
}
const ok = (r: MutationResult) => {
  assert.ok(!('denied' in r), 'denied' in r ? r.denied : '');
  return r as Exclude<MutationResult, { denied: string }>;
};

describe('pod webhook: recording', () => {
  it('a namespace with more than MAX_NAMESPACE_RECORDINGS ProfileRecordings gets its pods denied, naming the limit; each recording object is validated once, not at every review', () => {
    const many = Array.from({ length: MAX_NAMESPACE_RECORDINGS + 1 }, (_, i) => recording(`r${i}`, { podSelector: { matchLabels: { app: `other-${i}` } } }));
    assert.match((mutatePod(pod([{ name: 'web', image: 'nginx:1' }]), [], { recordings: many, recordingProof: PROOF }) as { denied: string }).denied, new RegExp(`${MAX_NAMESPACE_RECORDINGS + 1} ProfileRecordings`));
    let reads = 0;
    const counted = recording('rec-web');
    const repository = counted.spec.publish.repository;
    Object.defineProperty(counted.spec.publish, 'repository', { enumerable: true, get: () => (reads++, repository) });
    ok(mutate(pod([{ name: 'web', image: 'nginx:1' }]), [], [counted]).r);
    const first = reads;
    assert.ok(first > 0);
    for (let i = 0; i < 3; i++) ok(mutate(pod([{ name: 'web', image: 'nginx:1' }]), [], [counted]).r);
    assert.equal(reads, first);
  });


  it('a selecting, unfinalized recording adds recording.spoke.dev/name and its proof with escaped pointers, and the pod label', () => {
    const p = pod([{ name: 'web', image: 'nginx:1' }], { annotations: { keep: 'me' } });
    const { r, out } = mutate(p, [], [recording('rec-web')]);
    assert.deepEqual(ok(r).patch, [
      { op: 'add', path: '/metadata/annotations/recording.spoke.dev~1containers', value: 'web' },
      { op: 'add', path: '/metadata/annotations/recording.spoke.dev~1name', value: 'rec-web' },
      { op: 'add', path: '/metadata/annotations/recording.spoke.dev~1proof', value: proofFor('rec-web', ['web']) },
      { op: 'add', path: '/metadata/labels/recording.spoke.dev~1name', value: 'rec-web' },
    ]);
    const marked = { keep: 'me', 'recording.spoke.dev/name': 'rec-web', 'recording.spoke.dev/containers': 'web', 'recording.spoke.dev/proof': proofFor('rec-web', ['web']) };
    assert.deepEqual(out.metadata?.annotations, marked);
    assert.deepEqual(out.metadata?.labels, { app: 'web', 'recording.spoke.dev/name': 'rec-web' });
    // Every container is recorded, and still listed: the proof covers no container added later
    // (an ephemeral debug container the webhook never saw).
    assert.equal(verifyRecordingProof(KEY, marked['recording.spoke.dev/proof'], { namespace: 'team', podName: 'p', recording: 'rec-web', containers: undefined }, NOW).ok, false);
    // no annotations at all yet: the map is added
    const bare = mutate(pod([{ name: 'web', image: 'nginx:1' }]), [], [recording('rec-web')]);
    assert.deepEqual(bare.out.metadata?.annotations, { 'recording.spoke.dev/name': 'rec-web', 'recording.spoke.dev/containers': 'web', 'recording.spoke.dev/proof': proofFor('rec-web', ['web']) });
  });

  it('generateName pods (no name at admission) get a proof for the generated name; the request name wins', () => {
    const p = pod([{ name: 'web', image: 'nginx:1' }]);
    delete p.metadata!.name;
    p.metadata!.generateName = 'web-7d9f8c-';
    const { out } = mutate(p, [], [recording('rec')]);
    const proof = out.metadata!.annotations!['recording.spoke.dev/proof']!;
    const seen = { namespace: 'team', recording: 'rec', containers: ['web'] };
    assert.equal(verifyRecordingProof(KEY, proof, { ...seen, podName: 'web-7d9f8c-x2b4z' }, NOW).ok, true);
    assert.equal(verifyRecordingProof(KEY, proof, { ...seen, podName: 'other-x2b4z' }, NOW).ok, false);
    const named = mutatePod(p, [], { recordings: [recording('rec')], recordingProof: { ...PROOF, name: 'given' } });
    const v = (applyPatch(p, ok(named).patch as Op[]).metadata!.annotations!['recording.spoke.dev/proof'])!;
    assert.equal(verifyRecordingProof(KEY, v, { ...seen, podName: 'given' }, NOW).ok, true);
  });

  it('user-set recording annotations are removed (warning) on pods the webhook does not mark; never kept next to its own', () => {
    const forged = { 'recording.spoke.dev/name': 'rec', 'recording.spoke.dev/proof': proofFor('rec'), 'recording.spoke.dev/containers': 'web', other: 'x' };
    for (const rs of [undefined, [], [recording('r', { podSelector: { matchLabels: { app: 'db' } } })]]) {
      const { r, out } = mutate(pod([{ name: 'web', image: 'nginx:1' }], { annotations: forged }), [], rs);
      assert.deepEqual(out.metadata?.annotations, { other: 'x' }, JSON.stringify(rs));
      assert.equal(ok(r).warnings.filter((w) => /removed: only spoke's webhook marks pods for recording/.test(w)).length, 3);
    }
    // marked by the webhook: a user-set containers list does not survive next to the proof
    const { out } = mutate(pod([{ name: 'web', image: 'nginx:1' }], { annotations: { 'recording.spoke.dev/containers': 'web,ghost', 'recording.spoke.dev/extra': '1' } }), [], [recording('rec')]);
    assert.deepEqual(out.metadata?.annotations, { 'recording.spoke.dev/name': 'rec', 'recording.spoke.dev/containers': 'web', 'recording.spoke.dev/proof': proofFor('rec', ['web']) });
    // without a recording key nothing is marked, with a warning
    const nokey = mutatePod(pod([{ name: 'web', image: 'nginx:1' }]), [], { recordings: [recording('rec')] });
    assert.deepEqual(ok(nokey).patch, []);
    assert.ok(ok(nokey).warnings.some((w) => /not marked: the controller has no recording key/.test(w)));
  });

  it('not selected: other labels, finalized, invalid, containers not in the pod', () => {
    const p = pod([{ name: 'web', image: 'nginx:1' }]);
    for (const rs of [
      [recording('r', { podSelector: { matchLabels: { app: 'db' } } })],
      [recording('r', {}, { 'recording.spoke.dev/finalize': 'now' })],
      [recording('r', { publish: { repository: 'registry.example.com/x:tag' } })],
      [recording('r', { containers: ['sidecar'] })],
    ]) {
      assert.deepEqual(ok(mutate(p, [], rs).r).patch, [], JSON.stringify(rs[0]?.spec));
    }
    // an empty finalize value does not finalize
    assert.equal(ok(mutate(p, [], [recording('r', {}, { 'recording.spoke.dev/finalize': '' })]).r).patch.length, 2, 'annotations map and label');
  });

  it('two recordings selecting the pod: denied naming both', () => {
    const { r } = mutate(pod([{ name: 'web', image: 'nginx:1' }]), [], [recording('rec-b'), recording('rec-a', { podSelector: {} })]);
    assert.ok('denied' in r);
    assert.match(r.denied, /ProfileRecordings rec-a and rec-b/);
  });

  it('a recorded container is bound too: the node records it while the proof holds, and its binding applies once the proof expires', () => {
    const p = pod([{ name: 'web', image: 'nginx:1' }, { name: 'side', image: 'nginx:1' }]);
    const bs = [binding('bind-all'), binding('aa', { kind: 'apparmor' })];
    const { r, out } = mutate(p, bs, [recording('rec', { containers: ['web'] })]);
    const res = ok(r);
    const [web, side] = out.spec!.containers!;
    assert.deepEqual(web!.securityContext?.seccompProfile, { type: 'OCI', oci: { reference: REF_A } }, 'the recorded container carries its binding for when the proof has expired');
    assert.equal(web!.securityContext?.appArmorProfile?.type, 'OCI');
    assert.equal(side!.securityContext?.seccompProfile?.type, 'OCI');
    assert.equal(out.metadata?.annotations?.['recording.spoke.dev/name'], 'rec');
    assert.equal(out.metadata?.annotations?.['recording.spoke.dev/containers'], 'web');
    assert.ok(res.warnings.some((w) => /container "web" is recorded by ProfileRecording rec: .*then ProfileBinding team\/bind-all applies/.test(w)), res.warnings.join('\n'));
    assert.deepEqual(res.applied.map((a) => `${a.kind}:${a.container}`).sort(), ['apparmor:side', 'apparmor:web', 'seccomp:side', 'seccomp:web']);
    // annotations mode: the same, by annotation (the field RuntimeDefault)
    const am = mutate(p, bs, [recording('rec', { containers: ['web'] })], 'annotations');
    assert.equal(am.out.metadata?.annotations?.['seccomp.profiles.spoke.dev/web'], REF_A);
    assert.equal(am.out.metadata?.annotations?.['seccomp.profiles.spoke.dev/side'], REF_A);
    assert.equal(am.out.metadata?.annotations?.['recording.spoke.dev/containers'], 'web');
    // Reinvoked on its own output, in either mode: the same marking, the same proof, nothing to patch.
    assert.deepEqual(ok(mutate(out, bs, [recording('rec', { containers: ['web'] })]).r).patch, []);
    assert.deepEqual(ok(mutate(am.out, bs, [recording('rec', { containers: ['web'] })], 'annotations').r).patch, []);
  });

  it('an Unconfined container that an override binding binds is recorded from the first call, so the reinvocation changes nothing', () => {
    const p = pod([{ name: 'web', image: 'nginx:1', securityContext: { seccompProfile: { type: 'Unconfined' } } }]);
    const bs = [binding('bind-all', { override: true })];
    const first = mutate(p, bs, [recording('rec')]);
    assert.equal(first.out.metadata?.annotations?.['recording.spoke.dev/containers'], 'web');
    assert.deepEqual(first.out.spec?.containers?.[0]?.securityContext?.seccompProfile, { type: 'OCI', oci: { reference: REF_A } });
    assert.deepEqual(ok(mutate(first.out, bs, [recording('rec')]).r).patch, []);
  });

  it('reinvoked after a later webhook pinned the image: the container stays recorded and gets the binding now most specific', () => {
    const digest = `sha256:${'e'.repeat(64)}`;
    const exactRef = `registry.example.com/profiles/x@sha256:${'f'.repeat(64)}`;
    const bs = [binding('repo', { image: 'nginx' }), binding('exact', { image: `nginx@${digest}`, reference: exactRef })];
    const first = mutate(pod([{ name: 'web', image: 'nginx:1' }]), bs, [recording('rec')]);
    assert.equal(first.out.metadata?.annotations?.['recording.spoke.dev/containers'], 'web');
    first.out.spec!.containers![0]!.image = `nginx:1@${digest}`;
    const again = mutate(first.out, bs, [recording('rec')]);
    assert.equal(again.out.metadata?.annotations?.['recording.spoke.dev/containers'], 'web');
    assert.equal(again.out.metadata?.annotations?.['recording.spoke.dev/proof'], first.out.metadata?.annotations?.['recording.spoke.dev/proof']);
    assert.deepEqual(again.out.spec?.containers?.[0]?.securityContext?.seccompProfile, { type: 'OCI', oci: { reference: exactRef } });
  });

  it("a container whose own OCI profile is not its binding's is not recorded", () => {
    const other = `registry.example.com/profiles/o@sha256:${'b'.repeat(64)}`;
    const p = pod([{ name: 'web', image: 'nginx:1', securityContext: { seccompProfile: { type: 'OCI', oci: { reference: other } } } }]);
    const res = ok(mutate(p, [binding('bind-all')], [recording('rec')]).r);
    assert.ok(res.warnings.some((w) => /"web" keeps its seccomp profile OCI/.test(w)), res.warnings.join('\n'));
    assert.deepEqual(res.patch, []);
  });

  it('privileged and explicitly profiled containers are not recorded (warning) and keep the old rules', () => {
    const p = pod(
      [
        { name: 'web', image: 'nginx:1' },
        { name: 'priv', image: 'nginx:1', securityContext: { privileged: true } },
        { name: 'local', image: 'nginx:1', securityContext: { seccompProfile: { type: 'Localhost', localhostProfile: 'x.json' } } },
      ],
      { init: [{ name: 'init', image: 'busybox:1' }] },
    );
    const { r, out } = mutate(p, [], [recording('rec')]);
    const res = ok(r);
    assert.equal(out.metadata?.annotations?.['recording.spoke.dev/containers'], 'init,web');
    assert.ok(res.warnings.some((w) => /"priv" is privileged .*cannot record it/.test(w)));
    assert.ok(res.warnings.some((w) => /"local" keeps its seccomp profile Localhost/.test(w)));
    // a privileged container selected by a binding is treated as without recording: no profile, warned, counted
    const priv = ok(mutate(p, [binding('b', { containers: ['priv'] })], [recording('rec')]).r);
    assert.deepEqual(priv.skipped.map((s) => [s.container, s.reason]), [['priv', 'Privileged']]);
    // nothing recordable: no mark at all
    const none = mutate(pod([{ name: 'priv', image: 'nginx:1', securityContext: { privileged: true } }]), [], [recording('rec')]).r;
    assert.deepEqual(ok(none).patch, []);
  });

  it('idempotent on reinvocation; a pod marked for another recording is denied', () => {
    const p = pod([{ name: 'web', image: 'nginx:1' }]);
    const first = mutate(p, [binding('b')], [recording('rec')]);
    const again = mutate(first.out, [binding('b')], [recording('rec')]);
    assert.deepEqual(ok(again.r).patch, []);
    const other = mutate(pod([{ name: 'web', image: 'nginx:1' }], { annotations: { 'recording.spoke.dev/name': 'old' } }), [], [recording('rec')]).r;
    assert.ok('denied' in other && /annotated recording\.spoke\.dev\/name: "old" but selected by ProfileRecording rec/.test(other.denied));
  });

  it('without recordings the mutation is unchanged (spoke binding apply output identical)', () => {
    const p = pod([{ name: 'web', image: 'nginx:1' }]);
    assert.deepEqual(mutatePod(p, [binding('b')], { mode: 'field' }), mutatePod(p, [binding('b')], { mode: 'field', recordings: [] }));
    assert.deepEqual(ok(mutate(p, [binding('b')], undefined).r).patch, [{ op: 'add', path: '/spec/containers/0/securityContext', value: { seccompProfile: { type: 'OCI', oci: { reference: REF_A } } } }]);
  });

  it('a Windows pod (spec.os.name windows) is never marked for recording, nor denied for two recordings; markings it carries are still removed (R6)', () => {
    const windows = (annotations?: Record<string, string>): Pod => {
      const p = pod([{ name: 'web', image: 'mcr.microsoft.com/windows/servercore:ltsc2022' }], annotations ? { annotations } : {});
      return { ...p, spec: { ...p.spec, os: { name: 'windows' } } };
    };
    for (const mode of ['field', 'annotations'] as const) {
      const { r, out } = mutate(windows(), [binding('b')], [recording('rec')], mode);
      const res = ok(r);
      assert.deepEqual(res.patch, [], mode);
      assert.deepEqual([out.metadata?.annotations, out.metadata?.labels], [undefined, { app: 'web' }], mode);
      assert.ok(res.warnings.includes('the pod is a Windows pod (spec.os.name: windows), which runs no seccomp profile: ProfileRecording rec does not record it'), res.warnings.join('\n'));
    }
    const two = ok(mutate(windows(), [], [recording('rec'), recording('rec2')]).r);
    assert.deepEqual(two.patch, []);
    assert.ok(two.warnings.some((w) => w.endsWith('ProfileRecordings rec, rec2 do not record it')), two.warnings.join('\n'));
    const carried = ok(mutate(windows({ 'recording.spoke.dev/name': 'rec', 'recording.spoke.dev/proof': proofFor('rec', ['web']) }), [], [recording('rec')]).r);
    assert.deepEqual(carried.patch, [
      { op: 'remove', path: '/metadata/annotations/recording.spoke.dev~1name' },
      { op: 'remove', path: '/metadata/annotations/recording.spoke.dev~1proof' },
    ]);
  });

  it('reviewPod reads the recording source of the namespace; an unsynced one admits unmarked with a warning', () => {
    const body = (p: Pod) => ({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', request: { uid: 'u1', kind: { group: '', version: 'v1', kind: 'Pod' }, resource: { group: '', version: 'v1', resource: 'pods' }, namespace: 'team', operation: 'CREATE', object: p } });
    const p = pod([{ name: 'web', image: 'nginx:1' }]);
    const rs = new StaticRecordingSource([recording('rec'), { ...recording('elsewhere', { podSelector: {} }), metadata: { name: 'elsewhere', namespace: 'other' } }]);
    const out = reviewPod(body(p), new StaticBindingSource([]), { recordings: rs, recordingKey: KEY, now: () => NOW * 1000 }).response;
    assert.equal(out.allowed, true);
    assert.deepEqual(JSON.parse(Buffer.from(out.patch!, 'base64').toString()), [
      { op: 'add', path: '/metadata/annotations', value: { 'recording.spoke.dev/name': 'rec', 'recording.spoke.dev/containers': 'web', 'recording.spoke.dev/proof': proofFor('rec', ['web']) } },
      { op: 'add', path: '/metadata/labels/recording.spoke.dev~1name', value: 'rec' },
    ]);
    const unsynced: RecordingSource = { list: () => [], synced: () => false };
    const early = reviewPod(body(p), new StaticBindingSource([]), { recordings: unsynced, recordingKey: KEY }).response;
    assert.deepEqual([early.allowed, early.patch, early.warnings], [true, undefined, ['spoke: ProfileRecording cache not synced yet; the pod was not checked for recording']], 'admitted unmarked: never looser');
    assert.equal(reviewPod(body(p), new StaticBindingSource([])).response.patch, undefined, 'no recording source: no mark');
  });
});
