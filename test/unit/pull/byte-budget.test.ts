// The node's budget of blob bytes held in memory across pulls (src/pull/byte-budget.ts).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ByteBudget } from '../../../src/pull/byte-budget.js';
import { SpokeError } from '../../../src/core/errors.js';
import { throwsWith } from '../../helpers/assert.js';

/** Whether `p` has settled by the time the microtasks queued now have run. */
async function settled(p: Promise<unknown>): Promise<boolean> {
  let done = false;
  void p.then(
    () => (done = true),
    () => (done = true),
  );
  await new Promise((r) => setImmediate(r));
  return done;
}

describe('ByteBudget', () => {
  it('takes what fits at once; what does not waits, in turn, until enough is given back', async () => {
    const b = new ByteBudget(10);
    assert.equal(b.tryTake(6), true);
    assert.equal(b.tryTake(5), false, 'does not fit');
    const second = b.take(5);
    const third = b.take(1);
    assert.equal(await settled(second), false);
    assert.equal(await settled(third), false, 'first come, first served: 1 byte would fit, but 5 wait ahead of it');
    b.give(6);
    assert.equal(await settled(second), true);
    assert.equal(await settled(third), true);
    assert.equal(b.inUse, 6);
    assert.equal(b.tryTake(5), false, 'nobody passes the line either: 6 + 5 > 10');
    b.give(5);
    b.give(1);
    assert.equal(b.inUse, 0);
  });

  it('one larger than the whole budget goes alone, never refused for good', async () => {
    const b = new ByteBudget(10);
    assert.equal(b.tryTake(4), true);
    const big = b.take(25);
    assert.equal(await settled(big), false);
    b.give(4);
    assert.equal(await settled(big), true);
    assert.equal(b.tryTake(1), false);
    b.give(25);
    assert.equal(b.tryTake(1), true);
  });

  it('a wait ends with the deadline\'s reason, takes nothing, and lets those behind it go', async () => {
    const b = new ByteBudget(10);
    b.tryTake(8);
    const deadline = new AbortController();
    const big = b.take(5, deadline.signal);
    const small = b.take(2);
    assert.equal(await settled(small), false, 'behind the big one');
    const reason = new SpokeError('RegistryUnavailable', 'pull did not finish within 1000 ms', {}, { reason: 'DEADLINE' });
    deadline.abort(reason);
    await assert.rejects(big, (e) => e === reason);
    assert.equal(await settled(small), true, 'the small one fits once the big one left the line');
    assert.equal(b.inUse, 10);
    const gone = new AbortController();
    gone.abort(reason);
    await assert.rejects(b.take(1, gone.signal), (e) => e === reason);
    assert.equal(b.inUse, 10);
  });

  it('refuses a budget that is not a positive number of bytes', () => {
    for (const bad of [0, -1, 1.5, Number.NaN]) throwsWith(() => new ByteBudget(bad), { code: 'InvalidArgument', reason: 'OPTION_INVALID' });
  });
});
