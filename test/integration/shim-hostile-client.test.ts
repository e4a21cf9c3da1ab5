// Clients that misbehave, in front of a scripted runtime. A create whose client goes away after
// the runtime answered must settle the pending holder it recorded before the call (a leaked one
// keeps its profile from gc and RemoveSecurityProfile until the shim restarts). Request bodies
// the shim reads whole are bounded over all calls: past the bound a call is refused, not forwarded.

import { connect as h2connect, constants as h2, type ClientHttp2Stream, type IncomingHttpHeaders } from 'node:http2';
import { connect as netConnect } from 'node:net';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { encodeFrame } from '../../src/cri/frame.js';
import { packProfile } from '../../src/publish/pack.js';
import type { Applied } from '../../src/cri/apply.js';
import type { Policy } from '../../src/policy/types.js';
import { encode } from '../helpers/cri-client.js';
import { spokeError } from '../helpers/assert.js';
import { sha256Digest } from '../../src/core/digest.js';
import type { ProfileStore } from '../../src/store/store.js';
import { waitFor } from '../helpers/wait.js';
import { answering, runtimeAnswer, shimRig } from '../helpers/inproc-shim.js';
import { holdInUseQueue } from '../helpers/inuse-queue.js';

// The stored artifact every stubbed create resolves to: a create holds only what the store has.
const ARTIFACT = packProfile(Buffer.from('{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_ERRNO"}]}'), 'seccomp');
const DIGEST = ARTIFACT.manifestDigest;
const storeArtifact = (store: unknown) =>
  (store as ProfileStore).ingest({ digest: DIGEST, manifestBytes: ARTIFACT.manifest, layerDigest: ARTIFACT.layerDigest, layerBytes: ARTIFACT.layer, kind: 'seccomp', reference: `reg.example/p@${DIGEST}`, rule: 'r', servedBy: 'reg.example' });

describe('shim: a create reset by its client after the runtime answered', () => {
  const rig = shimRig('spoke-reset-', answering(runtimeAnswer));
  before(async () => {
    // The merge itself is another test's: here every OCI profile resolves to one stored artifact.
    await storeArtifact(rig.deps.store);
    const applied: Applied = { path: join(rig.work, 'sc', 'spoke', `${'b'.repeat(64)}.json`), digest: DIGEST, reference: `reg.example/p@${DIGEST}`, effectiveSha: 'b'.repeat(64), constrained: 0 } as Applied;
    (rig.shim as unknown as { applier: { apply: () => Promise<Applied> } }).applier.apply = async () => applied;
    await rig.start();
  });
  after(() => rig.stop());

  it('settles the pending holder when the client resets a stream it never read (window 0)', async () => {
    const pending = async () => [...(await rig.deps.store.inUse()).values()].flat().filter((h) => h.startsWith('pending:')).length;
    const session = rig.connect({ initialWindowSize: 0 });
    try {
      for (let i = 0; i < 5; i++) {
        const req = session.request({ ':method': 'POST', ':path': '/runtime.v1.RuntimeService/CreateContainer', 'content-type': 'application/grpc', te: 'trailers' });
        req.on('error', () => {});
        req.end(
          encodeFrame(
            encode('CreateContainerRequest', {
              pod_sandbox_id: 'sb1',
              config: { metadata: { name: `c${i}`, attempt: 0 }, linux: { security_context: { seccomp: { profile_type: 'OCI', oci_ref: `reg.example/p@${DIGEST}` } } } },
              sandbox_config: { metadata: { name: 'pod', namespace: 'ns', uid: 'u' } },
            }),
          ),
        );
        await new Promise((r) => req.once('response', r));
        // The runtime answered and the answer is stuck in the closed window: the create's pending
        // holder is still recorded (it is settled only when the client's stream ends), so the
        // wait below can only pass by settling it.
        assert.ok((await pending()) > 0, `create ${i}: no pending holder recorded before the reset`);
        const closed = new Promise((r) => req.once('close', r));
        req.close(h2.NGHTTP2_CANCEL);
        await closed;
      }
    } finally {
      session.destroy();
    }
    await waitFor(async () => (await pending()) === 0, { timeoutMs: 5000, what: 'no pending holder left' });
  });
});

