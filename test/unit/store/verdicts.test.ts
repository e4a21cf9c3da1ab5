// The store's verdicts on a real filesystem: content verdicts carry their scope, files without it
// (or torn) count as none, `forget` clears both kinds of verdict, and the node-credential mark.

import assert from 'node:assert/strict';
import { chmodSync, chownSync, copyFileSync, mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ProfileStore } from '../../../src/store/store.js';
import { ingestInput } from './fixtures.js';

describe('ProfileStore verdicts', () => {
  let dir: string;
  let store: ProfileStore;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'spoke-verdicts-'));
    store = new ProfileStore({ root: dir, contentRules: 'spoke 1.0.0 aaa' });
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('a content verdict is kept with its scope; legacy and torn verdict files count as none', async () => {
    const { digest } = ingestInput('{"defaultAction":"SCMP_ACT_KILL"}');
    await store.recordInvalid(digest, 'artifact must have exactly one layer, has 2');
    assert.deepEqual({ ...(await store.getInvalid(digest)), at: '' }, { digest, reason: 'artifact must have exactly one layer, has 2', at: '', scope: 'content', rules: 'spoke 1.0.0 aaa' });
    // Another build's store takes it for none: its rules may admit the content.
    assert.equal(await new ProfileStore({ root: dir, contentRules: 'spoke 1.0.1 bbb' }).getInvalid(digest), undefined);
    const file = join(dir, 'invalid', 'sha256', `${digest.slice(7)}.json`);
    writeFileSync(file, JSON.stringify({ digest, reason: 'not a apparmor profile', at: '2026-01-01T00:00:00Z' }));
    assert.equal(await store.getInvalid(digest), undefined);
    writeFileSync(file, '{"digest":');
    assert.equal(await store.getInvalid(digest), undefined);
  });

  // A record's verdict vouches for a signature: a record someone else could have written (left
  // while the store's directories were open to others; they are made private at start) is none.
  const root = (process.geteuid?.() ?? 0) === 0;
  for (const [what, give, needsRoot] of [
    ['group and others may write', (f: string) => chmodSync(f, 0o666), false],
    ['another user owns', (f: string) => chownSync(f, 65534, 65534), true],
  ] as const) {
    it(`a record or invalid verdict that ${what} counts as none`, { skip: needsRoot && !root && 'needs root to give a file away' }, async () => {
      const i = ingestInput(`{"defaultAction":"SCMP_ACT_ERRNO","planted":"${what}"}`, { verdict: { policyHash: 'p1', signer: 'platform', format: 'bundle' } });
      await store.ingest(i);
      const fresh = () => new ProfileStore({ root: dir, contentRules: 'spoke 1.0.0 aaa' });
      assert.ok(await fresh().getRecord(i.digest), 'found while it is the store\'s own');
      give(join(dir, 'profiles', 'sha256', `${i.digest.slice(7)}.json`));
      assert.equal(await fresh().getRecord(i.digest), undefined);
      assert.equal(await store.getRecord(i.digest), undefined, 'nor through a record read before');
      await store.recordInvalid(i.digest, 'planted verdict');
      give(join(dir, 'invalid', 'sha256', `${i.digest.slice(7)}.json`));
      assert.equal(await fresh().getInvalid(i.digest), undefined);
    });
  }

  it('a record or invalid verdict that is a link counts as none, wherever it leads: to a root-owned file with a forged verdict too', async () => {
    const i = ingestInput('{"defaultAction":"SCMP_ACT_ERRNO","planted":"link"}', { verdict: { policyHash: 'p1', signer: 'platform', format: 'bundle' } });
    await store.ingest(i);
    const record = join(dir, 'profiles', 'sha256', `${i.digest.slice(7)}.json`);
    const elsewhere = join(mkdtempSync(join(tmpdir(), 'spoke-forged-')), 'r.json');
    copyFileSync(record, elsewhere);
    renameSync(record, `${record}.real`);
    symlinkSync(elsewhere, record);
    assert.equal(await new ProfileStore({ root: dir, contentRules: 'spoke 1.0.0 aaa' }).getRecord(i.digest), undefined);
    await store.recordInvalid(i.digest, 'planted verdict');
    const invalid = join(dir, 'invalid', 'sha256', `${i.digest.slice(7)}.json`);
    copyFileSync(invalid, `${elsewhere}.invalid`);
    rmSync(invalid);
    symlinkSync(`${elsewhere}.invalid`, invalid);
    assert.equal(await store.getInvalid(i.digest), undefined);
  });

  it('forget clears the invalid verdict and the signature verdicts, keeping the profile', async () => {
    const i = ingestInput('{"defaultAction":"SCMP_ACT_ERRNO"}', { verdict: { policyHash: 'p1', signer: 'platform', format: 'bundle' } });
    await store.ingest(i);
    await store.annotate(i.digest, { verdict: { policyHash: 'p2', signer: 'platform', format: 'cosign' } });
    await store.recordInvalid(i.digest, 'stale');
    assert.deepEqual(await store.forget(i.digest), { invalid: true, signatures: 2 });
    assert.equal(await store.getInvalid(i.digest), undefined);
    const record = await store.getRecord(i.digest);
    assert.deepEqual(record?.verdicts, {});
    assert.ok(await store.hasBlob(i.layerDigest));
    assert.deepEqual(await store.forget(i.digest), { invalid: false, signatures: 0 });
  });

  it('marks a record fetched with node credentials, and keeps the mark once set', async () => {
    const i = ingestInput('{"defaultAction":"SCMP_ACT_LOG","x":1}');
    await store.ingest({ ...i, nodeCredentials: false });
    assert.equal((await store.getRecord(i.digest))?.nodeCredentials, undefined);
    await store.ingest({ ...i, nodeCredentials: true });
    assert.equal((await store.getRecord(i.digest))?.nodeCredentials, true);
    await store.ingest({ ...i, nodeCredentials: false });
    assert.equal((await store.getRecord(i.digest))?.nodeCredentials, true);
  });
});
