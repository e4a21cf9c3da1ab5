// The store on a real filesystem: content addressing, provenance, in-use, gc, corruption, crashes.

import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { chownSync, existsSync, fstatSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync, symlinkSync, unlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { sha256Digest, type Digest } from '../../../src/core/digest.js';
import { rejectsWith, spokeError, throwsWith } from '../../helpers/assert.js';
import { withFs } from '../../helpers/with-fs.js';
import { createServer } from 'node:net';
import fsp from 'node:fs/promises';
import { syncBuiltinESMExports } from 'node:module';
import { ProfileStore, verdictUnder } from '../../../src/store/store.js';
import { withFileLock } from '../../../src/store/lock.js';
import { exists } from '../../../src/store/layout.js';
import { readStoreFileSync } from '../../../src/store/store-reads.js';
import { systemClock } from '../../../src/core/runtime.js';
import { ingestInput, poolRequests } from './fixtures.js';

/** Runs `fn` with a store directory of its own, removed afterwards. */
/** Runs `body` with `waiting` called each time a lock at `lockPath` is found taken (its link(2) fails). */
function whileWatchingLock<R>(lockPath: string, waiting: () => void, body: () => R): R {
  return withFs(
    'linkSync',
    (original) =>
      (...args: unknown[]) => {
        try {
          return original(...args);
        } catch (e) {
          if (args[1] === lockPath) waiting();
          throw e;
        }
      },
    body,
  );
}

async function inOwnStoreDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const own = mkdtempSync(join(tmpdir(), 'spoke-store-'));
  try {
    await fn(own);
  } finally {
    rmSync(own, { recursive: true, force: true });
  }
}

