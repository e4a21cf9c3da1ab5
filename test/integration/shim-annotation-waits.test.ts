// What a call waiting on an annotation's pull (or a PullSecurityProfile waiting on its pull)
// holds, in front of a scripted runtime: its body counts as its namespace's share of the body
// budget from the moment its namespace is known (docs/shim.md#connections), and it holds no
// lease of the gc gate while the registry has not answered (docs/gc.md#cost).

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Applied } from '../../src/cri/apply.js';
import { encodeFrame } from '../../src/cri/frame.js';
import type { ShimDeps } from '../../src/cri/deps.js';
import { SHIM_REASON_TRAILER } from '../../src/core/errors.js';
import { encode } from '../helpers/cri-client.js';
import { answering, runtimeAnswer, shimRig } from '../helpers/inproc-shim.js';
import { stubShimDeps } from '../helpers/shim.js';

const DIGEST = `sha256:${'a'.repeat(64)}` as const;
const REFERENCE = `stalled.example/p@${DIGEST}`;
const CREATE = '/runtime.v1.RuntimeService/CreateContainer';
const PULL = '/runtime.v1.ImageService/PullSecurityProfile';
const REMOVE = '/runtime.v1.ImageService/RemoveSecurityProfile';
/** An environment variable or annotation that makes a request 200 KiB. */
const PAD = 'x'.repeat(200 * 1024);

interface Outcome {
  status: string | undefined;
  reason: string | undefined;
}
const OVERLOADED: Outcome = { status: '14', reason: 'OVERLOADED' };
const ADMITTED: Outcome = { status: '0', reason: undefined };

/** Pulls that never answer until released (those after a release stall again), and a promise for the next one to arrive. */
function stalledPulls() {
  let release = () => {};
  const stall = () => {
    const stalled = new Promise<never>((_, reject) => (release = () => reject(new Error('released'))));
    stalled.catch(() => {});
    return stalled;
  };
  let stalled = stall();
  const arrived: { reference: string; kind: string; namespace?: string }[] = [];
  let onArrival: (() => void) | undefined;
  return {
    arrived,
    release: () => {
      release();
      stalled = stall();
    },
    /** Resolves once the next pull has arrived. */
    next: () => new Promise<void>((r) => (onArrival = r)),
    pull: (req: { reference: string; kind: string; namespace?: string }): Promise<never> => {
      arrived.push(req);
      onArrival?.();
      return stalled;
    },
  };
}

function rigCall(connect: () => import('node:http2').ClientHttp2Session, path: string, message: Buffer): Promise<Outcome> {
  const session = connect();
  const req = session.request({ ':method': 'POST', ':path': path, 'content-type': 'application/grpc', te: 'trailers' });
  req.on('error', () => {});
  req.on('data', () => {});
  req.end(encodeFrame(message));
  return new Promise((resolve) => {
    const outcome: Outcome = { status: undefined, reason: undefined };
    const note = (h: Record<string, unknown>) => {
      outcome.status ??= h['grpc-status'] as string | undefined;
      outcome.reason ??= h[SHIM_REASON_TRAILER] as string | undefined;
    };
    req.on('response', note);
    req.on('trailers', note);
    req.on('close', () => {
      session.close();
      resolve(outcome);
    });
  });
}

/** Whichever comes first: the call's answer, or the next pull arriving (the call is held at it). */
async function heldOrAnswered(answer: Promise<Outcome>, pulled: Promise<void>): Promise<Outcome | 'held'> {
  return Promise.race([answer, pulled.then(() => 'held' as const)]);
}

