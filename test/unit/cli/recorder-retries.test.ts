// The recorder daemon (spoke recorder, src/cli/commands/recorder.ts) retries a report that
// failed: a poll that finds the API server leaving a report unanswered until its deadline tries
// no more reports, the next poll trying those it left first, and a container's report that
// keeps failing is retried ever further apart, on the monotonic clock (docs/recording.md, step 3).

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MAX_RECORDED } from '../../../src/recorder/recorded-containers.js';
import { setup } from '../../helpers/recorder-daemon.js';

/** The errors of the failed reports the daemon logged. */
const failures = (logged: Record<string, unknown>[]) => logged.filter((e) => e.msg === 'report failed; will retry').map((e) => e.error);
/** The waits before a retry the daemon logged with the failed reports of container `id`. */
const waitsOf = (logged: Record<string, unknown>[], id: string) => logged.filter((e) => e.msg === 'report failed; will retry' && e.container === id).map((e) => e.retryAfterMs);
/** The error lines of reports given up. */
const givenUp = (logged: Record<string, unknown>[]) => logged.filter((e) => e.msg === "report given up: the recording's profile will lack the container's calls");
/** How many reports each deferral line said were left to the next poll. */
const deferrals = (logged: Record<string, unknown>[]) => logged.filter((e) => e.msg === 'reports deferred to the next poll: the API server left one unanswered').map((e) => e.deferred);

/**
 * Polls once a second (on the monotonic clock) from now (poll 0) up to `lastPoll` s later;
 * `each` runs before each poll. Returns the polls (in s) that tried a report.
 */
async function pollEachSecond({ rep, mono }: ReturnType<typeof setup>, daemon: Awaited<ReturnType<typeof exited>>, lastPoll: number, each: (poll: number) => void = () => undefined) {
  const tried: number[] = [];
  const start = mono.ms;
  for (let poll = 0; poll <= lastPoll; poll++) {
    mono.ms = start + poll * 1000;
    each(poll);
    const before = rep.attempts;
    await daemon.tick();
    if (rep.attempts > before) tried.push(poll);
  }
  return tried;
}

/** A daemon that listed the runtime at its start, then polled with `ids` recorded, exited. */
const exited = (s: ReturnType<typeof setup>, ids: string[]) => s.polledWith(ids, 'CONTAINER_EXITED');

describe('recorder daemon: an API server that leaves a report unanswered', () => {
  it('once a report of a poll is left unanswered until its deadline, the poll tries no more (listed or removed): they stay kept with their calls, one line says how many, and the next poll makes them', async (t) => {
    const s = setup(t);
    const { cri, rep, logged, mono } = s;
    const daemon = await exited(s, ['c1', 'c2', 'c3']);
    cri.remove('c3');
    mono.ms += 1000;
    rep.unanswered = true;
    const recorded = await daemon.tick();
    assert.equal(rep.attempts, 1, 'one deadline waited for, not one for each report');
    assert.deepEqual(failures(logged), ['API request unanswered after 10000 ms: given up']);
    assert.deepEqual(deferrals(logged), [2]);
    assert.deepEqual([...recorded].sort(), ['c1', 'c2', 'c3'], 'their calls kept for them (CallSource.maintain)');
    rep.unanswered = false;
    mono.ms += 1000;
    await daemon.tick();
    assert.deepEqual(rep.reported.sort(), ['c1', 'c2', 'c3']);
    assert.deepEqual(deferrals(logged), [2], 'a poll that defers none says nothing');
  });

  it('a report the API server answered with an error does not stop the poll: each of the others is tried', async (t) => {
    const s = setup(t);
    const { rep, logged, mono } = s;
    const daemon = await exited(s, ['c1', 'c2', 'c3']);
    mono.ms += 1000;
    rep.failing = true;
    rep.failCode = 503;
    await daemon.tick();
    assert.equal(rep.attempts, 3);
    assert.deepEqual(failures(logged), ['HTTP-Code: 503', 'HTTP-Code: 503', 'HTTP-Code: 503']);
    assert.deepEqual(deferrals(logged), []);
  });
});

