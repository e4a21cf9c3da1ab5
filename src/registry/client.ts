// spoke's OCI distribution client (distribution spec v1.1 pull, push and referrers) on undici.
// The cold pull path is two requests (manifest, blob) against an open registry: no /v2/ ping, no
// HEAD before GET; the first 401 teaches the client the registry's auth scheme for next time.

import { SpokeError, type ErrorContext } from '../core/errors.js';
import { isDigest, sha256Digest, type Digest } from '../core/digest.js';
import { MEDIA_TYPE_OCI_INDEX, MEDIA_TYPE_OCI_MANIFEST } from '../core/constants.js';
import { MAX_REPOSITORY_LENGTH } from '../core/limits.js';
import { PATH_COMPONENT_RE, TAG_RE } from '../core/reference.js';
import { Authenticator, isOwn401, refusedError, type AuthState, type AuthTarget } from './auth.js';
import { networkError, statusError } from './errors.js';
import { discard, errorSummary, header, readCapped, sha256Hasher, Transport, type HttpResponse, type Method } from './http.js';
import { normalizeHostPort, resolveOptions, type ResolvedOptions, type UndiciRegistryClientOptions } from './options.js';
import type {
  Credential,
  FetchedBlob,
  FetchedManifest,
  FetchOptions,
  RegistryClient,
  RepoLocator,
} from './types.js';

export type { UndiciRegistryClientOptions } from './options.js';

const MEDIA_TYPE_RE = /^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}\/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}$/;
const DEFAULT_ACCEPT = `${MEDIA_TYPE_OCI_MANIFEST}, ${MEDIA_TYPE_OCI_INDEX}`;

type Actions = 'pull' | 'pull,push';

/** One registry or mirror, with the credential that may be sent to it. */
interface Source {
  name: string; // host[:port]
  base: URL;
  repository: string;
  credential: Credential | undefined;
  retries: number;
  signal: AbortSignal | undefined;
}

interface CallInit {
  method: Method;
  url: URL;
  headers?: Record<string, string>;
  body?: Uint8Array;
  actions: Actions;
  ctx: ErrorContext;
}

export class UndiciRegistryClient implements RegistryClient {
  private readonly o: ResolvedOptions;
  private readonly transport: Transport;
  private readonly auth: Authenticator;
  private readonly checkedRepos = new Set<string>();

  constructor(options: UndiciRegistryClientOptions = {}) {
    this.o = resolveOptions(options);
    const { insecure, plainHttp } = this.o;
    this.transport = new Transport({
      allowsHttp: (hostPort) => plainHttp || insecure.has(hostPort.toLowerCase()),
      ca: this.o.ca,
      timeoutMs: this.o.timeoutMs,
      connectTimeoutMs: this.o.connectTimeoutMs,
      userAgent: this.o.userAgent,
      dispatcherFactory: this.o.dispatcherFactory,
      clock: this.o.clock,
      logger: this.o.logger,
    });
    this.auth = new Authenticator({ transport: this.transport, clock: this.o.clock, logger: this.o.logger, retries: this.o.retries });
  }

  // ---- pull -----------------------------------------------------------------------------

  async getManifest(repo: RepoLocator, digestOrTag: string, accept: readonly string[], opts: FetchOptions): Promise<FetchedManifest> {
    const byDigest = checkManifestRef(digestOrTag);
    const ctx = refContext(repo, digestOrTag);
    return this.fromSources(repo, opts, ctx, async (src) => {
      const res = await this.call(src, {
        method: 'GET',
        url: new URL(`/v2/${src.repository}/manifests/${digestOrTag}`, src.base),
        headers: { accept: accept.length > 0 ? accept.join(', ') : DEFAULT_ACCEPT },
        actions: 'pull',
        ctx,
      });
      if (res.status !== 200) throw statusError(res.status, `manifest ${digestOrTag}`, src.name, await errorSummary(res), ctx);
      const hash = sha256Hasher();
      const bytes = byDigest ? await sourceCapped(res, opts.maxBytes, 'manifest', src, ctx, hash) : await readCapped(res, opts.maxBytes, 'manifest', ctx, hash);
      const digest: Digest = `sha256:${hash.digest('hex')}`;
      // By digest: the bytes must be what was asked for. By tag: the registry's own digest
      // header, when it sends one, must match what it sent. Either way the source is at fault,
      // not the content the digest names: the next source is tried.
      const expected = byDigest ? digestOrTag : header(res.headers, 'docker-content-digest');
      if (expected !== undefined && (byDigest || isDigest(expected)) && expected !== digest) {
        throw digestMismatch(`manifest from ${src.name} does not match its digest: expected ${expected}, got ${digest}`, src, ctx, expected, digest);
      }
      return { bytes, contentType: header(res.headers, 'content-type'), digest, servedBy: src.name };
    });
  }

