// The ProfileRecordingResult webhook (/validate-results): a result is created only by the node
// recorders' ServiceAccount, for the node its token is bound to. The node-name claim alone is not
// enough: the authenticator or an impersonation grant can give it to any identity.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { NODE_NAME_EXTRA, RECORDER_SERVICE_ACCOUNT, reviewResult, serviceAccountUser } from '../../../src/controller/admission.js';
import { docs } from '../deploy/manifests.js';

const RECORDER = 'system:serviceaccount:spoke-system:spoke-recorder';

function resultReview(username: unknown, nodes: string[] | undefined, node = 'node-1') {
  return {
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: {
      uid: 'u-1',
      kind: { group: 'spoke.dev', version: 'v1alpha1', kind: 'ProfileRecordingResult' },
      resource: { group: 'spoke.dev', version: 'v1alpha1', resource: 'profilerecordingresults' },
      namespace: 'team',
      operation: 'CREATE',
      userInfo: { ...(username === undefined ? {} : { username }), ...(nodes ? { extra: { [NODE_NAME_EXTRA]: nodes } } : {}) },
      object: { apiVersion: 'spoke.dev/v1alpha1', kind: 'ProfileRecordingResult', metadata: { name: 'r', namespace: 'team' }, spec: { recording: 'rec', pod: 'p', container: 'app', runtime: 'runc', node, syscalls: ['read'] } },
    },
  };
}

const verdict = (body: unknown, expected = RECORDER) => {
  const r = reviewResult(body, expected).response;
  return [r.allowed, r.status?.code];
};

describe('/validate-results: who creates a result', () => {
  it("admits the recorders' ServiceAccount with a token bound to spec.node", () => {
    assert.deepEqual(verdict(resultReview(RECORDER, ['node-1'])), [true, undefined]);
  });

  it('refuses (403) another identity, even with the node-name claim for spec.node', () => {
    for (const user of ['system:serviceaccount:team:builder', 'system:node:node-1', 'admin', `${RECORDER}x`, '', 42, undefined]) {
      assert.deepEqual(verdict(resultReview(user, ['node-1'])), [false, 403], String(user));
    }
  });

  it('names the expected and the actual user, the actual one bounded', () => {
    const long = `system:serviceaccount:team:${'a'.repeat(100_000)}`;
    const message = reviewResult(resultReview(long, ['node-1']), RECORDER).response.status?.message ?? '';
    assert.ok(message.includes(RECORDER) && message.includes('system:serviceaccount:team:aaa'));
    assert.ok(message.length < 1000, `${message.length} characters`);
  });

  it('judges against the ServiceAccount it is given', () => {
    const other = 'system:serviceaccount:recording:node-recorder';
    assert.deepEqual(verdict(resultReview(other, ['node-1']), other), [true, undefined]);
    assert.deepEqual(verdict(resultReview(RECORDER, ['node-1']), other), [false, 403]);
  });

  it("still binds spec.node to the token's node for the recorders' ServiceAccount", () => {
    assert.deepEqual(verdict(resultReview(RECORDER, ['node-2'])), [false, 403]);
    assert.deepEqual(verdict(resultReview(RECORDER, undefined)), [false, 403]);
  });

  it('leaves other operations and kinds alone', () => {
    const review = resultReview('admin', ['node-1']);
    assert.deepEqual(verdict({ ...review, request: { ...review.request, operation: 'DELETE' } }), [true, undefined]);
  });
});

describe('the default recorder ServiceAccount', () => {
  it('is the one deploy/controller/rbac.yaml binds to the ClusterRole that creates results', () => {
    assert.equal(serviceAccountUser(RECORDER_SERVICE_ACCOUNT), RECORDER);
    type Rbac = { kind?: string; metadata?: { name?: string }; rules?: { resources?: string[]; verbs?: string[] }[]; roleRef?: { kind?: string; name?: string }; subjects?: { kind?: string; name?: string; namespace?: string }[] };
    const all = docs('deploy/controller/rbac.yaml') as Rbac[];
    const creators = all.filter((d) => d.kind === 'ClusterRole' && d.rules?.some((r) => r.resources?.includes('profilerecordingresults') && r.verbs?.includes('create')));
    const subjects = all
      .filter((d) => d.kind === 'ClusterRoleBinding' && creators.some((c) => c.metadata?.name === d.roleRef?.name))
      .flatMap((b) => b.subjects ?? [])
      .map((s) => `${s.kind}/${s.namespace}:${s.name}`);
    assert.deepEqual(subjects, [`ServiceAccount/${RECORDER_SERVICE_ACCOUNT}`]);
  });
});
