// The HTTP edge: one keep-alive undici Pool per origin (least recently used closed past a cap), scheme rules (HTTPS unless the host is
// allowed plain HTTP), manual redirects that drop credentials across origins, and capped reads.
// Errors thrown by `send` are raw (undici/system); retry.ts and client.ts classify them.

import { createHash, type Hash } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import type { Dispatcher } from 'undici';
// Only the Pool and the request API: undici's index loads fetch, WebSocket, caches and more
// (~40 ms more at every CLI start); these two modules are a fraction of that. undici has no
// `exports` map, so its lib files are reachable (static imports, so the CLI bundle takes them
// too); the index is what attaches `request` to the Dispatcher prototype, so we call the request
// API with the dispatcher as `this` instead. undici is pinned to an exact version and
// test/unit/registry/undici-paths.test.ts fails when these paths move.
import Pool from 'undici/lib/dispatcher/pool.js';
import dispatchRequest from 'undici/lib/api/api-request.js';
import { SpokeError, type ErrorContext } from '../core/errors.js';
import { MAX_RESPONSE_HEADER_BYTES } from '../core/limits.js';
import type { Clock, Logger } from '../core/runtime.js';
import { isRetryableNetworkError, type RegistryErrorText } from './errors.js';
import { backoffMs, isRetryableStatus, parseRetryAfter } from './retry.js';

export type Method = 'GET' | 'HEAD' | 'PUT' | 'POST' | 'PATCH';

export interface HttpRequest {
  method: Method;
  url: URL;
  headers: Record<string, string>;
  body?: Uint8Array;
  signal?: AbortSignal;
  /** FetchOptions.onDispatched: called once the request is handed to its pool. */
  onDispatched?: () => void;
}

export interface HttpResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: Dispatcher.ResponseData['body'];
  /** Where the final response came from (after redirects). */
  url: URL;
}

export interface TransportOptions {
  /** True when plain HTTP may be used for `host[:port]`. */
  allowsHttp: (hostPort: string) => boolean;
  /** Trusted CAs (system roots plus the extra bundle) or undefined for the defaults. */
  ca: string[] | undefined;
  timeoutMs: number;
  /** A request without a signal of its own is ended after this long, body included (options.ts). */
  totalTimeoutMs: number;
  connectTimeoutMs: number;
  userAgent: string;
  dispatcherFactory: ((origin: string) => Dispatcher) | undefined;
  clock: Clock;
  logger: Logger;
  /** Connection pools kept at once (one per origin); the least recently used is closed past it. Default MAX_POOLS. */
  maxPools?: number;
}

/**
 * Origins with an open pool at once. Registries, mirrors, token realms and the CDNs blobs
 * redirect to are a handful per node; redirects to ever new origins must not grow the map.
 */
export const MAX_POOLS = 32;

export const MAX_REDIRECTS = 3;
const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);
/** How much of an error body we read to find the registry's error code. */
const ERROR_BODY_BYTES = 4096;

/** Registries whose API host differs from the name in references. */
const API_HOSTS: ReadonlyMap<string, string> = new Map([['docker.io', 'registry-1.docker.io']]);

export function header(headers: IncomingHttpHeaders, name: string): string | undefined {
  const v = headers[name];
  return Array.isArray(v) ? v[0] : v;
}

export class Transport {
  private readonly pools = new Map<string, Dispatcher>();
  private readonly bases = new Map<string, URL>();
  private closed = false;

  constructor(private readonly opts: TransportOptions) {}

  /** `http(s)://host[:port]` for a registry or mirror name (already validated). */
  baseUrl(registry: string): URL {
    let base = this.bases.get(registry);
    if (!base) {
      const apiHost = API_HOSTS.get(registry) ?? registry;
      base = new URL(`${this.opts.allowsHttp(registry) ? 'http' : 'https'}://${apiHost}`);
      this.bases.set(registry, base);
    }
    return base;
  }

