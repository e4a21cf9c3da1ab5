// The runtime's own default seccomp profile: what a pod means by a RuntimeDefault base_profile,
// the second input of the KEP merge (KEP-6061 §4: baseline, pod base, artifact). It is taken from
// the runtime that is actually running, never from a copy of some version:
//   1. CRI Status (verbose) names the sandbox image (containerd: info["config"].sandboxImage);
//   2. a throwaway pod sandbox (host network, so no CNI is involved) and, in it, a container
//      from that image with seccomp RuntimeDefault are created; the container is never started;
//   3. the container's runtime spec (ContainerStatus verbose: info["info"].runtimeSpec) holds
//      linux.seccomp, the profile the runtime really applies for RuntimeDefault;
//   4. container and sandbox are removed (leftovers of an interrupted read carry the label
//      spoke.dev/runtime-default-probe and are removed by a later read once they are older than
//      any read in progress could be, so two readers never remove each other's probe).
// containerd derives its default from the container's capabilities; the probe has the default
// capability set, so a container that adds capabilities (which containerd would give a looser
// default) gets this stricter profile as its base: never looser than asked.
// The shim reads it at start and again after every reconnect to the runtime (a restarted runtime
// may be another version), or uses the file pinned with the config key `runtimeDefault`.

import { randomBytes } from 'node:crypto';
import { sha256Hex } from '../core/digest.js';
import { SpokeError, asSpokeError } from '../core/errors.js';
import type { Logger } from '../core/runtime.js';
import type { KnownRuntimeDefault, RuntimeDefaultProvider, SeccompOps, UnaryCaller } from './deps.js';
import { decodeId, getRepeatedMessages } from './messages.js';
import { RUNTIME } from './methods.js';
import { boolField, getString, getStringMap, getVarint, lenField, stringField, varintField } from './wire.js';

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

function unavailable(message: string, cause?: unknown): SpokeError {
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
  // seccomp = SecurityProfile{} (profile_type RuntimeDefault, the zero value, present).
  const linux = lenField(2, lenField(15, Buffer.alloc(0)));
  return Buffer.concat([lenField(1, stringField(1, PROBE_NAME)), lenField(2, stringField(1, image)), lenField(15, linux)]);
}

async function removeSandbox(upstream: UnaryCaller, id: string): Promise<void> {
  const req = stringField(1, id);
  await call(upstream, 'StopPodSandbox', req);
  await call(upstream, 'RemovePodSandbox', req);
}

