import assert from 'node:assert/strict';
import { test } from 'node:test';
import { verifySignature } from '../../../src/pull/signature.js';
import { parseReference } from '../../../src/core/reference.js';
import { JsonLogger } from '../../../src/observe/log.js';
import type { Decision } from '../../../src/policy/types.js';
import type { RegistryClient } from '../../../src/registry/types.js';
import type { PullObserver } from '../../../src/pull/types.js';
import { SpokeError } from '../../../src/core/errors.js';

test('a verified signature adds no info line of its own: the caller\'s outcome line names the verdict (a debug line says it)', async () => {
  const reference = `r.example/p@sha256:${'2'.repeat(64)}`;
  const ref = parseReference(reference);
  const decision = { allowed: true, signedBy: [{ type: 'key', name: 'release', keys: [] }], unsigned: false } as unknown as Decision & { allowed: true };
  const verifier = async () => ({ signer: 'release', format: 'bundle' as const });
  for (const level of ['info', 'debug'] as const) {
    const lines: { level: string; msg: string; signer?: string }[] = [];
    const logger = new JsonLogger({ level, write: (line) => lines.push(JSON.parse(line) as { level: string; msg: string }) });
    const verdict = await verifySignature({ verifier }, logger, ref, reference, { reference, kind: 'seccomp', signal: new AbortController().signal }, decision, {} as RegistryClient, Buffer.from('{}'));
    assert.equal(verdict.signer, 'release');
    assert.deepEqual(lines.map((l) => [l.level, l.msg, l.signer]), level === 'info' ? [] : [['debug', 'signature verified', 'release']]);
  }
});

test('a verification stopped because its pull ended is counted as aborted, not as a signature that failed to verify', async () => {
  const reference = `r.example/p@sha256:${'3'.repeat(64)}`;
  const ref = parseReference(reference);
  const decision = { allowed: true, signedBy: [{ type: 'key', name: 'release', keys: [] }], unsigned: false } as unknown as Decision & { allowed: true };
  const results: string[] = [];
  const observer = { verified: (result: string) => results.push(result) } as unknown as PullObserver;
  const logger = new JsonLogger({ level: 'info', write: () => {} });
  // The verifier gives up as the real one does when its requests are aborted.
  const verifier = ({ signal }: { signal?: AbortSignal }) =>
    new Promise<never>((_, reject) => signal!.addEventListener('abort', () => reject(new SpokeError('RegistryUnavailable', 'aborted', {}, { reason: 'CANCELLED' }))));
  const flight = new AbortController();
  const verifying = verifySignature({ verifier, observer }, logger, ref, reference, { reference, kind: 'seccomp', signal: flight.signal }, decision, {} as RegistryClient, Buffer.from('{}'));
  flight.abort();
  await assert.rejects(verifying);
  // A signature the verifier refuses, on a pull still waiting, stays a failure.
  const refusing = async () => {
    throw new SpokeError('SignatureValidationFailed', 'no signature', {}, { reason: 'SIGNATURE_INVALID' });
  };
  await assert.rejects(verifySignature({ verifier: refusing, observer }, logger, ref, reference, { reference, kind: 'seccomp', signal: new AbortController().signal }, decision, {} as RegistryClient, Buffer.from('{}')));
  assert.deepEqual(results, ['aborted', 'failed']);
});
