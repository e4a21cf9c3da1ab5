// Size and count limits. KEP-6061 §5 recommends 1 MiB per artifact; manifests are capped at 64 KiB (docs/architecture.md).
export const DEFAULT_MAX_ARTIFACT_BYTES = 1024 * 1024;
/** The largest limits.maxArtifactBytes a node policy may set (policy/node-policy.schema.json): no node takes more. */
export const MAX_POLICY_ARTIFACT_BYTES = 16 * 1024 * 1024;
export const MAX_MANIFEST_BYTES = 64 * 1024;
/** Repository names are at most 255 characters (distribution spec); a full reference stays below this. */
export const MAX_REFERENCE_LENGTH = 512;
export const MAX_REPOSITORY_LENGTH = 255;
/** Signature blobs (bundles, simple-signing payloads) are small; cap them like profiles. */
export const MAX_SIGNATURE_BYTES = 256 * 1024;
/**
 * Referrer indexes (API and tag-schema): room for about a thousand entries, far more than the
 * signature candidates read (64). They come from the registry, not the signer, and are decoded
 * strictly on the shim's event loop: 4 MiB of empty entries took 0.35 s, this cap 24 ms. `spoke
 * sign` refuses to grow one past it, so it never writes one that nodes cannot read.
 */
export const MAX_INDEX_BYTES = 256 * 1024;
/**
 * Cosign `.sig` manifests: a keyless signature's layer carries its certificate, chain and log
 * bundle (~8.4 KB), so 64 of them need ~540 KB. 1 MiB of empty layers decodes in ~90 ms.
 */
export const MAX_SIG_MANIFEST_BYTES = 1024 * 1024;
/** A registry response's header block, all lines together: Node's own default for HTTP, set explicitly. */
export const MAX_RESPONSE_HEADER_BYTES = 16 * 1024;
