// The shim's socket path made ready: a live socket is never taken for a stale one, whatever its
// listener is doing; a stale one is removed, also by two shims starting at once.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { prepareSocketPath } from '../../../src/cri/socket.js';
import { spokeError } from '../../helpers/assert.js';

const dir = mkdtempSync(join(tmpdir(), 'spoke-socket-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** A process listening on `path` whose event loop is busy for `ms`: it accepts nobody meanwhile. */
async function busyListener(path: string, ms: number) {
  const script = `const s = require('node:net').createServer(); s.listen({ path: ${JSON.stringify(path)}, backlog: 1 }, () => { process.stdout.write('up'); Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ${ms}); });`;
  const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve) => child.stdout.once('data', () => resolve()));
  return child;
}

/** A connect's outcome: 'connected', or the error code. */
function tryConnect(path: string): Promise<string> {
  return new Promise((resolve) => {
    const s = connect(path);
    s.once('connect', () => resolve('connected'));
    s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
  });
}

describe('prepareSocketPath', () => {
  it('a live listener whose accept queue is full keeps its socket: SOCKET_IN_USE, never unlinked', async () => {
    const path = join(dir, 'busy.sock');
    const child = await busyListener(path, 20_000);
    try {
      // Fill the queue until the kernel answers EAGAIN, as it does a shim busy with a burst.
      let outcome = '';
      for (let i = 0; i < 64 && outcome !== 'EAGAIN'; i++) outcome = await tryConnect(path);
      assert.equal(outcome, 'EAGAIN');
      await assert.rejects(prepareSocketPath(path), spokeError({ code: 'InvalidArgument', reason: 'SOCKET_IN_USE' }));
      assert.ok(existsSync(path), 'the live socket is still there');
    } finally {
      child.kill('SIGKILL');
    }
  });

  it('a stale socket is removed, also when two shims start at once', async () => {
    const path = join(dir, 'stale.sock');
    const child = await busyListener(path, 1);
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    assert.ok(existsSync(path), 'a killed listener leaves its socket file');
    assert.equal(await tryConnect(path), 'ECONNREFUSED');
    await Promise.all([prepareSocketPath(path), prepareSocketPath(path)]);
    assert.ok(!existsSync(path));
  });
});
