// The recorder daemon (spoke recorder, src/cli/commands/recorder.ts) reports a recorded container
// the runtime removes before its report: from what the last poll saw of it, a second after a poll
// first saw it exited or, if none did, the first poll that lists the runtime whole without it
// (docs/recording.md, step 3). A recording never silently lacks a container's
// calls: a report given up (still failing 5 minutes after the removal) is logged as an error
// naming it.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setup } from '../../helpers/recorder-daemon.js';

/** The `incomplete` reasons the daemon logged with its reports. */
const reasons = (logged: Record<string, unknown>[]) => logged.filter((e) => e.msg === 'reported').map((e) => e.incomplete);

/** A daemon that listed the runtime at its start, then polled once with c1 recorded (in `state`). */
const polledWith = (s: ReturnType<typeof setup>, state?: string) => s.polledWith(['c1'], state);

/**
 * c1 recorded running, then removed, its reports failing (`failCode`, else the fake's default),
 * and tried once, its wait over: the daemon, one failed attempt made.
 */
async function removedFailing(s: ReturnType<typeof setup>, failCode?: number) {
  const { cri, rep, mono } = s;
  const daemon = await polledWith(s);
  cri.remove('c1');
  rep.failing = true;
  if (failCode !== undefined) rep.failCode = failCode;
  await daemon.tick();
  mono.ms += 1000;
  await daemon.tick();
  return daemon;
}

describe('recorder daemon: containers removed before their report', () => {
  it('a container seen running, gone at a complete poll, waits a second from that poll (its exit was no later), then is reported once, whole, with the calls recorded for it', async (t) => {
    const s = setup(t);
    const { cri, rep, logged, mono } = s;
    const daemon = await polledWith(s);
    mono.ms += 200;
    cri.remove('c1');
    await daemon.tick();
    mono.ms += 500;
    assert.ok((await daemon.tick()).has('c1'), 'still waiting, its calls kept for it (CallSource.maintain)');
    assert.deepEqual(rep.reported, []);
    mono.ms += 600;
    await daemon.tick();
    assert.deepEqual(rep.reported, ['c1']);
    assert.deepEqual(rep.lost, [0], 'the kernel\'s last records of it have come: the recording is not failed for its removal');
    assert.deepEqual(reasons(logged), [undefined]);
    const spec = rep.results[0]!.spec;
    assert.deepEqual([spec.pod, spec.container, spec.image, spec.syscalls], ['pod-sb1', 'app', 'r.io/app:1', ['read']]);
    assert.ok(!(await daemon.tick()).has('c1'));
    assert.deepEqual(rep.reported, ['c1'], 'not twice');
  });

  it('a container seen exited and removed within its wait is reported whole a second after a poll first saw it exited', async (t) => {
    const s = setup(t);
    const { cri, rep, mono } = s;
    const daemon = await polledWith(s, 'CONTAINER_EXITED');
    mono.ms += 300;
    cri.remove('c1');
    await daemon.tick();
    mono.ms += 699;
    await daemon.tick();
    assert.deepEqual(rep.reported, []);
    mono.ms += 1;
    await daemon.tick();
    assert.deepEqual(rep.reported, ['c1']);
    assert.deepEqual(rep.lost, [0]);
  });

  it('a container seen exited, gone at the next poll a minute later (--poll-ms 60000), is reported whole: its wait for the kernel\'s last records was over, the source kept its calls for it', async (t) => {
    const s = setup(t);
    const { cri, rep, logged, mono } = s;
    const daemon = await polledWith(s, 'CONTAINER_EXITED');
    mono.ms += 60_000;
    cri.remove('c1');
    await daemon.tick();
    assert.deepEqual(rep.reported, ['c1']);
    assert.deepEqual(rep.lost, [0], 'removed before a poll saw its wait end does not fail the recording');
    assert.deepEqual(reasons(logged), [undefined]);
  });

  it('a container no poll saw running or exited (only created), then gone at a complete poll, is reported after its wait as incomplete: with eBPF its calls cannot be told apart from its pod\'s other containers\'; one seen running is still whole', async (t) => {
    const { cri, rep, logged, make, mono } = setup(t);
    const daemon = make();
    await daemon.listExisting();
    cri.create('c1', 'CONTAINER_CREATED');
    cri.create('c2');
    await daemon.tick();
    cri.remove('c1');
    cri.remove('c2');
    await daemon.tick();
    mono.ms += 1000;
    await daemon.tick();
    assert.deepEqual(rep.reported, ['c1', 'c2']);
    assert.ok(rep.lost[0]! >= 1, 'c1 fails the recording: its report may carry another container\'s calls');
    assert.deepEqual(rep.lost[1], 0);
    assert.deepEqual(reasons(logged), ["no poll saw it run: its calls cannot be told apart from its pod's other containers'", undefined]);
  });

  it('its pod removed with it: reported from what the last poll saw, without asking the runtime about it', async (t) => {
    const { cri, rep, make, polls } = setup(t);
    const daemon = make();
    await daemon.listExisting();
    // Listed by digest only: a listed container's image is asked of ContainerStatus, which a removed one has none of.
    cri.create('c1').image = { image: 'sha256:0123', user_specified_image: '' };
    await daemon.tick();
    cri.removePod('sb1');
    await polls(daemon);
    assert.deepEqual(rep.reported, ['c1']);
    assert.deepEqual([rep.results[0]!.spec.pod, rep.results[0]!.spec.image, rep.results[0]!.spec.runtime], ['pod-sb1', undefined, 'runc']);
    assert.equal(cri.statusCalls, 0);
  });

  it('a container reported before it is removed is not reported again', async (t) => {
    const { cri, rep, make, polls } = setup(t);
    const daemon = make();
    await daemon.listExisting();
    cri.create('c1', 'CONTAINER_EXITED');
    await polls(daemon);
    cri.remove('c1');
    await daemon.tick();
    assert.deepEqual(rep.reported, ['c1']);
    assert.deepEqual(rep.lost, [0]);
  });
});

