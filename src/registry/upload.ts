// The registry client's push path (distribution spec v1.1): blobs (monolithic, or chunked with
// PATCH) and manifests, each checked against the digest the registry echoes.

import { SpokeError, type ErrorContext } from '../core/errors.js';
import { sha256Digest, type Digest } from '../core/digest.js';
import type { Caller } from './call.js';
import { statusError } from './errors.js';
import { discard, errorSummary, header, type HttpResponse, type Transport } from './http.js';
import { checkManifestRef, checkMediaType, refContext } from './refs.js';
import type { Source, Sources } from './sources.js';
import type { Credential, RepoLocator } from './types.js';

export class Uploader {
  constructor(
    private readonly sources: Sources,
    private readonly caller: Caller,
    private readonly transport: Transport,
  ) {}

  async putBlob(repo: RepoLocator, bytes: Uint8Array, opts: { credential?: Credential; chunkSize?: number; signal?: AbortSignal } = {}): Promise<Digest> {
    const { chunkSize } = opts;
    if (chunkSize !== undefined && (!Number.isSafeInteger(chunkSize) || chunkSize < 1)) {
      throw new SpokeError('InvalidArgument', `chunkSize must be a positive integer, got ${chunkSize}`, {}, { reason: 'OPTION_INVALID' });
    }
    const digest = sha256Digest(bytes);
    const src = this.sources.source(repo, repo.registry, opts.credential, opts.signal);
    const ctx = refContext(repo, digest);
    if (await this.caller.headBlob(src, digest, 'pull,push')) return digest;
    // Open an upload session.
    let res = await this.caller.call(src, { method: 'POST', url: new URL(`/v2/${src.repository}/blobs/uploads/`, src.base), actions: 'pull,push', ctx });
    let location = await this.expectLocation(res, 202, 'blob upload start', src, ctx);
    let body: Uint8Array | undefined = bytes;
    if (chunkSize !== undefined && bytes.length > chunkSize) {
      // Chunked: PATCH each range in order (not retried: a repeated PATCH would corrupt the
      // session), then PUT with the digest and no body.
      for (let start = 0; start < bytes.length; start += chunkSize) {
        const chunk = bytes.subarray(start, Math.min(bytes.length, start + chunkSize));
        res = await this.caller.call(
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
    res = await this.caller.call(src, {
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
    refuseEchoMismatch('blob', src, echoed, digest, ctx);
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
    const src = this.sources.source(repo, repo.registry, opts.credential, opts.signal);
    const res = await this.caller.call(src, {
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
    refuseEchoMismatch('manifest', src, echoed, digest, ctx);
    return { digest, subjectHeader };
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
}

/** A registry that echoes another digest than the bytes hash to stored something else: refused. */
function refuseEchoMismatch(what: 'blob' | 'manifest', src: Source, echoed: string | undefined, digest: Digest, ctx: ErrorContext): void {
  if (echoed === undefined || echoed === digest) return;
  throw new SpokeError('SecurityProfileInvalid', `registry ${src.name} stored the ${what} as ${echoed}, but its bytes hash to ${digest}`, { ...ctx, expected: digest, actual: echoed }, { reason: 'DIGEST_MISMATCH' });
}
