// The recorder daemon (spoke recorder, src/cli/commands/recorder.ts) reports the containers
// created after it started, and not those that already existed then (their start-up calls were
// missed): how it tells them apart, with the runtime's created_at stamps on a wall clock that
// steps (docs/recording.md, step 3); and how many recorded containers may await their report.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MAX_RECORDED } from '../../../src/recorder/recorded-containers.js';
import { setup, START_MS } from '../../helpers/recorder-daemon.js';

const DAY_MS = 86_400_000;

describe('recorder daemon: containers created before it started', () => {
  it('a wall clock stepped back a day after the start: a container created after it is recorded and reported', async (t) => {
    const { cri, src, rep, make, polls } = setup(t);
    cri.create('c0', 'CONTAINER_RUNNING', START_MS - 60_000);
    const daemon = make();
    await daemon.listExisting();
    t.mock.timers.setTime(START_MS - DAY_MS);
    // containerd stamps created_at with the node's wall clock, stepped back with it.
    cri.create('c1', 'CONTAINER_EXITED');
    await polls(daemon);
    assert.ok(src.seenIds.has('c1'), 'recorded');
    assert.deepEqual(rep.reported, ['c1']);
  });

  it('a container that existed at the start is not reported, though its created_at is after the start (a clock stepped back before it)', async (t) => {
    const { cri, rep, logged, make, polls } = setup(t);
    const c0 = cri.create('c0', 'CONTAINER_RUNNING', START_MS + 3_600_000);
    const daemon = make();
    await daemon.listExisting();
    c0.state = 'CONTAINER_EXITED';
    await polls(daemon);
    assert.deepEqual(rep.reported, []);
    assert.equal(logged.filter((e) => e.level === 'warning' && e.container === 'c0').length, 1, 'one warning for it');
  });

  it('a listing at the start that fails is made at the next poll: a container it finds is recorded and reported with its first calls possibly missing (a failed result), never left out nor recorded whole', async (t) => {
    const { cri, src, rep, make, polls } = setup(t);
    cri.failListAll = true;
    const daemon = make();
    await assert.rejects(daemon.listExisting());
    cri.create('c1', 'CONTAINER_EXITED');
    cri.failListAll = false;
    await polls(daemon);
    assert.deepEqual([...src.seenIds], ['c1']);
    assert.deepEqual(rep.reported, ['c1']);
    assert.deepEqual(rep.lost, [1]);
  });

  it('the listing at the start is the line: a container created after it, before the first poll, is recorded', async (t) => {
    const { cri, src, rep, make, polls } = setup(t);
    cri.create('c0', 'CONTAINER_EXITED', START_MS - 60_000);
    const daemon = make();
    await daemon.listExisting();
    cri.create('c1', 'CONTAINER_EXITED', START_MS - 60_000);
    await polls(daemon);
    assert.deepEqual([...src.seenIds], ['c1']);
    assert.deepEqual(rep.reported, ['c1']);
  });
});

describe('recorder daemon: recorded containers awaiting their report', () => {
  it(`a container first seen while ${MAX_RECORDED} others await their report is reported at once, as incomplete; those are reported whole a second later`, async (t) => {
    const { cri, rep, make, mono } = setup(t);
    const daemon = make();
    await daemon.listExisting();
    for (let i = 0; i < MAX_RECORDED; i++) cri.create(`c${i}`, 'CONTAINER_EXITED');
    cri.create('late', 'CONTAINER_RUNNING');
    await daemon.tick();
    assert.deepEqual(rep.reported, ['late']);
    assert.deepEqual(rep.lost, [1], 'its last calls may be missing: the recording fails, never misses them silently');
    mono.ms += 1000;
    await daemon.tick();
    assert.equal(rep.reported.length, MAX_RECORDED + 1);
    assert.deepEqual(new Set(rep.lost.slice(1)), new Set([0]));
  });

  it('containers removed before their report are reported after their wait and leave room: one that exits after them waits its second and is reported whole', async (t) => {
    const { cri, rep, make, polls } = setup(t);
    const daemon = make();
    await daemon.listExisting();
    for (let i = 0; i < MAX_RECORDED; i++) cri.create(`c${i}`, 'CONTAINER_EXITED');
    await daemon.tick();
    cri.containers.length = 0;
    await polls(daemon);
    assert.equal(rep.reported.length, MAX_RECORDED, 'each reported');
    assert.deepEqual(new Set(rep.lost), new Set([0]), 'whole: removed within their wait, reported once it was over');
    cri.create('next', 'CONTAINER_EXITED');
    await polls(daemon);
    assert.deepEqual(rep.reported.slice(MAX_RECORDED), ['next']);
    assert.deepEqual(rep.lost.slice(MAX_RECORDED), [0]);
  });
});
