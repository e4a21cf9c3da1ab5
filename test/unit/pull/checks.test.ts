// The pipeline's content checks: what becomes a verdict on a digest, and what does not.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { SpokeError } from '../../../src/core/errors.js';
import { sha256Digest } from '../../../src/core/digest.js';
import { permanent } from '../../../src/pull/checks.js';
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
