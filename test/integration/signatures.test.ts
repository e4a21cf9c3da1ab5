// Signing and verification against a real docker-registry (no referrers API: the tag-schema
// fallback is the real path), with the project's registry client, keys made here, the mock CA
// and a local RFC 3161 TSA for keyless, and a 5xx-answering fake registry for discovery errors.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bundleToJSON, toDSSEBundle } from '@sigstore/bundle';
import { sign as cryptoSign } from 'node:crypto';
import type { Digest } from '../../src/core/digest.js';
import { signArtifact } from '../../src/publish/sign.js';
import { UndiciRegistryClient } from '../../src/registry/client.js';
import { discoverSignatures, verifyArtifactSignature, type SignerSpec } from '../../src/verify/index.js';
import { registryBlobPath, startRegistry, type TestRegistry } from '../helpers/registry.js';
import {
  BUNDLE_V03,
  EMPTY_DIGEST,
  OCI_MANIFEST,
  addToFallbackIndex,
  fetchGetManifest,
  pushBundleReferrer,
  fetchPutManifest,
  independentBundleSign,
  independentCosignSign,
  keyedSigner,
  keylessFixture,
  keylessSigner,
  makeKey,
  pae,
  pushTestArtifact,
  sha256,
  TEST_ISSUER,
  TEST_SUBJECT,
  type KeylessFixture,
  type PushedArtifact,
} from '../helpers/signing.js';
import { rejectedFor, rejectsWith } from '../helpers/assert.js';

/** Runs a CLI command module in-process, capturing stdout. */
async function cli(mod: { run(argv: string[]): Promise<number> }, argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const { reportError } = await import('../../src/cli/errors.js');
  let out = '';
  let err = '';
  const ow = process.stdout.write.bind(process.stdout);
  const ew = process.stderr.write.bind(process.stderr);
  process.stdout.write = ((c: string | Uint8Array) => ((out += String(c)), true)) as typeof process.stdout.write;
  process.stderr.write = ((c: string | Uint8Array) => ((err += String(c)), true)) as typeof process.stderr.write;
  try {
    let code: number;
    try {
      code = await mod.run(argv);
    } catch (e) {
      code = reportError(e);
    }
    return { code, out, err };
  } finally {
    process.stdout.write = ow;
    process.stderr.write = ew;
  }
}

