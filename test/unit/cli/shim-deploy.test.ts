// The shim is deployed with the heap settings the benchmark measures: one string, two places.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { SHIM_NODE_OPTIONS } from '../../../src/cli/commands/shim.js';

const root = new URL('../../../../', import.meta.url);

describe('shim deployment', () => {
  it('the systemd unit sets NODE_OPTIONS to SHIM_NODE_OPTIONS', () => {
    const unit = readFileSync(new URL('deploy/systemd/spoke-shim.service', root), 'utf8');
    assert.ok(unit.split('\n').includes(`Environment=NODE_OPTIONS="${SHIM_NODE_OPTIONS}"`));
  });
  it('every ReadWritePaths directory of the systemd unit exists before the sandbox is made: systemd refuses to start a unit naming a missing one', () => {
    const lines = readFileSync(new URL('deploy/systemd/spoke-shim.service', root), 'utf8').split('\n');
    const rw = lines.find((l) => l.startsWith('ReadWritePaths='))!.slice('ReadWritePaths='.length).split(' ');
    // Made by systemd itself (RuntimeDirectory, StateDirectory), by containerd, or made first, outside the sandbox.
    const made = new Set(['/run/spoke', '/var/lib/spoke', '/run/containerd']);
    for (const l of lines) if (l.startsWith('ExecStartPre=+/bin/mkdir -p ')) for (const d of l.slice('ExecStartPre=+/bin/mkdir -p '.length).split(' ')) made.add(d);
    for (const dir of rw) assert.ok(dir.startsWith('-') || made.has(dir), `${dir} may be missing`);
  });
});
