// Runs a busybox command to its exit through CRI under a Localhost seccomp profile (a recorded
// one), for the recording tests: exit code and the container's log.

import { mkdtempSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { BUSYBOX_IMAGE } from './busybox-image.js';
import { CriClient, hostNetworkPod } from './cri-client.js';

export interface Exited {
  exitCode: number;
  log: string;
}

export async function runUnderProfile(socket: string, dir: string, command: string[], profilePath: string): Promise<Exited> {
  const cri = new CriClient(socket);
  const logDir = mkdtempSync(join(dir, 'logs-'));
  const podConfig = hostNetworkPod(`replay-${logDir.slice(-6).toLowerCase()}`, logDir);
  const podId = (await cri.rt('RunPodSandbox', { config: podConfig })).pod_sandbox_id as string;
  try {
    const id = (
      await cri.rt('CreateContainer', {
        pod_sandbox_id: podId,
        sandbox_config: podConfig,
        config: {
          metadata: { name: 'c', attempt: 0 },
          image: { image: BUSYBOX_IMAGE },
          command,
          log_path: 'c.log',
          linux: { security_context: { seccomp: { profile_type: 'Localhost', localhost_ref: profilePath } } },
        },
      })
    ).container_id as string;
    await cri.rt('StartContainer', { container_id: id });
    for (let t = 0; t < 600; t++) {
      const st = (await cri.rt('ContainerStatus', { container_id: id })).status as { state: string; exit_code: number };
      if (st.state === 'CONTAINER_EXITED') return { exitCode: st.exit_code, log: readFileSync(join(logDir, 'c.log'), 'utf8') };
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`${command.join(' ')} did not exit within 30 s`);
  } finally {
    await cri.rt('StopPodSandbox', { pod_sandbox_id: podId }).catch(() => undefined);
    await cri.rt('RemovePodSandbox', { pod_sandbox_id: podId }).catch(() => undefined);
    cri.close();
  }
}