describe('signatures against a real registry', () => {
  let reg: TestRegistry;
  let client: UndiciRegistryClient;
  let fx: KeylessFixture;
  let dir: string;
  const platform = makeKey('p256');
  const ci = makeKey('ed25519');
  const stranger = makeKey('p256');
  let n = 0;

  before(async () => {
    reg = await startRegistry();
    client = new UndiciRegistryClient({ plainHttp: true, retries: 0 });
    fx = await keylessFixture();
    dir = mkdtempSync(join(tmpdir(), 'spoke-sig-'));
  });
  after(async () => {
    await client?.close();
    await fx?.stop();
    await reg?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const fresh = async (): Promise<PushedArtifact & { repo: { registry: string; repository: string }; digest: Digest }> => {
    const repository = `signed/p${n++}`;
    const a = await pushTestArtifact(reg.url, reg.host, repository, { defaultAction: 'SCMP_ACT_ERRNO', n });
    return { ...a, digest: a.digest as Digest, repo: { registry: reg.host, repository } };
  };
  const verify = (a: Awaited<ReturnType<typeof fresh>>, signers: SignerSpec[]) =>
    verifyArtifactSignature({ registry: client, repo: a.repo, digest: a.digest, manifestBytes: a.manifest, signers });


  it('unsigned → SignatureValidationFailed (not signed); another key → fail', async () => {
    const a = await fresh();
    await rejectsWith(verify(a, [keyedSigner('platform', platform)]), { code: 'SignatureValidationFailed', reason: 'NOT_SIGNED' });
    await signArtifact({ registry: client, repo: a.repo, digest: a.digest, manifestBytes: a.manifest, key: stranger.privatePem, format: 'both' });
    rejectedFor(await rejectsWith(verify(a, [keyedSigner('platform', platform)]), { code: 'SignatureValidationFailed', reason: 'SIGNATURE_INVALID' }), 'SIGNATURE_INVALID');
  });

  it('a signature for another digest copied onto this digest fails (cosign tag and bundle referrer)', async () => {
    const a = await fresh();
    // cosign: B's signed .sig manifest copied onto A's .sig tag (same repository for both)
    const bb = await pushTestArtifact(reg.url, reg.host, a.repo.repository, { other: true });
    await signArtifact({ registry: client, repo: a.repo, digest: bb.digest as Digest, manifestBytes: bb.manifest, key: platform.privatePem, format: 'both' });
    const sig = (await fetchGetManifest(reg.url, a.repo.repository, `sha256-${bb.digest.slice(7)}.sig`, OCI_MANIFEST))!;
    await fetchPutManifest(reg.url, a.repo.repository, `sha256-${a.digest.slice(7)}.sig`, sig, OCI_MANIFEST);
    // bundle: B's valid bundle (statement names B) in a referrer whose subject claims A
    const idx = JSON.parse((await fetchGetManifest(reg.url, a.repo.repository, `sha256-${bb.digest.slice(7)}`, 'application/vnd.oci.image.index.v1+json'))!.toString()) as { manifests: { digest: string }[] };
    const bRef = JSON.parse((await fetchGetManifest(reg.url, a.repo.repository, idx.manifests[0]!.digest, OCI_MANIFEST))!.toString()) as Record<string, unknown>;
    bRef.subject = { mediaType: OCI_MANIFEST, digest: a.digest, size: a.manifest.length };
    const moved = Buffer.from(JSON.stringify(bRef));
    const movedDigest = await fetchPutManifest(reg.url, a.repo.repository, sha256(moved), moved, OCI_MANIFEST);
    await addToFallbackIndex(reg.url, a.repo.repository, a.digest, { mediaType: OCI_MANIFEST, digest: movedDigest, size: moved.length, artifactType: BUNDLE_V03 });
    const e = await rejectsWith(verify(a, [keyedSigner('platform', platform)]), { code: 'SignatureValidationFailed' });
    // Both the bundle (its statement) and the cosign payload name the other digest.
    assert.deepEqual(e.context.rejections, ['SUBJECT_MISMATCH', 'SUBJECT_MISMATCH']);
  });

  it('bundle blob tampered in registry storage → fail, as a registry fault (the bytes are not the digest named)', async () => {
    const a = await fresh();
    const r = await signArtifact({ registry: client, repo: a.repo, digest: a.digest, manifestBytes: a.manifest, key: platform.privatePem, format: 'bundle' });
    const path = registryBlobPath(reg, r.bundleBlobDigest!);
    const bytes = readFileSync(path);
    const text = bytes.toString('utf8');
    const i = text.indexOf('"sig":"') + 10;
    const tampered = Buffer.from(text.slice(0, i) + (text[i] === 'A' ? 'B' : 'A') + text.slice(i + 1));
    assert.equal(tampered.length, bytes.length);
    writeFileSync(path, tampered);
    const e = await rejectsWith(verify(a, [keyedSigner('platform', platform)]), { code: 'RegistryUnavailable' });
    assert.equal(e.reason, 'DIGEST_MISMATCH');
  });

  it('an attestation (right key, other predicate type) as the only referrer is refused as unsigned', async () => {
    const a = await fresh();
    await independentBundleSign(reg.url, a.repo.repository, { digest: a.digest, size: a.manifest.length }, platform.privateKey, { predicateType: 'https://slsa.dev/provenance/v1' });
    // the referrer's annotation even claims the signature predicate: the statement is what counts
    rejectedFor(await rejectsWith(verify(a, [keyedSigner('platform', platform)]), { code: 'SignatureValidationFailed', reason: 'NOT_SIGNED' }), 'NOT_A_SIGNATURE');
  });

  it('both formats on one artifact; two signers, either accepted', async () => {
    const a = await fresh();
    await signArtifact({ registry: client, repo: a.repo, digest: a.digest, manifestBytes: a.manifest, key: ci.privatePem, format: 'both' });
    const found = await discoverSignatures(client, a.repo, a.digest);
    assert.equal(found.bundles.length, 1);
    assert.equal(found.cosign?.layers.length, 1);
    assert.deepEqual(await verify(a, [keyedSigner('platform', platform), keyedSigner('ci', ci)]), { signer: 'ci', format: 'bundle' });
    const b = await fresh();
    await signArtifact({ registry: client, repo: b.repo, digest: b.digest, manifestBytes: b.manifest, key: platform.privatePem, format: 'cosign' });
    assert.deepEqual(await verify(b, [keyedSigner('platform', platform), keyedSigner('ci', ci)]), { signer: 'platform', format: 'cosign' });
    // appending a second cosign signature keeps the first
    await signArtifact({ registry: client, repo: b.repo, digest: b.digest, manifestBytes: b.manifest, key: ci.privatePem, format: 'cosign' });
    assert.equal((await discoverSignatures(client, b.repo, b.digest)).cosign?.layers.length, 2);
    assert.equal((await verify(b, [keyedSigner('ci', ci)])).signer, 'ci');
    assert.equal((await verify(b, [keyedSigner('platform', platform)])).signer, 'platform');
  });

  it('cosign signature and cosign-v3 DSSE bundle made independently from the published formats verify', async () => {
    const a = await fresh();
    await independentCosignSign(reg.url, a.repo.repository, a.digest, platform.privateKey);
    assert.deepEqual(await verify(a, [keyedSigner('platform', platform)]), { signer: 'platform', format: 'cosign' });
    const b = await fresh();
    await independentBundleSign(reg.url, b.repo.repository, { digest: b.digest, size: b.manifest.length }, ci.privateKey, { hint: 'a-hint-nobody-knows' });
    assert.deepEqual(await verify(b, [keyedSigner('platform', platform), keyedSigner('ci', ci)]), { signer: 'ci', format: 'bundle' });
    // and an independently made cosign signature naming another digest fails
    const c = await fresh();
    await independentCosignSign(reg.url, c.repo.repository, c.digest, platform.privateKey, { payloadDigest: b.digest });
    rejectedFor(await rejectsWith(verify(c, [keyedSigner('platform', platform)]), { code: 'SignatureValidationFailed', reason: 'SIGNATURE_INVALID' }), 'SUBJECT_MISMATCH');
  });

  it('keyless: mock CA + TSA + trusted root, issuer and subject; wrong subject fails; no timestamp fails without a crash', async () => {
    const keyless = (over: Partial<Extract<SignerSpec, { kind: 'keyless' }>> = {}) => keylessSigner(fx, { name: 'ci-keyless', ...over });
    const a = await fresh();
    const { key, certPem } = await fx.issue();
    const before = fx.tsa.requests();
    await signArtifact({ registry: client, repo: a.repo, digest: a.digest, manifestBytes: a.manifest, key: key.privatePem, cert: certPem, timestampUrl: fx.tsa.url, format: 'both' });
    // One timestamp per format; a reply whose time sigstore-js cannot read (a millisecond
    // ending in 0, trimmed by the mock TSA) is asked for again, up to 3 times per format
    // (src/publish/timestamp.ts).
    const asked = fx.tsa.requests() - before;
    assert.ok(asked >= 2 && asked <= 6, `${asked} timestamp requests`);
    assert.deepEqual(await verify(a, [keyless()]), { signer: 'ci-keyless', format: 'bundle', identity: TEST_SUBJECT });
    assert.deepEqual(await verify(a, [keyless({ subjectRegExp: undefined, subject: TEST_SUBJECT })]), { signer: 'ci-keyless', format: 'bundle', identity: TEST_SUBJECT });
    rejectedFor(await rejectsWith(verify(a, [keyless({ subjectRegExp: undefined, subject: 'https://github.com/acme/other' })]), { code: 'SignatureValidationFailed', reason: 'SIGNATURE_INVALID' }), 'IDENTITY_MISMATCH');
    rejectedFor(await rejectsWith(verify(a, [keyless({ issuer: 'https://issuer.example.test' })]), { code: 'SignatureValidationFailed', reason: 'SIGNATURE_INVALID' }), 'IDENTITY_MISMATCH');

    // a certificate bundle with no timestamp at all
    const b = await fresh();
    const st = Buffer.from(JSON.stringify({ _type: 'https://in-toto.io/Statement/v1', subject: [{ name: 'x', digest: { sha256: b.digest.slice(7) } }], predicateType: 'https://sigstore.dev/cosign/sign/v1', predicate: {} }));
    const sig = cryptoSign('sha256', pae('application/vnd.in-toto+json', st), key.privateKey);
    const der = Buffer.from(certPem.replace(/-----[^-]+-----|\s/g, ''), 'base64');
    const bundle = Buffer.from(JSON.stringify(bundleToJSON(toDSSEBundle({ artifact: st, artifactType: 'application/vnd.in-toto+json', signature: sig, certificate: der, certificateChain: false }))));
    await pushBundleReferrer(reg.url, b.repo.repository, { digest: b.digest, size: b.manifest.length }, bundle);
    rejectedFor(await rejectsWith(verify(b, [keyless()]), { code: 'SignatureValidationFailed', reason: 'SIGNATURE_INVALID' }), 'TIMESTAMP_INVALID');
  });

  it('CLI: spoke sign then spoke verify --policy (keyed and keyless), JSON output; unsigned exits 1', async () => {
    const signCmd = await import('../../src/cli/commands/sign.js');
    const verifyCmd = await import('../../src/cli/commands/verify.js');
    const a = await fresh();
    writeFileSync(join(dir, 'platform.key'), platform.sec1Pem!);
    writeFileSync(join(dir, 'platform.pub'), platform.publicPem);
    writeFileSync(join(dir, 'trusted_root.json'), JSON.stringify(fx.trustedRoot));
    const { key, certPem } = await fx.issue();
    writeFileSync(join(dir, 'ci.key'), key.privatePem);
    writeFileSync(join(dir, 'ci.crt'), certPem);
    const policy = join(dir, 'policy.yaml');
    writeFileSync(
      policy,
      [
        'apiVersion: spoke.dev/v1alpha1',
        'kind: NodeProfilePolicy',
        'signers:',
        '  platform: { publicKey: platform.pub }',
        `  ci: { keyless: { trustedRoot: trusted_root.json, issuer: '${TEST_ISSUER}', subjectRegExp: '^https://github\\.com/acme/profiles/.+$' } }`,
        'rules:',
        `  - scope: ${reg.host}/signed`,
        '    kinds: [seccomp]',
        '    signedBy: [platform, ci]',
        `insecure: [${reg.host}]`,
        '',
      ].join('\n'),
    );
    const unsigned = await cli(verifyCmd, [a.reference, '--policy', policy]);
    assert.equal(unsigned.code, 1);
    assert.match(unsigned.err, /^SignatureValidationFailed: .*not signed/);

    const s = await cli(signCmd, [a.reference, '--key', join(dir, 'platform.key'), '--plain-http']);
    assert.equal(s.code, 0, s.err);
    assert.equal(s.out.trimEnd().split('\n').pop(), a.reference);
    const v = await cli(verifyCmd, [a.reference, '--policy', policy, '--json']);
    assert.equal(v.code, 0, v.err);
    assert.deepEqual(JSON.parse(v.out), { digest: a.digest, signer: 'platform', format: 'bundle', identity: null, kind: 'seccomp', rule: JSON.parse(v.out).rule, unsigned: false });

    const b = await fresh();
    const s2 = await cli(signCmd, [b.reference, '--key', join(dir, 'ci.key'), '--cert', join(dir, 'ci.crt'), '--timestamp-url', fx.tsa.url, '--format', 'cosign', '--plain-http', '--json']);
    assert.equal(s2.code, 0, s2.err);
    assert.ok(JSON.parse(s2.out).sigManifestDigest);
    const v2 = await cli(verifyCmd, [b.reference, '--policy', policy]);
    assert.equal(v2.code, 0, v2.err);
    assert.match(v2.out, /signer: +ci\n/);
    assert.match(v2.out, /format: +cosign/);
    assert.match(v2.out, new RegExp(`identity: +${TEST_SUBJECT.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}`));
  });
});

describe('registry answering 5xx during signature discovery', () => {
  let server: Server;
  let host: string;
  const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: { mediaType: 'application/vnd.cncf.seccomp-profile.config.v1+json', digest: EMPTY_DIGEST, size: 2 }, layers: [] }));
  const digest = sha256(manifest) as Digest;
  let failOn: RegExp = /./;

  before(async () => {
    server = createServer((req, res) => {
      const url = req.url ?? '';
      if (url === '/v2/' || url === '/v2') return void res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      if (failOn.test(url)) return void res.writeHead(503, { 'content-type': 'application/json' }).end('{"errors":[{"code":"UNAVAILABLE"}]}');
      if (url.includes('/referrers/')) return void res.writeHead(404).end('{"errors":[{"code":"NOT_FOUND"}]}');
      if (url.endsWith(`/manifests/${digest}`)) return void res.writeHead(200, { 'content-type': OCI_MANIFEST, 'docker-content-digest': digest }).end(manifest);
      res.writeHead(404, { 'content-type': 'application/json' }).end('{"errors":[{"code":"MANIFEST_UNKNOWN"}]}');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const a = server.address();
    host = `127.0.0.1:${typeof a === 'object' && a ? a.port : 0}`;
  });
  after(async () => {
    await new Promise<void>((r) => server.close(() => r()));
  });

  for (const [what, re] of [
    ['referrers API', /\/referrers\//],
    ['tag-schema index', /\/manifests\/sha256-[0-9a-f]{64}$/],
    ['cosign .sig tag', /\.sig$/],
  ] as const) {
    it(`${what} 5xx → RegistryUnavailable, never "unsigned"`, async () => {
      failOn = re;
      const client = new UndiciRegistryClient({ plainHttp: true, retries: 0 });
      try {
        await rejectsWith(
          verifyArtifactSignature({ registry: client, repo: { registry: host, repository: 'x/y' }, digest, manifestBytes: manifest, signers: [keyedSigner('platform', makeKey())] }),
          { code: 'RegistryUnavailable' },
        );
      } finally {
        await client.close();
      }
    });
  }

  it('with nothing failing, the same registry says "not signed"', async () => {
    failOn = /^$/;
    const client = new UndiciRegistryClient({ plainHttp: true, retries: 0 });
    try {
      await rejectsWith(
        verifyArtifactSignature({ registry: client, repo: { registry: host, repository: 'x/y' }, digest, manifestBytes: manifest, signers: [keyedSigner('platform', makeKey())] }),
        { code: 'SignatureValidationFailed', reason: 'NOT_SIGNED' },
      );
    } finally {
      await client.close();
    }
  });
});
