// Public surface of src/verify: discovery and offline verification of artifact signatures.
export type { KeylessSignerSpec, PublicKeySignerSpec, SignatureFormat, SignatureVerdict, SignerSpec } from './types.js';
export { verifyArtifactSignature, type VerifyArtifactOptions } from './verify.js';
export {
  discoverSignatures,
  cosignSigTag,
  tagSchemaTag,
  parseReferrersIndex,
  parseSigManifest,
  MAX_SIGNATURE_CANDIDATES,
  MEDIA_TYPE_DOCKER_MANIFEST,
  type DiscoverOptions,
  type DiscoveredSignatures,
  type ReferrerCandidate,
  type SigLayer,
  type CosignSignatures,
} from './discover.js';
export { ANNOTATION_COSIGN_RFC3161 } from './cosign.js';
export { anchoredRegExp, hashForKey, prepareSigner } from './trust.js';
