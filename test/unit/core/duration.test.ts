import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseDuration } from '../../../src/core/duration.js';

test('durations: an integer and one unit, nothing else', () => {
  assert.deepEqual(['1500ms', '90s', '10m', '1h', '2d', '0s'].map(parseDuration), [1500, 90_000, 600_000, 3_600_000, 172_800_000, 0]);
  for (const bad of ['', '10', '1.5s', '-1s', '10 m', '1w', 's', '1234567890s', '10mm']) assert.equal(parseDuration(bad), undefined, bad);
});
