// The one place that maps error codes to CLI output and exit status (docs/troubleshooting.md):
// one line on stderr starting with the class, no program prefix; 0 ok, 1 refused/failed, 2 usage.

import { SpokeError, asSpokeError } from '../core/errors.js';
import { terminalSafe } from '../core/text.js';

export const EXIT_OK = 0;
export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;

/**
 * A usage error (bad flags, a missing argument): InvalidArgument with reason USAGE, so that it is
 * a SpokeError like any other; reportError gives it exit status 2 and keeps the help text it may
 * carry on the lines after the message.
 */
export class UsageError extends SpokeError {
  constructor(message: string) {
    super('InvalidArgument', message, {}, { reason: 'USAGE' });
    this.name = 'UsageError';
  }
}

/**
 * An error as one terminal-safe line starting with its class (newlines inside messages would
 * split it) and ending with its reason, which scripts branch on (docs/troubleshooting.md).
 */
export function errorLine(err: SpokeError): string {
  return terminalSafe(err.toLine().replace(/[\r\n]+/g, ' ')) + err.reasonSuffix();
}

/** Usage errors (reason USAGE) exit 2; everything else that is refused or fails exits 1. */
export function reportError(e: unknown): number {
  const err = asSpokeError(e);
  if (err.reason === 'USAGE') {
    process.stderr.write(terminalSafe(`${err.code}: ${err.message}`) + '\n');
    return EXIT_USAGE;
  }
  process.stderr.write(errorLine(err) + '\n');
  return EXIT_FAILED;
}
