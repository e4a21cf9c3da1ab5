// Digest-pinned OCI references: `host[:port]/path@sha256:<64 lowercase hex>` and nothing else
// (KEP-6061 §1: alpha accepts digest references only; docs/architecture.md, pull step 1). Grammar of path
// components from the OCI distribution spec (`[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`).
// Pure: no I/O. Length is checked before any regex runs, and every regex is anchored.

import { isDigest, type Digest } from './digest.js';
import { SpokeError, type ErrorReason } from './errors.js';
import { MAX_REFERENCE_LENGTH, MAX_REPOSITORY_LENGTH } from './limits.js';

export interface Reference {
  /** `host[:port]`, host lowercased; IPv6 kept in brackets. Identifies the registry and its credentials. */
  readonly registry: string;
  readonly host: string;
  readonly port: number | undefined;
  /** Repository path, e.g. `security/profiles/deny-mkdir`. */
  readonly repository: string;
  readonly digest: Digest;
}

/** One repository path component (OCI distribution spec); the one copy, used by policy/scope.ts, registry/ and controller/image.ts. */
export const PATH_COMPONENT_RE = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const DNS_LABEL_RE = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
const IPV6_RE = /^\[[0-9a-f:.]{2,45}\]$/;
const PORT_RE = /^[0-9]{1,5}$/;

function refuse(input: string, why: string, reason: ErrorReason = 'REFERENCE_INVALID'): never {
  throw new SpokeError('InvalidArgument', `invalid reference ${JSON.stringify(input.slice(0, 120))}: ${why}`, {
    reference: input.slice(0, MAX_REFERENCE_LENGTH),
  }, { reason });
}

/**
 * Parses `host[:port]` (the registry part); throws InvalidArgument with `why` on failure.
 * `connected`: spoke connects to it (not so for a pod's image names, which the controller only
 * compares), so it must be spelled as the URL parser reads it.
 */
export function parseRegistry(text: string, onError: (why: string) => never, connected = true): { host: string; port: number | undefined } {
  let hostPart = text;
  let portPart: string | undefined;
  if (text.startsWith('[')) {
    const close = text.indexOf(']');
    if (close < 0) onError('unterminated IPv6 address');
    hostPart = text.slice(0, close + 1);
    const rest = text.slice(close + 1);
    if (rest !== '') {
      if (!rest.startsWith(':')) onError('unexpected text after IPv6 address');
      portPart = rest.slice(1);
    }
    // The registry client builds its URLs with the URL parser: what it refuses is refused here.
    if (!IPV6_RE.test(hostPart.toLowerCase()) || !URL.canParse(`http://${hostPart}/`)) onError('malformed IPv6 address');
  } else {
    const colon = text.lastIndexOf(':');
    if (colon >= 0) {
      hostPart = text.slice(0, colon);
      portPart = text.slice(colon + 1);
    }
  }
  let port: number | undefined;
  if (portPart !== undefined) {
    if (!PORT_RE.test(portPart)) onError(`port ${JSON.stringify(portPart)} is not a number`);
    port = Number(portPart);
    if (port < 1 || port > 65535) onError(`port ${port} out of range`);
  }
  const host = hostPart.toLowerCase();
  if (!host.startsWith('[')) {
    if (host.length > 253) onError('host name too long');
    const labels = host.split('.');
    for (const label of labels) {
      if (!DNS_LABEL_RE.test(label)) onError(`host ${JSON.stringify(hostPart)} is not a valid DNS name or IP address`);
    }
  }
  // The registry client connects where the URL parser says: a host it reads as another address
  // (`010.0.0.1` is 8.0.0.1, `127.1` is 127.0.0.1, `[0:0::1]` is [::1]) would be judged by the
  // policy under one name and reached under another, and one it refuses (`xn--zz.example`,
  // invalid punycode) would fail every request.
  if (connected) {
    let read: string | undefined;
    try {
      read = new URL(`http://${host}/`).hostname;
    } catch {
      read = undefined;
    }
    if (read !== host) onError(read === undefined ? `host ${JSON.stringify(hostPart)} is not a host name or address a URL can hold` : `host ${JSON.stringify(hostPart)} is the address ${read}: write it so`);
  }
  return { host, port };
}

/** A registry host is recognisable as such: it has a dot or a port, is an IPv6 literal, or is `localhost`. */
export function looksLikeRegistryHost(first: string): boolean {
  return first.includes('.') || first.includes(':') || first.startsWith('[') || first.toLowerCase() === 'localhost';
}