describe('ProfileStore', () => {
  let dir: string;
  let store: ProfileStore;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'spoke-store-'));
    store = new ProfileStore({ root: dir });
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('an ingest that fails once its files are in place (the directory flush) leaves no record: the failed pull is not answered from the store', () =>
    inOwnStoreDir(async (own) => {
      const flaky = new ProfileStore({ root: own, flushInline: () => true });
      const input = ingestInput('post-commit-failure');
      await flaky.getRecord(input.digest); // the directories exist before the fault is armed
      const eio = Object.assign(new Error('EIO: i/o error, fsync'), { code: 'EIO' });
      await assert.rejects(
        withFs('fsyncSync', (original) => (fd) => {
          if (fstatSync(fd as number).isDirectory()) throw eio;
          return original(fd);
        }, () => flaky.ingest(input)),
        (e: NodeJS.ErrnoException) => e.code === 'EIO',
      );
      assert.equal(await flaky.getRecord(input.digest), undefined, 'no record of the failed ingest');
      assert.equal(await new ProfileStore({ root: own }).getRecord(input.digest), undefined, 'nor for another reader');
      // Once the disk answers again, the next ingest stores it.
      await flaky.ingest(input);
      assert.ok(await flaky.getRecord(input.digest));
    }));

  it("an ingest that fails after finding the record another ingest placed leaves that record: only a record this ingest placed is taken back", () =>
    inOwnStoreDir(async (own) => {
      const input = ingestInput('placed-by-another');
      await new ProfileStore({ root: own }).ingest(input);
      const flaky = new ProfileStore({ root: own });
      const eio = Object.assign(new Error('EIO: i/o error, rename'), { code: 'EIO' });
      // The second ingest finds the record there and merges its reference into it: that write fails.
      await assert.rejects(
        withFs('renameSync', (original) => (from, to) => {
          if (String(to).includes(`${join('profiles', 'sha256')}`)) throw eio;
          return original(from, to);
        }, () => flaky.ingest({ ...input, reference: `${input.reference.split('@')[0]}-again@${input.digest}` })),
        (e: NodeJS.ErrnoException) => e.code === 'EIO',
      );
      assert.ok(await new ProfileStore({ root: own }).getRecord(input.digest), 'the first ingest\'s record stays');
    }));

  it('an ingest whose pull is stopped while the directory is flushed (after the renames) takes its record back: its callers were answered with the refusal', () =>
    inOwnStoreDir(async (own) => {
      const input = ingestInput('stopped-at-dir-flush');
      const placedBlob = join(own, 'blobs', 'sha256', input.layerDigest.slice('sha256:'.length));
      const stop = new AbortController();
      // Asked at each flush: once the blob is in place, the flush asked for is the directory's,
      // through the thread pool; the pull's deadline fires then.
      const flushInline = () => {
        if (existsSync(placedBlob)) stop.abort(Object.assign(new Error('pull did not finish in time'), { code: 'DEADLINE_TEST' }));
        return false;
      };
      const slow = new ProfileStore({ root: own, flushInline });
      await assert.rejects(slow.ingest(input, {}, stop.signal), (e: NodeJS.ErrnoException) => e.code === 'DEADLINE_TEST');
      assert.ok(stop.signal.aborted);
      assert.equal(await slow.getRecord(input.digest), undefined, 'no record of the stopped pull');
    }));

  it('makes its directories at first use without the thread pool', async () => {
    const fresh = new ProfileStore({ root: join(dir, 'fresh-store'), fsync: false });
    assert.equal(await poolRequests(() => fresh.getRecord(sha256Digest('none'))), 0);
    assert.ok(existsSync(join(dir, 'fresh-store', 'profiles', 'sha256')));
    // Private to the node's root: a profile pulled with a pod's credentials is that pod's to read.
    for (const d of ['', 'blobs', 'blobs/sha256', 'profiles/sha256', 'state', 'tmp', 'locks']) {
      assert.equal(statSync(join(dir, 'fresh-store', d)).mode & 0o777, 0o700, d || 'the store root');
    }
  });

  it('a first use that cannot make the directories fails, and the next use tries again', async () => {
    const root = join(dir, 'blocked-store');
    writeFileSync(root, 'a file where the store should be');
    const blocked = new ProfileStore({ root, fsync: false });
    await assert.rejects(blocked.getRecord(sha256Digest('none')), (e: NodeJS.ErrnoException) => e.code === 'EEXIST' || e.code === 'ENOTDIR');
    rmSync(root);
    assert.equal(await blocked.getRecord(sha256Digest('none')), undefined);
    assert.ok(existsSync(join(root, 'profiles', 'sha256')));
  });

  it('keeps its files private: files made ahead, what is written into them, and directories an older version made open', async () => {
    // A local user who could open a file made ahead would read the profile a later pull writes into it.
    const root = join(dir, 'older-store');
    mkdirSync(join(root, 'tmp'), { recursive: true, mode: 0o755 });
    mkdirSync(join(root, 'blobs', 'sha256'), { recursive: true, mode: 0o755 });
    const store = new ProfileStore({ root, fsync: false, preparedTempFiles: 2 });
    await store.prepareTempFiles();
    for (const name of readdirSync(join(root, 'tmp'))) assert.equal(statSync(join(root, 'tmp', name)).mode & 0o777, 0o600, name);
    const i = ingestInput('{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_ARM"]}');
    await store.ingest(i);
    assert.equal(statSync(store.blobPath(i.layerDigest)).mode & 0o777, 0o600);
    for (const d of ['', 'tmp', 'blobs', 'blobs/sha256']) assert.equal(statSync(join(root, d)).mode & 0o777, 0o700, d || 'the store root');
  });

  it("refuses a store directory that is a link or another user's, recording's included: what is in it was not written by spoke; a store root reached through a link is taken", async () => {
    const plant = (name: string, how: (path: string) => void) => {
      const root = mkdtempSync(join(tmpdir(), 'spoke-planted-'));
      how(join(root, name));
      return new ProfileStore({ root, fsync: false });
    };
    const elsewhere = () => mkdtempSync(join(tmpdir(), 'spoke-elsewhere-'));
    for (const name of ['recording', 'state', 'locks/owners', 'profiles/sha256']) {
      const linked = plant(name, (path) => (mkdirSync(join(path, '..'), { recursive: true }), symlinkSync(elsewhere(), path)));
      await assert.rejects(linked.getRecord(sha256Digest('none')), spokeError({ code: 'FailedPrecondition', reason: 'STATE_CORRUPT' }), `${name} as a link`);
      if ((process.geteuid?.() ?? 0) === 0) {
        const given = plant(name, (path) => (mkdirSync(path, { recursive: true }), chownSync(path, 65534, 65534)));
        await assert.rejects(given.getRecord(sha256Digest('none')), spokeError({ code: 'FailedPrecondition', reason: 'STATE_CORRUPT' }), `${name} another user's`);
      }
    }
    const real = elsewhere();
    const link = join(elsewhere(), 'store');
    symlinkSync(real, link);
    assert.equal(await new ProfileStore({ root: link, fsync: false }).getRecord(sha256Digest('none')), undefined);
    for (const d of ['recording', 'recording/.tmp']) assert.equal(lstatSync(join(real, d)).mode & 0o777, 0o700, d);
  });

  it("a store directory that is a link or another user's is refused before anything is made in it: where the link leads is left as it was", async () => {
    for (const name of ['state', 'recording', 'blobs', 'locks']) {
      const root = mkdtempSync(join(tmpdir(), 'spoke-planted-'));
      const target = mkdtempSync(join(tmpdir(), 'spoke-elsewhere-'));
      symlinkSync(target, join(root, name));
      await assert.rejects(new ProfileStore({ root, fsync: false }).getRecord(sha256Digest('none')), spokeError({ code: 'FailedPrecondition', reason: 'STATE_CORRUPT' }), `${name} as a link`);
      assert.deepEqual(readdirSync(target), [], `nothing made through ${name}`);
      if ((process.geteuid?.() ?? 0) === 0) {
        const other = mkdtempSync(join(tmpdir(), 'spoke-planted-'));
        mkdirSync(join(other, name));
        chownSync(join(other, name), 65534, 65534);
        await assert.rejects(new ProfileStore({ root: other, fsync: false }).getRecord(sha256Digest('none')), spokeError({ code: 'FailedPrecondition', reason: 'STATE_CORRUPT' }), `${name} another user's`);
        assert.deepEqual(readdirSync(join(other, name)), [], `nothing made in another user's ${name}`);
      }
    }
  });

  it('what is not a regular file where spoke reads one is refused, never waited on: a FIFO at a blob path is removed (DIGEST_MISMATCH) and fetched again; one at a verdict path is STATE_CORRUPT; a directory where a file is written is STATE_CORRUPT', async () => {
    const root = mkdtempSync(join(tmpdir(), 'spoke-fifo-'));
    const fifoStore = new ProfileStore({ root, fsync: false });
    const i = ingestInput('{"defaultAction":"SCMP_ACT_ERRNO","fifo":1}');
    await fifoStore.ingest(i);
    const blob = fifoStore.blobPath(i.layerDigest);
    rmSync(blob);
    execFileSync('mkfifo', [blob]);
    await rejectsWith(fifoStore.readBlob(i.layerDigest, { verify: true }), { code: 'SecurityProfileInvalid', reason: 'DIGEST_MISMATCH' });
    assert.equal(existsSync(blob), false, 'removed, so the next pull writes it');
    await fifoStore.ingest(i);
    assert.deepEqual(await fifoStore.readBlob(i.layerDigest, { verify: true }), Buffer.from(i.layerBytes));
    const invalid = join(root, 'invalid', 'sha256', `${i.digest.slice(7)}.json`);
    execFileSync('mkfifo', [invalid]);
    await rejectsWith(fifoStore.forget(i.digest), { code: 'FailedPrecondition', reason: 'STATE_CORRUPT' });
    rmSync(invalid);
    mkdirSync(join(root, 'state', 'in-use.json'));
    await rejectsWith(fifoStore.markInUseIncomplete(), { code: 'FailedPrecondition', reason: 'STATE_CORRUPT' });
    rmSync(join(root, 'state', 'in-use.json'), { recursive: true });
    mkdirSync(join(root, 'state', 'in-use.log'));
    await rejectsWith(fifoStore.markInUse(i.digest, 'container:c1'), { code: 'FailedPrecondition', reason: 'STATE_CORRUPT' });
    rmSync(join(root, 'state', 'in-use.log'), { recursive: true });
    // A unix socket, which open(2) refuses (ENXIO), likewise.
    rmSync(blob);
    const socket = createServer();
    await new Promise<void>((r) => socket.listen(blob, r));
    try {
      await rejectsWith(fifoStore.readBlob(i.layerDigest, { verify: true }), { code: 'SecurityProfileInvalid', reason: 'DIGEST_MISMATCH' });
      assert.equal(existsSync(blob), false);
    } finally {
      socket.close();
    }
  });

  it('a blob that was not a regular file when read but is one by its removal (a pull renamed a good one over a dangling link) is read, not removed', async () => {
    const root = mkdtempSync(join(tmpdir(), 'spoke-blobrace-'));
    const raceStore = new ProfileStore({ root, fsync: false });
    const i = ingestInput('{"defaultAction":"SCMP_ACT_ERRNO","race":1}');
    await raceStore.ingest(i);
    const blob = raceStore.blobPath(i.layerDigest);
    rmSync(blob);
    symlinkSync(join(root, 'nowhere'), blob);
    let placed = false;
    const bytes = await withFs(
      'openSync',
      (original) => (path, ...rest) => {
        try {
          return original(path, ...rest);
        } finally {
          // The read's open found the link; the pull's rename lands before the reader looks again.
          if (path === blob && !placed) {
            placed = true;
            writeFileSync(`${blob}.good`, i.layerBytes);
            renameSync(`${blob}.good`, blob);
          }
        }
      },
      () => raceStore.readBlob(i.layerDigest, { verify: true }),
    );
    assert.deepEqual(bytes, Buffer.from(i.layerBytes));
    assert.ok(existsSync(blob), 'the good blob stays');
  });

  it('ingests content-addressed blobs and a provenance record', async () => {
    const i = ingestInput('{"defaultAction":"SCMP_ACT_ALLOW"}');
    const ingested = await store.ingest(i);
    assert.equal(ingested.blobPath, join(dir, 'blobs', 'sha256', i.layerDigest.slice(7)));
    const { bytes, record } = await store.readProfile(i.digest, { verify: true });
    // What ingest reports placed is what a reader finds.
    assert.deepEqual(ingested.record, record);
    assert.deepEqual(bytes, Buffer.from(i.layerBytes));
    assert.equal(record.rule, 'rules[0] (r.io)');
    assert.deepEqual(record.references, [i.reference]);
  });

  it('places a blob staged ahead (stageBlob) at ingest, and removes it when that ingest fails', async () => {
    await inOwnStoreDir(async (own) => {
      const staging = new ProfileStore({ root: own });
      const tmp = join(own, 'tmp');
      const ok = ingestInput('{"defaultAction":"SCMP_ACT_LOG"}');
      const early = await staging.stageBlob(ok.layerDigest, ok.layerBytes);
      assert.equal(readdirSync(tmp).length, 1, 'written under a temp name');
      assert.equal(existsSync(staging.blobPath(ok.layerDigest)), false, 'not in the store yet');
      await staging.ingest(ok, { blob: early });
      assert.deepEqual(readFileSync(staging.blobPath(ok.layerDigest)), Buffer.from(ok.layerBytes));
      assert.deepEqual(readdirSync(tmp), []);
      // An ingest that fails (here: a digest no path can be made from) removes what was staged for it.
      const bad = ingestInput('{"defaultAction":"SCMP_ACT_TRAP"}');
      const staged = await staging.stageBlob(bad.layerDigest, bad.layerBytes);
      assert.equal(readdirSync(tmp).length, 1);
      await rejectsWith(staging.ingest({ ...bad, digest: 'sha256:nothex' as Digest }, { blob: staged }), { code: 'InvalidArgument' });
      assert.deepEqual(readdirSync(tmp), [], 'the staged blob is gone');
      assert.equal(existsSync(staging.blobPath(bad.layerDigest)), false);
      // A blob staged for another layer is never placed under this one's digest.
      const other = await staging.stageBlob(bad.layerDigest, bad.layerBytes);
      await rejectsWith(staging.ingest(ingestInput('{"defaultAction":"SCMP_ACT_KILL"}'), { blob: other }), { code: 'Internal', reason: 'INVARIANT' });
      assert.deepEqual(readdirSync(tmp), []);
    });
  });

  it("an ingest whose record cannot be written removes the blob it wrote beside it, and the reverse: neither side's temp file is left with the bytes", async () => {
    await inOwnStoreDir(async (own) => {
      const store = new ProfileStore({ root: own });
      const tmp = join(own, 'tmp');
      const written = () => readdirSync(tmp).filter((n) => statSync(join(tmp, n)).size > 0);
      for (const failing of ['record', 'blob'] as const) {
        const input = ingestInput(`{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":${failing === 'record' ? 1 : 2}}`);
        const layer = Buffer.from(input.layerBytes);
        // The record's bytes name the reference; the blob's are the layer's.
        const isFailing = (data: unknown) => Buffer.isBuffer(data) || data instanceof Uint8Array ? (failing === 'blob' ? Buffer.from(data as Uint8Array).equals(layer) : Buffer.from(data as Uint8Array).includes('"references"')) : false;
        const fullDisk = (writeSync: (...args: unknown[]) => unknown) => (fd: unknown, data: unknown, ...rest: unknown[]) => {
          if (isFailing(data)) throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
          return writeSync(fd, data, ...rest);
        };
        await assert.rejects(withFs('writeSync', fullDisk, () => store.ingest(input)), (e: NodeJS.ErrnoException) => e.code === 'ENOSPC');
        assert.deepEqual(written(), [], `${failing} failing`);
        assert.equal(await store.getRecord(input.digest), undefined);
      }
    });
  });

  it('links a record staged ahead (stageRecord) at ingest, keeps one already there, and removes it when that ingest fails', async () => {
    await inOwnStoreDir(async (own) => {
      const staging = new ProfileStore({ root: own });
      const tmp = join(own, 'tmp');
      const ok = ingestInput('{"defaultAction":"SCMP_ACT_LOG"}');
      const early = await staging.stageRecord(ok, ok.layerBytes.byteLength);
      assert.equal(readdirSync(tmp).length, 1, 'written under a temp name');
      assert.equal(await staging.getRecord(ok.digest), undefined, 'not in the store yet');
      const { record } = await staging.ingest(ok, { record: early });
      assert.deepEqual(record, early.record);
      assert.deepEqual(await staging.getRecord(ok.digest), early.record, 'the staged record is the one read back');
      assert.equal(record.size, ok.layerBytes.byteLength);
      assert.deepEqual(readdirSync(tmp), []);
      // A record there already is kept: the staged one only adds this pull's reference to it.
      const again = await staging.stageRecord({ ...ok, reference: 'r.io/other@' + ok.digest }, ok.layerBytes.byteLength);
      const merged = await staging.ingest({ ...ok, reference: 'r.io/other@' + ok.digest }, { record: again });
      assert.deepEqual(merged.record.references, [ok.reference, 'r.io/other@' + ok.digest]);
      assert.equal(merged.record.pulledAt, record.pulledAt);
      assert.deepEqual(readdirSync(tmp), []);
      // An ingest that fails (here: a digest no path can be made from) removes the record staged for it.
      const bad = ingestInput('{"defaultAction":"SCMP_ACT_TRAP"}');
      const staged = await staging.stageRecord(bad, bad.layerBytes.byteLength);
      await rejectsWith(staging.ingest({ ...bad, digest: 'sha256:nothex' as Digest }, { record: staged }), { code: 'InvalidArgument' });
      assert.deepEqual(readdirSync(tmp), [], 'the staged record is gone');
      assert.equal(await staging.getRecord(bad.digest), undefined);
      // A record staged for a profile of another size (or digest) is never linked for this one.
      const other = await staging.stageRecord(bad, bad.layerBytes.byteLength + 1);
      await rejectsWith(staging.ingest(bad, { record: other }), { code: 'Internal', reason: 'INVARIANT' });
      assert.deepEqual(readdirSync(tmp), []);
      assert.equal(await staging.getRecord(bad.digest), undefined);
    });
  });

  it('keeps exactly one copy of a blob shared by two artifacts', async () => {
    // A store of its own: the blob directory then holds exactly what these two ingests wrote.
    await inOwnStoreDir(async (own) => {
      const shared = new ProfileStore({ root: own });
      const a = ingestInput('{"defaultAction":"SCMP_ACT_LOG"}');
      const b = { ...a, digest: sha256Digest('another manifest'), manifestBytes: Buffer.from('another manifest') };
      await shared.ingest(a);
      await shared.ingest(b);
      assert.deepEqual(readdirSync(join(own, 'blobs', 'sha256')), [a.layerDigest.slice(7)]);
      await shared.remove(b.digest);
      assert.ok(existsSync(shared.blobPath(a.layerDigest)), 'shared layer survives removal of one artifact');
    });
  });

  it('places a new record without taking its lock, and merges under the lock into one another writer placed first', async () => {
    await inOwnStoreDir(async (own) => {
      const a = new ProfileStore({ root: own });
      const b = new ProfileStore({ root: own });
      const i = ingestInput('{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_MIPS"]}');
      // Held for the whole first ingest: a writer that waited for it would time out (DEADLINE).
      await withFileLock(join(own, 'locks', `${i.digest.slice(7)}.lock`), () => a.ingest(i));
      assert.deepEqual((await b.getRecord(i.digest))?.references, [i.reference]);
      const other = `other.io/p@${i.digest}`;
      await b.ingest({ ...i, reference: other, verdict: { policyHash: 'p1', signer: 'platform', format: 'bundle' } });
      const merged = await a.getRecord(i.digest);
      assert.deepEqual(merged?.references, [i.reference, other]);
      assert.equal(verdictUnder(merged!, 'p1', [{ name: 'platform', type: 'publicKey' }])?.signer, 'platform');
      // Two writers placing the same new record at once: one links it, the other merges into it.
      const j = ingestInput('{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_PPC"]}');
      await Promise.all([a.ingest(j), b.ingest({ ...j, reference: other.replace(i.digest, j.digest) })]);
      assert.deepEqual((await a.getRecord(j.digest))?.references.sort(), [j.reference, other.replace(i.digest, j.digest)].sort());
      assert.deepEqual(readdirSync(join(own, 'tmp')), [], 'no temp file left behind');
    });
  });

  it('writes a blob again that another process removed after this one saw it', async () => {
    await inOwnStoreDir(async (own) => {
      const a = new ProfileStore({ root: own });
      const other = new ProfileStore({ root: own });
      const i = ingestInput('{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_S390X"]}');
      await a.ingest(i);
      assert.ok(await a.hasBlob(i.layerDigest));
      await other.remove(i.digest);
      await a.ingest(i);
      const { bytes } = await a.readProfile(i.digest, { verify: true });
      assert.deepEqual(bytes, Buffer.from(i.layerBytes));
    });
  });

  it('a removal racing an ingest of the same blob never leaves a record without its blob', async () => {
    // The ingest skips writing a blob that exists; the removal lists the records and deletes the
    // blob none names. Many records make the listing slow enough for the ingest to land inside it.
    await inOwnStoreDir(async (own) => {
      const store = new ProfileStore({ root: own, fsync: false });
      for (let i = 0; i < 150; i++) await store.ingest(ingestInput(`{"defaultAction":"SCMP_ACT_ERRNO","architectures":["SCMP_ARCH_X86_64"],"syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW","comment":"${i}"}]}`));
      const a = ingestInput('{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["write"],"action":"SCMP_ACT_ALLOW"}]}');
      for (let round = 0; round < 10; round++) {
        await store.ingest(a);
        const removing = store.remove(a.digest);
        // The pull that comes next: the record is gone, so it fetches and ingests again.
        while (await store.getRecord(a.digest)) await new Promise((r) => setImmediate(r));
        await Promise.all([removing, store.ingest(a)]);
        assert.ok(await store.getRecord(a.digest), `round ${round}: the ingest's record`);
        assert.deepEqual(await store.readBlob(a.layerDigest, { verify: true }), Buffer.from(a.layerBytes), `round ${round}: its blob`);
      }
    });
  });

  it('a removal in another process (spoke store rm) never removes a record a create held meanwhile: it checks the holders again once the record is out of sight', async () => {
    await inOwnStoreDir(async (own) => {
      const cli = new ProfileStore({ root: own, fsync: false });
      const shim = new ProfileStore({ root: own, fsync: false });
      const a = ingestInput('{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["rmdir"],"action":"SCMP_ACT_ALLOW"}]}');
      await shim.ingest(a);
      const lockPath = join(own, 'locks', `${a.digest.slice('sha256:'.length)}.lock`);
      let waiting!: () => void;
      const removerWaits = new Promise<void>((resolve) => (waiting = resolve));
      const outcome = await withFileLock(lockPath, () =>
        // The removal found the in-use set without holders and waits for the record's lock.
        whileWatchingLock(
          lockPath,
          waiting,
          async () => {
            const removing = cli.remove(a.digest).then(
              () => 'removed',
              (e: { reason?: string }) => e.reason,
            );
            await removerWaits;
            // The shim's create records its holder and answers.
            await shim.markInUse(a.digest, 'container:c1');
            return { removing };
          },
        ),
      );
      assert.equal(await outcome.removing, 'IN_USE');
      assert.ok(await shim.getRecord(a.digest), 'the record stays with its holder');
      assert.deepEqual(await shim.readBlob(a.layerDigest, { verify: true }), Buffer.from(a.layerBytes));
    });
  });

  it('a record a removal moved aside is no old temp file to another process\'s gc sweep: a create that held it meanwhile keeps it', async () => {
    await inOwnStoreDir(async (own) => {
      const cli = new ProfileStore({ root: own, fsync: false });
      const shim = new ProfileStore({ root: own, fsync: false });
      const cron = new ProfileStore({ root: own, fsync: false });
      const a = ingestInput('{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["chmod"],"action":"SCMP_ACT_ALLOW"}]}');
      await shim.ingest(a);
      // Pulled two hours ago: its record file is that old.
      const twoHoursAgo = new Date(Date.now() - 2 * 3_600_000);
      utimesSync(join(own, 'profiles', 'sha256', `${a.digest.slice('sha256:'.length)}.json`), twoHoursAgo, twoHoursAgo);
      const lockPath = join(own, 'locks', `${a.digest.slice('sha256:'.length)}.lock`);
      let cronWaits!: () => void;
      const cronWaitsForLock = new Promise<void>((resolve) => (cronWaits = resolve));
      const holders = (cli as unknown as { holders: { inUseState: () => Promise<unknown> } }).holders;
      const read = holders.inUseState.bind(holders);
      let reads = 0;
      let cronRun: Promise<unknown> = Promise.resolve();
      holders.inUseState = async () => {
        // The removal's last read of the holders, with the record out of sight: a create in the
        // shim records its holder, and a \`spoke store gc\` from cron sweeps (or waits for the
        // record's lock, which the removal holds).
        if (++reads === 2) {
          await shim.markInUse(a.digest, 'container:c1');
          cronRun = cron.gc();
          await Promise.race([cronRun, cronWaitsForLock]);
        }
        return read();
      };
      const removing = whileWatchingLock(lockPath, cronWaits, () => rejectsWith(cli.remove(a.digest), { code: 'FailedPrecondition', reason: 'IN_USE' }));
      await removing;
      await cronRun;
      assert.ok(await shim.getRecord(a.digest), 'the held record is back in place');
      assert.deepEqual(await shim.readBlob(a.layerDigest, { verify: true }), Buffer.from(a.layerBytes));
    });
  });

  it('a record a removal left aside when it crashed goes back at the next gc sweep, kept with its blob for the create that held it', async () => {
    await inOwnStoreDir(async (own) => {
      const store = new ProfileStore({ root: own, fsync: false });
      const a = ingestInput('{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["chown"],"action":"SCMP_ACT_ALLOW"}]}');
      await store.ingest(a);
      const hex = a.digest.slice('sha256:'.length);
      const record = join(own, 'profiles', 'sha256', `${hex}.json`);
      const twoHoursAgo = new Date(Date.now() - 2 * 3_600_000);
      utimesSync(record, twoHoursAgo, twoHoursAgo);
      utimesSync(store.blobPath(a.layerDigest), twoHoursAgo, twoHoursAgo);
      // \`spoke store rm\` moved the record aside and died before it asked the holders again; a
      // create recorded its holder meanwhile.
      renameSync(record, join(own, 'tmp', `removing-${hex}-crashed`));
      await new ProfileStore({ root: own, fsync: false }).markInUse(a.digest, 'container:c1');
      await new ProfileStore({ root: own, fsync: false }).gc();
      assert.ok(await store.getRecord(a.digest), 'the record is back');
      assert.deepEqual(await store.readBlob(a.layerDigest, { verify: true }), Buffer.from(a.layerBytes));
      assert.deepEqual(readdirSync(join(own, 'tmp')).filter((n) => n.startsWith('removing-')), []);
    });
  });

  it('a tmp/removing- name spoke did not leave (a directory, a link) is never put in the records, and no gc sweep fails on it', async () => {
    await inOwnStoreDir(async (own) => {
      const store = new ProfileStore({ root: own, fsync: false });
      const a = ingestInput('{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["rmdir"],"action":"SCMP_ACT_ALLOW"}]}');
      const b = ingestInput('{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["mknod"],"action":"SCMP_ACT_ALLOW"}]}');
      await store.ingest(a);
      await store.markInUse(a.digest, 'container:c1');
      const hexA = a.digest.slice('sha256:'.length);
      const hexB = b.digest.slice('sha256:'.length);
      // A directory named as an aside record of a stored artifact, and a link named as one of an
      // artifact the store does not have.
      mkdirSync(join(own, 'tmp', `removing-${hexA}-planted`));
      writeFileSync(join(own, 'elsewhere.json'), 'not a record');
      symlinkSync(join(own, 'elsewhere.json'), join(own, 'tmp', `removing-${hexB}-planted`));
      await store.gc();
      await store.gc();
      assert.equal(lstatSync(join(own, 'profiles', 'sha256', `${hexB}.json`), { throwIfNoEntry: false }), undefined, 'the link is not made a record');
      assert.ok(await store.getRecord(a.digest));
    });
  });

  it('a removal that moved a blob aside puts it back for a record linked meanwhile, also when the in-use set cannot be read then: it needs only the records', async () => {
    await inOwnStoreDir(async (own) => {
      const store = new ProfileStore({ root: own, fsync: false });
      const a = ingestInput('{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_ALLOW"}]}');
      const b = { ...a, digest: sha256Digest('another manifest of one layer'), manifestBytes: Buffer.from('another manifest of one layer') };
      await store.ingest(a);
      const original = fsp.rename;
      fsp.rename = (async (from: string, to: string) => {
        if (from !== store.blobPath(a.layerDigest)) return original(from, to);
        // An ingest of the same layer lands after the removal's listing, finding the blob there;
        // then the pins file turns unreadable (a disk fault) before the removal lists again.
        await store.ingest(b);
        await original(from, to);
        writeFileSync(join(own, 'state', 'pins.json'), '{');
      }) as typeof fsp.rename;
      syncBuiltinESMExports();
      try {
        await store.remove(a.digest);
      } finally {
        fsp.rename = original;
        syncBuiltinESMExports();
      }
      assert.deepEqual(await store.readBlob(b.layerDigest, { verify: true }), Buffer.from(b.layerBytes), "the record linked meanwhile keeps its blob");
    });
  });

  it('a blob another process removed is not taken as present by a cached pull', async () => {
    await inOwnStoreDir(async (own) => {
      const a = new ProfileStore({ root: own });
      const i = ingestInput('{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_MIPS"]}');
      await a.ingest(i);
      assert.ok(await a.hasBlob(i.layerDigest));
      rmSync(a.blobPath(i.layerDigest));
      assert.equal(await a.hasBlob(i.layerDigest), false);
    });
  });

  it('gc goes on when another process removed an artifact it listed', async () => {
    await inOwnStoreDir(async (own) => {
      const a = new ProfileStore({ root: own });
      const other = new ProfileStore({ root: own });
      const inputs = Array.from({ length: 40 }, (_, n) => ingestInput(`{"defaultAction":"SCMP_ACT_LOG","comment":"gc ${n}"}`));
      for (const i of inputs) await a.ingest(i);
      // Two gc runs at once (a `spoke store gc` cron job beside another): each finds artifacts
      // the other removed after its listing.
      const [r1, r2] = await Promise.all([a.gc(), other.gc()]);
      assert.deepEqual(await a.list(), []);
      assert.equal(new Set([...r1.removed, ...r2.removed]).size, inputs.length);
    });
  });

  it('records verdicts per policy hash and signer, and references without duplicates', async () => {
    const i = ingestInput('{"defaultAction":"SCMP_ACT_TRAP"}');
    await store.ingest({ ...i, verdict: { policyHash: 'p1', signer: 'platform', format: 'bundle' } });
    await store.annotate(i.digest, { reference: i.reference });
    await store.annotate(i.digest, { reference: `other.io/x@${i.digest}`, verdict: { policyHash: 'p2', signer: 'ci', format: 'cosign', identity: 'https://x' } });
    await store.annotate(i.digest, { verdict: { policyHash: 'p1', signer: 'ci', format: 'cosign' } });
    const r = (await store.getRecord(i.digest))!;
    assert.deepEqual(r.references, [i.reference, `other.io/x@${i.digest}`]);
    const signer = (name: string, type = 'publicKey') => ({ name, type });
    assert.equal(verdictUnder(r, 'p1', [signer('platform')])?.signer, 'platform');
    assert.equal(verdictUnder(r, 'p1', [signer('ci')])?.format, 'cosign', 'a second signer under one policy keeps the first');
    assert.equal(verdictUnder(r, 'p2', [signer('ci')])?.identity, 'https://x');
    assert.equal(verdictUnder(r, 'p2', [signer('platform')]), undefined);
    assert.equal(verdictUnder(r, 'p1', [signer('platform', 'unavailable'), signer('ci')])?.signer, 'ci', 'an unavailable signer is skipped');
    assert.equal(verdictUnder(r, 'p3', [signer('platform'), signer('ci')]), undefined);
    // A record an older version wrote, one verdict under the policy hash alone: it serves the
    // signer it names, under that hash only.
    const legacy = { ...r, verdicts: { p4: { signer: 'ci', format: 'bundle' as const, at: '2026-12-01T00:00:00.000Z' } } };
    assert.equal(verdictUnder(legacy, 'p4', [signer('platform'), signer('ci')])?.signer, 'ci');
    assert.equal(verdictUnder(legacy, 'p4', [signer('platform')]), undefined);
    assert.equal(verdictUnder(legacy, 'p4', [signer('ci', 'unavailable')]), undefined);
    assert.equal(verdictUnder(legacy, 'p5', [signer('ci')]), undefined);
  });

  it('a full record keeps the verdict just set, though older verdicts carry later times (written while the clock ran ahead)', async () => {
    let now = Date.parse('2038-01-01T00:00:00Z');
    const ahead = new ProfileStore({ root: mkdtempSync(join(tmpdir(), 'spoke-ahead-')), clock: { now: () => now, sleep: systemClock.sleep }, fsync: false });
    try {
      const i = ingestInput('{"defaultAction":"SCMP_ACT_ERRNO","x":"ahead"}', { verdict: { policyHash: 'h0', signer: 'platform', format: 'bundle' } });
      await ahead.ingest(i);
      for (let n = 1; n < 16; n++) {
        now += 60_000;
        await ahead.annotate(i.digest, { verdict: { policyHash: `h${n}`, signer: 'platform', format: 'bundle' } });
      }
      now = Date.parse('2026-12-06T00:00:00Z');
      await ahead.annotate(i.digest, { verdict: { policyHash: 'current', signer: 'platform', format: 'bundle' } });
      const r = (await ahead.getRecord(i.digest))!;
      assert.equal(verdictUnder(r, 'current', [{ name: 'platform', type: 'publicKey' }])?.signer, 'platform');
      assert.equal(Object.keys(r.verdicts).length, 16);
      assert.equal(verdictUnder(r, 'h0', [{ name: 'platform', type: 'publicKey' }]), undefined, 'the oldest of the others went');
      // A second signer of the current policy (another rule's) keeps the first's verdict too: an
      // older policy's goes, however late its time.
      await ahead.annotate(i.digest, { verdict: { policyHash: 'current', signer: 'team-b', format: 'bundle' } });
      const both = (await ahead.getRecord(i.digest))!;
      for (const name of ['platform', 'team-b']) assert.equal(verdictUnder(both, 'current', [{ name, type: 'publicKey' }])?.signer, name);
    } finally {
      rmSync(ahead.root, { recursive: true, force: true });
    }
  });

  it('refuses removal while in use, and gc keeps what is in use', async () => {
    const used = ingestInput('{"defaultAction":"SCMP_ACT_ERRNO"}');
    const unused = ingestInput('{"defaultAction":"SCMP_ACT_KILL"}');
    await store.ingest(used);
    await store.ingest(unused);
    await store.markInUse(used.digest, 'container:abc');
    await rejectsWith(store.remove(used.digest), { code: 'FailedPrecondition', reason: 'IN_USE' });
    const dry = await store.gc({ dryRun: true });
    assert.ok(dry.removed.includes(unused.digest));
    assert.ok(await store.has(unused.digest), 'dry run removes nothing');
    const r = await store.gc();
    assert.ok(r.kept.includes(used.digest));
    assert.ok(!(await store.has(unused.digest)));
    assert.ok(await store.has(used.digest));
    await store.release('container:abc');
    await store.gc();
    assert.ok(!(await store.has(used.digest)));
  });

  it("gc sweeps the lock owner files of processes that are gone, and keeps this process's", async () => {
    const used = ingestInput('{"defaultAction":"SCMP_ACT_LOG"}');
    await store.ingest(used);
    await store.markInUse(used.digest, 'container:owners');
    const owners = join(dir, 'locks', 'owners');
    const live = readdirSync(owners).sort();
    assert.ok(live.length >= 2, `this process owns locks here: ${live.join(' ')}`);
    // What a crash leaves: a link whose socket a breaker has removed.
    const orphan = `${'e'.repeat(24)}.link`;
    writeFileSync(join(owners, orphan), '');
    await store.gc();
    assert.deepEqual(readdirSync(owners).sort(), live);
    await store.release('container:owners');
  });

  it('transferInUse hands a digest from a pending holder to its container in one update', async () => {
    const a = ingestInput('{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_X32"]}');
    await store.ingest(a);
    await store.markInUse(a.digest, 'pending:1');
    await store.transferInUse('pending:1', 'container:c1', a.digest as Digest);
    assert.deepEqual(await store.inUseHolders(a.digest), ['container:c1']);
    await store.release('container:c1');
  });

  it('replaceInUse rebuilds the runtime holders and keeps pins', async () => {
    const a = ingestInput('{"defaultAction":"SCMP_ACT_ALLOW","architectures":[]}');
    await store.ingest(a);
    await store.markInUse(a.digest, 'pin:manual');
    await store.markInUse(a.digest, 'container:old');
    await store.replaceInUse(new Map([['container:new', a.digest as Digest]]));
    assert.deepEqual((await store.inUseHolders(a.digest)).sort(), ['container:new', 'pin:manual']);
  });

  it('store verify finds a corrupted blob, and removes it: the next ingest of the digest places the right bytes again', async () => {
    const i = ingestInput('{"defaultAction":"SCMP_ACT_LOG","architectures":["SCMP_ARCH_X86_64"]}');
    await store.ingest(i);
    writeFileSync(store.blobPath(i.layerDigest), 'tampered');
    const r = await store.verify();
    assert.ok(r.corrupt.some((c) => c.digest === i.digest && /removed/.test(c.reason)));
    assert.equal(existsSync(store.blobPath(i.layerDigest)), false);
    await rejectsWith(store.readProfile(i.digest, { verify: true }), { code: 'NotFound', reason: 'NOT_FOUND' });
    await store.ingest(i);
    assert.deepEqual(await store.readBlob(i.layerDigest, { verify: true }), Buffer.from(i.layerBytes));
  });

  it('checkBlob: hashes a blob once, then refuses it as soon as its file is changed in place, replaced or removed', async () => {
    const i = ingestInput('{"defaultAction":"SCMP_ACT_ERRNO","architectures":["SCMP_ARCH_X86_64"]}');
    await store.ingest(i);
    const path = store.blobPath(i.layerDigest);
    const good = readFileSync(path);
    await store.checkBlob(i.layerDigest);
    await store.checkBlob(i.layerDigest);
    // Same size, one byte changed, written into the same inode.
    const bad = Buffer.from(good);
    bad[bad.length - 2] ^= 1;
    writeFileSync(path, bad);
    await rejectsWith(store.checkBlob(i.layerDigest), { code: 'SecurityProfileInvalid', reason: 'DIGEST_MISMATCH' });
    writeFileSync(`${path}.new`, good);
    renameSync(`${path}.new`, path);
    await store.checkBlob(i.layerDigest);
    writeFileSync(`${path}.new`, bad);
    renameSync(`${path}.new`, path);
    await rejectsWith(store.checkBlob(i.layerDigest), { code: 'SecurityProfileInvalid', reason: 'DIGEST_MISMATCH' });
    // The wrong bytes were removed with the refusal: a pull fetches the digest again.
    await rejectsWith(store.checkBlob(i.layerDigest), { code: 'NotFound', reason: 'NOT_FOUND' });
    writeFileSync(path, good);
    await store.checkBlob(i.layerDigest);
    unlinkSync(path);
    await rejectsWith(store.checkBlob(i.layerDigest), { code: 'NotFound', reason: 'NOT_FOUND' });
  });

  it('a record whose manifest no longer hashes to its digest is refused as DIGEST_MISMATCH; an absent one is NOT_FOUND', async () => {
    const i = ingestInput('{"defaultAction":"SCMP_ACT_LOG","architectures":["SCMP_ARCH_ARM"]}');
    await store.ingest(i);
    const file = join(dir, 'profiles', 'sha256', `${i.digest.slice(7)}.json`);
    const record = JSON.parse(readFileSync(file, 'utf8')) as { manifest: string };
    record.manifest = Buffer.from('{"tampered":true}').toString('base64');
    writeFileSync(file, JSON.stringify(record));
    await rejectsWith(store.readManifest(i.digest), { code: 'SecurityProfileInvalid', reason: 'DIGEST_MISMATCH' });
    await rejectsWith(store.readManifest(sha256Digest(Buffer.from('absent'))), { code: 'NotFound', reason: 'NOT_FOUND' });
  });

  it('treats a torn record (not flushed before a crash) as absent, and the next ingest rewrites it', async () => {
    const i = ingestInput('{"defaultAction":"SCMP_ACT_ERRNO","architectures":["SCMP_ARCH_X86"]}');
    await store.ingest(i);
    writeFileSync(join(dir, 'profiles', 'sha256', `${i.digest.slice(7)}.json`), '{"schemaVersion":1,"dige');
    assert.equal(await store.getRecord(i.digest), undefined);
    await store.ingest(i);
    assert.equal((await store.getRecord(i.digest))?.digest, i.digest);
  });

  it('refuses non-digest names for paths', () => {
    throwsWith(() => store.blobPath('sha256:../../etc/passwd' as Digest), { code: 'InvalidArgument', reason: 'DIGEST_INVALID' });
  });
});

