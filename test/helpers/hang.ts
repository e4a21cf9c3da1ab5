// A hang guard for synchronous work on hostile input (a backtracking regex, a matcher that
// retries): the test runner's own timeout cannot stop code that blocks the event loop, so such a
// blow-up would hang the suite instead of failing a test. Here the work runs in a child process
// that is killed at the limit: far above what linear work takes, far below what a blow-up on the
// inputs the tests choose would. A guard against hangs, not a speed assertion.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';

/** Runs `body` as an ES module in which `m` is the module at `moduleUrl`; returns what it printed. */
export function finishesInChild(moduleUrl: URL, body: string, limitMs = 30_000): string {
  const script = `import * as m from ${JSON.stringify(moduleUrl.href)};\n${body}`;
  const run = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: limitMs });
  assert.equal(run.signal, null, `still running after ${limitMs} ms, stopped by ${String(run.signal)}`);
  assert.equal(run.status, 0, run.stderr);
  return run.stdout;
}
