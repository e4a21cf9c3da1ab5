// The pod webhook marks pods for recording (issue 8, binding.ts rules R1–R5): a ProfileRecording
// of the pod's namespace that selects it and is not finalized adds recording.spoke.dev/name
// (JSON Patch, escaped pointer); two recordings deny; recording wins over a seccomp binding for
// the recorded containers only; privileged or explicitly profiled containers are not recorded.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { reviewPod } from '../../../src/controller/admission.js';
import { mutatePod, type MutationResult } from '../../../src/controller/binding.js';
import { StaticBindingSource, StaticRecordingSource, type RecordingSource } from '../../../src/controller/source.js';
import type { ProfileRecording } from '../../../src/controller/recording.js';
import type { Container, Pod, ProfileBinding } from '../../../src/controller/types.js';
import { applyPatch, type Op } from '../../helpers/json-patch.js';

const REF_A = `registry.example.com/profiles/a@sha256:${'a'.repeat(64)}`;

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
  const r = mutatePod(p, bs, { mode, ...(rs ? { recordings: rs } : {}) });
  return { r, out: 'denied' in r ? p : applyPatch(p, r.patch as Op[]) };
}
const ok = (r: MutationResult) => {
  assert.ok(!('denied' in r), 'denied' in r ? r.denied : '');
  return r as Exclude<MutationResult, { denied: string }>;
};

describe('pod webhook: recording', () => {
  it('a selecting, unfinalized recording adds recording.spoke.dev/name with an escaped pointer', () => {
    const p = pod([{ name: 'web', image: 'nginx:1' }], { annotations: { keep: 'me' } });
    const { r, out } = mutate(p, [], [recording('rec-web')]);
    assert.deepEqual(ok(r).patch, [{ op: 'add', path: '/metadata/annotations/recording.spoke.dev~1name', value: 'rec-web' }]);
    assert.deepEqual(out.metadata?.annotations, { keep: 'me', 'recording.spoke.dev/name': 'rec-web' });
    // no annotations at all yet: the map is added
    const bare = mutate(pod([{ name: 'web', image: 'nginx:1' }]), [], [recording('rec-web')]);
    assert.deepEqual(bare.out.metadata?.annotations, { 'recording.spoke.dev/name': 'rec-web' });
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
    assert.equal(ok(mutate(p, [], [recording('r', {}, { 'recording.spoke.dev/finalize': '' })]).r).patch.length, 1);
  });

  it('two recordings selecting the pod: denied naming both', () => {
    const { r } = mutate(pod([{ name: 'web', image: 'nginx:1' }]), [], [recording('rec-b'), recording('rec-a', { podSelector: {} })]);
    assert.ok('denied' in r);
    assert.match(r.denied, /ProfileRecordings rec-a and rec-b/);
  });

  it('recording wins over a seccomp binding for recorded containers only; AppArmor and other containers are bound', () => {
    const p = pod([{ name: 'web', image: 'nginx:1' }, { name: 'side', image: 'nginx:1' }]);
    const bs = [binding('bind-all'), binding('aa', { kind: 'apparmor' })];
    const { r, out } = mutate(p, bs, [recording('rec', { containers: ['web'] })]);
    const res = ok(r);
    const [web, side] = out.spec!.containers!;
    assert.equal(web!.securityContext?.seccompProfile, undefined, 'the recorded container gets no OCI profile');
    assert.equal(web!.securityContext?.appArmorProfile?.type, 'OCI');
    assert.equal(side!.securityContext?.seccompProfile?.type, 'OCI');
    assert.equal(out.metadata?.annotations?.['recording.spoke.dev/name'], 'rec');
    assert.equal(out.metadata?.annotations?.['recording.spoke.dev/containers'], 'web');
    assert.ok(res.warnings.some((w) => /container "web" is recorded by ProfileRecording rec .*ProfileBinding team\/bind-all not applied/.test(w)), res.warnings.join('\n'));
    assert.deepEqual(res.applied.map((a) => `${a.kind}:${a.container}`).sort(), ['apparmor:side', 'apparmor:web', 'seccomp:side']);
    // annotations mode: same decision, no seccomp annotation for the recorded container
    const am = mutate(p, bs, [recording('rec', { containers: ['web'] })], 'annotations');
    assert.equal(am.out.metadata?.annotations?.['seccomp.profiles.spoke.dev/web'], undefined);
    assert.equal(am.out.metadata?.annotations?.['seccomp.profiles.spoke.dev/side'], REF_A);
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

  it('reviewPod reads the recording source of the namespace; an unsynced one admits unmarked with a warning', () => {
    const body = (p: Pod) => ({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', request: { uid: 'u1', kind: { group: '', version: 'v1', kind: 'Pod' }, resource: { group: '', version: 'v1', resource: 'pods' }, namespace: 'team', operation: 'CREATE', object: p } });
    const p = pod([{ name: 'web', image: 'nginx:1' }]);
    const rs = new StaticRecordingSource([recording('rec'), { ...recording('elsewhere', { podSelector: {} }), metadata: { name: 'elsewhere', namespace: 'other' } }]);
    const out = reviewPod(body(p), new StaticBindingSource([]), { recordings: rs }).response;
    assert.equal(out.allowed, true);
    assert.deepEqual(JSON.parse(Buffer.from(out.patch!, 'base64').toString()), [{ op: 'add', path: '/metadata/annotations', value: { 'recording.spoke.dev/name': 'rec' } }]);
    const unsynced: RecordingSource = { list: () => [], synced: () => false };
    const early = reviewPod(body(p), new StaticBindingSource([]), { recordings: unsynced }).response;
    assert.deepEqual([early.allowed, early.patch, early.warnings], [true, undefined, ['spoke: ProfileRecording cache not synced yet; the pod was not checked for recording']], 'admitted unmarked: never looser');
    assert.equal(reviewPod(body(p), new StaticBindingSource([])).response.patch, undefined, 'no recording source: no mark');
  });
});
