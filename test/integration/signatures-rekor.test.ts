// Keyless signatures with a Rekor transparency-log entry instead of an RFC 3161 timestamp
// (cosign's default with the public-good instance), verified offline against the log key in the
// trusted root (docs/signatures.md): through the verifier on a real registry, and through the
// node policy's `timeSource`.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Digest } from '../../src/core/digest.js';
import type { ErrorReason, SpokeError } from '../../src/core/errors.js';
import { UndiciRegistryClient } from '../../src/registry/client.js';
import { verifyArtifactSignature, type SignerSpec } from '../../src/verify/index.js';
import { rejectsWith } from '../helpers/assert.js';
import { spoke } from '../helpers/cli.js';
import { startRegistry, type TestRegistry } from '../helpers/registry.js';
import { mockRekor, rekorSignedReferrer, type RekorLog } from '../helpers/rekor.js';
import { keylessFixture, pushTestArtifact, TEST_ISSUER, TEST_SUBJECT, type KeylessFixture, type PushedArtifact } from '../helpers/signing.js';

describe('keyless signatures with a Rekor entry', () => {
  let reg: TestRegistry;
  let client: UndiciRegistryClient;
  let fx: KeylessFixture;
  let rekor: RekorLog;
  let dir: string;
  let n = 0;
  /** Trusted roots: the CA with the log only, with the TSA only, with both. */
  let logOnly: Record<string, unknown>;
  let tsaOnly: Record<string, unknown>;

  before(async () => {
    reg = await startRegistry();
    client = new UndiciRegistryClient({ plainHttp: true, retries: 0 });
    fx = await keylessFixture();
    rekor = await mockRekor();
    dir = mkdtempSync(join(tmpdir(), 'spoke-rekor-'));
    logOnly = { ...fx.trustedRoot, timestampAuthorities: [], tlogs: [rekor.trustedRootEntry] };
    tsaOnly = { ...fx.trustedRoot, tlogs: [] };
  });
  after(async () => {
    await client?.close();
    await fx?.stop();
    await reg?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const signed = async (tamper?: (b: Record<string, unknown>) => void): Promise<PushedArtifact & { repo: string }> => {
    const repo = `rekor/p${++n}`;
    const a = await pushTestArtifact(reg.url, reg.host, repo);
    const { key, certPem } = await fx.issue();
    await rekorSignedReferrer(reg.url, repo, { digest: a.digest, size: a.manifest.length }, { key: key.privateKey, certPem }, rekor, tamper);
    return { ...a, repo };
  };
  const keyless = (trustedRoot: unknown, timeSource?: 'tsa' | 'tlog' | 'any'): SignerSpec => ({
    name: 'ci',
    kind: 'keyless',
    trustedRoot,
    issuer: TEST_ISSUER,
    subject: TEST_SUBJECT,
    ...(timeSource === undefined ? {} : { timeSource }),
  });
  const verify = (a: PushedArtifact & { repo: string }, signer: SignerSpec) =>
    verifyArtifactSignature({ registry: client, repo: { registry: reg.host, repository: a.repo }, digest: a.digest as Digest, manifestBytes: a.manifest, signers: [signer] });
  /**
   * `p` is refused (SignatureValidationFailed) for `reason`, its candidates (the one bundle, when
   * it was tried) for `rejections` (context.rejections).
   */
  const refusal = async (p: Promise<unknown>, reason: ErrorReason, rejections: ErrorReason[]): Promise<SpokeError> => {
    const e = await rejectsWith(p, { code: 'SignatureValidationFailed', reason });
    assert.deepEqual(e.context.rejections, rejections, e.message);
    return e;
  };

  it('the log entry serves as the signing time: accepted with timeSource any (the default) and tlog', async () => {
    const a = await signed();
    const expected = { signer: 'ci', format: 'bundle', identity: TEST_SUBJECT };
    assert.deepEqual(await verify(a, keyless(logOnly)), expected);
    assert.deepEqual(await verify(a, keyless(logOnly, 'tlog')), expected);
    // A root with both a TSA and the log: the log entry alone suffices under any.
    assert.deepEqual(await verify(a, keyless({ ...fx.trustedRoot, tlogs: [rekor.trustedRootEntry] })), expected);
  });

  it('timeSource tsa refuses a bundle whose only time is a log entry; a root without the log refuses it too', async () => {
    const a = await signed();
    // The bundle is found and refused: it carries no signing time the signer accepts.
    await refusal(verify(a, keyless({ ...fx.trustedRoot, tlogs: [rekor.trustedRootEntry] }, 'tsa')), 'SIGNATURE_INVALID', ['TIMESTAMP_INVALID']);
    await refusal(verify(a, keyless(tsaOnly)), 'SIGNATURE_INVALID', ['TIMESTAMP_INVALID']);
    // timeSource tlog with a root that lists no log: the signer itself is unusable, no candidate is tried.
    await refusal(verify(a, keyless(tsaOnly, 'tlog')), 'SIGNER_UNAVAILABLE', []);
  });

  it('a tampered entry is refused: integrated time, body, promise; and a log the root does not trust', async () => {
    type Entry = { integratedTime: string; canonicalizedBody: string; inclusionPromise?: { signedEntryTimestamp: string } };
    const entryOf = (b: Record<string, unknown>) => ((b.verificationMaterial as { tlogEntries: Entry[] }).tlogEntries[0]!);
    const cases: [string, ErrorReason, (b: Record<string, unknown>) => void][] = [
      // An hour back is before the certificate's validity, which sigstore-js checks at the (still
      // unverified) integrated time before it checks the entry's promise: refused for the certificate.
      ['integrated time moved an hour back', 'CERTIFICATE_INVALID', (b) => (entryOf(b).integratedTime = String(Number(entryOf(b).integratedTime) - 3600))],
      // A second later is still within the certificate's validity: the log's signed promise over
      // the entry is what refuses it.
      ['integrated time moved a second', 'TLOG_INVALID', (b) => (entryOf(b).integratedTime = String(Number(entryOf(b).integratedTime) + 1))],
      ['body of another signature', 'TLOG_INVALID', (b) => {
        const body = JSON.parse(Buffer.from(entryOf(b).canonicalizedBody, 'base64').toString()) as { spec: { payloadHash: { value: string } } };
        body.spec.payloadHash.value = '0'.repeat(64);
        entryOf(b).canonicalizedBody = Buffer.from(JSON.stringify(body)).toString('base64');
      }],
      // Without its promise the entry vouches for no time: the bundle has none the signer accepts.
      ['promise removed', 'TIMESTAMP_INVALID', (b) => delete entryOf(b).inclusionPromise],
    ];
    for (const [what, rejection, tamper] of cases) {
      const a = await signed(tamper);
      await refusal(verify(a, keyless(logOnly)), 'SIGNATURE_INVALID', [rejection]).catch((e: unknown) => assert.fail(`${what}: ${String(e)}`));
    }
    const other = await mockRekor();
    const a = await signed();
    await refusal(verify(a, keyless({ ...logOnly, tlogs: [other.trustedRootEntry] })), 'SIGNATURE_INVALID', ['TLOG_INVALID']);
  });

  it('node policy: timeSource is a signer key; spoke verify under it', async () => {
    const a = await signed();
    const root = join(dir, 'trusted_root.json');
    writeFileSync(root, JSON.stringify(logOnly));
    const policy = (timeSource: string) => {
      const file = join(dir, `policy-${timeSource}.yaml`);
      writeFileSync(
        file,
        [
          'apiVersion: spoke.dev/v1alpha1',
          'kind: NodeProfilePolicy',
          'signers:',
          `  ci: { keyless: { trustedRoot: ${root}, issuer: '${TEST_ISSUER}', subject: '${TEST_SUBJECT}', timeSource: ${timeSource} } }`,
          'rules:',
          `  - scope: ${reg.host}/rekor`,
          '    kinds: [seccomp]',
          '    signedBy: [ci]',
          `insecure: [${reg.host}]`,
          '',
        ].join('\n'),
      );
      return file;
    };
    const ok = await spoke(['verify', a.reference, '--policy', policy('tlog'), '--json']);
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal((JSON.parse(ok.stdout) as { signer: string }).signer, 'ci');
    // tsa with a root that has no TSA: the policy itself is refused, pointing at the line.
    const bad = await spoke(['verify', a.reference, '--policy', policy('tsa')]);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /policy-tsa\.yaml:4: .*timestampAuthorities must list at least one authority/);
    const typo = await spoke(['verify', a.reference, '--policy', policy('rekor')]);
    assert.notEqual(typo.code, 0);
    assert.match(typo.stderr, /timeSource: must be one of tsa, tlog, any/);
  });
});
