// The profile applier on real files: a real store with an ingested artifact, the real seccomp
// library and baseline, a real node policy file behind a PolicyHolder. Covers what a create is
// refused for after its pull (the policy decided again for the pod's namespace, signatures under
// the current policy), Localhost base files (under the seccomp root, read from an fd with a cap,
// errors that never quote the file), and effective files that must hold the bytes their name
// promises.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ProfileApplier, type ApplyContext } from '../../../src/cri/apply.js';
import { BASE_LOCALHOST, PROFILE_OCI, type SecurityProfileMsg } from '../../../src/cri/messages.js';
import { PolicyHolder } from '../../../src/config/policy-holder.js';
import { SpokeError, type ErrorCode, type ErrorReason } from '../../../src/core/errors.js';
import { sha256Digest } from '../../../src/core/digest.js';
import { DEFAULT_MAX_ARTIFACT_BYTES } from '../../../src/core/limits.js';
import { decodeSeccomp, evaluate, type SeccompProfile } from '../../../src/profiles/seccomp/index.js';
import type { PullRequest, PullResult } from '../../../src/pull.js';
import { ProfileStore } from '../../../src/store/store.js';
import { denySyscalls, plantLookalikeEffective } from '../../helpers/artifacts.js';
import { applierDeps } from '../../helpers/shim.js';
import { makeKey } from '../../helpers/signing.js';
import { baselineBytes } from '../profiles/seccomp-fixtures.js';
import { assertSpokeError } from '../../helpers/assert.js';

const HOST = 'registry.test';

function refusedWith(code: ErrorCode, reason: ErrorReason, also: (e: SpokeError) => void = () => {}) {
  return (e: unknown) => {
    also(assertSpokeError(e, { code, reason }));
    return true;
  };
}