  /** Refuses plain HTTP to a host that is not allowed it (redirect targets, token realms, upload locations). */
  checkScheme(url: URL, what: string, ctx: ErrorContext): void {
    if (url.protocol === 'https:') return;
    // The URL parser drops a default port: `insecure: [host:80]` names `http://host` too.
    if (url.protocol === 'http:' && (this.opts.allowsHttp(url.host) || (url.port === '' && this.opts.allowsHttp(`${url.host}:80`)))) return;
    throw new SpokeError('RegistryUnavailable', `${what} ${url.protocol}//${url.host} refused: only HTTPS is allowed for that host`, ctx, { reason: 'INSECURE_REFUSED' });
  }

  private dispatcher(origin: string): Dispatcher {
    if (this.closed) throw new SpokeError('Internal', 'registry client is closed', {}, { reason: 'CLOSED' });
    let d = this.pools.get(origin);
    if (d) {
      // Most recently used last: Map iteration order is insertion order.
      this.pools.delete(origin);
      this.pools.set(origin, d);
    } else {
      const max = this.opts.maxPools ?? MAX_POOLS;
      while (this.pools.size >= max) {
        const [oldest, pool] = this.pools.entries().next().value!;
        this.pools.delete(oldest);
        // close() lets requests already on that pool finish; only its idle connections go.
        void pool.close().catch(() => {});
      }
      d =
        this.opts.dispatcherFactory?.(origin) ??
        new Pool(origin, {
          connections: 8,
          keepAliveTimeout: 30_000,
          maxHeaderSize: MAX_RESPONSE_HEADER_BYTES,
          headersTimeout: this.opts.timeoutMs,
          bodyTimeout: this.opts.timeoutMs,
          connect: { timeout: this.opts.connectTimeoutMs, ...(this.opts.ca ? { ca: this.opts.ca } : {}) },
        });
      this.pools.set(origin, d);
    }
    return d;
  }

  /** One hop. Throws undici/system errors as they are. */
  async send(req: HttpRequest): Promise<HttpResponse> {
    const headers: Record<string, string> = { 'user-agent': this.opts.userAgent, ...req.headers };
    if (req.body !== undefined) headers['content-length'] = String(req.body.byteLength);
    const dispatcher = this.dispatcher(req.url.origin);
    if (onlyFinishingConnections(dispatcher)) await new Promise((resolve) => setImmediate(resolve));
    const responded = dispatchRequest.call(dispatcher, {
      method: req.method,
      path: req.url.pathname + req.url.search,
      headers,
      body: req.body === undefined ? null : req.body,
      // A caller's signal carries its deadline (a pull's); without one, the request has its own.
      signal: req.signal ?? AbortSignal.timeout(this.opts.totalTimeoutMs),
      headersTimeout: this.opts.timeoutMs,
      bodyTimeout: this.opts.timeoutMs,
    });
    req.onDispatched?.();
    const res = await responded;
    return { status: res.statusCode, headers: res.headers, body: res.body, url: req.url };
  }

  /**
   * Sends and follows up to MAX_REDIRECTS redirects for GET/HEAD. A hop to another origin carries
   * no Authorization; a hop to plain HTTP needs the target host to be allowed it.
   */
  async sendFollowing(req: HttpRequest, ctx: ErrorContext): Promise<HttpResponse> {
    let current = req;
    for (let hop = 0; ; hop++) {
      const res = await this.send(current);
      const location = header(res.headers, 'location');
      if (!REDIRECT_STATUSES.has(res.status) || location === undefined || (current.method !== 'GET' && current.method !== 'HEAD')) {
        return res;
      }
      await discard(res);
      if (hop >= MAX_REDIRECTS) {
        throw new SpokeError('RegistryUnavailable', `more than ${MAX_REDIRECTS} redirects from ${req.url.host}`, ctx, { reason: 'REGISTRY_ERROR' });
      }
      let next: URL;
      try {
        next = new URL(location, current.url);
      } catch {
        throw new SpokeError('RegistryUnavailable', `invalid redirect location from ${current.url.host}`, ctx, { reason: 'REGISTRY_ERROR' });
      }
      this.checkScheme(next, 'redirect to', ctx);
      const headers = { ...current.headers };
      if (next.origin !== current.url.origin) delete headers['authorization'];
      current = { ...current, url: next, headers };
    }
  }

