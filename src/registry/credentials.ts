// Registry credentials from auth files: containers-auth.json (`--auth-file`,
// `REGISTRY_AUTH_FILE`) and docker's config.json share one format:
//   { "auths": { "<host[:port][/repo/prefix]>": { "auth": base64("user:pass") | "username", "password"
//                 | "identitytoken" | "registrytoken" } } }
// `credHelpers` and `credsStore` would run external programs: they are ignored, never executed.

import { closeSync, fstatSync, openSync, readSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { SpokeError } from '../core/errors.js';
import type { Credential, CredentialSource } from './types.js';
import { jsonSyntaxFault } from '../core/json.js';

/** Auth files are small; anything larger is refused, read no further than this. */
export const MAX_AUTH_FILE_BYTES = 1024 * 1024;

// Docker Hub's historical spellings all mean the one registry `docker.io`.
const HOST_ALIASES: ReadonlyMap<string, string> = new Map([
  ['index.docker.io', 'docker.io'],
  ['registry-1.docker.io', 'docker.io'],
]);

const CONTROL_RE = /[\u0000-\u001f\u007f]/;
/** A bearer token goes into the header as is: printable ASCII, no space (RFC 6750's b64token is narrower still). */
const BEARER_TOKEN_RE = /^[\x21-\x7e]+$/;
const BASE64_RE = /^[A-Za-z0-9+/]*={0,2}$/;

export const emptyCredentials: CredentialSource = { lookup: () => undefined };

/**
 * `host[:port][/path]` with trailing slashes removed and the host lowercased; a URL-style key
 * (`https://host/v1/`, docker's) loses its scheme and API path. Without a scheme, `/v2` is a
 * namespace of that name.
 */
export function normalizeAuthKey(key: string): string {
  const trimmed = key.trim();
  const urlStyle = /^https?:\/\//i.test(trimmed);
  let k = trimmed.replace(/^https?:\/\//i, '');
  // A scan, not /\/+$/: that backtracks quadratically on a run of slashes not at the end.
  let end = k.length;
  while (end > 0 && k.charCodeAt(end - 1) === 0x2f) end--;
  k = k.slice(0, end);
  if (urlStyle) k = k.replace(/\/v[12]$/, '');
  const slash = k.indexOf('/');
  const host = (slash < 0 ? k : k.slice(0, slash)).toLowerCase();
  const rest = slash < 0 ? '' : k.slice(slash);
  return (HOST_ALIASES.get(host) ?? host) + rest;
}

class MapCredentials implements CredentialSource {
  constructor(private readonly entries: ReadonlyMap<string, Credential>) {}

  lookup(registry: string, repository?: string): Credential | undefined {
    const host = normalizeAuthKey(registry);
    if (repository !== undefined && this.entries.size > 0) {
      // Most specific first: host/a/b/c, host/a/b, host/a.
      let path = repository;
      for (;;) {
        const hit = this.entries.get(`${host}/${path}`);
        if (hit) return hit;
        const slash = path.lastIndexOf('/');
        if (slash < 0) break;
        path = path.slice(0, slash);
      }
    }
    return this.entries.get(host);
  }
}

/** A source from explicit entries (keys as in an auth file). Secrets are checked like a file's. */
export function credentialsFromEntries(entries: Readonly<Record<string, Credential>>): CredentialSource {
  const map = new Map<string, Credential>();
  for (const [key, cred] of Object.entries(entries)) {
    checkCredential(cred, key, '<options>');
    map.set(normalizeAuthKey(key), cred);
  }
  return new MapCredentials(map);
}

function refuse(file: string, why: string, key?: string, reason: 'CREDENTIALS_INVALID' | 'FILE_UNREADABLE' | 'SIZE_LIMIT' = 'CREDENTIALS_INVALID'): never {
  throw new SpokeError('InvalidArgument', `auth file ${file}: ${why}`, { file, ...(key === undefined ? {} : { registry: key }) }, { reason });
}

/**
 * Why a credential cannot go into an Authorization header, or undefined: a control character (a
 * header split), a ":" in a user name (Basic's separator), an empty token, a bearer token beyond
 * printable ASCII (sent as is; the others are encoded). Never quotes it.
 */
export function credentialProblem(cred: Credential): string | undefined {
  const parts = cred.kind === 'basic' ? [cred.username, cred.password] : [cred.token];
  if (parts.some((p) => typeof p !== 'string' || CONTROL_RE.test(p))) return 'holds a control character or a non-string';
  if (cred.kind === 'basic' && cred.username.includes(':')) return 'username contains ":"';
  if (cred.kind !== 'basic' && cred.token.length === 0) return 'empty token';
  if (cred.kind === 'registryToken' && !BEARER_TOKEN_RE.test(cred.token)) return 'token holds a character other than printable ASCII';
  return undefined;
}

function checkCredential(cred: Credential, key: string, file: string): void {
  const problem = credentialProblem(cred);
  if (problem !== undefined) refuse(file, `entry ${JSON.stringify(key)}: ${problem}`, key);
}

function str(entry: Record<string, unknown>, name: string, key: string, file: string): string | undefined {
  const v = entry[name];
  if (v === undefined || v === null || v === '') return undefined;
  if (typeof v !== 'string') refuse(file, `entry ${JSON.stringify(key)}: "${name}" must be a string`, key);
  return v;
}

/** One `auths` entry → a credential, or undefined when it holds none (e.g. `{}` next to credsStore). */
function parseEntry(entry: unknown, key: string, file: string): Credential | undefined {
  if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) refuse(file, `entry ${JSON.stringify(key)} must be an object`, key);
  const e = entry as Record<string, unknown>;
  const registryToken = str(e, 'registrytoken', key, file);
  if (registryToken !== undefined) return { kind: 'registryToken', token: registryToken };
  const identityToken = str(e, 'identitytoken', key, file);
  if (identityToken !== undefined) return { kind: 'identityToken', token: identityToken };
  const auth = str(e, 'auth', key, file);
  if (auth !== undefined) {
    if (auth.length > 16384 || !BASE64_RE.test(auth)) refuse(file, `entry ${JSON.stringify(key)}: "auth" is not base64`, key);
    const decoded = Buffer.from(auth, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon <= 0) refuse(file, `entry ${JSON.stringify(key)}: "auth" must encode user:password`, key);
    return { kind: 'basic', username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
  }
  const username = str(e, 'username', key, file);
  const password = str(e, 'password', key, file);
  if (username !== undefined && password !== undefined) return { kind: 'basic', username, password };
  if (username !== undefined || password !== undefined) refuse(file, `entry ${JSON.stringify(key)}: username and password go together`, key);
  return undefined;
}

/** Parses auth-file text. `file` names it in errors; secrets never appear in them. */
export function parseAuthFile(text: string, file: string): CredentialSource {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    return refuse(file, jsonSyntaxFault(e));
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) refuse(file, 'must be a JSON object');
  const auths = (doc as Record<string, unknown>)['auths'];
  if (auths === undefined) return new MapCredentials(new Map());
  if (typeof auths !== 'object' || auths === null || Array.isArray(auths)) refuse(file, '"auths" must be an object');
  const map = new Map<string, Credential>();
  for (const [key, entry] of Object.entries(auths)) {
    const cred = parseEntry(entry, key, file);
    if (cred === undefined) continue;
    checkCredential(cred, key, file);
    const norm = normalizeAuthKey(key);
    if (norm.length === 0) refuse(file, 'empty registry key');
    if (!map.has(norm)) map.set(norm, cred); // first spelling wins, as in docker
  }
  return new MapCredentials(map);
}

/**
 * At most the first `maxBytes` of `path`: a caller that allows `limit` bytes asks for `limit + 1`
 * and refuses a longer result, since a size from stat says nothing of a FIFO or a device. Errors
 * of open and read are thrown.
 */
export function readFileUpTo(path: string, maxBytes: number): Buffer {
  const fd = openSync(path, 'r');
  try {
    return readFdUpTo(fd, maxBytes);
  } finally {
    closeSync(fd);
  }
}

/** A reader of at most `maxBytes` of a file, as readFileUpTo reads one. */
export type BoundedRead = (path: string, maxBytes: number) => Buffer;

/** readFileUpTo of an open descriptor (the caller closes it). */
export function readFdUpTo(fd: number, maxBytes: number): Buffer {
  // A regular file's size sizes the first read (one byte more shows a file grown since);
  // anything else is read a chunk at a time: no buffer of the whole limit up front.
  const st = fstatSync(fd);
  let want = st.isFile() ? st.size + 1 : READ_CHUNK_BYTES;
  const chunks: Buffer[] = [];
  let total = 0;
  while (total < maxBytes) {
    const buf = Buffer.allocUnsafe(Math.min(want, maxBytes - total));
    const n = readSync(fd, buf, 0, buf.length, null);
    if (n === 0) break;
    chunks.push(buf.subarray(0, n));
    total += n;
    want = READ_CHUNK_BYTES;
  }
  return Buffer.concat(chunks, total);
}

const READ_CHUNK_BYTES = 64 * 1024;

/**
 * Reads and parses an auth file; a missing or oversized file is InvalidArgument. `read` reads at
 * most its `maxBytes` (the shim's reads refuse a file any user could have written); a SpokeError
 * it throws is the refusal.
 */
export function loadAuthFile(path: string, read: BoundedRead = readFileUpTo): CredentialSource {
  let bytes: Buffer;
  try {
    bytes = read(path, MAX_AUTH_FILE_BYTES + 1);
  } catch (e) {
    if (e instanceof SpokeError) throw e;
    return refuse(path, `cannot be read (${(e as NodeJS.ErrnoException).code ?? 'error'})`, undefined, 'FILE_UNREADABLE');
  }
  if (bytes.length > MAX_AUTH_FILE_BYTES) return refuse(path, `larger than ${MAX_AUTH_FILE_BYTES} bytes`, undefined, 'SIZE_LIMIT');
  return parseAuthFile(bytes.toString('utf8'), path);
}

export interface AuthFileLookup {
  /** `--auth-file`: used when given, and must exist. */
  authFile?: string;
  env?: Readonly<Record<string, string | undefined>>;
  home?: string;
}

/**
 * The auth file to use: `--auth-file`, else `REGISTRY_AUTH_FILE` (both must exist), else
 * `$DOCKER_CONFIG/config.json` or `~/.docker/config.json` when present.
 */
export function resolveAuthFile(opts: AuthFileLookup = {}): { path: string; required: boolean } {
  const env = opts.env ?? process.env;
  if (opts.authFile) return { path: opts.authFile, required: true };
  const fromEnv = env['REGISTRY_AUTH_FILE'];
  if (fromEnv) return { path: fromEnv, required: true };
  const dockerDir = env['DOCKER_CONFIG'] || join(opts.home ?? homedir(), '.docker');
  return { path: join(dockerDir, 'config.json'), required: false };
}

/**
 * A node's credentials (the shim, node commands): its config's auth file and nothing else, never
 * the docker login of the user the process runs as (docs/configuration.md#registry-credentials).
 */
export function nodeCredentials(authFile: string | undefined, read?: BoundedRead): CredentialSource {
  return authFile ? loadAuthFile(authFile, read) : emptyCredentials;
}

/**
 * Credentials that a long-lived process replaces as a whole when their file changes (the shim
 * watches its auth file: docs/configuration.md#registry-credentials); each lookup reads the
 * credentials held at that moment.
 */
export class HeldCredentials implements CredentialSource {
  constructor(private held: CredentialSource) {}

  replace(next: CredentialSource): void {
    this.held = next;
  }

  lookup(registry: string, repository?: string): Credential | undefined {
    return this.held.lookup(registry, repository);
  }
}

/** Credentials from the resolved auth file; an absent optional file gives none. */
export function loadCredentials(opts: AuthFileLookup = {}): CredentialSource {
  const where = resolveAuthFile(opts);
  if (!where.required) {
    try {
      statSync(where.path);
    } catch {
      return emptyCredentials;
    }
  }
  return loadAuthFile(where.path);
}
