// bin/spoke's choice of bundle (bin/start-bundle.cjs bundleFor): `spoke pull` from its own, every
// other command from the whole CLI's, and the plain build when the chosen bundle is missing or
// older than the tsc output. The command names only a row of a fixed table, never a path.

import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { SPOKE_BIN } from '../../helpers/cli.js';

const { bundleFor } = createRequire(import.meta.url)(join(SPOKE_BIN, '..', 'start-bundle.cjs')) as { bundleFor(dist: string, command: string | undefined): string | undefined };

describe('bundleFor', () => {
  const dist = mkdtempSync(join(tmpdir(), 'spoke-dist-'));
  after(() => rmSync(dist, { recursive: true, force: true }));
  mkdirSync(join(dist, 'src', 'cli'), { recursive: true });
  const at = (name: string, seconds: number) => {
    writeFileSync(join(dist, name), '');
    utimesSync(join(dist, name), seconds, seconds);
  };

  it('pull has its own bundle; the other commands, help and none share the whole CLI', () => {
    at('src/cli/main.js', 1000);
    at('spoke.cjs', 2000);
    at('spoke-pull.cjs', 2000);
    assert.equal(bundleFor(dist, 'pull'), join(dist, 'spoke-pull.cjs'));
    for (const command of ['push', 'shim', '--help', undefined, 'constructor', '__proto__', 'toString', '../pull']) assert.equal(bundleFor(dist, command), join(dist, 'spoke.cjs'), String(command));
  });

  it('a bundle older than the tsc output, or missing, is not started', () => {
    at('src/cli/main.js', 3000);
    assert.equal(bundleFor(dist, 'pull'), undefined);
    assert.equal(bundleFor(dist, 'push'), undefined);
    at('spoke.cjs', 4000);
    rmSync(join(dist, 'spoke-pull.cjs'));
    assert.equal(bundleFor(dist, 'pull'), undefined);
    assert.equal(bundleFor(dist, 'push'), join(dist, 'spoke.cjs'));
  });
});
