// The shim's unix socket: the path made ready (never replacing a file that is not a socket, nor a
// live socket), then bound with its mode set before any client can connect.

import { chmod, lstat, unlink } from 'node:fs/promises';
import type { Http2Server } from 'node:http2';
import { connect as netConnect } from 'node:net';
import { SpokeError } from '../core/errors.js';

/** Binds `server` to the socket at `path` (group rw at creation), then sets `mode`. */
export async function listenOnSocket(server: Http2Server, path: string, mode: number): Promise<void> {
  const oldMask = process.umask(0o117);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } finally {
    process.umask(oldMask);
  }
  await chmod(path, mode);
}

/** Refuses a path that exists and is not a socket; removes a stale socket; refuses a live one. */
export async function prepareSocketPath(path: string): Promise<void> {
  let st;
  try {
    st = await lstat(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw e;
  }
  if (!st.isSocket()) {
    throw new SpokeError('InvalidArgument', `${path} exists and is not a socket; refusing to replace it`, { path }, { reason: 'OPTION_INVALID' });
  }
  const live = await new Promise<boolean>((resolve) => {
    const s = netConnect(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
  if (live) throw new SpokeError('InvalidArgument', `${path} is in use by another process`, { path }, { reason: 'SOCKET_IN_USE' });
  await unlink(path);
}
