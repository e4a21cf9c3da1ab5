// Reading the runtime's default seccomp profile live, from the runtime that is actually running
// (what a RuntimeDefault base means: runtime-default.ts), never from a copy of some version:
//   1. CRI Status (verbose) names the sandbox image (containerd: info["config"].sandboxImage);
//   2. a throwaway pod sandbox (host network, so no CNI is involved) and, in it, a container
//      from that image with seccomp RuntimeDefault are created; the container is never started;
//   3. the container's runtime spec (ContainerStatus verbose: info["info"].runtimeSpec) holds
//      linux.seccomp, the profile the runtime really applies for RuntimeDefault;
//   4. container and sandbox are removed (leftovers of an interrupted read carry the label
//      spoke.dev/runtime-default-probe and are removed by a later read once they are older than
//      any read in progress could be, so two readers never remove each other's probe).
// containerd derives its default from the container's capabilities; the probe drops them all,
// so every container, whatever capabilities it keeps or adds (which containerd would give a
// looser default), gets this strictest profile as its base: never looser than asked.

import { randomBytes } from 'node:crypto';
import { SpokeError } from '../core/errors.js';
import type { UnaryCaller } from './deps.js';
import { decodeId, getRepeatedMessages } from './messages.js';
import { RUNTIME } from './methods.js';
import { getMergedMessage, getString, getVarint } from './wire.js';
import { boolField, lenField, stringField, varintField } from './wire-write.js';
import { getStringMap } from './wire-map.js';

export const PROBE_LABEL = 'spoke.dev/runtime-default-probe';
const PROBE_NAMESPACE = 'spoke-system';
const PROBE_NAME = 'spoke-runtime-default';
/** NamespaceMode NODE: the probe uses the host network, so the runtime never calls CNI for it. */
const NAMESPACE_NODE = 2;
/** RunPodSandbox may have to pull the sandbox image on a fresh node. */
const RUN_TIMEOUT_MS = 120_000;
const CALL_TIMEOUT_MS = 30_000;
/** A probe sandbox older than this is a leftover (longer than any read may take). */
const LEFTOVER_AGE_MS = RUN_TIMEOUT_MS + 4 * CALL_TIMEOUT_MS;
/** The runtime spec travels as JSON in a status map; a real one is ~10 KiB. */
const MAX_INFO_BYTES = 4 * 1024 * 1024;

export interface RuntimeDefaultReading {
  /** linux.seccomp of the probe container's runtime spec, as JSON. */
  bytes: Buffer;
  sandboxImage: string;
}

/** Unavailable with reason RUNTIME_DEFAULT_UNAVAILABLE: the runtime default is not known. */
export function unavailable(message: string, cause?: unknown): SpokeError {
  return new SpokeError('Unavailable', message, {}, { reason: 'RUNTIME_DEFAULT_UNAVAILABLE', cause });
}

async function call(upstream: UnaryCaller, method: string, request: Buffer, timeoutMs = CALL_TIMEOUT_MS): Promise<Buffer> {
  try {
    return await upstream.unary(`${RUNTIME}${method}`, request, timeoutMs);
  } catch (e) {
    throw unavailable(`reading the runtime default profile: ${method}: ${(e as Error).message}`, e);
  }
}

/** One `map<string,string>` value of a verbose status response, parsed as JSON. */
function infoJson(response: Buffer, key: string, method: string): unknown {
  const text = getStringMap(response, 2, [key]).get(key);
  if (text === undefined || text === '') throw unavailable(`the runtime's ${method} (verbose) has no info["${key}"]`);
  if (text.length > MAX_INFO_BYTES) throw unavailable(`the runtime's ${method} info["${key}"] is larger than ${MAX_INFO_BYTES} bytes`);
  try {
    return JSON.parse(text);
  } catch {
    throw unavailable(`the runtime's ${method} info["${key}"] is not JSON`);
  }
}

function member(v: unknown, key: string): unknown {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>)[key] : undefined;
}

/**
 * Numbers beyond 2^53 lose their value in JSON.parse; the runtime default is refused rather than
 * read with a changed argument value.
 */
function checkExactNumbers(v: unknown, path: string): void {
  if (typeof v === 'number') {
    if (!Number.isSafeInteger(v)) throw unavailable(`the runtime default profile has a number at ${path} that cannot be read exactly`);
  } else if (Array.isArray(v)) v.forEach((x, i) => checkExactNumbers(x, `${path}[${i}]`));
  else if (typeof v === 'object' && v !== null) for (const [k, x] of Object.entries(v)) checkExactNumbers(x, `${path}.${k}`);
}

/** linux.seccomp of a runtime spec found in ContainerStatus verbose info["info"], as JSON bytes. */
export function seccompOfStatusInfo(info: unknown): Buffer {
  const spec = member(info, 'runtimeSpec');
  if (spec === undefined) throw unavailable('the runtime does not report the runtime spec of its containers (ContainerStatus info.runtimeSpec)');
  const seccomp = member(member(spec, 'linux'), 'seccomp');
  if (seccomp === undefined || seccomp === null) throw unavailable('the runtime applies no seccomp profile for RuntimeDefault (is seccomp enabled in the runtime and the kernel?)');
  checkExactNumbers(seccomp, 'linux.seccomp');
  return Buffer.from(JSON.stringify(seccomp));
}

