// `spoke shim`: the node daemon. Composition only: config → logger/metrics → baseline → node
// pipeline (policy, store, registry, verifier) → ShimServer; signals for reload and shutdown.

import { mkdirSync, readFileSync } from 'node:fs';
import { getHeapStatistics } from 'node:v8';
import { dirname, join } from 'node:path';
import { loadNodeConfig, LOG_LEVELS } from '../../config/node-config.js';
import { SpokeError, asSpokeError } from '../../core/errors.js';
import type { LogLevel } from '../../core/runtime.js';
import { readRecordingKey } from '../../cri/recording.js';
import { ShimServer } from '../../cri/server.js';
import type { SeccompOps } from '../../cri/deps.js';
import { createAppArmorOps } from '../../cri/apparmor.js';
import { GcScheduler } from '../../cri/gc.js';
import { JsonLogger } from '../../observe/log.js';
import { createPromMetrics, noopMetrics, serveMetrics, type Metrics } from '../../observe/metrics.js';
import { PolicyHolder } from '../../config/policy-holder.js';
import { auditIntersect, decodeSeccomp, formatConstraint, intersect, validate, validateBaseline, validateStrict, type SeccompProfile } from '../../profiles/seccomp/index.js';
import { baselineLooserThanRuntimeDefault } from '../../cri/baseline-looser.js';
import { RuntimeDefaultSource } from '../../cri/runtime-default.js';
import type { PullRequest, PullResult } from '../../pull.js';
import { ProfileStore } from '../../store/store.js';
import { parseCommand } from '../args.js';
import { UsageError } from '../errors.js';
import type { NodeContext } from '../wiring.js';

