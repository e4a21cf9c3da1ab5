// The one place that maps error codes to CLI output and exit status (DESIGN §3, issue 3):
// one line on stderr starting with the class, no program prefix; 0 ok, 1 refused/failed, 2 usage.

import { asSpokeError } from '../core/errors.js';

export const EXIT_OK = 0;
export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;

/** Usage errors (bad flags) exit 2; everything else that is refused or fails exits 1. */
export class UsageError extends Error {}

export function reportError(e: unknown): number {
  if (e instanceof UsageError) {
    process.stderr.write(`InvalidArgument: ${e.message}\n`);
    return EXIT_USAGE;
  }
  const err = asSpokeError(e);
  // One line: newlines inside messages would split it.
  process.stderr.write(err.toLine().replace(/[\r\n]+/g, ' ') + '\n');
  return EXIT_FAILED;
}
