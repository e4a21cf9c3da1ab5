// `spoke --version` / `spoke version`: the version, the Node running it and the build's commit,
// the same from any working directory.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { spoke, SPOKE_BIN } from '../helpers/cli.js';

const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };

test('spoke --version and spoke version name the version, Node and the commit the build came from', async () => {
  const head = execFileSync('git', ['rev-parse', 'HEAD'], { cwd: new URL('../../..', import.meta.url), encoding: 'utf8' }).trim();
  for (const args of [['--version'], ['version']]) {
    const r = await spoke(args);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`^spoke ${pkg.version.replace(/\./g, '\\.')} \\(node ${process.versions.node.replace(/\./g, '\\.')}, commit ${head}(-dirty)?\\)\\n$`));
  }
  const json = JSON.parse((await spoke(['version', '--json'])).stdout) as { version: string; node: string; commit: string };
  assert.equal(json.version, pkg.version);
  assert.equal(json.commit.slice(0, 40), head);
  // Not from the working directory: the same answer from /.
  const fromRoot = execFileSync(process.execPath, [SPOKE_BIN, 'version', '--json'], { cwd: '/', encoding: 'utf8' });
  assert.deepEqual(JSON.parse(fromRoot), json);
});