describe('recorder daemon: a report that keeps failing', () => {
  it('refused (422) for a container the runtime lists for long: retried at the next poll, then after waits that double, at most 5 min: an API call and an error line for each attempt, none for the polls between', async (t) => {
    const s = setup(t);
    const { rep, logged, mono } = s;
    const daemon = await exited(s, ['c1']);
    mono.ms += 1000;
    rep.failing = true;
    rep.failCode = 422;
    const tried = await pollEachSecond(s, daemon, 900);
    assert.deepEqual(tried, [0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 812]);
    assert.deepEqual(failures(logged), tried.map(() => 'HTTP-Code: 422'));
    rep.failing = false;
    mono.ms += 300_000;
    await daemon.tick();
    assert.deepEqual(rep.reported, ['c1'], 'made once the refusal is lifted, at its next attempt');
  });

  it('refused (403) while listed, then removed: tried as its waits say, and still given up at the first poll 5 min after one found it gone, its wait or not, which its last error line tells', async (t) => {
    const s = setup(t);
    const { cri, rep, logged, mono } = s;
    const daemon = await exited(s, ['c1']);
    mono.ms += 1000;
    rep.failing = true;
    rep.failCode = 403;
    const tried = await pollEachSecond(s, daemon, 1000, (poll) => poll === 600 && cri.remove('c1'));
    assert.deepEqual(tried, [0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 812, 900], 'the last at 900 s, though its wait after 812 s ran to 1112 s');
    assert.deepEqual(
      givenUp(logged).map((e) => [e.containerID, e.why]),
      [['c1', 'a poll found it removed from the runtime 300 s ago, and its report has failed since']],
    );
    assert.equal(failures(logged).length, tried.length - 1, 'the last failure is told by the line that gives it up');
    assert.equal(waitsOf(logged, 'c1').at(-1), 88_000, 'the retry after 812 s told at 900 s, not 1112 s');
  });

  it('refused (403), missed by one complete poll (a runtime glitch), then listed again: no longer gone, so retried for good as one listed, not given up 5 min after that poll', async (t) => {
    const s = setup(t);
    const { cri, rep, logged, mono } = s;
    const daemon = await exited(s, ['c1']);
    const c1 = cri.containers.find((c) => c.id === 'c1')!;
    mono.ms += 1000;
    rep.failing = true;
    rep.failCode = 403;
    const tried = await pollEachSecond(s, daemon, 700, (poll) => (poll === 1 ? cri.remove('c1') : poll === 2 && cri.containers.push(c1)));
    assert.deepEqual(givenUp(logged), []);
    assert.deepEqual(tried, [0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512], 'its waits as if never missed, none cut to a give-up bound');
  });
});

/**
 * A daemon that listed the runtime at its start, then polled with MAX_RECORDED recorded
 * containers running (c0…), all kept: a container first seen now is not ('untracked').
 */
const full = (s: ReturnType<typeof setup>) => s.polledWith(Array.from({ length: MAX_RECORDED }, (_, i) => `c${i}`));

/** Creates container `id`, exited, listed by the runtime before every other (its runtime order). */
function exitedFirst({ cri }: ReturnType<typeof setup>, id: string) {
  cri.create(id, 'CONTAINER_EXITED');
  cri.containers.unshift(cri.containers.pop()!);
}