describe('shim: a create whose node policy changes while it is rewritten', () => {
  const creates: Buffer[] = [];
  const rig = shimRig('spoke-stale-', (stream, headers) => {
    if (String(headers[':path']).endsWith('/CreateContainer')) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => creates.push(Buffer.concat(chunks)));
    }
    answering(runtimeAnswer)(stream, headers);
  });
  let policy = { hash: 'h1' };
  /** The policy hash each decision of the applier saw; the first waits for `release`, as a create waiting for the runtime's default profile or apparmor_parser does. */
  const decidedUnder: string[] = [];
  let release = () => {};
  let slow: Promise<void> | undefined;
  before(async () => {
    await storeArtifact(rig.deps.store);
    rig.deps.policy = async () => policy as unknown as Policy;
    const baseline = {};
    rig.deps.baseline = () => baseline;
    const applied: Applied = { path: join(rig.work, 'sc', 'spoke', `${'b'.repeat(64)}.json`), digest: DIGEST, reference: `reg.example/p@${DIGEST}`, effectiveSha: 'b'.repeat(64), constrained: 0 } as Applied;
    (rig.shim as unknown as { applier: { apply: () => Promise<Applied> } }).applier.apply = async () => {
      decidedUnder.push((await rig.deps.policy()).hash);
      if (slow) await slow;
      return applied;
    };
    await rig.start();
  });
  after(() => rig.stop());

  function create(name: string, headers: Record<string, string> = {}): Promise<{ status: string | undefined; message: string | undefined }> {
    const session = rig.connect();
    const req = session.request({ ':method': 'POST', ':path': '/runtime.v1.RuntimeService/CreateContainer', 'content-type': 'application/grpc', te: 'trailers', ...headers });
    req.on('error', () => {});
    req.on('data', () => {});
    req.end(
      encodeFrame(
        encode('CreateContainerRequest', {
          pod_sandbox_id: 'sb1',
          config: { metadata: { name, attempt: 0 }, linux: { security_context: { seccomp: { profile_type: 'OCI', oci_ref: `reg.example/p@${DIGEST}` } } } },
          sandbox_config: { metadata: { name: 'pod', namespace: 'ns', uid: 'u' } },
        }),
      ),
    );
    return new Promise((resolve) => {
      let headersSeen: IncomingHttpHeaders = {};
      req.on('response', (h) => (headersSeen = h));
      req.on('trailers', (t) => (headersSeen = { ...headersSeen, ...t }));
      req.on('close', () => {
        session.close();
        resolve({ status: headersSeen['grpc-status'] as string | undefined, message: headersSeen['grpc-message'] as string | undefined });
      });
    });
  }

  it('is decided again under the new policy before it is forwarded (a rule flipped from audit to enforce meanwhile)', async () => {
    slow = new Promise<void>((r) => (release = r));
    const answer = create('c-flip');
    await waitFor(() => decidedUnder.length === 1, { timeoutMs: 5000, what: 'the first decision' });
    policy = { hash: 'h2' };
    slow = undefined;
    release();
    const r = await answer;
    assert.equal(r.status, '0', r.message);
    assert.deepEqual(decidedUnder, ['h1', 'h2']);
    assert.equal(creates.length, 1, 'forwarded once, after the second decision');
  });

  it('is decided again when the AppArmor baseline is reloaded while it is rewritten', async () => {
    decidedUnder.length = 0;
    creates.length = 0;
    let generation = 0;
    rig.deps.appArmor = {
      enabled: async () => false,
      prepare: async () => Promise.reject(new Error('not used')),
      load: async () => ({ warnings: [] }),
      unload: async () => {},
      baselineGeneration: () => generation,
    };
    slow = new Promise<void>((r) => (release = r));
    try {
      const answer = create('c-aa-baseline');
      await waitFor(() => decidedUnder.length === 1, { timeoutMs: 5000, what: 'the first decision' });
      generation++;
      slow = undefined;
      release();
      const r = await answer;
      assert.equal(r.status, '0', r.message);
      assert.equal(decidedUnder.length, 2, 'decided again');
      assert.equal(creates.length, 1);
    } finally {
      slow = undefined;
      release();
      delete rig.deps.appArmor;
    }
  });

  it('gives up (UNAVAILABLE, POLICY_CHANGED) when the policy keeps changing, and forwards nothing', async () => {
    decidedUnder.length = 0;
    creates.length = 0;
    let n = 0;
    (rig.shim as unknown as { applier: { apply: () => Promise<Applied> } }).applier.apply = async () => {
      decidedUnder.push((await rig.deps.policy()).hash);
      policy = { hash: `changing-${n++}` };
      return { path: join(rig.work, 'sc', 'spoke', `${'b'.repeat(64)}.json`), digest: DIGEST, reference: `reg.example/p@${DIGEST}`, effectiveSha: 'b'.repeat(64), constrained: 0 } as Applied;
    };
    const r = await create('c-churn');
    assert.equal(r.status, '14', r.message);
    assert.match(decodeURIComponent(r.message ?? ''), /POLICY_CHANGED/);
    assert.equal(decidedUnder.length, 3);
    assert.equal(creates.length, 0);
  });

  it("is decided again when the policy changes while its pending holder waits in the in-use queue (behind another create's AppArmor claim)", async () => {
    decidedUnder.length = 0;
    creates.length = 0;
    policy = { hash: 'q1' };
    const applied = { path: join(rig.work, 'sc', 'spoke', `${'b'.repeat(64)}.json`), digest: DIGEST, reference: `reg.example/p@${DIGEST}`, effectiveSha: 'b'.repeat(64), constrained: 0 } as Applied;
    (rig.shim as unknown as { applier: { apply: () => Promise<Applied> } }).applier.apply = async () => {
      decidedUnder.push((await rig.deps.policy()).hash);
      return applied;
    };
    const queue = await holdInUseQueue(rig.shim.inUse, rig.deps.store, 'd', DIGEST);
    try {
      const answer = create('c-queue');
      await queue.createWaiting();
      policy = { hash: 'q2' };
      queue.release();
      const r = await answer;
      assert.equal(r.status, '0', r.message);
      assert.deepEqual(decidedUnder, ['q1', 'q2']);
      assert.equal(creates.length, 1, 'forwarded once, after the second decision');
    } finally {
      await queue.restore();
    }
  });

  it('is not forwarded when its deadline passes while its pending holder waits in the in-use queue (DEADLINE_EXCEEDED)', async () => {
    decidedUnder.length = 0;
    creates.length = 0;
    const queue = await holdInUseQueue(rig.shim.inUse, rig.deps.store, 'e', DIGEST);
    try {
      const sent = performance.now();
      const answer = create('c-late', { 'grpc-timeout': '300m' });
      await queue.createWaiting();
      // The client's deadline is the event waited for here: it passes while the queue is held.
      await waitFor(() => performance.now() - sent > 400, { timeoutMs: 5000, what: 'the deadline to pass' });
      queue.release();
      const r = await answer;
      assert.equal(r.status, '4', r.message);
      assert.equal(creates.length, 0, 'nothing forwarded after its deadline');
    } finally {
      await queue.restore();
    }
  });
});

