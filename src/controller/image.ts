// Container image references as the kubelet and runtimes read them (distribution/reference's
// ParseNormalizedNamed), compared in one canonical form so that every spelling that reaches the
// same registry and repository is the same image (docs/binding.md):
//  - a first component is a registry host only if it has `.` or `:`, is `localhost`, or has
//    upper-case letters; otherwise the image is on Docker Hub;
//  - the host is lowercased (DNS is case-insensitive) and `:443` is dropped (the default port);
//  - `docker.io`, `index.docker.io` and `registry-1.docker.io` are one registry, `docker.io`,
//    and a one-component Docker Hub name gets `library/` (`nginx` = `docker.io/library/nginx`).
// Repositories are compared whole, never by prefix. Path and tag grammar are core/reference.ts's.
// Pure; length checked before any regex; every regex anchored. Binding `image` targets are
// parsed by the same function (see `parseImageTarget`).

import { SpokeError } from '../core/errors.js';
import { looksLikeRegistryHost, parseRegistry, PATH_COMPONENT_RE, TAG_RE } from '../core/reference.js';

const MAX_IMAGE_LENGTH = 512;
const NAME_MAX = 255;
const DIGEST_RE = /^(?:sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$/;
const HEX64_RE = /^[a-f0-9]{64}$/;
/** An image ID (a config digest, bare or with its algorithm), which a runtime resolves to a local image. */
const IMAGE_ID_RE = /^(?:[a-f0-9]{64}|sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$/;

/** True for an image ID rather than a name: no binding's image can be matched against it. */
export function isImageId(image: string): boolean {
  return IMAGE_ID_RE.test(image);
}
const DOCKER_HUB = 'docker.io';
/** Names the Docker Hub registry answers to (distribution/reference and containerd's resolver). */
const DOCKER_HUB_ALIASES: ReadonlySet<string> = new Set([DOCKER_HUB, 'index.docker.io', 'registry-1.docker.io']);
const HTTPS_PORT = 443;

export interface ImageRef {
  /** Canonical registry: lowercased host, port unless 443, Docker Hub as `docker.io`; e.g. `registry.example.com:5000`. */
  readonly domain: string;
  /** Normalized path, e.g. `library/nginx`. */
  readonly path: string;
  /** `domain/path` — the repository. */
  readonly repository: string;
  readonly tag: string | undefined;
  readonly digest: string | undefined;
}

/** A pod's image reference that does not parse: InvalidArgument, REFERENCE_INVALID. */
export class ImageParseError extends SpokeError {
  constructor(message: string) {
    super('InvalidArgument', message, {}, { reason: 'REFERENCE_INVALID' });
    this.name = 'ImageParseError';
  }
}

function fail(input: string, why: string): never {
  throw new ImageParseError(`invalid image reference ${JSON.stringify(input.slice(0, 120))}: ${why}`);
}

/** Parses and normalizes an image reference; throws ImageParseError with the reason. */
export function parseImage(input: string): ImageRef {
  if (typeof input !== 'string' || input.length === 0) fail(String(input), 'empty');
  if (input.length > MAX_IMAGE_LENGTH) fail(input, `longer than ${MAX_IMAGE_LENGTH} characters`);
  if (/[\s\u0000-\u001f\u007f]/.test(input)) fail(input, 'contains whitespace or control characters');
  if (isImageId(input)) fail(input, 'an image ID, not a repository');
  let rest = input;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST_RE.test(digest)) fail(input, `digest ${JSON.stringify(digest.slice(0, 80))} is not sha256:<64 hex> or sha512:<128 hex>`);
  }
  let tag: string | undefined;
  const colon = rest.lastIndexOf(':');
  if (colon > rest.lastIndexOf('/')) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG_RE.test(tag)) fail(input, `invalid tag ${JSON.stringify(tag)}`);
  }
  if (rest.length === 0) fail(input, 'empty name');
  if (rest.length > NAME_MAX) fail(input, `name longer than ${NAME_MAX} characters`);
  let domain = DOCKER_HUB;
  let path = rest;
  const slash = rest.indexOf('/');
  const first = slash < 0 ? '' : rest.slice(0, slash);
  if (slash >= 0 && (looksLikeRegistryHost(first) || first.toLowerCase() !== first)) {
    const { host, port } = parseRegistry(first, (why) => fail(input, why), false);
    // Upper case makes `MyOrg` a host for the runtime, but lowercased it reads as a Docker Hub
    // namespace again: no canonical spelling exists, so it is refused (only `*` selects it).
    if (!looksLikeRegistryHost(host)) fail(input, `registry host ${JSON.stringify(first)} has neither a dot nor a port`);
    domain = canonicalRegistry(host, port);
    path = rest.slice(slash + 1);
  }
  if (domain === DOCKER_HUB && !path.includes('/')) path = `library/${path}`;
  if (path.length === 0) fail(input, 'empty repository path');
  for (const component of path.split('/')) {
    if (!PATH_COMPONENT_RE.test(component)) {
      fail(input, `path component ${JSON.stringify(component)} must be lowercase letters, digits and single separators`);
    }
  }
  if (slash < 0 && HEX64_RE.test(rest)) fail(input, 'a 64-hex name is an image ID, not a repository');
  return Object.freeze({ domain, path, repository: `${domain}/${path}`, tag, digest });
}

function canonicalRegistry(host: string, port: number | undefined): string {
  const p = port === HTTPS_PORT ? undefined : port;
  if (p === undefined && DOCKER_HUB_ALIASES.has(host)) return DOCKER_HUB;
  return p === undefined ? host : `${host}:${p}`;
}

/** The canonical spelling: `registry/path[:tag][@digest]`; parsing it gives the same image. */
export function canonicalImage(ref: ImageRef): string {
  return `${ref.repository}${ref.tag === undefined ? '' : `:${ref.tag}`}${ref.digest === undefined ? '' : `@${ref.digest}`}`;
}

/** How a binding's `image` selects images, from least to most specific. */
export type ImageTargetKind = 'any' | 'repository' | 'tag' | 'digest';

export interface ImageTarget {
  readonly kind: ImageTargetKind;
  readonly text: string;
  readonly ref: ImageRef | undefined;
}

/**
 * A binding's `image`: `*` (every image); a repository without tag or digest (every tag and
 * digest of it — so `nginx` here means the repository, not `nginx:latest`); `repo:tag` (that
 * tag); `repo@digest` or `repo:tag@digest` (that digest: the runtime ignores the tag then).
 */
export function parseImageTarget(text: string): ImageTarget {
  if (text === '*') return { kind: 'any', text, ref: undefined };
  const ref = parseImage(text);
  const kind: ImageTargetKind = ref.digest !== undefined ? 'digest' : ref.tag !== undefined ? 'tag' : 'repository';
  return { kind, text, ref };
}

/**
 * Whether a container image (already parsed, or undefined when it does not parse) is selected.
 * An image without tag or digest carries the implicit tag `latest`, as the kubelet pulls it.
 */
export function imageMatches(target: ImageTarget, image: ImageRef | undefined): boolean {
  if (target.kind === 'any') return true;
  if (image === undefined || target.ref === undefined) return false;
  if (target.ref.repository !== image.repository) return false;
  switch (target.kind) {
    case 'repository':
      return true;
    case 'tag':
      return (image.tag ?? (image.digest === undefined ? 'latest' : undefined)) === target.ref.tag;
    case 'digest':
      return image.digest === target.ref.digest;
  }
}