describe('ProfileApplier', () => {
  let dir: string;
  let seccompRoot: string;
  let store: ProfileStore;
  let holder: PolicyHolder;
  let policyFile: string;
  let applier: ProfileApplier<SeccompProfile>;
  const pulls: PullRequest[] = [];
  let pullOutcome: () => Promise<PullResult>;
  const baseline = decodeSeccomp(baselineBytes());

  /** Ingests an artifact as a completed pull would, with an optional signature verdict. */
  async function ingest(repository: string, layer: Buffer, verdict?: { policyHash: string; signer: string }, kind: 'seccomp' | 'apparmor' = 'seccomp'): Promise<string> {
    const layerDigest = sha256Digest(layer);
    const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, config: { size: 2 }, layers: [{ digest: layerDigest, size: layer.length }] }));
    const digest = sha256Digest(manifest);
    const reference = `${HOST}/${repository}@${digest}`;
    await store.ingest({
      digest,
      manifestBytes: manifest,
      layerDigest,
      layerBytes: layer,
      kind,
      reference,
      rule: 'rules[0]',
      servedBy: HOST,
      ...(verdict ? { verdict: { ...verdict, format: 'bundle' as const } } : {}),
    });
    return reference;
  }

  function writePolicy(lines: string[]): void {
    writeFileSync(policyFile, ['apiVersion: spoke.dev/v1alpha1', 'kind: NodeProfilePolicy', ...lines, ''].join('\n'));
    holder.reload();
  }

  const oci = (ref: string, base?: string): SecurityProfileMsg => ({ profileType: PROFILE_OCI, localhostRef: '', ociRef: ref, base: base === undefined ? undefined : { type: BASE_LOCALHOST, localhostRef: base } });
  const inTeamA: ApplyContext = { who: 'container team-a/p/c', namespace: 'team-a' };

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'spoke-apply-'));
    // The root given as a symlink, as /var/lib/kubelet often is: bases under it resolve under it.
    mkdirSync(join(dir, 'real-root'));
    seccompRoot = join(dir, 'seccomp');
    symlinkSync(join(dir, 'real-root'), seccompRoot);
    store = new ProfileStore({ root: join(dir, 'store'), fsync: false });
    policyFile = join(dir, 'policy.yaml');
    writeFileSync(join(dir, 'platform.pub'), makeKey().publicPem);
    writeFileSync(policyFile, 'apiVersion: spoke.dev/v1alpha1\nkind: NodeProfilePolicy\nrules: []\n');
    holder = new PolicyHolder({ file: policyFile });
    pullOutcome = async () => Promise.reject(new SpokeError('SignatureValidationFailed', 'not signed by a current signer', {}, { reason: 'NOT_SIGNED' }));
    applier = new ProfileApplier(
      applierDeps({
        pipeline: {
          pull: async (req) => {
            pulls.push(req);
            return pullOutcome();
          },
        },
        store,
        baseline,
        seccompRoot,
        policy: async () => holder.current(),
      }),
    );
  });

  after(() => {
    holder.close();
    rmSync(dir, { recursive: true, force: true });
  });

  describe('the node policy, decided again at create', () => {
    it('refuses a digest pulled for namespace A to a pod in namespace B', async () => {
      writePolicy(['rules:', `  - scope: ${HOST}/ns`, '    kinds: [seccomp]', '    unsigned: true', '    namespaces: [team-a]']);
      const ref = await ingest('ns/one', denySyscalls(['mkdir']));
      await applier.apply(oci(ref), inTeamA);
      await assert.rejects(applier.apply(oci(ref), { who: 'container team-b/p/c', namespace: 'team-b' }), refusedWith('PermissionDenied', 'POLICY_DENIED'));
      await assert.rejects(applier.apply(oci(ref), { who: 'container ?/p/c' }), refusedWith('PermissionDenied', 'POLICY_DENIED'));
    });

    it('applies a deny rule added after the pull', async () => {
      const ref = await ingest('ns/two', denySyscalls(['chown']));
      await applier.apply(oci(ref), inTeamA);
      writePolicy(['rules:', `  - scope: ${HOST}/ns`, '    kinds: [seccomp]', '    action: deny']);
      await assert.rejects(applier.apply(oci(ref), inTeamA), refusedWith('PermissionDenied', 'POLICY_DENIED'));
    });

    it('a signed rule: a verdict under the current policy serves; any other is verified again, and its failure refuses', async () => {
      const signed = ['signers:', `  platform: { publicKey: ${join(dir, 'platform.pub')} }`, 'rules:', `  - scope: ${HOST}/signed`, '    kinds: [seccomp]', '    signedBy: [platform]'];
      writePolicy(signed);
      const hash = holder.current().hash;
      const ref = await ingest('signed/one', denySyscalls(['acct']), { policyHash: hash, signer: 'platform' });
      pulls.length = 0;
      await applier.apply(oci(ref), inTeamA);
      assert.deepEqual(pulls, [], 'a verdict recorded under this policy needs no verification');
      // The signer's key changes (revoked and replaced): a new policy hash, no verdict under it.
      writeFileSync(join(dir, 'platform.pub'), makeKey().publicPem);
      holder.reload();
      assert.notEqual(holder.current().hash, hash);
      await assert.rejects(applier.apply(oci(ref), inTeamA), refusedWith('SignatureValidationFailed', 'NOT_SIGNED'));
      assert.deepEqual(pulls, [{ reference: ref, kind: 'seccomp', namespace: 'team-a' }], 'verified again through the pipeline, for the pod namespace');
    });

    it('what a create found is reused only while the record is unchanged: a verdict forgotten is verified again, a record removed is not pulled', async () => {
      writePolicy(['signers:', `  platform: { publicKey: ${join(dir, 'platform.pub')} }`, 'rules:', `  - scope: ${HOST}/kept`, '    kinds: [seccomp]', '    signedBy: [platform]']);
      const ref = await ingest('kept/one', denySyscalls(['acct']), { policyHash: holder.current().hash, signer: 'platform' });
      const digest = ref.slice(ref.indexOf('@') + 1) as `sha256:${string}`;
      pulls.length = 0;
      await applier.apply(oci(ref), inTeamA);
      await applier.apply(oci(ref), inTeamA);
      assert.deepEqual(pulls, [], 'the verdict serves both creates');
      // The same policy object: only the record says the verdict is gone (`spoke store forget`).
      await store.forget(digest);
      await assert.rejects(applier.apply(oci(ref), inTeamA), refusedWith('SignatureValidationFailed', 'NOT_SIGNED'));
      assert.equal(pulls.length, 1, 'verified again through the pipeline');
      await store.annotate(digest, { verdict: { policyHash: holder.current().hash, signer: 'platform', format: 'bundle' } });
      await applier.apply(oci(ref), inTeamA);
      await store.remove(digest);
      await assert.rejects(applier.apply(oci(ref), inTeamA), refusedWith('FailedPrecondition', 'NOT_PULLED'));
    });

    it('a namespace is never mistaken for another, whatever bytes it holds', async () => {
      writePolicy(['rules:', `  - scope: ${HOST}/quoted`, '    kinds: [seccomp]', '    unsigned: true', '    namespaces: [team-a]']);
      const ref = await ingest('quoted/one', denySyscalls(['mkdir']));
      await applier.apply(oci(ref), inTeamA);
      for (const namespace of ['team-a ', 'team-a\0', 'team-a","', '"team-a"', 'team-']) {
        await assert.rejects(applier.apply(oci(ref), { who: 'container x/p/c', namespace }), refusedWith('PermissionDenied', 'POLICY_DENIED'), JSON.stringify(namespace));
      }
    });

    it('a verdict by a signer whose key is now unavailable is not taken: verified again, and refused', async () => {
      const missing = join(dir, 'gone.pub');
      writePolicy(['signers:', `  platform: { publicKey: ${missing} }`, 'rules:', `  - scope: ${HOST}/gone`, '    kinds: [seccomp]', '    signedBy: [platform]']);
      assert.equal(holder.current().signers['platform']?.type, 'unavailable');
      const ref = await ingest('gone/one', denySyscalls(['acct']), { policyHash: holder.current().hash, signer: 'platform' });
      pulls.length = 0;
      await assert.rejects(applier.apply(oci(ref), inTeamA), refusedWith('SignatureValidationFailed', 'NOT_SIGNED'));
      assert.equal(pulls.length, 1, 'verified again through the pipeline');
    });

    it('a policy changed while the signature is verified again: the create is decided under the policy the verdict was made under', async () => {
      // The verification takes registry round trips; an admin who flips the rule from audit to
      // enforce meanwhile must not get the audit merge with a verdict made under enforce.
      const signed = (mode: string) => ['signers:', `  platform: { publicKey: ${join(dir, 'platform.pub')} }`, 'rules:', `  - scope: ${HOST}/flip`, '    kinds: [seccomp]', '    signedBy: [platform]', `    mode: ${mode}`];
      writePolicy(signed('audit'));
      const ref = await ingest('flip/one', denySyscalls(['mkdir']));
      const digest = ref.slice(ref.indexOf('@') + 1) as `sha256:${string}`;
      pullOutcome = async () => {
        writePolicy(signed('enforce'));
        await store.annotate(digest, { reference: ref, verdict: { policyHash: holder.current().hash, signer: 'platform', format: 'bundle' } });
        return { reference: ref, digest, resolvedRef: ref, cached: true, path: '', rule: 'rules[0]' };
      };
      try {
        const applied = await applier.apply(oci(ref), inTeamA);
        assert.equal(holder.current().rules[0]?.mode, 'enforce');
        assert.equal(applied.mode, 'enforce', 'the rule in force when the verdict was recorded decides the merge');
        // A policy that changes at every verification: the create gives up, to be retried.
        let flips = 0;
        const other = await ingest('flip/two', denySyscalls(['rmdir']));
        pullOutcome = async () => {
          writePolicy(signed(flips++ % 2 === 0 ? 'audit' : 'enforce'));
          const d = other.slice(other.indexOf('@') + 1) as `sha256:${string}`;
          await store.annotate(d, { reference: other, verdict: { policyHash: `sha256:${'0'.repeat(64)}`, signer: 'platform', format: 'bundle' } });
          return { reference: other, digest: d, resolvedRef: other, cached: true, path: '', rule: 'rules[0]' };
        };
        await assert.rejects(applier.apply(oci(other), inTeamA), refusedWith('Unavailable', 'POLICY_CHANGED'));
        assert.equal(flips, 3, 'decided three times, then refused');
      } finally {
        pullOutcome = async () => Promise.reject(new SpokeError('SignatureValidationFailed', 'not signed by a current signer', {}, { reason: 'NOT_SIGNED' }));
      }
    });

    it('a policy changed and changed back while the signature is verified again: the pull that ran under the other one proves nothing', async () => {
      // P1 wants a signature; the pipeline's pull ran under P2, which did not (so it recorded no
      // verdict), and P1 was back in force when it returned: same hash as the create decided under.
      const signedRule = ['signers:', `  platform: { publicKey: ${join(dir, 'platform.pub')} }`, 'rules:', `  - scope: ${HOST}/aba`, '    kinds: [seccomp]', '    signedBy: [platform]'];
      const unsignedRule = ['rules:', `  - scope: ${HOST}/aba`, '    kinds: [seccomp]', '    unsigned: true'];
      writePolicy(signedRule);
      const ref = await ingest('aba/one', denySyscalls(['mkdir']));
      const digest = ref.slice(ref.indexOf('@') + 1) as `sha256:${string}`;
      let calls = 0;
      pullOutcome = async () => {
        if (calls++ > 0) throw new SpokeError('SignatureValidationFailed', 'not signed by a current signer', {}, { reason: 'NOT_SIGNED' });
        writePolicy(unsignedRule);
        writePolicy(signedRule);
        return { reference: ref, digest, resolvedRef: ref, cached: true, path: '', rule: 'rules[0]' };
      };
      try {
        await assert.rejects(applier.apply(oci(ref), inTeamA), refusedWith('SignatureValidationFailed', 'NOT_SIGNED'));
        assert.equal(calls, 2, 'verified again under the policy in force');
      } finally {
        pullOutcome = async () => Promise.reject(new SpokeError('SignatureValidationFailed', 'not signed by a current signer', {}, { reason: 'NOT_SIGNED' }));
      }
    });
  });

  describe('the stored artifact', () => {
    before(() => writePolicy(['rules:', `  - scope: ${HOST}/stored`, '    kinds: [seccomp]', '    unsigned: true']));

    it('a profile never pulled is refused FailedPrecondition, NOT_PULLED', async () => {
      const never = `${HOST}/stored/never@${sha256Digest(Buffer.from('never pulled'))}`;
      await assert.rejects(applier.apply(oci(never), inTeamA), refusedWith('FailedPrecondition', 'NOT_PULLED'));
    });

    it('an artifact stored as another kind is refused SecurityProfileInvalid, KIND_MISMATCH', async () => {
      const ref = await ingest('stored/apparmor', Buffer.from('{}'), undefined, 'apparmor');
      await assert.rejects(applier.apply(oci(ref), inTeamA), refusedWith('SecurityProfileInvalid', 'KIND_MISMATCH'));
    });

    it('a stored profile over the current policy size limit is refused, as its pull would be', async () => {
      const ref = await ingest('stored/big', denySyscalls(['mkdir', 'rmdir', 'chown', 'chmod']));
      await applier.apply(oci(ref), inTeamA);
      writePolicy(['limits: { maxArtifactBytes: 16 }', 'rules:', `  - scope: ${HOST}/stored`, '    kinds: [seccomp]', '    unsigned: true']);
      try {
        await assert.rejects(applier.apply(oci(ref), inTeamA), refusedWith('SecurityProfileInvalid', 'SIZE_LIMIT'));
      } finally {
        writePolicy(['rules:', `  - scope: ${HOST}/stored`, '    kinds: [seccomp]', '    unsigned: true']);
      }
    });

    it("a record of another platform's profile (a store shared across platforms) is refused STORE_PLATFORM", async () => {
      const layer = denySyscalls(['mkdirat']);
      const layerDigest = sha256Digest(layer);
      const platformManifest = Buffer.from(JSON.stringify({ schemaVersion: 2, config: { size: 2 }, layers: [{ digest: layerDigest, size: layer.length }] }));
      const index = Buffer.from(JSON.stringify({ schemaVersion: 2, manifests: [{ digest: sha256Digest(platformManifest) }] }));
      const digest = sha256Digest(index);
      const reference = `${HOST}/stored/arm@${digest}`;
      const other = process.arch === 'arm64' ? 'amd64' : 'arm64';
      await store.ingest({ digest, manifestBytes: index, platform: { digest: sha256Digest(platformManifest), manifestBytes: platformManifest, os: 'linux', architecture: other }, layerDigest, layerBytes: layer, kind: 'seccomp', reference, rule: 'rules[0]', servedBy: HOST });
      await assert.rejects(applier.apply(oci(reference), inTeamA), refusedWith('FailedPrecondition', 'STORE_PLATFORM'));
    });

    it('an artifact that cannot be merged keeps the reason of the failure', async () => {
      const ref = await ingest('stored/not-json', Buffer.from('not json'));
      await assert.rejects(applier.apply(oci(ref), inTeamA), refusedWith('SecurityProfileInvalid', 'JSON_INVALID'));
    });
  });

  describe('Localhost base profiles', () => {
    let ref: string;
    before(async () => {
      writePolicy(['rules:', `  - scope: ${HOST}/base`, '    kinds: [seccomp]', '    unsigned: true']);
      ref = await ingest('base/one', denySyscalls(['mkdir']));
    });

    it('applies a base under the seccomp root (the root itself a symlink)', async () => {
      const base = join(seccompRoot, 'deny-getppid.json');
      writeFileSync(base, denySyscalls(['getppid']));
      const without = await applier.apply(oci(ref), inTeamA);
      const applied = await applier.apply(oci(ref, base), inTeamA);
      const getppid = (path: string) => evaluate(decodeSeccomp(readFileSync(path)), { syscall: 'getppid', args: [] }).action;
      assert.equal(getppid(without.path), 'SCMP_ACT_ALLOW', 'the baseline allows getppid');
      assert.equal(getppid(applied.path), 'SCMP_ACT_ERRNO', 'the base denies it');
    });

    it('/etc/passwd: refused as outside the root, and the error never quotes it', async () => {
      await assert.rejects(
        applier.apply(oci(ref, '/etc/passwd'), inTeamA),
        refusedWith('InvalidArgument', 'BASE_PROFILE', (e) => assert.ok(!/root:/.test(e.message), e.message)),
      );
    });

    it("one of spoke's own merge results is refused as a base, directly or through a symlink: it is no admin's profile, and gc removes it once unused", async () => {
      const merged = await applier.apply(oci(ref), inTeamA);
      await assert.rejects(applier.apply(oci(ref, merged.path), inTeamA), refusedWith('InvalidArgument', 'BASE_PROFILE', (e) => assert.match(e.message, /merge result/)));
      const link = join(seccompRoot, 'merged-link.json');
      symlinkSync(merged.path, link);
      await assert.rejects(applier.apply(oci(ref, link), inTeamA), refusedWith('InvalidArgument', 'BASE_PROFILE'));
    });

    it('a symlink under the root pointing outside it is refused', async () => {
      const link = join(seccompRoot, 'passwd.json');
      symlinkSync('/etc/passwd', link);
      await assert.rejects(applier.apply(oci(ref, link), inTeamA), refusedWith('InvalidArgument', 'BASE_PROFILE'));
    });

    it('a non-JSON file under the root: the decode error carries no byte of it', async () => {
      const copy = join(seccompRoot, 'passwd-copy.json');
      copyFileSync('/etc/passwd', copy);
      const first = readFileSync(copy, 'utf8').slice(0, 6);
      await assert.rejects(
        applier.apply(oci(ref, copy), inTeamA),
        refusedWith('SecurityProfileInvalid', 'BASE_PROFILE', (e) => {
          assert.ok(!e.message.includes(first), e.message);
          assert.equal(e.cause, undefined, 'no cause carrying the decoder message');
        }),
      );
      const unknown = join(seccompRoot, 'unknown-action.json');
      writeFileSync(unknown, JSON.stringify({ defaultAction: 'SECRET_VALUE_42' }));
      await assert.rejects(
        applier.apply(oci(ref, unknown), inTeamA),
        refusedWith('SecurityProfileInvalid', 'BASE_PROFILE', (e) => {
          assert.ok(!e.message.includes('SECRET_VALUE_42'), e.message);
          assert.match(e.message, /defaultAction/, 'the JSON path at fault is named');
        }),
      );
    });

    it('a file over the cap is refused', async () => {
      const big = join(seccompRoot, 'big.json');
      writeFileSync(big, Buffer.concat([Buffer.from('{"defaultAction":"SCMP_ACT_ALLOW"}'), Buffer.alloc(DEFAULT_MAX_ARTIFACT_BYTES, ' ')]));
      await assert.rejects(applier.apply(oci(ref, big), inTeamA), refusedWith('SecurityProfileInvalid', 'BASE_PROFILE'));
    });

    it('a FIFO is refused without waiting for a writer', async () => {
      const fifo = join(seccompRoot, 'fifo.json');
      execFileSync('mkfifo', [fifo]);
      await assert.rejects(applier.apply(oci(ref, fifo), inTeamA), refusedWith('FailedPrecondition', 'BASE_PROFILE'));
    });
  });

  describe('mode: audit (docs/audit-mode.md)', () => {
    const auditRule = (mode: string) => ['rules:', `  - scope: ${HOST}/audit`, '    kinds: [seccomp]', '    unsigned: true', `    mode: ${mode}`];
    const verdictIn = (path: string, syscall: string) => evaluate(decodeSeccomp(readFileSync(path)), { syscall }).action;

    it('logs what only the artifact denies, keeps the baseline, and enforces again at the next create once the rule says enforce', async () => {
      // mkdir: denied by the artifact only; unshare: denied by the node baseline as well.
      const ref = await ingest('audit/one', denySyscalls(['mkdir', 'unshare']));
      writePolicy(auditRule('audit'));
      const audited = await applier.apply(oci(ref), inTeamA);
      assert.equal(audited.mode, 'audit');
      assert.equal(verdictIn(audited.path, 'mkdir'), 'SCMP_ACT_LOG');
      assert.equal(verdictIn(audited.path, 'unshare'), 'SCMP_ACT_ERRNO');
      assert.equal(verdictIn(audited.path, 'read'), 'SCMP_ACT_ALLOW');
      writePolicy(auditRule('enforce'));
      const enforced = await applier.apply(oci(ref), inTeamA);
      assert.equal(enforced.mode, 'enforce');
      assert.notEqual(enforced.path, audited.path);
      assert.equal(verdictIn(enforced.path, 'mkdir'), 'SCMP_ACT_ERRNO');
      writePolicy(auditRule('audit'));
      assert.equal((await applier.apply(oci(ref), inTeamA)).path, audited.path);
    });
  });

  it('what a merge constrained is logged with its rules when the merge is made; every create says how many', async () => {
    writePolicy(['rules:', `  - scope: ${HOST}/effective`, '    kinds: [seccomp]', '    unsigned: true']);
    // Allows everything but uname: the baseline's denials constrain it.
    const ref = await ingest('effective/constrained', denySyscalls(['uname', 'getppid']));
    const lines: { level: string; msg: string; fields: Record<string, unknown> }[] = [];
    const deps = applierDeps({ pipeline: { pull: async () => Promise.reject(new Error('not used')) }, store, baseline, seccompRoot, policy: async () => holder.current() });
    const logging = new ProfileApplier({ ...deps, logger: { log: (level, msg, fields = {}) => lines.push({ level, msg, fields }) } });
    const first = await logging.apply(oci(ref), inTeamA);
    const second = await logging.apply(oci(ref), { who: 'container team-a/p/d', namespace: 'team-a' });
    assert.ok(first.constrained > 0);
    const warned = lines.filter((l) => l.msg === 'SecurityProfileMergeConstrained');
    assert.equal(warned.length, 1);
    assert.equal(warned[0]!.fields.who, inTeamA.who);
    assert.ok(Array.isArray(warned[0]!.fields.rules) && (warned[0]!.fields.rules as unknown[]).length > 0);
    const applied = lines.filter((l) => l.msg === 'OCI seccomp profile applied');
    assert.deepEqual(
      applied.map((l) => [l.fields.who, l.fields.constrained]),
      [
        [inTeamA.who, first.constrained],
        ['container team-a/p/d', second.constrained],
      ],
    );
  });

  it('merges are kept up to a total of bytes: past it the oldest is dropped and made again when needed', async () => {
    writePolicy(['rules:', `  - scope: ${HOST}/effective`, '    kinds: [seccomp]', '    unsigned: true']);
    const one = await ingest('effective/bytes-one', denySyscalls(['uname', 'getppid']));
    const two = await ingest('effective/bytes-two', denySyscalls(['uname', 'getpid']));
    const made: string[] = [];
    const deps = applierDeps({ pipeline: { pull: async () => Promise.reject(new Error('not used')) }, store, baseline, seccompRoot, policy: async () => holder.current() });
    const logger = { log: (_level: string, msg: string, fields: Record<string, unknown> = {}) => void (msg === 'SecurityProfileMergeConstrained' && made.push(String(fields.reference))) };
    const size = statSync((await new ProfileApplier({ ...deps, logger }).apply(oci(one), inTeamA)).path).size;
    made.length = 0;
    const bounded = new ProfileApplier({ ...deps, logger }, { mergeCacheBytes: Math.floor(size * 1.5) });
    await bounded.apply(oci(one), inTeamA);
    await bounded.apply(oci(one), inTeamA);
    await bounded.apply(oci(two), inTeamA);
    await bounded.apply(oci(one), inTeamA);
    assert.deepEqual(made, [one, two, one]);
    // Two creates that merge one artifact at once count its bytes once: room for two merges keeps both.
    made.length = 0;
    const roomy = new ProfileApplier({ ...deps, logger }, { mergeCacheBytes: Math.floor(size * 2.5) });
    await Promise.all([roomy.apply(oci(one), inTeamA), roomy.apply(oci(one), inTeamA)]);
    await roomy.apply(oci(two), inTeamA);
    await roomy.apply(oci(one), inTeamA);
    assert.equal(made.at(-1), two, 'one is not merged again after two');
  });

  it('a stored profile changed after its merge was made is refused at the next create (the merge is not reused for it)', async () => {
    writePolicy(['rules:', `  - scope: ${HOST}/effective`, '    kinds: [seccomp]', '    unsigned: true']);
    const layer = denySyscalls(['uname', 'getpid']);
    const ref = await ingest('effective/changed', layer);
    await applier.apply(oci(ref), inTeamA);
    await applier.apply(oci(ref), inTeamA);
    const blob = store.blobPath(sha256Digest(layer));
    const bad = Buffer.from(layer);
    bad[bad.length - 2] ^= 1;
    writeFileSync(blob, bad);
    await assert.rejects(applier.apply(oci(ref), inTeamA), refusedWith('SecurityProfileInvalid', 'DIGEST_MISMATCH'));
    writeFileSync(blob, layer);
    await applier.apply(oci(ref), inTeamA);
  });

  it('a stored artifact the artifact rules now refuse (judged by an older spoke) is refused at create, never merged', async () => {
    writePolicy(['rules:', `  - scope: ${HOST}/effective`, '    kinds: [seccomp]', '    unsigned: true']);
    // ERRNO(0) on the calls a runtime drops privileges with: they would report success and do nothing.
    const layer = Buffer.from(JSON.stringify({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['setuid', 'setgid', 'setgroups', 'capset'], action: 'SCMP_ACT_ERRNO', errnoRet: 0 }] }));
    const ref = await ingest('effective/errno-zero', layer);
    await assert.rejects(
      applier.apply(oci(ref), inTeamA),
      refusedWith('SecurityProfileInvalid', 'PROFILE_INVALID', (e) => assert.equal(e.context.path, 'syscalls[0].errnoRet')),
    );
  });

  it('an effective file with the right size but other bytes is replaced: its content hashes to its name', async () => {
    writePolicy(['rules:', `  - scope: ${HOST}/effective`, '    kinds: [seccomp]', '    unsigned: true']);
    const layer = denySyscalls(['uname']);
    const ref = await ingest('effective/one', layer);
    // (uname: allowed by the baseline, so this effective profile is one no other test wrote.)
    const { path, sha } = plantLookalikeEffective(seccompRoot, baseline, layer);
    const applied = await applier.apply(oci(ref), inTeamA);
    assert.equal(applied.path, path);
    assert.equal(createHash('sha256').update(readFileSync(path)).digest('hex'), sha);
  });

  it('an effective file changed after a create is checked again and replaced at the next create: the name is trusted only while the file is the one written', async () => {
    writePolicy(['rules:', `  - scope: ${HOST}/effective`, '    kinds: [seccomp]', '    unsigned: true']);
    const ref = await ingest('effective/changed-after', denySyscalls(['setdomainname']));
    const first = await applier.apply(oci(ref), inTeamA);
    const written = readFileSync(first.path);
    // Same size, same inode (rewritten in place), its times set back: an allow-all look-alike.
    const before = statSync(first.path);
    const allowAll = Buffer.alloc(written.length, ' ');
    Buffer.from('{"defaultAction":"SCMP_ACT_ALLOW"}').copy(allowAll);
    writeFileSync(first.path, allowAll);
    utimesSync(first.path, before.atime, before.mtime);
    const again = await applier.apply(oci(ref), inTeamA);
    assert.equal(again.path, first.path);
    assert.deepEqual(readFileSync(again.path), written, 'the file holds the merge again');
  });

  it("an effective file removed by another process (a second shim's gc on this store) is written again at the next create", async () => {
    writePolicy(['rules:', `  - scope: ${HOST}/effective`, '    kinds: [seccomp]', '    unsigned: true']);
    const ref = await ingest('effective/two', denySyscalls(['sethostname']));
    const first = await applier.apply(oci(ref), inTeamA);
    rmSync(first.path);
    const again = await applier.apply(oci(ref), inTeamA);
    assert.equal(again.path, first.path);
    assert.ok(statSync(again.path).isFile(), 'the create names a file that is there');
  });
});
