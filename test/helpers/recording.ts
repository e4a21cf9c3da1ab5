// Runs a busybox command to its exit through CRI under a Localhost seccomp profile (a recorded
// one), for the recording tests: exit code and the container's log.

import { mkdtempSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startProfiledContainer, waitForExit } from '../../src/recorder/cri.js';
import { BUSYBOX_IMAGE } from './busybox-image.js';
import { CriClient, hostNetworkPod } from './cri-client.js';

export interface Exited {
  exitCode: number;
  log: string;
}

export async function runUnderProfile(socket: string, dir: string, command: string[], profilePath: string): Promise<Exited> {
  const cri = new CriClient(socket);
  const logDir = mkdtempSync(join(dir, 'logs-'));
  const config = hostNetworkPod(`replay-${logDir.slice(-6).toLowerCase()}`, logDir);
  const podId = (await cri.rt('RunPodSandbox', { config })).pod_sandbox_id as string;
  try {
    const id = await startProfiledContainer(cri, { id: podId, config }, { name: 'c', image: BUSYBOX_IMAGE, command, profilePath });
    const exitCode = await waitForExit(cri, id, 30_000);
    return { exitCode, log: readFileSync(join(logDir, 'c.log'), 'utf8') };
  } finally {
    await cri.rt('StopPodSandbox', { pod_sandbox_id: podId }).catch(() => undefined);
    await cri.rt('RemovePodSandbox', { pod_sandbox_id: podId }).catch(() => undefined);
    cri.close();
  }
}
