// The recorder daemon (spoke recorder, src/cli/commands/recorder.ts) reads a recording again
// after 30 s, reports a container 1 s after it is first seen exited, and retries a failed report
// after a wait: how they are measured, and what it keeps for the recorded containers awaiting
// their report (src/recorder/recorded-containers.ts).

import assert from 'node:assert/strict';
import { describe, it, type TestContext } from 'node:test';
import { RecordingCache } from '../../../src/cli/commands/recorder-daemon.js';
import { MAX_RECORDED, RecordedContainers, REMOVED_RETRY_MS, RETRY_WAIT_MAX_MS } from '../../../src/recorder/recorded-containers.js';
import type { ProfileRecording } from '../../../src/controller/recording.js';

const DAY_MS = 86_400_000;

/** The wall clock mocked from 2025-06-02, and a monotonic clock the test moves. */
function clocks(t: TestContext) {
  t.mock.timers.enable({ apis: ['Date'], now: Date.parse('2025-06-02T00:00:00Z') });
  const c = {
    mono: 0,
    now: () => c.mono,
    step: (wall: number, mono: number) => {
      t.mock.timers.setTime(Date.now() + wall);
      c.mono += mono;
    },
  };
  return c;
}

/** A cache over an API server whose reads are counted. */
function cache(now: () => number) {
  let reads = 0;
  const c = new RecordingCache(async (namespace, name) => {
    reads++;
    return { metadata: { namespace, name } } as ProfileRecording;
  }, now);
  return { c, reads: () => reads };
}

describe('recorder daemon: the recording cache', () => {
  it('a wall clock stepped back a day does not keep a recording past its 30 s: it is read again', async (t) => {
    const clock = clocks(t);
    const { c, reads } = cache(clock.now);
    await c.get('team', 'rec');
    assert.equal(reads(), 1);
    clock.step(-DAY_MS, 30_000);
    await c.get('team', 'rec');
    assert.equal(reads(), 2, 'a recording changed or deleted meanwhile is seen');
  });

  it('a wall clock stepped forward a day does not drop a recording read a second ago', async (t) => {
    const clock = clocks(t);
    const { c, reads } = cache(clock.now);
    await c.get('team', 'rec');
    clock.step(DAY_MS, 1000);
    await c.get('team', 'rec');
    assert.equal(reads(), 1);
  });
});

/** What a poll lists of a recorded container `id` in pod sb1. */
function listed(id: string, state = 'CONTAINER_EXITED') {
  return [{ id: 'sb1', metadata: { name: 'pod', namespace: 'team' }, labels: { app: 'x' } }, { id, metadata: { name: 'app' }, state }, 'rec'] as const;
}

describe('recorder daemon: the wait after a container exits', () => {
  it('a wall clock stepped forward a day does not cut the wait: the kernel gets its second for the last records', (t) => {
    const clock = clocks(t);
    const kept = new RecordedContainers(clock.now);
    assert.equal(kept.see(...listed('c1')), 'waiting');
    clock.step(DAY_MS, 10);
    assert.equal(kept.see(...listed('c1')), 'waiting');
  });

  it('a wall clock stepped back a day does not hold the report back: a second after the exit it is made', (t) => {
    const clock = clocks(t);
    const kept = new RecordedContainers(clock.now);
    assert.equal(kept.see(...listed('c1')), 'waiting');
    clock.step(-DAY_MS, 1000);
    assert.equal(kept.see(...listed('c1')), 'settled');
  });

  it('the wait starts when a poll first sees the container exited, not when it first saw it', () => {
    let mono = 0;
    const kept = new RecordedContainers(() => mono);
    assert.equal(kept.see(...listed('c1', 'CONTAINER_RUNNING')), 'live');
    mono += 5000;
    assert.equal(kept.see(...listed('c1')), 'waiting');
    mono += 1000;
    assert.equal(kept.see(...listed('c1')), 'settled');
  });
});