const HELP = `usage: spoke shim [--listen SOCK --upstream SOCK] [options]

The KEP-6061 CRI shim. Serves CRI on --listen (point the kubelet's
--container-runtime-endpoint at it) and forwards every call to the runtime on --upstream
(containerd or CRI-O) byte for byte, except: PullSecurityProfileArtifact /
PullSecurityProfile, ListSecurityProfiles and RemoveSecurityProfile are answered by spoke;
RunPodSandbox / CreateContainer requests whose seccomp profile is of type OCI get a Localhost
profile = node baseline ∩ pod base profile ∩ artifact (a RuntimeDefault base is the runtime's
own default profile, see below); a KEP OCI profile on a privileged container or sandbox is
refused (INVALID_ARGUMENT: the runtime would not enforce it); an AppArmor profile of type OCI is
merged with the shipped AppArmor baseline (policy/apparmor-baseline.json), loaded under a
generated name and set as Localhost (fails where the kernel has no AppArmor); the Status
response advertises features.security_profile_oci_artifact. Every setting may come from the
config file; flags win.

options:
  --config FILE        node config, YAML (default /etc/spoke/config.yaml; absent = defaults)
  --listen SOCK        unix socket to serve CRI on, created mode 0660 (config: listen;
                       default /run/spoke/spoke.sock). An existing non-socket path is refused.
  --upstream SOCK      the runtime's CRI socket (config: upstream; default
                       /run/containerd/containerd.sock). Calls fail with UNAVAILABLE while it is
                       down; the shim reconnects with backoff.
  --store DIR          content-addressed profile store (config: storeDir; default /var/lib/spoke)
  --seccomp-root DIR   the kubelet's seccomp root; effective profiles are written to
                       DIR/spoke/<sha256>.json (config: seccompRoot; default /var/lib/kubelet/seccomp)
  --baseline FILE      node baseline seccomp profile intersected into every OCI profile; checked
                       at start, a bad file stops the shim (config: baselines by architecture,
                       then baseline; default: the shipped policy/seccomp-baseline.json, or
                       policy/seccomp-baseline-arm64.json on arm64; docs/multi-arch.md)
  --policy FILE        node admin policy, deny by default (config: policy; default
                       /etc/spoke/policy.yaml); reloaded on change and on SIGHUP, an invalid
                       file keeps the last good policy
  --metrics ADDR       serve Prometheus metrics on host:port at /metrics (config: metrics;
                       default off)
  --log-level L        debug, info, warn or error (config: logLevel; default info); logs are
                       JSON lines on stderr
  --auth-file FILE     registry credentials, docker config.json format (config: authFile);
                       the kubelet's AuthConfig, when sent, is used for that pull only
  --annotations        annotation mode, for kubelets without KEP-6061 (config: annotations;
                       default off): pod annotations seccomp.profiles.spoke.dev/pod|<container>
                       and apparmor.profiles.spoke.dev/… name digest references that are pulled
                       (node policy, node credentials) and applied like OCI profiles. A KEP OCI
                       profile wins; RuntimeDefault, Unconfined and unset are replaced; Localhost
                       or a privileged container with an annotation fails the call
  --recording          recording (default off; no config key): writes the logging profile
                       (SCMP_ACT_LOG default) to <seccomp-root>/spoke/spoke-record-log.json at
                       start and runs the containers of pods annotated recording.spoke.dev/name
                       (all, or those listed in recording.spoke.dev/containers: a,b) under it,
                       for spoke recorder. Only an unset or RuntimeDefault seccomp profile is
                       replaced (the logging profile is looser than RuntimeDefault); Localhost,
                       OCI, Unconfined, a profile annotation or a privileged container is kept
                       (logged). Only a marking with the controller's recording.spoke.dev/proof
                       (HMAC under the recording key, not expired) counts; any other is ignored
                       (logged) and the container keeps its own profile. Refuses to start
                       without --recording-key. Without this flag the annotation is ignored
  --recording-key FILE the cluster's recording key, the same bytes as the controller's
                       --recording-key (config: recordingKey; 32 to 4096 bytes)

RuntimeDefault: at start and after every reconnect to the runtime, the shim reads the runtime's
default seccomp profile from the runtime itself (a throwaway sandbox and container from the
sandbox image that CRI Status names, created with RuntimeDefault, read from the runtime spec and
removed; see spoke runtime-default). Config key runtimeDefault: FILE pins a profile instead.
While it is not known, OCI profiles with a RuntimeDefault base (and annotations replacing a
RuntimeDefault profile) fail UNAVAILABLE; the base is never dropped. A baseline that permits
what the runtime default denies is logged as a warning at start.

gc (config only: gc: {interval: 10m, minAge: 1h, maxStoreBytes: N}; docs/gc.md): every interval
the in-use set is rebuilt from the runtime, then profiles no container uses and no pin holds
are removed once unused for minAge (above maxStoreBytes, unused ones least recently used
first, even younger ones), and so are unused effective files DIR/spoke/<sha256>.json.

signals: SIGTERM/SIGINT stop gracefully (calls in flight finish, the socket is removed);
SIGHUP reloads the policy and the baseline.`;

/**
 * Heap settings the shim is deployed with (NODE_OPTIONS in deploy/systemd/spoke-shim.service and
 * deploy/daemonset/spoke-shim.yaml; the benchmark starts it the same way). The live heap stays
 * around 15–30 MiB under load, but V8's defaults (16 MiB semi-spaces, old space sized for a
 * large machine) let RSS climb past 110 MiB after 10,000 pulls; with these it stays near 82 MiB.
 * V8 reads them only at start-up, so they cannot be set from inside the process. The old-space
 * cap is generous (4× the live set seen) so a burst cannot run the daemon out of memory.
 */
export const SHIM_NODE_OPTIONS = '--max-semi-space-size=1 --max-old-space-size=128';

