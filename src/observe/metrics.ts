// Prometheus metrics of the node daemon (docs/configuration.md). Labels are bounded by construction: the
// callers pass values from fixed sets (method names are folded to a known list + "other").
// prom-client is loaded only when metrics are switched on, so an idle shim without a metrics
// address does not pay for it.

import { createServer, type Server } from 'node:http';
import type { Socket } from 'node:net';
import type { ErrorCode } from '../core/errors.js';

/** What the shim and the pull pipeline report. All methods are cheap and never throw. */
export interface Metrics {
  pulled(cached: boolean, seconds: number): void;
  failed(code: ErrorCode): void;
  decided(allowed: boolean): void;
  verified(result: 'ok' | 'failed' | 'cached' | 'aborted'): void;
  mergeConstrained(count: number): void;
  forwarded(method: string, seconds: number): void;
  store(artifacts: number, bytes: number): void;
  /** The shim's gc (docs/gc.md): one run's outcome; removals of profiles, effective files and invalid verdicts. */
  gcRun(result: 'ok' | 'incomplete' | 'failed'): void;
  gcRemoved(what: 'profile' | 'effective' | 'invalid', count: number): void;
}

export const noopMetrics: Metrics = {
  pulled: () => {},
  failed: () => {},
  decided: () => {},
  verified: () => {},
  mergeConstrained: () => {},
  forwarded: () => {},
  store: () => {},
  gcRun: () => {},
  gcRemoved: () => {},
};

/** kubelet's pull-error reasons (KEP §7) plus permission_denied. */
export function reasonOf(code: ErrorCode): string {
  switch (code) {
    case 'RegistryUnavailable':
      return 'registry_unavailable';
    case 'SignatureValidationFailed':
      return 'signature_validation_failed';
    case 'SecurityProfileInvalid':
    case 'InvalidArgument':
      return 'security_profile_invalid';
    case 'Unauthenticated':
      return 'unauthenticated';
    case 'PermissionDenied':
      return 'permission_denied';
    default:
      return 'other';
  }
}

export interface PromMetrics extends Metrics {
  /** Text exposition format. */
  render(): Promise<{ contentType: string; body: string }>;
}

export async function createPromMetrics(): Promise<PromMetrics> {
  const prom = await import('prom-client');
  const registry = new prom.Registry();
  prom.collectDefaultMetrics({ register: registry, prefix: 'spoke_' });
  const pullDuration = new prom.Histogram({
    name: 'spoke_profile_pull_duration_seconds',
    help: 'Duration of security profile pulls over CRI and CLI.',
    labelNames: ['cached'],
    buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30],
    registers: [registry],
  });
  const pullErrors = new prom.Counter({
    name: 'spoke_profile_pull_errors_total',
    help: 'Failed security profile pulls by reason.',
    labelNames: ['reason'],
    registers: [registry],
  });
  const storeArtifacts = new prom.Gauge({ name: 'spoke_store_artifacts', help: 'Artifacts in the profile store.', registers: [registry] });
  const storeBytes = new prom.Gauge({ name: 'spoke_store_bytes', help: 'Bytes of profiles in the store.', registers: [registry] });
  const constrained = new prom.Counter({
    name: 'spoke_merge_constrained_total',
    help: 'Rules of OCI profiles that the merge with the baseline or base profile constrained.',
    registers: [registry],
  });
  const decisions = new prom.Counter({
    name: 'spoke_policy_decisions_total',
    help: 'Node policy decisions.',
    labelNames: ['decision'],
    registers: [registry],
  });
  const verifications = new prom.Counter({
    name: 'spoke_signature_verifications_total',
    help: 'Signature verifications by result.',
    labelNames: ['result'],
    registers: [registry],
  });
  const forward = new prom.Histogram({
    name: 'spoke_cri_forward_duration_seconds',
    help: 'Time from a CRI call arriving at the shim to its response headers, by method.',
    labelNames: ['method'],
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30],
    registers: [registry],
  });
  for (const r of ['registry_unavailable', 'signature_validation_failed', 'security_profile_invalid', 'unauthenticated', 'permission_denied', 'other']) {
    pullErrors.inc({ reason: r }, 0);
  }
  for (const d of ['allow', 'deny']) decisions.inc({ decision: d }, 0);
  const gcRuns = new prom.Counter({ name: 'spoke_gc_runs_total', help: 'Garbage collection runs of the shim by result (incomplete: the in-use set was, nothing removed).', labelNames: ['result'], registers: [registry] });
  const gcRemovals = new prom.Counter({ name: 'spoke_gc_removals_total', help: 'Unused profiles, effective seccomp files and invalid verdicts removed by the shim gc.', labelNames: ['what'], registers: [registry] });
  for (const r of ['ok', 'incomplete', 'failed']) gcRuns.inc({ result: r }, 0);
  for (const w of ['profile', 'effective', 'invalid']) gcRemovals.inc({ what: w }, 0);
  // Child metrics resolved once per label value: a label lookup (hashing the label set) per
  // call costs more than the observation itself.
  const pulledCached = pullDuration.labels({ cached: 'true' });
  const pulledFetched = pullDuration.labels({ cached: 'false' });
  const allowed = decisions.labels({ decision: 'allow' });
  const denied = decisions.labels({ decision: 'deny' });
  const forwardByMethod = new Map<string, { observe(v: number): void }>();
  const errorsByReason = new Map<string, { inc(v?: number): void }>();
  const verifiedByResult = new Map<string, { inc(v?: number): void }>();
  return {
    pulled: (cached, seconds) => (cached ? pulledCached : pulledFetched).observe(seconds),
    failed: (code) => {
      const reason = reasonOf(code);
      let c = errorsByReason.get(reason);
      if (!c) errorsByReason.set(reason, (c = pullErrors.labels({ reason })));
      c.inc();
    },
    decided: (ok) => (ok ? allowed : denied).inc(),
    verified: (result) => {
      let c = verifiedByResult.get(result);
      if (!c) verifiedByResult.set(result, (c = verifications.labels({ result })));
      c.inc();
    },
    mergeConstrained: (count) => {
      if (count > 0) constrained.inc(count);
    },
    forwarded: (method, seconds) => {
      let h = forwardByMethod.get(method);
      if (!h) forwardByMethod.set(method, (h = forward.labels({ method })));
      h.observe(seconds);
    },
    store: (artifacts, bytes) => {
      storeArtifacts.set(artifacts);
      storeBytes.set(bytes);
    },
    gcRun: (result) => gcRuns.inc({ result }),
    gcRemoved: (what, count) => {
      if (count > 0) gcRemovals.inc({ what }, count);
    },
    render: async () => ({ contentType: registry.contentType, body: await registry.metrics() }),
  };
}

