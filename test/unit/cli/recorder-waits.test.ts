// The recorder daemon (spoke recorder, src/cli/commands/recorder.ts) reads a recording again
// after 30 s and reports a container 1 s after it is first seen exited: how both are measured,
// and what it keeps for the exited containers awaiting their report.

import assert from 'node:assert/strict';
import { describe, it, type TestContext } from 'node:test';
import { ExitedContainers, MAX_EXITED, RecordingCache } from '../../../src/cli/commands/recorder.js';
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

describe('recorder daemon: the wait after a container exits', () => {
  it('a wall clock stepped forward a day does not cut the wait: the kernel gets its second for the last records', (t) => {
    const clock = clocks(t);
    const exited = new ExitedContainers(clock.now);
    assert.equal(exited.settled('c1'), 'waiting');
    clock.step(DAY_MS, 10);
    assert.equal(exited.settled('c1'), 'waiting');
  });

  it('a wall clock stepped back a day does not hold the report back: a second after the exit it is made', (t) => {
    const clock = clocks(t);
    const exited = new ExitedContainers(clock.now);
    assert.equal(exited.settled('c1'), 'waiting');
    clock.step(-DAY_MS, 1000);
    assert.equal(exited.settled('c1'), 'settled');
  });
});

describe('recorder daemon: the exited containers awaiting their report', () => {
  it('a container removed before its report leaves nothing behind: a busy node\'s exits do not pile up', () => {
    let mono = 0;
    const exited = new ExitedContainers(() => mono);
    // Each poll finds 10 containers exited since the last one; the kubelet removes them before the 1 s wait is over.
    for (let poll = 0; poll < 1000; poll++) {
      const listed = new Set(Array.from({ length: 10 }, (_, i) => `c${poll}-${i}`));
      for (const id of listed) assert.equal(exited.settled(id), 'waiting');
      exited.prune(listed);
      mono += 100;
    }
    exited.prune(new Set());
    assert.equal(exited.size, 0, '10,000 containers removed before their report');
  });

  it('a poll keeps the containers it lists: one still awaiting its report is reported 1 s after it exited', () => {
    let mono = 0;
    const exited = new ExitedContainers(() => mono);
    exited.settled('gone');
    exited.settled('c1');
    mono += 600;
    exited.prune(new Set(['c1']));
    assert.equal(exited.size, 1);
    mono += 400;
    assert.equal(exited.settled('c1'), 'settled');
    exited.forget('c1');
    assert.equal(exited.size, 0, 'reported');
  });

  it(`at most ${MAX_EXITED} wait: a further one is not tracked (reported at once, as incomplete), and none that waits is dropped for it`, () => {
    let mono = 0;
    const exited = new ExitedContainers(() => mono);
    for (let i = 0; i < MAX_EXITED; i++) assert.equal(exited.settled(`c${i}`), 'waiting');
    assert.equal(exited.settled('late'), 'untracked');
    assert.equal(exited.size, MAX_EXITED);
    mono += 1000;
    assert.equal(exited.settled('c0'), 'settled', 'the first wait runs on');
    exited.forget('c0');
    assert.equal(exited.settled('late'), 'waiting', 'tracked once one has gone');
  });
});
