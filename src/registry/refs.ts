// Argument checks and error context shared by the registry client's pull and upload paths.

import { SpokeError, type ErrorContext } from '../core/errors.js';
import { isDigest } from '../core/digest.js';
import { TAG_RE } from '../core/reference.js';
import type { RepoLocator } from './types.js';

const MEDIA_TYPE_RE = /^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}\/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}$/;

export function refContext(repo: RepoLocator, ref: string): ErrorContext {
  const sep = ref.startsWith('sha256:') ? '@' : ':';
  return { reference: `${repo.registry}/${repo.repository}${sep}${ref}`, ...(sep === '@' ? { digest: ref } : {}) };
}

export function checkDigest(d: string): void {
  if (!isDigest(d)) throw new SpokeError('InvalidArgument', `digest must be sha256:<64 lowercase hex>, got ${JSON.stringify(String(d).slice(0, 80))}`, {}, { reason: 'DIGEST_INVALID' });
}

/** True when `ref` is a digest; a tag otherwise; anything else is InvalidArgument. */
export function checkManifestRef(ref: string): boolean {
  if (typeof ref === 'string' && ref.startsWith('sha256:')) {
    checkDigest(ref);
    return true;
  }
  if (typeof ref !== 'string' || !TAG_RE.test(ref)) throw new SpokeError('InvalidArgument', `invalid tag ${JSON.stringify(String(ref).slice(0, 80))}`, {}, { reason: 'REFERENCE_INVALID' });
  return false;
}

export function checkMediaType(mt: string): string {
  if (typeof mt !== 'string' || !MEDIA_TYPE_RE.test(mt)) throw new SpokeError('InvalidArgument', `invalid media type ${JSON.stringify(String(mt).slice(0, 80))}`, {}, { reason: 'OPTION_INVALID' });
  return mt;
}
