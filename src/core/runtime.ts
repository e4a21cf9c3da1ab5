// Injected edges: time and logging. I/O code takes these as constructor arguments so tests and
// benchmarks can substitute them (DEVELOPERS "How we write code").

export interface Clock {
  /** Wall-clock milliseconds since the epoch. */
  now(): number;
  /** Resolves after `ms`; used for retry backoff. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

/**
 * Milliseconds on a clock no wall-clock step moves (performance.now()). In-process waits and
 * time-to-live values are measured on it: measured on Clock.now(), a step of the wall clock
 * (NTP correcting a node that booted with its RTC off) would stretch or cut them by the step.
 * Clock.now() is for timestamps written down or sent elsewhere.
 */
export type MonotonicNow = () => number;

export const monotonicNow: MonotonicNow = () => performance.now();

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

export interface Logger {
  log(level: LogLevel, msg: string, fields?: Record<string, unknown>): void;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  sleep: (ms, signal) =>
    new Promise((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason);
      const t = setTimeout(() => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      }, ms);
      const onAbort = () => {
        clearTimeout(t);
        reject(signal?.reason);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
    }),
};

export const silentLogger: Logger = { log: () => {} };

/**
 * Whether `level` is logged (a Logger without enabled() logs everything it is given): asked
 * before building the fields of a line on a hot path that is mostly not logged.
 */
export function logEnabled(logger: Logger, level: LogLevel): boolean {
  const enabled = (logger as { enabled?: (level: LogLevel) => boolean }).enabled;
  return typeof enabled === 'function' ? enabled.call(logger, level) : true;
}

/**
 * Which build this process runs: the bundle bin/spoke starts (dist/spoke.cjs, CommonJS, where
 * `require` is in scope) or the plain tsc output (ES modules, where it is not).
 */
export function runningBuild(): 'bundle' | 'plain' {
  return typeof require === 'function' ? 'bundle' : 'plain';
}
