// Which failures are worth another attempt, and how long to wait before it. Pure.

/** Longest wait we accept from a `Retry-After` header. */
export const MAX_RETRY_AFTER_MS = 10_000;
const BASE_BACKOFF_MS = 100;
const MAX_BACKOFF_MS = 2_000;

/**
 * `Retry-After` as milliseconds from `nowMs`: delta-seconds or an HTTP-date (RFC 9110 §10.2.3).
 * Undefined when absent or unparseable; never negative; capped at MAX_RETRY_AFTER_MS.
 */
export function parseRetryAfter(value: string | undefined, nowMs: number): number | undefined {
  if (value === undefined) return undefined;
  const v = value.trim();
  if (v.length === 0 || v.length > 64) return undefined;
  let ms: number;
  if (/^[0-9]{1,10}$/.test(v)) {
    ms = Number(v) * 1000;
  } else {
    // IMF-fixdate, RFC 850 or asctime; Date.parse accepts all three.
    if (!/^[A-Za-z]{3}/.test(v)) return undefined;
    const t = Date.parse(v);
    if (Number.isNaN(t)) return undefined;
    ms = t - nowMs;
  }
  return Math.min(Math.max(ms, 0), MAX_RETRY_AFTER_MS);
}

/** Statuses that say "try again later": 408, 429 and 5xx except 501/505 (permanent). */
export function isRetryableStatus(status: number): boolean {
  if (status === 408 || status === 429) return true;
  return status >= 500 && status <= 599 && status !== 501 && status !== 505;
}

/** Exponential backoff with jitter: attempt n waits between half and all of min(2 s, 100 ms·2ⁿ). */
export function backoffMs(attempt: number, random: () => number = Math.random): number {
  const ceiling = Math.min(MAX_BACKOFF_MS, BASE_BACKOFF_MS * 2 ** attempt);
  return Math.floor(ceiling * (0.5 + random() / 2));
}
