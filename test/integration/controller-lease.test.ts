// Leader election of `spoke controller` replicas (src/controller/lease.ts) on client-node against
// the in-test API server (test/helpers/fake-apiserver.ts: resourceVersion, 409 Conflict), with
// short timings: a 2 s lease, a 1 s renew deadline, tries every 100 ms.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { KubeConfig } from '@kubernetes/client-node';
import { KubeLeaseClient } from '../../src/controller/kube.js';
import { LeaseElector, type LeaseClient } from '../../src/controller/lease.js';
import { fakeKubeConfig, FakeApiServer, type ResourceDef } from '../helpers/fake-apiserver.js';
import { waitFor } from '../helpers/wait.js';

const LEASES: ResourceDef = { group: 'coordination.k8s.io', version: 'v1', plural: 'leases', kind: 'Lease' };
const TIMING = { leaseDurationMs: 2000, renewDeadlineMs: 1000, retryPeriodMs: 100 };

/** What the replicas' electors did, in order. */
const events: string[] = [];
/** Whether `identity` leads now, by the events. */
const leads = (identity: string) => events.filter((e) => e.startsWith(`${identity} `)).at(-1) === `${identity} started`;

function replica(identity: string, client: LeaseClient): LeaseElector {
  return new LeaseElector({
    client,
    identity,
    ...TIMING,
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
      get: () => (cutOff ? refused() : real.get()),
      create: (spec) => (cutOff ? refused() : real.create(spec)),
      replace: (lease) => (cutOff ? refused() : real.replace(lease)),
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
});
