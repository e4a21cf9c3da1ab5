// Signing fixtures for tests: keys, artifacts pushed with plain fetch, signatures made
// independently of spoke's signer straight from the published formats (cosign
// SIGNATURE_SPEC, sigstore bundle v0.3 + DSSE + in-toto, OCI referrers tag schema), and a
// keyless set-up (@sigstore/mock CA + a local TSA + a hand-written trusted_root.json).

import { createHash, createPublicKey, generateKeyPairSync, sign as cryptoSign, type KeyObject } from 'node:crypto';
import { initializeCA } from '@sigstore/mock';
import type { SignerSpec } from '../../src/verify/index.js';
import { startTsaServer, type TestTsa } from './tsa-server.js';

export const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
export const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
export const BUNDLE_V03 = 'application/vnd.dev.sigstore.bundle.v0.3+json';
export const COSIGN_PREDICATE = 'https://sigstore.dev/cosign/sign/v1';
export const SECCOMP_CONFIG = 'application/vnd.cncf.seccomp-profile.config.v1+json';
export const EMPTY_DIGEST = 'sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a';

export type KeyKind = 'p256' | 'p384' | 'ed25519' | 'rsa';

export interface TestKey {
  privateKey: KeyObject;
  publicKey: KeyObject;
  privatePem: string;
  publicPem: string;
  /** SEC1 ("EC PRIVATE KEY") PEM for EC keys. */
  sec1Pem?: string;
}

export function makeKey(kind: KeyKind = 'p256'): TestKey {
  const kp =
    kind === 'p256'
      ? generateKeyPairSync('ec', { namedCurve: 'P-256' })
      : kind === 'p384'
        ? generateKeyPairSync('ec', { namedCurve: 'P-384' })
        : kind === 'ed25519'
          ? generateKeyPairSync('ed25519')
          : generateKeyPairSync('rsa', { modulusLength: 2048 });
  return {
    privateKey: kp.privateKey,
    publicKey: kp.publicKey,
    privatePem: kp.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
    publicPem: kp.publicKey.export({ type: 'spki', format: 'pem' }) as string,
    ...(kind === 'p256' || kind === 'p384' ? { sec1Pem: kp.privateKey.export({ type: 'sec1', format: 'pem' }) as string } : {}),
  };
}

export function sha256(b: Uint8Array | string): string {
  return `sha256:${createHash('sha256').update(b).digest('hex')}`;
}

async function ok(res: Response, what: string): Promise<Response> {
  if (res.status >= 300) throw new Error(`${what}: HTTP ${res.status} ${await res.text()}`);
  return res;
}

/** Monolithic blob upload with plain fetch (POST to open, PUT with ?digest=). */
export async function fetchPutBlob(url: string, repository: string, bytes: Buffer): Promise<string> {
  const digest = sha256(bytes);
  const head = await fetch(`${url}/v2/${repository}/blobs/${digest}`, { method: 'HEAD' });
  if (head.status === 200) return digest;
  const start = await ok(await fetch(`${url}/v2/${repository}/blobs/uploads/`, { method: 'POST' }), 'upload start');
  await start.arrayBuffer();
  const loc = new URL(start.headers.get('location')!, url);
  loc.searchParams.set('digest', digest);
  const put = await ok(await fetch(loc, { method: 'PUT', headers: { 'content-type': 'application/octet-stream' }, body: bytes }), 'upload');
  await put.arrayBuffer();
  return digest;
}

export async function fetchPutManifest(url: string, repository: string, ref: string, bytes: Buffer, mediaType: string): Promise<string> {
  const res = await ok(await fetch(`${url}/v2/${repository}/manifests/${ref}`, { method: 'PUT', headers: { 'content-type': mediaType }, body: bytes }), 'manifest put');
  await res.arrayBuffer();
  return sha256(bytes);
}

export async function fetchGetManifest(url: string, repository: string, ref: string, accept: string): Promise<Buffer | undefined> {
  const res = await fetch(`${url}/v2/${repository}/manifests/${ref}`, { headers: { accept } });
  if (res.status === 404) {
    await res.arrayBuffer();
    return undefined;
  }
  await ok(res, 'manifest get');
  return Buffer.from(await res.arrayBuffer());
}

export interface PushedArtifact {
  digest: string;
  manifest: Buffer;
  reference: string;
}

/** A small seccomp artifact: config `{}` with the seccomp config media type, one application/json layer. */
export async function pushTestArtifact(url: string, host: string, repository: string, profile: object = { defaultAction: 'SCMP_ACT_ALLOW' }): Promise<PushedArtifact> {
  const config = Buffer.from('{}');
  const layer = Buffer.from(JSON.stringify(profile));
  await fetchPutBlob(url, repository, config);
  await fetchPutBlob(url, repository, layer);
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      artifactType: SECCOMP_CONFIG,
      config: { mediaType: SECCOMP_CONFIG, digest: sha256(config), size: config.length },
      layers: [{ mediaType: 'application/json', digest: sha256(layer), size: layer.length, annotations: { 'org.opencontainers.image.title': 'profile.json' } }],
    }),
  );
  const digest = await fetchPutManifest(url, repository, sha256(manifest), manifest, OCI_MANIFEST);
  return { digest, manifest, reference: `${host}/${repository}@${digest}` };
}

