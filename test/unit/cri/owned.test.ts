import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { OwnedHandlers, STORE_GAUGE_DELAY_MS } from '../../../src/cri/owned.js';
import { CreateGate } from '../../../src/cri/gc.js';
import type { ShimDeps } from '../../../src/cri/deps.js';
import { silentLogger } from '../../../src/core/runtime.js';
import { noopMetrics } from '../../../src/observe/metrics.js';
import { JsonLogger } from '../../../src/observe/log.js';
import { encode } from '../../helpers/cri-client.js';
import { rejectsWith } from '../../helpers/assert.js';

describe('owned handlers: store gauges', () => {
  it('a burst of fetching pulls lists the store once, after the burst, and sets the gauges from it', async (t) => {
    t.mock.timers.enable({ apis: ['setTimeout'] });
    let lists = 0;
    const gauges: [number, number][] = [];
    let n = 0;
    const deps = {
      pipeline: {
        pull: async () => ({ reference: 'r.example/p@sha256:' + '0'.repeat(64), digest: 'sha256:' + '0'.repeat(64), resolvedRef: `r.example/p${n++}`, cached: false, path: '/x', rule: 'r' }),
      },
      store: {
        list: async () => {
          lists++;
          return [{ size: 10, layerDigest: 'sha256:' + '1'.repeat(64) }, { size: 32, layerDigest: 'sha256:' + '2'.repeat(64) }];
        },
      },
      logger: silentLogger,
      metrics: { ...noopMetrics, store: (a: number, b: number) => gauges.push([a, b]) },
    } as unknown as ShimDeps;
    const owned = new OwnedHandlers(deps, new CreateGate());
    const req = encode('PullSecurityProfileArtifactRequest', { image: { image: 'r.example/p@sha256:' + '0'.repeat(64) }, profile_kind: 'Seccomp' });
    for (let i = 0; i < 20; i++) await owned.pull(req, new AbortController().signal);
    assert.equal(lists, 0, 'no listing on the pulls’ path');
    t.mock.timers.tick(STORE_GAUGE_DELAY_MS);
    await new Promise((r) => setImmediate(r));
    assert.equal(lists, 1);
    assert.deepEqual(gauges, [[2, 42]]);
  });
});

describe('owned handlers: store gauges from ListSecurityProfiles', () => {
  it('counts the bytes of a blob two artifacts share once, as a gc run does (docs/gc.md)', async () => {
    const gauges: [number, number][] = [];
    const shared = 'sha256:' + '1'.repeat(64);
    const record = (n: string, layerDigest: string, size: number) => ({ digest: 'sha256:' + n.repeat(64), references: [], size, kind: 'seccomp', layerDigest, pulledAt: '2026-01-01T00:00:00Z', inUse: [] });
    const deps = {
      store: { list: async () => [record('a', shared, 10), record('b', shared, 10), record('c', 'sha256:' + '2'.repeat(64), 32)] },
      logger: silentLogger,
      metrics: { ...noopMetrics, store: (a: number, b: number) => gauges.push([a, b]) },
    } as unknown as ShimDeps;
    await new OwnedHandlers(deps, new CreateGate()).list(encode('ListSecurityProfilesRequest', {}));
    assert.deepEqual(gauges, [[3, 42]]);
  });
});

describe('owned handlers: store gauges without metrics', () => {
  it('a shim that serves no metrics never lists the store for them', async (t) => {
    t.mock.timers.enable({ apis: ['setTimeout'] });
    let lists = 0;
    const deps = {
      pipeline: { pull: async () => ({ reference: 'r.example/p@sha256:' + '0'.repeat(64), digest: 'sha256:' + '0'.repeat(64), resolvedRef: 'r.example/p', cached: false, path: '/x', rule: 'r' }) },
      store: {
        list: async () => {
          lists++;
          return [];
        },
      },
      logger: silentLogger,
      metrics: noopMetrics,
    } as unknown as ShimDeps;
    const owned = new OwnedHandlers(deps, new CreateGate());
    await owned.pull(encode('PullSecurityProfileArtifactRequest', { image: { image: 'r.example/p@sha256:' + '0'.repeat(64) }, profile_kind: 'Seccomp' }), new AbortController().signal);
    owned.refreshStoreGauges(0);
    t.mock.timers.tick(STORE_GAUGE_DELAY_MS);
    await new Promise((r) => setImmediate(r));
    assert.equal(lists, 0);
  });
});

