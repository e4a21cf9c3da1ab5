// Container image references as the kubelet and runtimes read them (distribution/reference's
// ParseNormalizedNamed): `nginx` = `docker.io/library/nginx:latest`, `index.docker.io` =
// `docker.io`, a first component is a registry host only if it has `.` or `:`, is `localhost`,
// or has upper-case letters. Pure; length checked before any regex; every regex anchored.
// Binding `image` targets are parsed by the same function (see `parseImageTarget`).

const MAX_IMAGE_LENGTH = 512;
const NAME_MAX = 255;
const PATH_COMPONENT_RE = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const DOMAIN_RE = /^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?$/;
const TAG_RE = /^[\w][\w.-]{0,127}$/;
const DIGEST_RE = /^(?:sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$/;
const HEX64_RE = /^[a-f0-9]{64}$/;

export interface ImageRef {
  /** Normalized registry host, e.g. `docker.io`, `registry.example.com:5000`. */
  readonly domain: string;
  /** Normalized path, e.g. `library/nginx`. */
  readonly path: string;
  /** `domain/path` — the repository. */
  readonly repository: string;
  readonly tag: string | undefined;
  readonly digest: string | undefined;
}

export class ImageParseError extends Error {}

function fail(input: string, why: string): never {
  throw new ImageParseError(`invalid image reference ${JSON.stringify(input.slice(0, 120))}: ${why}`);
}

/** Parses and normalizes an image reference; throws ImageParseError with the reason. */
export function parseImage(input: string): ImageRef {
  if (typeof input !== 'string' || input.length === 0) fail(String(input), 'empty');
  if (input.length > MAX_IMAGE_LENGTH) fail(input, `longer than ${MAX_IMAGE_LENGTH} characters`);
  if (/[\s\u0000-\u001f\u007f]/.test(input)) fail(input, 'contains whitespace or control characters');
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
  let domain: string;
  let path: string;
  const slash = rest.indexOf('/');
  const first = slash < 0 ? '' : rest.slice(0, slash);
  if (slash < 0 || (!/[.:]/.test(first) && first !== 'localhost' && first.toLowerCase() === first)) {
    domain = 'docker.io';
    path = rest;
  } else {
    domain = first;
    path = rest.slice(slash + 1);
    if (!DOMAIN_RE.test(domain)) fail(input, `invalid registry host ${JSON.stringify(domain)}`);
  }
  if (domain === 'index.docker.io') domain = 'docker.io';
  if (domain === 'docker.io' && !path.includes('/')) path = `library/${path}`;
  if (path.length === 0) fail(input, 'empty repository path');
  for (const component of path.split('/')) {
    if (!PATH_COMPONENT_RE.test(component)) {
      fail(input, `path component ${JSON.stringify(component)} must be lowercase letters, digits and single separators`);
    }
  }
  if (slash < 0 && HEX64_RE.test(rest)) fail(input, 'a 64-hex name is an image ID, not a repository');
  return Object.freeze({ domain, path, repository: `${domain}/${path}`, tag, digest });
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