describe("shim (annotation mode): a namespace's calls waiting on their pulls hold at most half the body budget", () => {
  const pulls = stalledPulls();
  const rig = shimRig('spoke-annotation-share-', answering(runtimeAnswer), { server: { annotations: true, limits: { maxBufferedRequestBytes: 1024 * 1024 } } });
  before(async () => {
    rig.deps.pipeline.pull = pulls.pull as ShimDeps['pipeline']['pull'];
    await rig.start();
  });
  after(() => {
    pulls.release();
    return rig.stop();
  });

  /** A create of 200 KiB in `namespace`, its pod annotated with a seccomp profile at the stalled registry when `annotated`. */
  function create(name: string, namespace: string, annotated: boolean): Promise<Outcome> {
    const annotations = annotated ? { 'seccomp.profiles.spoke.dev/pod': REFERENCE } : {};
    const message = encode('CreateContainerRequest', {
      pod_sandbox_id: 'sb1',
      config: { metadata: { name, attempt: 0 }, envs: [{ key: 'PAD', value: PAD }] },
      sandbox_config: { metadata: { name: 'pod', namespace, uid: 'u' }, annotations },
    });
    return rigCall(rig.connect, CREATE, message);
  }

  /** A PullSecurityProfile of 200 KiB (the pod's annotations travel in its sandbox_config) in `namespace`. */
  function pullProfile(namespace: string): Promise<Outcome> {
    const message = encode('PullSecurityProfileArtifactRequest', {
      image: { image: REFERENCE },
      sandbox_config: { metadata: { name: 'pod', namespace, uid: 'u' }, annotations: { pad: PAD } },
      profile_kind: 'Seccomp',
    });
    return rigCall(rig.connect, PULL, message);
  }

  it("refuses team-b's annotated creates past its half while their pulls stall (OVERLOADED); team-a's create without a profile is admitted", async () => {
    const answers: Promise<Outcome>[] = [];
    try {
      const outcomes: (Outcome | 'held')[] = [];
      for (let i = 1; i <= 5; i++) {
        const answer = create(`b${i}`, 'team-b', true);
        answers.push(answer);
        outcomes.push(await heldOrAnswered(answer, pulls.next()));
      }
      // 2 × 200 KiB held: a third would pass team-b's half of 1 MiB.
      assert.deepEqual(outcomes, ['held', 'held', ...Array(3).fill(OVERLOADED)]);
      assert.deepEqual(await create('a1', 'team-a', false), ADMITTED);
    } finally {
      pulls.release();
      await Promise.all(answers);
    }
  });

  it("refuses team-b's PullSecurityProfile calls past its half while their pulls stall (OVERLOADED); team-a's create is admitted", async () => {
    const answers: Promise<Outcome>[] = [];
    try {
      const outcomes: (Outcome | 'held')[] = [];
      for (let i = 1; i <= 5; i++) {
        const answer = pullProfile('team-b');
        answers.push(answer);
        outcomes.push(await heldOrAnswered(answer, pulls.next()));
      }
      assert.deepEqual(outcomes, ['held', 'held', ...Array(3).fill(OVERLOADED)]);
      assert.deepEqual(await create('a2', 'team-a', false), ADMITTED);
    } finally {
      pulls.release();
      await Promise.all(answers);
    }
  });
});

