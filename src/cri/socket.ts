// The shim's unix socket: the path made ready (never replacing a file that is not a socket, nor a
// live socket), then bound with its mode set before any client can connect, and removed at the
// end only while it is still this shim's.

import type { Stats } from 'node:fs';
import { chmod, link, lstat, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { Http2Server } from 'node:http2';
import { connect as netConnect } from 'node:net';
import { SpokeError } from '../core/errors.js';

/** The socket file a server bound: its device and inode. */
export type SocketIdentity = string;

/**
 * Binds `server` to a socket at `path` with `mode`; returns the file's identity. The socket is
 * bound under a temp name, given its mode, then linked to `path` (which must not exist: see
 * prepareSocketPath), so no client ever sees it with another mode and no other file is replaced.
 * libuv removes the name it bound when the server closes: that is the temp name, gone by then,
 * so closing never removes a socket another shim has bound at `path` since (removeOwnSocket).
 */
export async function listenOnSocket(server: Http2Server, path: string, mode: number): Promise<SocketIdentity> {
  const temp = bindName(path);
  await unlink(temp).catch(() => undefined);
  const oldMask = process.umask(0o177);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(temp, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } finally {
    process.umask(oldMask);
  }
  try {
    await chmod(temp, mode);
    await link(temp, path);
  } catch (e) {
    await new Promise<void>((r) => server.close(() => r()));
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') throw new SpokeError('InvalidArgument', `${path} is in use by another process`, { path }, { reason: 'SOCKET_IN_USE' });
    throw e;
  } finally {
    await unlink(temp).catch(() => undefined);
  }
  return socketIdentity(await lstat(path));
}

/**
 * The name the socket for `path` is bound under: what `ss -x` and /proc/net/unix show for it
 * (the file itself is gone once linked to `path`).
 */
export function bindName(path: string): string {
  return join(dirname(path), `.${basename(path)}.${process.pid}.binding`);
}

/**
 * Removes the socket at `path` when it is still the one bound (`identity`): a shim started since
 * may have taken the path over (it removes a socket nobody answers on, as this one during its
 * shutdown), and its socket stays.
 */
export async function removeOwnSocket(path: string, identity: SocketIdentity): Promise<boolean> {
  try {
    if (socketIdentity(await lstat(path)) !== identity) return false;
    await unlink(path);
    return true;
  } catch {
    return false;
  }
}

function socketIdentity(st: { dev: number; ino: number }): SocketIdentity {
  return `${st.dev}:${st.ino}`;
}

/**
 * What a shim starting now would refuse `path` for, with one lstat and changing nothing (spoke
 * status runs it too): a file there that is not a socket. Undefined when nothing is there or a
 * socket is (a live one is the running shim's, gone once it stops).
 */
export async function socketPathRefusal(path: string): Promise<SpokeError | undefined> {
  return refusalOf(path, await lstatIfThere(path));
}

function refusalOf(path: string, st: Stats | undefined): SpokeError | undefined {
  if (st === undefined || st.isSocket()) return undefined;
  return new SpokeError('InvalidArgument', `${path} exists and is not a socket; refusing to replace it`, { path }, { reason: 'OPTION_INVALID' });
}

async function lstatIfThere(path: string): Promise<Stats | undefined> {
  try {
    return await lstat(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
}

/** Refuses a path that exists and is not a socket; removes a stale socket; refuses a live one. */
export async function prepareSocketPath(path: string): Promise<void> {
  const st = await lstatIfThere(path);
  if (st === undefined) return;
  const refusal = refusalOf(path, st);
  if (refusal !== undefined) throw refusal;
  // Only a refusal (nobody listens) or a vanished file says stale: a listener busy enough that
  // its queue is full answers EAGAIN, and anything else is taken as alive too, as a lock's owner
  // is (src/store/lock.ts).
  const live = await new Promise<boolean>((resolve) => {
    const s = netConnect(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code !== 'ECONNREFUSED' && e.code !== 'ENOENT'));
  });
  if (live) throw new SpokeError('InvalidArgument', `${path} is in use by another process`, { path }, { reason: 'SOCKET_IN_USE' });
  // Another shim starting at once may have removed it first.
  await unlink(path).catch((e: NodeJS.ErrnoException) => {
    if (e.code !== 'ENOENT') throw e;
  });
}
