// The request side of base profiles and privileged containers at the wire level: a KEP OCI
// profile on a privileged container or sandbox is refused before anything is resolved, and the
// pod's base_profile reaches the resolver (a RuntimeDefault profile carried in the request is the
// base of an annotation's profile too).

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { encode, type Msg } from '../../helpers/cri-client.js';
import { ANNOTATION_PREFIX } from '../../../src/core/constants.js';
import { rewriteCreateContainer, rewriteRunPodSandbox, type RewriteDeps } from '../../../src/cri/rewrite.js';
import { BASE_RUNTIME_DEFAULT, type SecurityProfileMsg } from '../../../src/cri/messages.js';
import { SpokeError } from '../../../src/core/errors.js';
import type { Digest } from '../../../src/core/digest.js';

const D1 = `sha256:${'a'.repeat(64)}`;
const REF = `registry.example.com/profiles/p@${D1}`;
const SC = ANNOTATION_PREFIX.seccomp;
const oci = (base?: Msg): Msg => ({ profile_type: 'OCI', oci_ref: REF, ...(base ? { base_profile: base } : {}) });

function harness() {
  const resolved: { kind: string; profile: SecurityProfileMsg; who: string }[] = [];
  const deps: RewriteDeps = {
    seccomp: async (p, ctx) => {
      resolved.push({ kind: 'seccomp', profile: p, who: ctx.who });
      return { path: '/x/spoke/1.json', digest: D1 as Digest, reference: REF, effectiveSha: '1'.repeat(64), constrained: 0 };
    },
    appArmor: async (p, ctx) => {
      resolved.push({ kind: 'apparmor', profile: p, who: ctx.who });
      return { name: 'spoke-x', text: 'profile x {}', parser: 'p'.repeat(64), digest: D1 as Digest, reference: REF };
    },
    annotations: { pull: async () => undefined },
  };
  return { deps, resolved };
}

function podConfig(o: { seccomp?: Msg; apparmor?: Msg; privileged?: boolean; annotations?: Record<string, string> } = {}): Msg {
  return {
    metadata: { name: 'web', uid: 'u1', namespace: 'team-a', attempt: 0 },
    ...(o.annotations ? { annotations: o.annotations } : {}),
    linux: {
      security_context: {
        namespace_options: { network: 'NODE' },
        ...(o.privileged ? { privileged: true } : {}),
        ...(o.seccomp ? { seccomp: o.seccomp } : {}),
        ...(o.apparmor ? { apparmor: o.apparmor } : {}),
      },
    },
  };
}

function createReq(o: { seccomp?: Msg; apparmor?: Msg; podSeccomp?: Msg; privileged?: boolean; annotations?: Record<string, string> } = {}): Buffer {
  const sec: Msg = { ...(o.privileged ? { privileged: true } : {}), ...(o.seccomp ? { seccomp: o.seccomp } : {}), ...(o.apparmor ? { apparmor: o.apparmor } : {}) };
  return encode('CreateContainerRequest', {
    pod_sandbox_id: 'sb1',
    config: { metadata: { name: 'app' }, image: { image: 'busybox' }, ...(Object.keys(sec).length ? { linux: { security_context: sec } } : {}) },
    sandbox_config: podConfig({ ...(o.podSeccomp ? { seccomp: o.podSeccomp } : {}), ...(o.annotations ? { annotations: o.annotations } : {}) }),
  });
}

const privilegedRefusal = (who: RegExp) => (e: unknown) => e instanceof SpokeError && e.code === 'InvalidArgument' && e.reason === 'PRIVILEGED_CONTAINER' && who.test(e.message);

