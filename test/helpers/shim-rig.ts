// The files of one shim under test: a fresh directory holding its socket, store, seccomp root and
// policy, and the `spoke shim` arguments naming them. Shared by the shim integration tests
// (teardown: tearDownShimRig in shim.ts). startShimRig adds the rest of the usual rig: real
// containerd behind a Tap, a real registry, the shim between them and a CRI client on its socket.

import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startContainerd, Tap, type Containerd } from './containerd.js';
import { CriClient, hostNetworkPod, type Msg } from './cri-client.js';
import { unsignedPolicy } from './node.js';
import { startRegistry, type TestRegistry } from './registry.js';
import { startShim, tearDownShimRig, type ShimProc } from './shim.js';

export interface ShimFiles {
  work: string;
  sock: string;
  storeDir: string;
  seccompRoot: string;
  policy: string;
  /** `spoke shim` arguments: these files, `upstream`, then `extra`. */
  args(upstream: string, ...extra: string[]): string[];
}

/** A fresh /tmp/<prefix>… directory; `policyText`, when given, is written to its policy.yaml. */
export function shimFiles(prefix: string, policyText?: string): ShimFiles {
  const work = mkdtempSync(`/tmp/${prefix}`);
  const files = { work, sock: join(work, 'shim.sock'), storeDir: join(work, 'store'), seccompRoot: join(work, 'seccomp'), policy: join(work, 'policy.yaml') };
  if (policyText !== undefined) writeFileSync(files.policy, policyText);
  return {
    ...files,
    args: (upstream, ...extra) => ['--listen', files.sock, '--upstream', upstream, '--store', files.storeDir, '--seccomp-root', files.seccompRoot, '--policy', files.policy, ...extra],
  };
}

export interface PodOptions {
  /** Sandbox name (and uid-<name>); pod-<n> by default. */
  name?: string;
  seccomp?: Msg;
  annotations?: Record<string, string>;
  privileged?: boolean;
}

export interface Pod {
  id: string;
  config: Msg;
  name: string;
}

export interface ShimRig {
  ctrd: Containerd;
  reg: TestRegistry;
  tap: Tap;
  files: ShimFiles;
  /** The arguments the shim was started with. */
  shimArgs: string[];
  /** The running shim: a test that restarts it stores the new one here, so tearDown stops that one. */
  shim: ShimProc | undefined;
  cri: CriClient;
  /** Every sandbox id pod() ran, in order. */
  pods: string[];
  /** A host-network sandbox config with its own log directory under the rig's directory. */
  podConfig(o?: PodOptions): Msg;
  /** RunPodSandbox through the shim, with `handler` as the runtime handler when given. */
  pod(o?: PodOptions & { handler?: string }): Promise<Pod>;
  removePod(id: string): Promise<void>;
  tearDown(): Promise<void>;
}

/**
 * Starts containerd, a registry and the shim (upstream: a Tap in front of containerd) under a
 * fresh /tmp/<prefix>… directory. The policy allows unsigned `kinds` (seccomp by default) from
 * <registry>/profiles; `extraArgs` runs once the directory exists (to write files the shim reads)
 * and returns the shim's arguments beyond the rig's own.
 */
export async function startShimRig(prefix: string, o: { kinds?: readonly string[]; extraArgs?: (files: ShimFiles) => string[] | Promise<string[]> } = {}): Promise<ShimRig> {
  const ctrd = await startContainerd();
  let reg: TestRegistry | undefined;
  let files: ShimFiles | undefined;
  let tap: Tap | undefined;
  let shimArgs: string[];
  let shim: ShimProc;
  try {
    reg = await startRegistry();
    files = shimFiles(prefix, unsignedPolicy([`${reg.host}/profiles`], '', o.kinds));
    const extra = (await o.extraArgs?.(files)) ?? [];
    tap = new Tap(join(files.work, 'tap.sock'), ctrd.socket);
    await tap.start();
    shimArgs = files.args(tap.listen, ...extra);
    shim = await startShim(shimArgs);
  } catch (e) {
    // What started is stopped: left running, it would keep the test file's process (and the
    // suite) waiting instead of failing.
    await tearDownShimRig({ ctrd, tap, reg, work: files?.work });
    throw e;
  }
  const cri = new CriClient(files.sock);
  let seq = 0;
  const rig: ShimRig = {
    ctrd,
    reg,
    tap,
    files,
    shimArgs,
    shim,
    cri,
    pods: [],
    podConfig: (p = {}) => {
      const name = p.name ?? `pod-${++seq}`;
      const logDir = join(files.work, `logs-${name}`);
      mkdirSync(logDir, { recursive: true });
      const config: Msg = { ...hostNetworkPod(name, logDir, p.seccomp ? { seccomp: p.seccomp } : {}), ...(p.annotations ? { annotations: p.annotations } : {}) };
      if (p.privileged) ((config.linux as Msg).security_context as Msg).privileged = true;
      return config;
    },
    pod: async (p = {}) => {
      const config = rig.podConfig(p);
      const id = (await cri.rt('RunPodSandbox', { config, ...(p.handler !== undefined ? { runtime_handler: p.handler } : {}) })).pod_sandbox_id as string;
      rig.pods.push(id);
      return { id, config, name: (config.metadata as Msg).name as string };
    },
    removePod: async (id) => {
      await cri.rt('StopPodSandbox', { pod_sandbox_id: id });
      await cri.rt('RemovePodSandbox', { pod_sandbox_id: id });
    },
    tearDown: () => tearDownShimRig({ cri, ctrd, shim: rig.shim, tap, reg, work: files.work }),
  };
  return rig;
}
