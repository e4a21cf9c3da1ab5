// The store's in-use bookkeeping after faults: a torn or garbage in-use file (it is not flushed)
// never breaks a create, `store ls` or gc, gc removes nothing until the runtime holders are
// rebuilt, and pins live in their own flushed file and survive whatever happens to in-use.json.

import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import type { Digest } from '../../../src/core/digest.js';
import { rejectsWith } from '../../helpers/assert.js';
import { packProfile } from '../../../src/publish/pack.js';
import { ProfileStore } from '../../../src/store/store.js';
import { settlesWithinTurn } from '../../helpers/event-loop.js';

const dirs: string[] = [];
after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

async function storeWith(bodies: string[]): Promise<{ store: ProfileStore; dir: string; digests: Digest[] }> {
  const dir = mkdtempSync(join(tmpdir(), 'spoke-inuse-'));
  dirs.push(dir);
  const store = new ProfileStore({ root: dir });
  const digests: Digest[] = [];
  for (const body of bodies) {
    const p = packProfile(Buffer.from(body), 'seccomp');
    await store.ingest({ digest: p.manifestDigest, manifestBytes: p.manifest, layerDigest: p.layerDigest, layerBytes: p.layer, kind: 'seccomp', reference: `r.io/p@${p.manifestDigest}`, rule: 'rules[0]', servedBy: 'r.io' });
    digests.push(p.manifestDigest);
  }
  return { store, dir, digests };
}

const BODIES = ['{"defaultAction":"SCMP_ACT_ERRNO"}', '{"defaultAction":"SCMP_ACT_KILL"}'];

// What a crash can leave of an unflushed file: nothing, a prefix, or bytes of something else.
const DAMAGE: [string, string | Buffer][] = [
  ['empty', ''],
  ['truncated', '{"holders":{"container:abc":"sha256:'],
  ['garbage', Buffer.from([0x00, 0xff, 0x13, 0x37, 0x00, 0x00])],
  ['wrong shape', '{"holders":["container:abc"]}'],
];

describe('in-use set after a crash', () => {
  for (const [name, bytes] of DAMAGE) {
    it(`${name} in-use.json: creates, ls and gc work; gc removes nothing until the rebuild`, async () => {
      const { store, dir, digests } = await storeWith(BODIES);
      const [used, unused] = digests as [Digest, Digest];
      await store.markInUse(used, 'container:c1');
      writeFileSync(join(dir, 'state', 'in-use.json'), bytes);

      // store ls
      const listed = await store.list();
      assert.equal(listed.length, 2);
      // gc (dry run and real) keeps everything: any artifact may be in use
      const dry = await store.gc({ dryRun: true });
      assert.deepEqual(dry.removed, []);
      assert.equal(dry.inUseComplete, false);
      await store.gc();
      assert.ok(await store.has(unused));
      await rejectsWith(store.remove(unused), { code: 'FailedPrecondition', reason: 'IN_USE' });

      // the shim's create path goes on, and says the set needs a rebuild
      assert.equal(await store.markInUse(used, 'pending:1:x'), false);
      assert.equal(await store.transferInUse('pending:1:x', 'container:c2', used), false);
      assert.deepEqual(await store.inUseHolders(used), ['container:c2']);
      assert.equal((await store.gc({ dryRun: true })).inUseComplete, false, 'a write does not make the set complete');

      // the rebuild from the runtime makes it complete; gc works again
      await store.replaceInUse(new Map([['container:c1', used]]));
      const after = await store.gc();
      assert.equal(after.inUseComplete, true);
      assert.deepEqual(after.removed, [unused]);
      assert.ok(await store.has(used));
    });
  }

  it('pins live in their own file and survive a destroyed in-use.json', async () => {
    const { store, dir, digests } = await storeWith(BODIES);
    const [pinned, other] = digests as [Digest, Digest];
    await store.markInUse(pinned, `pin:${pinned}`);
    await store.markInUse(other, 'container:c1');
    assert.ok(!readFileSync(join(dir, 'state', 'in-use.json'), 'utf8').includes('pin:'), 'no pin in the runtime file');
    writeFileSync(join(dir, 'state', 'in-use.json'), '{"hol');
    await store.replaceInUse(new Map());
    assert.deepEqual(await store.inUseHolders(pinned), [`pin:${pinned}`]);
    const r = await store.gc();
    assert.deepEqual(r.removed, [other]);
    assert.ok(await store.has(pinned));
    await store.release(`pin:${pinned}`);
    assert.deepEqual((await store.gc()).removed, [pinned]);
  });

  it('pins of an older in-use.json are moved to the pins file, never dropped', async () => {
    const { store, dir, digests } = await storeWith(BODIES);
    const [a] = digests as [Digest];
    writeFileSync(join(dir, 'state', 'in-use.json'), JSON.stringify({ holders: { 'pin:old': a, 'container:c': a } }));
    assert.deepEqual((await store.inUseHolders(a)).sort(), ['container:c', 'pin:old']);
    await store.replaceInUse(new Map());
    assert.deepEqual(await store.inUseHolders(a), ['pin:old']);
    assert.ok(readFileSync(join(dir, 'state', 'pins.json'), 'utf8').includes('pin:old'));
  });

  it('an unreadable pins file refuses gc instead of forgetting the pins', async () => {
    const { store, dir, digests } = await storeWith(BODIES);
    await store.markInUse(digests[0]!, 'pin:x');
    writeFileSync(join(dir, 'state', 'pins.json'), 'not json');
    await rejectsWith(store.gc(), { code: 'Internal', reason: 'STATE_CORRUPT' });
    assert.ok(await store.has(digests[0]!));
  });

  it('remembers which artifacts an effective file was merged from', async () => {
    const { store, digests } = await storeWith(BODIES);
    const sha = 'e'.repeat(64);
    assert.deepEqual(await store.effectiveDigests(sha), []);
    await store.recordEffective(sha, digests[0]!);
    await store.recordEffective(sha, digests[1]!);
    await store.recordEffective(sha, digests[0]!);
    assert.deepEqual(await store.effectiveDigests(sha), digests);
    await rejectsWith(store.recordEffective('../x', digests[0]!), { code: 'InvalidArgument', reason: 'DIGEST_INVALID' });
    // gc forgets the origins it removed
    await store.markInUse(digests[0]!, 'container:keep');
    await store.gc();
    assert.deepEqual(await store.effectiveDigests(sha), [digests[0]]);
    await store.release('container:keep');
    await store.gc();
    assert.deepEqual(await store.effectiveDigests(sha), []);
  });
});

describe('in-use updates on the create path', () => {
  it('records and hands over a holder without a file-system trip through the thread pool (the create path)', async () => {
    const { store, digests } = await storeWith(['{"defaultAction":"SCMP_ACT_TRAP"}']);
    const d = digests[0]!;
    // The first lock of a process opens its owner socket (lock.ts); every later update is synchronous.
    await store.markInUse(d, 'pending:0:warm');
    for (const [what, update] of [
      ['markInUse', () => store.markInUse(d, 'pending:1:a')],
      ['transferInUse', () => store.transferInUse('pending:1:a', 'container:c1', d)],
      ['release', () => store.release('container:c1')],
    ] as const) {
      const { value, turned } = await settlesWithinTurn(update);
      assert.equal(value, true);
      assert.equal(turned, false, `${what} waited on the event loop`);
    }
    assert.deepEqual(await store.inUseHolders(d), ['pending:0:warm']);
  });
});

