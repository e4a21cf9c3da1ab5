// /validate-pod-updates and a container's image changed in place (docs/binding.md): the profile a
// container carries was decided at its creation and cannot change, so a new image is admitted
// only where the bindings give it exactly that profile, whatever the pod's labels became since.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { reviewPod, reviewPodUpdate } from '../../../src/controller/admission.js';
import { MAX_NAMESPACE_BINDINGS } from '../../../src/controller/binding.js';
import { StaticBindingSource } from '../../../src/controller/source.js';
import type { Container, Pod, ProfileBinding } from '../../../src/controller/types.js';
import { applyPatch, type Op } from '../../helpers/json-patch.js';

const REF_LOOSE = `registry.example.com/profiles/loose@sha256:${'a'.repeat(64)}`;
const REF_STRICT = `registry.example.com/profiles/strict@sha256:${'b'.repeat(64)}`;

function binding(name: string, spec: Partial<ProfileBinding['spec']>): ProfileBinding {
  return { apiVersion: 'spoke.dev/v1alpha1', kind: 'ProfileBinding', metadata: { name, namespace: 'team' }, spec: { kind: 'seccomp', reference: REF_STRICT, image: '*', ...spec } };
}

function pod(containers: Container[], labels: Record<string, string>): Pod {
  return { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p', namespace: 'team', labels }, spec: { containers } };
}

function reviewOf(operation: 'CREATE' | 'UPDATE', object: Pod, oldObject?: Pod) {
  return {
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: { uid: 'u1', kind: { group: '', version: 'v1', kind: 'Pod' }, resource: { group: '', version: 'v1', resource: 'pods' }, namespace: 'team', operation, object, ...(oldObject ? { oldObject } : {}) },
  };
}

const source = new StaticBindingSource([binding('x-dev', { image: 'registry.example.com/app/x', podSelector: { matchLabels: { tier: 'dev' } }, reference: REF_LOOSE }), binding('all', {})]);

/** The pod as the API server stores it after the binding webhook. */
function created(p: Pod): Pod {
  const r = reviewPod(reviewOf('CREATE', p), source).response;
  assert.equal(r.allowed, true);
  return r.patch === undefined ? p : applyPatch(p, JSON.parse(Buffer.from(r.patch, 'base64').toString()) as Op[]);
}

const update = (before: Pod, after: Pod) => reviewPodUpdate(reviewOf('UPDATE', after, before), source).response;
const withImage = (p: Pod, image: string): Pod => ({ ...p, spec: { ...p.spec, containers: p.spec!.containers!.map((c) => ({ ...c, image })) } });
const withLabels = (p: Pod, labels: Record<string, string>): Pod => ({ ...p, metadata: { ...p.metadata, labels } });

describe('/validate-pod-updates: an image changed in place', () => {
  it('in a namespace with more than MAX_NAMESPACE_BINDINGS bindings is denied naming the limit; an update that changes no image is not', () => {
    const bs = Array.from({ length: MAX_NAMESPACE_BINDINGS + 1 }, (_, i) => binding(`b${i}`, { containers: [`c${i}`] }));
    const crowded = new StaticBindingSource(bs);
    const p = pod([{ name: 'app', image: 'busybox:1.36' }], {});
    const r = reviewPodUpdate(reviewOf('UPDATE', withImage(p, 'busybox:1.37'), p), crowded).response;
    assert.equal(r.allowed, false);
    assert.match(r.status?.message ?? '', new RegExp(`${MAX_NAMESPACE_BINDINGS + 1} ProfileBindings`));
    assert.equal(reviewPodUpdate(reviewOf('UPDATE', withLabels(p, { a: 'b' }), p), crowded).response.allowed, true);
  });


  it("is judged by the profile the container carries, not by which binding its old image would win now: dropping a label first does not launder the loose profile onto another image", () => {
    const stored = created(pod([{ name: 'app', image: 'registry.example.com/app/x:1' }], { tier: 'dev' }));
    assert.equal(stored.spec!.containers![0]!.securityContext?.seccompProfile?.oci?.reference, REF_LOOSE);
    // Straight to another image: refused (the strict binding would win for it).
    assert.equal(update(stored, withImage(stored, 'registry.example.com/evil/y:1')).allowed, false);
    // The label dropped first (no image change: admitted), then the image.
    const unlabelled = withLabels(stored, {});
    assert.equal(update(stored, unlabelled).allowed, true);
    const moved = update(unlabelled, withImage(unlabelled, 'registry.example.com/evil/y:1'));
    assert.equal(moved.allowed, false);
    assert.match(moved.status?.message ?? '', /container "app": .*recreate the pod/);
    // A new tag of the same image, whose binding still gives it what it carries: admitted.
    assert.equal(update(stored, withImage(stored, 'registry.example.com/app/x:2')).allowed, true);
  });

  it("where no binding selects the new image, a container that carries a binding's profile keeps its image (a label removed first made no binding select the old one either)", () => {
    const only = new StaticBindingSource([binding('x-dev', { image: 'registry.example.com/app/x', podSelector: { matchLabels: { tier: 'dev' } }, reference: REF_LOOSE })]);
    const r = reviewPod(reviewOf('CREATE', pod([{ name: 'app', image: 'registry.example.com/app/x:1' }], { tier: 'dev' })), only).response;
    const stored = applyPatch(pod([{ name: 'app', image: 'registry.example.com/app/x:1' }], { tier: 'dev' }), JSON.parse(Buffer.from(r.patch!, 'base64').toString()) as Op[]);
    const unlabelled = withLabels(stored, {});
    assert.equal(reviewPodUpdate(reviewOf('UPDATE', unlabelled, stored), only).response.allowed, true);
    assert.equal(reviewPodUpdate(reviewOf('UPDATE', withImage(unlabelled, 'registry.example.com/evil/y:1'), unlabelled), only).response.allowed, false);
    // The binding's base changed since: the container still names its reference.
    const rebased = new StaticBindingSource([binding('x-dev', { image: 'registry.example.com/app/x', podSelector: { matchLabels: { tier: 'dev' } }, reference: REF_LOOSE, baseProfile: { type: 'RuntimeDefault' } })]);
    assert.equal(reviewPodUpdate(reviewOf('UPDATE', withImage(unlabelled, 'registry.example.com/evil/y:1'), unlabelled), rebased).response.allowed, false);
  });

  it("a container that does not carry its bindings' profile (its own, kept at creation) changes image only by recreating the pod", () => {
    const own = created(pod([{ name: 'app', image: 'busybox:1.36', securityContext: { seccompProfile: { type: 'Localhost', localhostProfile: 'own.json' } } }], {}));
    assert.equal(update(own, withImage(own, 'busybox:1.37')).allowed, false);
    // Where no binding selects the old image nor the new one, nothing is decided by bindings: admitted.
    const none = new StaticBindingSource([binding('only-nginx', { image: 'nginx' })]);
    const p = pod([{ name: 'app', image: 'busybox:1.36' }], {});
    assert.equal(reviewPodUpdate(reviewOf('UPDATE', withImage(p, 'busybox:1.37'), p), none).response.allowed, true);
  });
});

describe('/validate-pod-updates: an image changed in place where a binding is invalid', () => {
  // Not pinned by digest: invalid. At creation it denies a pod it may select (an image it names,
  // an image ID); a new image given in place is held to the same rule.
  const invalid = new StaticBindingSource([binding('bad', { image: 'nginx', reference: 'registry.example.com/p:v1' })]);
  const p = pod([{ name: 'app', image: 'busybox:1.36' }], {});
  const updated = (image: string) => reviewPodUpdate(reviewOf('UPDATE', withImage(p, image), p), invalid).response;
  const createdWith = (image: string) => reviewPod(reviewOf('CREATE', withImage(p, image)), invalid).response;

  it('a new image the invalid binding may select (one it names, an image ID) is denied, as at creation; another is not', () => {
    assert.equal(reviewPod(reviewOf('CREATE', p), invalid).response.allowed, true, 'the stored pod: busybox is not selected');
    for (const image of ['nginx:1.27', `sha256:${'e'.repeat(64)}`, 'e'.repeat(64)]) {
      assert.equal(createdWith(image).allowed, false, `created with ${image}`);
      const r = updated(image);
      assert.equal(r.allowed, false, `changed in place to ${image}`);
      assert.equal(r.status?.code, 403, image);
    }
    assert.equal(updated('busybox:1.37').allowed, true);
  });
});

describe('/validate-pod-updates: a Windows pod (spec.os.name windows)', () => {
  const windows = (containers: Container[], labels: Record<string, string>): Pod => {
    const p = pod(containers, labels);
    return { ...p, spec: { ...p.spec, os: { name: 'windows' } } };
  };

  it('changes a container image in place without a binding judging it: it carries no profile, and none may be given to it', () => {
    const stored = created(windows([{ name: 'app', image: 'mcr.microsoft.com/windows/servercore:ltsc2022' }], { tier: 'dev' }));
    assert.equal(stored.spec!.containers![0]!.securityContext, undefined, 'created untouched');
    // A Linux pod carrying no profile is refused each of these (the tests above).
    for (const image of ['registry.example.com/app/x:1', `sha256:${'e'.repeat(64)}`]) {
      const r = update(stored, withImage(stored, image));
      assert.equal(r.allowed, true, `${image}: ${r.status?.message}`);
    }
    const crowded = new StaticBindingSource(Array.from({ length: MAX_NAMESPACE_BINDINGS + 1 }, (_, i) => binding(`b${i}`, { containers: [`c${i}`] })));
    assert.equal(reviewPodUpdate(reviewOf('UPDATE', withImage(stored, 'busybox:1.37'), stored), crowded).response.allowed, true, 'nothing is matched, so no limit applies');
    const unsynced = { list: () => [], synced: () => false };
    assert.equal(reviewPodUpdate(reviewOf('UPDATE', withImage(stored, 'busybox:1.37'), stored), unsynced).response.allowed, true, 'nor does it wait for the binding cache');
    const linux = pod([{ name: 'app', image: 'busybox:1.36' }], { tier: 'dev' });
    assert.equal(update(linux, withImage(linux, 'registry.example.com/app/x:1')).allowed, false, 'a Linux pod without its profile: refused, as before');
  });

  it('still may not gain a recording or profile annotation', () => {
    const stored = windows([{ name: 'app', image: 'mcr.microsoft.com/windows/servercore:ltsc2022' }], {});
    const annotated = { ...stored, metadata: { ...stored.metadata, annotations: { 'seccomp.profiles.spoke.dev/app': REF_STRICT } } };
    assert.equal(update(stored, annotated).allowed, false);
  });
});

describe('/validate-pod-updates: Bindings', () => {
  const bindingReview = (resource: 'pods' | 'bindings', annotations: Record<string, string>) => ({
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: {
      uid: 'u2',
      kind: { group: '', version: 'v1', kind: 'Binding' },
      resource: { group: '', version: 'v1', resource },
      ...(resource === 'pods' ? { subResource: 'binding' } : {}),
      namespace: 'team',
      operation: 'CREATE',
      object: { apiVersion: 'v1', kind: 'Binding', metadata: { name: 'p', namespace: 'team', annotations }, target: { kind: 'Node', name: 'n1' } },
    },
  });

  it("a Binding that would add spoke's annotations to the pod it binds is refused, by either resource; one without them passes", () => {
    for (const resource of ['pods', 'bindings'] as const) {
      for (const key of ['recording.spoke.dev/proof', 'recording.spoke.dev/name', 'seccomp.profiles.spoke.dev/app', 'apparmor.profiles.spoke.dev/pod']) {
        const r = reviewPodUpdate(bindingReview(resource, { [key]: 'x' }), source).response;
        assert.equal(r.allowed, false, `${resource} ${key}`);
        assert.match(r.status?.message ?? '', new RegExp(key.replace(/\./g, '\\.')));
      }
      assert.equal(reviewPodUpdate(bindingReview(resource, { 'example.com/other': 'x' }), source).response.allowed, true);
      assert.equal(reviewPodUpdate(bindingReview(resource, {}), source).response.allowed, true);
    }
  });
});
