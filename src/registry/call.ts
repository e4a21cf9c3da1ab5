// One authenticated request to a source, for the registry client's pull and upload paths.

import type { ErrorContext } from '../core/errors.js';
import type { Digest } from '../core/digest.js';
import { isOwn401, type AuthState, type AuthTarget, type Authenticator } from './auth.js';
import { networkError, statusError } from './errors.js';
import { discard, type HttpResponse, type Method, type Transport } from './http.js';
import type { Source } from './sources.js';

export type Actions = 'pull' | 'pull,push';

export interface CallInit {
  method: Method;
  url: URL;
  headers?: Record<string, string>;
  body?: Uint8Array;
  actions: Actions;
  ctx: ErrorContext;
  /** FetchOptions.onDispatched. */
  onDispatched?: () => void;
}

export class Caller {
  constructor(
    private readonly transport: Transport,
    private readonly auth: Authenticator,
  ) {}

  /** One request with auth: at most one re-authentication after a 401 from the registry itself. */
  async call(src: Source, init: CallInit): Promise<HttpResponse> {
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
          {
            method: init.method,
            url: init.url,
            headers,
            ...(init.body ? { body: init.body } : {}),
            ...(src.signal ? { signal: src.signal } : {}),
            ...(init.onDispatched ? { onDispatched: init.onDispatched } : {}),
          },
          src.retries,
          { ...init.ctx, registry: src.name },
        );
      } catch (e) {
        throw networkError(e, init.url.host, init.ctx, src.signal);
      }
      if (!isOwn401(res, src.base)) return res;
      if (round > 0) {
        await discard(res);
        throw this.auth.refusal(target);
      }
      state = await this.auth.after401(target, res, state);
    }
  }

  async headBlob(src: Source, digest: Digest, actions: Actions): Promise<boolean> {
    const ctx = { registry: src.name, digest };
    const res = await this.call(src, { method: 'HEAD', url: new URL(`/v2/${src.repository}/blobs/${digest}`, src.base), actions, ctx });
    await discard(res);
    if (res.status === 200) return true;
    if (res.status === 404) return false;
    throw statusError(res.status, `blob ${digest}`, src.name, undefined, ctx);
  }
}
