// The shim's AppArmor operations with a stand-in apparmor_parser: what it costs to refuse a
// profile the parser rejects (the real parser's cases are in test/integration/apparmor-parser.test.ts).

import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { createAppArmorOps } from '../../../src/cri/apparmor.js';
import { rejectsWith } from '../../helpers/assert.js';

describe('createAppArmorOps', () => {
  const dir = mkdtempSync(join(tmpdir(), 'spoke-aaops-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('a text the parser rejected is refused again without running the parser again: its compile is deterministic, and some take seconds', async () => {
    const runs = join(dir, 'runs');
    const parser = join(dir, 'apparmor_parser');
    writeFileSync(parser, `#!/bin/sh\necho run >> '${runs}'\necho 'AppArmor parser error: Too many states' >&2\nexit 1\n`, { mode: 0o755 });
    const ops = createAppArmorOps({ parser: { parser } });
    const artifact = Buffer.from(JSON.stringify({ filesystem: { readOnlyPaths: ['/etc/hostname'] } }));
    for (let i = 0; i < 3; i++) await rejectsWith(ops.prepare(artifact), { code: 'SecurityProfileInvalid', reason: 'PROFILE_INVALID' });
    assert.equal(readFileSync(runs, 'utf8'), 'run\n');
  });

  it('a profile prepared once is reused until the baseline is reloaded: its merge and render cost ~0.2 s of the shim thread for a large artifact', async () => {
    const parser = join(dir, 'accepting_parser');
    writeFileSync(parser, '#!/bin/sh\nexit 0\n', { mode: 0o755 });
    const baselinePath = join(dir, 'baseline.json');
    writeFileSync(baselinePath, JSON.stringify({ filesystem: { readOnlyPaths: ['/etc/**'] } }));
    const ops = createAppArmorOps({ parser: { parser }, baselinePath });
    const artifact = Buffer.from(JSON.stringify({ filesystem: { readOnlyPaths: ['/etc/hostname', '/etc/hosts'] } }));
    const first = await ops.prepare(artifact);
    assert.equal(await ops.prepare(Buffer.from(artifact)), first, 'the same bytes: the same prepared profile');
    writeFileSync(baselinePath, JSON.stringify({ filesystem: { readOnlyPaths: ['/etc/hostname'] } }));
    await ops.reloadBaseline();
    const after = await ops.prepare(artifact);
    assert.notEqual(after.text, first.text, 'prepared anew against the reloaded baseline');
    assert.doesNotMatch(after.text, /\/etc\/hosts /);
  });
});
