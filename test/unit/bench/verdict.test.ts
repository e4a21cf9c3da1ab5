import assert from 'node:assert/strict';
import { test } from 'node:test';
import { verdict } from '../../bench/stats.js';

const relayP99 = { meets: false, figure: 'node:http2 relay added p99 2.80 ms' };

test('a row is met when spoke meets every target, whatever its floors do', () => {
  assert.deepEqual(verdict([{ spoke: true, floor: relayP99 }, { spoke: true }]), { met: true });
});

test('a missed target is below the floor only when the floor measured beside it misses it too', () => {
  assert.deepEqual(verdict([{ spoke: true }, { spoke: false, floor: relayP99 }]), { met: false, belowFloor: 'node:http2 relay added p99 2.80 ms' });
  // The floor meets what spoke misses: spoke's own miss.
  assert.deepEqual(verdict([{ spoke: false, floor: { meets: true, figure: 'relay added p50 190 µs' } }]), { met: false });
  // A missed target with no floor beside it: nothing shows it unreachable.
  assert.deepEqual(verdict([{ spoke: false, floor: relayP99 }, { spoke: false }]), { met: false });
});

test('every floor that misses a target spoke misses is named', () => {
  const p50 = { meets: false, figure: 'node:http2 relay added p50 330 µs' };
  assert.deepEqual(verdict([{ spoke: false, floor: p50 }, { spoke: false, floor: relayP99 }]), { met: false, belowFloor: 'node:http2 relay added p50 330 µs; node:http2 relay added p99 2.80 ms' });
  // A target spoke meets names no floor.
  assert.deepEqual(verdict([{ spoke: true, floor: p50 }, { spoke: false, floor: relayP99 }]), { met: false, belowFloor: 'node:http2 relay added p99 2.80 ms' });
});
