// How a CLI entry runs a command and ends the process, shared by the whole CLI (main.ts) and the
// pull command's own entry (pull-main.ts), so both answer and exit alike.

import { reportError } from './errors.js';

export type CommandModule = { run(argv: string[]): Promise<number> };

/** Runs a command module's `run`; whatever it throws is reported as the CLI reports errors. */
export async function runCommand(load: () => Promise<CommandModule>, argv: string[]): Promise<number> {
  try {
    return await (await load()).run(argv);
  } catch (e) {
    return reportError(e);
  }
}

/**
 * Exits as soon as the command is done and its output flushed. Waiting for the event loop to
 * drain costs ~40 ms of idle teardown (keep-alive sockets closing, handles unwinding) on every
 * CLI run, for nothing: every command has already closed what it opened.
 */
function exitWhenFlushed(code: number): void {
  process.exitCode = code;
  process.stdout.write('', () => process.stderr.write('', () => process.exit(code)));
}

/** Runs an entry's work to its exit status and exits with it (an escaped error is reported first). */
export function runAndExit(work: Promise<number>): void {
  work.then(exitWhenFlushed, (e: unknown) => exitWhenFlushed(reportError(e)));
}
