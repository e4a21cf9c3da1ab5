// Push a packed profile: blobs first (skipped when present), then the manifest under the tag
// (or by digest). Returns the digest-pinned reference, which `spoke push` prints last.

import { formatPlatform, MAX_INDEX_MANIFESTS, platformKey, type Platform } from '../core/artifact.js';
import { MEDIA_TYPE_OCI_INDEX, MEDIA_TYPE_OCI_MANIFEST, type ProfileKind } from '../core/constants.js';
import { SpokeError, asSpokeError } from '../core/errors.js';
import { sha256Digest, type Digest } from '../core/digest.js';
import { formatReference } from '../core/reference.js';
import { MAX_POLICY_ARTIFACT_BYTES } from '../core/limits.js';
import type { Credential, RegistryClient, RepoLocator } from '../registry/types.js';
import { validateArtifactBytes } from '../profiles/index.js';
import { decodeSeccompWithHint } from '../profiles/seccomp/convert.js';
import { packIndex, packProfile, type PackedArtifact } from './pack.js';

export interface PushResult {
  reference: string;
  digest: Digest;
  size: number;
  packed: PackedArtifact;
}

/** A profile larger than any node policy admits. */
function oversized(bytes: number): SpokeError {
  return new SpokeError(
    'SecurityProfileInvalid',
    `the profile is ${bytes} bytes; no node takes more than ${MAX_POLICY_ARTIFACT_BYTES} (limits.maxArtifactBytes at most, 1 MiB by default)`,
    { limit: MAX_POLICY_ARTIFACT_BYTES, actual: bytes },
    { reason: 'SIZE_LIMIT' },
  );
}

export async function pushProfile(
  registry: RegistryClient,
  repo: RepoLocator,
  tag: string | undefined,
  profileBytes: Uint8Array,
  kind: ProfileKind,
  opts: { credential?: Credential; signal?: AbortSignal; onProgress?: (step: string) => void } = {},
): Promise<PushResult> {
  // The publisher refuses what every node would refuse, before anything leaves the machine.
  if (profileBytes.byteLength > MAX_POLICY_ARTIFACT_BYTES) throw oversized(profileBytes.byteLength);
  if (kind === 'seccomp') decodeSeccompWithHint(profileBytes);
  validateArtifactBytes(kind, profileBytes);
  const packed = packProfile(profileBytes, kind);
  const put = { credential: opts.credential, signal: opts.signal };
  opts.onProgress?.('uploading config');
  await registry.putBlob(repo, packed.config, put);
  opts.onProgress?.('uploading profile');
  await registry.putBlob(repo, packed.layer, put);
  opts.onProgress?.('uploading manifest');
  const digest = await putChecked(registry, repo, tag ?? packed.manifestDigest, packed.manifest, packed.manifestDigest, MEDIA_TYPE_OCI_MANIFEST, put);
  return { reference: formatReference({ ...repo, digest }), digest, size: packed.layer.byteLength, packed };
}

/**
 * Points `tag` at a manifest already pushed by digest (`spoke push --sign-key` tags only once the
 * signature is attached): the registry must store it under the same digest.
 */
export async function tagManifest(registry: RegistryClient, repo: RepoLocator, tag: string, bytes: Buffer, mediaType: string, opts: { credential?: Credential; signal?: AbortSignal } = {}): Promise<Digest> {
  return putChecked(registry, repo, tag, bytes, sha256Digest(bytes), mediaType, opts);
}

async function putChecked(registry: RegistryClient, repo: RepoLocator, ref: string, bytes: Buffer, expected: Digest, mediaType: string, put: { credential?: Credential; signal?: AbortSignal }): Promise<Digest> {
  const { digest } = await registry.putManifest(repo, ref, bytes, mediaType, put);
  if (digest !== expected) throw new SpokeError('RegistryUnavailable', `registry stored manifest as ${digest}, expected ${expected}`, { expected, actual: digest }, { reason: 'REGISTRY_ERROR' });
  return digest;
}

/**
 * The seccomp architecture (libseccomp name) of each Linux architecture a node can report, by its
 * OCI (Go) name: a platform names one of these, or no node ever selects it.
 */
const NATIVE_SECCOMP_ARCH: Readonly<Record<string, string>> = {
  amd64: 'SCMP_ARCH_X86_64',
  arm64: 'SCMP_ARCH_AARCH64',
  arm: 'SCMP_ARCH_ARM',
  '386': 'SCMP_ARCH_X86',
  ppc64: 'SCMP_ARCH_PPC64',
  ppc64le: 'SCMP_ARCH_PPC64LE',
  s390x: 'SCMP_ARCH_S390X',
  riscv64: 'SCMP_ARCH_RISCV64',
  loong64: 'SCMP_ARCH_LOONGARCH64',
  mips: 'SCMP_ARCH_MIPS',
  mipsle: 'SCMP_ARCH_MIPSEL',
  mips64: 'SCMP_ARCH_MIPS64',
  mips64le: 'SCMP_ARCH_MIPSEL64',
};

