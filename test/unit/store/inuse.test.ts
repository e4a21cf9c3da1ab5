// The store's in-use bookkeeping after faults: a torn or garbage in-use file (it is not flushed)
// never breaks a create, `store ls` or gc, gc removes nothing until the runtime holders are
// rebuilt, and pins live in their own flushed file and survive whatever happens to in-use.json.

import assert from 'node:assert/strict';
import { appendFileSync, chownSync, closeSync, existsSync, fstatSync, lstatSync, openSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { Digest } from '../../../src/core/digest.js';
import { rejectsWith } from '../../helpers/assert.js';
import { packProfile } from '../../../src/publish/pack.js';
import { ProfileStore } from '../../../src/store/store.js';
import { settlesWithinTurn } from '../../helpers/event-loop.js';
import { withFs } from '../../helpers/with-fs.js';

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

const readIfExists = (path: string): string => (existsSync(path) ? readFileSync(path, 'utf8') : '');

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
      // Neither the snapshot nor the journal of changes since is flushed.
      writeFileSync(join(dir, 'state', 'in-use.json'), bytes);
      writeFileSync(join(dir, 'state', 'in-use.log'), bytes);

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
    for (const f of ['in-use.json', 'in-use.log']) assert.ok(!readIfExists(join(dir, 'state', f)).includes('pin:'), `no pin in ${f}`);
    writeFileSync(join(dir, 'state', 'in-use.json'), '{"hol');
    writeFileSync(join(dir, 'state', 'in-use.log'), '{"hol');
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

  it('a holder file with one entry that does not name a digest is unreadable as a whole: gc refuses, never drops the holder', async () => {
    const { store, dir, digests } = await storeWith(BODIES);
    const [a] = digests as [Digest];
    const damaged = (path: string) => writeFileSync(path, readFileSync(path, 'utf8').replace(a, `${a.slice(0, -1)}G`));
    await store.markInUse(a, 'pin:warm');
    damaged(join(dir, 'state', 'pins.json'));
    await rejectsWith(store.gc({ minAgeMs: 0 }), { code: 'Internal', reason: 'STATE_CORRUPT' });
    assert.ok(await store.has(a));
    rmSync(join(dir, 'state', 'pins.json'));
    await store.replaceInUse(new Map([['container:c1', a]]));
    damaged(join(dir, 'state', 'in-use.json'));
    assert.equal((await store.inUseState()).complete, false);
    assert.equal((await store.gc({ minAgeMs: 0 })).removed.length, 0);
    assert.ok(await store.has(a));
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


describe('in-use journal', () => {
  const CHILD = fileURLToPath(new URL('./inuse-child.js', import.meta.url));
  const run = (args: string[]) =>
    new Promise<number | null>((resolve) => {
      const p = spawn(process.execPath, [CHILD, ...args], { stdio: ['ignore', 'ignore', 'inherit'] });
      p.once('exit', (code) => resolve(code));
    });

  it('appends from several processes survive concurrent compactions, and readers never miss a holder', async () => {
    const { store, dir } = await storeWith([]);
    const a = `sha256:${'a'.repeat(64)}` as Digest;
    await store.markInUse(a, 'container:anchor');
    const codes = await Promise.all([
      run(['append', dir, 'p', '1000']),
      run(['append', dir, 'q', '1000']),
      run(['compact', dir, '200']),
      run(['compact', dir, '200']),
      run(['read', dir, '500']),
    ]);
    assert.deepEqual(codes, [0, 0, 0, 0, 0]);
    const holders = new Set(await store.inUseHolders(a));
    for (const name of ['p', 'q']) for (let i = 0; i < 1000; i++) assert.ok(holders.has(`container:${name}-${i}`), `container:${name}-${i} was lost`);
    assert.equal(holders.size, 2001);
    assert.equal((await store.inUseState()).complete, true);
  });

  it('an append whose stat of the opened journal fails closes the journal', async () => {
    const { store, dir } = await storeWith([]);
    const a = `sha256:${'a'.repeat(64)}` as Digest;
    await store.markInUse(a, 'container:first');
    const journal = join(dir, 'state', 'in-use.log');
    const open = () => fs.readdirSync('/proc/self/fd').length;
    const before = open();
    const failingOnJournal = (fstat: (...args: unknown[]) => unknown) => (fd: unknown, ...rest: unknown[]) => {
      if (fs.readlinkSync(`/proc/self/fd/${String(fd)}`) === journal) throw Object.assign(new Error('EIO: i/o error, fstat'), { code: 'EIO' });
      return fstat(fd, ...rest);
    };
    await assert.rejects(
      withFs('fstatSync', failingOnJournal, () => store.markInUse(a, 'container:second')),
      (e: NodeJS.ErrnoException) => e.code === 'EIO',
    );
    assert.equal(open(), before);
  });

  it('an append that lands in a journal folded and removed under it is made again, though a new journal took its inode number', async () => {
    const { store, dir } = await storeWith([]);
    const a = `sha256:${'a'.repeat(64)}` as Digest;
    await store.markInUse(a, 'container:first');
    const journal = join(dir, 'state', 'in-use.log');
    const line = `\n${JSON.stringify({ set: { 'container:other': a } })}`;
    // Between this process's open of the journal and its write, another process folds the journal
    // into the snapshot and removes it. Once this process closes it, its inode number is free, and
    // ext4 hands it to the next file created in that directory: a new journal can carry the
    // removed one's number. That is made here by creating files until one gets it.
    const { writeSync, closeSync } = fs;
    let journalFd: number | undefined;
    let removed: number | undefined;
    let reused = false;
    fs.writeSync = ((fd: number, ...rest: unknown[]) => {
      if (removed === undefined && fs.readlinkSync(`/proc/self/fd/${fd}`) === journal) {
        removed = fs.fstatSync(fd).ino;
        journalFd = fd;
        assert.equal(spawnSync(process.execPath, [CHILD, 'compact', dir, '1']).status, 0);
      }
      return (writeSync as (...a: unknown[]) => number)(fd, ...rest);
    }) as typeof fs.writeSync;
    fs.closeSync = ((fd: number) => {
      closeSync(fd);
      if (fd !== journalFd) return;
      journalFd = undefined;
      const probes: string[] = [];
      for (let i = 0; i < 64 && !reused; i++) {
        const probe = join(dir, 'state', `.probe-${i}`);
        fs.writeFileSync(probe, line, { flag: 'wx' });
        reused = fs.statSync(probe).ino === removed;
        if (reused) fs.renameSync(probe, journal);
        else probes.push(probe);
      }
      for (const probe of probes) fs.unlinkSync(probe);
      if (!reused) fs.appendFileSync(journal, line);
    }) as typeof fs.closeSync;
    syncBuiltinESMExports();
    try {
      await store.markInUse(a, 'container:second');
    } finally {
      Object.assign(fs, { writeSync, closeSync });
      syncBuiltinESMExports();
    }
    assert.ok(removed !== undefined);
    const holders = await new ProfileStore({ root: dir }).inUseHolders(a);
    assert.deepEqual(holders.sort(), ['container:first', 'container:other', 'container:second'], `the new journal took the removed one's inode number: ${reused}`);
  });

  it('an append the file system takes in part (a full disk) fails: the holder is never reported recorded', async () => {
    const { store, dir, digests } = await storeWith(BODIES);
    const d = digests[0]!;
    await store.markInUse(d, 'container:c1');
    const journal = join(dir, 'state', 'in-use.log');
    const { writeSync } = fs;
    fs.writeSync = ((fd: number, buffer: Uint8Array, ...rest: unknown[]) => {
      if (fs.readlinkSync(`/proc/self/fd/${fd}`) !== journal) return (writeSync as (...a: unknown[]) => number)(fd, buffer, ...rest);
      // The kernel writes what fits and says how much: half the line.
      return writeSync(fd, buffer, 0, buffer.length >> 1);
    }) as typeof fs.writeSync;
    syncBuiltinESMExports();
    try {
      await rejectsWith(store.markInUse(d, 'pending:c2'), { code: 'Unavailable', reason: 'FILE_UNWRITABLE' });
    } finally {
      fs.writeSync = writeSync;
      syncBuiltinESMExports();
    }
    // The torn line is seen by the next reader: the set is rebuilt from the runtime.
    assert.equal((await new ProfileStore({ root: dir }).inUseState()).complete, false);
  });

  it('a line appended after a torn tail is kept; the torn line makes the set incomplete', async () => {
    const { store, dir, digests } = await storeWith(BODIES);
    const d = digests[0]!;
    await store.markInUse(d, 'container:c1');
    writeFileSync(join(dir, 'state', 'in-use.log'), readFileSync(join(dir, 'state', 'in-use.log'), 'utf8').slice(0, -5));
    assert.equal(await new ProfileStore({ root: dir }).markInUse(d, 'container:c2'), false, 'the writer is told to rebuild');
    const state = await store.inUseState();
    assert.deepEqual(state.byDigest.get(d), ['container:c2']);
    assert.equal(state.complete, false);
  });

  it('a journal torn by someone else after this process last appended is seen at its next append', async () => {
    const { store, dir, digests } = await storeWith(BODIES);
    const d = digests[0]!;
    assert.equal(await store.markInUse(d, 'container:c1'), true);
    appendFileSync(join(dir, 'state', 'in-use.log'), '\n{"set":{"contai');
    assert.equal(await store.markInUse(d, 'container:c2'), false, 'the writer is told to rebuild');
    await store.replaceInUse(new Map([['container:c2', d]]));
    assert.equal(await store.markInUse(d, 'container:c3'), true);
  });

  it('folds the old journal a crash left mid-compaction, before the journal it would overwrite', async () => {
    const { store, dir, digests } = await storeWith(BODIES);
    const [d1, d2] = digests as [Digest, Digest];
    writeFileSync(join(dir, 'state', 'in-use.json'), JSON.stringify({ holders: { 'container:s': d1 }, complete: true }));
    writeFileSync(join(dir, 'state', 'in-use.log.old'), `\n${JSON.stringify({ set: { 'container:old': d1 } })}\n${JSON.stringify({ del: ['container:s'] })}`);
    writeFileSync(join(dir, 'state', 'in-use.log'), `\n${JSON.stringify({ set: { 'pending:1:x': d2 } })}`);
    assert.deepEqual(Object.fromEntries((await store.inUse()).entries()), { [d1]: ['container:old'], [d2]: ['pending:1:x'] });
    await store.replaceInUse(new Map([['container:new', d1]]));
    assert.ok(!existsSync(join(dir, 'state', 'in-use.log.old')) && !existsSync(join(dir, 'state', 'in-use.log')));
    assert.deepEqual(Object.fromEntries((await store.inUse()).entries()), { [d1]: ['container:new'], [d2]: ['pending:1:x'] });
  });

  it('is folded into the snapshot once it grows, in the background, with nothing lost', async () => {
    const { store, dir, digests } = await storeWith(BODIES);
    const d = digests[0]!;
    // Creates come one per call: the event loop turns between them.
    for (let i = 0; i < 1200; i++) {
      await store.markInUse(d, `container:grow-${i}`);
      await new Promise((r) => setImmediate(r));
    }
    await store.release('container:grow-7');
    const snapshot = join(dir, 'state', 'in-use.json');
    for (const deadline = Date.now() + 5000; !readIfExists(snapshot).includes('container:grow-0'); await new Promise((r) => setImmediate(r))) {
      assert.ok(Date.now() < deadline, 'the journal was never folded');
    }
    const log = readIfExists(join(dir, 'state', 'in-use.log'));
    assert.ok(log.length < 2 * 64 * 1024, `journal of ${log.length} bytes`);
    const holders = await new ProfileStore({ root: dir }).inUseHolders(d);
    assert.equal(holders.length, 1199);
    assert.ok(!holders.includes('container:grow-7'));
  });
});

// State files someone else could have written: planted while the store's directories were open
// to others (they are made private at each process's first use, but what is inside stays), by a
// user who may keep a descriptor to rewrite them at will, or a link to a file of root's
// (docs/security-model.md#atomic-store). Each counts as unreadable, never as absent.
describe('foreign state files', () => {
  const root = (process.geteuid?.() ?? 0) === 0;
  const skip = !root && 'needs root to give a file away';
  const NOBODY = 65534;
  const given = (path: string) => chownSync(path, NOBODY, NOBODY);
  /** `path` made a link to a file of root's elsewhere holding `bytes`; returns that file. */
  const linked = (path: string, bytes: string): string => {
    const target = join(mkdtempSync(join(tmpdir(), 'spoke-planted-')), 'target');
    dirs.push(dirname(target));
    writeFileSync(target, bytes);
    rmSync(path, { force: true });
    symlinkSync(target, path);
    return target;
  };
  const plants: [string, (path: string, bytes: string) => void][] = [
    ['another user owns', (path, bytes) => (writeFileSync(path, bytes), given(path))],
    ['is a link to a file of root\'s', (path, bytes) => void linked(path, bytes)],
  ];
  const released = (holder: string) => `\n${JSON.stringify({ del: [holder] })}`;

  for (const [how, plant] of plants) {
    for (const [file, bytes] of [
      ['in-use.json', JSON.stringify({ holders: {}, complete: true })],
      ['in-use.log', released('container:c1')],
      ['in-use.log.old', released('container:c1')],
    ] as const) {
      it(`an ${file} that ${how} makes the in-use set incomplete: gc removes nothing held`, { skip }, async () => {
        const { store, dir, digests } = await storeWith(BODIES);
        const [used] = digests as [Digest];
        await store.replaceInUse(new Map([['container:c1', used]]));
        plant(join(dir, 'state', file), bytes);
        assert.equal((await store.inUseState()).complete, false);
        const r = await store.gc();
        assert.deepEqual(r.removed, []);
        assert.ok(await store.has(used));
        // The rebuild writes the set anew, over the planted file.
        await store.replaceInUse(new Map([['container:c1', used]]));
        assert.equal((await store.inUseState()).complete, true);
        assert.deepEqual(await store.inUseHolders(used), ['container:c1']);
      });
    }

    it(`a pins.json that ${how} refuses gc (STATE_CORRUPT), never "no pins"`, { skip }, async () => {
      const { store, dir, digests } = await storeWith(BODIES);
      const [pinned] = digests as [Digest];
      await store.markInUse(pinned, `pin:${pinned}`);
      plant(join(dir, 'state', 'pins.json'), JSON.stringify({ holders: {} }));
      await rejectsWith(store.gc(), { code: 'Internal', reason: 'STATE_CORRUPT' });
      assert.ok(await store.has(pinned));
    });

    it(`an effective file's origins record that ${how} counts as unreadable; the next record replaces it`, { skip }, async () => {
      const { store, dir, digests } = await storeWith(BODIES);
      const [a, b] = digests as [Digest, Digest];
      const sha = 'e'.repeat(64);
      await store.recordEffective(sha, a);
      plant(join(dir, 'state', 'effective', `${sha}.json`), JSON.stringify({ digests: [b] }));
      assert.deepEqual(await store.effectiveDigests(sha), []);
      await store.recordEffective(sha, a);
      assert.deepEqual(await store.effectiveDigests(sha), [a]);
      assert.ok(lstatSync(join(dir, 'state', 'effective', `${sha}.json`)).isFile());
    });
  }

  it('an in-use.log that is a link is never appended through: it is rotated away and the set rebuilt', { skip }, async () => {
    const { store, dir, digests } = await storeWith(BODIES);
    const [d] = digests as [Digest];
    await store.replaceInUse(new Map([['container:c1', d]]));
    const target = linked(join(dir, 'state', 'in-use.log'), 'root\'s own\n');
    assert.equal(await store.markInUse(d, 'container:c2'), false, 'the writer is told to rebuild');
    assert.equal(readFileSync(target, 'utf8'), 'root\'s own\n');
    assert.deepEqual((await store.inUseHolders(d)).sort(), ['container:c1', 'container:c2']);
  });

  it('an in-use.log another user owns is never appended to: it is rotated away and the set rebuilt', { skip }, async () => {
    const { store, dir, digests } = await storeWith(BODIES);
    const [d] = digests as [Digest];
    await store.replaceInUse(new Map([['container:c1', d]]));
    const journal = join(dir, 'state', 'in-use.log');
    writeFileSync(journal, '');
    given(journal);
    // Its owner's descriptor, which would see (and could rewrite) whatever is appended.
    const planted = openSync(journal, 'r');
    try {
      assert.equal(await store.markInUse(d, 'container:c2'), false, 'the writer is told to rebuild');
      assert.equal(fstatSync(planted).size, 0, 'nothing appended to the planted journal');
      const now = lstatSync(journal, { throwIfNoEntry: false });
      assert.ok(now === undefined || now.ino !== fstatSync(planted).ino, 'the planted journal is gone');
    } finally {
      closeSync(planted);
    }
    assert.deepEqual((await store.inUseHolders(d)).sort(), ['container:c1', 'container:c2']);
  });
});
