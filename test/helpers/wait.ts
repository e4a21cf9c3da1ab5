// Bounded polling for a condition that no event announces (a file's content, a store's state, a
// metrics page). Anything that does have an event (a log line, a socket close, a request
// arriving) is awaited on that event instead.

export async function waitFor(check: () => Promise<boolean> | boolean, opts: { timeoutMs: number; what: string; intervalMs?: number }): Promise<void> {
  const until = Date.now() + opts.timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > until) throw new Error(`timed out after ${opts.timeoutMs} ms waiting for ${opts.what}`);
    await new Promise((r) => setTimeout(r, opts.intervalMs ?? 20));
  }
}

/** `p`, or a failure naming `what` once `ms` passed without it settling: a bound on waiting for an event, not a delay. */
export async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`still waiting after ${ms} ms for ${what}`)), ms)));
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}
