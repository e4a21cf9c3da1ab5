// Constructor options of UndiciRegistryClient, validated once, up front (a bad option is an
// InvalidArgument at start-up, never a surprise on the first pull).

import { X509Certificate } from 'node:crypto';
import { statSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { Dispatcher } from 'undici';
import { SpokeError, type ErrorContext } from '../core/errors.js';
import { parseRegistry } from '../core/reference.js';
import { monotonicNow, systemClock, silentLogger, type Clock, type Logger, type MonotonicNow } from '../core/runtime.js';
import { emptyCredentials, readFileUpTo, type BoundedRead } from './credentials.js';
import type { CredentialSource } from './types.js';

export interface UndiciRegistryClientOptions {
  /** `host[:port]` entries allowed plain HTTP (exact match, host case-insensitive). */
  insecure?: readonly string[];
  /** Plain HTTP for every host (publisher `--plain-http`). */
  plainHttp?: boolean;
  /**
   * Extra CA bundle (PEM), a path (read as readCaBundle reads the node's) or the bytes; trusted in
   * addition to Node's built-in roots. Refused unless wholly PEM certificates that parse.
   */
  caFile?: string | Buffer;
  /** Per request: connect (at most 5 s), headers and idle-body timeouts. Default 10000. */
  timeoutMs?: number;
  /**
   * Per request without a caller's signal (publishers, the recording controller): the whole
   * request, body included. A body trickled a byte at a time is never idle for `timeoutMs`.
   * Default 300000.
   */
  totalTimeoutMs?: number;
  /**
   * The whole of one answer from a mirror, body included; past it the next source is asked. A
   * degraded mirror that trickles bytes would otherwise use up the caller's whole deadline (a
   * pull's), and the registry behind it would never be asked. Default 15000.
   */
  mirrorTimeoutMs?: number;
  /** Further attempts after a retryable failure (network, 408, 429, 5xx). Default 2. */
  retries?: number;
  /** Registry `host[:port]` → mirror hosts, tried in order before the registry when `useMirrors`. */
  mirrors?: Readonly<Record<string, readonly string[]>>;
  /**
   * Every request of this client runs under it as well as under its caller's signal (a
   * publisher command's one deadline, src/cli/deadline.ts); it replaces `totalTimeoutMs`.
   */
  signal?: AbortSignal;
  /** Node or publisher credentials by host. */
  credentials?: CredentialSource;
  clock?: Clock;
  /** The clock in-process time-to-live values are measured on (tests); default performance.now(). */
  monotonicNow?: MonotonicNow;
  logger?: Logger;
  userAgent?: string;
  /** Tests: the dispatcher for an origin (`http://127.0.0.1:5000`). */
  dispatcherFactory?: (origin: string) => Dispatcher;
}

export const DEFAULT_TIMEOUT_MS = 10_000;
export const DEFAULT_TOTAL_TIMEOUT_MS = 300_000;
/** A mirror's whole answer: far more than a profile of a few KiB takes from a healthy one. */
export const DEFAULT_MIRROR_TIMEOUT_MS = 15_000;
export const DEFAULT_RETRIES = 2;
export const MAX_CONNECT_TIMEOUT_MS = 5_000;
export const DEFAULT_USER_AGENT = 'spoke/0.1';
/** As many as the node policy's schema allows (policy/node-policy.schema.json), so a policy that loads leases a client. */
const MAX_MIRRORS_PER_REGISTRY = 16;

export interface ResolvedOptions {
  insecure: ReadonlySet<string>;
  plainHttp: boolean;
  ca: string[] | undefined;
  timeoutMs: number;
  totalTimeoutMs: number;
  mirrorTimeoutMs: number;
  connectTimeoutMs: number;
  retries: number;
  mirrors: ReadonlyMap<string, readonly string[]>;
  credentials: CredentialSource;
  clock: Clock;
  monotonicNow: MonotonicNow;
  logger: Logger;
  userAgent: string;
  dispatcherFactory: ((origin: string) => Dispatcher) | undefined;
  signal: AbortSignal | undefined;
}

const KNOWN = new Set([
  'insecure',
  'plainHttp',
  'caFile',
  'timeoutMs',
  'totalTimeoutMs',
  'mirrorTimeoutMs',
  'retries',
  'mirrors',
  'credentials',
  'clock',
  'monotonicNow',
  'logger',
  'userAgent',
  'dispatcherFactory',
  'signal',
]);

function bad(why: string): never {
  throw new SpokeError('InvalidArgument', `registry client: ${why}`, {}, { reason: 'OPTION_INVALID' });
}

/** `host[:port]` normalised like core/reference.ts (host lowercased), or InvalidArgument. */
export function normalizeHostPort(text: unknown, what: string): string {
  if (typeof text !== 'string' || text.length === 0 || text.length > 260) bad(`${what} must be host[:port]`);
  const { host, port } = parseRegistry(text, (why) => bad(`${what} ${JSON.stringify(text)}: ${why}`));
  return port === undefined ? host : `${host}:${port}`;
}

function intIn(v: unknown, name: string, min: number, max: number, dflt: number): number {
  if (v === undefined) return dflt;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) bad(`${name} must be an integer in [${min}, ${max}]`);
  return v;
}