describe('recorder daemon: a report that fails, for a container then removed', () => {
  it('one whose exit had settled is retried until made, whole: the source keeps its calls for it meanwhile', async (t) => {
    const s = setup(t);
    const { cri, rep, logged, mono } = s;
    const daemon = await polledWith(s, 'CONTAINER_EXITED');
    mono.ms += 1000;
    rep.failing = true;
    await daemon.tick();
    cri.remove('c1');
    const recorded = await daemon.tick();
    assert.ok(recorded.has('c1'), 'passed to CallSource.maintain: its calls are not dropped');
    assert.equal(logged.filter((e) => e.msg === 'report failed; will retry').length, 2);
    rep.failing = false;
    await daemon.tick();
    assert.deepEqual(rep.reported, ['c1']);
    assert.deepEqual(rep.lost, [0], 'the report that failed, made: its wait for the last records was over while it was listed');
    assert.ok(!(await daemon.tick()).has('c1'));
    assert.deepEqual(rep.reported, ['c1'], 'not twice');
  });

  it('one gone before it was seen exited is first tried once its wait is over, and retried at the next poll, whole', async (t) => {
    const s = setup(t);
    const { cri, rep, logged, mono } = s;
    const daemon = await polledWith(s);
    cri.remove('c1');
    rep.failing = true;
    await daemon.tick();
    assert.equal(rep.attempts, 0, 'within its wait');
    mono.ms += 1000;
    await daemon.tick();
    assert.equal(rep.attempts, 1);
    assert.equal(logged.filter((e) => e.msg === 'report failed; will retry').length, 1);
    rep.failing = false;
    await daemon.tick();
    assert.deepEqual(rep.reported, ['c1']);
    assert.deepEqual(rep.lost, [0]);
  });
});

