// Per-architecture node baselines (docs/multi-arch.md): `baselines` chosen by the node's
// architecture; what wins over what; errors that name the line.

import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { defaultBaselinePath, loadNodeConfig } from '../../../src/config/index.js';
import { memFs } from '../policy/fixtures.js';
import { throwsWith } from '../../helpers/assert.js';

const FILE = '/etc/spoke/config.yaml';

function load(text: string, arch: string, overrides = {}) {
  return loadNodeConfig(FILE, overrides, { readFile: memFs({ [FILE]: text }).readFile, cwd: '/work', arch });
}

const BOTH = ['baselines:', '  amd64: baselines/amd64.json', '  arm64: /etc/spoke/arm64.json', ''].join('\n');

describe('node config baselines', () => {
  it('the shipped default is chosen by architecture: the x86 family, or arm64 and 32-bit ARM', () => {
    assert.match(defaultBaselinePath('amd64'), /\/policy\/seccomp-baseline\.json$/);
    assert.match(defaultBaselinePath('arm64'), /\/policy\/seccomp-baseline-arm64\.json$/);
    assert.equal(defaultBaselinePath(), defaultBaselinePath('amd64')); // this node is amd64
  });

  it("takes the entry for the node's architecture, paths relative to the file", () => {
    assert.equal(load(BOTH, 'amd64').baseline, '/etc/spoke/baselines/amd64.json');
    assert.equal(load(BOTH, 'arm64').baseline, '/etc/spoke/arm64.json');
    assert.deepEqual(load(BOTH, 'arm64').baselines, { amd64: '/etc/spoke/baselines/amd64.json', arm64: '/etc/spoke/arm64.json' });
  });

  it('the entry wins over baseline, which stays the fallback for architectures not listed; the --baseline flag wins over both', () => {
    const text = `baseline: generic.json\n${BOTH}`;
    assert.equal(load(text, 'arm64').baseline, '/etc/spoke/arm64.json');
    assert.equal(load(text, 'riscv64').baseline, '/etc/spoke/generic.json');
    assert.equal(load(text, 'arm64', { baseline: 'flag.json' }).baseline, '/work/flag.json');
    assert.equal(load('baseline: generic.json\n', 'arm64').baseline, '/etc/spoke/generic.json');
    assert.equal(load('', 'arm64').baseline, defaultBaselinePath('arm64'));
    assert.equal(load('', 'amd64').baseline, defaultBaselinePath('amd64'));
  });

  it("refuses a map without the node's architecture and no fallback, naming the architecture", () => {
    const e = throwsWith(() => load(BOTH, 'riscv64'), { code: 'InvalidArgument', reason: 'CONFIG_INVALID' });
    assert.equal(e.context.expected, 'riscv64');
    assert.match(e.message, /riscv64/);
    // At the line of `baselines`, in the documented form `file:line: field: what`.
    assert.equal(e.context.line, 1);
    assert.equal(e.context.path, 'baselines');
    assert.ok(e.message.startsWith(`${FILE}:1: baselines: `), e.message);
    // Not line 1 by default: the line the key is on.
    const below = throwsWith(() => load(`logLevel: info\n${BOTH}`, 'riscv64'), { code: 'InvalidArgument', reason: 'CONFIG_INVALID' });
    assert.equal(below.context.line, 2);
    assert.ok(below.message.startsWith(`${FILE}:2: baselines: `), below.message);
    // With an explicit --baseline the map is not consulted.
    assert.equal(load(BOTH, 'riscv64', { baseline: '/b.json' }).baseline, '/b.json');
  });

  it('refuses unknown architecture names and empty maps at their line', () => {
    const e = throwsWith(() => load('baselines:\n  x86_64: a.json\n', 'amd64'), {});
    assert.equal(e.code, 'InvalidArgument');
    assert.equal(e.context.line, 2);
    assert.match(e.message, /baselines\.x86_64: must be one of amd64, arm64/);
    assert.equal(throwsWith(() => load('baselines: {}\n', 'amd64'), {}).context.line, 1);
    assert.equal(throwsWith(() => load('baselines:\n  amd64: ""\n', 'amd64'), {}).context.line, 2);
    assert.equal(throwsWith(() => load('baselines: a.json\n', 'amd64'), {}).code, 'InvalidArgument');
  });
});
