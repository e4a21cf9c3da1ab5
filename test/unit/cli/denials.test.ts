// `spoke denials` flags: --for and --since exclude each other; --for without eBPF is refused
// with RECORDER_UNAVAILABLE (and points at --since) before anything is read.
import assert from 'node:assert/strict';
import { appendFileSync, existsSync, mkdtempSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { isSpokeError } from '../../../src/core/errors.js';
import { readAuditLogTail, run } from '../../../src/cli/commands/denials.js';

const dir = mkdtempSync(join(tmpdir(), 'spoke-denials-'));
const config = join(dir, 'config.yaml');
writeFileSync(config, `upstream: ${join(dir, 'none.sock')}\nstoreDir: ${join(dir, 'store')}\n`);
const reason = (want: string) => (e: unknown) => isSpokeError(e) && e.reason === want;

test("an audit log is read from its last bytes only, a cut first line dropped: a 2.5 GiB log could not be read whole", () => {
  const log = join(dir, 'audit.log');
  writeFileSync(log, 'type=SECCOMP msg=audit(1.000:1): first\n');
  truncateSync(log, 2.5 * 1024 ** 3); // sparse: no disk used
  appendFileSync(log, '\ntype=SECCOMP msg=audit(2.000:2): next to last\ntype=SECCOMP msg=audit(3.000:3): last\n');
  assert.deepEqual(readAuditLogTail(log, 60).filter((l) => l !== ''), ['type=SECCOMP msg=audit(3.000:3): last']);
  assert.deepEqual(readAuditLogTail(log).slice(-3), ['type=SECCOMP msg=audit(2.000:2): next to last', 'type=SECCOMP msg=audit(3.000:3): last', '']);
  rmSync(log);
});

test('--for with --since, or a --for that is no duration, is a usage error', async () => {
  await assert.rejects(run(['--config', config, '--for', '1m', '--since', '1h']), reason('USAGE'));
  await assert.rejects(run(['--config', config, '--for', 'soon']), reason('USAGE'));
  await assert.rejects(run(['--config', config, '--for', '0s']), reason('USAGE'));
  await assert.rejects(run(['--config', config, '--for', '25d']), reason('USAGE'));
});

test('--for without bpftrace (or without root) is refused with RECORDER_UNAVAILABLE', async () => {
  const path = process.env.PATH;
  process.env.PATH = dir;
  try {
    await assert.rejects(run(['--config', config, '--for', '1m']), (e) => reason('RECORDER_UNAVAILABLE')(e) && (e as Error).message.includes('--since'));
  } finally {
    process.env.PATH = path;
  }
});

test('a textfile that cannot be written is refused with FILE_UNWRITABLE', { skip: process.getuid?.() !== 0 ? 'reads the kernel log (root)' : false }, async () => {
  // A regular file where its directory should be: no temporary file can be made there.
  await assert.rejects(run(['--config', config, '--since', '1s', '--textfile', join(config, 'denials.prom')]), reason('FILE_UNWRITABLE'));
  // A directory that does not exist is not made: the collector's directory is the admin's to create.
  const missing = join(dir, 'no-such-dir');
  await assert.rejects(run(['--config', config, '--since', '1s', '--textfile', join(missing, 'denials.prom')]), reason('FILE_UNWRITABLE'));
  assert.equal(existsSync(missing), false);
});