  async getManifestIfExists(
    repo: RepoLocator,
    digestOrTag: string,
    accept: readonly string[],
    opts: FetchOptions,
  ): Promise<FetchedManifest | undefined> {
    return undefinedIfNotFound(this.getManifest(repo, digestOrTag, accept, opts));
  }

  async getBlob(repo: RepoLocator, digest: Digest, opts: FetchOptions & { expectedSize?: number }): Promise<FetchedBlob> {
    checkDigest(digest);
    const ctx = refContext(repo, digest);
    const { expectedSize } = opts;
    if (expectedSize !== undefined && (!Number.isSafeInteger(expectedSize) || expectedSize < 0 || expectedSize > opts.maxBytes)) {
      throw new SpokeError(
        'SecurityProfileInvalid',
        `blob ${digest} declares size ${expectedSize}, over the limit of ${opts.maxBytes}`,
        { ...ctx, limit: opts.maxBytes, actual: expectedSize },
        { reason: 'SIZE_LIMIT' },
      );
    }
    return this.fromSources(repo, opts, ctx, async (src) => {
      const res = await this.call(src, {
        method: 'GET',
        url: new URL(`/v2/${src.repository}/blobs/${digest}`, src.base),
        actions: 'pull',
        ctx,
      });
      if (res.status !== 200) throw statusError(res.status, `blob ${digest}`, src.name, await errorSummary(res), ctx);
      // Read up to the cap, not just the declared size: only bytes that hash to the digest tell
      // a descriptor that lies about their size (the content's fault) from a source that sends
      // other bytes (the source's fault, so the next source is tried).
      const hash = sha256Hasher();
      const bytes = await sourceCapped(res, opts.maxBytes, 'blob', src, ctx, hash);
      const actual: Digest = `sha256:${hash.digest('hex')}`;
      if (actual !== digest) throw digestMismatch(`blob from ${src.name} does not match its digest: expected ${digest}, got ${actual}`, src, ctx, digest, actual);
      if (expectedSize !== undefined && bytes.length !== expectedSize) {
        throw new SpokeError(
          'SecurityProfileInvalid',
          `blob ${digest} is ${bytes.length} bytes, its descriptor says ${expectedSize}`,
          { ...ctx, registry: src.name, expected: expectedSize, actual: bytes.length },
          { reason: 'SIZE_LIMIT' },
        );
      }
      return { bytes, digest, servedBy: src.name };
    });
  }

  async getReferrers(repo: RepoLocator, digest: Digest, opts: FetchOptions & { artifactType?: string }): Promise<Buffer | undefined> {
    checkDigest(digest);
    const ctx = refContext(repo, digest);
    const query = opts.artifactType === undefined ? '' : `?artifactType=${encodeURIComponent(checkMediaType(opts.artifactType))}`;
    return undefinedIfNotFound(
      this.fromSources(repo, opts, ctx, async (src) => {
        const res = await this.call(src, {
          method: 'GET',
          url: new URL(`/v2/${src.repository}/referrers/${digest}${query}`, src.base),
          headers: { accept: MEDIA_TYPE_OCI_INDEX },
          actions: 'pull',
          ctx,
        });
        if (res.status !== 200) throw statusError(res.status, `referrers of ${digest}`, src.name, await errorSummary(res), ctx);
        return readCapped(res, opts.maxBytes, 'referrers index', ctx);
      }),
    );
  }

  async hasBlob(repo: RepoLocator, digest: Digest, opts: { credential?: Credential; signal?: AbortSignal } = {}): Promise<boolean> {
    checkDigest(digest);
    return this.headBlob(this.source(repo, repo.registry, opts.credential, opts.signal), digest, 'pull');
  }

  // ---- push -----------------------------------------------------------------------------

