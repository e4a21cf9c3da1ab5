// An audit recording ends by draining the kernel log until it has been quiet for a while
// (src/recorder/session.ts drainUntilQuiet): how that while is measured.

import assert from 'node:assert/strict';
import { describe, it, type TestContext } from 'node:test';
import { drainUntilQuiet } from '../../../src/recorder/session.js';

const DAY_MS = 86_400_000;
const QUIET_MS = 300;
const MAX_MS = 5000;
/** More drains than a source quiet from its third one ever needs (each moves the monotonic clock 100 ms). */
const AT_MOST_DRAINS = 20;

/**
 * A kernel log that gives `records[i]` at the i-th drain (none past the list); the first drain
 * also steps the mocked wall clock by `step`, and every drain moves the monotonic clock 100 ms.
 */
function source(t: TestContext, records: readonly number[], step: number) {
  t.mock.timers.enable({ apis: ['Date'], now: Date.parse('2025-06-02T00:00:00Z') });
  const clocks = { mono: 0 };
  let drains = 0;
  let taken = 0;
  const drain = () => {
    assert.ok(drains < AT_MOST_DRAINS, 'drained on long after the log went quiet');
    if (drains === 0) t.mock.timers.setTime(Date.now() + step);
    const n = records[drains++] ?? 0;
    taken += n;
    clocks.mono += 100;
    return n;
  };
  return { drain, now: () => clocks.mono, taken: () => taken };
}

describe('drainUntilQuiet', () => {
  it('a wall clock stepped forward a day does not end the drain early: the records still coming are taken', async (t) => {
    const s = source(t, [5, 3, 2], DAY_MS);
    await drainUntilQuiet(s.drain, QUIET_MS, MAX_MS, s.now);
    assert.equal(s.taken(), 10);
  });

  it('a wall clock stepped back a day does not stretch the drain: it ends once the log was quiet for 300 ms', async (t) => {
    const s = source(t, [5, 3], -DAY_MS);
    await drainUntilQuiet(s.drain, QUIET_MS, MAX_MS, s.now);
    assert.equal(s.taken(), 8);
  });
});
