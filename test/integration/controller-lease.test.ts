// Leader election of `spoke controller` replicas (src/controller/lease.ts) on client-node against
// the in-test API server (test/helpers/fake-apiserver.ts: resourceVersion, 409 Conflict), with
// short timings: a 2 s lease, a 1 s renew deadline, tries every 100 ms.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { KubeConfig } from '@kubernetes/client-node';
import { KubeLeaseClient } from '../../src/controller/kube.js';
import { LeaseElector, type Lease, type LeaseClient, type LeaseSpec } from '../../src/controller/lease.js';
import { fakeKubeConfig, FakeApiServer, type HungRequest, type ResourceDef } from '../helpers/fake-apiserver.js';
import { waitFor, within } from '../helpers/wait.js';

const LEASES: ResourceDef = { group: 'coordination.k8s.io', version: 'v1', plural: 'leases', kind: 'Lease' };
const TIMING = { leaseDurationMs: 2000, renewDeadlineMs: 1000, retryPeriodMs: 100 };

/** What the replicas' electors did, in order. */
const events: string[] = [];
/** Whether `identity` leads now, by the events. */
const leads = (identity: string) => events.filter((e) => e.startsWith(`${identity} `)).at(-1) === `${identity} started`;

function replica(identity: string, client: LeaseClient, timing: typeof TIMING = TIMING): LeaseElector {
  return new LeaseElector({
    client,
    identity,
    ...timing,
    onStartedLeading: () => void events.push(`${identity} started`),
    onStoppedLeading: () => void events.push(`${identity} stopped`),
  });
}

