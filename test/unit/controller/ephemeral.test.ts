// Ephemeral containers (`kubectl debug`, the pods/ephemeralcontainers subresource): the pod
// webhook binds a container added to a running pod as it binds the others at creation, touching
// only the containers the request adds; where it cannot bind one (annotation mode, whose
// annotations a running pod cannot gain), the request is denied rather than the container left
// looser than its bindings say.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { matchOfStoredPod, reviewPod } from '../../../src/controller/admission.js';
import { MAX_POD_CONTAINERS } from '../../../src/controller/binding.js';
import { NAMESPACE_OPT_IN_LABEL, NAMESPACE_OPT_IN_VALUE } from '../../../src/controller/types.js';
import { StaticBindingSource } from '../../../src/controller/source.js';
import type { Container, Pod, ProfileBinding } from '../../../src/controller/types.js';

const REF_A = `registry.example.com/profiles/a@sha256:${'a'.repeat(64)}`;
const REF_B = `registry.example.com/profiles/b@sha256:${'b'.repeat(64)}`;

function binding(name: string, spec: Partial<ProfileBinding['spec']> = {}): ProfileBinding {
  return { apiVersion: 'spoke.dev/v1alpha1', kind: 'ProfileBinding', metadata: { name, namespace: 'team' }, spec: { kind: 'seccomp', reference: REF_A, image: '*', ...spec } };
}

const bound = (ref = REF_A): Container['securityContext'] => ({ seccompProfile: { type: 'OCI', oci: { reference: ref } } });