describe('privileged + KEP OCI profile', () => {
  it('a privileged container with its own OCI seccomp or AppArmor profile is refused, naming it; nothing is resolved', async () => {
    for (const o of [{ seccomp: oci() }, { apparmor: oci() }, { seccomp: oci({ type: 'RuntimeDefault' }) }]) {
      const h = harness();
      await assert.rejects(rewriteCreateContainer(createReq({ ...o, privileged: true }), h.deps), privilegedRefusal(/container team-a\/web\/app/));
      assert.deepEqual(h.resolved, []);
    }
  });

  it('a privileged container inheriting the pod-level OCI profile is refused; its own non-OCI profile wins over the pod-level one', async () => {
    const h = harness();
    await assert.rejects(rewriteCreateContainer(createReq({ podSeccomp: oci(), privileged: true }), h.deps), privilegedRefusal(/container team-a\/web\/app/));
    assert.deepEqual(h.resolved, []);
    // Own profile Unconfined: the container's effective profile is not OCI (KEP-6061 §1).
    const r = await rewriteCreateContainer(createReq({ podSeccomp: oci(), seccomp: { profile_type: 'Unconfined' }, privileged: true }), h.deps);
    assert.equal(r.edited, true);
    assert.equal(r.holds, undefined);
  });

  it('a privileged sandbox with a pod-level OCI profile is refused, naming the pod', async () => {
    for (const o of [{ seccomp: oci() }, { apparmor: oci() }]) {
      const h = harness();
      const req = encode('RunPodSandboxRequest', { config: podConfig({ ...o, privileged: true }) });
      await assert.rejects(rewriteRunPodSandbox(req, h.deps), privilegedRefusal(/sandbox team-a\/web/));
      assert.deepEqual(h.resolved, []);
    }
  });

  it('not privileged: applied as before', async () => {
    const h = harness();
    const r = await rewriteCreateContainer(createReq({ seccomp: oci() }), h.deps);
    assert.equal(r.holds?.digest, D1);
  });
});

describe('base profile plumbing', () => {
  it('the KEP base_profile reaches the resolver as sent', async () => {
    const h = harness();
    await rewriteCreateContainer(createReq({ seccomp: oci({ type: 'RuntimeDefault' }) }), h.deps);
    assert.deepEqual(h.resolved[0]!.profile.base, { type: BASE_RUNTIME_DEFAULT, localhostRef: '' });
  });

  it('annotation mode: a carried RuntimeDefault profile becomes the base of the annotation profile; Unconfined and unset give none', async () => {
    const ann = { [`${SC}pod`]: REF };
    const cases: { o: { seccomp?: Msg; podSeccomp?: Msg }; base: unknown }[] = [
      { o: { seccomp: { profile_type: 'RuntimeDefault' } }, base: { type: BASE_RUNTIME_DEFAULT, localhostRef: '' } },
      { o: { podSeccomp: { profile_type: 'RuntimeDefault' } }, base: { type: BASE_RUNTIME_DEFAULT, localhostRef: '' } },
      { o: { seccomp: { profile_type: 'Unconfined' } }, base: undefined },
      { o: {}, base: undefined },
    ];
    for (const c of cases) {
      const h = harness();
      await rewriteCreateContainer(createReq({ ...c.o, annotations: ann }), h.deps);
      assert.equal(h.resolved.length, 1);
      assert.deepEqual(h.resolved[0]!.profile.base, c.base, JSON.stringify(c.o));
    }
    const h = harness();
    await rewriteRunPodSandbox(encode('RunPodSandboxRequest', { config: podConfig({ seccomp: { profile_type: 'RuntimeDefault' }, annotations: ann }) }), h.deps);
    assert.deepEqual(h.resolved[0]!.profile.base, { type: BASE_RUNTIME_DEFAULT, localhostRef: '' });
  });

  it('annotation mode: a RuntimeDefault base that cannot be honoured fails the call with its code and reason, naming the annotation', async () => {
    const h = harness();
    h.deps.seccomp = async () => {
      throw new SpokeError('Unavailable', 'runtime default unknown', {}, { reason: 'RUNTIME_DEFAULT_UNAVAILABLE' });
    };
    await assert.rejects(
      rewriteCreateContainer(createReq({ seccomp: { profile_type: 'RuntimeDefault' }, annotations: { [`${SC}pod`]: REF } }), h.deps),
      (e: unknown) => e instanceof SpokeError && e.code === 'Unavailable' && e.reason === 'RUNTIME_DEFAULT_UNAVAILABLE' && e.context.annotation === `${SC}pod`,
    );
  });
});
