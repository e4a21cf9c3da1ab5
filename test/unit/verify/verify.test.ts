// Discovery, offline verification and signing against an in-memory registry: both formats,
// key types, keyless with the mock CA + a local TSA, and every refusal the issue lists.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { generateKeyPairSync, sign as cryptoSign, X509Certificate } from 'node:crypto';
import { initializeTSA } from '@sigstore/mock';
import { bundleToJSON, toMessageSignatureBundle, toDSSEBundle } from '@sigstore/bundle';
import { MEDIA_TYPE_OCI_MANIFEST } from '../../../src/core/constants.js';
import type { Digest } from '../../../src/core/digest.js';
import { SpokeError, type ErrorReason } from '../../../src/core/errors.js';
import { rejectedFor, rejectsWith } from '../../helpers/assert.js';
import { signArtifact } from '../../../src/publish/sign.js';
import { ANNOTATION_COSIGN_RFC3161, cosignSigTag, discoverSignatures, verifyArtifactSignature, type SignerSpec } from '../../../src/verify/index.js';
import { anchoredRegExp } from '../../../src/verify/trust.js';
import { FakeRegistry } from './fake-registry.js';
import { keyedSigner, keylessFixture, keylessSigner, makeKey, pae, sha256, TEST_SUBJECT, withOtherCa, type KeylessFixture } from '../../helpers/signing.js';

const repo = { registry: 'reg.example.test', repository: 'security/profiles/p' };

function artifact(n = 0): { digest: Digest; manifestBytes: Buffer } {
  const manifestBytes = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MEDIA_TYPE_OCI_MANIFEST,
      config: { mediaType: 'application/vnd.cncf.seccomp-profile.config.v1+json', digest: sha256('{}'), size: 2 },
      layers: [{ mediaType: 'application/json', digest: sha256(`p${n}`), size: 2 }],
    }),
  );
  return { digest: sha256(manifestBytes) as Digest, manifestBytes };
}

function setup(referrersApi = false, n = 0) {
  const reg = new FakeRegistry(referrersApi);
  const a = artifact(n);
  reg.putRaw(repo, a.digest, a.manifestBytes, MEDIA_TYPE_OCI_MANIFEST);
  return { reg, ...a };
}

