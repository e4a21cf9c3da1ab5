// The pull floors: a lean client on a warm keep-alive undici pool doing only the round trips a
// pull cannot avoid, then the durability floor (one fsync of the blob, one of its directory).
// The conforming floor adds what the design asks of any implementation before it answers.

import { verify, type KeyObject } from 'node:crypto';
import { closeSync, fsyncSync, linkSync, openSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import type { Pool } from 'undici';
import { checkArtifactManifest } from '../../src/core/artifact.js';
import { sha256Digest } from '../../src/core/digest.js';
import { parseReference } from '../../src/core/reference.js';
import { decide } from '../../src/policy/decide.js';
import type { Policy } from '../../src/policy/types.js';
import { validateArtifactBytes } from '../../src/profiles/index.js';

async function get(pool: Pool, path: string, accept?: string): Promise<Buffer> {
  const r = await pool.request({ path, method: 'GET', ...(accept ? { headers: { accept } } : {}) });
  const b = Buffer.from(await r.body.arrayBuffer());
  if (r.statusCode !== 200) throw new Error(`floor GET ${path}: ${r.statusCode}`);
  return b;
}

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';

/** Writes `data` to the file at `path` (`flag` 'w' or 'wx'), flushed when `flushed`. */
function writeFile(path: string, data: Buffer, flag: 'w' | 'wx', flushed: boolean): void {
  const fd = openSync(path, flag);
  try {
    writeSync(fd, data);
    if (flushed) fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

function flushDir(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

function durable(dir: string, name: string, data: Buffer): void {
  writeFile(join(dir, name), data, 'w', true);
  flushDir(dir);
}

/** Unsigned floor: GET manifest, GET blob, write + fsync file + fsync directory. */
export async function floorPull(pool: Pool, repo: string, a: { digest: string; layerDigest: string }, dir: string, name: string): Promise<void> {
  await get(pool, `/v2/${repo}/manifests/${a.digest}`, OCI_MANIFEST);
  const data = await get(pool, `/v2/${repo}/blobs/${a.layerDigest}`);
  durable(dir, name, data);
}

/**
 * A floor given only a reference (`host/repo@sha256:…`), as a CRI server gets it: the layer
 * digest is read from the manifest, as any client must; `keyed` adds the signature chain of
 * floorSignedPull beside it.
 */
export async function floorPullRef(pool: Pool, ref: string, dir: string, name: string, keyed: boolean): Promise<void> {
  const at = ref.indexOf('@');
  const repo = ref.slice(ref.indexOf('/') + 1, at);
  const digest = ref.slice(at + 1);
  const artifact = (async () => {
    const manifest = JSON.parse((await get(pool, `/v2/${repo}/manifests/${digest}`, OCI_MANIFEST)).toString()) as { layers: { digest: string }[] };
    return get(pool, `/v2/${repo}/blobs/${manifest.layers[0]!.digest}`);
  })();
  const [data] = await Promise.all([artifact, keyed ? signatureChain(pool, repo, digest) : undefined]);
  durable(dir, name, data);
}

/** Tag-schema index → the bundle's manifest → the bundle blob (see floorSignedPull). */
async function signatureChain(pool: Pool, repo: string, digest: string): Promise<Buffer> {
  const index = JSON.parse((await get(pool, `/v2/${repo}/manifests/sha256-${digest.slice(7)}`, OCI_INDEX)).toString()) as { manifests: { digest: string }[] };
  const manifest = JSON.parse((await get(pool, `/v2/${repo}/manifests/${index.manifests[0]!.digest}`, OCI_MANIFEST)).toString()) as { layers: { digest: string }[] };
  return get(pool, `/v2/${repo}/blobs/${manifest.layers[0]!.digest}`);
}

/**
 * Keyed-signature floor on a registry without the referrers API. The minimum chain is three
 * serial round trips: the tag-schema index `sha256-<hex>` (asked at once, the digest is in the
 * reference) → the bundle's manifest → the bundle blob; the artifact's manifest → blob runs
 * beside it. Then the same writes and fsyncs.
 */
export async function floorSignedPull(pool: Pool, repo: string, a: { digest: string; layerDigest: string }, dir: string, name: string): Promise<void> {
  const artifact = (async () => {
    await get(pool, `/v2/${repo}/manifests/${a.digest}`, OCI_MANIFEST);
    return get(pool, `/v2/${repo}/blobs/${a.layerDigest}`);
  })();
  const [data] = await Promise.all([artifact, signatureChain(pool, repo, a.digest)]);
  durable(dir, name, data);
}

/** What the conforming floor refused, by `reason` (its tests branch on it). */
export class FloorRefusal extends Error {
  constructor(
    readonly reason: 'POLICY' | 'MANIFEST' | 'DIGEST' | 'SIZE' | 'NOT_SECCOMP' | 'PAYLOAD_TYPE' | 'SIGNATURE' | 'SUBJECT',
    message: string,
  ) {
    super(`conforming floor: ${message}`);
  }
}

/** A GET whose body must hash to `digest`, as any client of content-addressed data must check. */
async function getChecked(pool: Pool, path: string, digest: string, accept?: string): Promise<Buffer> {
  const body = await get(pool, path, accept);
  if (sha256Digest(body) !== digest) throw new FloorRefusal('DIGEST', `GET ${path}: the body does not match ${digest}`);
  return body;
}

/** Placed so that a crash leaves no half file under its name: temp file, flush, rename, directory flush. */
function atomicDurable(dir: string, name: string, data: Buffer): void {
  const tmp = join(dir, `.tmp-${name}`);
  writeFile(tmp, data, 'wx', true);
  renameSync(tmp, join(dir, name));
  flushDir(dir);
}

/** A provenance record beside the blob, unflushed and placed by link(2) where none is yet, as the store places a first record. */
function placeRecord(dir: string, name: string, record: object): void {
  const tmp = join(dir, `.tmp-${name}.record`);
  writeFile(tmp, Buffer.from(JSON.stringify(record)), 'wx', false);
  linkSync(tmp, join(dir, `${name}.record`));
  unlinkSync(tmp);
}

const PAE_TYPE = 'application/vnd.in-toto+json';

/**
 * The bundle's signature chain, checked: tag-schema index → bundle manifest (digest from the
 * index) → bundle blob (digest from the manifest); the DSSE signature verified against `key`
 * (pre-authentication encoding, DSSE v1) and the statement's subject matched to `digest`.
 */
async function verifiedSignature(pool: Pool, repo: string, digest: string, key: KeyObject): Promise<void> {
  const index = JSON.parse((await get(pool, `/v2/${repo}/manifests/sha256-${digest.slice(7)}`, OCI_INDEX)).toString()) as { manifests: { digest: string }[] };
  const manifestDigest = index.manifests[0]!.digest;
  const manifest = JSON.parse((await getChecked(pool, `/v2/${repo}/manifests/${manifestDigest}`, manifestDigest, OCI_MANIFEST)).toString()) as { layers: { digest: string }[] };
  const blobDigest = manifest.layers[0]!.digest;
  const bundle = JSON.parse((await getChecked(pool, `/v2/${repo}/blobs/${blobDigest}`, blobDigest)).toString()) as {
    dsseEnvelope: { payload: string; payloadType: string; signatures: { sig: string }[] };
  };
  const env = bundle.dsseEnvelope;
  const payload = Buffer.from(env.payload, 'base64');
  if (env.payloadType !== PAE_TYPE) throw new FloorRefusal('PAYLOAD_TYPE', `DSSE payload type ${env.payloadType}`);
  const pae = Buffer.concat([Buffer.from(`DSSEv1 ${PAE_TYPE.length} ${PAE_TYPE} ${payload.length} `), payload]);
  if (!verify('sha256', pae, key, Buffer.from(env.signatures[0]!.sig, 'base64'))) throw new FloorRefusal('SIGNATURE', 'the signature does not verify');
  const statement = JSON.parse(payload.toString()) as { subject: { digest: { sha256: string } }[] };
  if (statement.subject[0]?.digest.sha256 !== digest.slice(7)) throw new FloorRefusal('SUBJECT', 'the statement names another digest');
}

/** The bench's node policy: `<host>/bench` signed by the key in `publicKeyFile`, `<host>/open` unsigned. */
export function benchPolicyText(host: string, publicKeyFile: string): string {
  return [
    'apiVersion: spoke.dev/v1alpha1',
    'kind: NodeProfilePolicy',
    `signers:\n  platform: { publicKey: ${publicKeyFile} }`,
    'rules:',
    `  - scope: ${host}/bench\n    kinds: [seccomp]\n    signedBy: [platform]`,
    `  - scope: ${host}/open\n    kinds: [seccomp]\n    unsigned: true`,
    `insecure: [${host}]`,
  ].join('\n');
}

/** `step()`, its failure refused with `reason`: the floor's checks are spoke's pure functions, their errors renamed. */
function checked<T>(reason: FloorRefusal['reason'], step: () => T): T {
  try {
    return step();
  } catch (e) {
    throw new FloorRefusal(reason, (e as Error).message);
  }
}

/**
 * The conforming floor, given a reference as a CRI server gets it: the lean floor plus what the
 * design and the KEP ask of any implementation before it answers (docs/benchmarks.md). The
 * reference must be pinned by digest and the node's policy must allow it before any request;
 * every body is checked against its digest; the manifest is checked as an artifact manifest
 * (media types, one layer, sizes) and the profile decoded strictly and validated
 * (`ValidateArtifact`, kep6061 §library flow), with spoke's own pure functions, which no floor
 * can do without; the blob is placed atomically and a provenance record written beside it; when
 * the deciding rule wants a signature, the bundle's is verified with its signer's key, its chain
 * beside the artifact's. Nothing more: no store lookups, no single-flight, no deadline, no logging.
 */
export async function conformingPullRef(pool: Pool, ref: string, dir: string, name: string, policy: Policy): Promise<void> {
  const reference = checked('POLICY', () => parseReference(ref));
  const decision = decide(policy, reference, 'seccomp', 'default');
  if (!decision.allowed) throw new FloorRefusal('POLICY', decision.reason);
  // The bench's signed rules name one public-key signer.
  const signer = decision.signedBy[0];
  if (!decision.unsigned && signer?.type !== 'publicKey') throw new FloorRefusal('SIGNATURE', `${decision.rule.id} wants a signer the floor cannot check`);
  const { repository, digest } = reference;
  const artifact = (async () => {
    const manifestBytes = await getChecked(pool, `/v2/${repository}/manifests/${digest}`, digest, OCI_MANIFEST);
    const { layer } = checked('MANIFEST', () => checkArtifactManifest(manifestBytes, digest, 'seccomp', policy.limits.maxArtifactBytes));
    const blob = await getChecked(pool, `/v2/${repository}/blobs/${layer.digest}`, layer.digest);
    if (blob.length !== layer.size) throw new FloorRefusal('SIZE', 'the blob size differs from the manifest');
    checked('NOT_SECCOMP', () => validateArtifactBytes('seccomp', blob));
    return { blob, layer: layer.digest, manifestBytes };
  })();
  const [a] = await Promise.all([artifact, signer?.type === 'publicKey' ? verifiedSignature(pool, repository, digest, signer.publicKey) : undefined]);
  atomicDurable(dir, name, a.blob);
  placeRecord(dir, name, { digest, layerDigest: a.layer, manifest: a.manifestBytes.toString('base64'), references: [ref], rule: decision.rule.id, at: new Date().toISOString() });
}
