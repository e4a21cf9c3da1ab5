// spoke sign: sign an artifact digest with a local key (optionally a certificate plus an
// RFC 3161 timestamp for keyless verification) and attach the signature the ways verifiers
// look for it (docs/signatures.md): a sigstore bundle referrer (sign-bundle.ts) and/or a layer
// of cosign's `sha256-<hex>.sig` tag (sign-cosign.ts). Options and the key: signing.ts.

import { sha256Digest } from '../core/digest.js';
import { SpokeError, isSpokeError } from '../core/errors.js';
import { systemClock } from '../core/runtime.js';
import { attachBundle } from './sign-bundle.js';
import { attachCosign } from './sign-cosign.js';
import { prepareSigning, type SignArtifactOptions, type SignArtifactResult } from './signing.js';

/** Signs `digest` and attaches the signature in the requested format(s). */
export async function signArtifact(o: SignArtifactOptions): Promise<SignArtifactResult> {
  if (sha256Digest(o.manifestBytes) !== o.digest) throw new SpokeError('InvalidArgument', `manifest bytes do not hash to ${o.digest}`, {}, { reason: 'DIGEST_MISMATCH' });
  if (o.format !== 'bundle' && o.format !== 'cosign' && o.format !== 'both') throw new SpokeError('InvalidArgument', `unknown signature format ${JSON.stringify(o.format)}`, {}, { reason: 'OPTION_INVALID' });
  const s = prepareSigning(o);
  const clock = o.clock ?? systemClock;
  const out: SignArtifactResult = {};
  try {
    if (o.format === 'bundle' || o.format === 'both') Object.assign(out, await attachBundle(o, s, clock));
    if (o.format === 'cosign' || o.format === 'both') out.sigManifestDigest = await attachCosign(o, s);
  } catch (e) {
    if (isSpokeError(e)) throw e;
    throw new SpokeError('RegistryUnavailable', `signing ${o.digest}: ${(e as Error).message}`, {}, { cause: e, reason: 'UNEXPECTED' });
  }
  return out;
}