  /**
   * sendFollowing with up to `retries` more attempts after a retryable network error or status
   * (408, 429, 5xx), waiting Retry-After (capped) or an exponential backoff with jitter. The last
   * response is returned whatever its status; errors are thrown raw.
   */
  async request(req: HttpRequest, retries: number, ctx: ErrorContext): Promise<HttpResponse> {
    const { clock, logger } = this.opts;
    for (let attempt = 0; ; attempt++) {
      let res: HttpResponse;
      try {
        res = await this.sendFollowing(req, ctx);
      } catch (e) {
        if (attempt >= retries || req.signal?.aborted || !isRetryableNetworkError(e)) throw e;
        const wait = backoffMs(attempt);
        logger.log('warn', 'registry request failed, retrying', { host: req.url.host, method: req.method, attempt: attempt + 1, waitMs: wait });
        await clock.sleep(wait, req.signal);
        continue;
      }
      if (attempt >= retries || !isRetryableStatus(res.status)) return res;
      const wait = parseRetryAfter(header(res.headers, 'retry-after'), clock.now()) ?? backoffMs(attempt);
      await discard(res);
      logger.log('warn', 'registry busy, retrying', { host: req.url.host, method: req.method, status: res.status, attempt: attempt + 1, waitMs: wait });
      await clock.sleep(wait, req.signal);
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    const pools = [...this.pools.values()];
    this.pools.clear();
    await Promise.allSettled(pools.map((p) => p.close()));
  }
}

/**
 * True when no connection of the pool is free but one is up with nothing running: its response
 * has just ended. undici frees such a connection for the next request one event-loop turn later
 * (so that a server closing it is seen first), and a request made before then opens another
 * connection (for a remote registry, another TLS handshake). One turn first lets the request that
 * follows a body (the blob after its manifest, a bundle after its index) reuse it. Asked before a
 * request rather than waited after every body, so that nothing after a pull's last response (its
 * checks, its store writes, the shim's answer) waits for a turn: in a process with a free
 * connection to the registry, no request does (docs/benchmarks.md). With pipelining 1, each
 * running request holds one connection.
 */
function onlyFinishingConnections(d: Dispatcher): boolean {
  const stats = d instanceof Pool ? d.stats : undefined;
  return stats !== undefined && stats.free === 0 && stats.connected > stats.running;
}

/** Drops the body and its connection without reading further (the abort error is expected). */
function abort(res: HttpResponse): void {
  res.body.on('error', () => {});
  res.body.destroy();
}

/** Reads and drops what is left of a body (bounded; the connection is dropped past the limit). */
export async function discard(res: HttpResponse): Promise<void> {
  try {
    await res.body.dump({ limit: 64 * 1024 });
  } catch {
    /* the connection is gone; nothing to keep */
  }
}

/**
 * Reads the body with a hard cap: a declared Content-Length over `maxBytes` is refused before
 * reading, streamed bytes past it abort the read. Optionally hashes while streaming.
 */
export async function readCapped(res: HttpResponse, maxBytes: number, what: string, ctx: ErrorContext, hash?: Hash): Promise<Buffer> {
  return (await readCappedKeeping(res, maxBytes, maxBytes, what, ctx, hash)).bytes;
}

/** A body read by readCappedKeeping: its first bytes, and how many it had in all. */
export interface KeptBody {
  bytes: Buffer;
  length: number;
}

/**
 * readCapped that holds at most `keep` bytes in memory: later bytes are hashed and counted, then
 * dropped. A blob's download is held against the node's budget at its declared size
 * (src/pull/byte-budget.ts), so a source that sends more must not make it hold more; the hash of
 * the whole body still tells whose fault the extra bytes are.
 */
export async function readCappedKeeping(res: HttpResponse, maxBytes: number, keep: number, what: string, ctx: ErrorContext, hash?: Hash): Promise<KeptBody> {
  const declared = header(res.headers, 'content-length');
  if (declared !== undefined && /^[0-9]{1,15}$/.test(declared) && Number(declared) > maxBytes) {
    abort(res);
    throw new SpokeError(
      'SecurityProfileInvalid',
      `${what} from ${res.url.host} declares ${declared} bytes, over the limit of ${maxBytes}`,
      { ...ctx, limit: maxBytes, actual: Number(declared) },
      { reason: 'SIZE_LIMIT' },
    );
  }
  // Read with listeners, not an async iterator: bodies here are a few KiB, and the iterator's
  // set-up cost more than the reading (docs/benchmarks.md).
  const body = res.body;
  const chunks: Buffer[] = [];
  // A body held short of the cap (a blob at its declared size) is copied into one buffer of that
  // size as it arrives: chunks and a copy of them held at once would be twice the size.
  const into = keep < maxBytes ? Buffer.allocUnsafe(keep) : undefined;
  let total = 0;
  let kept = 0;
  const cutShort = (): Error => Object.assign(new Error('the response body was closed before its end'), { code: 'ERR_STREAM_PREMATURE_CLOSE' });
  if (body.destroyed) throw body.errored ?? cutShort();
  await new Promise<void>((resolve, reject) => {
    const onData = (chunk: Buffer): void => {
      total += chunk.length;
      if (total > maxBytes) {
        done();
        abort(res);
        reject(new SpokeError('SecurityProfileInvalid', `${what} from ${res.url.host} is larger than the limit of ${maxBytes} bytes`, { ...ctx, limit: maxBytes }, { reason: 'SIZE_LIMIT' }));
        return;
      }
      hash?.update(chunk);
      if (kept >= keep) return;
      if (into !== undefined) {
        kept += chunk.copy(into, kept, 0, Math.min(chunk.length, keep - kept));
        return;
      }
      chunks.push(chunk);
      kept += chunk.length;
    };
    const onEnd = (): void => {
      done();
      resolve();
    };
    const onError = (e: Error): void => {
      done();
      reject(e);
    };
    // Closed without its end and without an error: cut short (as the iterator would say).
    const onClose = (): void => onError(cutShort());
    const done = (): void => {
      body.off('data', onData).off('end', onEnd).off('error', onError).off('close', onClose);
    };
    body.on('data', onData).on('end', onEnd).on('error', onError).on('close', onClose);
  });
  if (into !== undefined) return { bytes: kept === keep ? into : into.subarray(0, kept), length: total };
  return { bytes: chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, kept), length: total };
}