describe('recorder daemon: a report that keeps failing', () => {
  /** How long the report of a removed container is retried: 5 minutes (docs/recording.md, step 3). */
  const RETRY_MS = 300_000;
  /** The error lines of reports given up. */
  const givenUp = (logged: Record<string, unknown>[]) => logged.filter((e) => e.level === 'error' && e.msg === "report given up: the recording's profile will lack the container's calls");

  it(`a removed container's report still failing ${RETRY_MS / 60_000} min after a poll first found it gone is given up: one error line, no more attempts, nothing kept for it`, async (t) => {
    const s = setup(t);
    const { src, rep, logged, mono } = s;
    // 403: a ResourceQuota exceeded, or RBAC or a webhook denying it, each of which may be undone meanwhile.
    const daemon = await removedFailing(s, 403);
    mono.ms += RETRY_MS - 1001;
    assert.ok((await daemon.tick()).has('c1'), 'retried, its calls kept for it');
    assert.equal(rep.attempts, 2);
    mono.ms += 1;
    const recorded = await daemon.tick();
    assert.equal(rep.attempts, 3);
    assert.ok(!recorded.has('c1'), 'no longer kept (its slot free) nor passed to CallSource.maintain');
    assert.ok(src.forgotten.has('c1'), 'the source drops its calls');
    assert.deepEqual(
      givenUp(logged).map((e) => [e.recording, e.namespace, e.pod, e.container, e.containerID, e.why, e.error]),
      [['rec', 'team', 'pod-sb1', 'app', 'c1', `a poll found it removed from the runtime ${RETRY_MS / 1000} s ago, and its report has failed since`, 'HTTP-Code: 403']],
    );
    await daemon.tick();
    mono.ms += RETRY_MS;
    await daemon.tick();
    assert.equal(rep.attempts, 3, 'no more attempts');
    assert.equal(givenUp(logged).length, 1);
    assert.equal(logged.filter((e) => e.msg === 'report failed; will retry').length, 2, 'the last failure is told once, by the line that gives it up');
    assert.deepEqual(rep.reported, []);
  });

  it('an attempt made before that bound that fails after it (tried at 295 s, left unanswered until 305 s) gives the report up then, as the next poll would: no retry said due -5000 ms from now', async (t) => {
    const s = setup(t);
    const { src, rep, logged, mono } = s;
    const daemon = await removedFailing(s);
    const report = rep.report;
    // The API server leaves it unanswered until its 10 s deadline.
    rep.report = async (rec, result) => {
      mono.ms += 10_000;
      return report(rec, result);
    };
    rep.failFor.set('c1', 'unanswered');
    mono.ms = 295_000;
    await daemon.tick();
    assert.deepEqual(
      givenUp(logged).map((e) => [e.containerID, e.why]),
      [['c1', 'a poll found it removed from the runtime 305 s ago, and its report has failed since']],
    );
    assert.deepEqual(
      logged.filter((e) => e.msg === 'report failed; will retry').map((e) => e.retryAfterMs),
      [0],
      'only the first attempt, at 1 s',
    );
    assert.ok(src.forgotten.has('c1'));
  });

  it('a removed container whose report succeeds at a retry within that bound is reported', async (t) => {
    const s = setup(t);
    const { rep, logged, mono } = s;
    const daemon = await removedFailing(s);
    mono.ms += RETRY_MS - 1001;
    rep.failing = false;
    await daemon.tick();
    assert.deepEqual(rep.reported, ['c1']);
    assert.deepEqual(givenUp(logged), []);
  });

  it('a report refused with 422 (a ValidatingAdmissionPolicy or webhook an admin can fix) is retried like any other failure: while listed, and for a removed container within its bound', async (t) => {
    const s = setup(t);
    const { cri, rep, logged, mono } = s;
    const daemon = await s.polledWith(['c1', 'c2'], 'CONTAINER_EXITED');
    mono.ms += 1000;
    cri.remove('c2');
    rep.failing = true;
    rep.failCode = 422;
    await daemon.tick();
    assert.equal(rep.attempts, 2);
    assert.deepEqual(givenUp(logged), []);
    mono.ms += RETRY_MS - 1;
    const recorded = await daemon.tick();
    assert.equal(rep.attempts, 4, 'both retried at the next poll');
    assert.ok(recorded.has('c1') && recorded.has('c2'), 'their calls kept for them');
    mono.ms += 1;
    await daemon.tick();
    assert.deepEqual(
      givenUp(logged).map((e) => [e.containerID, e.error]),
      [['c2', 'HTTP-Code: 422']],
      'the removed one given up at its bound; the listed one still retried',
    );
    rep.failing = false;
    await daemon.tick();
    assert.deepEqual(rep.reported, [], 'the listed one waits before its retry as long as it had been failing');
    mono.ms += RETRY_MS;
    await daemon.tick();
    assert.deepEqual(rep.reported, ['c1']);
  });
});

