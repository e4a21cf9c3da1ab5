import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { backoffMs, isRetryableStatus, MAX_RETRY_AFTER_MS, parseRetryAfter } from '../../../src/registry/retry.js';

describe('parseRetryAfter', () => {
  const now = Date.parse('2026-01-01T00:00:00Z');
  it('reads delta-seconds, capped', () => {
    assert.equal(parseRetryAfter('0', now), 0);
    assert.equal(parseRetryAfter(' 3 ', now), 3000);
    assert.equal(parseRetryAfter('3600', now), MAX_RETRY_AFTER_MS);
    assert.equal(parseRetryAfter('99999999999', now), undefined); // more than 10 digits: not a number we read
  });
  it('reads HTTP-dates (IMF-fixdate, RFC 850, asctime), never negative', () => {
    assert.equal(parseRetryAfter('Thu, 01 Jan 2026 00:00:05 GMT', now), 5000);
    assert.equal(parseRetryAfter('Thursday, 01-Jan-26 00:00:02 GMT', now), 2000);
    assert.equal(parseRetryAfter('Thu Jan  1 00:00:07 2026', now) !== undefined, true);
    assert.equal(parseRetryAfter('Wed, 31 Dec 2025 23:00:00 GMT', now), 0);
    assert.equal(parseRetryAfter('Fri, 01 Jan 2027 00:00:00 GMT', now), MAX_RETRY_AFTER_MS);
  });
  it('ignores garbage', () => {
    for (const v of [undefined, '', '-1', '1.5', 'soon', '2026-01-01', 'x'.repeat(100), '0x10']) {
      assert.equal(parseRetryAfter(v, now), undefined, String(v));
    }
  });
});

describe('retry policy', () => {
  it('retries 408, 429 and transient 5xx only', () => {
    for (const s of [408, 429, 500, 502, 503, 504]) assert.equal(isRetryableStatus(s), true, String(s));
    for (const s of [200, 400, 401, 403, 404, 405, 409, 413, 501, 505]) assert.equal(isRetryableStatus(s), false, String(s));
  });
  it('backs off exponentially with jitter, bounded', () => {
    assert.equal(backoffMs(0, () => 0), 50);
    assert.equal(backoffMs(0, () => 1), 100);
    assert.equal(backoffMs(3, () => 1), 800);
    assert.equal(backoffMs(30, () => 1), 2000);
  });
});
