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
    // Each pull of another namespace: one owner's share is the next test's.
    const b = new ByteBudget(10);
    assert.equal(b.tryTake(6, 'a'), true);
    assert.equal(b.tryTake(5, 'b'), false, 'does not fit');
    const second = b.take(5, undefined, 'b');
    const third = b.take(1, undefined, 'c');
    assert.equal(await settled(second), false);
    assert.equal(await settled(third), false, 'first come, first served: 1 byte would fit, but 5 wait ahead of it');
    b.give(6, 'a');
    assert.equal(await settled(second), true);
    assert.equal(await settled(third), true);
    assert.equal(b.inUse, 6);
    assert.equal(b.tryTake(5, 'd'), false, 'nobody passes the line either: 6 + 5 > 10');
    b.give(5, 'b');
    b.give(1, 'c');
    assert.equal(b.inUse, 0);
  });

  it('one larger than the whole budget goes alone, never refused for good', async () => {
    const b = new ByteBudget(10);
    assert.equal(b.tryTake(4, 'a'), true);
    const big = b.take(25, undefined, 'b');
    assert.equal(await settled(big), false);
    b.give(4, 'a');
    assert.equal(await settled(big), true);
    assert.equal(b.tryTake(1, 'c'), false);
    b.give(25, 'b');
    assert.equal(b.tryTake(1, 'c'), true);
  });

  it('a wait ends with the deadline\'s reason, takes nothing, and lets those behind it go', async () => {
    const b = new ByteBudget(10);
    b.tryTake(8, 'a');
    const deadline = new AbortController();
    const big = b.take(5, deadline.signal, 'b');
    const small = b.take(2, undefined, 'c');
    assert.equal(await settled(small), false, 'behind the big one');
    const reason = new SpokeError('RegistryUnavailable', 'pull did not finish within 1000 ms', {}, { reason: 'DEADLINE' });
    deadline.abort(reason);
    await assert.rejects(big, (e) => e === reason);
    assert.equal(await settled(small), true, 'the small one fits once the big one left the line');
    assert.equal(b.inUse, 10);
    const gone = new AbortController();
    gone.abort(reason);
    await assert.rejects(b.take(1, gone.signal, 'd'), (e) => e === reason);
    assert.equal(b.inUse, 10);
  });

  it('one owner (a namespace) holds at most half the budget; its waits do not hold back other owners', async () => {
    const b = new ByteBudget(64);
    // A registry that stalls blob bodies keeps team-b's pulls holding their bytes.
    assert.equal(b.tryTake(16, 'team-b'), true);
    assert.equal(b.tryTake(16, 'team-b'), true);
    assert.equal(b.tryTake(16, 'team-b'), false, 'past its half');
    const third = b.take(16, undefined, 'team-b');
    assert.equal(await settled(third), false);
    assert.equal(b.tryTake(16, 'team-a'), true, 'another namespace is not behind it in line');
    const a2 = b.take(16, undefined, 'team-a');
    assert.equal(await settled(a2), true);
    assert.equal(b.inUse, 64);
    assert.equal(b.tryTake(1, 'team-a'), false, 'team-a is at its half too');
    const c = b.take(8, undefined, 'team-c');
    assert.equal(await settled(c), false, 'the whole budget is spent');
    b.give(16, 'team-b');
    assert.equal(await settled(third), true, 'back within its half, and first in line');
    assert.equal(await settled(c), false);
    b.give(16, 'team-a');
    assert.equal(await settled(c), true);
    for (const [bytes, owner] of [[16, 'team-b'], [16, 'team-b'], [16, 'team-a'], [8, 'team-c']] as const) b.give(bytes, owner);
    assert.equal(b.inUse, 0);
    assert.equal(b.tryTake(40, 'team-c'), true, 'one larger than half goes when its owner holds nothing');
    b.give(40, 'team-c');
  });

  it('refuses a budget that is not a positive number of bytes', () => {
    for (const bad of [0, -1, 1.5, Number.NaN]) throwsWith(() => new ByteBudget(bad), { code: 'InvalidArgument', reason: 'OPTION_INVALID' });
  });
});