/** A CA bundle (PEM): the system's whole bundle is a few hundred KiB. */
export const MAX_CA_FILE_BYTES = 4 * 1024 * 1024;

/**
 * A node's CA bundle (the node config's caFile), read once (at most MAX_CA_FILE_BYTES) and checked
 * now, so a file that cannot serve stops the shim at start rather than fail every pull:
 * unreadable or not a regular file (FILE_UNREADABLE: a FIFO would hold the reader, the shim's
 * start or, on a SIGHUP reload, every call, until a writer came), too large (SIZE_LIMIT), or not
 * wholly PEM certificates that parse (OPTION_INVALID). Returns those certificates, re-encoded:
 * the TLS layer would stop at the first broken block and trust only what came before it.
 * `what` names the setting in the message; `read` reads the file, as loadAuthFile's does.
 */
export function readCaBundle(path: string, what = 'caFile', read: BoundedRead = readFileUpTo): Buffer {
  const unreadable = (why: string, cause?: unknown) => new SpokeError('InvalidArgument', `${what} ${path}: ${why}`, { file: path, path: what }, { cause, reason: 'FILE_UNREADABLE' });
  let bytes: Buffer;
  try {
    if (!statSync(path).isFile()) throw unreadable('not a regular file');
    bytes = read(path, MAX_CA_FILE_BYTES + 1);
  } catch (e) {
    if (e instanceof SpokeError) throw e;
    throw unreadable(`cannot be read (${(e as NodeJS.ErrnoException).code ?? 'error'})`, e);
  }
  if (bytes.length > MAX_CA_FILE_BYTES) {
    throw new SpokeError('InvalidArgument', `${what} ${path}: larger than ${MAX_CA_FILE_BYTES} bytes`, { file: path, path: what, limit: MAX_CA_FILE_BYTES }, { reason: 'SIZE_LIMIT' });
  }
  return checkedCaBundle(bytes, `${what} ${path}`, { file: path, path: what });
}

/**
 * A CA bundle's certificates, re-encoded, or OPTION_INVALID when it is not wholly PEM certificates
 * (CERTIFICATE blocks, no other label) that parse: the TLS layer stops at the first broken block
 * and would trust only what came before it, so a bundle cut short or with a broken block before
 * good ones is refused, and what the TLS layer is given is what was checked. The one check of
 * every CA bundle: the node's (readCaBundle), a `--ca-file` (src/cli/wiring.ts readCaFile) and
 * the client's own option.
 * `named` names the setting (and its file) in the message.
 */
export function checkedCaBundle(bytes: Buffer, named: string, context: ErrorContext = {}): Buffer {
  const certificates = pemCertificates(bytes.toString('utf8'));
  if ('why' in certificates) throw new SpokeError('InvalidArgument', `${named}: ${certificates.why}`, { ...context, ...certificates.context }, { reason: 'OPTION_INVALID' });
  return Buffer.from(certificates.join(''));
}

const PEM_LABEL = 'CERTIFICATE';
const PEM_BEGIN = `-----BEGIN ${PEM_LABEL}-----`;
/** A PEM block's header line, its label captured (RFC 7468 §2: a label may hold spaces and hyphens). */
const PEM_HEADER_RE = /-----BEGIN ([^\r\n]*?)-----/g;

/** The certificates of a PEM bundle, each as PEM, or why it is not wholly such a bundle. */
function pemCertificates(text: string): string[] | { why: string; context?: ErrorContext } {
  // Every PEM block must be a CERTIFICATE: OpenSSL, and so the TLS layer, also takes TRUSTED
  // CERTIFICATE and X509 CERTIFICATE blocks, which a check that sees CERTIFICATE blocks only
  // would pass over, and a pull through that registry would fail at its handshake instead
  // (docs/configuration.md#registries-with-a-private-ca-proxies).
  const headers = [...text.matchAll(PEM_HEADER_RE)];
  for (const [i, h] of headers.entries()) {
    const label = h[1]!;
    if (label === PEM_LABEL) continue;
    const line = text.slice(0, h.index).split('\n').length;
    const fix = label.endsWith(PEM_LABEL)
      ? `convert that certificate with openssl x509 -in <a file of that block> -out <new file>, which writes it as ${PEM_LABEL} (without OpenSSL's trust settings)`
      : 'a CA bundle holds certificates only, remove it';
    return { why: `PEM block ${i + 1} of ${headers.length} (line ${line}) is ${JSON.stringify(label.slice(0, 64))}, not ${PEM_LABEL}: ${fix}`, context: { line, expected: PEM_LABEL, actual: label.slice(0, 64) } };
  }
  const blocks = text.match(/-----BEGIN CERTIFICATE-----[^-]*-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length === 0) return { why: `holds no PEM certificate (${PEM_BEGIN})` };
  if (headers.length !== blocks.length) return { why: `${headers.length - blocks.length} of its ${headers.length} certificates are not whole (cut short, or a broken block)` };
  const out: string[] = [];
  for (const [i, block] of blocks.entries()) {
    try {
      out.push(new X509Certificate(block).toString());
    } catch {
      return { why: `certificate ${i + 1} of ${blocks.length} does not parse` };
    }
  }
  return out;
}