function pod(containers: Container[], ephemeral: Container[]): Pod {
  return { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p', namespace: 'team', labels: { app: 'web' } }, spec: { containers, ...(ephemeral.length > 0 ? { ephemeralContainers: ephemeral } : {}) } };
}

/** The review the API server sends when `added` ephemeral containers join `before`'s. */
function review(containers: Container[], before: Container[], added: Container[], operation = 'UPDATE') {
  return {
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: {
      uid: 'u1',
      kind: { group: '', version: 'v1', kind: 'Pod' },
      resource: { group: '', version: 'v1', resource: 'pods' },
      subResource: 'ephemeralcontainers',
      namespace: 'team',
      operation,
      object: pod(containers, [...before, ...added]),
      oldObject: pod(containers, before),
    },
  };
}

function answer(body: unknown, bindings: ProfileBinding[], mode: 'field' | 'annotations' = 'field') {
  const r = reviewPod(body, new StaticBindingSource(bindings), { mode }).response;
  return { ...r, ops: r.patch === undefined ? [] : (JSON.parse(Buffer.from(r.patch, 'base64').toString()) as unknown[]) };
}

const app: Container = { name: 'web', image: 'nginx:1', securityContext: bound() };
const debug: Container = { name: 'debugger-abcde', image: 'busybox:1.36' };

describe('pod webhook: ephemeral containers', () => {
  it('an update that adds ephemeral containers past MAX_POD_CONTAINERS in all is denied; one that adds none is allowed, and a stored pod that gathered many keeps its binding status', () => {
    const many = (n: number, prefix: string) => Array.from({ length: n }, (_, i): Container => ({ name: `${prefix}${i}`, image: 'busybox:1.36' }));
    const old = many(300, 'old');
    const adding = answer(review([app], old, [debug]), [binding('all')]);
    assert.equal(adding.allowed, false);
    assert.match(adding.status?.message ?? '', new RegExp(`${MAX_POD_CONTAINERS} containers|302 containers`));
    assert.equal(answer(review([app], old, []), [binding('all')]).allowed, true, 'adds nothing');
    const opted = { namespaces: { synced: () => true, labels: () => ({ [NAMESPACE_OPT_IN_LABEL]: NAMESPACE_OPT_IN_VALUE }) } };
    const match = matchOfStoredPod(pod([app], old), new StaticBindingSource([binding('all')]), opted as never);
    assert.deepEqual(match?.applied.map((a) => a.container), ['web']);
  });


  it('a debug container gets the profile its bindings give it, as a container created with the pod would', () => {
    const r = answer(review([app], [], [debug]), [binding('all')]);
    assert.equal(r.allowed, true);
    assert.deepEqual(r.ops, [{ op: 'add', path: '/spec/ephemeralContainers/0/securityContext', value: { seccompProfile: { type: 'OCI', oci: { reference: REF_A } } } }]);
  });

  it('only the containers the request adds are patched: the others cannot change, bound or not', () => {
    const unboundApp: Container = { name: 'web', image: 'nginx:1' };
    const earlier: Container = { name: 'debugger-old', image: 'busybox:1.36' };
    const r = answer(review([unboundApp], [earlier], [debug]), [binding('all')]);
    assert.equal(r.allowed, true);
    assert.deepEqual(r.ops, [{ op: 'add', path: '/spec/ephemeralContainers/1/securityContext', value: { seccompProfile: { type: 'OCI', oci: { reference: REF_A } } } }]);
  });

  it('annotation mode cannot bind a container added to a running pod: denied, naming the binding', () => {
    const r = answer(review([app], [], [debug]), [binding('all')], 'annotations');
    assert.equal(r.allowed, false);
    assert.match(r.status?.message ?? '', /ephemeral container "debugger-abcde".*ProfileBinding team\/all.*annotation/);
  });

  it("annotation mode: a debug container named by an annotation the pod was created with keeps it, even one a binding that no longer wins gives (rule 6 is for a profile this admission wrote)", () => {
    const body = review([app], [], [{ ...debug, securityContext: { seccompProfile: { type: 'RuntimeDefault' } } }]);
    for (const p of [body.request.object, body.request.oldObject]) p.metadata!.annotations = { 'seccomp.profiles.spoke.dev/debugger-abcde': REF_B };
    const r = answer(body, [binding('wide', { reference: REF_B }), binding('busybox', { image: 'busybox' })], 'annotations');
    assert.equal(r.allowed, true, r.status?.message);
    assert.deepEqual(r.ops, []);
    assert.ok(r.warnings?.some((w) => /ephemeral container "debugger-abcde" keeps its seccomp profile OCI/.test(w)), JSON.stringify(r.warnings));
  });

  it('bindings that do not select it leave it alone; an explicit profile is kept with a warning', () => {
    const byName = answer(review([app], [], [debug]), [binding('web-only', { containers: ['web'] }), binding('nginx', { image: 'nginx' })]);
    assert.deepEqual([byName.allowed, byName.ops], [true, []]);
    const own: Container = { ...debug, securityContext: { seccompProfile: { type: 'Localhost', localhostProfile: 'debug.json' } } };
    const kept = answer(review([app], [], [own]), [binding('all')]);
    assert.deepEqual([kept.allowed, kept.ops], [true, []]);
    assert.ok(kept.warnings?.some((w) => /ephemeral container "debugger-abcde" keeps its seccomp profile Localhost/.test(w)), JSON.stringify(kept.warnings));
    // Already carrying its binding's profile (a reinvocation): nothing to do.
    const again = answer(review([app], [], [{ ...debug, securityContext: bound() }]), [binding('all')]);
    assert.deepEqual([again.allowed, again.ops], [true, []]);
    // Another OCI profile than its binding's: kept, warned.
    const other = answer(review([app], [], [{ ...debug, securityContext: bound(REF_B) }]), [binding('all')]);
    assert.deepEqual([other.allowed, other.ops], [true, []]);
  });

  it('other subresources and operations are not reviewed here', () => {
    for (const body of [review([app], [], [debug], 'CREATE'), { ...review([app], [], [debug]), request: { ...review([app], [], [debug]).request, subResource: 'status' } }]) {
      assert.deepEqual(answer(body, [binding('all')]).ops, []);
      assert.equal(answer(body, [binding('all')]).allowed, true);
    }
  });

  // The API server keeps only spec.ephemeralContainers of this update (it drops every other change
  // after admission): what the request body claims about the pod is never stored, so it decides
  // nothing. The pod as stored (oldObject) does.
  it('labels, annotations or a pod-level profile changed in the request body do not change what binds the debug container', () => {
    const selected = binding('web', { podSelector: { matchLabels: { app: 'web' } }, override: true });
    const forged = (edit: (p: Pod) => void) => {
      const body = review([app], [], [debug]);
      edit(body.request.object);
      return answer(body, [selected]);
    };
    const patched = [{ op: 'add', path: '/spec/ephemeralContainers/0/securityContext', value: { seccompProfile: { type: 'OCI', oci: { reference: REF_A } } } }];
    assert.deepEqual(answer(review([app], [], [debug]), [selected]).ops, patched, 'the honest request');
    for (const [what, edit] of [
      ['labels removed', (p: Pod) => delete p.metadata!.labels],
      ['an annotation naming another profile', (p: Pod) => (p.metadata!.annotations = { 'seccomp.profiles.spoke.dev/debugger-abcde': REF_B })],
      ['a pod-level Localhost profile', (p: Pod) => (p.spec!.securityContext = { seccompProfile: { type: 'Localhost', localhostProfile: 'loose.json' } })],
    ] as const) {
      const r = forged(edit);
      assert.deepEqual([r.allowed, r.ops], [true, patched], what);
    }
  });

  it('an update without the stored pod (oldObject) is refused', () => {
    const body = review([app], [], [debug]) as { request: Record<string, unknown> };
    delete body.request.oldObject;
    assert.throws(() => reviewPod(body, new StaticBindingSource([binding('all')]), {}), /oldObject/);
  });
});