describe('crash safety', () => {
  it('a writer SIGKILLed mid-write leaves no visible half file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'spoke-crash-'));
    try {
      const target = join(dir, 'blobs', 'big');
      const script = fileURLToPath(new URL('./crash-writer.js', import.meta.url));
      for (let round = 0; round < 5; round++) {
        const child = spawn(process.execPath, [script, target, join(dir, 'tmp')], { stdio: ['ignore', 'pipe', 'inherit'] });
        // Wait until the child says it started writing, then kill it at once.
        await new Promise<void>((resolve) => child.stdout.once('data', () => resolve()));
        child.kill('SIGKILL');
        await new Promise((r) => child.once('exit', r));
        if (existsSync(target)) {
          // The rename happened before the kill: then the file must be complete.
          const { statSync } = await import('node:fs');
          assert.equal(statSync(target).size, 64 * 1024 * 1024);
        }
      }
      const visible = existsSync(join(dir, 'blobs')) ? readdirSync(join(dir, 'blobs')) : [];
      assert.ok(visible.every((n) => n === 'big'), `only complete files are visible: ${visible.join(',')}`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('exists', () => {
  it('looks a path up as the effective user, who reads and writes the store: a path only the real user could look up is not there', () => {
    const own = mkdtempSync(join(tmpdir(), 'spoke-exists-'));
    try {
      // A directory only its owner (root, as the tests run) may search.
      const file = join(own, 'blob');
      writeFileSync(file, 'x');
      assert.equal(exists(file), true);
      process.seteuid!(65534);
      let asNobody: boolean;
      try {
        asNobody = exists(file);
      } finally {
        process.seteuid!(0);
      }
      assert.equal(asNobody, false);
    } finally {
      rmSync(own, { recursive: true, force: true });
    }
  });
});

describe('readStoreFileSync', () => {
  it('closes the descriptor when the stat of the opened file fails', async () => {
    await inOwnStoreDir(async (own) => {
      const file = join(own, 'record');
      writeFileSync(file, 'x');
      const open = () => readdirSync('/proc/self/fd').length;
      const before = open();
      const failingStat = () => () => {
        throw Object.assign(new Error('EIO: i/o error, fstat'), { code: 'EIO' });
      };
      assert.throws(() => withFs('fstatSync', failingStat, () => readStoreFileSync(file)), { code: 'EIO' });
      assert.equal(open(), before);
    });
  });
});