export async function run(argv: string[]): Promise<number> {
  const started = performance.now();
  const { values, help } = parseCommand(
    argv,
    {
      config: { type: 'string' },
      listen: { type: 'string' },
      upstream: { type: 'string' },
      store: { type: 'string' },
      'seccomp-root': { type: 'string' },
      baseline: { type: 'string' },
      policy: { type: 'string' },
      metrics: { type: 'string' },
      'log-level': { type: 'string' },
      'auth-file': { type: 'string' },
      annotations: { type: 'boolean' },
      recording: { type: 'boolean' },
      'recording-key': { type: 'string' },
    },
    HELP,
    [0, 0],
  );
  if (help) return 0;
  const level = values['log-level'];
  if (level !== undefined && !(LOG_LEVELS as readonly string[]).includes(level)) throw new UsageError(`--log-level must be one of ${LOG_LEVELS.join(', ')}\n${HELP}`);
  const config = loadNodeConfig(values.config, {
    listen: values.listen,
    upstream: values.upstream,
    storeDir: values.store,
    seccompRoot: values['seccomp-root'],
    baseline: values.baseline,
    policy: values.policy,
    metrics: values.metrics,
    logLevel: level as LogLevel | undefined,
    authFile: values['auth-file'],
    annotations: values.annotations === true ? true : undefined,
    recordingKey: values['recording-key'],
  });
  const logger = new JsonLogger({ level: config.logLevel, base: { component: 'shim' } });

  let baseline = loadBaseline(config.baseline);
  let metrics: Metrics = noopMetrics;
  let metricsServer: import('node:http').Server | undefined;
  const running: { shim?: ShimServer<SeccompProfile> } = {};
  if (config.metrics !== '') {
    const prom = await createPromMetrics();
    metrics = prom;
    metricsServer = await serveMetrics(prom, config.metrics, () => running.shim?.upstream.isUp() ?? false);
  }
  // The policy is checked now (no valid policy: no shim). The pull pipeline (registry client,
  // sigstore) is loaded on the first pull: forwarding, rewriting and the in-use set need only
  // the store, so start-up stays fast and an idle shim stays small.
  new PolicyHolder({ file: config.policy, watch: false, logger }).close();
  const store = new ProfileStore({ root: config.storeDir });
  let node: NodeContext | undefined;
  let loading: Promise<NodeContext> | undefined;
  const nodeContext = (): Promise<NodeContext> => {
    loading ??= import('../wiring.js').then((w) => {
      node = w.createNodeContext(config, { logger, observer: metrics, watchPolicy: true });
      logger.log('info', 'pull pipeline loaded', { policy: config.policy });
      return node;
    });
    loading.catch(() => {
      loading = undefined;
    });
    return loading;
  };
  const pipeline = { pull: async (req: PullRequest): Promise<PullResult> => (await nodeContext()).pipeline.pull(req) };
  const seccomp: SeccompOps<SeccompProfile> = {
    decode: decodeSeccomp,
    validateBase: validateStrict,
    intersect: (b, base, a) => intersect(b, base, a),
    audit: (b, base, a) => auditIntersect(b, base, a),
    formatConstraint: (c) => formatConstraint(c as Parameters<typeof formatConstraint>[0]),
  };
  // The runtime's default profile: what a RuntimeDefault base means (src/cri/runtime-default.ts).
  const runtimeDefault = new RuntimeDefaultSource<SeccompProfile>({
    decode: decodeRuntimeDefault,
    logger,
    ...(config.runtimeDefault !== undefined ? { pinned: { file: config.runtimeDefault, bytes: readPinned(config.runtimeDefault) } } : {}),
    onChange: (rd) => baselineLooserThanRuntimeDefault(seccomp, baseline, rd, logger),
  });
  // AppArmor: the shipped node AppArmor baseline (no config key yet), loaded on first use.
  const appArmor = createAppArmorOps({ logger });
  const recordingKey = values.recording === true && config.recordingKey !== undefined ? readRecordingKey(config.recordingKey) : undefined;
  mkdirSync(dirname(config.listen), { recursive: true, mode: 0o750 });
  const shim = new ShimServer<SeccompProfile>({
    listen: config.listen,
    upstream: config.upstream,
    annotations: config.annotations,
    recording: values.recording === true,
    ...(recordingKey ? { recordingKey } : {}),
    // The pipeline's own policy holder: a create is decided under the policy its pull would see.
    deps: { pipeline, store, seccomp, baseline: () => baseline, seccompRoot: config.seccompRoot, logger, metrics, appArmor, runtimeDefault, policy: async () => (await nodeContext()).policy.current() },
  });
  try {
    await shim.start();
  } catch (e) {
    metricsServer?.close();
    throw e;
  }
  running.shim = shim;
  const server = shim;
  const gc = new GcScheduler({
    store,
    rebuild: () => shim.inUse.rebuild(),
    gate: shim.gate,
    forgetEffective: (sha) => shim.forgetEffective(sha),
    forgetOrigins: () => shim.inUse.forgetRecordedOrigins(),
    effectiveDir: join(config.seccompRoot, 'spoke'),
    intervalMs: config.gc.intervalMs,
    minAgeMs: config.gc.minAgeMs,
    maxStoreBytes: config.gc.maxStoreBytes,
    logger,
    metrics,
  });
  gc.start();
  logger.log('info', 'shim ready', {
    listen: config.listen,
    upstream: config.upstream,
    storeDir: config.storeDir,
    seccompRoot: config.seccompRoot,
    policy: config.policy,
    metrics: config.metrics || undefined,
    annotations: config.annotations,
    gc: { intervalMs: config.gc.intervalMs, minAgeMs: config.gc.minAgeMs, maxStoreBytes: config.gc.maxStoreBytes },
    recording: values.recording === true,
    startupMs: Math.round(performance.now() - started),
    heapLimitMiB: Math.round(getHeapStatistics().heap_size_limit / 2 ** 20),
    sinceProcessStartMs: Math.round(process.uptime() * 1000),
  });

  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      logger.log('info', 'shutting down', { signal, inFlight: server.inFlight() });
      void (async () => {
        await gc.stop();
        await server.close();
        runtimeDefault.close();
        await node?.close().catch(() => undefined);
        metricsServer?.close();
        resolve(0);
      })();
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
    process.on('SIGHUP', () => {
      let policyOk = true;
      if (node) policyOk = node.policy.reload().ok;
      else {
        try {
          new PolicyHolder({ file: config.policy, watch: false, logger }).close();
        } catch (e) {
          policyOk = false;
          logger.log('error', 'node policy invalid', { policy: config.policy, error: asSpokeError(e).message });
        }
      }
      try {
        baseline = loadBaseline(config.baseline);
        logger.log('info', 'baseline reloaded', { baseline: config.baseline });
        const rd = runtimeDefault.current();
        if (rd) baselineLooserThanRuntimeDefault(seccomp, baseline, rd, logger);
      } catch (e) {
        logger.log('error', 'baseline not reloaded; keeping the last good one', { baseline: config.baseline, error: asSpokeError(e).message });
      }
      void appArmor.reloadBaseline();
      logger.log(policyOk ? 'info' : 'error', 'SIGHUP handled', { policyOk });
    });
  });
}

/** The runtime's own profile: strict decode, and what the runtime itself loads (not the artifact rules). */
function decodeRuntimeDefault(bytes: Uint8Array): SeccompProfile {
  const p = decodeSeccomp(bytes);
  validate(p);
  return p;
}

function readPinned(path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (e) {
    throw new SpokeError('InvalidArgument', `runtimeDefault ${path}: cannot read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, { file: path }, { reason: 'FILE_UNREADABLE' });
  }
}

function loadBaseline(path: string): SeccompProfile {
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (e) {
    throw new SpokeError('InvalidArgument', `baseline ${path}: cannot read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, { file: path }, { reason: 'FILE_UNREADABLE' });
  }
  try {
    const p = decodeSeccomp(bytes);
    validateBaseline(p);
    return p;
  } catch (e) {
    const err = asSpokeError(e, 'InvalidArgument');
    throw new SpokeError('InvalidArgument', `baseline ${path}: ${err.message}`, { file: path }, { cause: e, reason: err.reason });
  }
}