/** Parses `host:port` / `:port` / `[v6]:port`. */
export function parseListenAddress(addr: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]*)):([0-9]{1,5})$/.exec(addr);
  if (!m) throw new Error(`metrics address ${JSON.stringify(addr)} is not host:port`);
  const port = Number(m[3]);
  if (port > 65535) throw new Error(`metrics port ${port} out of range`);
  return { host: m[1] ?? (m[2] === '' ? '127.0.0.1' : m[2]!), port };
}

/**
 * Scrapers are a few, and quick: more connections than this, or slower ones, are someone else.
 * An admin may serve metrics on the node's network, and idle or half-sent requests held open
 * (Node's defaults allow them a minute) would take the shim's memory and file descriptors.
 * Counted apart from the node's own address, and at most METRICS_MAX_PER_ADDRESS from one.
 */
export const METRICS_MAX_CONNECTIONS = 16;
/** Connections at once from one other address: one caller cannot take every slot. */
export const METRICS_MAX_PER_ADDRESS = 4;
/**
 * Connections at once from the node's own address (the address they arrived at): the kubelet's
 * probes of a host-network pod. Apart from the others, so that callers elsewhere on the network
 * cannot fail the shim's liveness probe by holding every slot.
 */
export const METRICS_MAX_LOCAL_CONNECTIONS = 8;

/** Closes a connection past the limits above as it comes. */
function limitConnections(server: Server): void {
  const byAddress = new Map<string, number>();
  let others = 0;
  let local = 0;
  server.on('connection', (socket: Socket) => {
    const from = socket.remoteAddress ?? '';
    const isLocal = from !== '' && from === socket.localAddress;
    const mine = byAddress.get(from) ?? 0;
    if (isLocal ? local >= METRICS_MAX_LOCAL_CONNECTIONS : others >= METRICS_MAX_CONNECTIONS || mine >= METRICS_MAX_PER_ADDRESS) {
      socket.destroy();
      return;
    }
    if (isLocal) local++;
    else {
      others++;
      byAddress.set(from, mine + 1);
    }
    socket.once('close', () => {
      if (isLocal) {
        local--;
        return;
      }
      others--;
      const left = (byAddress.get(from) ?? 1) - 1;
      if (left === 0) byAddress.delete(from);
      else byAddress.set(from, left);
    });
  });
}

/** Serves /metrics (and /healthz) on addr. Resolves once listening. */
export async function serveMetrics(metrics: PromMetrics, addr: string, healthy: () => boolean = () => true): Promise<Server> {
  const { host, port } = parseListenAddress(addr);
  const server = createServer({ headersTimeout: 5000, requestTimeout: 10_000, keepAliveTimeout: 5000, connectionsCheckingInterval: 1000 }, (req, res) => {
    if (req.url === '/metrics') {
      metrics.render().then(
        ({ contentType, body }) => {
          res.writeHead(200, { 'content-type': contentType });
          res.end(body);
        },
        () => {
          res.writeHead(500);
          res.end();
        },
      );
    } else if (req.url === '/healthz') {
      const ok = healthy();
      res.writeHead(ok ? 200 : 503, { 'content-type': 'text/plain' });
      res.end(ok ? 'ok\n' : 'upstream unavailable\n');
    } else {
      res.writeHead(404);
      res.end();
    }
  });
  limitConnections(server);
  server.setTimeout(10_000, (socket) => socket.destroy());
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return server;
}