function hashFor(key: KeyObject): string | null {
  return key.asymmetricKeyType === 'ed25519' ? null : 'sha256';
}

/**
 * A cosign signature made from the spec alone: the simple-signing payload (written with its own
 * spacing, so only raw-byte verification passes), ECDSA/EdDSA over those bytes, base64 DER in the
 * layer annotation, manifest at `sha256-<hex>.sig`. `payloadDigest` defaults to `digest`.
 */
export async function independentCosignSign(url: string, repository: string, digest: string, key: KeyObject, opts: { payloadDigest?: string; tag?: string } = {}): Promise<string> {
  const payload = Buffer.from(
    `{"critical": {"identity": {"docker-reference": "example.test/${repository}"}, "image": {"docker-manifest-digest": "${opts.payloadDigest ?? digest}"}, "type": "cosign container image signature"}, "optional": {"creator": "hand"}}`,
  );
  const sig = cryptoSign(hashFor(key), payload, key);
  const payloadDigest = await fetchPutBlob(url, repository, payload);
  const config = Buffer.from(JSON.stringify({ architecture: '', os: '', rootfs: { type: 'layers', diff_ids: [payloadDigest] }, config: {} }));
  const configDigest = await fetchPutBlob(url, repository, config);
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: configDigest, size: config.length },
      layers: [{ mediaType: 'application/vnd.dev.cosign.simplesigning.v1+json', digest: payloadDigest, size: payload.length, annotations: { 'dev.cosignproject.cosign/signature': sig.toString('base64') } }],
    }),
  );
  return fetchPutManifest(url, repository, opts.tag ?? `sha256-${digest.slice(7)}.sig`, manifest, OCI_MANIFEST);
}

/** DSSE PAE, written out from the DSSE spec. */
export function pae(type: string, payload: Buffer): Buffer {
  return Buffer.concat([Buffer.from(`DSSEv1 ${Buffer.byteLength(type)} ${type} ${payload.length} `), payload]);
}

/**
 * A cosign-v3-shaped sigstore bundle (v0.3, DSSE, in-toto Statement v1, empty predicate), the JSON
 * written by hand, attached as an OCI referrer plus the tag-schema index (the registry has no
 * referrers API). Returns the referrer manifest digest and the bundle blob digest.
 */
export async function independentBundleSign(
  url: string,
  repository: string,
  subject: { digest: string; size: number },
  key: KeyObject,
  opts: { predicateType?: string; statementDigest?: string; hint?: string; mediaType?: string } = {},
): Promise<{ referrer: string; blob: string }> {
  const statement = Buffer.from(
    JSON.stringify({
      _type: 'https://in-toto.io/Statement/v1',
      subject: [{ name: `example.test/${repository}`, digest: { sha256: (opts.statementDigest ?? subject.digest).slice(7) } }],
      predicateType: opts.predicateType ?? COSIGN_PREDICATE,
      predicate: {},
    }),
  );
  const payloadType = 'application/vnd.in-toto+json';
  const sig = cryptoSign(hashFor(key), pae(payloadType, statement), key);
  const bundle = Buffer.from(
    JSON.stringify({
      mediaType: opts.mediaType ?? BUNDLE_V03,
      verificationMaterial: { publicKey: { hint: opts.hint ?? 'hand-made' }, tlogEntries: [], timestampVerificationData: { rfc3161Timestamps: [] } },
      dsseEnvelope: { payload: statement.toString('base64'), payloadType, signatures: [{ sig: sig.toString('base64'), keyid: '' }] },
    }),
  );
  const annotations = { 'dev.sigstore.bundle.content': 'dsse-envelope', 'dev.sigstore.bundle.predicateType': opts.predicateType ?? COSIGN_PREDICATE };
  return pushBundleReferrer(url, repository, subject, bundle, annotations);
}

/**
 * Stores sigstore bundle bytes as a v0.3 referrer of `subject`: the bundle blob, the empty
 * config, the referrer manifest, and its entry in the tag-schema fallback index.
 */
export async function pushBundleReferrer(
  url: string,
  repository: string,
  subject: { digest: string; size: number },
  bundle: Buffer,
  annotations?: Record<string, string>,
): Promise<{ referrer: string; blob: string }> {
  const blob = await fetchPutBlob(url, repository, bundle);
  await fetchPutBlob(url, repository, Buffer.from('{}'));
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      artifactType: BUNDLE_V03,
      config: { mediaType: 'application/vnd.oci.empty.v1+json', digest: EMPTY_DIGEST, size: 2 },
      layers: [{ mediaType: BUNDLE_V03, digest: blob, size: bundle.length }],
      subject: { mediaType: OCI_MANIFEST, digest: subject.digest, size: subject.size },
      ...(annotations ? { annotations } : {}),
    }),
  );
  const referrer = await fetchPutManifest(url, repository, sha256(manifest), manifest, OCI_MANIFEST);
  await addToFallbackIndex(url, repository, subject.digest, { mediaType: OCI_MANIFEST, digest: referrer, size: manifest.length, artifactType: BUNDLE_V03, ...(annotations ? { annotations } : {}) });
  return { referrer, blob };
}