describe('shim (annotation mode): a create waiting on its AppArmor annotation pull holds no gc lease', () => {
  const pulls = stalledPulls();
  const rig = shimRig('spoke-annotation-lease-', answering(runtimeAnswer), {
    server: { annotations: true },
    deps: (work) => ({
      ...(stubShimDeps(join(work, 'store'), join(work, 'sc')) as ShimDeps),
      appArmor: {
        enabled: async () => true,
        prepare: async () => {
          throw new Error('not reached: the AppArmor pull never answers');
        },
        load: async () => ({ warnings: [] }),
        unload: async () => {},
      },
    }),
  });
  before(async () => {
    // The seccomp annotation's profile is pulled and applied at once; the AppArmor one's registry never answers.
    rig.deps.pipeline.pull = (async (req: { reference: string; kind: string; namespace?: string }) =>
      req.kind === 'apparmor' ? pulls.pull(req) : { resolvedRef: req.reference, cached: true }) as ShimDeps['pipeline']['pull'];
    const applied = { path: join(rig.work, 'sc', 'spoke', `${'b'.repeat(64)}.json`), digest: DIGEST, reference: REFERENCE, effectiveSha: 'b'.repeat(64), constrained: 0 } as unknown as Applied;
    (rig.shim as unknown as { applier: { apply: () => Promise<Applied> } }).applier.apply = async () => applied;
    await rig.start();
  });
  after(() => {
    pulls.release();
    return rig.stop();
  });

  it('RemoveSecurityProfile is not refused OVERLOADED while a pod annotated for seccomp and AppArmor waits on its AppArmor registry', async () => {
    const pulled = pulls.next();
    const created = rigCall(
      rig.connect,
      CREATE,
      encode('CreateContainerRequest', {
        pod_sandbox_id: 'sb1',
        config: { metadata: { name: 'c', attempt: 0 } },
        sandbox_config: {
          metadata: { name: 'pod', namespace: 'team-b', uid: 'u' },
          annotations: { 'seccomp.profiles.spoke.dev/pod': REFERENCE, 'apparmor.profiles.spoke.dev/pod': REFERENCE },
        },
      }),
    );
    try {
      await pulled;
      assert.equal(pulls.arrived.at(-1)?.kind, 'apparmor');
      const removed = await rigCall(rig.connect, REMOVE, encode('RemoveSecurityProfileRequest', { digest: `sha256:${'c'.repeat(64)}` }));
      assert.notEqual(removed.reason, 'OVERLOADED', JSON.stringify(removed));
    } finally {
      pulls.release();
    }
    assert.notEqual((await created).status, '0', 'the create fails with its pull');
  });
});

describe('shim (annotation mode): a create whose client left stops waiting on its annotation pull', () => {
  const signals: AbortSignal[] = [];
  let arrived: (() => void) | undefined;
  const rig = shimRig('spoke-annotation-gone-', answering(runtimeAnswer), { server: { annotations: true } });
  before(async () => {
    // A fetch that waits on its signal alone, as the pipeline's does: the signal is all that ends it.
    rig.deps.pipeline.pull = ((req: { signal?: AbortSignal | (() => AbortSignal) }) => {
      const signal = typeof req.signal === 'function' ? req.signal() : req.signal;
      if (signal === undefined) return new Promise<never>(() => {});
      signals.push(signal);
      arrived?.();
      return new Promise<never>((_, reject) => signal.addEventListener('abort', () => reject(signal.reason as Error), { once: true }));
    }) as ShimDeps['pipeline']['pull'];
    await rig.start();
  });
  after(() => rig.stop());

  for (const timeout of [undefined, '60S']) {
    it(`its pull's signal fires when the client cancels the create (grpc-timeout ${timeout ?? 'none'}), not at the deadline`, async () => {
      const message = encode('CreateContainerRequest', {
        pod_sandbox_id: 'sb1',
        config: { metadata: { name: 'c', attempt: 0 } },
        sandbox_config: { metadata: { name: 'pod', namespace: 'team-c', uid: 'u' }, annotations: { 'seccomp.profiles.spoke.dev/pod': REFERENCE } },
      });
      const session = rig.connect();
      const pulled = new Promise<void>((r) => (arrived = r));
      const req = session.request({ ':method': 'POST', ':path': CREATE, 'content-type': 'application/grpc', te: 'trailers', ...(timeout ? { 'grpc-timeout': timeout } : {}) });
      req.on('error', () => {});
      req.end(encodeFrame(message));
      await pulled;
      const signal = signals.at(-1)!;
      assert.equal(signal.aborted, false);
      const aborted = new Promise<void>((r) => signal.addEventListener('abort', () => r(), { once: true }));
      req.close(0x8); // NGHTTP2_CANCEL: the kubelet gave up on the create
      await aborted;
      session.close();
    });
  }
});
