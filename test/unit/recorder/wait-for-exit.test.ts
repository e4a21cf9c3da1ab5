// `spoke record` waits up to --timeout for the recorded workload to exit (src/recorder/cri.ts
// waitForExit): how that timeout is measured.

import assert from 'node:assert/strict';
import { describe, it, type TestContext } from 'node:test';
import { waitForExit, type Msg, type RuntimeCalls } from '../../../src/recorder/cri.js';
import { rejectsWith } from '../../helpers/assert.js';

const DAY_MS = 86_400_000;
const TIMEOUT_MS = 60_000;

/**
 * A runtime whose container runs at the first ContainerStatus and has exited (with `exitCode`)
 * at the next; the first answer also moves the clocks by `step` (the wall clock is mocked).
 */
function runtime(t: TestContext, exitCode: number, step: { wall: number; mono: number }) {
  t.mock.timers.enable({ apis: ['Date'], now: Date.parse('2025-06-02T00:00:00Z') });
  const clocks = { mono: 0 };
  let asked = 0;
  const cri: RuntimeCalls = {
    rt: async (name: string): Promise<Msg> => {
      assert.equal(name, 'ContainerStatus');
      if (asked++ > 0) return { status: { state: 'CONTAINER_EXITED', exit_code: exitCode } };
      t.mock.timers.setTime(Date.now() + step.wall);
      clocks.mono += step.mono;
      return { status: { state: 'CONTAINER_RUNNING', exit_code: 0 } };
    },
  };
  return { cri, now: () => clocks.mono };
}

describe('waitForExit', () => {
  it('a wall clock stepped forward a day does not end the wait early: the workload is waited for', async (t) => {
    const { cri, now } = runtime(t, 0, { wall: DAY_MS, mono: 1000 });
    assert.equal(await waitForExit(cri, 'c1', TIMEOUT_MS, undefined, now), 0);
  });

  it('a wall clock stepped back a day does not stretch the wait: past the timeout it is DEADLINE', async (t) => {
    const { cri, now } = runtime(t, 3, { wall: -DAY_MS, mono: TIMEOUT_MS + 1 });
    await rejectsWith(waitForExit(cri, 'c1', TIMEOUT_MS, undefined, now), { reason: 'DEADLINE' });
  });
});
