// The JSON logger: one object per line, secrets redacted, and every field bounded whatever a
// client sent (a reference or a namespace of megabytes is not a log line of megabytes).

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { flushLogs, JsonLogger, MAX_LOGGED_FIELD_CHARS } from '../../../src/observe/log.js';

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

  it('the default sink writes, when it flushes, each line logged at or above the level, in order, with the time it was logged at', () => {
    let now = 1000;
    const logger = new JsonLogger({ now: () => now, base: { component: 'shim' } });
    const written: string[] = [];
    const write = process.stderr.write;
    process.stderr.write = ((chunk: string) => written.push(chunk) > 0) as typeof process.stderr.write;
    try {
      logger.log('info', 'first', { token: 't', digest: 'sha256:1' });
      now = 2000;
      logger.log('debug', 'below the level');
      logger.log('warn', 'second');
      now = 9000;
      flushLogs();
    } finally {
      process.stderr.write = write;
    }
    const lines = written.join('').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as unknown);
    assert.deepEqual(lines, [
      { time: new Date(1000).toISOString(), level: 'info', msg: 'first', component: 'shim', token: '[redacted]', digest: 'sha256:1' },
      { time: new Date(2000).toISOString(), level: 'warn', msg: 'second', component: 'shim' },
    ]);
  });

  it('the default sink writes a line with an object or a long string as it was when logged', () => {
    const logger = new JsonLogger({ now: () => 0 });
    const written: string[] = [];
    const write = process.stderr.write;
    process.stderr.write = ((chunk: string) => written.push(chunk) > 0) as typeof process.stderr.write;
    const rules = ['syscall mkdir'];
    try {
      logger.log('warn', 'merge constrained', { rules, reference: 'r'.repeat(MAX_LOGGED_FIELD_CHARS + 10) });
      rules.push('syscall chown');
      flushLogs();
    } finally {
      process.stderr.write = write;
    }
    const line = JSON.parse(written.join('')) as Record<string, unknown>;
    assert.deepEqual(line.rules, ['syscall mkdir']);
    assert.equal(line.reference, `${'r'.repeat(MAX_LOGGED_FIELD_CHARS)}…(10 more characters)`);
  });
});
