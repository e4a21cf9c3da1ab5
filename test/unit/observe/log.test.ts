// The JSON logger: one object per line, secrets redacted, and every field bounded whatever a
// client sent (a reference or a namespace of megabytes is not a log line of megabytes).

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { JsonLogger, MAX_LOGGED_FIELD_CHARS } from '../../../src/observe/log.js';

describe('JsonLogger', () => {
  const logged = (fields: Record<string, unknown>) => {
    const lines: string[] = [];
    new JsonLogger({ write: (l) => lines.push(l), now: () => 0 }).log('warn', 'security profile pull refused', fields);
    assert.equal(lines.length, 1);
    return JSON.parse(lines[0]!) as Record<string, unknown>;
  };

  it('redacts values of keys that look like credentials', () => {
    const r = logged({ password: 'p', registryToken: 't', reference: 'r.example/p@sha256:x' });
    assert.deepEqual([r.password, r.registryToken, r.reference], ['[redacted]', '[redacted]', 'r.example/p@sha256:x']);
  });

  it('cuts a string field longer than the bound, and says how much it left out', () => {
    const r = logged({ reference: 'r'.repeat(12 * 1024 * 1024), namespace: 'n'.repeat(MAX_LOGGED_FIELD_CHARS), error: new Error('e'.repeat(MAX_LOGGED_FIELD_CHARS + 1)) });
    assert.equal(r.namespace, 'n'.repeat(MAX_LOGGED_FIELD_CHARS), 'at the bound: kept whole');
    assert.equal(r.reference, `${'r'.repeat(MAX_LOGGED_FIELD_CHARS)}…(${12 * 1024 * 1024 - MAX_LOGGED_FIELD_CHARS} more characters)`);
    assert.equal(r.error, `${'e'.repeat(MAX_LOGGED_FIELD_CHARS)}…(1 more characters)`);
  });
});
