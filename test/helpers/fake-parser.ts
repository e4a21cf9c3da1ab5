// A stand-in apparmor_parser (a shell script): it answers `--version` and the compile of the
// shim's identity probe (`--stdout`) as the real one does, and runs a test's own script for every
// other call (a check, a load). The shim names its profiles for the parser that compiles them
// (docs/apparmor.md#the-parser-in-the-name), so every stand-in must say which it is.

import { renameSync, writeFileSync } from 'node:fs';

export interface FakeParser {
  /** What `--version` prints first; default the line apparmor_parser 3.0.8 prints. */
  version?: string;
  /** A shell command whose output is the compiled probe (`--stdout`); default `echo compiled`. */
  compiled?: string;
}

/**
 * Writes the stand-in at `path`, as a package upgrade does: a new file renamed over the old one
 * (a new inode). `script`: the shell lines run for a check or a load.
 */
export function writeFakeParser(path: string, script: string, opts: FakeParser = {}): void {
  const version = opts.version ?? 'AppArmor parser version 3.0.8';
  const text = [
    '#!/bin/sh',
    'case " $* " in',
    `  *" --version "*) printf '%s\\n' '${version}' 'Copyright 2009-2018 Canonical Ltd.'; exit 0 ;;`,
    `  *" --stdout "*) cat >/dev/null; ${opts.compiled ?? 'echo compiled'}; exit 0 ;;`,
    'esac',
    script,
  ].join('\n');
  writeFileSync(`${path}.new`, `${text}\n`, { mode: 0o755 });
  renameSync(`${path}.new`, path);
}
