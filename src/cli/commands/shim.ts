// `spoke shim`: the node daemon. Composition only: command line (shim-options.ts) → config →
// logger/metrics → baseline → node pipeline (policy, store, registry, verifier) → ShimServer;
// signals for reload and shutdown.

import { getHeapStatistics } from 'node:v8';
import { join } from 'node:path';
import { asSpokeError } from '../../core/errors.js';
import { runningBuild } from '../../core/runtime.js';
import { shimRecordingKey } from '../../cri/recording.js';
import { ShimServer } from '../../cri/server.js';
import { decodeRuntimeDefault, seccompOps } from '../../cri/seccomp.js';
import { createAppArmorOps } from '../../cri/apparmor.js';
import { GcScheduler } from '../../cri/gc.js';
import { JsonLogger } from '../../observe/log.js';
import { createPromMetrics, noopMetrics, serveMetrics, type Metrics } from '../../observe/metrics.js';
import { FileWatch } from '../../config/file-watch.js';
import { PolicyHolder } from '../../config/policy-holder.js';
import { makeTrustedPlace, readTrustedFile } from '../trusted-file.js';
import { MAX_NAMED_FILE_BYTES } from '../read-file.js';
import { HeldCredentials, nodeCredentials } from '../../registry/credentials.js';
import { readCaBundle } from '../../registry/options.js';
import type { CredentialSource } from '../../registry/types.js';
import type { SeccompProfile } from '../../profiles/seccomp/index.js';
import { baselineLooserThanRuntimeDefault } from '../../cri/baseline-looser.js';
import { RuntimeDefaultSource } from '../../cri/runtime-default.js';
import type { PullRequest, PullResult } from '../../pull.js';
import { ProfileStore } from '../../store/store.js';
import { holdFileLock } from '../../store/lock.js';
import type { NodeContext } from '../wiring.js';
import { parseShimOptions } from './shim-options.js';
import { contentRules } from '../version.js';
import { loadBaseline, readPinnedRuntimeDefault } from '../start-checks.js';

/** Temp files made ahead for the store: two per cold pull (blob, record); a burst beyond creates its files on demand. */
const PREPARED_TEMP_FILES = 8;

/**
 * Heap settings the shim is deployed with (NODE_OPTIONS in deploy/systemd/spoke-shim.service; the
 * benchmark starts it the same way). The live heap stays
 * around 15–30 MiB under load, but V8's defaults (16 MiB semi-spaces, old space sized for a
 * large machine) let RSS climb past 110 MiB after 10,000 pulls; with these it stays near 82 MiB.
 * V8 reads them only at start-up, so they cannot be set from inside the process. The old-space
 * cap is generous (4× the live set seen) so a burst cannot run the daemon out of memory.
 */
export const SHIM_NODE_OPTIONS = '--max-semi-space-size=1 --max-old-space-size=128';

