// The recorder daemon (spoke recorder, src/cli/commands/recorder.ts) retries a report that
// failed: a poll that finds the API server leaving a report unanswered until its deadline tries
// no more reports (docs/recording.md, step 3).

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setup } from '../../helpers/recorder-daemon.js';

/** The errors of the failed reports the daemon logged. */
const failures = (logged: Record<string, unknown>[]) => logged.filter((e) => e.msg === 'report failed; will retry').map((e) => e.error);
/** How many reports each deferral line said were left to the next poll. */
const deferrals = (logged: Record<string, unknown>[]) => logged.filter((e) => e.msg === 'reports deferred to the next poll: the API server left one unanswered').map((e) => e.deferred);

/** A daemon that listed the runtime at its start, then polled with `ids` recorded, exited. */
async function exited({ cri, make }: ReturnType<typeof setup>, ids: string[]) {
  const daemon = make();
  await daemon.listExisting();
  for (const id of ids) cri.create(id, 'CONTAINER_EXITED');
  await daemon.tick();
  return daemon;
}

describe('recorder daemon: an API server that leaves a report unanswered', () => {
  it('once a report of a poll is left unanswered until its deadline, the poll tries no more (listed or removed): they stay kept with their calls, one line says how many, and the next poll makes them', async (t) => {
    const s = setup(t);
    const { cri, rep, logged, mono } = s;
    const daemon = await exited(s, ['c1', 'c2', 'c3']);
    cri.remove('c3');
    mono.ms += 1000;
    rep.unanswered = true;
    const recorded = await daemon.tick();
    assert.equal(rep.attempts, 1, 'one deadline waited for, not one for each report');
    assert.deepEqual(failures(logged), ['API request unanswered after 10000 ms: given up']);
    assert.deepEqual(deferrals(logged), [2]);
    assert.deepEqual([...recorded].sort(), ['c1', 'c2', 'c3'], 'their calls kept for them (CallSource.maintain)');
    rep.unanswered = false;
    mono.ms += 1000;
    await daemon.tick();
    assert.deepEqual(rep.reported.sort(), ['c1', 'c2', 'c3']);
    assert.deepEqual(deferrals(logged), [2], 'a poll that defers none says nothing');
  });

  it('a report the API server answered with an error does not stop the poll: each of the others is tried', async (t) => {
    const s = setup(t);
    const { rep, logged, mono } = s;
    const daemon = await exited(s, ['c1', 'c2', 'c3']);
    mono.ms += 1000;
    rep.failing = true;
    rep.failCode = 503;
    await daemon.tick();
    assert.equal(rep.attempts, 3);
    assert.deepEqual(failures(logged), ['HTTP-Code: 503', 'HTTP-Code: 503', 'HTTP-Code: 503']);
    assert.deepEqual(deferrals(logged), []);
  });
});
