import assert from 'node:assert/strict';
import { test } from 'node:test';
import { requireTool } from '../../helpers/skip.js';

test('a missing tool skips locally and fails on CI; a present one runs everywhere', () => {
  assert.equal(requireTool(undefined, { CI: 'true' }), false);
  assert.equal(requireTool(undefined, {}), false);
  assert.equal(requireTool('runc not installed', {}), 'runc not installed');
  assert.throws(() => requireTool('runc not installed', { CI: 'true' }), /runc not installed: test\/setup\.sh installs it/);
});
