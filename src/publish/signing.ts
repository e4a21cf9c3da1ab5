// What both signature formats of signArtifact (sign.ts) are made with: its options and result,
// the signing key (and certificate) loaded and checked, and the helpers of a tag's
// read-modify-write.

import { X509Certificate as NodeX509, createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';
import type { Digest } from '../core/digest.js';
import { SpokeError } from '../core/errors.js';
import { acceptedKeyType } from '../core/key-type.js';
import type { Clock } from '../core/runtime.js';
import type { Credential, RegistryClient, RepoLocator } from '../registry/types.js';
import { hashForKey } from '../verify/index.js';

export type SignFormat = 'bundle' | 'cosign' | 'both';
/** A contested tag (concurrent signers) is read, updated and checked at most this often. */
export const TAG_UPDATE_ATTEMPTS = 5;

export interface SignArtifactOptions {
  registry: RegistryClient;
  repo: RepoLocator;
  digest: Digest;
  /** The artifact manifest bytes; their sha256 must be `digest`. */
  manifestBytes: Uint8Array;
  /** Private key: a KeyObject or PEM (PKCS#8 or SEC1; unencrypted). */
  key: KeyObject | string;
  /** Leaf certificate (PEM) for the key: keyless-style signature; needs `timestampUrl`. */
  cert?: string;
  /** Certificate chain (PEM), written to cosign's chain annotation. */
  chain?: string;
  /** RFC 3161 TSA URL; the timestamp is over the signature bytes. */
  timestampUrl?: string;
  format: SignFormat;
  credential?: Credential;
  signal?: AbortSignal;
  clock?: Clock;
  /** Injected fetch for the TSA (tests). */
  fetch?: typeof fetch;
}

export interface SignArtifactResult {
  /** Digest of the referrer manifest holding the bundle. */
  bundleDigest?: Digest;
  /** Digest of the bundle blob itself. */
  bundleBlobDigest?: Digest;
  /** How the referrer is discoverable: the registry's referrers API, or the tag-schema index we updated. */
  referrers?: 'referrers-api' | 'tag-schema';
  /** Digest of the `sha256-<hex>.sig` manifest after appending. */
  sigManifestDigest?: Digest;
}
export interface Signing {
  key: KeyObject;
  publicKey: KeyObject;
  hash: string | null;
  certPem: string | undefined;
  /** The chain's certificates, re-encoded (certificatesOnly). */
  chainPem?: string | undefined;
}

function loadPrivateKey(key: KeyObject | string): KeyObject {
  if (typeof key !== 'string') {
    if (key.type !== 'private') throw new SpokeError('InvalidArgument', 'signing key must be a private key', {}, { reason: 'KEY_INVALID' });
    return key;
  }
  try {
    return createPrivateKey({ key, format: 'pem' });
  } catch (e) {
    throw new SpokeError('InvalidArgument', `signing key is not an unencrypted PEM private key (PKCS#8 or SEC1): ${(e as Error).message}`, {}, { reason: 'KEY_INVALID' });
  }
}

function checkKeyStrength(k: KeyObject): void {
  const accepted = acceptedKeyType(k);
  // Signing is refused for a key no node policy could trust (src/core/key-type.ts).
  if ('refused' in accepted) throw new SpokeError('InvalidArgument', `signing key: ${accepted.refused}`, {}, { reason: 'KEY_INVALID' });
}

/** The private key a signature will be made with, refused (KEY_INVALID) when unreadable or too weak. */
export function signingKey(key: KeyObject | string): KeyObject {
  const k = loadPrivateKey(key);
  checkKeyStrength(k);
  return k;
}

export function prepareSigning(o: SignArtifactOptions): Signing {
  const key = signingKey(o.key);
  const publicKey = createPublicKey(key);
  let certPem: string | undefined;
  if (o.cert !== undefined) {
    let cert: NodeX509;
    try {
      cert = new NodeX509(o.cert);
    } catch (e) {
      throw new SpokeError('InvalidArgument', `certificate is not a PEM X.509 certificate: ${(e as Error).message}`, {}, { reason: 'CERTIFICATE_INVALID' });
    }
    const mine = publicKey.export({ type: 'spki', format: 'der' });
    const theirs = cert.publicKey.export({ type: 'spki', format: 'der' });
    if (!mine.equals(theirs)) throw new SpokeError('InvalidArgument', 'certificate is not for the signing key (public keys differ)', {}, { reason: 'CERTIFICATE_INVALID' });
    if (o.timestampUrl === undefined) {
      throw new SpokeError('InvalidArgument', 'a certificate signature needs --timestamp-url: keyless verification requires an RFC 3161 timestamp from the signing time', {}, { reason: 'OPTION_INVALID' });
    }
    certPem = cert.toString();
  } else if (o.chain !== undefined) {
    throw new SpokeError('InvalidArgument', '--chain needs --cert', {}, { reason: 'OPTION_INVALID' });
  }
  const chainPem = o.chain === undefined ? undefined : certificatesOnly(o.chain);
  return { key, publicKey, hash: hashForKey(key), certPem, chainPem };
}

const PEM_BLOCK_RE = /-----BEGIN ([A-Z0-9 ]{1,64})-----([A-Za-z0-9+/=\s]*?)-----END \1-----/g;
const PEM_BEGIN_RE = /-----BEGIN ([^\r\n-]{1,64})-----/g;
const PEM_ANY_BEGIN_RE = /-----BEGIN /g;
/** A chain file past this is no chain: the `.sig` manifest that carries it is read up to 1 MiB. */
const MAX_CHAIN_BYTES = 256 * 1024;

/**
 * The certificates of a chain file, as they parse, and nothing else: the file is published in the
 * `.sig` manifest, and a combined PEM (chain and key, a common layout) would push the key. Any
 * block but CERTIFICATE, or one that does not parse, is refused; text around the blocks is dropped.
 */
function certificatesOnly(chain: string): string {
  const refuse = (why: string): never => {
    throw new SpokeError('InvalidArgument', `certificate chain: ${why}; only certificates are published with the signature`, {}, { reason: 'CERTIFICATE_INVALID' });
  };
  if (chain.length > MAX_CHAIN_BYTES) refuse(`it is over ${MAX_CHAIN_BYTES} bytes`);
  // Every block by its label first: an encrypted key's headers would otherwise read as a
  // malformed block rather than as the key it is.
  let blocks = 0;
  for (const [, label] of chain.matchAll(PEM_BEGIN_RE)) {
    if (label !== 'CERTIFICATE') refuse(`it holds a ${label} block`);
    blocks++;
  }
  const out = new Set<string>(); // a certificate listed twice is published once
  let parsed = 0;
  for (const [block] of chain.matchAll(PEM_BLOCK_RE)) {
    parsed++;
    try {
      out.add(new NodeX509(block).toString());
    } catch {
      refuse(`certificate ${parsed} does not parse`);
    }
  }
  if (parsed !== blocks || (chain.match(PEM_ANY_BEGIN_RE) ?? []).length !== blocks) refuse('a PEM block is malformed or not closed');
  if (out.size === 0) refuse('no certificate in it');
  return [...out].join('');
}

export function jsonBytes(v: unknown): Buffer {
  return Buffer.from(JSON.stringify(v));
}

/**
 * A signature list (tag-schema index, `.sig` manifest) grown past what a node reads would hide
 * every signature in it (src/core/limits.ts): refused before it is written. `pushed`: what was
 * already pushed when this is found out.
 */
export function refuseOverCap(bytes: Buffer, cap: number, what: string, pushed: string): void {
  if (bytes.length <= cap) return;
  throw new SpokeError(
    'FailedPrecondition',
    `${what} would grow to ${bytes.length} bytes, over the ${cap} bytes a node reads, which would hide every signature it lists; it is left as it was (the ${pushed})`,
    { limit: cap, actual: bytes.length },
    { reason: 'LIMIT_EXCEEDED' },
  );
}

export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