describe('shim: the in-use set after a start', () => {
  // The runtime never answers: its first rebuild does not finish while the test runs.
  const rig = shimRig('spoke-start-', (stream) => stream.on('error', () => {}));
  after(() => rig.stop());

  it('is incomplete until the rebuild from the runtime: a profile looks unused, yet remove refuses it (containers may have been made while no shim ran)', async () => {
    const store = rig.deps.store as ProfileStore;
    const layer = Buffer.from('{"defaultAction":"SCMP_ACT_ERRNO"}');
    const layerDigest = sha256Digest(layer);
    const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, config: { size: 2 }, layers: [{ digest: layerDigest, size: layer.length }] }));
    const digest = sha256Digest(manifest);
    await store.ingest({ digest, manifestBytes: manifest, layerDigest, layerBytes: layer, kind: 'seccomp', reference: `reg.example/p@${digest}`, rule: 'rules[0]', servedBy: 'reg.example' });
    // As the last shim left it: rebuilt, complete, nothing held.
    await store.replaceInUse(new Map());
    assert.equal((await store.inUseState()).complete, true);
    await rig.start();
    assert.equal((await store.inUseState()).complete, false);
    await assert.rejects(store.remove(digest), spokeError({ code: 'FailedPrecondition', reason: 'IN_USE' }));
  });
});

