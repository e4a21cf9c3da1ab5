// A command's one deadline over all the requests it makes (docs/cli.md): each request's own
// limits (src/registry/options.ts) alone would let a registry that answers slowly, request after
// request, or lists many candidates, hold a command for hours.

import { PULL_TIMEOUT_RANGE_MS } from '../config/node-config.js';
import { parseDuration } from '../core/duration.js';
import { SpokeError, type ErrorContext } from '../core/errors.js';
import { UsageError } from './errors.js';

/** Publisher commands' default: a profile of a few MiB and its signature take seconds. */
export const DEFAULT_PUBLISHER_TIMEOUT = '5m';

/** The flag of commands with one deadline. */
export const timeoutFlag = { timeout: { type: 'string' } } as const;

/** `--timeout D` in ms (the range a node's pullTimeout takes); undefined when not given. */
export function parseTimeoutFlag(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const ms = parseDuration(value);
  const [min, max] = PULL_TIMEOUT_RANGE_MS;
  if (ms === undefined || ms < min || ms > max) {
    throw new UsageError(`--timeout ${JSON.stringify(value)}: give a duration between 1s and 60m, as pullTimeout takes, such as 30s or 2m`);
  }
  return ms;
}

export interface Deadline {
  readonly signal: AbortSignal;
  clear(): void;
}

/**
 * A signal that aborts `limitMs` from now with a RegistryUnavailable DEADLINE error saying
 * `message`; requests made under it end with that error (src/registry/errors.ts). Its timer does
 * not keep the process alive.
 */
export function commandDeadline(limitMs: number, message: string, context: ErrorContext = {}): Deadline {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(new SpokeError('RegistryUnavailable', message, { ...context, limit: limitMs }, { reason: 'DEADLINE' })), limitMs);
  timer.unref();
  return { signal: controller.signal, clear: () => clearTimeout(timer) };
}

/** A publisher command's deadline from its `--timeout` flag (default DEFAULT_PUBLISHER_TIMEOUT). */
export function publisherDeadline(values: { timeout?: string }, command: string): Deadline {
  const text = values.timeout ?? DEFAULT_PUBLISHER_TIMEOUT;
  const limitMs = parseTimeoutFlag(text)!;
  return commandDeadline(limitMs, `${command} did not finish within ${text} (--timeout)`);
}
