// Single-flight for the pull pipeline (docs/architecture.md): concurrent pulls with one key share
// one fetch. A shared fetch (a "flight") runs under its own abort controller and total deadline,
// never under one caller's signal or credentials; it is aborted only when every caller waiting on
// it has gone.

import { SpokeError } from '../core/errors.js';
import type { Decision, Policy } from '../policy/types.js';
import type { RegistryClient } from '../registry/types.js';
import { credentialIdentity } from './access.js';
import type { FlightRequest, PullRequest, PullResult, RegistryLease } from './types.js';

interface Flight {
  readonly promise: Promise<PullResult>;
  /** Ends the flight with `reason`: its signal aborts, and its promise rejects at once. */
  readonly abort: (reason: SpokeError) => void;
  waiters: number;
  settled: boolean;
}

/** Why a flight's signal aborts once its work has settled. */
const FLIGHT_OVER = new SpokeError('Unavailable', 'the pull this request served has ended', {}, { reason: 'CANCELLED' });

/** The flights now running, by key (`step\0reference\0...`). */
export class Flights {
  private readonly inflight = new Map<string, Flight>();

  /**
   * `lease` gives the registry client for a policy, held for one flight; `timeoutMs` is the total
   * time one flight may take (the node config's `pullTimeout`).
   */
  constructor(
    private readonly lease: (policy: Policy) => RegistryLease,
    private readonly timeoutMs: number,
  ) {}

  /** Callers now waiting on flights for `reference` (canonical form); tests wait on it. */
  waiting(reference: string): number {
    let n = 0;
    for (const [key, f] of this.inflight) if (key.split('\0')[1] === reference) n += f.waiters;
    return n;
  }

  /**
   * Runs `work` as a flight shared by every caller with the same key, or joins the one running.
   * The flight has its own controller and total deadline; each caller may leave early with its
   * own signal, and the flight is aborted only when the last caller has left.
   */
  join(key: string, req: PullRequest, policy: Policy, work: (flightReq: FlightRequest, registry: RegistryClient) => Promise<PullResult>): Promise<PullResult> {
    let flight = this.inflight.get(key);
    if (!flight) {
      const controller = new AbortController();
      const flightReq: FlightRequest = { reference: req.reference, kind: req.kind, signal: controller.signal };
      if (req.namespace !== undefined) flightReq.namespace = req.namespace;
      if (req.credential !== undefined) flightReq.credential = req.credential;
      let end!: (reason: SpokeError) => void;
      const started = new Promise<PullResult>((resolve, reject) => {
        end = reject;
        const lease = this.lease(policy);
        work(flightReq, lease.client)
          .then(resolve, reject)
          .finally(() => {
            // What the work started and no longer waits for (signature discovery beside a failed
            // fetch, the request a faster one made needless) ends with it, not at its own timeout.
            controller.abort(FLIGHT_OVER);
            lease.release();
          });
      });
      // Whatever the work is waiting on, the flight ends when it is aborted: its two aborts (the
      // deadline, the last caller leaving) reject it themselves, which costs less on a pull's
      // path than a listener on the signal.
      const abort = (reason: SpokeError): void => {
        controller.abort(reason);
        end(reason);
      };
      const timer = setTimeout(() => {
        abort(new SpokeError('RegistryUnavailable', `${req.reference}: pull did not finish within ${this.timeoutMs} ms (pullTimeout)`, { limit: this.timeoutMs }, { reason: 'DEADLINE' }));
      }, this.timeoutMs);
      timer.unref();
      const f: Flight = {
        abort,
        waiters: 0,
        settled: false,
        promise: started.finally(() => {
          f.settled = true;
          clearTimeout(timer);
          if (this.inflight.get(key) === f) this.inflight.delete(key);
        }),
      };
      f.promise.catch(() => {}); // observed by each waiter
      flight = f;
      this.inflight.set(key, f);
    }
    return this.wait(key, flight, typeof req.signal === 'function' ? req.signal() : req.signal);
  }

  /** One caller's wait on a flight, ended early by the caller's own signal. */
  private async wait(key: string, flight: Flight, signal: AbortSignal | undefined): Promise<PullResult> {
    flight.waiters++;
    try {
      if (!signal) return await flight.promise;
      if (signal.aborted) throw callerGone(signal);
      return await new Promise<PullResult>((resolve, reject) => {
        const onAbort = () => reject(callerGone(signal));
        signal.addEventListener('abort', onAbort, { once: true });
        flight.promise.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
      });
    } finally {
      if (--flight.waiters === 0 && !flight.settled) {
        // Nobody is left to use the result: stop the fetch, and let a new caller start afresh.
        if (this.inflight.get(key) === flight) this.inflight.delete(key);
        flight.abort(new SpokeError('RegistryUnavailable', 'pull cancelled: every caller has gone', {}, { reason: 'CANCELLED' }));
      }
    }
  }
}

/** The caller's own signal ended its wait (its deadline, or it went away); the flight goes on. */
function callerGone(signal: AbortSignal): SpokeError {
  const reason: unknown = signal.reason;
  if (reason instanceof SpokeError) return reason;
  if (reason instanceof Error && reason.name === 'TimeoutError') return new SpokeError('Unavailable', 'deadline exceeded', {}, { reason: 'DEADLINE', cause: reason });
  return new SpokeError('Unavailable', 'the caller cancelled the pull', {}, { reason: 'CANCELLED', cause: reason });
}

/**
 * What callers of one fetch or verification share. A shared one carries its first caller's
 * decision (whether a signature is required, and whose): callers share one only when the same
 * rules of the same policy decided for them, for the same credential identity. Rules that admit
 * some namespaces only can decide one reference differently. Made only when a flight is joined:
 * a cached pull needs none.
 */
export function flightKey(canonical: string, req: PullRequest, policy: Policy, decision: Decision & { allowed: true }): string {
  const rules = decision.rules.map((r) => r.index).join(',');
  return `${canonical}\0${req.kind}\0${policy.hash}\0${rules}\0${credentialIdentity(req.credential)}`;
}
