// How the controller reads Kubernetes API errors: their HTTP status, and the optimistic
// concurrency of status writes (PUT …/status with the object's resourceVersion, retried on 409
// Conflict). Both status writers (ProfileBinding status in binding-status.ts, ProfileRecording status in
// recording-reconciler.ts) use the one retry loop here.

/** The HTTP status of an API error, as client-node's errors (`code`) and others (`statusCode`) carry it. */
export function codeOf(e: unknown): number | undefined {
  const o = e as { code?: unknown; statusCode?: unknown } | undefined;
  if (typeof o?.code === 'number') return o.code;
  if (typeof o?.statusCode === 'number') return o.statusCode;
  return undefined;
}

/** Conflicts retried before a write gives up (and the caller retries later). */
export const CONFLICT_RETRIES = 5;

export interface ConflictRetryOptions {
  /** Pause before the next attempt after a 409, times the attempt number, so a cache-backed read can catch up. */
  conflictDelayMs?: number;
  /** Called on each 409 that is retried. */
  onConflict?: () => void;
}

/**
 * Runs `attempt(n)` (read the object, compute its status, PUT it) until it does not reject with
 * 409 Conflict, at most CONFLICT_RETRIES times more; any other rejection, or the last 409, is
 * thrown. Attempt n > 0 must read the object afresh: its resourceVersion changed.
 */
export async function retryOnConflict<T>(attempt: (n: number) => Promise<T>, o: ConflictRetryOptions = {}): Promise<T> {
  for (let n = 0; ; n++) {
    try {
      return await attempt(n);
    } catch (e) {
      if (codeOf(e) !== 409 || n >= CONFLICT_RETRIES) throw e;
      o.onConflict?.();
      const delay = (o.conflictDelayMs ?? 200) * (n + 1);
      if (delay > 0) await new Promise((r) => setTimeout(r, delay));
    }
  }
}
