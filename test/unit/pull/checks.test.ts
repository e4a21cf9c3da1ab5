// The pipeline's content checks: what becomes a verdict on a digest, and what does not.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { SpokeError } from '../../../src/core/errors.js';
import { sha256Digest } from '../../../src/core/digest.js';
import { checkStored, permanent } from '../../../src/pull/checks.js';
import type { ProvenanceRecord } from '../../../src/store/record-format.js';
import { ProfileStore } from '../../../src/store/store.js';
import { spokeError } from '../../helpers/assert.js';

describe('permanent', () => {
  const dir = mkdtempSync(join(tmpdir(), 'spoke-checks-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const store = new ProfileStore({ root: dir, fsync: false });

  it('a check refusing the content records the verdict on the digest', async () => {
    const digest = sha256Digest(Buffer.from('refused'));
    await assert.rejects(permanent(store, digest, () => {
      throw new SpokeError('SecurityProfileInvalid', 'not a profile', {}, { reason: 'PROFILE_INVALID' });
    }), spokeError({ code: 'SecurityProfileInvalid', reason: 'PROFILE_INVALID' }));
    assert.ok(await store.getInvalid(digest));
  });

  it('an unexpected exception refuses the pull but is no verdict, and is transient to the kubelet (KEP: unclassified failures retry): it may not be the content', async () => {
    // A stack overflow depends on the process's stack, a TypeError on spoke's own code.
    const digest = sha256Digest(Buffer.from('unexpected'));
    await assert.rejects(permanent(store, digest, () => {
      throw new RangeError('Maximum call stack size exceeded');
    }), spokeError({ code: 'Internal' }));
    assert.equal(await store.getInvalid(digest), undefined);
  });
});

describe('checkStored', () => {
  const platform = { os: 'linux', architecture: 'amd64' };
  const manifest = (config: unknown) => Buffer.from(JSON.stringify({ schemaVersion: 2, config, layers: [] })).toString('base64');
  const record = (over: Partial<ProvenanceRecord>): ProvenanceRecord => ({
    schemaVersion: 1,
    digest: sha256Digest(Buffer.from('m')),
    manifest: manifest({ size: 2 }),
    kind: 'seccomp',
    layerDigest: sha256Digest(Buffer.from('l')),
    size: 100,
    references: [],
    rule: 'rules[0]',
    pulledAt: '2026-12-06T00:00:00Z',
    servedBy: 'r.io',
    verdicts: {},
    ...over,
  });

  it("the config descriptor's declared size is held to the limit, as a fetch holds it; for an index, the platform manifest's", () => {
    checkStored('r', record({ manifest: manifest({ size: 100 }) }), 'seccomp', 100, platform);
    assert.throws(() => checkStored('r', record({ manifest: manifest({ size: 101 }) }), 'seccomp', 100, platform), spokeError({ code: 'SecurityProfileInvalid', reason: 'SIZE_LIMIT' }));
    const indexed = record({ platform: { digest: sha256Digest(Buffer.from('p')), manifest: manifest({ size: 101 }), ...platform } });
    assert.throws(() => checkStored('r', indexed, 'seccomp', 100, platform), spokeError({ code: 'SecurityProfileInvalid', reason: 'SIZE_LIMIT' }));
  });

  it('a stored manifest without a config size is the store corrupt: refused, never taken as size 0', () => {
    for (const m of [manifest(undefined), manifest({ size: '2' }), manifest({ size: -1 }), Buffer.from('{').toString('base64')]) {
      assert.throws(() => checkStored('r', record({ manifest: m }), 'seccomp', 100, platform), spokeError({ code: 'Internal', reason: 'STATE_CORRUPT' }));
    }
  });
});