describe('Lease leader election against the fake API server', () => {
  let fake: FakeApiServer;
  let kc: KubeConfig;
  before(async () => {
    fake = new FakeApiServer({ resources: [LEASES], token: 'lease-token' });
    kc = fakeKubeConfig(await fake.listen(), 'lease-token');
  });
  after(() => fake.close());

  const holder = (name: string) => (fake.get(LEASES, 'spoke-system', name)?.spec as { holderIdentity?: string } | undefined)?.holderIdentity;

  it('one replica leads while it renews; the other takes over at once when it stops and releases the Lease', async () => {
    events.length = 0;
    const a = replica('a', new KubeLeaseClient(kc, 'spoke-system', 'handover'));
    const b = replica('b', new KubeLeaseClient(kc, 'spoke-system', 'handover'));
    a.start();
    await waitFor(() => leads('a'), { timeoutMs: 5000, what: 'a to lead' });
    b.start();
    try {
      // Longer than the lease duration: renewals keep it a's.
      const seen = fake.currentRevision;
      await waitFor(() => fake.currentRevision >= seen + 30, { timeoutMs: 10_000, what: 'renewals for longer than the lease duration' });
      assert.deepEqual([leads('a'), leads('b'), holder('handover')], [true, false, 'a']);
      await a.stop();
      assert.equal(holder('handover'), '', 'released');
      await waitFor(() => leads('b'), { timeoutMs: 5000, what: 'b to take over' });
      assert.equal(holder('handover'), 'b');
      assert.deepEqual(events, ['a started', 'a stopped', 'b started']);
      const lease = fake.get(LEASES, 'spoke-system', 'handover')?.spec as { leaseTransitions?: number; leaseDurationSeconds?: number; renewTime?: string };
      assert.equal(lease.leaseTransitions, 1);
      assert.equal(lease.leaseDurationSeconds, 2);
      assert.match(lease.renewTime ?? '', /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/, 'MicroTime');
    } finally {
      await a.stop();
      await b.stop();
    }
  });

  it('a leader cut off from the API server stops leading before another replica takes the Lease', async () => {
    events.length = 0;
    let cutOff = false;
    const real = new KubeLeaseClient(kc, 'spoke-system', 'partition');
    const refused = () => Promise.reject(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }));
    const partitioned: LeaseClient = {
      get: (signal) => (cutOff ? refused() : real.get(signal)),
      create: (spec, signal) => (cutOff ? refused() : real.create(spec, signal)),
      replace: (lease, signal) => (cutOff ? refused() : real.replace(lease, signal)),
    };
    const a = replica('a', partitioned);
    const b = replica('b', new KubeLeaseClient(kc, 'spoke-system', 'partition'));
    a.start();
    await waitFor(() => leads('a'), { timeoutMs: 5000, what: 'a to lead' });
    b.start();
    try {
      cutOff = true;
      await waitFor(() => leads('b'), { timeoutMs: 10_000, what: 'b to take over an expired Lease' });
      assert.equal(leads('a'), false);
      assert.deepEqual(events, ['a started', 'a stopped', 'b started'], 'a stopped before b started');
      assert.equal(holder('partition'), 'b');
    } finally {
      cutOff = false;
      await a.stop();
      await b.stop();
    }
  });

  it('a replica that stops without ever leading leaves the Lease alone', async () => {
    events.length = 0;
    const a = replica('a', new KubeLeaseClient(kc, 'spoke-system', 'bystander'));
    const b = replica('b', new KubeLeaseClient(kc, 'spoke-system', 'bystander'));
    a.start();
    await waitFor(() => leads('a'), { timeoutMs: 5000, what: 'a to lead' });
    b.start();
    await b.stop();
    assert.deepEqual([leads('a'), holder('bystander')], [true, 'a']);
    await a.stop();
    assert.deepEqual(events, ['a started', 'a stopped']);
  });

  // An API server that takes a request and never answers (the connection stays open): each
  // request of the elector carries a deadline, so the hung one is given up, its connection closed,
  // and the next try runs; stop() returns although nothing answers (docs/binding.md#replicas).
  const hungOn = (name: string): HungRequest[] => fake.hung.filter((h) => h.path.endsWith(`/leases/${name}`));

  it('a renewal left unanswered is given up, its connection closed, and the next try renews the Lease', async () => {
    events.length = 0;
    const a = replica('a', new KubeLeaseClient(kc, 'spoke-system', 'hung-renewal'));
    a.start();
    try {
      await waitFor(() => leads('a'), { timeoutMs: 5000, what: 'a to lead' });
      const next = fake.nextHung();
      fake.hang({ method: 'PUT', match: '/leases/hung-renewal', times: 1 });
      const renewal = await within(next, 5000, 'a renewal to reach the server');
      const seen = fake.currentRevision;
      await within(renewal.closed, 5000, 'a to give up the unanswered renewal and close its connection');
      await waitFor(() => fake.currentRevision > seen, { timeoutMs: 5000, what: 'the next renewal' });
      assert.equal(holder('hung-renewal'), 'a');
      await waitFor(() => leads('a'), { timeoutMs: 5000, what: 'a to lead after the next renewal' });
    } finally {
      fake.unhang();
      await a.stop();
    }
  });

  it('a leader whose every request hangs stops leading, gives each request up, keeps trying, and stops without hanging', async () => {
    events.length = 0;
    const a = replica('a', new KubeLeaseClient(kc, 'spoke-system', 'hung-all'));
    a.start();
    try {
      await waitFor(() => leads('a'), { timeoutMs: 5000, what: 'a to lead' });
      fake.hang({ match: '/leases/hung-all', times: Number.MAX_SAFE_INTEGER });
      await waitFor(() => events.includes('a stopped'), { timeoutMs: 5000, what: 'a to stop leading' });
      assert.equal(leads('a'), false);
      // Tries go on after the hung ones: three reached the server.
      await waitFor(() => hungOn('hung-all').length >= 3, { timeoutMs: 5000, what: 'tries after the hung ones' });
      // stop() releases the Lease: that GET hangs too, and is given up.
      await within(a.stop(), 5000, 'stop() while the API server answers nothing');
      await within(Promise.all(hungOn('hung-all').map((h) => h.closed)), 5000, 'a to give up its unanswered requests and close their connections');
      assert.deepEqual(events, ['a started', 'a stopped']);
    } finally {
      fake.unhang();
      await a.stop();
    }
  });
});

// The same elector against an in-memory Lease whose requests a test can hold, answer late or
// refuse: the races of abandoned requests, without a network in the way.
class MemoryLease {
  lease: Lease | undefined;
  rv = 0;
  read(): Lease | undefined {
    return this.lease && structuredClone(this.lease);
  }
  create(spec: LeaseSpec): Lease {
    if (this.lease) throw Object.assign(new Error('exists'), { code: 409 });
    this.lease = { metadata: { name: 'l', resourceVersion: String(++this.rv) }, spec: { ...spec } };
    return this.read() as Lease;
  }
  replace(l: Lease): Lease {
    if (!this.lease || l.metadata.resourceVersion !== this.lease.metadata.resourceVersion) throw Object.assign(new Error('conflict'), { code: 409 });
    this.lease = { metadata: { name: 'l', resourceVersion: String(++this.rv) }, spec: { ...l.spec } };
    return this.read() as Lease;
  }
}

