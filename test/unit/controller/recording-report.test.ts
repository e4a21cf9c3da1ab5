// The node recorder's report (src/controller/recording-kube.ts KubeResultReporter.report): a
// result of the report's name that exists already (409) is taken as made only when a read of it
// shows it is this report's, its node's for its container and recording, owned by this very
// recording; any other is a RESULT_CONFLICT, and a read that fails is a failure, never success
// (docs/recording.md, step 3). No API server runs here: the fake is client-node's
// CustomObjectsApi, answering as it does (ApiException with the HTTP status).

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ApiException, KubeConfig } from '@kubernetes/client-node';
import { RecorderDaemon } from '../../../src/cli/commands/recorder-daemon.js';
import { KubeResultReporter, type ResultReporterApi } from '../../../src/controller/recording-kube.js';
import { childName, type ProfileRecording, type ProfileRecordingResult } from '../../../src/controller/recording.js';
import { rejectsWith } from '../../helpers/assert.js';
import { calls, FakeRuntime } from '../../helpers/recorder-daemon.js';

type Obj = { metadata: { name: string; namespace: string; uid?: string; ownerReferences?: unknown[] }; spec?: object };

/** client-node's CustomObjectsApi for the reporter's two calls, over objects keyed `plural/namespace/name`. */
function fakeApi() {
  const objects = new Map<string, Obj>();
  const key = (plural: string, ns: string, name: string) => `${plural}/${ns}/${name}`;
  const fake = {
    objects,
    /** The next reads of a result answer this HTTP status. */
    failResultGet: undefined as number | undefined,
    gets: [] as string[],
    getNamespacedCustomObject: async (p: { plural: string; namespace: string; name: string }) => {
      fake.gets.push(key(p.plural, p.namespace, p.name));
      if (p.plural === 'profilerecordingresults' && fake.failResultGet !== undefined) throw new ApiException(fake.failResultGet, 'refused', {}, {});
      const o = objects.get(key(p.plural, p.namespace, p.name));
      if (!o) throw new ApiException(404, 'not found', {}, {});
      return structuredClone(o);
    },
    createNamespacedCustomObject: async (p: { plural: string; namespace: string; body: Obj }) => {
      const k = key(p.plural, p.namespace, p.body.metadata.name);
      if (objects.has(k)) throw new ApiException(409, 'already exists', {}, {});
      const stored = { ...structuredClone(p.body), metadata: { ...structuredClone(p.body.metadata), uid: `uid-${objects.size}` } };
      objects.set(k, stored);
      return structuredClone(stored);
    },
  };
  return fake;
}

const REC: ProfileRecording = { metadata: { name: 'rec', namespace: 'team', uid: 'rec-uid' }, spec: { podSelector: { matchLabels: { app: 'x' } }, publish: { repository: 'r.io/p' } } };
const NAME = childName('rec', 'c1');

/** This node's result for container app (c1) of pod-sb1, as the daemon builds it. */
function result(spec: Partial<ProfileRecordingResult['spec']> = {}): ProfileRecordingResult {
  return {
    metadata: { name: NAME, labels: { 'recording.spoke.dev/name': 'rec' } },
    spec: { recording: 'rec', pod: 'pod-sb1', container: 'app', containerID: 'c1', runtime: 'runc', node: 'n1', syscalls: ['read'], ...spec },
  };
}

/** Stores `r` as made by `r.spec.node`'s recorder for a recording of uid `ownerUid`. */
function stored(api: ReturnType<typeof fakeApi>, r: ProfileRecordingResult, ownerUid = 'rec-uid'): void {
  api.objects.set(`profilerecordingresults/team/${r.metadata.name}`, {
    metadata: { name: r.metadata.name as string, namespace: 'team', uid: 'other', ownerReferences: [{ apiVersion: 'spoke.dev/v1alpha1', kind: 'ProfileRecording', name: 'rec', uid: ownerUid }] },
    spec: { ...r.spec },
  });
}