export function sha256Hasher(): Hash {
  return createHash('sha256');
}

const PRINTABLE_RE = /[^\x20-\x7e]/g;
/**
 * The error codes of the OCI distribution spec (its "Error Codes" table), and those the Docker
 * registry API adds, which registries still send: the only registry text a status may carry.
 */
const REGISTRY_ERROR_CODES: ReadonlySet<string> = new Set([
  'BLOB_UNKNOWN',
  'BLOB_UPLOAD_INVALID',
  'BLOB_UPLOAD_UNKNOWN',
  'DIGEST_INVALID',
  'MANIFEST_BLOB_UNKNOWN',
  'MANIFEST_INVALID',
  'MANIFEST_UNKNOWN',
  'NAME_INVALID',
  'NAME_UNKNOWN',
  'SIZE_INVALID',
  'UNAUTHORIZED',
  'DENIED',
  'UNSUPPORTED',
  'TOOMANYREQUESTS',
  'MANIFEST_UNVERIFIED',
  'TAG_INVALID',
  'PAGINATION_NUMBER_INVALID',
  'RANGE_INVALID',
  'UNAVAILABLE',
  'UNKNOWN',
]);

function printable(text: string): string {
  return text.replace(PRINTABLE_RE, '?').slice(0, 200);
}

/** The registry's first OCI error in an error response; undefined when none. */
export async function errorSummary(res: HttpResponse): Promise<RegistryErrorText | undefined> {
  let body = '';
  try {
    body = (await readCapped(res, ERROR_BODY_BYTES, 'error body', {})).toString('utf8');
  } catch {
    return undefined;
  }
  try {
    const doc = JSON.parse(body) as { errors?: Array<{ code?: unknown; message?: unknown }> };
    const first = Array.isArray(doc.errors) ? doc.errors[0] : undefined;
    if (first && typeof first.code === 'string') {
      const msg = typeof first.message === 'string' ? first.message : '';
      if (!REGISTRY_ERROR_CODES.has(first.code)) return { text: printable(msg ? `${first.code}: ${msg}` : first.code) };
      return msg ? { code: first.code, text: printable(msg) } : { code: first.code };
    }
  } catch {
    /* not JSON */
  }
  return undefined;
}