/** Kernel and distribution names for architectures, with the OCI name a node reports instead. */
const OCI_ARCH_FOR: Readonly<Record<string, string>> = { x86_64: 'amd64', aarch64: 'arm64', i386: '386', i686: '386', armhf: 'arm', armv7l: 'arm', ppc64el: 'ppc64le' };

/** A platform a node can match: Linux (the profiles are Linux's), and an OCI architecture name. */
function checkPlatform(platform: Platform): void {
  if (platform.os !== 'linux') throw new SpokeError('InvalidArgument', `os ${platform.os}: seccomp and AppArmor profiles are for linux`, {}, { reason: 'OPTION_INVALID' });
  // Own names only: every object has a constructor.
  if (!Object.hasOwn(NATIVE_SECCOMP_ARCH, platform.architecture)) {
    const oci = Object.hasOwn(OCI_ARCH_FOR, platform.architecture) ? OCI_ARCH_FOR[platform.architecture] : undefined;
    throw new SpokeError('InvalidArgument', `architecture ${platform.architecture} is not an OCI architecture name${oci ? `; nodes report ${oci}` : ''} (one of ${Object.keys(NATIVE_SECCOMP_ARCH).join(', ')})`, {}, { reason: 'OPTION_INVALID' });
  }
}

/**
 * A seccomp profile published for a platform that lists architectures must list the platform's
 * own: otherwise the file was most likely given for the wrong platform (an amd64 profile as
 * linux/arm64), and the node's merge would drop every architecture it lists.
 */
function checkArchitectures(platform: Platform, listed: readonly string[] | undefined): void {
  const native = NATIVE_SECCOMP_ARCH[platform.architecture]!;
  if (listed === undefined || listed.length === 0 || listed.includes(native)) return;
  throw new SpokeError('InvalidArgument', `the profile lists architectures ${listed.join(', ')} but not ${native}, this platform's own: is it the file for another platform?`, { expected: native }, { reason: 'OPTION_INVALID' });
}

export interface PushIndexResult {
  reference: string;
  digest: Digest;
  /** The index's exact bytes (what `spoke sign` signs). */
  index: Buffer;
  platforms: { platform: string; reference: string; digest: Digest; size: number }[];
}

/**
 * A multi-architecture profile (docs/multi-arch.md): each platform's profile pushed as its own
 * artifact (by digest, untagged), then the index naming them under `tag` (or its digest). Every
 * profile is validated before anything is pushed; a platform given twice is refused.
 */
export async function pushProfileIndex(
  registry: RegistryClient,
  repo: RepoLocator,
  tag: string | undefined,
  entries: readonly { platform: Platform; bytes: Uint8Array }[],
  kind: ProfileKind,
  opts: { credential?: Credential; onProgress?: (step: string) => void } = {},
): Promise<PushIndexResult> {
  if (entries.length === 0 || entries.length > MAX_INDEX_MANIFESTS) {
    throw new SpokeError('InvalidArgument', `a multi-architecture profile has 1 to ${MAX_INDEX_MANIFESTS} platforms, got ${entries.length}`, {}, { reason: entries.length === 0 ? 'OPTION_INVALID' : 'LIMIT_EXCEEDED' });
  }
  const seen = new Set<string>();
  for (const e of entries) {
    const name = formatPlatform(e.platform);
    if (seen.has(platformKey(e.platform))) throw new SpokeError('InvalidArgument', `platform ${platformKey(e.platform)} is given twice`, {}, { reason: 'OPTION_INVALID' });
    seen.add(platformKey(e.platform));
    try {
      checkPlatform(e.platform);
      if (e.bytes.byteLength > MAX_POLICY_ARTIFACT_BYTES) throw oversized(e.bytes.byteLength);
      if (kind === 'seccomp') checkArchitectures(e.platform, decodeSeccompWithHint(e.bytes).architectures);
      validateArtifactBytes(kind, e.bytes);
    } catch (err) {
      const se = asSpokeError(err, 'SecurityProfileInvalid');
      throw new SpokeError(se.code, `${name}: ${se.message}`, se.context, { reason: se.reason, cause: err });
    }
  }
  const platforms: PushIndexResult['platforms'] = [];
  const packedAll: { platform: Platform; manifest: Buffer }[] = [];
  for (const e of entries) {
    const name = formatPlatform(e.platform);
    const r = await pushProfile(registry, repo, undefined, e.bytes, kind, { ...opts, onProgress: (s) => opts.onProgress?.(`${name}: ${s}`) });
    platforms.push({ platform: name, reference: r.reference, digest: r.digest, size: r.size });
    packedAll.push({ platform: e.platform, manifest: r.packed.manifest });
  }
  const index = packIndex(packedAll, kind);
  opts.onProgress?.('uploading index');
  const digest = await putChecked(registry, repo, tag ?? index.digest, index.bytes, index.digest, MEDIA_TYPE_OCI_INDEX, { credential: opts.credential });
  return { reference: formatReference({ ...repo, digest }), digest, index: index.bytes, platforms };
}
