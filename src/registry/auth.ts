// Registry authentication: the scheme each registry asked for (learned from its first 401),
// Basic headers, and Docker/OCI Bearer tokens from the realm, cached per (registry, scope,
// credential) until `expires_in`, measured on the monotonic clock.
//
// Where credentials go: a registry's credential is sent to that registry's own origin, and to a
// token realm only when the realm has the registry's host name (any port: token services often
// run beside the registry) or is, over https, the one token service its owner runs elsewhere
// (TOKEN_SERVICE_HOSTS). A realm elsewhere is asked anonymously: sending our credentials on the
// say-so of a registry's challenge would let any registry collect tokens for another.

import { createHash } from 'node:crypto';
import type { Logger, MonotonicNow } from '../core/runtime.js';
import { SpokeError, type ErrorContext } from '../core/errors.js';
import { findChallenge, parseChallenges } from './challenge.js';
import { statusError, networkError } from './errors.js';
import { discard, errorSummary, readCapped, type HttpResponse, type Transport } from './http.js';
import type { Credential } from './types.js';

export const DEFAULT_TOKEN_TTL_SECONDS = 60;
const MAX_TOKEN_TTL_SECONDS = 24 * 3600;
const MAX_TOKEN_RESPONSE_BYTES = 64 * 1024;
const MAX_CACHED_TOKENS = 256;
const TOKEN_RE = /^[\x21-\x7e]{1,32768}$/;

type KnownScheme = { kind: 'basic' } | { kind: 'bearer'; realm: URL; service: string | undefined };

/** Who we are about to talk to, and with what. */
export interface AuthTarget {
  /** `host[:port]` name, for messages. */
  registry: string;
  base: URL;
  /** `repository:<name>:pull` or `...:pull,push`. */
  scope: string;
  credential: Credential | undefined;
  signal: AbortSignal | undefined;
  ctx: ErrorContext;
}

/** The Authorization header sent on an attempt, and whether it was a cached token. */
export interface AuthState {
  header: string | undefined;
  cached: boolean;
}

const credentialKeys = new WeakMap<Credential, string>();

/** A stable, non-reversible key for a credential (cache partitioning only; never logged). */
export function credentialKey(c: Credential | undefined): string {
  if (c === undefined) return 'anonymous';
  let k = credentialKeys.get(c);
  if (k === undefined) {
    const material = c.kind === 'basic' ? `basic\0${c.username}\0${c.password}` : `${c.kind}\0${c.token}`;
    k = createHash('sha256').update(material).digest('hex').slice(0, 32);
    credentialKeys.set(c, k);
  }
  return k;
}

function basicHeader(c: { username: string; password: string }): string {
  return `Basic ${Buffer.from(`${c.username}:${c.password}`, 'utf8').toString('base64')}`;
}

export interface AuthenticatorOptions {
  transport: Transport;
  /**
   * What a token's lifetime is measured on: a wall-clock step back would keep a token the
   * registry no longer takes (each use a 401 and a fetch), one forward would drop tokens still good.
   */
  monotonicNow: MonotonicNow;
  logger: Logger;
  retries: number;
}

export class Authenticator {
  private readonly schemes = new Map<string, KnownScheme>();
  /** Token key → the token and until when it is used (monotonicNow ms). */
  private readonly tokens = new Map<string, { token: string; expiresAt: number }>();
  /** Token fetches under way, with the signal of the caller that started each (it runs under that signal). */
  private readonly inflight = new Map<string, { token: Promise<string>; signal: AbortSignal | undefined }>();

  constructor(private readonly opts: AuthenticatorOptions) {}

  /** The header for a first attempt, from what we already know about the registry. */
  async before(t: AuthTarget): Promise<AuthState> {
    if (t.credential?.kind === 'registryToken') return { header: `Bearer ${t.credential.token}`, cached: false };
    const scheme = this.schemes.get(t.base.origin);
    if (scheme === undefined) return { header: undefined, cached: false };
    if (scheme.kind === 'basic') {
      return { header: t.credential?.kind === 'basic' ? basicHeader(t.credential) : undefined, cached: false };
    }
    const key = this.tokenKey(t, t.scope);
    const hit = this.tokens.get(key);
    if (hit && hit.expiresAt > this.opts.monotonicNow()) return { header: `Bearer ${hit.token}`, cached: true };
    const token = await this.token(t, scheme.realm, scheme.service, t.scope, key);
    return { header: `Bearer ${token}`, cached: false };
  }

