// The shim is deployed with the heap settings the benchmark measures: one string, three places.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { parseAllDocuments } from 'yaml';
import { SHIM_NODE_OPTIONS } from '../../../src/cli/commands/shim.js';

const root = new URL('../../../../', import.meta.url);

describe('shim deployment', () => {
  it('the systemd unit sets NODE_OPTIONS to SHIM_NODE_OPTIONS', () => {
    const unit = readFileSync(new URL('deploy/systemd/spoke-shim.service', root), 'utf8');
    assert.ok(unit.split('\n').includes(`Environment=NODE_OPTIONS="${SHIM_NODE_OPTIONS}"`));
  });
  it('the DaemonSet container sets NODE_OPTIONS to SHIM_NODE_OPTIONS', () => {
    const docs = parseAllDocuments(readFileSync(new URL('deploy/daemonset/spoke-shim.yaml', root), 'utf8')).map((d) => d.toJS() as { kind?: string; spec?: { template?: { spec?: { containers?: { command?: string[]; env?: { name: string; value: string }[] }[] } } } });
    const ds = docs.find((d) => d.kind === 'DaemonSet');
    const shim = ds?.spec?.template?.spec?.containers?.find((c) => c.command?.includes('shim'));
    assert.equal(shim?.env?.find((e) => e.name === 'NODE_OPTIONS')?.value, SHIM_NODE_OPTIONS);
  });
});