interface Hooks {
  /** Awaited before a GET is served. */
  get?: () => Promise<void> | void;
  /** Awaited before a PUT is served. */
  replace?: () => Promise<void> | void;
  /** Called right after a PUT was served. */
  afterReplace?: () => void;
  /** Refuses every request while it returns true. */
  cut?: () => boolean;
}

function memoryClient(s: MemoryLease, hooks: Hooks = {}): LeaseClient {
  const refused = () => Promise.reject(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }));
  return {
    get: async () => {
      if (hooks.cut?.()) return refused();
      await hooks.get?.();
      return s.read();
    },
    create: async (spec) => (hooks.cut?.() ? refused() : s.create(spec)),
    replace: async (l) => {
      if (hooks.cut?.()) return refused();
      await hooks.replace?.();
      const out = s.replace(l);
      hooks.afterReplace?.();
      return out;
    },
  };
}

/** A promise and its resolver: a request a test holds until it says so. */
function gate(): { promise: Promise<void>; open: () => void } {
  let open = () => {};
  const promise = new Promise<void>((r) => (open = r));
  return { promise, open };
}

describe('Lease leader election with requests answered late', () => {
  it('a GET answered after its try gave up neither dates the record it read from before it was sent nor takes the Lease: never two leaders', async () => {
    events.length = 0;
    const s = new MemoryLease();
    let cutA = false;
    let renewalsUntilCut = -1;
    const heldGet = gate();
    let holdNextGet = false;
    const getSent = gate();
    const a = replica('a', memoryClient(s, {
      cut: () => cutA,
      afterReplace: () => {
        if (renewalsUntilCut < 0 || --renewalsUntilCut > 0) return;
        // a is cut off right after this renewal, and b's GET sent long ago is served now: it reads this renewal.
        cutA = true;
        heldGet.open();
      },
    }));
    const b = replica('b', memoryClient(s, {
      get: () => {
        if (!holdNextGet) return;
        holdNextGet = false;
        getSent.open();
        return heldGet.promise;
      },
    }));
    a.start();
    await waitFor(() => leads('a'), { timeoutMs: 5000, what: 'a to lead' });
    holdNextGet = true;
    b.start();
    try {
      await getSent.promise;
      // b's GET stays unanswered for longer than the lease duration (2 s) while a renews (every 100 ms or more).
      renewalsUntilCut = 25;
      await waitFor(() => events.includes('b started'), { timeoutMs: 10_000, what: 'b to take over once a stopped renewing' });
      assert.deepEqual(events, ['a started', 'a stopped', 'b started'], 'a stopped before b started');
    } finally {
      heldGet.open();
      cutA = false;
      await a.stop();
      await b.stop();
    }
  });

  it('a holder whose requests hang stops leading at its renew deadline, not when a try ends after it', async (t) => {
    // Timers and the monotonic clock are the test's, stepped 100 ms at a time. Tries end a retry
    // period (400 ms) after they start: checked only then, the deadline would be noticed up to
    // 300 ms late.
    t.mock.timers.enable({ apis: ['setTimeout'] });
    const STEP_MS = 100;
    let clock = 0;
    const step = async () => {
      clock += STEP_MS;
      t.mock.timers.tick(STEP_MS);
      for (let i = 0; i < 10; i++) await new Promise((r) => setImmediate(r));
    };
    events.length = 0;
    const s = new MemoryLease();
    const timing = { leaseDurationMs: 2000, renewDeadlineMs: 1000, retryPeriodMs: 400 };
    const hung = gate();
    let hang = false;
    let lastRenewalSent = 0;
    let stoppedAt = 0;
    const a = new LeaseElector({
      client: memoryClient(s, {
        get: () => (hang ? hung.promise : undefined),
        replace: async () => {
          if (hang) await hung.promise;
          else lastRenewalSent = clock;
        },
      }),
      identity: 'a',
      ...timing,
      monotonicNow: () => clock,
      onStartedLeading: () => void events.push('a started'),
      onStoppedLeading: () => {
        stoppedAt = clock;
        events.push('a stopped');
      },
    });
    a.start();
    try {
      for (let i = 0; i < 50 && !(leads('a') && lastRenewalSent > 0); i++) await step();
      assert.ok(leads('a') && lastRenewalSent > 0, 'a leads and has renewed');
      hang = true;
      for (let i = 0; i < 50 && !events.includes('a stopped'); i++) await step();
      assert.deepEqual(events, ['a started', 'a stopped']);
      assert.ok(stoppedAt - lastRenewalSent <= timing.renewDeadlineMs + STEP_MS, `a stopped ${stoppedAt - lastRenewalSent} ms after its last renewal was sent (deadline ${timing.renewDeadlineMs} ms)`);
    } finally {
      hung.open();
      await a.stop();
    }
  });

  it('a renewal never answered is aborted when its try gives up, tries go on, the holder stops at its renew deadline and leads again once a renewal answers', async (t) => {
    // Timers and the monotonic clock are the test's: each step is one retry period.
    t.mock.timers.enable({ apis: ['setTimeout'] });
    let clock = 0;
    const turn = () => new Promise((r) => setImmediate(r));
    const settle = async (what: () => boolean) => {
      for (let i = 0; i < 100 && !what(); i++) await turn();
      assert.ok(what());
    };
    const step = async () => {
      clock += TIMING.retryPeriodMs;
      t.mock.timers.tick(TIMING.retryPeriodMs);
      for (let i = 0; i < 10; i++) await turn();
    };
    events.length = 0;
    const s = new MemoryLease();
    let hang = false;
    /** The signal of each renewal taken and never answered: only its abort ends it (or the test's clean-up). */
    const hung: (AbortSignal | undefined)[] = [];
    const cleanUp: (() => void)[] = [];
    const client: LeaseClient = {
      get: async () => s.read(),
      create: async (spec) => s.create(spec),
      replace: (l, signal) => {
        if (!hang) return Promise.resolve(s.replace(l));
        hung.push(signal);
        return new Promise((_, reject) => {
          signal?.addEventListener('abort', () => reject(signal.reason as Error), { once: true });
          cleanUp.push(() => reject(new Error('test over')));
        });
      },
    };
    const a = new LeaseElector({
      client,
      identity: 'a',
      ...TIMING,
      monotonicNow: () => clock,
      onStartedLeading: () => void events.push('a started'),
      onStoppedLeading: () => void events.push('a stopped'),
    });
    a.start();
    try {
      await settle(() => leads('a'));
      hang = true;
      await step(); // the next renewal is sent, and hangs
      await settle(() => hung.length === 1);
      assert.ok(hung[0] instanceof AbortSignal, 'the renewal carries a signal');
      assert.equal(hung[0].aborted, false);
      await step(); // its try gives up
      assert.equal(hung[0]?.aborted, true, 'the unanswered renewal was aborted');
      assert.ok(leads('a'), 'still within the renew deadline');
      for (let i = 0; i < 2 * (TIMING.renewDeadlineMs / TIMING.retryPeriodMs) && leads('a'); i++) await step();
      assert.deepEqual(events, ['a started', 'a stopped'], 'a stopped leading at its renew deadline');
      assert.ok(hung.length >= 3, `tries went on after the first hung one (${hung.length} renewals sent)`);
      assert.ok(hung.every((signal) => signal?.aborted), 'every unanswered renewal was aborted');
      hang = false;
      for (let i = 0; i < 5 && !leads('a'); i++) await step();
      assert.deepEqual(events, ['a started', 'a stopped', 'a started'], 'the next try renewed the Lease');
    } finally {
      hang = false;
      for (const end of cleanUp) end();
      await a.stop();
    }
  });

  it('a replica that stops while the takeover write of a try that gave up is unanswered, never having led, does not keep the Lease', async (t) => {
    // Timers are the test's: it decides when a try gives up, so that the write is still
    // unanswered while the replica sleeps between tries, as a slow API server would leave it.
    t.mock.timers.enable({ apis: ['setTimeout'] });
    const turn = () => new Promise((r) => setImmediate(r));
    const settle = async (what: () => boolean) => {
      for (let i = 0; i < 100 && !what(); i++) await turn();
      assert.ok(what());
    };
    events.length = 0;
    const s = new MemoryLease();
    const put = gate();
    let putSent = false;
    const a = replica('a', memoryClient(s));
    const b = replica('b', memoryClient(s, {
      replace: () => {
        putSent = true;
        return put.promise;
      },
    }));
    a.start();
    await settle(() => leads('a'));
    await a.stop(); // released: b's first try writes itself in, and that write is held
    b.start();
    await settle(() => putSent);
    t.mock.timers.tick(TIMING.retryPeriodMs); // b's try gives up; b sleeps before its next one
    await turn();
    const stopping = b.stop();
    let stopped = false;
    void stopping.then(() => (stopped = true));
    for (let i = 0; i < 10 && !stopped; i++) await turn();
    put.open(); // the write lands: after stop() looked at the Lease, or while it waits for the write
    await stopping;
    assert.equal(s.lease?.spec?.holderIdentity, '', 'b released the Lease its late write took');
    assert.deepEqual(events, ['a started', 'a stopped']);
  });
});