describe('shim: request bodies read whole are bounded over every call', () => {
  const seen: string[] = [];
  const rig = shimRig(
    'spoke-budget-',
    (stream, headers) => {
      seen.push(String(headers[':path']));
      stream.on('error', () => {});
    },
    { server: { limits: { maxBufferedRequestBytes: 1024 * 1024 } } },
  );
  before(() => rig.start());
  after(() => rig.stop());

  it('refuses a create once the bodies being read pass the bound (UNAVAILABLE), and forwards none of them', async () => {
    const session = rig.connect();
    const statuses: string[] = [];
    try {
      for (let i = 0; i < 3; i++) {
        const req = session.request({ ':method': 'POST', ':path': '/runtime.v1.RuntimeService/CreateContainer', 'content-type': 'application/grpc', te: 'trailers' });
        req.on('error', () => {});
        req.on('data', () => {});
        req.on('response', (h) => {
          if (h['grpc-status'] !== undefined) statuses.push(`${String(h['grpc-status'])} ${String(h['grpc-message'])}`);
        });
        // 600 KiB of a body that never ends: each call holds what it sent.
        req.write(Buffer.alloc(600 * 1024));
      }
      await waitFor(() => statuses.length > 0, { timeoutMs: 5000, what: 'a refused call' });
      assert.match(statuses[0]!, /^14 Unavailable.*request bodies/);
      assert.equal(seen.filter((p) => p.endsWith('/CreateContainer')).length, 0);
    } finally {
      session.destroy();
    }
  });
});

describe("shim: one namespace's waiting creates hold at most half the body budget", () => {
  const rig = shimRig('spoke-body-share-', answering(runtimeAnswer), { server: { limits: { maxBufferedRequestBytes: 1024 * 1024 } } });
  const reached: string[] = [];
  let release = () => {};
  const blocked = new Promise<void>((r) => (release = r));
  before(async () => {
    // Every create waits at its profile (a pull that stalls), holding its body.
    (rig.shim as unknown as { applier: { apply: (p: unknown, c: { who: string }) => Promise<Applied> } }).applier.apply = async (_p, c) => {
      reached.push(c.who);
      await blocked;
      throw new Error('released');
    };
    await rig.start();
  });
  after(() => {
    release();
    return rig.stop();
  });

  /** A create of 200 KiB (an environment variable) in `namespace`: its status, once answered. */
  function create(name: string, namespace: string): Promise<string | undefined> {
    const session = rig.connect();
    const req = session.request({ ':method': 'POST', ':path': '/runtime.v1.RuntimeService/CreateContainer', 'content-type': 'application/grpc', te: 'trailers' });
    req.on('error', () => {});
    req.on('data', () => {});
    const config = { metadata: { name, attempt: 0 }, envs: [{ key: 'PAD', value: 'x'.repeat(200 * 1024) }], linux: { security_context: { seccomp: { profile_type: 'OCI', oci_ref: `reg.example/p@${DIGEST}` } } } };
    req.end(encodeFrame(encode('CreateContainerRequest', { pod_sandbox_id: 'sb1', config, sandbox_config: { metadata: { name: 'pod', namespace, uid: 'u' } } })));
    return new Promise((resolve) => {
      let status: string | undefined;
      req.on('response', (h) => (status ??= h['grpc-status'] as string | undefined));
      req.on('trailers', (t) => (status ??= t['grpc-status'] as string | undefined));
      req.on('close', () => {
        session.close();
        resolve(status);
      });
    });
  }

  // Before the share, the third create waited with the others: the test ends at its timeout.
  it("refuses a namespace's create past half (UNAVAILABLE); another namespace's goes on", { timeout: 30_000 }, async () => {
    const answers = [create('b1', 'team-b'), create('b2', 'team-b')];
    await waitFor(() => reached.length === 2, { timeoutMs: 5000, what: "team-b's two creates waiting at their profile" });
    // 2 × 200 KiB held: a third would pass team-b's half of 1 MiB.
    assert.equal(await create('b3', 'team-b'), '14');
    answers.push(create('a1', 'team-a'));
    await waitFor(() => reached.length === 3, { timeoutMs: 5000, what: "team-a's create waiting at its profile" });
    assert.ok(reached[2]!.includes('a1'), reached.join());
    release();
    await Promise.all(answers);
  });
});