describe('recorder daemon: reports left unanswered do not hold the others', () => {
  /** Reports whose API calls the API server leaves unanswered (a webhook of their namespace unreachable): each closes the poll that tries it. */
  const K = 30;
  const hung = Array.from({ length: K }, (_, i) => `h${i}`);

  it(`${K} reports left unanswered, listed before a good one: each poll tries first the report due longest, so the good one is made within ${K + 1} polls; a report timed out waits before its retry as any failed one`, async (t) => {
    const s = setup(t);
    const { rep, logged, mono } = s;
    const daemon = await exited(s, [...hung, 'g']);
    for (const id of hung) rep.failFor.set(id, 'unanswered');
    mono.ms += 1000;
    await pollEachSecond(s, daemon, K);
    assert.deepEqual(rep.reported, ['g']);
    assert.deepEqual(rep.tried, [...hung, 'g', 'h0'], 'one attempt a poll, those deferred before those tried');
    assert.deepEqual(waitsOf(logged, 'h0'), [0, K * 1000], 'its retry waited as long as it had been failing');
  });

  it('a removed container whose report is refused, behind 300 left unanswered (one due each second once their waits reach 5 min), is given up within 301 polls of its 5-minute bound', async (t) => {
    const s = setup(t);
    const { cri, rep, logged } = s;
    const many = Array.from({ length: 300 }, (_, i) => `h${i}`);
    const daemon = await exited(s, many);
    cri.create('r');
    for (const id of many) rep.failFor.set(id, 'unanswered');
    rep.failFor.set('r', 403);
    // Poll 0 sees r run; it is removed before poll 1, which first finds it gone.
    await pollEachSecond(s, daemon, 1 + 300 + 301, (poll) => poll === 1 && cri.remove('r'));
    assert.deepEqual(
      givenUp(logged).map((e) => [e.containerID, e.error]),
      [['r', 'HTTP-Code: 403']],
    );
  });

  it(`a report past the ${MAX_RECORDED} kept, left unanswered and listed first, does not hold a kept one: they take turns`, async (t) => {
    const s = setup(t);
    const { cri, rep } = s;
    const daemon = await full(s);
    exitedFirst(s, 'u');
    rep.failFor.set('u', 'unanswered');
    cri.containers.find((c) => c.id === 'c0')!.state = 'CONTAINER_EXITED';
    await pollEachSecond(s, daemon, 2);
    assert.deepEqual(rep.tried, ['u', 'u', 'c0', 'u'], 'c0, due from poll 1 after u, deferred then, before u at poll 2');
    assert.deepEqual(rep.reported, ['c0']);
  });

  it(`a report past the ${MAX_RECORDED} kept, behind ${K} kept ones left unanswered (one due again at every poll), takes its turn among them: made within ${K + 1} polls`, async (t) => {
    const s = setup(t);
    const { cri, rep, mono } = s;
    const daemon = await full(s);
    for (const c of cri.containers.slice(0, K)) {
      c.state = 'CONTAINER_EXITED';
      rep.failFor.set(c.id, 'unanswered');
    }
    await daemon.tick();
    mono.ms += 1000;
    exitedFirst(s, 'u');
    await pollEachSecond(s, daemon, K);
    assert.deepEqual(rep.reported, ['u']);
  });

  it(`a report past the ${MAX_RECORDED} kept, exited and deferred, whose container then gets a kept place keeps its turn and its exit's wait: made within 2 polls, one due before it`, async (t) => {
    const s = setup(t);
    const { cri, rep } = s;
    const daemon = await full(s);
    cri.containers.find((c) => c.id === 'c0')!.state = 'CONTAINER_EXITED';
    cri.containers.find((c) => c.id === 'c1')!.state = 'CONTAINER_EXITED';
    rep.failFor.set('c1', 'unanswered');
    await daemon.tick();
    s.mono.ms += 1000;
    // Listed last, due at poll 0 after c0 and c1: c0's report frees a place, c1's closes the poll.
    cri.create('u', 'CONTAINER_EXITED');
    await pollEachSecond(s, daemon, 1);
    assert.deepEqual(rep.tried, ['c0', 'c1', 'u', 'c1'], 'u, kept from poll 1, tried then before c1, due again after it');
    assert.deepEqual(rep.reported, ['c0', 'u']);
    assert.deepEqual(rep.lost, [0, 0], 'reported whole once kept: its exit, first seen at poll 0, had settled');
  });

  it('of two reports past the cap, one left unanswered and listed first does not hold the other: they take turns too', async (t) => {
    const s = setup(t);
    const { rep } = s;
    const daemon = await full(s);
    exitedFirst(s, 'u2');
    exitedFirst(s, 'u1');
    rep.failFor.set('u1', 'unanswered');
    await pollEachSecond(s, daemon, 1);
    assert.deepEqual(rep.tried, ['u1', 'u2', 'u1'], 'u2, deferred, before u1, tried');
    assert.deepEqual(rep.reported, ['u2']);
  });
});