export function parseReference(input: string): Reference {
  if (typeof input !== 'string' || input.length === 0) refuse(String(input), 'empty');
  if (input.length > MAX_REFERENCE_LENGTH) refuse(input, `longer than ${MAX_REFERENCE_LENGTH} characters`);
  if (/[\s\u0000-\u001f\u007f]/.test(input)) refuse(input, 'contains whitespace or control characters');
  const at = input.indexOf('@');
  if (at < 0) refuse(input, 'not pinned by digest (expected name@sha256:<64 hex>; tags are not accepted)', 'TAG_NOT_DIGEST');
  if (input.indexOf('@', at + 1) >= 0) refuse(input, 'more than one "@"');
  const name = input.slice(0, at);
  const digest = input.slice(at + 1);
  if (!digest.startsWith('sha256:')) refuse(input, `digest algorithm must be sha256, got ${JSON.stringify(digest.split(':')[0])}`);
  if (!isDigest(digest)) refuse(input, 'digest must be sha256 followed by 64 lowercase hex characters');
  const slash = name.indexOf('/');
  if (slash < 0) refuse(input, 'no registry host (short names are not accepted; write host/repository@sha256:...)');
  const registryText = name.slice(0, slash);
  const repository = name.slice(slash + 1);
  if (!looksLikeRegistryHost(registryText)) {
    refuse(input, `no registry host: "${registryText}" is a repository component, not a host (short names are not accepted)`);
  }
  const { host, port } = parseRegistry(registryText, (why) => refuse(input, why));
  if (repository.length === 0) refuse(input, 'empty repository');
  if (repository.length > MAX_REPOSITORY_LENGTH) refuse(input, `repository longer than ${MAX_REPOSITORY_LENGTH} characters`);
  const lastComponent = repository.slice(repository.lastIndexOf('/') + 1);
  if (lastComponent.includes(':')) refuse(input, 'tags are not accepted; pin the reference by digest only', 'TAG_NOT_DIGEST');
  for (const component of repository.split('/')) {
    if (component === '') refuse(input, 'empty path component');
    if (component === '.' || component === '..') refuse(input, `path component "${component}" is not allowed`);
    if (!PATH_COMPONENT_RE.test(component)) {
      refuse(input, `path component ${JSON.stringify(component)} must be lowercase letters, digits and single separators`);
    }
  }
  return Object.freeze({ registry: port === undefined ? host : `${host}:${port}`, host, port, repository, digest });
}

export function formatReference(ref: Pick<Reference, 'registry' | 'repository' | 'digest'>): string {
  return `${ref.registry}/${ref.repository}@${ref.digest}`;
}

/** A repository without a digest, as given to `spoke push REPO[:TAG]`. */
export interface RepositoryRef {
  readonly registry: string;
  readonly repository: string;
  readonly tag: string | undefined;
}

/** A tag (OCI distribution spec); the one copy, used by registry/ and controller/image.ts. */
export const TAG_RE = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/;

export function parseRepositoryRef(input: string): RepositoryRef {
  if (input.length > MAX_REFERENCE_LENGTH) refuse(input, 'too long');
  // A digest would be dropped silently: the push names what it pushed by its own bytes' digest.
  if (input.includes('@')) refuse(input, 'a repository to push to names no digest (the digest of what is pushed is printed)');
  const slash = input.indexOf('/');
  if (slash < 0) refuse(input, 'no registry host');
  const registryText = input.slice(0, slash);
  if (!looksLikeRegistryHost(registryText)) refuse(input, `no registry host: "${registryText}"`);
  const { host, port } = parseRegistry(registryText, (why) => refuse(input, why));
  let repository = input.slice(slash + 1);
  let tag: string | undefined;
  const colon = repository.lastIndexOf(':');
  if (colon > repository.lastIndexOf('/')) {
    tag = repository.slice(colon + 1);
    repository = repository.slice(0, colon);
    if (!TAG_RE.test(tag)) refuse(input, `invalid tag ${JSON.stringify(tag)}`);
  }
  if (repository.length === 0 || repository.length > MAX_REPOSITORY_LENGTH) refuse(input, 'bad repository length');
  for (const component of repository.split('/')) {
    if (!PATH_COMPONENT_RE.test(component)) refuse(input, `invalid path component ${JSON.stringify(component)}`);
  }
  return { registry: port === undefined ? host : `${host}:${port}`, repository, tag };
}
