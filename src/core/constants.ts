// Names that upstream has not settled (KEP-6061 §0) and media types (KEP §5, OCI image spec,
// sigstore bundle spec, cosign SIGNATURE_SPEC). One module, so a rename is a one-line change.

export const MEDIA_TYPE_OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
export const MEDIA_TYPE_OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
export const MEDIA_TYPE_OCI_EMPTY = 'application/vnd.oci.empty.v1+json';
/** sha256 of `{}`, the OCI empty descriptor's blob. */
export const OCI_EMPTY_DIGEST = 'sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a';
export const MEDIA_TYPE_UNKNOWN_CONFIG = 'application/vnd.unknown.config.v1+json';

/**
 * Node.js `process.arch` → the OCI image spec's `platform.architecture` (Go GOARCH names), which
 * a multi-architecture profile index selects by (docs/multi-arch.md). Node's `ppc64` and `mips`
 * builds on Linux are little-endian only.
 */
export const OCI_ARCHITECTURES: Readonly<Record<string, string>> = {
  x64: 'amd64',
  arm64: 'arm64',
  arm: 'arm',
  ia32: '386',
  ppc64: 'ppc64le',
  s390x: 's390x',
  riscv64: 'riscv64',
  loong64: 'loong64',
  mipsel: 'mipsle',
};

/** The OCI architecture name of a Node.js `process.arch` value (unknown names pass through). */
export function ociArchitecture(nodeArch: string): string {
  return OCI_ARCHITECTURES[nodeArch] ?? nodeArch;
}

export type ProfileKind = 'seccomp' | 'apparmor';
export const PROFILE_KINDS: readonly ProfileKind[] = ['seccomp', 'apparmor'];

/** KEP-6061 §5: the config media type, equal to `artifactType`, names the kind. */
export const CONFIG_MEDIA_TYPE: Readonly<Record<ProfileKind, string>> = {
  seccomp: 'application/vnd.cncf.seccomp-profile.config.v1+json',
  apparmor: 'application/vnd.cncf.apparmor-profile.config.v1+json',
};

export function kindOfConfigMediaType(mediaType: string): ProfileKind | undefined {
  for (const k of PROFILE_KINDS) if (CONFIG_MEDIA_TYPE[k] === mediaType) return k;
  return undefined;
}

/** What `spoke push` writes as the single layer (SPO's choice), titled profile.json. */
export const MEDIA_TYPE_PROFILE_LAYER = 'application/json';
export const ANNOTATION_TITLE = 'org.opencontainers.image.title';

// Signatures (docs/signatures.md).
export const MEDIA_TYPE_SIGSTORE_BUNDLE_V03 = 'application/vnd.dev.sigstore.bundle.v0.3+json';
export const MEDIA_TYPE_IN_TOTO = 'application/vnd.in-toto+json';
export const IN_TOTO_STATEMENT_V1 = 'https://in-toto.io/Statement/v1';
export const COSIGN_SIGN_PREDICATE = 'https://sigstore.dev/cosign/sign/v1';
export const MEDIA_TYPE_COSIGN_SIMPLESIGNING = 'application/vnd.dev.cosign.simplesigning.v1+json';
export const ANNOTATION_COSIGN_SIGNATURE = 'dev.cosignproject.cosign/signature';
export const ANNOTATION_COSIGN_CERTIFICATE = 'dev.sigstore.cosign/certificate';
export const ANNOTATION_COSIGN_CHAIN = 'dev.sigstore.cosign/chain';
export const ANNOTATION_BUNDLE_CONTENT = 'dev.sigstore.bundle.content';
export const ANNOTATION_BUNDLE_PREDICATE = 'dev.sigstore.bundle.predicateType';
export const COSIGN_SIMPLESIGNING_TYPE = 'cosign container image signature';

// CRI names (KEP text and implementation spellings; docs/shim.md).
export const CRI_PULL_METHODS = ['PullSecurityProfileArtifact', 'PullSecurityProfile'] as const;

/**
 * The version of spoke's signature rules, part of the policy hash that keys every signature
 * verdict (docs/signatures.md#verdicts). Raised whenever verification comes to refuse something
 * an earlier version accepted, so that no verdict outlives the rules that made it: 2 refuses a
 * bundle holding both a DSSE envelope and a message signature; 3 a bundle of more than four
 * transparency-log entries or timestamps, and a bundle, statement or payload that starts with a
 * byte-order mark.
 */
export const SIGNATURE_RULES_VERSION = 3;

/**
 * Annotation mode (docs/annotation-mode.md): `<prefix><container>` names a container's profile,
 * `<prefix>pod` every container's; read by the shim, written by the controller.
 */
export const ANNOTATION_PREFIX: Readonly<Record<ProfileKind, string>> = {
  seccomp: 'seccomp.profiles.spoke.dev/',
  apparmor: 'apparmor.profiles.spoke.dev/',
};
export const POD_ANNOTATION = 'pod';

/**
 * The directory under the kubelet's seccomp root where the shim writes its merge results
 * (`spoke/<sha256>.json`, docs/shim.md); gc removes them once unused.
 */
export const EFFECTIVE_SECCOMP_DIR = 'spoke';

/**
 * Runtime handlers whose containers the runtime confines with the seccomp and AppArmor profiles of
 * the OCI spec: the default handler (a pod without a RuntimeClass sends ""), runc and crun. gVisor
 * (runsc without --oci-seccomp) and Kata (disable_guest_seccomp) do not apply them (docs/shim.md).
 */
export const DEFAULT_RUNTIME_HANDLERS: readonly string[] = ['', 'runc', 'crun'];