  /** After a 401 from the registry's own origin: a header for one more attempt, or Unauthenticated. */
  async after401(t: AuthTarget, res: HttpResponse, prev: AuthState): Promise<AuthState> {
    const challenges = parseChallenges(res.headers['www-authenticate']);
    await discard(res);
    const refused = () => this.refusal(t);
    if (t.credential?.kind === 'registryToken') throw refused();
    const bearer = findChallenge(challenges, 'bearer');
    const realmText = bearer?.params.get('realm');
    if (bearer && realmText) {
      let realm: URL;
      try {
        realm = new URL(realmText);
      } catch {
        throw new SpokeError('Unauthenticated', `registry ${t.registry} sent an invalid token realm`, { ...t.ctx, registry: t.registry }, { reason: 'AUTH_PROTOCOL' });
      }
      const service = bearer.params.get('service');
      this.schemes.set(t.base.origin, { kind: 'bearer', realm, service });
      if (prev.header !== undefined && !prev.cached) throw refused();
      const key = this.tokenKey(t, t.scope);
      this.tokens.delete(key);
      const token = await this.token(t, realm, service, t.scope, key);
      return { header: `Bearer ${token}`, cached: false };
    }
    if (findChallenge(challenges, 'basic')) {
      this.schemes.set(t.base.origin, { kind: 'basic' });
      if (t.credential?.kind !== 'basic' || prev.header !== undefined) throw refused();
      return { header: basicHeader(t.credential), cached: false };
    }
    throw new SpokeError('Unauthenticated', `registry ${t.registry} answered 401 without a supported challenge`, { ...t.ctx, registry: t.registry }, { reason: 'AUTH_PROTOCOL' });
  }

  /** Unauthenticated for `t`, saying whether its credentials were kept from the realm it named. */
  refusal(t: AuthTarget): SpokeError {
    const scheme = this.schemes.get(t.base.origin);
    return refusedError(t, scheme?.kind === 'bearer' ? scheme.realm : undefined);
  }

  private tokenKey(t: AuthTarget, scope: string): string {
    return `${t.base.origin}\n${scope}\n${credentialKey(t.credential)}`;
  }

  /**
   * A token from the cache or the realm; concurrent callers for one key share one fetch. The
   * fetch runs under the signal of the caller that started it: when that caller went away, the
   * others, still here, fetch again under their own (one pod's deadline never fails another's pull).
   */
  private async token(t: AuthTarget, realm: URL, service: string | undefined, scope: string, key: string): Promise<string> {
    for (;;) {
      let fetch = this.inflight.get(key);
      if (fetch === undefined) {
        const token = this.fetchToken(t, realm, service, scope, key).finally(() => this.inflight.delete(key));
        fetch = { token, signal: t.signal };
        this.inflight.set(key, fetch);
      }
      try {
        return await fetch.token;
      } catch (e) {
        if (fetch.signal === t.signal || fetch.signal?.aborted !== true || t.signal?.aborted === true) throw e;
      }
    }
  }