function probePodConfig(uid: string): Buffer {
  const metadata = Buffer.concat([stringField(1, PROBE_NAME), stringField(2, uid), stringField(3, PROBE_NAMESPACE)]);
  const label = lenField(6, Buffer.concat([stringField(1, PROBE_LABEL), stringField(2, 'true')]));
  const securityContext = Buffer.concat([lenField(1, varintField(1, NAMESPACE_NODE)), lenField(9, Buffer.alloc(0))]);
  return Buffer.concat([lenField(1, metadata), label, lenField(8, lenField(2, securityContext))]);
}

function probeContainerConfig(image: string): Buffer {
  // seccomp = SecurityProfile{} (profile_type RuntimeDefault, the zero value, present), and
  // capabilities { drop_capabilities: ["ALL"] }: containerd's default opens calls for the
  // capabilities a container keeps (chroot with CAP_SYS_CHROOT), so the probe keeps none and reads
  // the strictest default, a subset of every container's (docs/shim.md#runtimedefault-base).
  const capabilities = lenField(1, stringField(2, 'ALL'));
  const linux = lenField(2, Buffer.concat([capabilities, lenField(15, Buffer.alloc(0))]));
  return Buffer.concat([lenField(1, stringField(1, PROBE_NAME)), lenField(2, stringField(1, image)), lenField(15, linux)]);
}

async function removeSandbox(upstream: UnaryCaller, id: string): Promise<void> {
  const req = stringField(1, id);
  await call(upstream, 'StopPodSandbox', req);
  await call(upstream, 'RemovePodSandbox', req);
}

/**
 * Removes probe sandboxes an interrupted read left behind (PodSandbox.id 1, metadata 2, created_at
 * 4 in ns). The label alone is not enough: a pod's labels reach its sandbox, so any pod may carry
 * it; the probe's metadata (name, namespace, uid) says it is one. One that cannot be removed now
 * is left for the next read, which it does not fail.
 */
async function removeLeftovers(upstream: UnaryCaller): Promise<void> {
  const selector = lenField(3, Buffer.concat([stringField(1, PROBE_LABEL), stringField(2, 'true')]));
  const list = await call(upstream, 'ListPodSandbox', lenField(1, selector));
  const before = (Date.now() - LEFTOVER_AGE_MS) * 1e6;
  for (const item of getRepeatedMessages(list, 1)) {
    const metadata = getMergedMessage(item, 2) ?? Buffer.alloc(0);
    const probe = getString(metadata, 1) === PROBE_NAME && getString(metadata, 3) === PROBE_NAMESPACE && getString(metadata, 2).startsWith(`${PROBE_NAME}-`);
    if (probe && getVarint(item, 4) < before) await removeSandbox(upstream, getString(item, 1)).catch(() => undefined);
  }
}

/** The sandbox image the runtime names in its verbose Status (containerd: config.sandboxImage). */
async function sandboxImageOf(upstream: UnaryCaller): Promise<string> {
  const config = infoJson(await call(upstream, 'Status', boolField(1, true)), 'config', 'Status');
  const image = member(config, 'sandboxImage');
  if (typeof image !== 'string' || image === '') {
    throw unavailable("the runtime's Status does not name its sandbox image (info.config.sandboxImage); pin the profile with the config key runtimeDefault");
  }
  return image;
}

/**
 * Reads the runtime's default seccomp profile live (header). The probe is removed whatever
 * happens; every failure is Unavailable with reason RUNTIME_DEFAULT_UNAVAILABLE.
 */
export async function readRuntimeDefault(upstream: UnaryCaller): Promise<RuntimeDefaultReading> {
  const sandboxImage = await sandboxImageOf(upstream);
  await removeLeftovers(upstream);
  const podConfig = probePodConfig(`${PROBE_NAME}-${randomBytes(8).toString('hex')}`);
  const run = await call(upstream, 'RunPodSandbox', lenField(1, podConfig), RUN_TIMEOUT_MS);
  const sandboxId = decodeId(run);
  if (sandboxId === '') throw unavailable('RunPodSandbox returned no sandbox id');
  try {
    const created = await call(upstream, 'CreateContainer', Buffer.concat([stringField(1, sandboxId), lenField(2, probeContainerConfig(sandboxImage)), lenField(3, podConfig)]));
    const containerId = decodeId(created);
    if (containerId === '') throw unavailable('CreateContainer returned no container id');
    try {
      const status = await call(upstream, 'ContainerStatus', Buffer.concat([stringField(1, containerId), boolField(2, true)]));
      return { bytes: seccompOfStatusInfo(infoJson(status, 'info', 'ContainerStatus')), sandboxImage };
    } finally {
      await call(upstream, 'RemoveContainer', stringField(1, containerId)).catch(() => undefined);
    }
  } finally {
    await removeSandbox(upstream, sandboxId).catch(() => undefined);
  }
}
