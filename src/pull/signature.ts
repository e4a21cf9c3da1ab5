// The signature step of the pull pipeline (docs/architecture.md; docs/signatures.md): the rule's
// signers handed to the injected verifier. Fail closed: anything but a verdict is a refusal.

import { SpokeError, asSpokeError } from '../core/errors.js';
import type { Reference } from '../core/reference.js';
import { logEnabled, type Logger } from '../core/runtime.js';
import type { Decision, SignerSpec as PolicySigner, UnavailableSigner } from '../policy/types.js';
import type { RegistryClient } from '../registry/types.js';
import type { SignatureVerdict, SignerSpec } from '../verify/types.js';
import type { FlightRequest, PullObserver, SignatureVerifier } from './types.js';

/** What the signature step uses from the pipeline's dependencies. */
export interface SignatureStep {
  verifier?: SignatureVerifier;
  observer?: PullObserver;
}

export async function verifySignature(step: SignatureStep, logger: Logger, ref: Reference, canonical: string, req: FlightRequest, decision: Decision & { allowed: true }, registry: RegistryClient, manifestBytes: Buffer | Promise<Buffer>): Promise<SignatureVerdict> {
  const verifier = step.verifier;
  if (!verifier) throw new SpokeError('SignatureValidationFailed', `${canonical}: the rule requires a signature but no verifier is configured`, { reference: canonical }, { reason: 'SIGNER_UNAVAILABLE' });
  // A signer whose key is gone verifies nothing (fail closed): the others still may.
  const signers = decision.signedBy.filter((s): s is Exclude<PolicySigner, UnavailableSigner> => s.type !== 'unavailable');
  const unavailable = decision.signedBy.filter((s): s is UnavailableSigner => s.type === 'unavailable');
  const signerGone = (cause?: SpokeError) =>
    new SpokeError(
      'SignatureValidationFailed',
      `${canonical}: no signature verified${signers.length > 0 ? ` by ${signers.map((s) => s.name).join(', ')}` : ''}, and the key material of ${unavailable.map((s) => `${s.name} (${s.why})`).join(', ')} is unavailable`,
      { reference: canonical },
      { reason: 'SIGNER_UNAVAILABLE', cause },
    );
  if (signers.length === 0) {
    step.observer?.verified('failed');
    throw signerGone();
  }
  try {
    const verdict = await verifier({
      registry,
      reference: ref,
      manifestBytes,
      signers: signers.map(toVerifierSigner),
      credential: req.credential,
      signal: req.signal,
    });
    step.observer?.verified('ok');
    // The caller's outcome line names the verdict (the shim's "security profile pull": signer,
    // format, identity); a line of its own at info was a second write a pull.
    if (logEnabled(logger, 'debug')) logger.log('debug', 'signature verified', { reference: canonical, digest: ref.digest, signer: verdict.signer, format: verdict.format, identity: verdict.identity });
    return verdict;
  } catch (e) {
    // A pull that ended (its callers gone, another step failed) stops its verification: no
    // signature was judged, so it does not count as one that failed.
    step.observer?.verified(req.signal.aborted ? 'aborted' : 'failed');
    const err = asSpokeError(e, 'SignatureValidationFailed');
    // Registry trouble stays transient and visible as such; anything else is a refusal.
    if (err.code === 'RegistryUnavailable' || err.code === 'Unauthenticated') throw err;
    if (unavailable.length > 0) throw signerGone(err);
    if (err.code === 'SignatureValidationFailed') throw err;
    throw new SpokeError('SignatureValidationFailed', `${canonical}: ${err.message}`, { ...err.context, reference: canonical }, { cause: err, reason: err.reason === 'UNSPECIFIED' || err.reason === 'UNEXPECTED' ? 'SIGNATURE_INVALID' : err.reason });
  }
}

/** Policy signers (as parsed from the node policy) in the verifier's plain shape; an unavailable one fails closed. */
export function toVerifierSigner(s: PolicySigner): SignerSpec {
  if (s.type === 'unavailable') throw new SpokeError('SignatureValidationFailed', `signer ${s.name}: ${s.why}`, { file: s.file }, { reason: 'SIGNER_UNAVAILABLE' });
  return s.type === 'publicKey'
    ? { name: s.name, kind: 'publicKey', file: s.file, pem: s.publicKeyPem, key: s.publicKey }
    : { name: s.name, kind: 'keyless', trustedRootFile: s.file, trustedRoot: s.trustedRoot, issuer: s.issuer, subject: s.subject, subjectRegExp: s.subjectRegExp, timeSource: s.timeSource };
}
