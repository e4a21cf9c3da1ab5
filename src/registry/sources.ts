// Source selection for the registry client: the registry itself or one of its mirrors, each with
// the credential that may be sent to it, and the fallback from mirrors to the registry.

import { SpokeError, type ErrorContext } from '../core/errors.js';
import { MAX_REPOSITORY_LENGTH } from '../core/limits.js';
import { PATH_COMPONENT_RE } from '../core/reference.js';
import { networkError } from './errors.js';
import { readCappedKeeping, type HttpResponse, type KeptBody, type sha256Hasher, type Transport } from './http.js';
import { normalizeHostPort, type ResolvedOptions } from './options.js';
import type { Credential, FetchOptions, RepoLocator } from './types.js';

/** One registry or mirror, with the credential that may be sent to it. */
export interface Source {
  name: string; // host[:port]
  base: URL;
  repository: string;
  credential: Credential | undefined;
  retries: number;
  signal: AbortSignal | undefined;
}

export class Sources {
  private readonly checkedRepos = new Set<string>();

  constructor(
    private readonly o: ResolvedOptions,
    private readonly transport: Transport,
  ) {}

  /** A registry or mirror with its own credential: the per-request one only for the registry itself. */
  source(repo: RepoLocator, name: string, perRequest: Credential | undefined, signal: AbortSignal | undefined): Source {
    this.checkRepo(repo);
    const own = name === repo.registry;
    return {
      name,
      base: this.transport.baseUrl(name),
      repository: repo.repository,
      credential: (own ? perRequest : undefined) ?? this.o.credentials.lookup(name, repo.repository),
      retries: own ? this.o.retries : 0,
      signal: this.o.signal === undefined ? signal : signal === undefined ? this.o.signal : AbortSignal.any([signal, this.o.signal]),
    };
  }

  /**
   * Mirrors first (when asked), then the registry. A mirror that is down, lacks the content,
   * wants credentials we do not have, or serves bytes that are not the digest's (a stale or
   * tampered mirror or CDN) is skipped and logged: the next source may have the real bytes, and
   * wrong bytes say nothing about the content the digest names. Mirrors get no retries: the
   * registry itself is the fallback. The registry's own failure is the answer.
   */
  async fromSources<T>(repo: RepoLocator, opts: FetchOptions, ctx: ErrorContext, fetch: (src: Source) => Promise<T>): Promise<T> {
    const mirrors = opts.useMirrors ? (this.o.mirrors.get(repo.registry) ?? []) : [];
    for (const m of mirrors) {
      // Each mirror has a budget of its own (mirrorTimeoutMs), so the registry is still asked in time.
      const budget = new AbortController();
      const timer = setTimeout(
        () => budget.abort(new SpokeError('RegistryUnavailable', `mirror ${m} took longer than ${this.o.mirrorTimeoutMs} ms`, { ...ctx, registry: m, limit: this.o.mirrorTimeoutMs }, { reason: 'DEADLINE' })),
        this.o.mirrorTimeoutMs,
      );
      try {
        return await attempt(this.source(repo, m, undefined, opts.signal ? AbortSignal.any([opts.signal, budget.signal]) : budget.signal), ctx, fetch);
      } catch (e) {
        if (!(e instanceof SpokeError) || opts.signal?.aborted || this.o.signal?.aborted) throw e;
        if (e.code !== 'RegistryUnavailable' && e.code !== 'NotFound' && e.code !== 'Unauthenticated') throw e;
        this.o.logger.log('warn', 'mirror failed, trying next', { ...ctx, mirror: m, code: e.code, reason: e.reason });
      } finally {
        clearTimeout(timer);
      }
    }
    return attempt(this.source(repo, repo.registry, opts.credential, opts.signal), ctx, fetch);
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

/** One source; a connection that fails while a body is read is a transport fault of that source. */
async function attempt<T>(src: Source, ctx: ErrorContext, fetch: (src: Source) => Promise<T>): Promise<T> {
  try {
    return await fetch(src);
  } catch (e) {
    throw networkError(e, src.name, ctx, src.signal);
  }
}

/** Bytes a source sent that are not the content the digest names: that source's fault. */
export function digestMismatch(message: string, src: Source, ctx: ErrorContext, expected: string, actual: string): SpokeError {
  return new SpokeError('RegistryUnavailable', message, { ...ctx, registry: src.name, expected, actual }, { reason: 'DIGEST_MISMATCH' });
}

/**
 * readCappedKeeping for content named by a digest: more bytes than the cap cannot be the content
 * that was asked for (or cannot be checked to be), so the source is at fault, not the digest.
 */
export async function sourceCapped(res: HttpResponse, maxBytes: number, keep: number, what: string, src: Source, ctx: ErrorContext, hash: ReturnType<typeof sha256Hasher>): Promise<KeptBody> {
  try {
    return await readCappedKeeping(res, maxBytes, keep, what, ctx, hash);
  } catch (e) {
    if (e instanceof SpokeError && e.reason === 'SIZE_LIMIT') {
      throw new SpokeError('RegistryUnavailable', `${src.name}: ${e.message}`, { ...e.context, registry: src.name }, { reason: 'SIZE_LIMIT', cause: e });
    }
    throw e;
  }
}
