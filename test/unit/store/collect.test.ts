// The shim's gc run over a real store directory and effective-file directory, on a test clock:
// last use, minAge, the byte cap (least recently used first), effective files and their names,
// an incomplete in-use set, and the origins record `spoke ps` reads.

import assert from 'node:assert/strict';
import { chownSync, existsSync, mkdirSync, mkdtempSync, renameSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { systemClock } from '../../../src/core/runtime.js';
import { ProfileStore } from '../../../src/store/store.js';
import { ingestInput } from './fixtures.js';

/** Four profiles of equal size. */
const BODIES = ['a', 'b', 'c', 'd'].map((x) => `{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["${x}"],"action":"SCMP_ACT_ERRNO"}]}`);
const HOUR = 3_600_000;

describe('ProfileStore.collect', () => {
  let dir: string;
  let eff: string;
  let now: number;
  let store: ProfileStore;
  const clock = { now: () => now, sleep: systemClock.sleep };
  const effFile = (sha: string) => join(eff, `${sha}.json`);
  const run = (o: { minAgeMs?: number; maxStoreBytes?: number; inUse?: string[] } = {}) =>
    store.collect({ minAgeMs: o.minAgeMs ?? HOUR, maxStoreBytes: o.maxStoreBytes, effectiveDir: eff, effectiveInUse: new Set(o.inUse ?? []) });

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'spoke-collect-'));
    eff = join(dir, 'seccomp', 'spoke');
    mkdirSync(eff, { recursive: true });
    now = Date.parse('2026-01-01T00:00:00Z');
    store = new ProfileStore({ root: join(dir, 'store'), clock, fsync: false });
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('removes unused profiles once unused for minAge; held and pinned ones stay', async () => {
    const [a, b, c] = BODIES.map((b) => ingestInput(b));
    for (const i of [a!, b!, c!]) await store.ingest(i);
    await store.markInUse(a!.digest, 'container:x');
    await store.markInUse(b!.digest, 'pin:keep');
    now += HOUR - 1;
    assert.deepEqual((await run()).removed, []);
    now += 1;
    const r = await run();
    assert.deepEqual(r.removed, [c!.digest]);
    assert.equal(r.artifacts, 2);
    // Released now: its last use was the run above, so it stays for another minAge.
    await store.release('container:x');
    now += HOUR - 1;
    assert.deepEqual((await run()).removed, []);
    now += 1;
    assert.deepEqual((await run()).removed, [a!.digest]);
  });

  it('a noted use (a cached pull: the kubelet creates next) counts as a last use, in memory until the next run', async () => {
    const [a, b] = BODIES.map((b) => ingestInput(b));
    for (const i of [a!, b!]) await store.ingest(i);
    now += 2 * HOUR;
    store.noteUse(a!.digest);
    now += HOUR - 1;
    assert.deepEqual((await run()).removed, [b!.digest], 'a was used an hour ago less a millisecond');
    // The run wrote it down: another store object (a shim restart) keeps it as long.
    const again = new ProfileStore({ root: join(dir, 'store'), clock, fsync: false });
    assert.deepEqual((await again.collect({ minAgeMs: HOUR, effectiveDir: eff, effectiveInUse: new Set() })).removed, []);
    now += 1;
    assert.deepEqual((await run()).removed, [a!.digest]);
  });

  it('a pull that fetches a stored profile again (a pod with other credentials, its blob gone) counts as a use: the kubelet creates next', async () => {
    const [a, b] = BODIES.map((b) => ingestInput(b));
    for (const i of [a!, b!]) await store.ingest(i);
    now += 2 * HOUR;
    // Merged into the record already there, which keeps its first pull's time.
    await store.ingest(a!);
    assert.deepEqual((await run()).removed, [b!.digest], 'a was pulled just now');
    now += HOUR;
    assert.deepEqual((await run()).removed, [a!.digest]);
  });

  // Planted while the store's directories were open to others, it could keep any profile from
  // gc for good (docs/security-model.md#atomic-store): unreadable, as a torn one is.
  it('a last-use.json another user owns is ignored', { skip: (process.geteuid?.() ?? 0) !== 0 && 'needs root to give a file away' }, async () => {
    const [a, b] = BODIES.map((b) => ingestInput(b));
    for (const i of [a!, b!]) await store.ingest(i);
    now += 2 * HOUR;
    const lastUse = join(dir, 'store', 'state', 'last-use.json');
    writeFileSync(lastUse, JSON.stringify({ artifacts: { [a!.digest]: now, [b!.digest]: now } }));
    chownSync(lastUse, 65534, 65534);
    assert.deepEqual((await run()).removed.sort(), [a!.digest, b!.digest].sort());
  });

  it('a use a stopped or crashed shim noted but no run wrote down is not lost: a new store object counts its own start as a use, for minAge', async () => {
    const [a, b] = BODIES.map((b) => ingestInput(b));
    for (const i of [a!, b!]) await store.ingest(i);
    now += 2 * HOUR;
    // A cached pull of a: the kubelet creates next. The shim then stops before any run.
    store.noteUse(a!.digest);
    now += 60_000;
    const restarted = new ProfileStore({ root: join(dir, 'store'), clock, fsync: false });
    const runRestarted = () => restarted.collect({ minAgeMs: HOUR, effectiveDir: eff, effectiveInUse: new Set() });
    now += 60_000;
    assert.deepEqual((await runRestarted()).removed, [], 'either may have been used just before the restart');
    now += HOUR - 60_000;
    assert.deepEqual((await runRestarted()).removed.sort(), [a!.digest, b!.digest].sort(), 'unused for minAge since the restart');
  });

  it('a store object opened while the clock ran ahead ages from the first run after it was set right, not from when it catches up', async () => {
    const a = ingestInput(BODIES[0]!);
    await store.ingest(a);
    now += 24 * HOUR;
    const ahead = now + 24 * HOUR;
    const realNow = now;
    now = ahead;
    const restarted = new ProfileStore({ root: join(dir, 'store'), clock, fsync: false });
    now = realNow + 3 * HOUR;
    const collect = () => restarted.collect({ minAgeMs: HOUR, effectiveDir: eff, effectiveInUse: new Set() });
    assert.deepEqual((await collect()).removed, [], 'the first run after the clock was set right counts as the restart');
    now += HOUR;
    assert.deepEqual((await collect()).removed, [a.digest]);
  });

  it('a use noted while a run is under way keeps the profile from that run, and a use noted after its record went says so', async () => {
    const [a, b] = BODIES.map((b) => ingestInput(b));
    for (const i of [a!, b!]) await store.ingest(i);
    now += 2 * HOUR;
    // A cached pull lands in the middle of the run: here, while it reads the effective directory
    // (a file there makes it ask effectiveInUse), after it took the uses noted before it.
    writeFileSync(effFile('e'.repeat(64)), '{}');
    const noted: boolean[] = [];
    const duringRun = new (class extends Set<string> {
      override has(sha: string): boolean {
        noted.push(store.noteUse(a!.digest));
        return super.has(sha);
      }
    })();
    const r = await store.collect({ minAgeMs: HOUR, effectiveDir: eff, effectiveInUse: duringRun });
    assert.deepEqual(r.removed, [b!.digest], 'the pull answered from the store keeps its profile');
    assert.deepEqual(noted, [true], 'the record was there when the use was noted');
    assert.ok(await store.has(a!.digest));
    // Noted for the next run too: the pull's use counts from when it was made.
    now += HOUR - 1;
    assert.deepEqual((await run()).removed, []);
    now += 1;
    assert.deepEqual((await run()).removed, [a!.digest]);
    // A use noted once the record is gone is not a cached pull: the pipeline fetches again.
    assert.equal(store.noteUse(a!.digest), false);
  });

  it('a run that fails keeps the uses noted before it for the next run', async () => {
    const [a, b] = BODIES.map((b) => ingestInput(b));
    for (const i of [a!, b!]) await store.ingest(i);
    now += 2 * HOUR;
    store.noteUse(a!.digest);
    // The run fails once it has taken the noted uses: its effective directory cannot be listed.
    const notADir = join(dir, 'not-a-dir');
    writeFileSync(notADir, '');
    await assert.rejects(store.collect({ minAgeMs: HOUR, effectiveDir: notADir, effectiveInUse: new Set() }), { code: 'ENOTDIR' });
    now += 10 * 60_000;
    assert.deepEqual((await run()).removed, [b!.digest], 'a was pulled from the store 10 minutes ago');
    now += HOUR - 10 * 60_000;
    assert.deepEqual((await run()).removed, [a!.digest]);
  });

  it('over maxStoreBytes: unused profiles go least recently used first, before minAge', async () => {
    const [a, b, c, d] = BODIES.map((b) => ingestInput(b));
    await store.ingest(a!);
    now += 1000;
    await store.ingest(b!);
    now += 1000;
    await store.ingest(c!);
    const size = a!.layerBytes.byteLength;
    // `a` was pulled first but is used later than `b` and `c` were pulled.
    await store.markInUse(a!.digest, 'container:x');
    now += 1000;
    assert.deepEqual((await run({ maxStoreBytes: 3 * size })).removed, []);
    await store.release('container:x');
    now += 1000;
    await store.ingest(d!);
    const r = await run({ maxStoreBytes: 2 * size });
    assert.deepEqual(r.removed, [b!.digest, c!.digest]);
    assert.equal(r.bytes, 2 * size);
    // Last uses survive another store object (a shim restart).
    const again = new ProfileStore({ root: join(dir, 'store'), clock, fsync: false });
    now += 1000;
    const e = ingestInput(BODIES[0]!.replace('"a"', '"e"'));
    await again.ingest(e);
    assert.deepEqual((await again.collect({ minAgeMs: HOUR, maxStoreBytes: 2 * size, effectiveDir: eff, effectiveInUse: new Set() })).removed, [a!.digest]);
  });

  it('a profile and an effective file stamped while the clock ran ahead age from the first run after it was set right, not from when it catches up', async () => {
    const [ahead, recent] = BODIES.map((b) => ingestInput(b));
    const clockFixed = now;
    now = Date.parse('2038-01-01T00:00:00Z');
    await store.ingest(ahead!);
    const written = '6'.repeat(64);
    writeFileSync(effFile(written), '{}');
    utimesSync(effFile(written), new Date(now), new Date(now));
    now = clockFixed;
    await store.ingest(recent!);
    // Their stamps count as this run's: not taken for ancient either.
    const first = await run();
    assert.deepEqual([first.removed, first.effectiveRemoved], [[], []]);
    now += HOUR - 1;
    assert.deepEqual((await run()).removed, []);
    now += 1;
    const r = await run();
    assert.deepEqual(r.removed.sort(), [ahead!.digest, recent!.digest].sort());
    assert.deepEqual(r.effectiveRemoved, [written]);
  });

  it('a profile removed out of band and pulled again while the clock ran ahead ages from the next run, not from a use noted before its removal', async () => {
    const [a] = BODIES.map((b) => ingestInput(b));
    await store.ingest(a!);
    await store.markInUse(a!.digest, 'container:x');
    await run(); // its last use noted: now
    await store.release('container:x');
    await store.remove(a!.digest); // `spoke store rm`, between runs
    now += 2 * HOUR;
    const clockFixed = now;
    now = Date.parse('2038-01-01T00:00:00Z');
    await store.ingest(a!); // pulled again
    now = clockFixed;
    assert.deepEqual((await run()).removed, [], 'pulled moments ago');
    now += HOUR;
    assert.deepEqual((await run()).removed, [a!.digest]);
  });

  it('over maxStoreBytes, a profile pulled while the clock ran ahead is not taken for the most recently used', async () => {
    const [ahead, b, c] = BODIES.map((b) => ingestInput(b));
    const clockFixed = now;
    now = Date.parse('2038-01-01T00:00:00Z');
    await store.ingest(ahead!);
    now = clockFixed;
    assert.deepEqual((await run()).removed, []);
    now += 1000;
    await store.ingest(b!);
    now += 1000;
    await store.ingest(c!);
    assert.deepEqual((await run({ maxStoreBytes: 2 * ahead!.layerBytes.byteLength })).removed, [ahead!.digest]);
  });

  it('effective files: kept while named by a live object or merged from a held profile; only <64 hex>.json names are touched', async () => {
    const [a, b] = BODIES.map((b) => ingestInput(b));
    await store.ingest(a!);
    await store.ingest(b!);
    const [held, named, unused, young] = ['1', '2', '3', '4'].map((x) => x.repeat(64));
    for (const sha of [held!, named!, unused!, young!]) writeFileSync(effFile(sha), '{}');
    for (const sha of [held!, named!, unused!]) utimesSync(effFile(sha), new Date(now - 2 * HOUR), new Date(now - 2 * HOUR));
    writeFileSync(join(eff, 'spoke-record-log.json'), '{}');
    writeFileSync(join(eff, `${'5'.repeat(63)}.json`), '{}');
    utimesSync(effFile(young!), new Date(now), new Date(now));
    await store.recordEffective(held!, a!.digest, { reference: a!.reference });
    await store.recordEffective(unused!, b!.digest);
    await store.markInUse(a!.digest, 'pending:1:abc');
    const r = await run({ inUse: [named!] });
    assert.deepEqual(r.effectiveRemoved, [unused!]);
    assert.ok(existsSync(effFile(held!)) && existsSync(effFile(named!)) && existsSync(effFile(young!)));
    assert.ok(!existsSync(effFile(unused!)));
    assert.ok(existsSync(join(eff, 'spoke-record-log.json')) && existsSync(join(eff, `${'5'.repeat(63)}.json`)));
    // `named` was seen used at this run: kept for minAge after it, not after its old mtime.
    now += HOUR - 1;
    assert.deepEqual((await run()).effectiveRemoved, []);
    now += 1;
    assert.deepEqual((await run()).effectiveRemoved.sort(), [named!, young!].sort());
    assert.ok(existsSync(effFile(held!)), 'held through its origin');
  });

  it('invalid verdicts (a cache: a removed one is judged again) go once minAge old, or stamped in the future; younger ones stay', async () => {
    const [old, young, ahead] = ['7', '8', '9'].map((x) => `sha256:${x.repeat(64)}` as const);
    const verdict = (d: string) => join(dir, 'store', 'invalid', 'sha256', `${d.slice(7)}.json`);
    for (const d of [old, young, ahead]) await store.recordInvalid(d, 'not a seccomp profile');
    const stamp = (d: string, at: number) => utimesSync(verdict(d), new Date(at), new Date(at));
    stamp(old, now - HOUR);
    stamp(young, now - HOUR + 1);
    stamp(ahead, Date.parse('2038-01-01T00:00:00Z'));
    const r = await run();
    assert.equal(r.invalidRemoved, 2);
    assert.deepEqual([old, young, ahead].map((d) => existsSync(verdict(d))), [false, true, false]);
    assert.ok(await store.getInvalid(young));
  });

  it('temp files a crash left over an hour ago go, in the store, beside the effective files and beside the logging profile; newer ones stay', async () => {
    const dirs = [join(eff, '.tmp'), join(dir, 'store', 'recording', '.tmp')];
    for (const d of dirs) {
      mkdirSync(d, { recursive: true });
      writeFileSync(join(d, 'old'), '{');
      utimesSync(join(d, 'old'), new Date(now - 2 * HOUR), new Date(now - 2 * HOUR));
      writeFileSync(join(d, 'new'), '{');
      utimesSync(join(d, 'new'), new Date(now - HOUR / 2), new Date(now - HOUR / 2));
    }
    await run();
    for (const d of dirs) {
      assert.ok(!existsSync(join(d, 'old')), d);
      assert.ok(existsSync(join(d, 'new')), d);
    }
  });

  it('a held artifact whose record a crash left unreadable keeps its blob and its effective files\' origins', async () => {
    const a = ingestInput(BODIES[0]!);
    await store.ingest(a);
    await store.markInUse(a.digest, 'container:c1');
    const sha = '7'.repeat(64);
    await store.recordEffective(sha, a.digest);
    // Records are not flushed: a crash can leave one torn (docs/decisions.md#store-durability).
    writeFileSync(join(dir, 'store', 'profiles', 'sha256', `${a.digest.slice(7)}.json`), '');
    const blob = store.blobPath(a.layerDigest);
    utimesSync(blob, new Date(now - 2 * HOUR), new Date(now - 2 * HOUR));
    now += 2 * HOUR;
    await run({ minAgeMs: 0 });
    assert.ok(existsSync(blob));
    assert.deepEqual(await store.effectiveDigests(sha), [a.digest]);
  });

  it('a blob a crashed removal left moved aside is put back when a record names it and it is missing: the record keeps its blob', async () => {
    // A removal moves a blob aside, lists the records again and puts it back if one names it now
    // (an ingest of the same layer linked meanwhile): a crash between leaves it aside.
    const a = ingestInput(BODIES[0]!);
    await store.ingest(a);
    await store.markInUse(a.digest, 'container:c1');
    const blob = store.blobPath(a.layerDigest);
    const aside = join(dirname(blob), `.removing-${a.layerDigest.slice(7)}-crashed`);
    renameSync(blob, aside);
    await run();
    assert.ok(existsSync(blob), 'put back');
    assert.ok(!existsSync(aside));
    assert.equal((await store.readBlob(a.layerDigest, { verify: true })).toString(), BODIES[0]);
    // One whose blob is there again (written anew by a pull) or that no record names goes as before, once an hour old.
    const b = ingestInput(BODIES[1]!);
    await store.ingest(b);
    const orphan = join(dirname(blob), `.removing-${'e'.repeat(64)}-crashed`);
    writeFileSync(orphan, 'x');
    const twin = join(dirname(blob), `.removing-${b.layerDigest.slice(7)}-crashed`);
    writeFileSync(twin, 'stale');
    await run();
    assert.ok(existsSync(orphan) && existsSync(twin), 'younger than an hour: kept');
    assert.equal((await store.readBlob(b.layerDigest, { verify: true })).toString(), BODIES[1]);
  });

  it('an incomplete in-use set removes nothing', async () => {
    const a = ingestInput(BODIES[0]!);
    await store.ingest(a);
    const sha = '6'.repeat(64);
    writeFileSync(effFile(sha), '{}');
    utimesSync(effFile(sha), new Date(now - 2 * HOUR), new Date(now - 2 * HOUR));
    writeFileSync(join(dir, 'store', 'state', 'in-use.json'), '{"holders":{"contai');
    now += 2 * HOUR;
    const r = await run({ minAgeMs: 0, maxStoreBytes: 1 });
    assert.equal(r.complete, false);
    assert.deepEqual([r.removed, r.effectiveRemoved], [[], []]);
    assert.ok(await store.has(a.digest));
    assert.ok(existsSync(effFile(sha)));
  });

  it('pruning an origins record of a removed artifact keeps the merge inputs of the artifacts still there (spoke ps --explain)', async () => {
    const [a, b] = BODIES.map((x) => ingestInput(x));
    await store.ingest(a!);
    await store.ingest(b!);
    const sha = '9'.repeat(64);
    await store.recordEffective(sha, a!.digest, { reference: 'r.io/a@x', base: { type: 'RuntimeDefault' } });
    await store.recordEffective(sha, b!.digest, { reference: 'r.io/b@x' });
    await store.remove(b!.digest);
    await run();
    assert.deepEqual(await store.effectiveDigests(sha), [a!.digest]);
    assert.deepEqual(await store.effectiveInputs(sha), [{ digest: a!.digest, reference: 'r.io/a@x', base: { type: 'RuntimeDefault' } }]);
  });

  it('the origins record keeps each merge input once, with its base', async () => {
    const a = ingestInput(BODIES[0]!);
    const sha = '7'.repeat(64);
    const base = { type: 'Localhost' as const, path: '/var/lib/kubelet/seccomp/base.json', sha256: '8'.repeat(64) };
    await store.recordEffective(sha, a.digest, { reference: 'r.io/p@x', base });
    await store.recordEffective(sha, a.digest, { reference: 'r.io/p@x', base });
    await store.recordEffective(sha, a.digest, { reference: 'r.io/q@x', base: { type: 'RuntimeDefault' } });
    await store.recordEffective(sha, a.digest);
    assert.deepEqual(await store.effectiveDigests(sha), [a.digest]);
    assert.deepEqual(await store.effectiveInputs(sha), [
      { digest: a.digest, reference: 'r.io/p@x', base },
      { digest: a.digest, reference: 'r.io/q@x', base: { type: 'RuntimeDefault' } },
    ]);
  });
});
