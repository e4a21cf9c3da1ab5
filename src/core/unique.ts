// Names that must not repeat (temp files, pending in-use holders): a random nonce drawn once per
// process, then a counter. Unique across processes that share a directory or a store (a second
// shim, a CLI, a restarted shim finding a crash's leftovers) and within one; a random draw per
// name cost more on a create's or a pull's path than the rest of the name (docs/benchmarks.md).

import { randomBytes } from 'node:crypto';

const PROCESS_NONCE = randomBytes(8).toString('hex');
let sequence = 0;

/** `<16 hex digits of this process's nonce><counter in base 36>`: never the same twice in a process. */
export function uniqueSuffix(): string {
  return `${PROCESS_NONCE}${(++sequence).toString(36)}`;
}
