// The node baseline is reloaded when its file changes, as the policy is (docs/shim.md#operations):
// an admin who tightens it need not send SIGHUP. An invalid file keeps the last good baseline.

import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { after, before, describe, it } from 'node:test';
import { startShim, stopShim, type ShimProc } from '../helpers/shim.js';
import { unsignedPolicy } from '../helpers/node.js';

describe('spoke shim: the baseline file is watched', { timeout: 120_000 }, () => {
  let work: string;
  let shim: ShimProc | undefined;
  let baselineFile: string;
  const shipped = JSON.parse(readFileSync(new URL('../../../policy/seccomp-baseline.json', import.meta.url), 'utf8')) as { syscalls: { names: string[]; action: string }[] };
  const replace = (text: string) => {
    writeFileSync(`${baselineFile}.tmp`, text);
    renameSync(`${baselineFile}.tmp`, baselineFile);
  };
  before(async () => {
    work = mkdtempSync(join(tmpdir(), 'spoke-baseline-'));
    baselineFile = join(work, 'baseline.json');
    writeFileSync(baselineFile, JSON.stringify(shipped));
    writeFileSync(join(work, 'policy.yaml'), unsignedPolicy(['registry.test/open']));
    shim = await startShim(['--listen', join(work, 'shim.sock'), '--upstream', join(work, 'none.sock'), '--store', join(work, 'store'), '--seccomp-root', join(work, 'seccomp'), '--policy', join(work, 'policy.yaml'), '--baseline', baselineFile]);
  });
  after(async () => {
    if (shim) await stopShim(shim);
    rmSync(work, { recursive: true, force: true });
  });

  it('a tightened baseline file is reloaded without SIGHUP; a corrupt one keeps the last good baseline', async () => {
    const reloaded = shim!.nextLog((l) => l.msg === 'baseline reloaded');
    replace(JSON.stringify({ ...shipped, syscalls: shipped.syscalls.map((r) => ({ ...r, names: r.names.filter((n) => n !== 'chmod') })) }));
    assert.equal((await reloaded).baseline, baselineFile);
    const kept = shim!.nextLog((l) => l.msg === 'baseline not reloaded; keeping the last good one');
    replace('{ not json');
    assert.match(String((await kept).error), /baseline/);
  });
});