export async function run(argv: string[]): Promise<number> {
  const started = performance.now();
  // The files that decide what containers may do, read only when no other user could have
  // written them (src/cli/trusted-file.ts), at start and at every reload: the node config, the
  // files it names, and the keys and roots the policy names. The config's doubts are logged once
  // the config has said how (its logLevel).
  const configDoubts: string[] = [];
  let warnOfFile = (message: string): void => void configDoubts.push(message);
  const trusted =
    (what: string, secret = false) =>
    (path: string, maxBytes = MAX_NAMED_FILE_BYTES + 1): Buffer =>
      readTrustedFile(path, what, { warn: (message) => warnOfFile(message), maxBytes, secret });
  const options = parseShimOptions(argv, trusted('node config'));
  if (options === undefined) return 0;
  const { config, recording } = options;
  const logger = new JsonLogger({ level: config.logLevel, base: { component: 'shim' } });
  warnOfFile = (message) => logger.log('warn', 'a file the shim trusts is not kept by root alone', { problem: message });
  for (const message of configDoubts) warnOfFile(message);

  // The baseline file is watched like the policy (src/config/file-watch.ts): a tightened baseline
  // applies to the next create without SIGHUP; an invalid file keeps the last good baseline.
  const baselineWatch = new FileWatch({ what: 'baseline', logger, onChange: () => reloadBaseline() });
  // Made below; a change seen before then is compared with the runtime default once it is read.
  const late: { runtimeDefault?: RuntimeDefaultSource<SeccompProfile> } = {};
  const readBaseline = (): SeccompProfile => baselineWatch.readOne(config.baseline, (path) => loadBaseline(path, trusted('seccomp baseline')));
  let baseline: SeccompProfile;
  try {
    baseline = readBaseline();
  } catch (e) {
    baselineWatch.close();
    throw e;
  }
  const reloadBaseline = (): void => {
    try {
      baseline = readBaseline();
      logger.log('info', 'baseline reloaded', { baseline: config.baseline });
      const rd = late.runtimeDefault?.current();
      if (rd) baselineLooserThanRuntimeDefault(seccompOps, baseline, rd, logger);
    } catch (e) {
      logger.log('error', 'baseline not reloaded; keeping the last good one', { baseline: config.baseline, error: asSpokeError(e).message });
    }
  };
  // The node's CA bundle (caFile) is read now: one that cannot be read or holds no PEM
  // certificate stops the shim, as a bad auth file does, rather than fail every pull. It is
  // re-read on SIGHUP only (not watched): the next pull leases a client that trusts the new
  // bundle; an invalid file keeps the last good one.
  const caFile = config.caFile;
  let ca: Buffer | undefined;
  try {
    ca = caFile === undefined ? undefined : readCaBundle(caFile, 'caFile', trusted('registry CA bundle'));
  } catch (e) {
    baselineWatch.close();
    throw e;
  }
  const reloadCa = (): void => {
    if (caFile === undefined) return;
    try {
      const next = readCaBundle(caFile, 'caFile', trusted('registry CA bundle'));
      if (ca !== undefined && next.equals(ca)) return;
      ca = next;
      node?.renewRegistryClients();
      logger.log('info', 'registry CA bundle reloaded', { caFile });
    } catch (e) {
      logger.log('error', 'registry CA bundle not reloaded; keeping the last good one', { caFile, error: asSpokeError(e).message });
    }
  };
  // One shim serves a store at a time (docs/shim.md#one-shim-per-store): a second one (a rolling
  // update with surge, a second unit) waits here, once its files are checked and before it binds
  // anything (metrics address, socket) or rebuilds the in-use set, until the first has stopped.
  // Two at once raced over the in-use set, AppArmor unloads and the socket. A start that fails
  // from here on ends the process, and the lock with it (src/store/lock.ts).
  const storeLock = await holdFileLock(join(config.storeDir, 'locks', 'shim'), (waitedMs) =>
    logger.log('warn', 'another shim serves this store; waiting for it to stop', { storeDir: config.storeDir, waitedMs }),
  );
  let metrics: Metrics = noopMetrics;
  let metricsServer: import('node:http').Server | undefined;
  const running: { shim?: ShimServer<SeccompProfile> } = {};
  if (config.metrics !== '') {
    const prom = await createPromMetrics();
    metrics = prom;
    metricsServer = await serveMetrics(prom, config.metrics, () => running.shim?.upstream.isUp() ?? false);
  }
  // The policy is loaded now (no valid policy: no shim) and held, watched, from here on: the one
  // checked at start is the last good policy, before any pull too. The pull pipeline (registry
  // client, sigstore) is loaded on the first pull: forwarding, rewriting and the in-use set need
  // only the store, so start-up stays fast and an idle shim stays small.
  const policy = new PolicyHolder({ file: config.policy, watch: true, logger, readFile: trusted('node policy file (or a key or root it names)') });
  // The node's auth file is read now: one that cannot be read or parsed stops the shim, as a bad
  // policy does, rather than fail every pull. It is watched like the baseline: credentials rotated
  // into it (a registry token refresher rewrites it every few hours) reach the next pull, and an
  // invalid file keeps the last good ones (docs/configuration.md#registry-credentials).
  const authFile = config.authFile;
  const authWatch = authFile === undefined ? undefined : new FileWatch({ what: 'auth file', logger, onChange: () => reloadCredentials() });
  const readCredentials = (): CredentialSource => (authFile === undefined || authWatch === undefined ? nodeCredentials(undefined) : authWatch.readOne(authFile, (path) => nodeCredentials(path, trusted('registry auth file', true))));
  let credentials: HeldCredentials;
  try {
    credentials = new HeldCredentials(readCredentials());
  } catch (e) {
    authWatch?.close();
    throw e;
  }
  const reloadCredentials = (): void => {
    if (authFile === undefined) return;
    try {
      credentials.replace(readCredentials());
      logger.log('info', 'registry credentials reloaded', { authFile });
    } catch (e) {
      logger.log('error', 'registry credentials not reloaded; keeping the last good ones', { authFile, error: asSpokeError(e).message });
    }
  };
  // A long-lived writer: temp files made ahead keep file creation off pulls and creates, and are
  // made again once the call that took them has been answered; a pull that is the only call in
  // flight flushes on the event loop's thread, as nothing waits on it meanwhile
  // (src/store/fsutil.ts).
  const store = new ProfileStore({
    root: config.storeDir,
    contentRules: contentRules(),
    preparedTempFiles: PREPARED_TEMP_FILES,
    flushInline: () => (running.shim?.unaryInFlight() ?? 0) <= 1,
    refillTempFiles: (refill) => (running.shim ? running.shim.afterUnaryCall(refill) : refill()),
  });
  void store.prepareTempFiles();
  let node: NodeContext | undefined;
  let loading: Promise<NodeContext> | undefined;
  const nodeContext = (): Promise<NodeContext> => {
    loading ??= import('../wiring.js').then((w) => {
      node = w.createNodeContext(config, { logger, observer: metrics, store, policy, credentials, ca: () => ca });
      logger.log('info', 'pull pipeline loaded', { policy: config.policy });
      return node;
    });
    loading.catch(() => {
      loading = undefined;
    });
    return loading;
  };
  const pipeline = {
    // Once loaded, called directly: a wait on the settled load per call is garbage on every warm pull.
    pull: (req: PullRequest): Promise<PullResult> => (node !== undefined ? node.pipeline.pull(req) : nodeContext().then((n) => n.pipeline.pull(req))),
    // Before the pipeline is loaded, this process has pulled nothing.
    pulledIn: (namespace: string | undefined, reference: string): boolean => node?.pipeline.pulledIn(namespace, reference) ?? false,
  };
  // The runtime's default profile: what a RuntimeDefault base means (src/cri/runtime-default.ts).
  const runtimeDefault = new RuntimeDefaultSource<SeccompProfile>({
    decode: decodeRuntimeDefault,
    logger,
    ...(config.runtimeDefault !== undefined ? { pinned: { file: config.runtimeDefault, bytes: readPinnedRuntimeDefault(config.runtimeDefault, trusted('pinned runtime default')) } } : {}),
    onChange: (rd) => baselineLooserThanRuntimeDefault(seccompOps, baseline, rd, logger),
  });
  late.runtimeDefault = runtimeDefault;
  // AppArmor: the shipped node AppArmor baseline (no config key yet), loaded on first use.
  const appArmor = createAppArmorOps({ logger, readBaseline: trusted('AppArmor baseline') });
  const recordingKey = shimRecordingKey(recording, config.recordingKey, trusted('recording key', true));
  makeTrustedPlace(config.listen, 'CRI socket', 0o750);
  const shim = new ShimServer<SeccompProfile>({
    listen: config.listen,
    upstream: config.upstream,
    annotations: config.annotations,
    runtimeHandlers: config.runtimeHandlers,
    recording,
    ...(recordingKey ? { recordingKey } : {}),
    // The pipeline's own policy holder: a create is decided under the policy its pull would see.
    deps: { pipeline, store, seccomp: seccompOps, baseline: () => baseline, seccompRoot: config.seccompRoot, logger, metrics, appArmor, runtimeDefault, policy: async () => (await nodeContext()).policy.current() },
  });
  try {
    await shim.start();
  } catch (e) {
    storeLock.release();
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
    // The address the listener bound (an empty host in the config listens on 127.0.0.1).
    metrics: boundAddress(metricsServer),
    annotations: config.annotations,
    gc: { intervalMs: config.gc.intervalMs, minAgeMs: config.gc.minAgeMs, maxStoreBytes: config.gc.maxStoreBytes },
    recording,
    startupMs: Math.round(performance.now() - started),
    heapLimitMiB: Math.round(getHeapStatistics().heap_size_limit / 2 ** 20),
    build: runningBuild(),
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
        policy.close();
        baselineWatch.close();
        authWatch?.close();
        metricsServer?.close();
        storeLock.release();
        resolve(0);
      })();
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
    process.on('SIGHUP', () => {
      const policyOk = policy.reload().ok;
      reloadBaseline();
      reloadCredentials();
      reloadCa();
      void appArmor.reloadBaseline();
      appArmor.identifyParserAgain();
      logger.log(policyOk ? 'info' : 'error', 'SIGHUP handled', { policyOk });
    });
  });
}

/** `host:port` a server listens on, or undefined without one. */
function boundAddress(server: import('node:http').Server | undefined): string | undefined {
  const a = server?.address();
  if (a === undefined || a === null || typeof a === 'string') return undefined;
  return a.family === 'IPv6' ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
}