  private async fetchToken(t: AuthTarget, realm: URL, service: string | undefined, scope: string, key: string): Promise<string> {
    const { transport, monotonicNow, logger } = this.opts;
    const ctx = { ...t.ctx, registry: t.registry };
    transport.checkScheme(realm, 'token realm', ctx);
    const cred = mayTakeCredentials(realm, t.base) ? t.credential : undefined;
    const url = new URL(realm);
    const headers: Record<string, string> = { accept: 'application/json' };
    let body: Buffer | undefined;
    if (cred?.kind === 'identityToken') {
      const form = new URLSearchParams({ grant_type: 'refresh_token', refresh_token: cred.token, client_id: 'spoke', scope });
      if (service !== undefined) form.set('service', service);
      body = Buffer.from(form.toString());
      headers['content-type'] = 'application/x-www-form-urlencoded';
    } else {
      if (service !== undefined) url.searchParams.set('service', service);
      url.searchParams.set('scope', scope);
      if (cred?.kind === 'basic') {
        url.searchParams.set('account', cred.username);
        headers['authorization'] = basicHeader(cred);
      }
    }
    logger.log('debug', 'registry token request', { registry: t.registry, realm: realm.host, scope, authenticated: cred !== undefined });
    let res: HttpResponse;
    try {
      res = await transport.request(
        { method: body ? 'POST' : 'GET', url, headers, ...(body ? { body } : {}), ...(t.signal ? { signal: t.signal } : {}) },
        this.opts.retries,
        ctx,
      );
    } catch (e) {
      throw networkError(e, realm.host, ctx, t.signal);
    }
    if (res.status === 401 || res.status === 403) {
      await discard(res);
      throw new SpokeError(
        'Unauthenticated',
        cred === undefined
          ? `token endpoint ${realm.host} for ${t.registry} refused an anonymous token`
          : `token endpoint ${realm.host} for ${t.registry} refused the configured credentials`,
        ctx,
        { reason: cred === undefined ? 'AUTH_REQUIRED' : 'AUTH_REFUSED' },
      );
    }
    if (res.status !== 200) throw statusError(res.status, `token request for ${t.registry}`, realm.host, await errorSummary(res), ctx);
    let doc: { token?: unknown; access_token?: unknown; expires_in?: unknown };
    try {
      doc = JSON.parse((await readCapped(res, MAX_TOKEN_RESPONSE_BYTES, 'token response', ctx)).toString('utf8')) as typeof doc;
    } catch (e) {
      if (e instanceof SpokeError && e.code !== 'SecurityProfileInvalid') throw e;
      // A connection lost while reading is transport trouble, not an answer about credentials.
      if (!(e instanceof SpokeError) && !(e instanceof SyntaxError)) throw networkError(e, realm.host, ctx, t.signal);
      throw new SpokeError('Unauthenticated', `token endpoint ${realm.host} sent an unreadable response`, ctx, { reason: 'AUTH_PROTOCOL' });
    }
    // `null` parses too, and has no members to read.
    const token = typeof doc !== 'object' || doc === null ? undefined : typeof doc.token === 'string' && doc.token !== '' ? doc.token : doc.access_token;
    if (typeof token !== 'string' || !TOKEN_RE.test(token)) {
      throw new SpokeError('Unauthenticated', `token endpoint ${realm.host} sent no usable token`, ctx, { reason: 'AUTH_PROTOCOL' });
    }
    const ttl =
      typeof doc.expires_in === 'number' && Number.isFinite(doc.expires_in) && doc.expires_in > 0
        ? Math.min(doc.expires_in, MAX_TOKEN_TTL_SECONDS)
        : DEFAULT_TOKEN_TTL_SECONDS;
    // Renew a little early (a tenth of the lifetime, at most 10 s) so a token does not expire in flight.
    const expiresAt = monotonicNow() + ttl * 1000 - Math.min(10_000, ttl * 100);
    if (this.tokens.size >= MAX_CACHED_TOKENS) this.tokens.delete(this.tokens.keys().next().value!);
    this.tokens.set(key, { token, expiresAt });
    return token;
  }

  /** Drops every cached token (e.g. after credentials change). */
  clear(): void {
    this.tokens.clear();
  }
}

/**
 * Token services on another host than their registry's API, by API host: run by the registry's
 * owner (Docker Hub's API is registry-1.docker.io, its tokens come from auth.docker.io).
 */
const TOKEN_SERVICE_HOSTS: ReadonlyMap<string, string> = new Map([['registry-1.docker.io', 'auth.docker.io']]);

/**
 * Whether a token realm gets the registry's credentials (docs/security-model.md#credentials-never-leave-their-host):
 * never over plain http when the registry was reached over https, whatever the insecure list allows.
 */
function mayTakeCredentials(realm: URL, base: URL): boolean {
  if (realm.protocol !== 'https:' && base.protocol === 'https:') return false;
  return realm.hostname === base.hostname || (realm.protocol === 'https:' && TOKEN_SERVICE_HOSTS.get(base.hostname) === realm.hostname);
}

/** The registry refused us: we had no credentials for it, kept them from its realm, or it did not accept them. */
function refusedError(t: AuthTarget, realm: URL | undefined): SpokeError {
  const ctx = { ...t.ctx, registry: t.registry };
  if (t.credential === undefined) return new SpokeError('Unauthenticated', `registry ${t.registry} requires credentials and none are configured for it`, ctx, { reason: 'AUTH_REQUIRED' });
  if (realm !== undefined && !mayTakeCredentials(realm, t.base)) {
    const why = realm.hostname === t.base.hostname
      ? `its token endpoint ${realm.host} is plain http, and the credentials configured for ${t.registry}, reached over https, go only over https`
      : `its token endpoint ${realm.host} is on another host, and the credentials configured for ${t.registry} go only to its own`;
    return new SpokeError('Unauthenticated', `registry ${t.registry} refused an anonymous token: ${why}`, ctx, { reason: 'AUTH_WITHHELD' });
  }
  return new SpokeError('Unauthenticated', `registry ${t.registry} refused the configured credentials`, ctx, { reason: 'AUTH_REFUSED' });
}

/** A 401 from the registry itself; one from a redirect target is never answered with credentials. */
export function isOwn401(res: HttpResponse, base: URL): boolean {
  return res.status === 401 && res.url.origin === base.origin;
}