function loadCa(caFile: string | Buffer | undefined): string[] | undefined {
  if (caFile === undefined) return undefined;
  let bundle: Buffer;
  if (Buffer.isBuffer(caFile)) bundle = checkedCaBundle(caFile, 'registry client: caFile');
  else if (typeof caFile === 'string' && caFile.length > 0) bundle = readCaBundle(caFile);
  else return bad('caFile must be a path or a Buffer');
  // node:tls is loaded only for a CA file: a plain-HTTP or default-CA pull never needs it, and
  // loading it costs a short CLI command milliseconds (docs/benchmarks.md).
  const { rootCertificates } = createRequire(import.meta.url)('node:tls') as typeof import('node:tls');
  return [...rootCertificates, bundle.toString('utf8')];
}

export function resolveOptions(opts: UndiciRegistryClientOptions): ResolvedOptions {
  if (typeof opts !== 'object' || opts === null) bad('options must be an object');
  for (const k of Object.keys(opts)) if (!KNOWN.has(k)) bad(`unknown option ${JSON.stringify(k)}`);
  if (opts.insecure !== undefined && !Array.isArray(opts.insecure)) bad('insecure must be an array of host[:port]');
  const insecure = new Set((opts.insecure ?? []).map((h) => normalizeHostPort(h, 'insecure entry')));
  if (opts.plainHttp !== undefined && typeof opts.plainHttp !== 'boolean') bad('plainHttp must be a boolean');
  const timeoutMs = intIn(opts.timeoutMs, 'timeoutMs', 1, 600_000, DEFAULT_TIMEOUT_MS);
  const totalTimeoutMs = intIn(opts.totalTimeoutMs, 'totalTimeoutMs', 1, 3_600_000, DEFAULT_TOTAL_TIMEOUT_MS);
  const mirrorTimeoutMs = intIn(opts.mirrorTimeoutMs, 'mirrorTimeoutMs', 1, 600_000, DEFAULT_MIRROR_TIMEOUT_MS);
  const retries = intIn(opts.retries, 'retries', 0, 10, DEFAULT_RETRIES);
  const mirrors = new Map<string, readonly string[]>();
  if (opts.mirrors !== undefined) {
    if (typeof opts.mirrors !== 'object' || opts.mirrors === null) bad('mirrors must map registry → [mirror hosts]');
    for (const [reg, list] of Object.entries(opts.mirrors)) {
      const r = normalizeHostPort(reg, 'mirrors key');
      if (!Array.isArray(list) || list.length > MAX_MIRRORS_PER_REGISTRY) bad(`mirrors for ${r} must be an array of at most ${MAX_MIRRORS_PER_REGISTRY} hosts`);
      const hosts = list.map((m) => normalizeHostPort(m, `mirror of ${r}`));
      if (hosts.includes(r)) bad(`${r} is listed as its own mirror`);
      mirrors.set(r, hosts);
    }
  }
  const credentials = opts.credentials ?? emptyCredentials;
  if (typeof credentials.lookup !== 'function') bad('credentials must have a lookup(registry, repository) method');
  const clock = opts.clock ?? systemClock;
  if (typeof clock.now !== 'function' || typeof clock.sleep !== 'function') bad('clock must have now() and sleep()');
  const monotonic = opts.monotonicNow ?? monotonicNow;
  if (typeof monotonic !== 'function') bad('monotonicNow must be a function');
  const logger = opts.logger ?? silentLogger;
  if (typeof logger.log !== 'function') bad('logger must have log()');
  const userAgent = opts.userAgent ?? DEFAULT_USER_AGENT;
  if (typeof userAgent !== 'string' || userAgent.length === 0 || userAgent.length > 256 || /[^\x20-\x7e]/.test(userAgent)) {
    bad('userAgent must be 1–256 printable ASCII characters');
  }
  if (opts.dispatcherFactory !== undefined && typeof opts.dispatcherFactory !== 'function') bad('dispatcherFactory must be a function');
  if (opts.signal !== undefined && !(opts.signal instanceof AbortSignal)) bad('signal must be an AbortSignal');
  return {
    insecure,
    plainHttp: opts.plainHttp ?? false,
    ca: loadCa(opts.caFile),
    timeoutMs,
    totalTimeoutMs,
    mirrorTimeoutMs,
    connectTimeoutMs: Math.min(timeoutMs, MAX_CONNECT_TIMEOUT_MS),
    retries,
    mirrors,
    credentials,
    clock,
    monotonicNow: monotonic,
    logger,
    userAgent,
    dispatcherFactory: opts.dispatcherFactory,
    signal: opts.signal,
  };
}