describe('owned handlers: malformed requests', () => {
  const owned = new OwnedHandlers({ logger: silentLogger, metrics: noopMetrics } as unknown as ShimDeps, new CreateGate());
  const pull = (req: Buffer) => owned.pull(req, new AbortController().signal);
  const digested = 'r.example/p@sha256:' + '0'.repeat(64);

  it('protobuf that does not parse is InvalidArgument, WIRE_INVALID, for every owned method', async () => {
    const truncated = Buffer.from([0x0a, 0x05, 0x61]);
    await rejectsWith(pull(truncated), { code: 'InvalidArgument', reason: 'WIRE_INVALID' });
    await rejectsWith(owned.list(truncated), { code: 'InvalidArgument', reason: 'WIRE_INVALID' });
    await rejectsWith(owned.remove(truncated), { code: 'InvalidArgument', reason: 'WIRE_INVALID' });
  });

  it('an unspecified profile_kind is OPTION_INVALID; an empty reference is REFERENCE_INVALID', async () => {
    await rejectsWith(pull(encode('PullSecurityProfileArtifactRequest', { image: { image: digested } })), { code: 'InvalidArgument', reason: 'OPTION_INVALID' });
    await rejectsWith(pull(encode('PullSecurityProfileArtifactRequest', { image: { image: '' }, profile_kind: 'Seccomp' })), { code: 'InvalidArgument', reason: 'REFERENCE_INVALID' });
  });
});

describe('owned handlers: RemoveSecurityProfile beside creates', () => {
  it('removes only once no create is between resolving a profile and recording its holder (the gc gate), so it sees that holder', async () => {
    const gate = new CreateGate();
    const removed: string[] = [];
    const deps = { store: { remove: async (d: string) => void removed.push(d), list: async () => [] }, logger: silentLogger, metrics: noopMetrics } as unknown as ShimDeps;
    const owned = new OwnedHandlers(deps, gate);
    const create = gate.lease();
    await create.acquire();
    const digest = `sha256:${'1'.repeat(64)}`;
    const remove = owned.remove(encode('RemoveSecurityProfileRequest', { digest }));
    for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
    assert.deepEqual(removed, [], 'not while the create holds its lease');
    create.release();
    await remove;
    assert.deepEqual(removed, [digest]);
  });
});

describe('owned handlers: the pull line', () => {
  it('a pull that succeeds adds no line of its own: the pipeline logs every caller\'s outcome', async () => {
    const lines: Record<string, unknown>[] = [];
    const digest = 'sha256:' + '1'.repeat(64);
    const deps = {
      pipeline: { pull: async () => ({ reference: `r.example/p@${digest}`, digest, resolvedRef: `r.example/p@${digest}`, cached: false, path: '/x', rule: 'r', signer: { signer: 'release', format: 'bundle' } }) },
      store: { list: async () => [] },
      logger: new JsonLogger({ level: 'debug', write: (line) => lines.push(JSON.parse(line) as Record<string, unknown>) }),
      metrics: noopMetrics,
    } as unknown as ShimDeps;
    const answer = await new OwnedHandlers(deps, new CreateGate()).pull(encode('PullSecurityProfileArtifactRequest', { image: { image: `r.example/p@${digest}` }, profile_kind: 'Seccomp' }), new AbortController().signal);
    assert.ok(answer.length > 0);
    assert.deepEqual(lines, []);
  });
});