describe('keyed signatures', () => {
  const k1 = makeKey('p256');
  const k2 = makeKey('p256');

  for (const format of ['bundle', 'cosign'] as const) {
    it(`${format}: sign then verify`, async () => {
      const { reg, digest, manifestBytes } = setup();
      const res = await signArtifact({ registry: reg, repo, digest, manifestBytes, key: k1.privatePem, format });
      assert.ok(format === 'bundle' ? res.bundleDigest : res.sigManifestDigest);
      const v = await verifyArtifactSignature({ registry: reg, repo, digest, manifestBytes, signers: [keyedSigner('platform', k1)] });
      assert.deepEqual(v, { signer: 'platform', format });
    });

    it(`${format}: another key fails`, async () => {
      const { reg, digest, manifestBytes } = setup();
      await signArtifact({ registry: reg, repo, digest, manifestBytes, key: k2.privateKey, format });
      rejectedFor(await rejectsWith(verifyArtifactSignature({ registry: reg, repo, digest, manifestBytes, signers: [keyedSigner('platform', k1)] }), { code: 'SignatureValidationFailed', reason: 'SIGNATURE_INVALID' }), 'SIGNATURE_INVALID');
    });
  }

  it('unsigned fails as not signed', async () => {
    const { reg, digest, manifestBytes } = setup();
    const e = await rejectsWith(verifyArtifactSignature({ registry: reg, repo, digest, manifestBytes, signers: [keyedSigner('platform', k1)] }), { code: 'SignatureValidationFailed', reason: 'NOT_SIGNED' });
    assert.equal(e.context.reference, `${repo.registry}/${repo.repository}@${digest}`);
  });

  it('both formats on one artifact; two signers, either accepted', async () => {
    const { reg, digest, manifestBytes } = setup();
    await signArtifact({ registry: reg, repo, digest, manifestBytes, key: k2.privatePem, format: 'both' });
    const v = await verifyArtifactSignature({ registry: reg, repo, digest, manifestBytes, signers: [keyedSigner('platform', k1), keyedSigner('ci', k2)] });
    assert.equal(v.signer, 'ci');
    assert.equal(v.format, 'bundle');
    // Both of k2's signatures (bundle, cosign) are found; neither verifies with k1.
    const e = await rejectsWith(verifyArtifactSignature({ registry: reg, repo, digest, manifestBytes, signers: [keyedSigner('platform', k1)] }), { code: 'SignatureValidationFailed', reason: 'SIGNATURE_INVALID' });
    assert.deepEqual(e.context.rejections, ['SIGNATURE_INVALID', 'SIGNATURE_INVALID'], e.message);
  });

  it('keys: P-384, Ed25519, RSA-2048, SEC1 PEM; bundle and cosign', async () => {
    for (const kind of ['p384', 'ed25519', 'rsa'] as const) {
      const k = makeKey(kind);
      for (const format of ['bundle', 'cosign'] as const) {
        const { reg, digest, manifestBytes } = setup();
        await signArtifact({ registry: reg, repo, digest, manifestBytes, key: k.privatePem, format });
        const v = await verifyArtifactSignature({ registry: reg, repo, digest, manifestBytes, signers: [keyedSigner(kind, k)] });
        assert.deepEqual(v, { signer: kind, format }, `${kind} ${format}`);
      }
    }
    const { reg, digest, manifestBytes } = setup();
    await signArtifact({ registry: reg, repo, digest, manifestBytes, key: k1.sec1Pem!, format: 'bundle' });
    assert.equal((await verifyArtifactSignature({ registry: reg, repo, digest, manifestBytes, signers: [keyedSigner('p', k1)] })).signer, 'p');
  });

  it('a signing key that is not a private PEM key, or too weak, is refused as KEY_INVALID', async () => {
    const { reg, digest, manifestBytes } = setup();
    const weak = generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey;
    for (const key of ['not a key', k1.publicKey, weak]) {
      await rejectsWith(signArtifact({ registry: reg, repo, digest, manifestBytes, key, format: 'bundle' }), { code: 'InvalidArgument', reason: 'KEY_INVALID' });
    }
    await rejectsWith(signArtifact({ registry: reg, repo, digest, manifestBytes, key: k1.privatePem, cert: 'not a certificate', timestampUrl: 'https://tsa.example.test', format: 'bundle' }), { code: 'InvalidArgument', reason: 'CERTIFICATE_INVALID' });
  });

  it('bundle: tag-schema index keeps existing entries; referrers API used when present', async () => {
    const { reg, digest, manifestBytes } = setup();
    const other = { mediaType: MEDIA_TYPE_OCI_MANIFEST, digest: sha256('sbom'), size: 10, artifactType: 'application/spdx+json' };
    reg.putRaw(repo, `sha256-${digest.slice(7)}`, Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: [other] })), 'application/vnd.oci.image.index.v1+json');
    const r1 = await signArtifact({ registry: reg, repo, digest, manifestBytes, key: k1.privatePem, format: 'bundle' });
    const r2 = await signArtifact({ registry: reg, repo, digest, manifestBytes, key: k2.privatePem, format: 'bundle' });
    assert.equal(r1.referrers, 'tag-schema');
    const index = JSON.parse(reg.tagged(repo, `sha256-${digest.slice(7)}`)!.toString()) as { manifests: { digest: string }[] };
    assert.deepEqual(index.manifests.map((m) => m.digest), [other.digest, r1.bundleDigest, r2.bundleDigest]);
    const found = await discoverSignatures(reg, repo, digest);
    assert.equal(found.referrersSource, 'tag-schema');
    assert.equal(found.bundles.length, 2);

    const api = setup(true);
    const r3 = await signArtifact({ registry: api.reg, repo, digest: api.digest, manifestBytes: api.manifestBytes, key: k1.privatePem, format: 'bundle' });
    assert.equal(r3.referrers, 'referrers-api');
    assert.equal(api.reg.tagged(repo, `sha256-${api.digest.slice(7)}`), undefined);
    const v = await verifyArtifactSignature({ registry: api.reg, repo, digest: api.digest, manifestBytes: api.manifestBytes, signers: [keyedSigner('platform', k1)] });
    assert.equal(v.format, 'bundle');
  });

  it('cosign: appending keeps earlier layers; re-signing with the same key is idempotent', async () => {
    const { reg, digest, manifestBytes } = setup();
    await signArtifact({ registry: reg, repo, digest, manifestBytes, key: k1.privatePem, format: 'cosign' });
    await signArtifact({ registry: reg, repo, digest, manifestBytes, key: k2.privatePem, format: 'cosign' });
    await signArtifact({ registry: reg, repo, digest, manifestBytes, key: k2.privatePem, format: 'cosign' });
    const sig = JSON.parse(reg.tagged(repo, `sha256-${digest.slice(7)}.sig`)!.toString()) as { layers: unknown[] };
    assert.equal(sig.layers.length, 2);
    assert.equal((await verifyArtifactSignature({ registry: reg, repo, digest, manifestBytes, signers: [keyedSigner('one', k1)] })).signer, 'one');
    assert.equal((await verifyArtifactSignature({ registry: reg, repo, digest, manifestBytes, signers: [keyedSigner('two', k2)] })).signer, 'two');
  });

  it('a signature for another digest copied onto this digest fails (both formats)', async () => {
    const a = setup();
    const b = artifact(1);
    a.reg.putRaw(repo, b.digest, b.manifestBytes, MEDIA_TYPE_OCI_MANIFEST);
    await signArtifact({ registry: a.reg, repo, digest: b.digest, manifestBytes: b.manifestBytes, key: k1.privatePem, format: 'both' });
    // copy B's .sig manifest and tag-schema index onto A's tags
    for (const suffix of ['', '.sig']) a.reg.putRaw(repo, `sha256-${a.digest.slice(7)}${suffix}`, a.reg.tagged(repo, `sha256-${b.digest.slice(7)}${suffix}`)!, MEDIA_TYPE_OCI_MANIFEST);
    const e = await rejectsWith(verifyArtifactSignature({ registry: a.reg, repo, digest: a.digest, manifestBytes: a.manifestBytes, signers: [keyedSigner('platform', k1)] }), { code: 'SignatureValidationFailed' });
    assert.ok(e.context.rejections && (e.context.rejections as ErrorReason[]).length > 0, e.message);
    assert.deepEqual(new Set(e.context.rejections as ErrorReason[]), new Set(['SUBJECT_MISMATCH']), e.message);
  });

  it('tampered bundle blob fails (digest check), the key hint is ignored', async () => {
    const { reg, digest, manifestBytes } = setup();
    const r = await signArtifact({ registry: reg, repo, digest, manifestBytes, key: k1.privatePem, format: 'bundle' });
    reg.tamperBlob(repo, r.bundleBlobDigest!, Buffer.from('{"x":1}'));
    rejectedFor(await rejectsWith(verifyArtifactSignature({ registry: reg, repo, digest, manifestBytes, signers: [keyedSigner('platform', k1)] }), { code: 'SignatureValidationFailed', reason: 'SIGNATURE_INVALID' }), 'DIGEST_MISMATCH');
  });

  it('attestation (right key, other predicate type) as the only referrer is refused as unsigned', async () => {
    const { reg, digest, manifestBytes } = setup(true);
    const st = Buffer.from(JSON.stringify({ _type: 'https://in-toto.io/Statement/v1', subject: [{ name: 'x', digest: { sha256: digest.slice(7) } }], predicateType: 'https://slsa.dev/provenance/v1', predicate: {} }));
    const sig = cryptoSign('sha256', pae('application/vnd.in-toto+json', st), k1.privateKey);
    const bundle = bundleToJSON(toDSSEBundle({ artifact: st, artifactType: 'application/vnd.in-toto+json', signature: sig, keyHint: 'k', certificateChain: false }));
    await attachRawBundle(reg, digest, manifestBytes, Buffer.from(JSON.stringify(bundle)), 'https://sigstore.dev/cosign/sign/v1');
    rejectedFor(await rejectsWith(verifyArtifactSignature({ registry: reg, repo, digest, manifestBytes, signers: [keyedSigner('platform', k1)] }), { code: 'SignatureValidationFailed', reason: 'NOT_SIGNED' }), 'NOT_A_SIGNATURE');
  });

  it('message-signature bundles over the manifest bytes are accepted; over other bytes refused; v0.2 refused', async () => {
    const { reg, digest, manifestBytes } = setup(true);
    const mk = (bytes: Buffer, chain: boolean) =>
      Buffer.from(JSON.stringify(bundleToJSON(toMessageSignatureBundle({ digest: Buffer.from(sha256(bytes).slice(7), 'hex'), signature: cryptoSign('sha256', bytes, k1.privateKey), keyHint: 'x', certificateChain: chain }))));
    await attachRawBundle(reg, digest, manifestBytes, mk(Buffer.from('other'), false));
    await attachRawBundle(reg, digest, manifestBytes, mk(manifestBytes, true)); // v0.2 media type
    rejectedFor(await rejectsWith(verifyArtifactSignature({ registry: reg, repo, digest, manifestBytes, signers: [keyedSigner('platform', k1)] }), { code: 'SignatureValidationFailed', reason: 'SIGNATURE_INVALID' }), 'SUBJECT_MISMATCH');
    await attachRawBundle(reg, digest, manifestBytes, mk(manifestBytes, false));
    assert.deepEqual(await verifyArtifactSignature({ registry: reg, repo, digest, manifestBytes, signers: [keyedSigner('platform', k1)] }), { signer: 'platform', format: 'bundle' });
  });

  it('a bundle carrying both a message signature and a DSSE envelope is refused: the two fields are one protobuf oneof, and verifiers differ on which they read', async () => {
    const { reg, digest, manifestBytes } = setup(true);
    const message = bundleToJSON(toMessageSignatureBundle({ digest: Buffer.from(digest.slice(7), 'hex'), signature: cryptoSign('sha256', manifestBytes, k1.privateKey), keyHint: 'x', certificateChain: false })) as Record<string, unknown>;
    const st = Buffer.from(JSON.stringify({ _type: 'https://in-toto.io/Statement/v1', subject: [{ name: 'x', digest: { sha256: sha256('other').slice(7) } }], predicateType: 'https://sigstore.dev/cosign/sign/v1', predicate: {} }));
    const dsse = bundleToJSON(toDSSEBundle({ artifact: st, artifactType: 'application/vnd.in-toto+json', signature: cryptoSign('sha256', pae('application/vnd.in-toto+json', st), k1.privateKey), keyHint: 'x', certificateChain: false })) as Record<string, unknown>;
    await attachRawBundle(reg, digest, manifestBytes, Buffer.from(JSON.stringify({ ...message, dsseEnvelope: dsse.dsseEnvelope })));
    rejectedFor(await rejectsWith(verifyArtifactSignature({ registry: reg, repo, digest, manifestBytes, signers: [keyedSigner('platform', k1)] }), { code: 'SignatureValidationFailed' }), 'MANIFEST_INVALID');
  });

  it('DSSE statement naming another digest (referrer subject ours) is refused; any key hint works', async () => {
    const { reg, digest, manifestBytes } = setup(true);
    const mk = (subjectHex: string) => {
      const st = Buffer.from(JSON.stringify({ _type: 'https://in-toto.io/Statement/v1', subject: [{ name: 'x', digest: { sha256: subjectHex } }], predicateType: 'https://sigstore.dev/cosign/sign/v1', predicate: {} }));
      const sig = cryptoSign('sha256', pae('application/vnd.in-toto+json', st), k1.privateKey);
      return Buffer.from(JSON.stringify(bundleToJSON(toDSSEBundle({ artifact: st, artifactType: 'application/vnd.in-toto+json', signature: sig, keyHint: 'someone-else', certificateChain: false }))));
    };
    await attachRawBundle(reg, digest, manifestBytes, mk(sha256('other').slice(7)));
    rejectedFor(await rejectsWith(verifyArtifactSignature({ registry: reg, repo, digest, manifestBytes, signers: [keyedSigner('platform', k1)] }), { code: 'SignatureValidationFailed', reason: 'SIGNATURE_INVALID' }), 'SUBJECT_MISMATCH');
    await attachRawBundle(reg, digest, manifestBytes, mk(digest.slice(7)));
    assert.equal((await verifyArtifactSignature({ registry: reg, repo, digest, manifestBytes, signers: [keyedSigner('platform', k1)] })).signer, 'platform');
  });

  it('a garbage tag-schema index is noted, and a cosign signature still counts', async () => {
    const { reg, digest, manifestBytes } = setup();
    reg.putRaw(repo, `sha256-${digest.slice(7)}`, Buffer.from('{"schemaVersion":2,"manifests":[{"digest":"sha256:zz"}], "x":1, "x":2}'), 'application/vnd.oci.image.index.v1+json');
    await signArtifact({ registry: reg, repo, digest, manifestBytes, key: k1.privatePem, format: 'cosign' });
    assert.equal((await verifyArtifactSignature({ registry: reg, repo, digest, manifestBytes, signers: [keyedSigner('platform', k1)] })).format, 'cosign');
    const found = await discoverSignatures(reg, repo, digest);
    assert.equal(found.bundles.length, 0);
    assert.match(found.notes.join('\n'), /duplicate/);
  });

  it('malformed entries by the thousand in the tag-schema index and the cosign manifest keep a few notes, not one each', async () => {
    const { reg, digest } = setup();
    const zeros = (n: number) => Array.from({ length: n }, () => 0);
    reg.putRaw(repo, `sha256-${digest.slice(7)}`, Buffer.from(JSON.stringify({ schemaVersion: 2, manifests: zeros(20_000) })), 'application/vnd.oci.image.index.v1+json');
    reg.putRaw(repo, cosignSigTag(digest), Buffer.from(JSON.stringify({ schemaVersion: 2, layers: zeros(20_000) })), MEDIA_TYPE_OCI_MANIFEST);
    const found = await discoverSignatures(reg, repo, digest);
    assert.equal(found.bundles.length, 0);
    assert.equal(found.cosign?.layers.length, 0);
    assert.ok(found.notes.length <= 10, `${found.notes.length} notes`);
    assert.match(found.notes.join('\n'), /manifests\[0\] is not a sha256 descriptor/);
  });

  it('a tag-schema index is read up to 256 KiB and a .sig manifest up to 1 MiB: a longer one is noted and skipped, as its strict decoding holds the event loop (4 MiB took 0.35 s)', async () => {
    const filler = (n: number) => Array.from({ length: n }, (_, i) => ({ mediaType: MEDIA_TYPE_OCI_MANIFEST, digest: sha256(`sbom-${i}`), size: 100, artifactType: 'application/spdx+json' }));
    for (const [fillers, signed] of [[1000, true], [2000, false]] as const) {
      const { reg, digest, manifestBytes } = setup();
      await signArtifact({ registry: reg, repo, digest, manifestBytes, key: k1.privatePem, format: 'bundle' });
      const tag = `sha256-${digest.slice(7)}`;
      const index = JSON.parse(reg.tagged(repo, tag)!.toString()) as { manifests: unknown[] };
      index.manifests.push(...filler(fillers));
      const bytes = Buffer.from(JSON.stringify(index));
      reg.putRaw(repo, tag, bytes, 'application/vnd.oci.image.index.v1+json');
      const verifying = verifyArtifactSignature({ registry: reg, repo, digest, manifestBytes, signers: [keyedSigner('platform', k1)] });
      if (signed) {
        assert.ok(bytes.length < 256 * 1024, `${bytes.length}`);
        assert.equal((await verifying).format, 'bundle');
      } else {
        assert.ok(bytes.length > 256 * 1024, `${bytes.length}`);
        await rejectsWith(verifying, { code: 'SignatureValidationFailed', reason: 'NOT_SIGNED' });
      }
    }
    const { reg, digest, manifestBytes } = setup();
    await signArtifact({ registry: reg, repo, digest, manifestBytes, key: k1.privatePem, format: 'cosign' });
    const sig = JSON.parse(reg.tagged(repo, cosignSigTag(digest))!.toString()) as { layers: unknown[] };
    sig.layers.push(...filler(8000));
    reg.putRaw(repo, cosignSigTag(digest), Buffer.from(JSON.stringify(sig)), MEDIA_TYPE_OCI_MANIFEST);
    await rejectsWith(verifyArtifactSignature({ registry: reg, repo, digest, manifestBytes, signers: [keyedSigner('platform', k1)] }), { code: 'SignatureValidationFailed', reason: 'NOT_SIGNED' });
  });

  it('spoke sign never grows a tag-schema index past what a node reads: it refuses, and the signatures already listed still verify', async () => {
    const { reg, digest, manifestBytes } = setup();
    await signArtifact({ registry: reg, repo, digest, manifestBytes, key: k1.privatePem, format: 'bundle' });
    const tag = `sha256-${digest.slice(7)}`;
    const index = JSON.parse(reg.tagged(repo, tag)!.toString()) as { manifests: unknown[] };
    const filler = { mediaType: MEDIA_TYPE_OCI_MANIFEST, digest: sha256('sbom'), size: 100, artifactType: 'application/spdx+json', annotations: { note: 'x'.repeat(200) } };
    // Just under the cap: the index is readable, and one more entry takes it over.
    while (Buffer.byteLength(JSON.stringify(index)) < 256 * 1024 - 700) index.manifests.push(filler);
    reg.putRaw(repo, tag, Buffer.from(JSON.stringify(index)), 'application/vnd.oci.image.index.v1+json');
    await rejectsWith(signArtifact({ registry: reg, repo, digest, manifestBytes, key: k2.privatePem, format: 'bundle' }), { code: 'FailedPrecondition', reason: 'LIMIT_EXCEEDED' });
    assert.equal((await verifyArtifactSignature({ registry: reg, repo, digest, manifestBytes, signers: [keyedSigner('platform', k1)] })).format, 'bundle');
  });

  it('a .sig manifest of 64 layers the size keyless signing writes (certificate, chain, log bundle: ~8.4 KB each) is read', async () => {
    const { reg, digest, manifestBytes } = setup();
    await signArtifact({ registry: reg, repo, digest, manifestBytes, key: k1.privatePem, format: 'cosign' });
    const sig = JSON.parse(reg.tagged(repo, cosignSigTag(digest))!.toString()) as { layers: unknown[] };
    const keyless = (i: number) => ({ mediaType: 'application/vnd.dev.cosign.simplesigning.v1+json', digest: sha256(`other-${i}`), size: 250, annotations: { 'dev.sigstore.cosign/certificate': 'c'.repeat(2800), 'dev.sigstore.cosign/chain': 'c'.repeat(2800), 'dev.sigstore.cosign/bundle': 'b'.repeat(2700), 'dev.cosignproject.cosign/signature': 's'.repeat(96) } });
    sig.layers.unshift(...Array.from({ length: 63 }, (_, i) => keyless(i)));
    const bytes = Buffer.from(JSON.stringify(sig));
    assert.ok(bytes.length > 512 * 1024, `${bytes.length}`);
    reg.putRaw(repo, cosignSigTag(digest), bytes, MEDIA_TYPE_OCI_MANIFEST);
    assert.equal((await verifyArtifactSignature({ registry: reg, repo, digest, manifestBytes, signers: [keyedSigner('platform', k1)] })).format, 'cosign');
  });

  it('spoke sign asks the referrers API only whether it exists: a listing longer than a node reads does not fail it', async () => {
    // A registry with the API that sends no OCI-Subject header, and lists many referrers.
    const { reg, digest, manifestBytes } = setup(true);
    const putManifest = reg.putManifest.bind(reg);
    reg.putManifest = async (...args) => ({ ...(await putManifest(...args)), subjectHeader: undefined });
    reg.getReferrers = async (_repo, _digest, opts) => {
      if (opts.maxBytes < 300 * 1024) throw new SpokeError('RegistryUnavailable', 'referrers listing over the cap', {}, { reason: 'SIZE_LIMIT' });
      return Buffer.from(JSON.stringify({ schemaVersion: 2, manifests: [] }));
    };
    const r = await signArtifact({ registry: reg, repo, digest, manifestBytes, key: k1.privatePem, format: 'bundle' });
    assert.equal(r.referrers, 'referrers-api');
  });

  it('a bundle that verifies is accepted without waiting for the cosign tag lookup', { timeout: 10_000 }, async () => {
    const { reg, digest, manifestBytes } = setup();
    await signArtifact({ registry: reg, repo, digest, manifestBytes, key: k1.privatePem, format: 'bundle' });
    let release = () => {};
    // The `.sig` tag answers only after the verdict: a verifier that waited for it would hang (test timeout).
    reg.hold = (ref) => (ref.endsWith('.sig') ? new Promise<void>((r) => (release = r)) : undefined);
    try {
      assert.deepEqual(await verifyArtifactSignature({ registry: reg, repo, digest, manifestBytes, signers: [keyedSigner('platform', k1)] }), { signer: 'platform', format: 'bundle' });
    } finally {
      release();
    }
  });

  it('the bundle is fetched while the manifest bytes are still in flight; they are checked before any verdict', { timeout: 10_000 }, async () => {
    const { reg, digest, manifestBytes } = setup();
    await signArtifact({ registry: reg, repo, digest, manifestBytes, key: k1.privatePem, format: 'bundle' });
    const verifyWith = (settle: (resolve: (b: Buffer) => void, reject: (e: Error) => void) => void) => {
      let resolve!: (b: Buffer) => void;
      let reject!: (e: Error) => void;
      const pending = new Promise<Buffer>((res, rej) => ((resolve = res), (reject = rej)));
      // The manifest arrives only once the bundle's blob has been asked for: a verifier that
      // waited for it first would hang (test timeout).
      reg.fail = (op) => {
        if (op === 'getBlob') settle(resolve, reject);
        return undefined;
      };
      return verifyArtifactSignature({ registry: reg, repo, digest, manifestBytes: pending, signers: [keyedSigner('platform', k1)] });
    };
    assert.deepEqual(await verifyWith((resolve) => resolve(manifestBytes)), { signer: 'platform', format: 'bundle' });
    // Bytes that are not the digest's refuse the whole verification, though the bundle was fetched.
    await rejectsWith(verifyWith((resolve) => resolve(Buffer.concat([manifestBytes, Buffer.from(' ')]))), { code: 'SignatureValidationFailed', reason: 'DIGEST_MISMATCH' });
    // A manifest that fails is the verification's failure, not one candidate's.
    await rejectsWith(verifyWith((_, reject) => reject(new SpokeError('RegistryUnavailable', 'HTTP 503', {}, { reason: 'REGISTRY_ERROR' }))), { code: 'RegistryUnavailable', reason: 'REGISTRY_ERROR' });
  });

  it('a bundle that verifies makes no cosign tag lookup; a cosign signature is looked up once no bundle verified', async () => {
    const { reg, digest, manifestBytes } = setup();
    await signArtifact({ registry: reg, repo, digest, manifestBytes, key: k1.privatePem, format: 'bundle' });
    await signArtifact({ registry: reg, repo, digest, manifestBytes, key: k2.privatePem, format: 'cosign' });
    const sigLookups = () => reg.log.filter((l) => l.endsWith('.sig')).length;
    const before = sigLookups();
    assert.equal((await verifyArtifactSignature({ registry: reg, repo, digest, manifestBytes, signers: [keyedSigner('platform', k1)] })).format, 'bundle');
    assert.equal(sigLookups(), before);
    assert.equal((await verifyArtifactSignature({ registry: reg, repo, digest, manifestBytes, signers: [keyedSigner('ci', k2)] })).format, 'cosign');
    assert.equal(sigLookups(), before + 1);
  });

  it('registry 5xx during discovery → RegistryUnavailable, never unsigned', async () => {
    for (const op of ['getReferrers', 'getManifest'] as const) {
      const { reg, digest, manifestBytes } = setup();
      reg.fail = (o) => (o === op ? new SpokeError('RegistryUnavailable', 'HTTP 503') : undefined);
      await rejectsWith(verifyArtifactSignature({ registry: reg, repo, digest, manifestBytes, signers: [keyedSigner('platform', k1)] }), { code: 'RegistryUnavailable' });
    }
    // a network error that is not a SpokeError is still RegistryUnavailable
    const { reg, digest, manifestBytes } = setup();
    await signArtifact({ registry: reg, repo, digest, manifestBytes, key: k2.privatePem, format: 'cosign' });
    reg.fail = (o) => (o === 'getBlob' ? new TypeError('fetch failed') : undefined);
    await rejectsWith(verifyArtifactSignature({ registry: reg, repo, digest, manifestBytes, signers: [keyedSigner('platform', k1)] }), { code: 'RegistryUnavailable' });
  });

  it('manifest bytes must match the digest; empty signer list refused', async () => {
    const { reg, digest, manifestBytes } = setup();
    await rejectsWith(verifyArtifactSignature({ registry: reg, repo, digest, manifestBytes: Buffer.concat([manifestBytes, Buffer.from(' ')]), signers: [keyedSigner('p', k1)] }), { code: 'SignatureValidationFailed', reason: 'DIGEST_MISMATCH' });
    await rejectsWith(verifyArtifactSignature({ registry: reg, repo, digest, manifestBytes, signers: [] }), { code: 'SignatureValidationFailed', reason: 'SIGNER_UNAVAILABLE' });
  });

});

