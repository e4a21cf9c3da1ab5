// Rule scopes: `host[:port][/path prefix]`, matched on whole components (docs/configuration.md,
// "Node policy"). `r.io/team` covers `r.io/team` and `r.io/team/x`, never `r.io/teamevil`;
// `reg.io` never covers `reg.io.evil.com` nor `reg.io:5000`. Pure.

import { parseRegistry, PATH_COMPONENT_RE, type Reference } from '../core/reference.js';
import { MAX_REPOSITORY_LENGTH } from '../core/limits.js';

export interface Scope {
  /** Normalized text: host lowercased, port without leading zeros. */
  readonly scope: string;
  /** `host[:port]`, spelled as `Reference.registry` spells it. */
  readonly registry: string;
  /** Path prefix, '' for the whole registry. */
  readonly path: string;
  /** Number of path components. */
  readonly depth: number;
}

/**
 * Parses `host[:port]` as used in `mirrors:` and `insecure:` (and a scope's host); throws
 * through `onError`. Hosts are lowercased; ports are exact (`host` ≠ `host:443`).
 */
export function parseHost(text: string, onError: (why: string) => never): string {
  if (text.length === 0) onError('empty host');
  if (/[^\x21-\x7e]/.test(text)) onError('non-ASCII or whitespace: write internationalized names as A-labels (xn--...)');
  if (text.includes('/')) onError('a host has no path');
  const { host, port } = parseRegistry(text, onError);
  if (!(host.includes('.') || host.startsWith('[') || host === 'localhost' || port !== undefined)) {
    onError(`"${host}" is not a registry host: it needs a dot, a port, or to be localhost or an IPv6 literal (short names are never pulled)`);
  }
  return port === undefined ? host : `${host}:${port}`;
}

/** Parses a rule scope; throws through `onError` with the reason. */
export function parseScope(text: string, onError: (why: string) => never): Scope {
  if (text.includes('://')) onError('a scope has no scheme; write host[:port][/path]');
  if (text.includes('@')) onError('a digest does not belong in a scope; list it under digests:');
  if (text.includes('*')) onError('wildcards are not supported; a scope is a prefix of whole path components');
  if (/[^\x21-\x7e]/.test(text)) onError('non-ASCII or whitespace: write internationalized names as A-labels (xn--...)');
  if (text.endsWith('/')) onError('trailing "/"');
  const slash = text.indexOf('/');
  const registry = parseHost(slash < 0 ? text : text.slice(0, slash), onError);
  const path = slash < 0 ? '' : text.slice(slash + 1);
  if (path.length > MAX_REPOSITORY_LENGTH) onError(`path longer than ${MAX_REPOSITORY_LENGTH} characters`);
  const components = path === '' ? [] : path.split('/');
  for (const c of components) {
    if (c === '') onError('empty path component ("//")');
    if (c === '.' || c === '..') onError(`path component "${c}" is not allowed`);
    if (c.includes(':')) onError(`a tag does not belong in a scope ("${c}"); scopes name repositories, references are pinned by digest`);
    if (c !== c.toLowerCase()) onError(`path component "${c}" has uppercase letters; repository paths are lowercase`);
    if (!PATH_COMPONENT_RE.test(c)) onError(`path component "${c}" must be lowercase letters and digits joined by ".", "_", "__" or "-"`);
  }
  return { scope: path === '' ? registry : `${registry}/${path}`, registry, path, depth: components.length };
}

/** Whole-component prefix match of a scope against a (normalized) reference. */
export function scopeMatches(scope: Pick<Scope, 'registry' | 'path'>, ref: Pick<Reference, 'registry' | 'repository'>): boolean {
  if (ref.registry !== scope.registry) return false;
  if (scope.path === '') return true;
  const repo = ref.repository;
  return repo === scope.path || (repo.length > scope.path.length && repo.startsWith(scope.path) && repo.charCodeAt(scope.path.length) === 0x2f);
}
