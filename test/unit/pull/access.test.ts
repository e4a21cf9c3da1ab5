// Which credentials proved access to which digest (src/pull/access.ts): bounded in digests and in
// identities per digest, a newly proven identity always kept.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Digest } from '../../../src/core/digest.js';
import { AccessMemory, credentialIdentity } from '../../../src/pull/access.js';
import type { ProvenanceRecord } from '../../../src/store/store.js';

const D = `sha256:${'a'.repeat(64)}` as Digest;
const record = { digest: D } as ProvenanceRecord;
const who = (n: number) => credentialIdentity({ kind: 'basic', username: 'u', password: `p${n}` });

describe('AccessMemory', () => {
  it('keeps a bounded number of identities per digest, the newest proven ones', () => {
    const access = new AccessMemory();
    // A public repository ignores the password: each pod's made-up credentials prove "access" anew.
    for (let n = 0; n < 10_000; n++) access.remember(D, who(n));
    assert.ok(access.mayReuse(record, who(9_999)), 'the last proven identity is kept');
    const kept = Array.from({ length: 10_000 }, (_, n) => n).filter((n) => access.mayReuse(record, who(n))).length;
    assert.ok(kept >= 1 && kept <= 64, `${kept} identities kept for one digest`);
    assert.ok(!access.mayReuse(record, who(0)), 'the oldest went first');
  });

  it('an identity proven again moves to the newest', () => {
    const access = new AccessMemory();
    access.remember(D, who(0));
    for (let n = 1; n < 1_000; n++) {
      access.remember(D, who(n));
      access.remember(D, who(0));
    }
    assert.ok(access.mayReuse(record, who(0)));
    assert.ok(!access.mayReuse(record, 'node'), 'node is never remembered here');
  });
});
