// For the recording tests: what this machine can record with, a workload whose calls forked
// processes make, and a busybox command run to its exit through CRI under a Localhost seccomp
// profile (a recorded one): exit code and the container's log.

import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { RecordingBackend } from '../../src/recorder/backend.js';
import { bpfSupport } from '../../src/recorder/bpf.js';
import { startProfiledContainer, waitForExit } from '../../src/recorder/cri.js';
import { BUSYBOX_IMAGE } from './busybox-image.js';
import { CriClient, hostNetworkPod } from './cri-client.js';
import { findExecutable, runcUnavailableReason } from './runc.js';
import { requireTool } from './skip.js';

/**
 * Why recording under containerd + runc cannot run here, or undefined when it can. A missing
 * tool fails the run on CI (requireTool); a kernel that does not log SCMP_ACT_LOG stays a skip.
 */
export function recordingSkipReason(): string | undefined {
  const tool = runcUnavailableReason() ?? (findExecutable('containerd', ['/usr/bin/containerd']) && findExecutable('ctr', ['/usr/bin/ctr']) ? undefined : 'containerd not installed');
  return requireTool(tool) || (readFileSync('/proc/sys/kernel/seccomp/actions_logged', 'utf8').includes('log') ? undefined : 'kernel does not log SCMP_ACT_LOG');
}

/**
 * Why eBPF recording cannot run here, or false. A missing bpftrace fails the run on CI
 * (requireTool); no root, no kernel BTF or another architecture is a skip.
 */
export function bpfSkip(): string | false {
  const bpftrace = requireTool(findExecutable('bpftrace', ['/usr/bin/bpftrace']) ? undefined : 'bpftrace not installed');
  if (bpftrace) return bpftrace;
  const bpf = bpfSupport();
  return bpf.ok ? false : `eBPF: ${bpf.reason ?? 'unavailable'}`;
}

/**
 * Every recording backend, each with why it cannot run here (false when it can), so a backend
 * this machine lacks shows as a skipped suite, never as no suite. A missing bpftrace fails the
 * run on CI (requireTool); no root, no kernel BTF or no /dev/kmsg stays a skip.
 */
export function recordingBackends(): { backend: RecordingBackend; skip: string | false }[] {
  return [
    { backend: 'bpf', skip: bpfSkip() },
    { backend: 'audit', skip: existsSync('/dev/kmsg') ? false : 'no /dev/kmsg' },
  ];
}

/** A child (the `&&` chain's mkdir) and a grandchild (the inner sh's chmod) make the calls. */
/** The key the controller signs recording proofs with and the node checks them by, in the recording tests. */
export const RECORDING_KEY = Buffer.alloc(32, 9);

export const NESTED = ['sh', '-c', 'mkdir /tmp/x && sh -c "chmod 700 /tmp/x" && echo made'];

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
