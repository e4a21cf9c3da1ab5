// The bench's conforming floor (test/bench/floor.ts) does the work it is credited with: a floor
// that skipped a check would make a target look below what a conforming pull costs
// (docs/benchmarks.md).

import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Pool } from 'undici';
import type { Digest } from '../../src/core/digest.js';
import { parsePolicy } from '../../src/policy/load.js';
import type { Policy } from '../../src/policy/types.js';
import { signArtifact } from '../../src/publish/sign.js';
import { UndiciRegistryClient } from '../../src/registry/client.js';
import { benchPolicyText, conformingPullRef, FloorRefusal } from '../bench/floor.js';
import { startRegistry, type TestRegistry } from '../helpers/registry.js';
import { makeKey, pushTestArtifact, type TestKey } from '../helpers/signing.js';

describe('the conforming floor of the bench', () => {
  let reg: TestRegistry;
  let pool: Pool;
  let dir: string;
  let key: TestKey;
  let policy: Policy;
  /** A node policy: open/ unsigned, bench/ signed by `signer`. */
  const policyFor = (signer: TestKey, file: string): Policy => {
    const keyFile = join(dir, `${file}.pub`);
    writeFileSync(keyFile, signer.publicPem);
    return parsePolicy(benchPolicyText(reg.host, keyFile), join(dir, `${file}.yaml`), (p) => readFileSync(p));
  };
  before(async () => {
    reg = await startRegistry();
    pool = new Pool(reg.url);
    dir = mkdtempSync(join(tmpdir(), 'spoke-floor-test-'));
    key = makeKey('p256');
    policy = policyFor(key, 'policy');
  });
  after(async () => {
    await pool.close();
    await reg.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const refusal = (reason: FloorRefusal['reason']) => (e: unknown) => e instanceof FloorRefusal && e.reason === reason;

  it('places the profile and a provenance record under their names, leaving no temp file', async () => {
    const profile = { defaultAction: 'SCMP_ACT_ERRNO', syscalls: [{ names: ['read'], action: 'SCMP_ACT_ALLOW' }] };
    const a = await pushTestArtifact(reg.url, reg.host, 'open/floor', profile);
    await conformingPullRef(pool, a.reference, dir, 'plain', policy);
    assert.deepEqual(JSON.parse(readFileSync(join(dir, 'plain'), 'utf8')), profile);
    const record = JSON.parse(readFileSync(join(dir, 'plain.record'), 'utf8')) as { digest: string; manifest: string };
    assert.equal(record.digest, a.digest);
    assert.deepEqual(Buffer.from(record.manifest, 'base64'), a.manifest);
    assert.deepEqual(readdirSync(dir).filter((f) => f.startsWith('.tmp-')), []);
  });

  it('refuses a layer that is not a valid seccomp profile, and places nothing', async () => {
    const a = await pushTestArtifact(reg.url, reg.host, 'open/floor', { notAProfile: true });
    await assert.rejects(conformingPullRef(pool, a.reference, dir, 'odd', policy), refusal('NOT_SECCOMP'));
    // Shaped like a profile, but its action is none of seccomp's: ValidateArtifact refuses it.
    const b = await pushTestArtifact(reg.url, reg.host, 'open/floor', { defaultAction: 'SCMP_ACT_ALLOW_ALL' });
    await assert.rejects(conformingPullRef(pool, b.reference, dir, 'odd', policy), refusal('NOT_SECCOMP'));
    assert.ok(!readdirSync(dir).some((f) => f.startsWith('odd')));
  });

  it('asks the node policy before any request: a repository no rule allows gets none', async () => {
    let requests = 0;
    const server = createServer((_req, res) => {
      requests++;
      res.statusCode = 404;
      res.end();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const counting = new Pool(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
    try {
      await assert.rejects(conformingPullRef(counting, `${reg.host}/closed/floor@sha256:${'1'.repeat(64)}`, dir, 'closed', policy), refusal('POLICY'));
      await assert.rejects(conformingPullRef(counting, `${reg.host}/open/floor:latest`, dir, 'closed', policy), refusal('POLICY'));
      assert.equal(requests, 0);
    } finally {
      await counting.close();
      await new Promise((r) => server.close(r));
    }
  });

  it('refuses a manifest whose bytes do not hash to the digest asked for', async () => {
    // A server that answers every GET with the same manifest, whatever digest was asked.
    const a = await pushTestArtifact(reg.url, reg.host, 'open/floor');
    const server = createServer((_req, res) => res.end(a.manifest));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const other = new Pool(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
    try {
      const wrong = `${reg.host}/open/floor@sha256:${'0'.repeat(64)}`;
      await assert.rejects(conformingPullRef(other, wrong, dir, 'wrong', policy), refusal('DIGEST'));
      assert.ok(!readdirSync(dir).some((f) => f.startsWith('wrong')));
    } finally {
      await other.close();
      await new Promise((r) => server.close(r));
    }
  });

  it('verifies the bundle signature against the key and refuses another key', async () => {
    const a = await pushTestArtifact(reg.url, reg.host, 'bench/floor');
    const client = new UndiciRegistryClient({ plainHttp: true });
    try {
      await signArtifact({ registry: client, repo: { registry: reg.host, repository: 'bench/floor' }, digest: a.digest as Digest, manifestBytes: a.manifest, key: key.privatePem, format: 'bundle' });
    } finally {
      await client.close();
    }
    await conformingPullRef(pool, a.reference, dir, 'signed', policy);
    await assert.rejects(conformingPullRef(pool, a.reference, dir, 'forged', policyFor(makeKey('p256'), 'other')), refusal('SIGNATURE'));
    assert.ok(!readdirSync(dir).some((f) => f.startsWith('forged')));
  });
});
