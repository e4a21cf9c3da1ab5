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