  async putBlob(repo: RepoLocator, bytes: Uint8Array, opts: { credential?: Credential; chunkSize?: number; signal?: AbortSignal } = {}): Promise<Digest> {
    const { chunkSize } = opts;
    if (chunkSize !== undefined && (!Number.isSafeInteger(chunkSize) || chunkSize < 1)) {
      throw new SpokeError('InvalidArgument', `chunkSize must be a positive integer, got ${chunkSize}`, {}, { reason: 'OPTION_INVALID' });
    }
    const digest = sha256Digest(bytes);
    const src = this.source(repo, repo.registry, opts.credential, opts.signal);
    const ctx = refContext(repo, digest);
    if (await this.headBlob(src, digest, 'pull,push')) return digest;
    // Open an upload session.
    let res = await this.call(src, { method: 'POST', url: new URL(`/v2/${src.repository}/blobs/uploads/`, src.base), actions: 'pull,push', ctx });
    let location = await this.expectLocation(res, 202, 'blob upload start', src, ctx);
    let body: Uint8Array | undefined = bytes;
    if (chunkSize !== undefined && bytes.length > chunkSize) {
      // Chunked: PATCH each range in order (not retried: a repeated PATCH would corrupt the
      // session), then PUT with the digest and no body.
      for (let start = 0; start < bytes.length; start += chunkSize) {
        const chunk = bytes.subarray(start, Math.min(bytes.length, start + chunkSize));
        res = await this.call(
          { ...src, retries: 0 },
          {
            method: 'PATCH',
            url: location,
            headers: { 'content-type': 'application/octet-stream', 'content-range': `${start}-${start + chunk.length - 1}` },
            body: chunk,
            actions: 'pull,push',
            ctx,
          },
        );
        location = await this.expectLocation(res, 202, 'blob chunk upload', src, ctx);
      }
      body = undefined;
    }
    const put = new URL(location);
    put.search = `${put.search === '' ? '?' : `${put.search}&`}digest=${encodeURIComponent(digest)}`;
    res = await this.call(src, {
      method: 'PUT',
      url: put,
      headers: { 'content-type': 'application/octet-stream' },
      body: body ?? new Uint8Array(0),
      actions: 'pull,push',
      ctx,
    });
    if (res.status !== 201) throw statusError(res.status, `blob upload ${digest}`, src.name, await errorSummary(res), ctx, true);
    const echoed = header(res.headers, 'docker-content-digest');
    await discard(res);
    if (echoed !== undefined && echoed !== digest) {
      throw new SpokeError(
        'SecurityProfileInvalid',
        `registry ${src.name} stored the blob as ${echoed}, but its bytes hash to ${digest}`,
        { ...ctx, expected: digest, actual: echoed },
        { reason: 'DIGEST_MISMATCH' },
      );
    }
    return digest;
  }

  async putManifest(
    repo: RepoLocator,
    tagOrDigest: string,
    bytes: Uint8Array,
    mediaType: string,
    opts: { credential?: Credential; signal?: AbortSignal } = {},
  ): Promise<{ digest: Digest; subjectHeader: string | undefined }> {
    const byDigest = checkManifestRef(tagOrDigest);
    checkMediaType(mediaType);
    const digest = sha256Digest(bytes);
    const ctx = refContext(repo, tagOrDigest);
    if (byDigest && tagOrDigest !== digest) {
      throw new SpokeError('InvalidArgument', `manifest bytes hash to ${digest}, not ${tagOrDigest}`, { ...ctx, expected: tagOrDigest, actual: digest }, { reason: 'DIGEST_MISMATCH' });
    }
    const src = this.source(repo, repo.registry, opts.credential, opts.signal);
    const res = await this.call(src, {
      method: 'PUT',
      url: new URL(`/v2/${src.repository}/manifests/${tagOrDigest}`, src.base),
      headers: { 'content-type': mediaType },
      body: bytes,
      actions: 'pull,push',
      ctx,
    });
    if (res.status !== 201) throw statusError(res.status, `manifest upload ${tagOrDigest}`, src.name, await errorSummary(res), ctx, true);
    const echoed = header(res.headers, 'docker-content-digest');
    const subjectHeader = header(res.headers, 'oci-subject');
    await discard(res);
    if (echoed !== undefined && echoed !== digest) {
      throw new SpokeError(
        'SecurityProfileInvalid',
        `registry ${src.name} stored the manifest as ${echoed}, but its bytes hash to ${digest}`,
        { ...ctx, expected: digest, actual: echoed },
        { reason: 'DIGEST_MISMATCH' },
      );
    }
    return { digest, subjectHeader };
  }