const reporterOver = (api: ResultReporterApi) => new KubeResultReporter(new KubeConfig(), 1000, api);

describe('KubeResultReporter.report: a result of its name exists (409)', () => {
  it('this very result (a report made whose answer was lost) is taken as made, read first', async () => {
    const api = fakeApi();
    stored(api, result());
    assert.equal(await reporterOver(api).report(REC, result({ syscalls: ['read', 'write'] })), 'exists');
    assert.deepEqual(api.gets, [`profilerecordingresults/team/${NAME}`]);
  });

  it("another node's result of the name (any node may create any name) is a RESULT_CONFLICT, not taken as this node's", async () => {
    const api = fakeApi();
    stored(api, result({ node: 'n2' }));
    await rejectsWith(reporterOver(api).report(REC, result()), { code: 'FailedPrecondition', reason: 'RESULT_CONFLICT' });
  });

  for (const [field, value] of [
    ['containerID', 'c1-other'],
    ['container', 'sidecar'],
    ['pod', 'pod-sb2'],
    ['recording', 'rec2'],
  ] as const) {
    it(`a result of the name for another ${field} is a RESULT_CONFLICT`, async () => {
      const api = fakeApi();
      stored(api, result({ [field]: value }));
      await rejectsWith(reporterOver(api).report(REC, result()), { code: 'FailedPrecondition', reason: 'RESULT_CONFLICT' });
    });
  }

  it('one owned by another recording of the name (deleted and made again: another uid), or by none, is a RESULT_CONFLICT', async () => {
    for (const owner of ['old-uid', undefined]) {
      const api = fakeApi();
      stored(api, result(), owner);
      if (owner === undefined) delete api.objects.get(`profilerecordingresults/team/${NAME}`)?.metadata.ownerReferences;
      await rejectsWith(reporterOver(api).report(REC, result()), { code: 'FailedPrecondition', reason: 'RESULT_CONFLICT' });
    }
  });

  it('a read that fails (403: RBAC without get; 404: deleted since) fails the report, never taken as made', async () => {
    for (const code of [403, 404]) {
      const api = fakeApi();
      stored(api, result());
      api.failResultGet = code;
      await assert.rejects(reporterOver(api).report(REC, result()), (e: unknown) => (e as { code?: unknown }).code === code);
    }
  });

  it('the recorder daemon logs the conflict as a failed report and retries; once the other object is gone its own result is made', async () => {
    const api = fakeApi();
    api.objects.set('profilerecordings/team/rec', { metadata: { name: 'rec', namespace: 'team', uid: 'rec-uid' }, spec: REC.spec });
    const cri = new FakeRuntime();
    const logged: Record<string, unknown>[] = [];
    const mono = { ms: 0 };
    const d = new RecorderDaemon({ cri, calls: calls(), reporter: reporterOver(api), node: 'n1', defaultRuntime: 'runc', log: (e) => logged.push(e), now: () => mono.ms });
    await d.listExisting();
    const id = 'c1'.padEnd(64, '0');
    const name = childName('rec', id.slice(0, 16));
    const nodeOf = (n: string) => (api.objects.get(`profilerecordingresults/team/${n}`)?.spec as { node?: string } | undefined)?.node;
    stored(api, { ...result({ node: 'n2', containerID: id }), metadata: { name } });
    cri.create(id, 'CONTAINER_EXITED');
    await d.tick();
    mono.ms += 1000;
    await d.tick();
    assert.deepEqual(logged.filter((e) => e.msg === 'reported'), [], 'not counted as reported');
    assert.equal(logged.filter((e) => e.msg === 'report failed; will retry').length, 1);
    assert.equal(nodeOf(name), 'n2');
    api.objects.delete(`profilerecordingresults/team/${name}`);
    mono.ms += 1000;
    await d.tick();
    assert.deepEqual(logged.filter((e) => e.msg === 'reported').map((e) => e.outcome), ['created']);
    assert.equal(nodeOf(name), 'n1');
  });
});
