// Flag parsing on node:util parseArgs (strict: unknown flags are usage errors, exit 2).

import { parseArgs } from 'node:util';
import { PROFILE_KINDS, type ProfileKind } from '../core/constants.js';
import { UsageError } from './errors.js';
import { terminalSafe, terminalSafeJson } from '../core/text.js';

export type FlagSpec = Record<string, { type: 'string' | 'boolean'; short?: string; multiple?: boolean; default?: string | boolean }>;

export interface Parsed<T extends FlagSpec> {
  values: { [K in keyof T]: T[K]['type'] extends 'boolean' ? boolean | undefined : T[K]['multiple'] extends true ? string[] | undefined : string | undefined };
  positionals: string[];
  help: boolean;
}

/**
 * Parses argv against `spec` (plus --help/-h). Prints `help` and returns help=true when asked.
 * `positionals` gives the allowed count [min, max].
 */
export function parseCommand<T extends FlagSpec>(argv: string[], spec: T, help: string, positionals: [number, number]): Parsed<T> {
  let parsed: { values: Record<string, unknown>; positionals: string[] };
  try {
    parsed = parseArgs({ args: argv, options: { ...spec, help: { type: 'boolean', short: 'h' } }, allowPositionals: true, strict: true }) as typeof parsed;
  } catch (e) {
    throw new UsageError(`${(e as Error).message}\n${help}`);
  }
  if (parsed.values.help) {
    process.stdout.write(help.trimEnd() + '\n');
    return { values: parsed.values as unknown as Parsed<T>['values'], positionals: parsed.positionals, help: true };
  }
  const n = parsed.positionals.length;
  if (n < positionals[0] || n > positionals[1]) {
    throw new UsageError(`expected ${positionals[0] === positionals[1] ? positionals[0] : `${positionals[0]}–${positionals[1]}`} argument(s), got ${n}\n${help}`);
  }
  return { values: parsed.values as unknown as Parsed<T>['values'], positionals: parsed.positionals, help: false };
}

/** Writes data as JSON (for --json) or as the human text (terminalSafe). */
export function emit(json: boolean | undefined, data: unknown, human: () => string): void {
  process.stdout.write(json ? terminalSafeJson(data, 2) + '\n' : terminalSafe(human()).replace(/\n?$/, '\n'));
}

/** `--kind` of the profile commands: seccomp or apparmor (a usage error otherwise). */
export function parseKind(k: string | undefined): ProfileKind {
  if (k === undefined) throw new UsageError('--kind is required (seccomp or apparmor)');
  if (!(PROFILE_KINDS as readonly string[]).includes(k)) throw new UsageError(`--kind must be seccomp or apparmor, got ${JSON.stringify(k)}`);
  return k as ProfileKind;
}
