// A Docker token server (distribution "token" auth) for tests: issues ES256 JWTs that
// docker-registry 2.8 accepts. The signing key's self-signed certificate is the registry's
// `rootcertbundle`, and each JWT carries it in its `x5c` header (the registry verifies the chain
// against the bundle, then the signature). Keys come from openssl (argument arrays, no shell).

import { execFileSync } from 'node:child_process';
import { createPrivateKey, sign, X509Certificate, type KeyObject } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface TokenServerOptions {
  /** Basic-auth users: name → password. */
  users?: Record<string, string>;
  /** Refresh tokens (identity tokens) accepted on POST: token → user. */
  refreshTokens?: Record<string, string>;
  /** Actions granted to anonymous requests (default none). */
  anonymousActions?: string[];
  /** `expires_in` in responses (default 300). */
  expiresIn?: number;
  service?: string;
  issuer?: string;
}

export interface TokenRequestRecord {
  method: string;
  scope: string | undefined;
  service: string | undefined;
  user: string | undefined; // authenticated user, if any
  authorization: boolean; // whether an Authorization header came
}

export interface TokenServer {
  readonly realm: string;
  readonly service: string;
  readonly issuer: string;
  readonly certFile: string;
  /** YAML for RegistryOptions.authYaml. */
  readonly registryAuthYaml: string;
  requests(): TokenRequestRecord[];
  reset(): void;
  stop(): Promise<void>;
}

function b64url(data: Buffer | string): string {
  return Buffer.from(data).toString('base64url');
}

function makeJwt(key: KeyObject, certDerB64: string, claims: object): string {
  const head = b64url(JSON.stringify({ typ: 'JWT', alg: 'ES256', x5c: [certDerB64] }));
  const body = b64url(JSON.stringify(claims));
  const sig = sign('sha256', Buffer.from(`${head}.${body}`), { key, dsaEncoding: 'ieee-p1363' });
  return `${head}.${body}.${b64url(sig)}`;
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

export async function startTokenServer(opts: TokenServerOptions = {}): Promise<TokenServer> {
  const dir = mkdtempSync(join(tmpdir(), 'spoke-tok-'));
  const keyFile = join(dir, 'token.key');
  const certFile = join(dir, 'token.crt');
  execFileSync(
    'openssl',
    ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', keyFile, '-out', certFile, '-days', '2', '-subj', '/CN=spoke-test-token'],
    { stdio: 'ignore' },
  );
  const key = createPrivateKey(readFileSync(keyFile));
  const certDerB64 = new X509Certificate(readFileSync(certFile)).raw.toString('base64');
  const service = opts.service ?? 'spoke-test-registry';
  const issuer = opts.issuer ?? 'spoke-test-issuer';
  const users = opts.users ?? {};
  const refresh = opts.refreshTokens ?? {};
  let log: TokenRequestRecord[] = [];

  const server: Server = createServer((req, res) => {
    void (async () => {
      const url = new URL(req.url ?? '/', 'http://x');
      let scope = url.searchParams.get('scope') ?? undefined;
      let reqService = url.searchParams.get('service') ?? undefined;
      let user: string | undefined;
      let denied = false;
      const authz = req.headers.authorization;
      if (req.method === 'POST') {
        const form = new URLSearchParams(await readBody(req));
        scope = form.get('scope') ?? undefined;
        reqService = form.get('service') ?? undefined;
        const rt = form.get('refresh_token') ?? '';
        user = Object.hasOwn(refresh, rt) ? refresh[rt] : undefined;
        if (!user) denied = true;
      } else if (authz?.startsWith('Basic ')) {
        const [name, ...rest] = Buffer.from(authz.slice(6), 'base64').toString('utf8').split(':');
        const pass = rest.join(':');
        if (name !== undefined && Object.hasOwn(users, name) && users[name] === pass) user = name;
        else denied = true;
      }
      log.push({ method: req.method ?? '', scope, service: reqService, user, authorization: authz !== undefined });
      if (denied) {
        res.writeHead(401, { 'content-type': 'application/json' }).end('{"errors":[{"code":"UNAUTHORIZED"}]}');
        return;
      }
      const access = [];
      const m = scope ? /^repository:([^:]+):(.+)$/.exec(scope) : null;
      if (m) {
        const actions = user ? m[2]!.split(',') : m[2]!.split(',').filter((a) => (opts.anonymousActions ?? []).includes(a));
        access.push({ type: 'repository', name: m[1], actions });
      }
      const now = Math.floor(Date.now() / 1000);
      const token = makeJwt(key, certDerB64, {
        iss: issuer,
        sub: user ?? '',
        aud: service,
        exp: now + 600,
        nbf: now - 10,
        iat: now,
        jti: `${now}-${log.length}`,
        access,
      });
      const body = req.method === 'POST' ? { access_token: token, expires_in: opts.expiresIn ?? 300 } : { token, expires_in: opts.expiresIn ?? 300 };
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    })();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  const realm = `http://127.0.0.1:${port}/token`;
  return {
    realm,
    service,
    issuer,
    certFile,
    registryAuthYaml: ['token:', `  realm: ${realm}`, `  service: ${service}`, `  issuer: ${issuer}`, `  rootcertbundle: ${certFile}`].join('\n'),
    requests: () => log.slice(),
    reset: () => {
      log = [];
    },
    stop: async () => {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
