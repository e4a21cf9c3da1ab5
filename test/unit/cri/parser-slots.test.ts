// Who gets a freed apparmor_parser slot (src/cri/parser-slots.ts): loads and each namespace's
// checks take turns.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ParserSlots } from '../../../src/cri/parser-slots.js';

const NEVER = new AbortController().signal;

/** A run that holds its slot until `release` is called; `started` says when it got the slot. */
function held(slots: ParserSlots, source: string | undefined, log: string[], name: string) {
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const done = slots.run(NEVER, source, async () => {
    log.push(name);
    await gate;
  });
  return { release, done };
}

const turn = () => new Promise((r) => setImmediate(r));

test("a stream of loads does not starve a namespace's checks: loads are one turn among the namespaces'", async () => {
  const slots = new ParserSlots(1);
  const log: string[] = [];
  const first = held(slots, 'a', log, 'a0');
  await turn();
  // Queued while the slot is taken: three loads, b's check, a fourth load.
  const waiting = [held(slots, undefined, log, 'load1'), held(slots, undefined, log, 'load2'), held(slots, undefined, log, 'load3'), held(slots, 'b', log, 'b1'), held(slots, undefined, log, 'load4')];
  for (const r of [first, ...waiting]) r.release();
  await Promise.all([first, ...waiting].map((r) => r.done));
  // b's check gets the slot after one load, not after every load that came before it.
  assert.deepEqual(log, ['a0', 'load1', 'b1', 'load2', 'load3', 'load4']);
});

test('a waiter given up leaves its place, and the slot count stays right', async () => {
  const slots = new ParserSlots(1);
  const log: string[] = [];
  const a = held(slots, 'a', log, 'a');
  await turn();
  const gone = new AbortController();
  const dropped = slots.run(gone.signal, 'b', async () => void log.push('b'));
  // c waits behind b's turn; a slot handed to b's place once b has left would reach nobody.
  const c = held(slots, 'c', log, 'c');
  gone.abort(new Error('gone'));
  await assert.rejects(dropped, /gone/);
  c.release();
  a.release();
  await Promise.all([a.done, c.done]);
  assert.deepEqual(log, ['a', 'c']);
});