describe('recorder daemon: the recorded containers awaiting their report', () => {
  it('a container a complete poll does not list is kept, with what the last poll saw, until its report: then nothing is left behind', () => {
    let mono = 0;
    const kept = new RecordedContainers(() => mono);
    kept.see(...listed('gone', 'CONTAINER_RUNNING'));
    kept.see(...listed('c1', 'CONTAINER_RUNNING'));
    const gone = kept.gone(new Set(['c1']));
    assert.deepEqual(
      gone.map((k) => [k.c.id, k.c.metadata?.name, k.sb.metadata?.name, k.recName, k.settled]),
      [['gone', 'app', 'pod', 'rec', false]],
    );
    mono += 5000;
    assert.deepEqual(
      kept.gone(new Set(['c1'])).map((k) => [k.c.id, kept.goneFor(k.c.id)]),
      [['gone', 5000]],
      'until it is reported; how long since a complete poll first did not list it',
    );
    kept.forget('gone');
    kept.forget('c1');
    assert.equal(kept.size, 0);
  });

  it('a container gone from a poll is settled when a poll first saw it exited 1 s or more before, whether or not one saw it exited since', () => {
    let mono = 0;
    const kept = new RecordedContainers(() => mono);
    kept.see(...listed('c1'));
    mono += 1;
    kept.see(...listed('c2'));
    mono += 999;
    assert.deepEqual(
      kept.gone(new Set()).map((k) => [k.c.id, k.settled]),
      [
        ['c1', true],
        ['c2', false],
      ],
    );
  });

  it('a container gone from a poll, never seen exited, is settled 1 s after the first complete poll that did not list it: it had exited by then', () => {
    let mono = 0;
    const kept = new RecordedContainers(() => mono);
    kept.see(...listed('c1', 'CONTAINER_RUNNING'));
    mono += 5000;
    assert.deepEqual(kept.gone(new Set()).map((k) => k.settled), [false], 'not from when it was first seen');
    mono += 999;
    assert.deepEqual(kept.gone(new Set()).map((k) => k.settled), [false]);
    mono += 1;
    assert.deepEqual(kept.gone(new Set()).map((k) => k.settled), [true]);
  });

  it(`at most ${MAX_RECORDED} are kept: a further one is not (reported at once, as incomplete), and none kept is dropped for it`, () => {
    let mono = 0;
    const kept = new RecordedContainers(() => mono);
    for (let i = 0; i < MAX_RECORDED; i++) assert.equal(kept.see(...listed(`c${i}`)), 'waiting');
    assert.equal(kept.see(...listed('late', 'CONTAINER_RUNNING')), 'untracked');
    assert.equal(kept.size, MAX_RECORDED);
    mono += 1000;
    assert.equal(kept.see(...listed('c0')), 'settled', 'the first wait runs on');
    kept.forget('c0');
    assert.equal(kept.see(...listed('late', 'CONTAINER_RUNNING')), 'live', 'kept once one has gone');
  });
});