describe(`recorder daemon: a report past the ${MAX_RECORDED} kept that keeps failing`, () => {
  it('refused (422) while listed: retried after waits that double, at most 5 min, as a kept one, an error line for each attempt', async (t) => {
    const s = setup(t);
    const { rep, logged } = s;
    const daemon = await full(s);
    exitedFirst(s, 'u');
    rep.failFor.set('u', 422);
    const tried = await pollEachSecond(s, daemon, 64);
    assert.deepEqual(tried, [0, 1, 2, 4, 8, 16, 32, 64]);
    assert.deepEqual(waitsOf(logged, 'u'), [0, 1000, 2000, 4000, 8000, 16_000, 32_000, 64_000]);
  });

  it('refused (403) while running, then given a kept place while still running: its report starts afresh as a kept one, made once it has exited, retried at the next poll when it first fails, not after the wait its failures while not kept had reached', async (t) => {
    const s = setup(t);
    const { cri, rep, logged } = s;
    const daemon = await full(s);
    const u = cri.create('u');
    rep.failFor.set('u', 403);
    const c0 = cri.containers.find((c) => c.id === 'c0')!;
    // c0 exits at poll 70, its report at 71 frees a place, u is kept from 72 and exits at 73.
    const tried = await pollEachSecond(s, daemon, 90, (poll) => {
      if (poll === 70) c0.state = 'CONTAINER_EXITED';
      if (poll === 73) u.state = 'CONTAINER_EXITED';
    });
    assert.deepEqual(rep.reported, ['c0']);
    assert.deepEqual(tried, [0, 1, 2, 4, 8, 16, 32, 64, 71, 74, 75, 76, 78, 82, 90], 'not at 128, 64 s after its last failure while not kept');
    assert.deepEqual(waitsOf(logged, 'u').slice(-6), [0, 1000, 2000, 4000, 8000, 16_000]);
  });

  it('deferred, then removed before the next poll: lost, nothing being kept of it, but never silently: a line names it when it is deferred', async (t) => {
    const s = setup(t);
    const { cri, rep, logged, mono } = s;
    const daemon = await full(s);
    cri.containers.find((c) => c.id === 'c0')!.state = 'CONTAINER_EXITED';
    rep.failFor.set('c0', 'unanswered');
    await daemon.tick();
    mono.ms += 1000;
    // Listed after c0, due from this poll as c0 is: its turn comes after c0's.
    cri.create('u', 'CONTAINER_EXITED');
    await daemon.tick();
    assert.deepEqual(deferrals(logged), [1]);
    cri.remove('u');
    mono.ms += 1000;
    await daemon.tick();
    assert.deepEqual(rep.reported, [], 'u is lost; c0 still left unanswered');
    assert.deepEqual(
      logged.filter((e) => e.containerID === 'u').map((e) => [e.level, e.recording, e.namespace, e.pod, e.container]),
      [['warning', 'rec', 'team', 'pod-sb1', 'app']],
    );
  });

  it('deferred at every poll while the API server leaves every call unanswered: each is named once, the first time, and one line a poll counts them', async (t) => {
    const s = setup(t);
    const { cri, rep, logged } = s;
    const daemon = await full(s);
    const late = Array.from({ length: 50 }, (_, i) => `u${i}`);
    for (const id of late) cri.create(id, 'CONTAINER_EXITED');
    rep.unanswered = true;
    await pollEachSecond(s, daemon, 59);
    const named = logged.filter((e) => e.msg === 'report of a container not kept deferred to the next poll').map((e) => e.containerID);
    assert.deepEqual(named.sort(), [...late].sort(), 'each once, not at each of the 60 polls');
    const perPoll = logged.filter((e) => e.msg === 'reports deferred to the next poll: the API server left one unanswered');
    assert.equal(perPoll.length, 60);
    assert.deepEqual(perPoll.slice(0, 2).map((e) => [e.deferred, e.notKept]), [[49, 49], [49, 49]]);
  });
});
