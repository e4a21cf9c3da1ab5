// The shim's AppArmor operations with a stand-in apparmor_parser: what it costs to refuse a
// profile the parser rejects (the real parser's cases are in test/integration/apparmor-parser.test.ts).

import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, watch, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import fsp from 'node:fs/promises';
import { syncBuiltinESMExports } from 'node:module';
import { createAppArmorOps } from '../../../src/cri/apparmor.js';
import { waitFor } from '../../helpers/wait.js';
import { writeFakeParser } from '../../helpers/fake-parser.js';
import { rejectsWith } from '../../helpers/assert.js';
import { SpokeError } from '../../../src/core/errors.js';

const DAY_MS = 86_400_000;

describe('createAppArmorOps', () => {
  const dir = mkdtempSync(join(tmpdir(), 'spoke-aaops-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  /**
   * A stand-in parser that writes, at each run, how many parsers run beside it (itself included),
   * then takes a while to accept; `atOnce` reads those counts.
   */
  const countingParser = (name: string) => {
    const live = join(dir, `live-${name}`);
    const counts = join(dir, `counts-${name}`);
    const parser = join(dir, `slow_parser-${name}`);
    writeFakeParser(parser, `mkdir -p '${live}'\ntouch '${live}'/$$\nls '${live}' | wc -l >> '${counts}'\nsleep 0.3\nrm '${live}'/$$\n`);
    return { parser, counts, atOnce: () => readFileSync(counts, 'utf8').trim().split('\n').map(Number) };
  };

  it('a text the parser rejected is refused again without running the parser again: its compile is deterministic, and some take seconds', async () => {
    const runs = join(dir, 'runs');
    const parser = join(dir, 'apparmor_parser');
    writeFakeParser(parser, `echo run >> '${runs}'\necho 'AppArmor parser error: Too many states' >&2\nexit 1\n`);
    const ops = createAppArmorOps({ parser: { parser } });
    const artifact = Buffer.from(JSON.stringify({ filesystem: { readOnlyPaths: ['/etc/hostname'] } }));
    for (let i = 0; i < 3; i++) await rejectsWith(ops.prepare(artifact), { code: 'SecurityProfileInvalid', reason: 'PROFILE_INVALID' });
    assert.equal(readFileSync(runs, 'utf8'), 'run\n');
  });

  it('a parser killed by a signal (the OOM killer) says nothing of the text: transient, not compiled again for ten minutes, then compiled', async () => {
    const runs = join(dir, 'runs-killed');
    const parser = join(dir, 'apparmor_parser-killed');
    // Killed on its first run, compiles on the next.
    writeFakeParser(parser, `echo run >> '${runs}'\n[ "$(wc -l < '${runs}')" -gt 1 ] && exit 0\nkill -KILL $$\n`);
    let now = 0;
    const ops = createAppArmorOps({ parser: { parser }, monotonicNow: () => now });
    const artifact = Buffer.from(JSON.stringify({ filesystem: { readOnlyPaths: ['/etc/passwd'] } }));
    await rejectsWith(ops.prepare(artifact), { code: 'Internal', reason: 'APPARMOR_FAILED' });
    now += 9 * 60_000;
    await rejectsWith(ops.prepare(artifact), { code: 'Internal', reason: 'APPARMOR_FAILED' });
    assert.equal(readFileSync(runs, 'utf8'), 'run\n', 'not compiled again within ten minutes');
    now += 2 * 60_000;
    const prepared = await ops.prepare(artifact);
    assert.match(prepared.name, /^spoke-/);
    assert.equal(readFileSync(runs, 'utf8'), 'run\nrun\n');
  });

  it('the ten minutes a transient failure is remembered are measured on the monotonic clock: a wall-clock step neither stretches nor cuts them', async (t) => {
    const runs = join(dir, 'runs-stepped');
    const parser = join(dir, 'apparmor_parser-stepped');
    // Killed on its first run, compiles on the next.
    writeFakeParser(parser, `echo run >> '${runs}'\n[ "$(wc -l < '${runs}')" -gt 1 ] && exit 0\nkill -KILL $$\n`);
    const wall = Date.parse('2025-06-02T00:00:00Z');
    t.mock.timers.enable({ apis: ['Date'], now: wall });
    let now = 0;
    const ops = createAppArmorOps({ parser: { parser }, monotonicNow: () => now });
    const artifact = Buffer.from(JSON.stringify({ filesystem: { readOnlyPaths: ['/etc/shadow'] } }));
    await rejectsWith(ops.prepare(artifact), { code: 'Internal', reason: 'APPARMOR_FAILED' });
    // The wall clock jumps a day ahead one minute later (a node booted with its RTC behind).
    t.mock.timers.setTime(wall + DAY_MS + 60_000);
    now += 60_000;
    await rejectsWith(ops.prepare(artifact), { code: 'Internal', reason: 'APPARMOR_FAILED' });
    assert.equal(readFileSync(runs, 'utf8'), 'run\n', 'a forward step does not end the window early');
    // NTP steps it back by a day ten more minutes later.
    t.mock.timers.setTime(wall + 11 * 60_000);
    now += 10 * 60_000;
    assert.match((await ops.prepare(artifact)).name, /^spoke-/);
    assert.equal(readFileSync(runs, 'utf8'), 'run\nrun\n', 'a backward step does not stretch the window');
  });

  it("a parser whose compile worker was killed exits non-zero with no diagnostic: transient too, not a verdict on the text", async () => {
    const runs = join(dir, 'runs-worker');
    const parser = join(dir, 'apparmor_parser-worker');
    // apparmor_parser 3.0 compiles in a forked worker; when the OOM killer takes the worker, the
    // parent exits 10 having printed only its start-up notice (seen with the real parser here).
    writeFakeParser(parser, `echo run >> '${runs}'\n[ "$(wc -l < '${runs}')" -gt 1 ] && exit 0\necho 'Cache read/write disabled: interface file missing. (Kernel needs AppArmor 2.4 compatibility patch.)' >&2\n{ sh -c 'kill -KILL $$'; } 2>/dev/null\nexit 10\n`);
    let now = 0;
    const ops = createAppArmorOps({ parser: { parser }, monotonicNow: () => now });
    const artifact = Buffer.from(JSON.stringify({ filesystem: { readOnlyPaths: ['/etc/group'] } }));
    await rejectsWith(ops.prepare(artifact), { code: 'Internal', reason: 'APPARMOR_FAILED' });
    now += 11 * 60_000;
    const prepared = await ops.prepare(artifact);
    assert.match(prepared.name, /^spoke-/);
    assert.equal(readFileSync(runs, 'utf8'), 'run\nrun\n');
  });

  for (const [reason, fails] of [
    ['DEADLINE', 'exec sleep 30'], // spins until the timeout (a busy node, or a pattern that loops it)
    ['APPARMOR_FAILED', 'kill -KILL $$'], // killed (the OOM killer)
    // The parser could not run its compile (the node's state, not the text): its own words.
    ['APPARMOR_FAILED', "echo 'Unable to open /etc/apparmor/parser.conf: Too many open files' >&2\nexit 1"],
    ['APPARMOR_FAILED', "echo \"Failed to load features from '/sys/kernel/security/apparmor/features': Permission denied\" >&2\nexit 1"],
  ] as const) {
    const which = `${reason}-${fails.length}`;
    it(`a check that failed ${reason} (${fails.split('\n')[0]!.slice(0, 60)}) refuses again for ten minutes only the namespace whose check it was: it says nothing of the text, and another namespace's create of it is compiled`, async () => {
      const runs = join(dir, `runs-tenant-${which}`);
      const parser = join(dir, `apparmor_parser-tenant-${which}`);
      // Fails on its first run, compiles on the next.
      writeFakeParser(parser, `echo run >> '${runs}'\n[ "$(wc -l < '${runs}')" -gt 1 ] && exit 0\n${fails}\n`);
      let now = 0;
      const ops = createAppArmorOps({ parser: { parser, timeoutMs: 500 }, monotonicNow: () => now });
      const artifact = Buffer.from(JSON.stringify({ filesystem: { readOnlyPaths: [`/etc/tenant-${which}`] } }));
      const transient = { code: 'Internal', reason } as const;
      await rejectsWith(ops.prepare(artifact, undefined, 'team-a'), transient);
      now += 60_000;
      await rejectsWith(ops.prepare(artifact, undefined, 'team-a'), transient);
      assert.equal(readFileSync(runs, 'utf8'), 'run\n', "team-a's retry within ten minutes: no parser run");
      // team-b never saw the failure: its create of the same text is compiled, not refused from team-a's.
      assert.match((await ops.prepare(artifact, undefined, 'team-b')).name, /^spoke-/);
      assert.equal(readFileSync(runs, 'utf8'), 'run\nrun\n');
      // The text is now known good, for every namespace: team-a's remembered failure no longer
      // refuses it, even once the prepared profile is forgotten (a baseline reload).
      await ops.reloadBaseline();
      assert.match((await ops.prepare(artifact, undefined, 'team-a')).name, /^spoke-/);
      assert.equal(readFileSync(runs, 'utf8'), 'run\nrun\n');
    });
  }

  it("a text refused at the parser's memory cap is refused again for ten minutes for that namespace only: a node's own memory limits (strict overcommit) fail a good text the same way", async () => {
    const runs = join(dir, 'runs-memory');
    const parser = join(dir, 'apparmor_parser-memory');
    // Out of memory on its first run (as under a cap the node's overcommit makes lower), compiles after.
    writeFakeParser(parser, `echo run >> '${runs}'\n[ "$(wc -l < '${runs}')" -gt 1 ] && exit 0\necho "terminate called after throwing an instance of 'std::bad_alloc'" >&2\necho '  what():  std::bad_alloc' >&2\nexit 134\n`);
    let now = 0;
    const ops = createAppArmorOps({ parser: { parser }, monotonicNow: () => now });
    const artifact = Buffer.from(JSON.stringify({ filesystem: { readOnlyPaths: ['/etc/memory-cap'] } }));
    const atCap = { code: 'SecurityProfileInvalid', reason: 'LIMIT_EXCEEDED' } as const;
    await rejectsWith(ops.prepare(artifact, undefined, 'team-a'), atCap);
    now += 5 * 60_000;
    await rejectsWith(ops.prepare(artifact, undefined, 'team-a'), atCap);
    assert.equal(readFileSync(runs, 'utf8'), 'run\n', 'not compiled again for team-a within ten minutes');
    // Another namespace's create compiles it in its own turn.
    assert.match((await ops.prepare(artifact, undefined, 'team-b')).name, /^spoke-/);
    assert.equal(readFileSync(runs, 'utf8'), 'run\nrun\n');
  });

  it("a stored artifact the artifact rules refuse (judged by an older spoke) is refused before any merge or check of its text", async () => {
    const runs = join(dir, 'runs-stale');
    const parser = join(dir, 'apparmor_parser-stale');
    writeFakeParser(parser, `echo run >> '${runs}'\nexit 0\n`);
    const ops = createAppArmorOps({ parser: { parser } });
    const artifact = Buffer.from(JSON.stringify({ filesystem: { readOnlyPaths: ['/etc/motd', '/etc/motd'] } }));
    await rejectsWith(ops.prepare(artifact), { code: 'SecurityProfileInvalid', reason: 'PROFILE_INVALID' });
    assert.throws(() => readFileSync(runs), /ENOENT/, 'the parser checked nothing');
  });

  it('a profile prepared once is reused until the baseline is reloaded: its merge and render cost ~0.2 s of the shim thread for a large artifact', async () => {
    const parser = join(dir, 'accepting_parser');
    writeFakeParser(parser, 'exit 0\n');
    const baselinePath = join(dir, 'baseline.json');
    writeFileSync(baselinePath, JSON.stringify({ filesystem: { readOnlyPaths: ['/etc/**'] } }));
    const ops = createAppArmorOps({ parser: { parser }, baselinePath });
    const artifact = Buffer.from(JSON.stringify({ filesystem: { readOnlyPaths: ['/etc/hostname', '/etc/hosts'] } }));
    const first = await ops.prepare(artifact);
    assert.equal(await ops.prepare(Buffer.from(artifact)), first, 'the same bytes: the same prepared profile');
    writeFileSync(baselinePath, JSON.stringify({ filesystem: { readOnlyPaths: ['/etc/hostname'] } }));
    await ops.reloadBaseline();
    const after = await ops.prepare(artifact);
    assert.notEqual(after.text, first.text, 'prepared anew against the reloaded baseline');
    assert.doesNotMatch(after.text, /\/etc\/hosts /);
  });

  it('the baseline is read through the reader given (the shim\'s trusted-file check): a refusal there refuses the profile, with its reason, and a reload keeps the last good baseline', async () => {
    const parser = join(dir, 'accepting_parser_trust');
    writeFakeParser(parser, 'exit 0\n');
    const baselinePath = join(dir, 'baseline-trust.json');
    writeFileSync(baselinePath, JSON.stringify({ filesystem: { readOnlyPaths: ['/etc/**'] } }));
    let open = true;
    const unsafe = new SpokeError('FailedPrecondition', 'AppArmor baseline: writable by every user', {}, { reason: 'FILE_UNSAFE' });
    const readBaseline = (path: string): Buffer => {
      if (open) throw unsafe;
      return readFileSync(path);
    };
    const ops = createAppArmorOps({ parser: { parser }, baselinePath, readBaseline });
    const artifact = Buffer.from(JSON.stringify({ filesystem: { readOnlyPaths: ['/etc/hostname'] } }));
    await rejectsWith(ops.prepare(artifact), { code: 'FailedPrecondition', reason: 'FILE_UNSAFE' });
    open = false;
    const first = await ops.prepare(artifact);
    open = true;
    await ops.reloadBaseline(); // refused: logged, and the last good baseline stays
    assert.equal(await ops.prepare(artifact), first, 'the last good baseline kept');
  });

  it('a reload that ends while the first use still reads the baseline wins: the older read does not replace the reloaded baseline', async () => {
    const parser = join(dir, 'accepting_parser_2');
    writeFakeParser(parser, 'exit 0\n');
    const baselinePath = join(dir, 'baseline-race.json');
    const wide = JSON.stringify({ filesystem: { readOnlyPaths: ['/etc/**'] } });
    const narrow = JSON.stringify({ filesystem: { readOnlyPaths: ['/etc/hostname'] } });
    writeFileSync(baselinePath, wide);
    // The first use's read of the baseline answers only after the reload's read (of the file as
    // changed meanwhile) has been taken.
    const { readFile } = fsp;
    let firstRead: (() => void) | undefined;
    let reads = 0;
    fsp.readFile = (async (path: unknown, ...rest: unknown[]) => {
      const bytes = await (readFile as (...a: unknown[]) => Promise<Buffer>)(path, ...rest);
      if (path === baselinePath && reads++ === 0) await new Promise<void>((r) => (firstRead = r));
      return bytes;
    }) as typeof fsp.readFile;
    syncBuiltinESMExports();
    try {
      const ops = createAppArmorOps({ parser: { parser }, baselinePath });
      const artifact = Buffer.from(JSON.stringify({ filesystem: { readOnlyPaths: ['/etc/hostname', '/etc/hosts'] } }));
      const first = ops.prepare(artifact);
      await waitFor(() => firstRead !== undefined, { timeoutMs: 5000, what: 'the first use reading the baseline' });
      writeFileSync(baselinePath, narrow);
      await ops.reloadBaseline();
      firstRead!();
      await first;
      const now = (await ops.prepare(Buffer.from(artifact))).text;
      fsp.readFile = readFile;
      syncBuiltinESMExports();
      // What a fresh use makes of each baseline.
      const against = async (text: string) => {
        const file = join(dir, `baseline-${text.length}.json`);
        writeFileSync(file, text);
        return (await createAppArmorOps({ parser: { parser }, baselinePath: file }).prepare(artifact)).text;
      };
      assert.notEqual(await against(wide), await against(narrow));
      assert.equal(now, await against(narrow), 'prepared against the reloaded baseline');
    } finally {
      fsp.readFile = readFile;
      syncBuiltinESMExports();
    }
  });

  it('a text the parser could not compile in time is neither compiled twice at once nor again for ten minutes, and at most two checks run at once', async () => {
    const runs = join(dir, 'slow-runs');
    const parser = join(dir, 'spinning_parser');
    // Spins like apparmor_parser 3.0 on some nested alternations, until the timeout kills it.
    writeFakeParser(parser, `echo run >> '${runs}'\nexec sleep 30\n`);
    let now = 0;
    const ops = createAppArmorOps({ parser: { parser, timeoutMs: 200 }, monotonicNow: () => now });
    const artifact = (path: string) => Buffer.from(JSON.stringify({ filesystem: { readOnlyPaths: [path] } }));
    const spins = artifact('/etc/x{,{b,},,}/');
    const deadline = { code: 'Internal', reason: 'DEADLINE' } as const;
    await Promise.all([0, 1, 2].map(() => rejectsWith(ops.prepare(spins), deadline)));
    assert.equal(readFileSync(runs, 'utf8'), 'run\n', 'three creates at once: one parser run');
    now += 9 * 60_000;
    await rejectsWith(ops.prepare(spins), deadline);
    assert.equal(readFileSync(runs, 'utf8'), 'run\n', 'a retry within ten minutes: no parser run');
    now += 60_000;
    await rejectsWith(ops.prepare(spins), deadline);
    assert.equal(readFileSync(runs, 'utf8'), 'run\nrun\n', 'ten minutes later it is tried again');
  });

  it('a check still waiting for a slot is dropped once every create waiting on it has gone: slow checks nobody waits for do not hold back the next profile', async () => {
    const runs = join(dir, 'queued-runs');
    const parser = join(dir, 'queue_parser');
    // Takes its time (as a spinning parser would, a while before its timeout), then accepts.
    writeFakeParser(parser, `cat | grep -o 'spin-[a-z]' | head -1 >> '${runs}'\nsleep 1\n`);
    const ops = createAppArmorOps({ parser: { parser, timeoutMs: 60_000 } });
    const artifact = (path: string) => Buffer.from(JSON.stringify({ filesystem: { readOnlyPaths: [path] } }));
    const gone = new AbortController();
    // Two slow checks take both slots; two more wait for one, and then their creates go away.
    writeFileSync(runs, '');
    const started = (n: number) =>
      new Promise<void>((resolve) => {
        const watcher = watch(runs, () => {
          if (readFileSync(runs, 'utf8').trim().split('\n').filter(Boolean).length >= n) {
            watcher.close();
            resolve();
          }
        });
      });
    const bothStarted = started(2);
    const running = ['a', 'b'].map((x) => ops.prepare(artifact(`/etc/spin-${x}`)));
    await bothStarted;
    const waiting = ['c', 'd'].map((x) => ops.prepare(artifact(`/etc/spin-${x}`), gone.signal));
    for (const p of waiting) p.catch(() => undefined);
    // Each of them reaches the queue (a turn of merging and rendering) before its create goes.
    await new Promise((resolve) => setImmediate(resolve));
    gone.abort(new Error('the create went away'));
    // A create of a dropped text that comes in the same turn is not given the dropped check's refusal.
    const again = ops.prepare(artifact('/etc/spin-c'));
    for (const p of waiting) await rejectsWith(p, { code: 'Unavailable', reason: 'CANCELLED' });
    // Once the running ones end, nothing dropped runs after them.
    await Promise.all(running);
    assert.ok(await again);
    assert.ok(await ops.prepare(artifact('/etc/spin-e')));
    assert.deepEqual(readFileSync(runs, 'utf8').trim().split('\n').sort(), ['spin-a', 'spin-b', 'spin-c', 'spin-e']);
  });

  it("checks waiting for a parser slot are served in turn across namespaces: one namespace's burst of slow texts does not hold back another's", async () => {
    const runs = join(dir, 'fair-runs');
    const parser = join(dir, 'fair_parser');
    writeFileSync(runs, '');
    // Notes which text it checks, then takes a while (as a spinning parser would), then accepts.
    writeFakeParser(parser, `cat | grep -o 'slow-[a-z0-9]*' | head -1 >> '${runs}'\nsleep 0.2\n`);
    const ops = createAppArmorOps({ parser: { parser, timeoutMs: 60_000 } });
    const artifact = (path: string) => Buffer.from(JSON.stringify({ filesystem: { readOnlyPaths: [path] } }));
    // Namespace "noisy" asks for six distinct texts, then "quiet" for one.
    const noisy = ['a1', 'a2', 'a3', 'a4', 'a5', 'a6'].map((x) => ops.prepare(artifact(`/etc/slow-${x}`), undefined, 'noisy'));
    const quiet = ops.prepare(artifact('/etc/slow-b1'), undefined, 'quiet');
    await Promise.all([...noisy, quiet]);
    const order = readFileSync(runs, 'utf8').trim().split('\n');
    assert.equal(order.length, 7);
    // Two noisy checks hold the slots when quiet's arrives; it gets the next turn but one at most.
    assert.ok(order.indexOf('slow-b1') <= 3, `checks ran in the order ${order.join(', ')}`);
  });

  it("a create does not join another namespace's check of the same text: that check waits in its namespace's turn, behind its burst", async () => {
    const runs = join(dir, 'wedge-runs');
    const parser = join(dir, 'wedge_parser');
    writeFileSync(runs, '');
    // Notes which text it checks, then holds its slot until the test releases that text.
    writeFakeParser(parser, `t=$(cat | grep -o 'wedge-[a-z0-9]*' | head -1)\necho "$t" >> '${runs}'\n[ "$t" = wedge-warm ] && exit 0\nwhile [ ! -e '${dir}'/release-"$t" ]; do sleep 0.02; done\nexit 0\n`);
    const release = (t: string) => writeFileSync(join(dir, `release-wedge-${t}`), '');
    const logged = (n: number) =>
      new Promise<string[]>((resolve) => {
        const seen = () => {
          const lines = readFileSync(runs, 'utf8').split('\n').filter((l) => l !== '' && l !== 'wedge-warm');
          if (lines.length < n) return;
          watcher.close();
          resolve(lines);
        };
        const watcher = watch(runs, seen);
        seen();
      });
    const ops = createAppArmorOps({ parser: { parser, timeoutMs: 60_000 } });
    const artifact = (path: string) => Buffer.from(JSON.stringify({ filesystem: { readOnlyPaths: [path] } }));
    await ops.prepare(artifact('/etc/wedge-warm'), undefined, 'warm-up'); // the library and the baseline are loaded
    // team-a takes both slots, queues three more texts, then asks for the victim's text last;
    // then the victim's namespace asks for its own text.
    const teamA = ['a1', 'a2', 'a3', 'a4', 'a5', 'v'].map((x) => ops.prepare(artifact(`/etc/wedge-${x}`), undefined, 'team-a'));
    const victim = ops.prepare(artifact('/etc/wedge-v'), undefined, 'victim');
    try {
      assert.deepEqual((await logged(2)).sort(), ['wedge-a1', 'wedge-a2']);
      release('a1');
      assert.equal((await logged(3))[2], 'wedge-a3', "the first slot freed: team-a's turn");
      release('a2');
      const order = await logged(4);
      assert.equal(order[3], 'wedge-v', `the next one: the victim's turn, not team-a's (checks ran in the order ${order.join(', ')})`);
      release('v');
      assert.match((await victim).name, /^spoke-/);
    } finally {
      for (const t of ['a1', 'a2', 'a3', 'a4', 'a5', 'v']) release(t);
    }
    await Promise.all([...teamA, victim]);
    // team-a's own check of the victim's text, judged by then, runs no parser.
    assert.deepEqual((await logged(6)).sort(), ['wedge-a1', 'wedge-a2', 'wedge-a3', 'wedge-a4', 'wedge-a5', 'wedge-v']);
  });

  it('at most two parser checks run at once: each may spin a core until its timeout', async () => {
    const { parser, atOnce } = countingParser('checks');
    const ops = createAppArmorOps({ parser: { parser } });
    await Promise.all(['a', 'b', 'c', 'd', 'e'].map((x) => ops.prepare(Buffer.from(JSON.stringify({ filesystem: { readOnlyPaths: [`/etc/${x}`] } })))));
    const seen = atOnce();
    assert.equal(seen.length, 5);
    assert.ok(Math.max(...seen) <= 2, `parsers at once: ${seen.join(', ')}`);
  });

  it('loads take the same two parser slots as checks: creates of many checked texts at once do not run a parser each', async () => {
    const { parser, counts, atOnce } = countingParser('loads');
    const securityfs = join(dir, 'securityfs-loads'); // a kernel with AppArmor, as the parser sees it
    mkdirSync(securityfs);
    const ops = createAppArmorOps({ parser: { parser, securityfs } });
    const artifact = (x: string) => Buffer.from(JSON.stringify({ filesystem: { readOnlyPaths: [`/etc/${x}`] } }));
    const prepared = [];
    for (const x of ['a', 'b', 'c']) prepared.push(await ops.prepare(artifact(x)));
    writeFileSync(counts, '');
    // Three loads of checked texts and two new checks, at once.
    await Promise.all([...prepared.map((p) => ops.load(p)), ops.prepare(artifact('d'), undefined, 'ns-3'), ops.prepare(artifact('e'), undefined, 'ns-4')]);
    const seen = atOnce();
    assert.equal(seen.length, 5);
    assert.ok(Math.max(...seen) <= 2, `parsers at once: ${seen.join(', ')}`);
  });

  it("a load waits in a turn of its own, not in its namespace's: under its name's lock, it would hold every namespace's creates of that profile behind one namespace's burst", async () => {
    const runs = join(dir, 'runs-load-first');
    const parser = join(dir, 'held_checks-loads');
    const securityfs = join(dir, 'securityfs-first');
    mkdirSync(securityfs);
    // Loads note themselves and end; a check notes its text and holds its slot until the test
    // releases that text.
    writeFakeParser(
      parser,
      `case " $* " in *" --replace "*) echo load >> '${runs}' ;; *) t=$(cat | grep -o 'first-[a-z0-9]*' | head -1); echo "$t" >> '${runs}'; [ "$t" = first-shared ] && exit 0; while [ ! -e '${dir}'/release-"$t" ]; do sleep 0.02; done ;; esac\n`,
    );
    const release = (t: string) => writeFileSync(join(dir, `release-first-${t}`), '');
    const logged = async (n: number) => {
      let lines: string[] = [];
      await waitFor(() => (lines = readFileSync(runs, 'utf8').split('\n').filter((l) => l !== '')).length >= n, { timeoutMs: 10_000, what: `${n} parser runs` });
      return lines;
    };
    const ops = createAppArmorOps({ parser: { parser, securityfs, timeoutMs: 60_000 } });
    const artifact = (x: string) => Buffer.from(JSON.stringify({ filesystem: { readOnlyPaths: [`/opt/first-${x}`] } }));
    const named = await ops.prepare(artifact('shared'));
    writeFileSync(runs, '');
    // Namespace a's burst: two checks take the slots, two wait in its turn; then a create of a
    // checked profile loads it.
    const burst = ['a1', 'a2', 'a3', 'a4'].map((x) => ops.prepare(artifact(x), undefined, 'a'));
    try {
      assert.deepEqual((await logged(2)).sort(), ['first-a1', 'first-a2']);
      const load = ops.load(named);
      release('a1');
      assert.equal((await logged(3))[2], 'first-a3', "the first slot freed: a's turn");
      release('a2');
      // a3 holds the other slot: whoever takes this one is the only next run.
      const order = await logged(4);
      assert.equal(order[3], 'load', `the next slot: the loads' turn, not a's again (runs in the order ${order.join(', ')})`);
      await load;
    } finally {
      for (const t of ['a1', 'a2', 'a3', 'a4']) release(t);
    }
    await Promise.all(burst);
    assert.deepEqual((await logged(5)).slice(3), ['load', 'first-a4']);
  });

  it('a load waiting for a parser slot is given up when its create has gone', async () => {
    const gate = join(dir, 'gate-loads');
    const runs = join(dir, 'runs-gone-load');
    const parser = join(dir, 'gated_parser-loads');
    const securityfs = join(dir, 'securityfs-gone');
    mkdirSync(securityfs);
    // Every run waits until the test removes the gate file.
    writeFakeParser(parser, `echo run >> '${runs}'\nwhile [ -e '${gate}' ]; do sleep 0.02; done\n`);
    const ops = createAppArmorOps({ parser: { parser, securityfs } });
    const artifact = (x: string) => Buffer.from(JSON.stringify({ filesystem: { readOnlyPaths: [`/srv/${x}`] } }));
    const named = await ops.prepare(artifact('loaded'));
    writeFileSync(gate, '');
    writeFileSync(runs, '');
    const busy = [ops.prepare(artifact('x'), undefined, 'a'), ops.prepare(artifact('y'), undefined, 'b')];
    await waitFor(() => readFileSync(runs, 'utf8') === 'run\nrun\n', { timeoutMs: 5000, what: 'both slots taken' });
    // The create's signal fires as the shim's does: with no reason of spoke's (the client left).
    const gone = new AbortController();
    const load = ops.load(named, gone.signal);
    gone.abort();
    await rejectsWith(load, { code: 'Unavailable', reason: 'CANCELLED' });
    rmSync(gate);
    await Promise.all(busy);
    assert.equal(readFileSync(runs, 'utf8'), 'run\nrun\n', 'the given-up load ran no parser');
  });
});

// One name, one compilation (docs/apparmor.md#the-parser-in-the-name): a profile loaded again
// under its name is replaced (`--replace`) under the containers running it, so the name covers
// whatever decides the compiled policy beside the text: the parser and the features it compiles for.
describe('the AppArmor profile name covers the parser', () => {
  const dir = mkdtempSync(join(tmpdir(), 'spoke-aaname-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const artifact = Buffer.from(JSON.stringify({ filesystem: { readOnlyPaths: ['/etc/hostname'] } }));
  /** A stand-in parser that notes each call's arguments in `<path>.calls`. */
  const parserAt = (name: string, opts: Parameters<typeof writeFakeParser>[2] = {}) => {
    const parser = join(dir, name);
    writeFakeParser(parser, `echo "$*" >> '${parser}.calls'\nexit 0`, opts);
    return parser;
  };

  it('another apparmor_parser names the same profile differently; the same one, in a shim started again, names it the same', async () => {
    const old = parserAt('parser-3.0.8');
    const upgraded = parserAt('parser-3.0.13', { version: 'AppArmor parser version 3.0.13' });
    const before = await createAppArmorOps({ parser: { parser: old } }).prepare(artifact);
    const restarted = await createAppArmorOps({ parser: { parser: old } }).prepare(artifact);
    const after = await createAppArmorOps({ parser: { parser: upgraded } }).prepare(artifact);
    assert.equal(restarted.name, before.name, 'the same parser: the same name, whose --replace changes nothing');
    assert.notEqual(after.name, before.name, 'a new parser: a new name, loaded beside the one running containers use');
    assert.match(after.name, /^spoke-[0-9a-f]{64}$/);
    assert.equal(after.text, before.text.replaceAll(before.name, after.name), 'only the name differs');
  });

  it('so does the same parser compiling for other features (another features file, another parser.conf)', async () => {
    const features = join(dir, 'features');
    writeFileSync(features, 'network_v8 {yes}\n');
    const parser = parserAt('parser-features', { compiled: `cat '${features}'` });
    const before = await createAppArmorOps({ parser: { parser } }).prepare(artifact);
    writeFileSync(features, 'signal {yes}\n');
    const after = await createAppArmorOps({ parser: { parser } }).prepare(artifact);
    assert.notEqual(after.name, before.name);
  });

  it('an edit of parser.conf or its features file with the same binary is taken once the shim is told to look again (SIGHUP), not before', async () => {
    const features = join(dir, 'features-hup');
    writeFileSync(features, 'network_v8 {yes}\n');
    const parser = parserAt('parser-hup', { compiled: `cat '${features}'` });
    const ops = createAppArmorOps({ parser: { parser } });
    const before = await ops.prepare(artifact);
    writeFileSync(features, 'signal {yes}\n');
    assert.equal((await ops.prepare(artifact)).name, before.name, 'one stat of the binary at each create: the edit is not seen');
    ops.identifyParserAgain();
    const after = await ops.prepare(artifact);
    assert.notEqual(after.name, before.name, 'named for the parser as it compiles now');
    assert.equal((await ops.prepare(artifact)).name, after.name, 'and identified once');
  });

  it('two SIGHUPs while the parser is still being identified: a profile asked for after the last is named for the parser as it compiles now, not for the look it waited on', async () => {
    const features = join(dir, 'features-hup2');
    const started = join(dir, 'hup2-started');
    const gate = join(dir, 'hup2-gate');
    writeFileSync(features, 'network_v8 {yes}\n');
    // The probe's compile reads the features file at once, then waits for the test's gate.
    const parser = parserAt('parser-hup2', { compiled: `cat '${features}'; touch '${started}'; while [ ! -e '${gate}' ]; do sleep 0.01; done` });
    const ops = createAppArmorOps({ parser: { parser } });
    const first = ops.prepare(artifact);
    await waitFor(() => existsSync(started), { timeoutMs: 10_000, what: 'the first identification reading the features file' });
    writeFileSync(features, 'signal {yes}\n');
    ops.identifyParserAgain();
    const afterOne = ops.prepare(artifact);
    // Its look now waits on the first identification: prepare reaches it in microtasks alone.
    await new Promise((r) => setImmediate(r));
    ops.identifyParserAgain();
    const afterTwo = ops.prepare(artifact);
    writeFileSync(gate, '');
    const [before, one, two] = await Promise.all([first, afterOne, afterTwo]);
    const now = await createAppArmorOps({ parser: { parser } }).prepare(artifact);
    assert.notEqual(now.name, before.name, 'the edit changes the name');
    assert.equal(one.name, now.name, 'asked after the first SIGHUP');
    assert.equal(two.name, now.name, 'asked after the second');
  });

  it('a parser upgraded while the shim runs: the next create names its profile for the new one, which is identified once', async () => {
    const parser = parserAt('parser-live');
    const ops = createAppArmorOps({ parser: { parser } });
    const before = await ops.prepare(artifact);
    assert.equal((await ops.prepare(artifact)).name, before.name);
    parserAt('parser-live', { version: 'AppArmor parser version 3.0.13' });
    const after = await ops.prepare(artifact);
    assert.notEqual(after.name, before.name);
    assert.equal((await ops.prepare(artifact)).name, after.name);
    const calls = readFileSync(`${parser}.calls`, 'utf8').trim().split('\n');
    assert.equal(calls.length, 2, `one check per name: ${calls.join(' | ')}`);
  });

  it('a profile named for one parser is never loaded by another: a parser replaced between the check and the load refuses the load (transient), and the retry names for the new one', async () => {
    const parser = parserAt('parser-swap');
    const securityfs = join(dir, 'securityfs'); // a kernel with AppArmor, as the parser sees it
    mkdirSync(securityfs);
    const ops = createAppArmorOps({ parser: { parser, securityfs } });
    const named = await ops.prepare(artifact);
    parserAt('parser-swap', { version: 'AppArmor parser version 3.0.13' }); // the upgrade lands while the create waits for its lock
    await rejectsWith(ops.load(named), { code: 'Unavailable', reason: 'APPARMOR_PARSER_CHANGED' });
    assert.ok(!readFileSync(`${parser}.calls`, 'utf8').includes('--replace'), 'no load ran');
    const renamed = await ops.prepare(artifact);
    assert.notEqual(renamed.name, named.name);
    await ops.load(renamed);
    assert.match(readFileSync(`${parser}.calls`, 'utf8'), /--replace/);
  });

  it('a parser that could not be identified is tried again at the next create (installed meanwhile)', async () => {
    const parser = join(dir, 'parser-later');
    const ops = createAppArmorOps({ parser: { parser } });
    await rejectsWith(ops.prepare(artifact), { code: 'FailedPrecondition', reason: 'APPARMOR_UNAVAILABLE' });
    parserAt('parser-later');
    assert.match((await ops.prepare(artifact)).name, /^spoke-[0-9a-f]{64}$/);
  });

  for (const [what, version] of [
    ['no version line', 'Usage: apparmor_parser [options]'],
    ['a version line with more after it', 'AppArmor parser version 3.0.8 (patched)'],
    ['an overlong version', `AppArmor parser version 3.${'0'.repeat(80)}`],
  ] as const) {
    it(`a parser whose version cannot be read (${what}) is refused, APPARMOR_UNAVAILABLE, before it compiles anything`, async () => {
      const parser = parserAt(`parser-${what.replaceAll(' ', '-')}`, { version });
      await rejectsWith(createAppArmorOps({ parser: { parser } }).prepare(artifact), { code: 'FailedPrecondition', reason: 'APPARMOR_UNAVAILABLE' });
      assert.throws(() => readFileSync(`${parser}.calls`), /ENOENT/, 'no check ran');
    });
  }
});
