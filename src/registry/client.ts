// spoke's OCI distribution client (distribution spec v1.1 pull, push and referrers) on undici.
// The cold pull path is two requests (manifest, blob) against an open registry: no /v2/ ping, no
// HEAD before GET; the first 401 teaches the client the registry's auth scheme for next time.
// Source selection (mirrors, fallback) is in sources.ts, the push path in upload.ts.

import { SpokeError } from '../core/errors.js';
import type { MonotonicNow } from '../core/runtime.js';
import { isDigest, type Digest } from '../core/digest.js';
import { MEDIA_TYPE_OCI_INDEX, MEDIA_TYPE_OCI_MANIFEST } from '../core/constants.js';
import { Authenticator, credentialKey } from './auth.js';
import { Caller } from './call.js';
import { statusError } from './errors.js';
import { errorSummary, header, readCapped, sha256Hasher, Transport } from './http.js';
import { resolveOptions, type UndiciRegistryClientOptions } from './options.js';
import { checkDigest, checkManifestRef, checkMediaType, refContext } from './refs.js';
import { digestMismatch, sourceCapped, Sources } from './sources.js';
import type {
  Credential,
  FetchedBlob,
  FetchedManifest,
  FetchOptions,
  RegistryClient,
  RepoLocator,
} from './types.js';
import { Uploader } from './upload.js';

export type { UndiciRegistryClientOptions } from './options.js';

const DEFAULT_ACCEPT = `${MEDIA_TYPE_OCI_MANIFEST}, ${MEDIA_TYPE_OCI_INDEX}`;

/**
 * A registry that answered 404 to the referrers API of a repository does not have the API
 * (distribution spec v1.1: one that has it never answers 404 there), and is not asked again
 * for that repository for this long: signature discovery goes straight to the tag-schema index.
 * A 404 that says the repository does not exist (NAME_UNKNOWN) is not remembered: the repository
 * may be pushed a minute later. A registry upgraded meanwhile is asked again after this time;
 * until then a signature pushed only through its new API is not found, a refusal
 * (docs/signatures.md).
 */
const REFERRERS_ABSENT_MS = 10 * 60_000;
/** Repositories remembered as lacking the referrers API, at most (then forgotten all at once). */
const MAX_REFERRERS_ABSENT = 1024;

export class UndiciRegistryClient implements RegistryClient {
  private readonly transport: Transport;
  private readonly sources: Sources;
  private readonly caller: Caller;
  private readonly uploader: Uploader;
  private readonly monotonicNow: MonotonicNow;
  /** Registry origin and repository → until when they are taken to lack the referrers API (monotonicNow ms). */
  private readonly referrersAbsent = new Map<string, number>();

  constructor(options: UndiciRegistryClientOptions = {}) {
    const o = resolveOptions(options);
    this.monotonicNow = o.monotonicNow;
    const { insecure, plainHttp } = o;
    this.transport = new Transport({
      allowsHttp: (hostPort) => plainHttp || insecure.has(hostPort.toLowerCase()),
      ca: o.ca,
      timeoutMs: o.timeoutMs,
      totalTimeoutMs: o.totalTimeoutMs,
      connectTimeoutMs: o.connectTimeoutMs,
      userAgent: o.userAgent,
      dispatcherFactory: o.dispatcherFactory,
      clock: o.clock,
      logger: o.logger,
    });
    const auth = new Authenticator({ transport: this.transport, monotonicNow: o.monotonicNow, logger: o.logger, retries: o.retries });
    this.sources = new Sources(o, this.transport);
    this.caller = new Caller(this.transport, auth);
    this.uploader = new Uploader(this.sources, this.caller, this.transport);
  }

  // ---- pull -----------------------------------------------------------------------------

