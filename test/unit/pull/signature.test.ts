import assert from 'node:assert/strict';
import { test } from 'node:test';
import { verifySignature } from '../../../src/pull/signature.js';
import { parseReference } from '../../../src/core/reference.js';
import { JsonLogger } from '../../../src/observe/log.js';
import type { Decision } from '../../../src/policy/types.js';
import type { RegistryClient } from '../../../src/registry/types.js';

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
