import assert from 'node:assert/strict';
import { describe, it, mock } from 'node:test';
import { SpokeError } from '../../../src/core/errors.js';
import { EXIT_FAILED, EXIT_USAGE, reportError, UsageError } from '../../../src/cli/errors.js';
import { assertSpokeError } from '../../helpers/assert.js';

/** reportError's exit status and the stderr it wrote. */
function report(e: unknown): { status: number; stderr: string } {
  let stderr = '';
  const write = mock.method(process.stderr, 'write', (chunk: string) => {
    stderr += chunk;
    return true;
  });
  try {
    return { status: reportError(e), stderr };
  } finally {
    write.mock.restore();
  }
}

describe('CLI error mapping', () => {
  it('a usage error is a SpokeError (InvalidArgument, USAGE), exits 2 and keeps its help lines', () => {
    const e = new UsageError('--kind is required\nUsage: spoke x');
    assertSpokeError(e, { code: 'InvalidArgument', reason: 'USAGE' });
    assert.deepEqual(report(e), { status: EXIT_USAGE, stderr: 'InvalidArgument: --kind is required\nUsage: spoke x\n' });
  });

  it('any other failure is one line starting with its class and ending with its reason, and exits 1', () => {
    const e = new SpokeError('PermissionDenied', 'denied\nby rule x', {}, { reason: 'POLICY_DENIED' });
    assert.deepEqual(report(e), { status: EXIT_FAILED, stderr: 'PermissionDenied: denied by rule x (reason POLICY_DENIED)\n' });
    assert.deepEqual(report(new TypeError('boom')), { status: EXIT_FAILED, stderr: 'Internal: boom (reason UNEXPECTED)\n' });
  });
});