  async close(): Promise<void> {
    await this.transport.close();
  }

  // ---- internals ------------------------------------------------------------------------

  /** A registry or mirror with its own credential: the per-request one only for the registry itself. */
  private source(repo: RepoLocator, name: string, perRequest: Credential | undefined, signal: AbortSignal | undefined): Source {
    this.checkRepo(repo);
    const own = name === repo.registry;
    return {
      name,
      base: this.transport.baseUrl(name),
      repository: repo.repository,
      credential: (own ? perRequest : undefined) ?? this.o.credentials.lookup(name, repo.repository),
      retries: own ? this.o.retries : 0,
      signal,
    };
  }

  /**
   * Mirrors first (when asked), then the registry. A mirror that is down, lacks the content,
   * wants credentials we do not have, or serves bytes that are not the digest's (a stale or
   * tampered mirror or CDN) is skipped and logged: the next source may have the real bytes, and
   * wrong bytes say nothing about the content the digest names. Mirrors get no retries: the
   * registry itself is the fallback. The registry's own failure is the answer.
   */
  private async fromSources<T>(repo: RepoLocator, opts: FetchOptions, ctx: ErrorContext, fetch: (src: Source) => Promise<T>): Promise<T> {
    const mirrors = opts.useMirrors ? (this.o.mirrors.get(repo.registry) ?? []) : [];
    for (const m of mirrors) {
      try {
        return await this.attempt(this.source(repo, m, undefined, opts.signal), ctx, fetch);
      } catch (e) {
        if (!(e instanceof SpokeError) || opts.signal?.aborted) throw e;
        if (e.code !== 'RegistryUnavailable' && e.code !== 'NotFound' && e.code !== 'Unauthenticated') throw e;
        this.o.logger.log('warn', 'mirror failed, trying next', { ...ctx, mirror: m, code: e.code, reason: e.reason });
      }
    }
    return this.attempt(this.source(repo, repo.registry, opts.credential, opts.signal), ctx, fetch);
  }

  /** One source; a connection that fails while a body is read is a transport fault of that source. */
  private async attempt<T>(src: Source, ctx: ErrorContext, fetch: (src: Source) => Promise<T>): Promise<T> {
    try {
      return await fetch(src);
    } catch (e) {
      throw networkError(e, src.name, ctx, src.signal);
    }
  }

  /** One request with auth: at most one re-authentication after a 401 from the registry itself. */
  private async call(src: Source, init: CallInit): Promise<HttpResponse> {
    const target: AuthTarget = {
      registry: src.name,
      base: src.base,
      scope: `repository:${src.repository}:${init.actions}`,
      credential: src.credential,
      signal: src.signal,
      ctx: init.ctx,
    };
    let state: AuthState = await this.auth.before(target);
    for (let round = 0; ; round++) {
      const headers = { ...init.headers };
      // Authorization only ever goes to the registry's own origin (upload locations may be elsewhere).
      if (state.header !== undefined && init.url.origin === src.base.origin) headers['authorization'] = state.header;
      let res: HttpResponse;
      try {
        res = await this.transport.request(
          { method: init.method, url: init.url, headers, ...(init.body ? { body: init.body } : {}), ...(src.signal ? { signal: src.signal } : {}) },
          src.retries,
          { ...init.ctx, registry: src.name },
        );
      } catch (e) {
        throw networkError(e, init.url.host, init.ctx, src.signal);
      }
      if (!isOwn401(res, src.base)) return res;
      if (round > 0) {
        await discard(res);
        throw refusedError(target);
      }
      state = await this.auth.after401(target, res, state);
    }
  }

  private async headBlob(src: Source, digest: Digest, actions: Actions): Promise<boolean> {
    const ctx = { registry: src.name, digest };
    const res = await this.call(src, { method: 'HEAD', url: new URL(`/v2/${src.repository}/blobs/${digest}`, src.base), actions, ctx });
    await discard(res);
    if (res.status === 200) return true;
    if (res.status === 404) return false;
    throw statusError(res.status, `blob ${digest}`, src.name, '', ctx);
  }