/** Adds a descriptor to the `sha256-<hex>` tag-schema index, as a referrers-unaware pusher must. */
export async function addToFallbackIndex(url: string, repository: string, digest: string, descriptor: object): Promise<void> {
  const tag = `sha256-${digest.slice(7)}`;
  const cur = await fetchGetManifest(url, repository, tag, OCI_INDEX);
  const index = cur ? (JSON.parse(cur.toString('utf8')) as { manifests: object[] }) : { schemaVersion: 2, mediaType: OCI_INDEX, manifests: [] as object[] };
  index.manifests.push(descriptor);
  await fetchPutManifest(url, repository, tag, Buffer.from(JSON.stringify(index)), OCI_INDEX);
}

export const TEST_ISSUER = 'https://token.actions.example.test';
export const TEST_SUBJECT = 'https://github.com/acme/profiles/.github/workflows/sign.yml@refs/heads/main';

export interface KeylessFixture {
  tsa: TestTsa;
  /** trusted_root.json content. */
  trustedRoot: Record<string, unknown>;
  /** A fresh key and a certificate for it from the mock CA (URI SAN, issuer extensions). */
  issue(subject?: string, issuer?: string): Promise<{ key: TestKey; certPem: string }>;
  stop(): Promise<void>;
}

function derToPem(der: Buffer): string {
  const b64 = der.toString('base64').replace(/(.{64})/g, '$1\n');
  return `-----BEGIN CERTIFICATE-----\n${b64.replace(/\n$/, '')}\n-----END CERTIFICATE-----\n`;
}

/** Mock Fulcio-like CA + local TSA + a trusted root naming both (no tlogs, no ctlogs). */
export async function keylessFixture(): Promise<KeylessFixture> {
  const ca = await initializeCA(generateKeyPairSync('ec', { namedCurve: 'P-256' }));
  const tsa = await startTsaServer();
  const trustedRoot = {
    mediaType: 'application/vnd.dev.sigstore.trustedroot+json;version=0.1',
    tlogs: [],
    ctlogs: [],
    certificateAuthorities: [
      {
        subject: { organization: 'sigstore.mock', commonName: 'fulcio' },
        uri: 'https://fulcio.example.test',
        certChain: { certificates: [{ rawBytes: ca.rootCertificate.toString('base64') }] },
        validFor: { start: '2020-01-01T00:00:00Z' },
      },
    ],
    timestampAuthorities: [
      {
        subject: { organization: 'sigstore.mock', commonName: 'tsa' },
        uri: 'https://tsa.example.test',
        certChain: { certificates: [{ rawBytes: tsa.intCertificate.toString('base64') }, { rawBytes: tsa.rootCertificate.toString('base64') }] },
        validFor: { start: '2020-01-01T00:00:00Z' },
      },
    ],
  };
  return {
    tsa,
    trustedRoot,
    issue: async (subject = TEST_SUBJECT, issuer = TEST_ISSUER) => {
      const key = makeKey('p256');
      const der = await ca.issueCertificate({
        publicKey: key.publicKey.export({ type: 'spki', format: 'der' }),
        subjectAltName: subject,
        extensions: [
          { oid: '1.3.6.1.4.1.57264.1.8', value: issuer },
          { oid: '1.3.6.1.4.1.57264.1.1', value: issuer, legacy: true },
        ],
      });
      return { key, certPem: derToPem(der) };
    },
    stop: () => tsa.stop(),
  };
}

/** The same trusted root (same TSA) with its certificate authority replaced by an unrelated CA. */
export async function withOtherCa(trustedRoot: Record<string, unknown>): Promise<Record<string, unknown>> {
  const other = await initializeCA(generateKeyPairSync('ec', { namedCurve: 'P-256' }));
  const cas = trustedRoot.certificateAuthorities as Record<string, unknown>[];
  return { ...trustedRoot, certificateAuthorities: [{ ...cas[0], certChain: { certificates: [{ rawBytes: other.rootCertificate.toString('base64') }] } }] };
}

/** A rule's public-key signer for `k`. */
export function keyedSigner(name: string, k: TestKey): SignerSpec {
  return { name, kind: 'publicKey', key: createPublicKey(k.publicPem), pem: k.publicPem };
}

/** A rule's keyless signer trusting the fixture's root: TEST_ISSUER and subjects under acme/profiles (`over` replaces any field). */
export function keylessSigner(fx: Pick<KeylessFixture, 'trustedRoot'>, over: Partial<Extract<SignerSpec, { kind: 'keyless' }>> = {}): SignerSpec {
  return {
    name: 'ci',
    kind: 'keyless',
    trustedRoot: JSON.parse(JSON.stringify(fx.trustedRoot)) as unknown,
    issuer: TEST_ISSUER,
    subjectRegExp: /^https:\/\/github\.com\/acme\/profiles\/.+$/u,
    ...over,
  };
}