describe('shim: client connections are bounded', () => {
  const rig = shimRig('spoke-sessions-', answering(), { server: { limits: { maxSessions: 2 } } });
  before(() => rig.start());
  after(() => rig.stop());

  it('closes a connection past the bound as it opens; the ones before it are served', async () => {
    const call = (session: ReturnType<typeof h2connect>) =>
      new Promise<string>((resolve) => {
        let status = 'closed without an answer';
        if (session.destroyed) return resolve(status);
        const req = session.request({ ':method': 'POST', ':path': '/runtime.v1.RuntimeService/Unary', 'content-type': 'application/grpc', te: 'trailers' });
        req.on('error', () => {});
        req.on('data', () => {});
        req.on('trailers', (h) => (status = String(h['grpc-status'])));
        req.on('close', () => resolve(status));
        req.end(encodeFrame(Buffer.alloc(0)));
      });
    const open = () =>
      new Promise<ReturnType<typeof h2connect>>((resolve) => {
        const s = rig.connect();
        // Served or closed: the shim has seen this connection.
        s.once('remoteSettings', () => resolve(s));
        s.once('close', () => resolve(s));
      });
    const sessions = [await open(), await open(), await open()];
    try {
      assert.equal(await call(sessions[0]!), '0');
      assert.equal(await call(sessions[1]!), '0');
      assert.equal(await call(sessions[2]!), 'closed without an answer');
    } finally {
      for (const s of sessions) s.destroy();
    }
  });
});

describe('shim: calls in flight are bounded over every connection', () => {
  // The runtime never answers: every call forwarded to it stays in flight.
  const rig = shimRig('spoke-calls-', (stream) => stream.on('error', () => {}), { server: { limits: { maxCalls: 4 } } });
  before(() => rig.start());
  after(() => rig.stop());

  it('refuses a call past the bound (UNAVAILABLE, OVERLOADED), whichever connection it comes on, and forwards it nowhere', async () => {
    const sessions = [rig.connect(), rig.connect()];
    const statusOf = (session: ReturnType<typeof h2connect>) =>
      new Promise<{ status: string | undefined; message: string | undefined }>((resolve) => {
        const req = session.request({ ':method': 'POST', ':path': '/runtime.v1.RuntimeService/Version', 'content-type': 'application/grpc', te: 'trailers' });
        req.on('error', () => {});
        req.on('data', () => {});
        let h: IncomingHttpHeaders = {};
        req.on('response', (r) => (h = r));
        req.on('trailers', (t) => (h = { ...h, ...t }));
        req.on('close', () => resolve({ status: h['grpc-status'] as string | undefined, message: h['grpc-message'] as string | undefined }));
        req.end(encodeFrame(Buffer.alloc(0)));
      });
    try {
      const held = [0, 1, 2, 3].map((i) => statusOf(sessions[i % 2]!));
      await waitFor(() => rig.shim.inFlight() === 4, { timeoutMs: 5000, what: 'four calls in flight' });
      for (const session of sessions) {
        const r = await statusOf(session);
        assert.equal(r.status, '14', r.message);
        assert.match(decodeURIComponent(r.message ?? ''), /calls in flight/);
      }
      assert.equal(rig.shim.inFlight(), 4);
      for (const s of sessions) s.destroy();
      await Promise.all(held);
    } finally {
      for (const s of sessions) s.destroy();
    }
  });
});

