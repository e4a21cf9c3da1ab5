// One shim serves a store at a time: a second `spoke shim` on the same store (a rolling update
// with surge, a second unit by mistake) waits, saying so, until the first has stopped, and then
// starts. Two shims on one store raced over the in-use set, AppArmor unloads and the socket.
// Real shim processes in front of a real containerd.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { SHIM_NODE_OPTIONS } from '../../src/cli/commands/shim.js';
import { SPOKE_BIN } from '../helpers/cli.js';
import { startContainerd, type Containerd } from '../helpers/containerd.js';
import { startShim, stopShim, type ShimProc } from '../helpers/shim.js';

describe('one shim per store', () => {
  let dir: string;
  let ctrd: Containerd;
  let firstShim: ShimProc | undefined;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'spoke-lock-'));
    ctrd = await startContainerd();
    writeFileSync(join(dir, 'policy.yaml'), 'apiVersion: spoke.dev/v1alpha1\nkind: NodeProfilePolicy\nrules: []\n');
  });
  after(async () => {
    await stopShim(firstShim);
    await ctrd.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  // Both on one metrics address, as two copies of one unit are: the second must wait before it binds anything.
  let metrics = '';
  const args = (sock: string) => ['--listen', join(dir, sock), '--upstream', ctrd.socket, '--store', join(dir, 'store'), '--seccomp-root', join(dir, 'seccomp'), '--policy', join(dir, 'policy.yaml'), '--metrics', metrics, '--log-level', 'info'];

  it('a second shim on the store waits for the first to stop, then serves', async () => {
    const free = createServer();
    await new Promise<void>((r) => free.listen(0, '127.0.0.1', r));
    metrics = `127.0.0.1:${(free.address() as AddressInfo).port}`;
    await new Promise((r) => free.close(r));
    firstShim = await startShim(args('a.sock'));
    const second = spawn(process.execPath, [SPOKE_BIN, 'shim', ...args('b.sock')], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, NODE_OPTIONS: SHIM_NODE_OPTIONS } });
    let err = '';
    second.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    /** The first of `texts` the second shim logs (within 20 s: a bound, not a delay). */
    const first = (...texts: string[]) =>
      new Promise<string>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`none of ${texts.join(', ')} within 20 s: ${err}`)), 20_000);
        const check = () => {
          const hit = texts.find((x) => err.includes(x));
          if (hit === undefined) return;
          clearTimeout(t);
          second.stderr!.off('data', check);
          resolve(hit);
        };
        second.stderr!.on('data', check);
        second.once('exit', (code) => reject(new Error(`second shim exited ${code}: ${err}`)));
        check();
      });
    try {
      assert.equal(await first('another shim serves this store', 'shim ready'), 'another shim serves this store');
      assert.ok(!existsSync(join(dir, 'b.sock')), 'no socket while waiting');
      await stopShim(firstShim);
      firstShim = undefined;
      assert.equal(await first('shim ready'), 'shim ready');
      assert.ok(existsSync(join(dir, 'b.sock')));
    } finally {
      second.kill('SIGTERM');
      await new Promise((r) => (second.exitCode !== null ? r(undefined) : second.once('exit', r)));
    }
  });
});
