// A cross-process lock on a file (O_EXCL create), for read-modify-write of small state files
// shared by the shim and `spoke pull` processes. Stale locks (dead owner pid, or older than
// STALE_MS) are broken. Content writes never need it: blobs are content-addressed and renamed.

import { open, readFile, rm, stat } from 'node:fs/promises';

const STALE_MS = 30_000;
const RETRY_MS = 5;

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function breakIfStale(lockPath: string): Promise<void> {
  try {
    const [text, st] = await Promise.all([readFile(lockPath, 'utf8'), stat(lockPath)]);
    const pid = Number.parseInt(text, 10);
    const dead = Number.isInteger(pid) && pid > 0 && !pidAlive(pid);
    if (dead || Date.now() - st.mtimeMs > STALE_MS) await rm(lockPath, { force: true });
  } catch {
    /* vanished meanwhile: fine */
  }
}

export async function withFileLock<T>(lockPath: string, fn: () => Promise<T>, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (let attempt = 0; ; attempt++) {
    try {
      const h = await open(lockPath, 'wx', 0o600);
      await h.writeFile(String(process.pid));
      await h.close();
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      if (attempt % 20 === 19) await breakIfStale(lockPath);
      if (Date.now() > deadline) throw new Error(`timed out waiting for lock ${lockPath}`);
      await new Promise((r) => setTimeout(r, RETRY_MS + Math.random() * RETRY_MS));
    }
  }
  try {
    return await fn();
  } finally {
    await rm(lockPath, { force: true });
  }
}