  async getManifest(repo: RepoLocator, digestOrTag: string, accept: readonly string[], opts: FetchOptions): Promise<FetchedManifest> {
    const byDigest = checkManifestRef(digestOrTag);
    const ctx = refContext(repo, digestOrTag);
    return this.sources.fromSources(repo, opts, ctx, async (src) => {
      const res = await this.caller.call(src, {
        method: 'GET',
        url: new URL(`/v2/${src.repository}/manifests/${digestOrTag}`, src.base),
        headers: { accept: accept.length > 0 ? accept.join(', ') : DEFAULT_ACCEPT },
        actions: 'pull',
        ctx,
      });
      if (res.status !== 200) throw statusError(res.status, `manifest ${digestOrTag}`, src.name, await errorSummary(res), ctx);
      const hash = sha256Hasher();
      const bytes = byDigest ? (await sourceCapped(res, opts.maxBytes, opts.maxBytes, 'manifest', src, ctx, hash)).bytes : await readCapped(res, opts.maxBytes, 'manifest', ctx, hash);
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
    return this.sources.fromSources(repo, opts, ctx, async (src) => {
      const res = await this.caller.call(src, {
        method: 'GET',
        url: new URL(`/v2/${src.repository}/blobs/${digest}`, src.base),
        actions: 'pull',
        ctx,
        ...(opts.onDispatched ? { onDispatched: opts.onDispatched } : {}),
      });
      if (res.status !== 200) throw statusError(res.status, `blob ${digest}`, src.name, await errorSummary(res), ctx);
      // Hashed up to the cap, not just the declared size: only bytes that hash to the digest tell
      // a descriptor that lies about their size (the content's fault) from a source that sends
      // other bytes (the source's fault, so the next source is tried). Held only up to the
      // declared size, which is what the pull holds of the node's budget for it.
      const hash = sha256Hasher();
      const body = await sourceCapped(res, opts.maxBytes, expectedSize ?? opts.maxBytes, 'blob', src, ctx, hash);
      const actual: Digest = `sha256:${hash.digest('hex')}`;
      if (actual !== digest) throw digestMismatch(`blob from ${src.name} does not match its digest: expected ${digest}, got ${actual}`, src, ctx, digest, actual);
      if (expectedSize !== undefined && body.length !== expectedSize) {
        throw new SpokeError(
          'SecurityProfileInvalid',
          `blob ${digest} is ${body.length} bytes, its descriptor says ${expectedSize}`,
          { ...ctx, registry: src.name, expected: expectedSize, actual: body.length },
          { reason: 'SIZE_LIMIT' },
        );
      }
      return { bytes: body.bytes, digest, servedBy: src.name };
    });
  }

  async getReferrers(repo: RepoLocator, digest: Digest, opts: FetchOptions & { artifactType?: string }): Promise<Buffer | undefined> {
    checkDigest(digest);
    const ctx = refContext(repo, digest);
    const query = opts.artifactType === undefined ? '' : `?artifactType=${encodeURIComponent(checkMediaType(opts.artifactType))}`;
    return undefinedIfNotFound(
      this.sources.fromSources(repo, opts, ctx, async (src) => {
        // Per credential too: a registry may answer 404 to a caller who may not see the
        // repository, which says nothing of what another caller would be shown.
        const key = `${src.base.origin}/${src.repository}\n${credentialKey(src.credential)}`;
        const absentUntil = this.referrersAbsent.get(key);
        if (absentUntil !== undefined && this.monotonicNow() < absentUntil) {
          // The registry itself answers "no referrers" at once: building an error (its stack
          // trace) would hold up the tag-schema request that discovery sends next, on a keyed
          // pull's longest chain. A mirror throws, so that the next source is asked.
          if (src.name === repo.registry) return undefined;
          throw new SpokeError('NotFound', `referrers of ${digest}: ${src.name} has no referrers API for ${src.repository} (it answered 404 less than ${REFERRERS_ABSENT_MS / 60_000} minutes ago)`, { ...ctx, registry: src.name }, { reason: 'NOT_FOUND' });
        }
        const res = await this.caller.call(src, {
          method: 'GET',
          url: new URL(`/v2/${src.repository}/referrers/${digest}${query}`, src.base),
          headers: { accept: MEDIA_TYPE_OCI_INDEX },
          actions: 'pull',
          ctx,
        });
        if (res.status !== 200) {
          const summary = await errorSummary(res);
          if (res.status === 404 && summary?.code !== 'NAME_UNKNOWN') {
            if (this.referrersAbsent.size >= MAX_REFERRERS_ABSENT) this.referrersAbsent.clear();
            this.referrersAbsent.set(key, this.monotonicNow() + REFERRERS_ABSENT_MS);
          }
          throw statusError(res.status, `referrers of ${digest}`, src.name, summary, ctx);
        }
        return readCapped(res, opts.maxBytes, 'referrers index', ctx);
      }),
    );
  }

  async hasBlob(repo: RepoLocator, digest: Digest, opts: { credential?: Credential; signal?: AbortSignal } = {}): Promise<boolean> {
    checkDigest(digest);
    return this.caller.headBlob(this.sources.source(repo, repo.registry, opts.credential, opts.signal), digest, 'pull');
  }

  // ---- push (upload.ts) -----------------------------------------------------------------

  putBlob(repo: RepoLocator, bytes: Uint8Array, opts: { credential?: Credential; chunkSize?: number; signal?: AbortSignal } = {}): Promise<Digest> {
    return this.uploader.putBlob(repo, bytes, opts);
  }

  putManifest(
    repo: RepoLocator,
    tagOrDigest: string,
    bytes: Uint8Array,
    mediaType: string,
    opts: { credential?: Credential; signal?: AbortSignal } = {},
  ): Promise<{ digest: Digest; subjectHeader: string | undefined }> {
    return this.uploader.putManifest(repo, tagOrDigest, bytes, mediaType, opts);
  }

  async close(): Promise<void> {
    await this.transport.close();
  }
}

async function undefinedIfNotFound<T>(p: Promise<T>): Promise<T | undefined> {
  try {
    return await p;
  } catch (e) {
    if (e instanceof SpokeError && e.code === 'NotFound') return undefined;
    throw e;
  }
}