describe('shim: request header lists are bounded', () => {
  /** The Version calls that reached the runtime, by the size of their x-big field (0 without). */
  const seen: number[] = [];
  const rig = shimRig('spoke-headers-', (stream, headers) => {
    if (headers[':path'] === '/runtime.v1.RuntimeService/Version') seen.push(String(headers['x-big'] ?? '').length);
    answering()(stream, headers);
  });
  before(() => rig.start());
  after(() => rig.stop());

  it('a call whose header fields pass 16 KiB is not forwarded; the connection goes on serving calls', async () => {
    const session = rig.connect();
    const call = (extra: Record<string, string>) =>
      new Promise<string>((resolve) => {
        const req = session.request({ ':method': 'POST', ':path': '/runtime.v1.RuntimeService/Version', 'content-type': 'application/grpc', te: 'trailers', ...extra });
        let status = 'reset without an answer';
        req.on('error', () => {});
        req.on('data', () => {});
        req.on('trailers', (t) => (status = String(t['grpc-status'])));
        req.on('close', () => resolve(status));
        req.end(encodeFrame(Buffer.alloc(0)));
      });
    try {
      // The bound is the shim's setting, in force once the client acknowledged it: before, the
      // HTTP/2 default (64 KiB). A first call's answer means the acknowledgement went first.
      assert.equal(await call({}), '0');
      assert.equal(await call({ 'x-big': 'a'.repeat(20 * 1024) }), 'reset without an answer');
      assert.equal(await call({ 'x-small': 'a'.repeat(1024) }), '0');
      assert.deepEqual(seen, [0, 0], 'the large call never reached the runtime');
    } finally {
      session.destroy();
    }
  });
});

describe('shim: a forwarded answer its client never reads', () => {
  // The runtime answers in full at once; the client opened no flow-control window, so the shim
  // holds the answer, paused, on its upstream stream.
  const ANSWER = Buffer.alloc(1024 * 1024, 7);
  const runtimeDone: Promise<void>[] = [];
  const rig = shimRig('spoke-unread-', (stream) => {
    stream.on('error', () => {});
    runtimeDone.push(new Promise((r) => stream.on('close', () => r())));
    stream.on('data', () => {});
    stream.on('end', () => {
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
      stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
      stream.end(encodeFrame(ANSWER));
    });
  });
  before(() => rig.start());
  after(() => rig.stop());

  it('is let go once the client cancels the call: the upstream stream holding it is destroyed', async () => {
    // The shim's upstream streams of this call, as it opens them.
    const ups: ClientHttp2Stream[] = [];
    const upstream = rig.shim.upstream;
    const get = upstream.get.bind(upstream);
    upstream.get = () => {
      const session = get();
      if (session !== undefined && !(session as { spied?: boolean }).spied) {
        const request = session.request.bind(session);
        session.request = (...a: Parameters<typeof request>) => {
          const up = request(...a);
          if (a[0]?.[':path'] === '/runtime.v1.RuntimeService/ExecSync') ups.push(up);
          return up;
        };
        (session as { spied?: boolean }).spied = true;
      }
      return session;
    };
    const session = h2connect('http://localhost', { createConnection: () => netConnect(join(rig.work, 'shim.sock')), settings: { initialWindowSize: 0 } });
    session.on('error', () => {});
    try {
      const req = session.request({ ':method': 'POST', ':path': '/runtime.v1.RuntimeService/ExecSync', 'content-type': 'application/grpc', te: 'trailers' });
      req.on('error', () => {});
      req.pause();
      const responded = new Promise((r) => req.once('response', r));
      req.end(encodeFrame(Buffer.alloc(0)));
      await responded;
      // The runtime has sent the whole answer and closed its stream; the shim's side has closed too.
      await runtimeDone[0];
      await waitFor(() => ups.length === 1 && ups[0]!.closed, { timeoutMs: 5000, what: "the shim's upstream stream closed by the runtime's end" });
      req.close(h2.NGHTTP2_CANCEL);
      await waitFor(() => ups[0]!.destroyed, { timeoutMs: 5000, what: 'the upstream stream holding the unread answer destroyed' });
    } finally {
      upstream.get = get;
      session.destroy();
    }
  });
});