/** Removes probe sandboxes an interrupted read left behind (PodSandbox.id 1, created_at 4 in ns). */
async function removeLeftovers(upstream: UnaryCaller): Promise<void> {
  const selector = lenField(3, Buffer.concat([stringField(1, PROBE_LABEL), stringField(2, 'true')]));
  const list = await call(upstream, 'ListPodSandbox', lenField(1, selector));
  const before = (Date.now() - LEFTOVER_AGE_MS) * 1e6;
  for (const item of getRepeatedMessages(list, 1)) {
    if (getVarint(item, 4) < before) await removeSandbox(upstream, getString(item, 1));
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

export interface RuntimeDefaultSourceOptions<P> {
  /** Bytes → profile: strict decode and the runtime-level checks (a runtime's own profile need not meet artifact rules). */
  decode(bytes: Uint8Array): P;
  logger: Logger;
  /** A pinned file (config key runtimeDefault): used instead of reading the runtime. */
  pinned?: { file: string; bytes: Buffer };
  /** Each runtime default that differs from the one before (start, a re-read with other content). */
  onChange?(rd: KnownRuntimeDefault<P>): void;
  /** The read itself (default readRuntimeDefault). */
  read?(upstream: UnaryCaller): Promise<RuntimeDefaultReading>;
  /** First retry after a failed read; doubles up to 60 s. Default 1 s. */
  retryMs?: number;
}

const MAX_RETRY_MS = 60_000;

/**
 * The runtime default the shim merges with. Fail closed: while it is not known (never read, the
 * read failed, or the runtime reconnected and the new read is not done), get() throws or waits
 * for the read in progress; it never answers with a profile of an earlier runtime.
 */
export class RuntimeDefaultSource<P> implements RuntimeDefaultProvider<P> {
  private known: KnownRuntimeDefault<P> | undefined;
  private reading: Promise<KnownRuntimeDefault<P>> | undefined;
  private upstream: UnaryCaller | undefined;
  private lastError: SpokeError | undefined;
  private failedAt = 0;
  private retryMs: number;
  private retryTimer: NodeJS.Timeout | undefined;
  private lastSha: string | undefined;

  constructor(private readonly opts: RuntimeDefaultSourceOptions<P>) {
    this.retryMs = opts.retryMs ?? 1000;
    if (opts.pinned) {
      const { file, bytes } = opts.pinned;
      let profile: P;
      try {
        profile = opts.decode(bytes);
      } catch (e) {
        const err = asSpokeError(e, 'InvalidArgument');
        throw new SpokeError('InvalidArgument', `runtimeDefault ${file}: ${err.message}`, { file }, { cause: e, reason: err.reason });
      }
      this.set({ profile, sha: sha256Hex(bytes) });
      opts.logger.log('info', 'runtime default profile pinned', { file, sha256: this.known!.sha });
    }
  }

  /** The profile known now, without waiting (undefined while unknown). */
  current(): KnownRuntimeDefault<P> | undefined {
    return this.reading ? undefined : this.known;
  }

  refresh(upstream: UnaryCaller): void {
    if (this.opts.pinned) return;
    this.upstream = upstream;
    // A new connection is a new runtime: its retries start from the first delay again, not from
    // where the failures of a restart's flapping connections left the backoff.
    this.retryMs = this.opts.retryMs ?? 1000;
    void this.readNow().catch(() => undefined);
  }

  async get(): Promise<KnownRuntimeDefault<P>> {
    if (this.reading) return this.reading;
    if (this.known) return this.known;
    if (this.upstream === undefined) throw this.lastError ?? unavailable('the runtime default profile has not been read yet: the runtime was not reached');
    if (this.lastError && Date.now() - this.failedAt < this.retryMs) throw this.lastError;
    return this.readNow();
  }

  close(): void {
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
  }

  /** Starts a read after the one in progress (a reconnect supersedes it); callers wait for the latest. */
  private readNow(): Promise<KnownRuntimeDefault<P>> {
    const upstream = this.upstream!;
    const read = this.opts.read ?? readRuntimeDefault;
    this.known = undefined;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    const previous = this.reading ?? Promise.resolve();
    const p: Promise<KnownRuntimeDefault<P>> = previous
      .catch(() => undefined)
      .then(async () => {
        let reading: RuntimeDefaultReading;
        let profile: P;
        const started = performance.now();
        try {
          reading = await read(upstream);
          profile = this.opts.decode(reading.bytes);
        } catch (e) {
          const err = asSpokeError(e, 'Unavailable');
          throw err.reason === 'RUNTIME_DEFAULT_UNAVAILABLE' ? err : unavailable(`the runtime default profile cannot be used: ${err.message}`, e);
        }
        const known = { profile, sha: sha256Hex(reading.bytes) };
        this.opts.logger.log('info', 'runtime default profile read from the runtime', { sandboxImage: reading.sandboxImage, sha256: known.sha, ms: Math.round(performance.now() - started) });
        return known;
      });
    this.reading = p;
    p.then(
      (known) => {
        if (this.reading !== p) return;
        this.reading = undefined;
        this.lastError = undefined;
        this.retryMs = this.opts.retryMs ?? 1000;
        this.set(known);
      },
      (e: SpokeError) => {
        if (this.reading !== p) return;
        this.reading = undefined;
        this.lastError = e;
        this.failedAt = Date.now();
        this.opts.logger.log('error', 'runtime default profile unavailable: pods asking for a RuntimeDefault base fail until it is read', { error: e.message, retryMs: this.retryMs });
        this.retryTimer = setTimeout(() => {
          this.retryTimer = undefined;
          if (this.known === undefined && this.reading === undefined) void this.readNow().catch(() => undefined);
        }, this.retryMs);
        this.retryTimer.unref();
        this.retryMs = Math.min(MAX_RETRY_MS, this.retryMs * 2);
      },
    );
    return p;
  }

  private set(known: KnownRuntimeDefault<P>): void {
    this.known = known;
    if (known.sha !== this.lastSha) {
      this.lastSha = known.sha;
      this.opts.onChange?.(known);
    }
  }
}

/**
 * Compares the node baseline with the runtime default (KEP-6061 §4: the baseline is the first
 * merge input for every OCI profile, the runtime default only for pods that ask for it). Where
 * the baseline permits what the runtime default denies, a pod with an OCI profile and no
 * RuntimeDefault base can run looser than the runtime default: logged as a warning with what is
 * looser, not refused, because the merge of pods that do ask for RuntimeDefault stays exact and
 * the shim must keep serving them. Returns what is looser ("syscall x", "architecture y", ...).
 */
export function baselineLooserThanRuntimeDefault<P>(seccomp: Pick<SeccompOps<P>, 'intersect'>, baseline: P, rd: KnownRuntimeDefault<P>, logger: Logger): string[] {
  let looser: string[];
  try {
    // The runtime default as the trusted input, the baseline as the one it constrains.
    looser = seccomp.intersect(rd.profile, undefined, baseline).constrained.flatMap(describeLooser);
  } catch (e) {
    logger.log('warn', 'node baseline not compared with the runtime default', { error: asSpokeError(e).message });
    return [];
  }
  if (looser.length > 0) {
    logger.log('warn', 'node baseline is looser than the runtime default: OCI profiles without a RuntimeDefault base may permit what RuntimeDefault denies', {
      runtimeDefaultSha256: rd.sha,
      looser: looser.length,
      rules: looser.slice(0, 50),
    });
  }
  return looser;
}

/** What a constraint of the runtime default on the baseline says is looser; errno-only differences are not. */
function describeLooser(c: unknown): string[] {
  const k = c as { kind?: string; syscall?: string; args?: string; architecture?: string; flag?: string; artifact?: { action: string }; effective?: { action: string } };
  switch (k.kind) {
    case 'syscall':
      return k.artifact?.action === k.effective?.action ? [] : [`syscall ${k.syscall}${k.args === undefined ? '' : ` when ${k.args}`}`];
    case 'defaultAction':
      return k.artifact?.action === k.effective?.action ? [] : ['default action'];
    case 'architecture':
      return [`architecture ${k.architecture}`];
    default:
      return [`flag ${k.flag}`];
  }
}