describe('recorder daemon: the wait before a failed report is retried', () => {
  it('as long as the report has been failing (none after its first failure), at most 5 min, on the monotonic clock', (t) => {
    const clock = clocks(t);
    const kept = new RecordedContainers(clock.now);
    kept.see(...listed('c1'));
    assert.ok(kept.due('c1'), 'never failed');
    assert.equal(kept.failed('c1'), 0);
    assert.ok(kept.due('c1'), 'its first retry at the next poll');
    clock.step(-DAY_MS, 1000);
    assert.equal(kept.failed('c1'), 1000);
    clock.step(DAY_MS, 999);
    assert.ok(!kept.due('c1'), 'a wall clock stepped forward a day does not cut the wait');
    clock.step(0, 1);
    assert.ok(kept.due('c1'));
    assert.equal(kept.failed('c1'), 2000);
    clock.step(0, RETRY_WAIT_MAX_MS);
    assert.equal(kept.failed('c1'), RETRY_WAIT_MAX_MS);
    kept.forget('c1');
    kept.see(...listed('c1'));
    assert.equal(kept.failed('c1'), 0, 'nothing is left of a container forgotten');
  });

  it('a removed container is due at its give-up bound, whatever its wait: the wait a failure returns ends there', () => {
    let mono = 0;
    const kept = new RecordedContainers(() => mono);
    kept.see(...listed('c1'));
    kept.failed('c1');
    mono += 400_000;
    assert.deepEqual(kept.gone(new Set()).map((k) => k.due), [true], 'gone from now');
    mono += 10;
    assert.equal(kept.failed('c1'), REMOVED_RETRY_MS - 10, `its wait of ${RETRY_WAIT_MAX_MS} ms would run 10 ms past its bound`);
    mono += REMOVED_RETRY_MS - 11;
    assert.deepEqual(kept.gone(new Set()).map((k) => k.due), [false]);
    mono += 1;
    assert.deepEqual(kept.gone(new Set()).map((k) => k.due), [true]);
  });

  it(`one not kept (past the cap) waits as a kept one; what is kept of those attempts is bounded: at most ${MAX_RECORDED}, the least recently written forgotten first, and none of a container a complete poll did not list`, () => {
    let mono = 0;
    const kept = new RecordedContainers(() => mono);
    for (let i = 0; i < MAX_RECORDED; i++) kept.see(...listed(`c${i}`));
    const late = Array.from({ length: MAX_RECORDED + 1 }, (_, i) => `late${i}`);
    for (const id of late) assert.equal(kept.see(...listed(id)), 'untracked');
    for (const id of late.slice(0, -1)) kept.failed(id);
    mono += 1000;
    for (const id of late.slice(0, -1)) assert.equal(kept.failed(id), 1000);
    assert.ok(!kept.due('late0'));
    kept.failed(late.at(-1)!);
    assert.equal(kept.size, MAX_RECORDED, 'none of them kept');
    assert.equal(kept.untrackedSize, MAX_RECORDED);
    assert.ok(kept.due('late0'), 'the least recently written forgotten: retried as if it never failed');
    assert.ok(!kept.due('late1'));
    kept.gone(new Set([...kept.ids(), 'late1']));
    assert.equal(kept.untrackedSize, 1, 'only that of the one still listed');
    assert.ok(!kept.due('late1'));
  });

  it('one not kept that a freed place lets be kept keeps its wait', () => {
    let mono = 0;
    const kept = new RecordedContainers(() => mono);
    for (let i = 0; i < MAX_RECORDED; i++) kept.see(...listed(`c${i}`));
    kept.see(...listed('late'));
    kept.failed('late');
    mono += 1000;
    assert.equal(kept.failed('late'), 1000);
    kept.forget('c0');
    assert.notEqual(kept.see(...listed('late')), 'untracked');
    assert.equal(kept.untrackedSize, 0);
    assert.ok(!kept.due('late'));
    mono += 1000;
    assert.equal(kept.failed('late'), 2000, 'failing since its first failure');
  });

  it('one not kept, deferred, that a freed place lets be kept while it runs, starts afresh: its report once kept takes its turn when it is due, after one due before it, and its first failure is retried at the next poll', () => {
    let mono = 0;
    const kept = new RecordedContainers(() => mono);
    for (let i = 0; i < MAX_RECORDED; i++) kept.see(...listed(`c${i}`, 'CONTAINER_RUNNING'));
    kept.see(...listed('late', 'CONTAINER_RUNNING'));
    kept.queue('late');
    kept.failed('late');
    mono += 1000;
    kept.queue('late');
    kept.forget('c0');
    assert.equal(kept.see(...listed('late', 'CONTAINER_RUNNING')), 'live');
    kept.see(...listed('c1'));
    mono += 1000;
    const c1 = kept.queue('c1');
    kept.see(...listed('late'));
    mono += 1000;
    assert.ok(kept.queue('late') > c1, 'its place as a report not kept, before the wait of its exit, is not its turn now');
    assert.equal(kept.failed('late'), 0, 'failing since now, not since its failures while not kept');
  });
});
