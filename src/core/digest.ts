import { createHash } from 'node:crypto';
import { SpokeError } from './errors.js';

/** A sha256 digest in OCI form: `sha256:` + 64 lowercase hex. The only digest spoke accepts. */
export type Digest = `sha256:${string}`;

const DIGEST_RE = /^sha256:[0-9a-f]{64}$/;

export function isDigest(s: string): s is Digest {
  return s.length === 71 && DIGEST_RE.test(s);
}

export function parseDigest(s: string, what = 'digest'): Digest {
  if (!isDigest(s)) {
    throw new SpokeError('InvalidArgument', `${what} must be sha256:<64 lowercase hex>, got ${JSON.stringify(s.slice(0, 80))}`, {
      expected: 'sha256:<64 hex>',
      actual: s.slice(0, 80),
    }, { reason: 'DIGEST_INVALID' });
  }
  return s;
}

export function sha256Hex(data: Uint8Array | string): string {
  return createHash('sha256').update(data).digest('hex');
}

export function sha256Digest(data: Uint8Array | string): Digest {
  return `sha256:${sha256Hex(data)}`;
}

/** The hex part, the only thing store paths are ever built from. */
export function digestHex(d: Digest): string {
  return d.slice(7);
}