describe('recorder daemon: only a complete poll says a container was removed', () => {
  it('a poll that fails, or stops part-way, reports none of the containers it did not list; the next complete one starts the wait of the one removed', async (t) => {
    const { cri, rep, make, mono } = setup(t);
    cri.addPod('sb2');
    const daemon = make();
    await daemon.listExisting();
    cri.create('c1');
    cri.create('c2', 'CONTAINER_RUNNING', Date.now(), 'sb2');
    await daemon.tick();
    cri.remove('c1');
    cri.failPodOf = 'sb2';
    await assert.rejects(daemon.tick(), /deadline exceeded/);
    cri.failPodOf = undefined;
    cri.failPods = true;
    await assert.rejects(daemon.tick(), /unavailable/);
    assert.deepEqual(rep.reported, []);
    cri.failPods = false;
    await daemon.tick();
    mono.ms += 999;
    await daemon.tick();
    assert.deepEqual(rep.reported, [], 'its wait counts from the complete poll, not the ones that failed');
    mono.ms += 1;
    await daemon.tick();
    assert.deepEqual(rep.reported, ['c1'], 'c2, still listed, is not');
  });
});

describe('recorder daemon: containers removed, and the recorder start', () => {
  it('a container that existed at the start is not reported when removed (its start-up calls were missed)', async (t) => {
    const { cri, rep, make } = setup(t);
    cri.create('c0');
    const daemon = make();
    await daemon.listExisting();
    await daemon.tick();
    cri.remove('c0');
    await daemon.tick();
    assert.deepEqual(rep.reported, []);
  });

  it('after a listing at the start that failed, a container seen exited and gone a minute later is reported incomplete for that reason alone', async (t) => {
    const { cri, rep, logged, make, mono } = setup(t);
    cri.failListAll = true;
    const daemon = make();
    await assert.rejects(daemon.listExisting());
    cri.failListAll = false;
    cri.create('c1', 'CONTAINER_EXITED');
    await daemon.tick();
    mono.ms += 60_000;
    cri.remove('c1');
    await daemon.tick();
    assert.deepEqual(rep.lost, [1]);
    assert.deepEqual(reasons(logged), ['the runtime could not be listed when the recorder started: the container may have run before it, its first calls missing']);
  });

  it('after a listing at the start that failed, a container removed while it ran is reported, after its wait, incomplete for that reason', async (t) => {
    const { cri, rep, logged, make, polls } = setup(t);
    cri.failListAll = true;
    const daemon = make();
    await assert.rejects(daemon.listExisting());
    cri.failListAll = false;
    cri.create('c1');
    await daemon.tick();
    cri.remove('c1');
    await polls(daemon);
    assert.deepEqual(rep.reported, ['c1']);
    assert.deepEqual(rep.lost, [1]);
    assert.deepEqual(reasons(logged), ['the runtime could not be listed when the recorder started: the container may have run before it, its first calls missing']);
  });
});
