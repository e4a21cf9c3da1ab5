// Files a command is given are read at most to their limit: a size from stat says nothing of a
// FIFO, /dev/zero or a /proc file, so the read itself stops one byte past it (src/cli/read-file.ts).

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createWriteStream, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { MAX_POLICY_ARTIFACT_BYTES } from '../../../src/core/limits.js';
import { spoke } from '../../helpers/cli.js';

const dir = mkdtempSync(join(tmpdir(), 'spoke-bounded-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** A FIFO fed `total` bytes; resolves with how many the reader took before it closed its end. */
function fifoFeeding(name: string, total: number): { path: string; written: Promise<number> } {
  const path = join(dir, name);
  execFileSync('mkfifo', [path]);
  const written = new Promise<number>((resolve) => {
    const out = createWriteStream(path);
    let sent = 0;
    const chunk = Buffer.alloc(1024 * 1024, 0x20);
    out.on('error', () => resolve(sent));
    const more = (): void => {
      while (sent < total) {
        sent += chunk.length;
        if (!out.write(chunk)) return void out.once('drain', more);
      }
      out.end(() => resolve(sent));
    };
    more();
  });
  return { path, written };
}

/** A policy allowing anything under 127.0.0.1:1/t, unsigned. */
function policyFile(): string {
  const path = join(dir, 'policy.yaml');
  writeFileSync(path, ['apiVersion: spoke.dev/v1alpha1', 'kind: NodeProfilePolicy', 'rules:', '  - scope: 127.0.0.1:1/t', '    kinds: [seccomp]', '    unsigned: true', 'insecure: [127.0.0.1:1]', ''].join('\n'));
  return path;
}

describe('command inputs past their limit', () => {
  for (const [name, args] of [
    ['policy lint', (f: string) => ['policy', 'lint', f]],
    ['pull -f', (f: string) => ['pull', '-f', f, '--kind', 'seccomp', '--config', '/dev/null', '--store', join(dir, 'store')]],
    ['verify --ca-file', (f: string) => ['verify', `127.0.0.1:1/t/p@sha256:${'a'.repeat(64)}`, '--ca-file', f, '--config', '/dev/null', '--policy', policyFile()]],
    ['--config', (f: string) => ['policy', 'check', `127.0.0.1:1/t/p@sha256:${'a'.repeat(64)}`, '--config', f]],
  ] as const) {
    it(`${name}: a FIFO that never ends is not read whole`, async () => {
      const fifo = fifoFeeding(`named-${name.replace(/\W+/g, '-')}`, 64 * 1024 * 1024);
      const r = await spoke(args(fifo.path));
      assert.notEqual(r.code, 0);
      // `policy lint` reports on stdout, as it reports every finding.
      assert.match(r.stderr + r.stdout, /larger than \d+ bytes/);
      assert.ok((await fifo.written) < 64 * 1024 * 1024, 'the command stopped reading');
    });
  }
  for (const flag of ['--auth-file', '--ca-file']) {
    it(`${flag}: a FIFO that never ends is refused after the limit, not read whole`, async () => {
      const fifo = fifoFeeding(flag.slice(2), 64 * 1024 * 1024);
      const r = await spoke(['inspect', '127.0.0.1:1/t/p@sha256:' + 'a'.repeat(64), '--plain-http', flag, fifo.path]);
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /larger than \d+ bytes/);
      assert.ok((await fifo.written) < 64 * 1024 * 1024, 'the command stopped reading');
    });
  }

  const total = MAX_POLICY_ARTIFACT_BYTES + 32 * 1024 * 1024;
  for (const [name, args] of [
    ['push', (f: string) => ['push', f, '127.0.0.1:1/t/p:v1', '--kind', 'seccomp', '--plain-http']],
    ['profile validate', (f: string) => ['profile', 'validate', f]],
  ] as const) {
    it(`${name}: a FIFO that never ends is refused after the limit, not read whole`, async () => {
      const fifo = fifoFeeding(name.replace(' ', '-'), total);
      const r = await spoke(args(fifo.path));
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /larger than \d+ bytes/);
      assert.ok((await fifo.written) < total, 'the command stopped reading');
    });
  }
});
