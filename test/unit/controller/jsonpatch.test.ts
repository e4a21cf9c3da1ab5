import assert from 'node:assert/strict';
import { test } from 'node:test';
import { applyJsonPatch } from '../../../src/controller/jsonpatch.js';
import { spokeError } from '../../helpers/assert.js';

test('a patch applies to a copy; one that does not apply is spoke’s bug (Internal, INVARIANT)', () => {
  const pod = { spec: { containers: [{ name: 'app' }] } };
  assert.deepEqual(applyJsonPatch(pod, [{ op: 'add', path: '/spec/containers/0/securityContext', value: { runAsNonRoot: true } }]), {
    spec: { containers: [{ name: 'app', securityContext: { runAsNonRoot: true } }] },
  });
  assert.deepEqual(pod, { spec: { containers: [{ name: 'app' }] } });
  assert.throws(() => applyJsonPatch(pod, [{ op: 'replace', path: '/spec/volumes', value: [] }]), spokeError({ code: 'Internal', reason: 'INVARIANT' }));
  assert.throws(() => applyJsonPatch(pod, [{ op: 'test', path: '/spec/containers/0/name', value: 'web' }]), spokeError({ code: 'Internal', reason: 'INVARIANT' }));
});
