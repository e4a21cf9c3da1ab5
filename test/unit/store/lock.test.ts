// The cross-process lock with real processes: never two holders, a dead holder's lock is broken,
// a live holder's lock never is, however old it looks.

import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, lchownSync, lstatSync, lutimesSync, mkdirSync, readdirSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import fsp from 'node:fs/promises';
import { syncBuiltinESMExports } from 'node:module';
import { join } from 'node:path';
import { after, describe, it, type TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { SpokeError } from '../../../src/core/errors.js';
import { rejectsWith } from '../../helpers/assert.js';
import { holdFileLock, sweepDeadOwners, withFileLock } from '../../../src/store/lock.js';
import { tempDirMaker } from '../../helpers/temp-dirs.js';
import { withFs } from '../../helpers/with-fs.js';

const CHILD = fileURLToPath(new URL('./lock-child.js', import.meta.url));
const locksDir = tempDirMaker('spoke-lock-');

function child(args: string[]): { proc: ChildProcess; exit: Promise<number | null>; line: Promise<string> } {
  const proc = spawn(process.execPath, [CHILD, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  const exit = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  const line = new Promise<string>((r) => proc.stdout!.once('data', (d: Buffer) => r(d.toString().trim())));
  return { proc, exit, line };
}

describe('cross-process lock', () => {
  it('concurrent processes never both hold it, and a holder killed mid-hold does not block the rest', async () => {
    const dir = locksDir();
    const lock = join(dir, 'x.lock');
    const workers = Array.from({ length: 4 }, () => child(['work', lock, join(dir, 'marker'), '150']));
    // Holders SIGKILLed while holding, between the workers' turns.
    for (let i = 0; i < 3; i++) {
      const h = child(['hold', lock]);
      assert.equal(await h.line, 'held');
      h.proc.kill('SIGKILL');
      await h.exit;
    }
    const codes = await Promise.all(workers.map((w) => w.exit));
    assert.deepEqual(codes, [0, 0, 0, 0], 'exit 3 means two processes held the lock at once');
    // The last killed holder may have outlived the workers: its lock is broken by the next taker.
    await withFileLock(lock, async () => undefined, 5000);
    assert.deepEqual(readdirSync(dir).filter((n) => n !== 'owners'), [], 'no lock, claim or marker left behind');
  });

  it('a lock whose breaker died mid-break is still broken, one level down', async () => {
    const dir = locksDir();
    const lock = join(dir, 'z.lock');
    // Two processes that existed once: the holder, and a breaker that died holding its claim.
    const holder = 'a'.repeat(24);
    const breaker = 'b'.repeat(24);
    symlinkSync(`spoke-lock:${holder}:1`, lock);
    symlinkSync(`spoke-lock:${breaker}:2`, `${lock}.break-${holder}`);
    assert.equal(await withFileLock(lock, async () => 'taken', 5000), 'taken');
    assert.deepEqual(readdirSync(dir).filter((n) => n !== 'owners'), []);
  });

  it('a regular-file lock left by an older version is taken once it is over a minute old, not before', async () => {
    const dir = locksDir();
    const lock = join(dir, 'w.lock');
    writeFileSync(lock, '12345');
    await rejectsWith(withFileLock(lock, async () => undefined, 300), { code: 'Unavailable', reason: 'DEADLINE' });
    const old = new Date(Date.now() - 120_000);
    utimesSync(lock, old, old);
    assert.equal(await withFileLock(lock, async () => 'taken', 5000), 'taken');
  });

  it('a regular-file lock whose mtime is over a minute in the future (left while the clock ran ahead) is taken too; one less ahead is not', async () => {
    const dir = locksDir();
    const lock = join(dir, 'v.lock');
    writeFileSync(lock, '12345');
    const slightlyAhead = new Date(Date.now() + 10_000);
    utimesSync(lock, slightlyAhead, slightlyAhead);
    await rejectsWith(withFileLock(lock, async () => undefined, 300), { code: 'Unavailable', reason: 'DEADLINE' });
    const aDayAhead = new Date(Date.now() + 86_400_000);
    utimesSync(lock, aDayAhead, aDayAhead);
    assert.equal(await withFileLock(lock, async () => 'taken', 5000), 'taken');
  });

  it('a live holder is never broken, however old its lock looks; once it dies the lock is taken', async () => {
    const dir = locksDir();
    const lock = join(dir, 'y.lock');
    const h = child(['hold', lock]);
    try {
      assert.equal(await h.line, 'held');
      const anHourAgo = new Date(Date.now() - 3_600_000);
      lutimesSync(lock, anHourAgo, anHourAgo);
      let ran = false;
      await assert.rejects(
        withFileLock(lock, async () => {
          ran = true;
        }, 1500),
        (e: unknown) => e instanceof SpokeError && e.code === 'Unavailable',
      );
      assert.equal(ran, false);
    } finally {
      h.proc.kill('SIGKILL');
      await h.exit;
    }
    assert.equal(await withFileLock(lock, async () => 'taken', 5000), 'taken');
  });

  it("holdFileLock takes a dead holder's lock at once, without telling of a wait: a shim restarted after a crash is not held back by its predecessor's lock", async () => {
    const dir = locksDir();
    const lock = join(dir, 'shim');
    const h = child(['hold', lock]);
    assert.equal(await h.line, 'held');
    h.proc.kill('SIGKILL');
    await h.exit;
    const waits: number[] = [];
    const held = await holdFileLock(lock, (waitedMs) => waits.push(waitedMs));
    held.release();
    assert.deepEqual(waits, [], 'a dead holder is no wait');
  });
});

/** Takes and releases `lock`, the release's removal failing once with EIO (the lock is left behind). */
async function takeWithFailedRelease(lock: string): Promise<void> {
  let failed = false;
  await assert.rejects(
    withFs('unlinkSync', (original) => (path) => {
      if (path === lock && !failed) {
        failed = true;
        throw Object.assign(new Error('EIO: i/o error, unlink'), { code: 'EIO' });
      }
      return original(path);
    }, () => withFileLock(lock, async () => 'done')),
    (e: NodeJS.ErrnoException) => e.code === 'EIO',
  );
  assert.ok(failed);
  assert.ok(lstatSync(lock, { throwIfNoEntry: false }), 'the lock is left behind');
}

describe('a lock whose removal failed', () => {
  it('is this process\'s to take again: its next taker removes it and holds it, rather than waiting on its own live owner until the timeout', async () => {
    const dir = locksDir();
    const lock = join(dir, 'stuck.lock');
    await takeWithFailedRelease(lock);
    assert.equal(await withFileLock(lock, async () => 'again', 3_000), 'again');
    // Taken back and released: held by nobody now.
    assert.equal(lstatSync(lock, { throwIfNoEntry: false }), undefined);
  });
});

describe('a lock whose removal failed, read stale by two takers at once', () => {
  it('is removed by one of them only: the other never removes the lock the first has taken since', async () => {
    const dir = locksDir();
    const lock = join(dir, 'stale.lock');
    await takeWithFailedRelease(lock);
    // A slow thread pool: the first removal of the lock finishes once a second is under way, and
    // that second only once a taker holds the lock.
    let releaseLate!: () => void;
    const late = new Promise<void>((r) => (releaseLate = r));
    let secondArrived!: () => void;
    const second = new Promise<void>((r) => (secondArrived = r));
    let removals = 0;
    const original = fsp.unlink;
    fsp.unlink = (async (path: Parameters<typeof fsp.unlink>[0]) => {
      if (path === lock) {
        if (removals++ === 0) await second;
        else {
          secondArrived();
          await late;
        }
      }
      return original(path);
    }) as typeof fsp.unlink;
    syncBuiltinESMExports();
    let holding = 0;
    let most = 0;
    const take = () =>
      withFileLock(lock, async () => {
        most = Math.max(most, ++holding);
        releaseLate();
        // Long enough for a late removal and a second taker's next attempts (RETRY_MS apart).
        await new Promise((r) => setTimeout(r, 300));
        holding--;
      }, 5_000);
    try {
      await Promise.all([take(), take()]);
    } finally {
      fsp.unlink = original;
      syncBuiltinESMExports();
    }
    assert.equal(most, 1, 'two takers held the lock at once');
  });
});

describe('lock owner link', () => {
  it('a lock is still taken after the owners directory was cleaned of its link', async () => {
    const dir = locksDir();
    const lock = join(dir, 'y.lock');
    assert.equal(await withFileLock(lock, async () => 1), 1);
    for (const f of readdirSync(join(dir, 'owners'))) if (f.endsWith('.link')) rmSync(join(dir, 'owners', f));
    assert.equal(await withFileLock(lock, async () => 2), 2);
    assert.ok(readdirSync(join(dir, 'owners')).some((f) => f.endsWith('.link')), 'the link is made again');
  });
});

describe('a locks directory that is a link', () => {
  it('is refused STATE_CORRUPT before an owner socket or a lock is made through it (a shim takes its lock before the store checks its directories)', async () => {
    for (const linked of ['locks', 'locks/owners']) {
      const root = locksDir();
      const target = locksDir();
      if (linked === 'locks/owners') mkdirSync(join(root, 'locks'));
      symlinkSync(target, join(root, linked));
      await rejectsWith(holdFileLock(join(root, 'locks', 'shim'), () => undefined), { code: 'FailedPrecondition', reason: 'STATE_CORRUPT' });
      assert.deepEqual(readdirSync(target), [], `nothing made through ${linked}`);
    }
  });
});

describe('dead owners', () => {
  const owned = (dir: string) => readdirSync(join(dir, 'owners')).sort();
  const tokens = (names: string[]) => [...new Set(names.map((n) => n.split('.')[0]!))];

  it("a crashed process's owner files are swept; a live process's stay, and a dead owner's lock is still broken", async () => {
    const dir = locksDir();
    const crashedLock = join(dir, 'c.lock');
    const liveLock = join(dir, 'l.lock');
    const crashed = child(['hold', crashedLock]);
    assert.equal(await crashed.line, 'held');
    const crashedFiles = owned(dir);
    crashed.proc.kill('SIGKILL');
    await crashed.exit;
    const live = child(['hold', liveLock]);
    try {
      assert.equal(await live.line, 'held');
      // This process owns locks here too.
      await withFileLock(join(dir, 'm.lock'), async () => undefined);
      const before = owned(dir);
      assert.equal(tokens(before).length, 3, `three owners: ${before.join(' ')}`);
      // A link whose socket a breaker removed already (the crash's other leftover).
      writeFileSync(join(dir, 'owners', `${'d'.repeat(24)}.link`), '');

      assert.equal(await sweepDeadOwners(dir), 2, 'two dead owners: the crashed process and the orphan link');
      const after = owned(dir);
      assert.deepEqual(after, before.filter((n) => !crashedFiles.includes(n)), 'only the crashed owner and the orphan link are gone');
      // Still broken: its lock names a token whose socket is gone.
      assert.equal(await withFileLock(crashedLock, async () => 'taken', 5000), 'taken');
      // The live holder is untouched.
      await rejectsWith(withFileLock(liveLock, async () => undefined, 300), { code: 'Unavailable', reason: 'DEADLINE' });
    } finally {
      live.proc.kill('SIGKILL');
      await live.exit;
    }
  });

  it('a directory without owners sweeps nothing', async () => {
    assert.equal(await sweepDeadOwners(locksDir()), 0);
  });
});

// Lock, claim and owner files someone else planted while the store's directories were open to
// others (they are made private at each process's first use, but what is inside stays): a live
// socket they point at, or a real one they own, never passes for a live holder
// (docs/security-model.md#atomic-store).
describe('foreign lock files', () => {
  const root = (process.geteuid?.() ?? 0) === 0;
  const skip = !root && 'needs root to give a file away';
  const NOBODY = 65534;
  const servers: Server[] = [];
  after(() => servers.forEach((s) => s.close()));

  /** A listening unix socket at `path`, owned by root: what a planted link may point at. */
  async function listening(path: string): Promise<void> {
    const server = createServer((c) => c.destroy());
    servers.push(server);
    await new Promise<void>((r) => server.listen(path, r));
    server.unref();
  }

  /** `dir` with a foreign lock link at `lock` naming `token`, whose owner socket is a link to a live socket. */
  async function plantedLiveLink(dir: string, lock: string, token: string): Promise<void> {
    mkdirSync(join(dir, 'owners'), { recursive: true });
    const live = join(locksDir(), 'live.sock');
    await listening(live);
    symlinkSync(live, join(dir, 'owners', `${token}.sock`));
    symlinkSync(`spoke-lock:${token}:0`, lock);
    lchownSync(lock, NOBODY, NOBODY);
  }

  /** A `waiting` that ends the hold: a foreign lock is no wait. */
  const noWait = (): never => {
    throw new Error('holdFileLock waited on a foreign lock');
  };

  it("a live holder running as another user (a shim not run as root, sharing the store) is never broken: its owner socket answers", { skip }, async () => {
    const dir = locksDir();
    chmodSync(dir, 0o755);
    const lock = join(dir, 'in-use.lock');
    // The holder as uid 1000, able to write root's private directory as such a shim is given.
    const proc = spawn('setpriv', ['--reuid', '1000', '--regid', '1000', '--clear-groups', '--inh-caps', '+dac_override', '--ambient-caps', '+dac_override', process.execPath, CHILD, 'hold', lock], { stdio: ['ignore', 'pipe', 'inherit'] });
    const exit = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
    try {
      assert.equal(await new Promise<string>((r) => proc.stdout!.once('data', (d: Buffer) => r(d.toString().trim()))), 'held');
      assert.equal(lstatSync(lock).uid, 1000);
      await rejectsWith(withFileLock(lock, async () => undefined, 1500), { code: 'Unavailable', reason: 'DEADLINE' });
    } finally {
      proc.kill('SIGKILL');
      await exit;
    }
    // Once it is gone, its lock is broken as any dead holder's.
    assert.equal(await withFileLock(lock, async () => 'taken', 5000), 'taken');
  });

  it("a lock of another user's that goes between its lstat and its readlink is nothing held, never a lock naming no owner: its holder may take it again under the same inode", { skip }, async () => {
    const dir = locksDir();
    const lock = join(dir, 'in-use.lock');
    const token = 'e'.repeat(24);
    mkdirSync(join(dir, 'owners'));
    await listening(join(dir, 'owners', `${token}.sock`)); // the holder, alive
    symlinkSync(`spoke-lock:${token}:0`, lock);
    lchownSync(lock, NOBODY, NOBODY);
    // Its reads fail twice as if the holder let go and took it again each time.
    const original = fsp.readlink;
    let failures = 2;
    fsp.readlink = (async (path: Parameters<typeof fsp.readlink>[0], ...rest: unknown[]) => {
      if (path === lock && failures-- > 0) throw Object.assign(new Error('ENOENT: gone'), { code: 'ENOENT' });
      return (original as (...a: unknown[]) => Promise<string>)(path, ...rest);
    }) as typeof fsp.readlink;
    syncBuiltinESMExports();
    try {
      await rejectsWith(withFileLock(lock, async () => undefined, 1000), { code: 'Unavailable', reason: 'DEADLINE' });
    } finally {
      fsp.readlink = original;
      syncBuiltinESMExports();
    }
    assert.equal(lstatSync(lock).uid, NOBODY, 'the live holder keeps its lock');
  });

  it('what cannot be broken is refused STATE_CORRUPT, never waited on: a foreign directory at a lock path, a foreign lock under a chain of planted claims', { skip }, async () => {
    const dir = locksDir();
    const held = join(dir, 'shim');
    mkdirSync(held);
    chownSync(held, NOBODY, NOBODY);
    await rejectsWith(holdFileLock(held, noWait), { code: 'FailedPrecondition', reason: 'STATE_CORRUPT' });
    const lock = join(dir, 'in-use.lock');
    mkdirSync(lock);
    chownSync(lock, NOBODY, NOBODY);
    await rejectsWith(withFileLock(lock, async () => undefined, 2000), { code: 'FailedPrecondition', reason: 'STATE_CORRUPT' });
    // A regular foreign lock, and claims planted below it, each named by the inode above it.
    const chained = join(dir, 'pins.lock');
    writeFileSync(chained, '');
    chownSync(chained, NOBODY, NOBODY);
    let claimPath = `${chained}.break-foreign${statSync(chained).ino}`;
    for (let i = 0; i < 6; i++) {
      writeFileSync(claimPath, '');
      chownSync(claimPath, NOBODY, NOBODY);
      claimPath = `${claimPath}-foreign${statSync(claimPath).ino}`;
    }
    await rejectsWith(withFileLock(chained, async () => undefined, 2000), { code: 'FailedPrecondition', reason: 'STATE_CORRUPT' });
  });

  it('a lock link another user owns, whose owner socket is a link to a live socket, is broken at once: holdFileLock and withFileLock take it without waiting', { skip }, async () => {
    const dir = locksDir();
    const lock = join(dir, 'shim');
    await plantedLiveLink(dir, lock, 'e'.repeat(24));
    const held = await holdFileLock(lock, noWait);
    held.release();
    const other = join(dir, 'state.lock');
    await plantedLiveLink(dir, other, 'f'.repeat(24));
    assert.equal(await withFileLock(other, async () => 'taken', 2000), 'taken');
    assert.deepEqual(readdirSync(dir).filter((n) => n !== 'owners'), [], 'no lock or claim left behind');
  });

  it('a break claim another user owns, naming a live owner, does not stop the break of a dead lock', { skip }, async () => {
    const dir = locksDir();
    const lock = join(dir, 'shim');
    const dead = 'd'.repeat(24);
    const breaker = '9'.repeat(24);
    mkdirSync(join(dir, 'owners'));
    const live = join(locksDir(), 'live.sock');
    await listening(live);
    symlinkSync(live, join(dir, 'owners', `${breaker}.sock`));
    symlinkSync(`spoke-lock:${dead}:0`, lock);
    const claim = `${lock}.break-${dead}`;
    symlinkSync(`spoke-lock:${breaker}:0`, claim);
    lchownSync(claim, NOBODY, NOBODY);
    assert.equal(await withFileLock(lock, async () => 'taken', 2000), 'taken');
    assert.deepEqual(readdirSync(dir).filter((n) => n !== 'owners'), [], 'the planted claim went with the break');
  });

  it('a regular-file lock another user owns is broken at once, not after a minute', { skip }, async () => {
    const dir = locksDir();
    const lock = join(dir, 'w.lock');
    writeFileSync(lock, '12345');
    chownSync(lock, NOBODY, NOBODY);
    assert.equal(await withFileLock(lock, async () => 'taken', 2000), 'taken');
  });
});

describe('waiting for a lock, and the wall clock', () => {
  const DAY_MS = 86_400_000;

  /**
   * The wall clock mocked (from 2025-06-02), stepped by `step`, and a monotonic clock the test
   * moves; `read()` resolves at the next reading of the monotonic clock.
   */
  function clocks(t: TestContext) {
    t.mock.timers.enable({ apis: ['Date'], now: Date.parse('2025-06-02T00:00:00Z') });
    const c = {
      mono: 0,
      onRead: undefined as (() => void) | undefined,
      now: () => {
        c.onRead?.();
        return c.mono;
      },
      read: () => new Promise<void>((r) => (c.onRead = r)),
      step: (wall: number, mono: number) => {
        t.mock.timers.setTime(Date.now() + wall);
        c.mono += mono;
      },
    };
    return c;
  }

  /** Holds `lock` in this process (a live owner, never broken) until release(). */
  async function held(lock: string) {
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    let taken!: () => void;
    const isTaken = new Promise<void>((r) => (taken = r));
    const done = withFileLock(lock, async () => {
      taken();
      await released;
    });
    await isTaken;
    return { release: async () => (release(), await done) };
  }

  it('withFileLock gives up after its timeout on the monotonic clock: a day ahead is no timeout, a day behind does not stretch it', async (t) => {
    const lock = join(locksDir(), 'u.lock');
    const holder = await held(lock);
    try {
      const clock = clocks(t);
      let settled = false;
      const waiting = withFileLock(lock, async () => 'taken', 10_000, clock.now);
      waiting.then(() => (settled = true), () => (settled = true));
      // Past the waiter's first look at the clock (it runs on microtasks until its first retry delay).
      await new Promise((r) => setImmediate(r));
      clock.step(DAY_MS, 1000);
      await Promise.race([clock.read(), waiting.catch(() => undefined)]);
      assert.equal(settled, false, 'a forward step does not end the wait');
      clock.step(-2 * DAY_MS, 9_001);
      await rejectsWith(waiting, { code: 'Unavailable', reason: 'DEADLINE' });
    } finally {
      await holder.release();
    }
  });

  it("holdFileLock notes its wait every 10 s of the monotonic clock, with the time waited on it", async (t) => {
    const lock = join(locksDir(), 'shim');
    const first = await holdFileLock(lock, () => undefined);
    const clock = clocks(t);
    const notes: number[] = [];
    let noted!: () => void;
    const note = () => new Promise<void>((r) => (noted = r));
    let next = note();
    const second = holdFileLock(
      lock,
      (waitedMs) => {
        notes.push(waitedMs);
        noted();
      },
      clock.now,
    );
    try {
      await next;
      assert.deepEqual(notes, [0], 'told at the first refusal');
      next = note();
      clock.step(DAY_MS, 1000);
      await Promise.race([clock.read(), next]);
      assert.deepEqual(notes, [0], 'a forward step is no wait of a day');
      clock.step(-2 * DAY_MS, 9000);
      await next;
      assert.deepEqual(notes, [0, 10_000], 'a backward step does not hold the next note back');
    } finally {
      first.release();
      (await second).release();
    }
  });
});
