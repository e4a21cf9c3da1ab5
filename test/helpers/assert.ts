// Assertions on SpokeErrors. Tests branch on `code` and `reason` (src/core/errors.ts), never on
// message text: messages are for people and may be reworded.

import assert from 'node:assert/strict';
import { SpokeError, type ErrorCode, type ErrorReason } from '../../src/core/errors.js';

export interface Expected {
  code?: ErrorCode;
  reason?: ErrorReason;
}

/** Asserts that `e` is a SpokeError with the expected code and reason; returns it. */
export function assertSpokeError(e: unknown, expected: Expected): SpokeError {
  assert.ok(e instanceof SpokeError, `expected a SpokeError, got ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`);
  if (expected.code !== undefined) assert.equal(e.code, expected.code, `${e.reason}: ${e.message}`);
  if (expected.reason !== undefined) assert.equal(e.reason, expected.reason, `${e.code}: ${e.message}`);
  return e;
}

/** A validator for assert.throws / assert.rejects. */
export function spokeError(expected: Expected): (e: unknown) => true {
  return (e) => {
    assertSpokeError(e, expected);
    return true;
  };
}

/** Awaits `p`, which must reject with such a SpokeError; returns the error for further checks. */
export async function rejectsWith(p: Promise<unknown>, expected: Expected): Promise<SpokeError> {
  try {
    await p;
  } catch (e) {
    return assertSpokeError(e, expected);
  }
  assert.fail(`expected ${expected.code ?? 'a SpokeError'}${expected.reason ? ` (${expected.reason})` : ''}, but it resolved`);
}

/** Runs `fn`, which must throw such a SpokeError; returns the error for further checks. */
export function throwsWith(fn: () => unknown, expected: Expected): SpokeError {
  try {
    fn();
  } catch (e) {
    return assertSpokeError(e, expected);
  }
  assert.fail(`expected ${expected.code ?? 'a SpokeError'}${expected.reason ? ` (${expected.reason})` : ''}, but it returned`);
}

/** A signature refusal lists `reason` among the reasons its candidates were refused for (context.rejections). */
export function rejectedFor(e: SpokeError, reason: ErrorReason): void {
  const rejections = (e.context.rejections ?? []) as ErrorReason[];
  assert.ok(rejections.includes(reason), `${rejections.join(', ') || 'no candidate rejections'}: ${e.message}`);
}