async function attachRawBundle(reg: FakeRegistry, digest: Digest, manifestBytes: Buffer, bundle: Buffer, predicateAnnotation?: string): Promise<void> {
  const blob = await reg.putBlob(repo, bundle);
  const m = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MEDIA_TYPE_OCI_MANIFEST,
      artifactType: 'application/vnd.dev.sigstore.bundle.v0.3+json',
      config: { mediaType: 'application/vnd.oci.empty.v1+json', digest: sha256('{}'), size: 2 },
      layers: [{ mediaType: 'application/vnd.dev.sigstore.bundle.v0.3+json', digest: blob, size: bundle.length }],
      subject: { mediaType: MEDIA_TYPE_OCI_MANIFEST, digest, size: manifestBytes.length },
      ...(predicateAnnotation ? { annotations: { 'dev.sigstore.bundle.predicateType': predicateAnnotation } } : {}),
    }),
  );
  await reg.putManifest(repo, sha256(m), m, MEDIA_TYPE_OCI_MANIFEST);
}

describe('keyless signatures (mock CA, local RFC 3161 TSA)', () => {
  let fx: KeylessFixture;
  before(async () => {
    fx = await keylessFixture();
  });
  after(async () => {
    await fx?.stop();
  });

  const keyless = (over: Partial<Extract<SignerSpec, { kind: 'keyless' }>> = {}) => keylessSigner(fx, over);

  for (const format of ['bundle', 'cosign'] as const) {
    it(`${format}: cert + timestamp verifies; identity reported`, async () => {
      const { reg, digest, manifestBytes } = setup();
      const { key, certPem } = await fx.issue();
      await signArtifact({ registry: reg, repo, digest, manifestBytes, key: key.privatePem, cert: certPem, chain: certPem, timestampUrl: fx.tsa.url, format });
      const v = await verifyArtifactSignature({ registry: reg, repo, digest, manifestBytes, signers: [keyless()] });
      assert.deepEqual(v, { signer: 'ci', format, identity: TEST_SUBJECT });
      assert.deepEqual(await verifyArtifactSignature({ registry: reg, repo, digest, manifestBytes, signers: [keyless({ subjectRegExp: undefined, subject: TEST_SUBJECT })] }), v);
    });
  }

  it('cosign: signing again with a timestamp adds one where the same key\'s earlier signature had none, instead of taking that one as enough', async () => {
    const { reg, digest, manifestBytes } = setup();
    const key = makeKey();
    await signArtifact({ registry: reg, repo, digest, manifestBytes, key: key.privatePem, format: 'cosign' });
    await signArtifact({ registry: reg, repo, digest, manifestBytes, key: key.privatePem, timestampUrl: fx.tsa.url, format: 'cosign' });
    const tag = await reg.getManifestIfExists(repo, cosignSigTag(digest), [MEDIA_TYPE_OCI_MANIFEST], { maxBytes: 65536 });
    const layers = (JSON.parse(tag!.bytes.toString()) as { layers: { annotations: Record<string, string> }[] }).layers;
    assert.equal(layers.filter((l) => l.annotations[ANNOTATION_COSIGN_RFC3161] !== undefined).length, 1);
    // Signed again with the timestamp: that one is enough now (idempotent).
    await signArtifact({ registry: reg, repo, digest, manifestBytes, key: key.privatePem, timestampUrl: fx.tsa.url, format: 'cosign' });
    const again = await reg.getManifestIfExists(repo, cosignSigTag(digest), [MEDIA_TYPE_OCI_MANIFEST], { maxBytes: 65536 });
    assert.equal((JSON.parse(again!.bytes.toString()) as { layers: unknown[] }).layers.length, layers.length);
  });

  it('wrong subject, unanchored-looking subject, wrong issuer, untrusted CA → refused', async () => {
    const { reg, digest, manifestBytes } = setup();
    const { key, certPem } = await fx.issue();
    await signArtifact({ registry: reg, repo, digest, manifestBytes, key: key.privatePem, cert: certPem, timestampUrl: fx.tsa.url, format: 'both' });
    const run = (s: SignerSpec) => verifyArtifactSignature({ registry: reg, repo, digest, manifestBytes, signers: [s] });
    rejectedFor(await rejectsWith(run(keyless({ subjectRegExp: '^https://github\\.com/evil/.*$' })), { code: 'SignatureValidationFailed', reason: 'SIGNATURE_INVALID' }), 'IDENTITY_MISMATCH');
    // a prefix as a string pattern is anchored by the verifier: no match
    rejectedFor(await rejectsWith(run(keyless({ subjectRegExp: 'https://github.com/acme' })), { code: 'SignatureValidationFailed', reason: 'SIGNATURE_INVALID' }), 'IDENTITY_MISMATCH');
    rejectedFor(await rejectsWith(run(keyless({ subjectRegExp: undefined, subject: 'https://github.com/acme' })), { code: 'SignatureValidationFailed', reason: 'SIGNATURE_INVALID' }), 'IDENTITY_MISMATCH');
    rejectedFor(await rejectsWith(run(keyless({ issuer: 'https://accounts.example.test' })), { code: 'SignatureValidationFailed', reason: 'SIGNATURE_INVALID' }), 'IDENTITY_MISMATCH');
    rejectedFor(await rejectsWith(run(keyless({ trustedRoot: await withOtherCa(fx.trustedRoot) })), { code: 'SignatureValidationFailed', reason: 'SIGNATURE_INVALID' }), 'CERTIFICATE_INVALID');
  });

  /** A DSSE bundle over an in-toto statement naming `digest`, signed with a fresh certificate of the mock CA, with no timestamp or log entry. */
  async function certificateBundleWithoutTimestamp(digest: string) {
    const { key, certPem } = await fx.issue();
    const st = Buffer.from(JSON.stringify({ _type: 'https://in-toto.io/Statement/v1', subject: [{ name: 'x', digest: { sha256: digest.slice(7) } }], predicateType: 'https://sigstore.dev/cosign/sign/v1', predicate: {} }));
    const sig = cryptoSign('sha256', pae('application/vnd.in-toto+json', st), key.privateKey);
    const der = Buffer.from(certPem.replace(/-----[^-]+-----|\s/g, ''), 'base64');
    return { key, bundle: bundleToJSON(toDSSEBundle({ artifact: st, artifactType: 'application/vnd.in-toto+json', signature: sig, certificate: der, certificateChain: false })) };
  }

  it('certificate bundle without timestamp → refused, not a crash (and a keyed signer does not accept it)', async () => {
    const { reg, digest, manifestBytes } = setup(true);
    const { key, bundle } = await certificateBundleWithoutTimestamp(digest);
    await attachRawBundle(reg, digest, manifestBytes, Buffer.from(JSON.stringify(bundle)));
    rejectedFor(await rejectsWith(verifyArtifactSignature({ registry: reg, repo, digest, manifestBytes, signers: [keyless()] }), { code: 'SignatureValidationFailed', reason: 'SIGNATURE_INVALID' }), 'TIMESTAMP_INVALID');
    rejectedFor(await rejectsWith(verifyArtifactSignature({ registry: reg, repo, digest, manifestBytes, signers: [keyedSigner('k', key)] }), { code: 'SignatureValidationFailed', reason: 'SIGNATURE_INVALID' }), 'SIGNER_MISMATCH');
  });

  it('a bundle with more than four transparency-log entries is refused before any is read (sigstore-js compares them pairwise)', async () => {
    const { reg, digest, manifestBytes } = setup(true);
    const { bundle } = (await certificateBundleWithoutTimestamp(digest)) as { bundle: { verificationMaterial: { tlogEntries: unknown[] } } };
    const entry = (i: number) => ({
      logIndex: String(i),
      logId: { keyId: Buffer.from('log').toString('base64') },
      kindVersion: { kind: 'dsse', version: '0.0.1' },
      integratedTime: String(1_700_000_000 + i),
      inclusionPromise: { signedEntryTimestamp: Buffer.from('set').toString('base64') },
      inclusionProof: { logIndex: String(i), rootHash: Buffer.from('root').toString('base64'), treeSize: '1', hashes: [], checkpoint: { envelope: 'c' } },
      canonicalizedBody: Buffer.from('{}').toString('base64'),
    });
    bundle.verificationMaterial.tlogEntries = [0, 1, 2, 3, 4].map(entry);
    await attachRawBundle(reg, digest, manifestBytes, Buffer.from(JSON.stringify(bundle)));
    const err = await rejectsWith(verifyArtifactSignature({ registry: reg, repo, digest, manifestBytes, signers: [keyless()] }), { code: 'SignatureValidationFailed', reason: 'SIGNATURE_INVALID' });
    rejectedFor(err, 'MANIFEST_INVALID');
    assert.match(err.message, /5 transparency-log entries/);
  });

  it('a timestamp sigstore-js cannot read is a refusal (SignatureValidationFailed), never a registry error', async () => {
    const { reg, digest, manifestBytes } = setup();
    const { key, certPem } = await fx.issue();
    const t = new Date();
    t.setMilliseconds(500); // genTime "….5Z": the mock trims zeros, sigstore-js wants three digits
    const odd = await initializeTSA(generateKeyPairSync('ec', { namedCurve: 'P-256' }), t);
    const payload = Buffer.from(JSON.stringify({ critical: { identity: { 'docker-reference': 'x' }, image: { 'docker-manifest-digest': digest }, type: 'cosign container image signature' }, optional: null }));
    const sig = cryptoSign('sha256', payload, key.privateKey);
    const ts = await odd.timestamp({ artifactHash: Buffer.from(sha256(sig).slice(7), 'hex'), hashAlgorithmOID: '2.16.840.1.101.3.4.2.1', nonce: 1, policyOID: '1.3.6.1.4.1.57264.2', certReq: true });
    const pd = await reg.putBlob(repo, payload);
    const m = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: MEDIA_TYPE_OCI_MANIFEST,
        config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256('{}'), size: 2 },
        layers: [
          {
            mediaType: 'application/vnd.dev.cosign.simplesigning.v1+json',
            digest: pd,
            size: payload.length,
            annotations: {
              'dev.cosignproject.cosign/signature': sig.toString('base64'),
              'dev.sigstore.cosign/certificate': certPem,
              'dev.sigstore.cosign/rfc3161timestamp': JSON.stringify({ SignedRFC3161Timestamp: ts.toString('base64') }),
            },
          },
        ],
      }),
    );
    await reg.putManifest(repo, `sha256-${digest.slice(7)}.sig`, m, MEDIA_TYPE_OCI_MANIFEST);
    rejectedFor(await rejectsWith(verifyArtifactSignature({ registry: reg, repo, digest, manifestBytes, signers: [keyless()] }), { code: 'SignatureValidationFailed', reason: 'SIGNATURE_INVALID' }), 'TIMESTAMP_INVALID');
  });

  it('--cert without --timestamp-url, or a cert for another key, is refused at signing', async () => {
    const { reg, digest, manifestBytes } = setup();
    const { key, certPem } = await fx.issue();
    await rejectsWith(signArtifact({ registry: reg, repo, digest, manifestBytes, key: key.privatePem, cert: certPem, format: 'bundle' }), { code: 'InvalidArgument', reason: 'OPTION_INVALID' });
    await rejectsWith(signArtifact({ registry: reg, repo, digest, manifestBytes, key: makeKey().privatePem, cert: certPem, timestampUrl: fx.tsa.url, format: 'bundle' }), { code: 'InvalidArgument', reason: 'CERTIFICATE_INVALID' });
  });

  it('--chain publishes certificates only: a file that also holds a private key (or anything else) is refused before anything is pushed', async () => {
    const { reg, digest, manifestBytes } = setup();
    const { key, certPem } = await fx.issue();
    const sign = (chain: string) => signArtifact({ registry: reg, repo, digest, manifestBytes, key: key.privatePem, cert: certPem, chain, timestampUrl: fx.tsa.url, format: 'cosign' });
    const encrypted = '-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\nAAAA\n-----END RSA PRIVATE KEY-----\n';
    for (const chain of [certPem + key.privatePem, key.privatePem, certPem + encrypted, '', `${certPem}-----BEGIN CERTIFICATE-----\nnot base64\n`, certPem.repeat(Math.ceil((300 * 1024) / certPem.length))]) {
      await rejectsWith(sign(chain), { code: 'InvalidArgument', reason: 'CERTIFICATE_INVALID' });
    }
    // A key is named by its label, headers or not (context carries no label: the message does).
    assert.match((await rejectsWith(sign(certPem + encrypted), { code: 'InvalidArgument', reason: 'CERTIFICATE_INVALID' })).message, /RSA PRIVATE KEY block/);
    await rejectsWith(sign(`${certPem}-----BEGIN RSA PRIVATE KEY----\nAAAA\n`), { code: 'InvalidArgument', reason: 'CERTIFICATE_INVALID' });
    assert.equal(reg.log.filter((l) => l.startsWith('put')).length, 0, reg.log.join(' '));
    // Comments around the blocks are dropped; the certificates go as they parse.
    await sign(`# issuing chain\r\n${certPem.replace(/\n/g, '\r\n')}\n${certPem}`);
    const sig = JSON.parse(reg.tagged(repo, cosignSigTag(digest))!.toString()) as { layers: { annotations: Record<string, string> }[] };
    assert.equal(sig.layers[0]!.annotations['dev.sigstore.cosign/chain'], new X509Certificate(certPem).toString());
  });
});

describe('anchoredRegExp', () => {
  it('anchors strings and RegExps, drops g/y', () => {
    assert.equal(anchoredRegExp('a|b').test('ab'), false);
    assert.equal(anchoredRegExp('a|b').test('b'), true);
    const re = anchoredRegExp(/x.*/gu);
    assert.equal(re.flags, 'u');
    assert.equal(re.test('yx'), false);
    assert.equal(re.test('xy'), true);
  });
});
