// The recorder daemon's API calls (src/controller/recording-kube.ts KubeResultReporter) against
// the in-test API server, its runtime the unit tests' fake (test/helpers/recorder-daemon.ts):
// an API server that takes a report and never answers holds the poll no longer than the call's
// deadline, here 200 ms, whatever the number of reports to make (docs/recording.md, step 3).

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { RecorderDaemon } from '../../src/cli/commands/recorder-daemon.js';
import { KubeResultReporter } from '../../src/controller/recording-kube.js';
import { fakeKubeConfig, FakeApiServer, PROFILE_RECORDINGS, PROFILE_RECORDING_RESULTS } from '../helpers/fake-apiserver.js';
import { calls, FakeRuntime } from '../helpers/recorder-daemon.js';
import { within } from '../helpers/wait.js';

const DEADLINE_MS = 200;

describe('recorder daemon: an API server that never answers', () => {
  let fake: FakeApiServer;
  let url: string;
  before(async () => {
    fake = new FakeApiServer({ resources: [PROFILE_RECORDINGS, PROFILE_RECORDING_RESULTS], token: 'node-token' });
    url = await fake.listen();
    fake.create(PROFILE_RECORDINGS, { metadata: { name: 'rec', namespace: 'team' }, spec: { podSelector: { matchLabels: { app: 'x' } } } });
  });
  after(() => fake.close());

  /** The daemon, reporting through the real reporter to the fake API server, after its start listing. */
  async function listedDaemon() {
    const mono = { ms: 0 };
    const cri = new FakeRuntime();
    const logged: Record<string, unknown>[] = [];
    const reporter = new KubeResultReporter(fakeKubeConfig(url, 'node-token'), DEADLINE_MS);
    const d = new RecorderDaemon({ cri, calls: calls(), reporter, node: 'n1', defaultRuntime: 'runc', log: (e) => logged.push(e), now: () => mono.ms });
    await d.listExisting();
    return { mono, cri, logged, d };
  }

  it('a result create left unanswered fails the report at its deadline, the poll ends and logs the retry, and the next poll reports', async () => {
    const { mono, cri, logged, d } = await listedDaemon();
    cri.create('c1', 'CONTAINER_EXITED');
    await d.tick();
    mono.ms += 1000;
    try {
      fake.hang({ method: 'POST', match: '/profilerecordingresults', times: 1 });
      const hung = fake.nextHung();
      // Bounded well past the deadline: on a poll with no deadline this fails instead of hanging.
      await within(d.tick(), 5000, 'the poll whose report the API server does not answer');
      await within(hung.then((h) => h.closed), 5000, 'the unanswered create to be given up and its connection closed');
      assert.deepEqual(
        logged.filter((e) => e.msg === 'report failed; will retry').map((e) => e.error),
        [`API request unanswered after ${DEADLINE_MS} ms: given up`],
      );
      assert.equal(fake.list(PROFILE_RECORDING_RESULTS).length, 0);
    } finally {
      fake.unhang();
    }
    await within(d.tick(), 5000, 'the next poll');
    assert.deepEqual(
      fake.list(PROFILE_RECORDING_RESULTS).map((r) => (r.spec as { containerID?: string }).containerID),
      ['c1'],
    );
    assert.equal(logged.filter((e) => e.msg === 'reported').length, 1);
  });

  it('a poll with three reports to make, whose first create is left unanswered, sends no other: it ends after that one deadline, and the next poll makes all three', async () => {
    const { mono, cri, logged, d } = await listedDaemon();
    for (const id of ['d1', 'd2', 'd3']) cri.create(id, 'CONTAINER_EXITED');
    await d.tick();
    mono.ms += 1000;
    const hungBefore = fake.hung.length;
    try {
      fake.hang({ method: 'POST', match: '/profilerecordingresults', times: 3 });
      await within(d.tick(), 5000, 'the poll whose first report the API server does not answer');
      assert.equal(fake.hung.length - hungBefore, 1, 'the other two creates are not sent');
      assert.deepEqual(
        logged.filter((e) => e.msg === 'reports deferred to the next poll: the API server left one unanswered').map((e) => e.deferred),
        [2],
      );
    } finally {
      fake.unhang();
    }
    mono.ms += 1000;
    await within(d.tick(), 5000, 'the next poll');
    const made = fake.list(PROFILE_RECORDING_RESULTS).map((r) => (r.spec as { containerID?: string }).containerID);
    assert.deepEqual(made.filter((id) => id?.startsWith('d')).sort(), ['d1', 'd2', 'd3']);
  });
});
