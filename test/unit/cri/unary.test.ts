// Reading a unary request body whole: its bytes count against the shim's body budget from the
// read until the call's stream closes (a body read is held while the call waits: a create for its
// rewrite), and every byte taken is given back however the read or the call ends.

import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import type { ServerHttp2Stream } from 'node:http2';
import { describe, it } from 'node:test';
import { gzipSync } from 'node:zlib';
import { BodyBudget, type Call, type CallHost } from '../../../src/cri/call.js';
import { encodeFrame } from '../../../src/cri/frame.js';
import type { Upstream } from '../../../src/cri/upstream.js';
import { readBody, unaryCall } from '../../../src/cri/unary.js';
import { silentLogger } from '../../../src/core/runtime.js';
import { rejectsWith } from '../../helpers/assert.js';

/** A stream as readBody sees it: 'data', 'end' and 'close' events. */
const stream = () => new EventEmitter() as unknown as ServerHttp2Stream & EventEmitter;
/** The budget has all its `limit` bytes free: nothing is still taken, and none was given back twice. */
const whole = (b: BodyBudget) => b.take(b.limit) && !b.take(1) && (b.give(b.limit), true);

describe('readBody', () => {
  it('gives back what it took when the call closes, when the body passes its size cap, and when it passes the budget', async () => {
    const budget = new BodyBudget(100);
    const done = stream();
    const body = readBody(done, budget, 50);
    done.emit('data', Buffer.alloc(30));
    done.emit('end');
    assert.equal((await body).length, 30);
    assert.ok(!budget.take(71), 'the body read stays charged while its call is open');
    done.emit('close');
    assert.ok(whole(budget), 'after the call closed');

    const oversized = stream();
    const refused = rejectsWith(readBody(oversized, budget, 50), { code: 'InvalidArgument', reason: 'FRAME_INVALID' });
    oversized.emit('data', Buffer.alloc(30));
    oversized.emit('data', Buffer.alloc(30));
    await refused;
    assert.ok(whole(budget), 'after a body over its cap');

    const held = stream();
    const first = readBody(held, budget, 200);
    held.emit('data', Buffer.alloc(80));
    const over = stream();
    const overloaded = rejectsWith(readBody(over, budget, 200), { code: 'Unavailable', reason: 'OVERLOADED' });
    over.emit('data', Buffer.alloc(30));
    await overloaded;
    held.emit('end');
    await first;
    held.emit('close');
    assert.ok(whole(budget), 'after a refusal for the budget');
  });
});

describe('BodyBudget.own', () => {
  it("a namespace's bodies held while their calls wait take at most half the budget; each is given back when its call closes", () => {
    const budget = new BodyBudget(100);
    const calls = [stream(), stream(), stream()];
    assert.equal(budget.own(30, 'team-b', calls[0]!), true);
    assert.equal(budget.own(20, 'team-b', calls[1]!), true);
    assert.equal(budget.own(1, 'team-b', calls[2]!), false, 'past its half');
    assert.equal(budget.own(40, 'team-a', calls[2]!), true, 'another namespace is not held back');
    calls[0]!.emit('close');
    assert.equal(budget.own(30, 'team-b', stream()), true, 'given back at close');
    assert.equal(budget.own(60, 'team-c', stream()), true, 'one body alone always fits its namespace');
  });
});

describe('unaryCall', () => {
  it("a compressed request's message counts against the budget beside its body until its call closes: a few KiB of gzip hold no more than the bytes they decompress to allow", async () => {
    const budget = new BodyBudget(1024 * 1024);
    const host: CallHost = { upstream: {} as Upstream, logger: silentLogger, bodies: budget, report: () => undefined, endCall: () => undefined };
    const callOn = (s: ServerHttp2Stream): Call => ({ stream: s, path: '/runtime.v1.ImageService/PullSecurityProfile', streaming: false, started: performance.now(), reported: false, up: undefined, requestDone: false, rawHeaders: [], release: undefined });
    const gzipped = encodeFrame(gzipSync(Buffer.alloc(700 * 1024)), true);
    assert.ok(gzipped.length < 4096);

    // One such call waits in its handler, holding its message.
    const waiting = stream();
    let release!: () => void;
    const handled = new Promise<void>((r) => (release = r));
    let seen = 0;
    const first = unaryCall(host, callOn(waiting), { 'grpc-encoding': 'gzip' }, async (request) => {
      seen = request.length;
      await handled;
      throw new Error('not answered in this test');
    });
    waiting.emit('data', gzipped);
    waiting.emit('end');
    while (seen === 0) await new Promise((r) => setImmediate(r));
    assert.equal(seen, 700 * 1024);
    assert.ok(!budget.take(400 * 1024), 'the waiting call holds its 700 KiB message, not its few KiB of gzip');

    // A second one does not fit beside it: refused, its handler never run.
    const second = stream();
    let ran = false;
    const refused = rejectsWith(
      unaryCall(host, callOn(second), { 'grpc-encoding': 'gzip' }, async () => {
        ran = true;
        return Buffer.alloc(0);
      }),
      { code: 'Unavailable', reason: 'OVERLOADED' },
    );
    second.emit('data', gzipped);
    second.emit('end');
    await refused;
    assert.equal(ran, false);
    second.emit('close');

    release();
    await assert.rejects(first);
    waiting.emit('close');
    assert.ok(whole(budget), 'everything given back once the calls closed');
  });
});