  /** The upload session URL from a 202 (Location may be relative or absolute). */
  private async expectLocation(res: HttpResponse, status: number, what: string, src: Source, ctx: ErrorContext): Promise<URL> {
    if (res.status !== status) throw statusError(res.status, what, src.name, await errorSummary(res), ctx, true);
    const loc = header(res.headers, 'location');
    await discard(res);
    let url: URL;
    try {
      if (loc === undefined) throw new Error('missing');
      url = new URL(loc, res.url);
    } catch {
      throw new SpokeError('RegistryUnavailable', `${what}: ${src.name} sent no usable Location`, { ...ctx, registry: src.name }, { reason: 'REGISTRY_ERROR' });
    }
    this.transport.checkScheme(url, 'upload location', ctx);
    return url;
  }

  private checkRepo(repo: RepoLocator): void {
    const key = `${repo.registry}/${repo.repository}`;
    if (this.checkedRepos.has(key)) return;
    if (normalizeHostPort(repo.registry, 'registry') !== repo.registry) {
      throw new SpokeError('InvalidArgument', `registry ${JSON.stringify(repo.registry)} must be written as host[:port] in lowercase`, {}, { reason: 'REFERENCE_INVALID' });
    }
    const r = repo.repository;
    if (typeof r !== 'string' || r.length === 0 || r.length > MAX_REPOSITORY_LENGTH || !r.split('/').every((c) => PATH_COMPONENT_RE.test(c))) {
      throw new SpokeError('InvalidArgument', `invalid repository ${JSON.stringify(String(r).slice(0, 80))}`, { registry: repo.registry }, { reason: 'REFERENCE_INVALID' });
    }
    if (this.checkedRepos.size > 4096) this.checkedRepos.clear();
    this.checkedRepos.add(key);
  }
}

/** Bytes a source sent that are not the content the digest names: that source's fault. */
function digestMismatch(message: string, src: Source, ctx: ErrorContext, expected: string, actual: string): SpokeError {
  return new SpokeError('RegistryUnavailable', message, { ...ctx, registry: src.name, expected, actual }, { reason: 'DIGEST_MISMATCH' });
}

/**
 * readCapped for content named by a digest: more bytes than the cap cannot be the content that
 * was asked for (or cannot be checked to be), so the source is at fault, not the digest.
 */
async function sourceCapped(res: HttpResponse, maxBytes: number, what: string, src: Source, ctx: ErrorContext, hash: ReturnType<typeof sha256Hasher>): Promise<Buffer> {
  try {
    return await readCapped(res, maxBytes, what, ctx, hash);
  } catch (e) {
    if (e instanceof SpokeError && e.reason === 'SIZE_LIMIT') {
      throw new SpokeError('RegistryUnavailable', `${src.name}: ${e.message}`, { ...e.context, registry: src.name }, { reason: 'SIZE_LIMIT', cause: e });
    }
    throw e;
  }
}

function refContext(repo: RepoLocator, ref: string): ErrorContext {
  const sep = ref.startsWith('sha256:') ? '@' : ':';
  return { reference: `${repo.registry}/${repo.repository}${sep}${ref}`, ...(sep === '@' ? { digest: ref } : {}) };
}

function checkDigest(d: string): void {
  if (!isDigest(d)) throw new SpokeError('InvalidArgument', `digest must be sha256:<64 lowercase hex>, got ${JSON.stringify(String(d).slice(0, 80))}`, {}, { reason: 'DIGEST_INVALID' });
}

/** True when `ref` is a digest; a tag otherwise; anything else is InvalidArgument. */
function checkManifestRef(ref: string): boolean {
  if (typeof ref === 'string' && ref.startsWith('sha256:')) {
    checkDigest(ref);
    return true;
  }
  if (typeof ref !== 'string' || !TAG_RE.test(ref)) throw new SpokeError('InvalidArgument', `invalid tag ${JSON.stringify(String(ref).slice(0, 80))}`, {}, { reason: 'REFERENCE_INVALID' });
  return false;
}

function checkMediaType(mt: string): string {
  if (typeof mt !== 'string' || !MEDIA_TYPE_RE.test(mt)) throw new SpokeError('InvalidArgument', `invalid media type ${JSON.stringify(String(mt).slice(0, 80))}`, {}, { reason: 'OPTION_INVALID' });
  return mt;
}

async function undefinedIfNotFound<T>(p: Promise<T>): Promise<T | undefined> {
  try {
    return await p;
  } catch (e) {
    if (e instanceof SpokeError && e.code === 'NotFound') return undefined;
    throw e;
  }
}
