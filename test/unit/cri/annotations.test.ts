// Annotation mode at the wire level (docs/annotation-mode.md): the PodSandboxConfig annotations map read from
// raw bytes, the precedence rules between annotations and the KEP SecurityProfile, and the
// AppArmor load/unload bookkeeping of the in-use tracker (with a fake apparmor_parser: this
// machine's kernel has no AppArmor).

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import fc from 'fast-check';
import { decode, encode, type Msg } from '../../helpers/cri-client.js';
import { encodeVarint } from '../../../src/cri/wire-write.js';
import { getStringMap } from '../../../src/cri/wire-map.js';
import { ProfileAnnotations } from '../../../src/cri/annotations.js';
import { ANNOTATION_PREFIX } from '../../../src/core/constants.js';
import { rewriteCreateContainer, rewriteRunPodSandbox, type AnnotationDeps, type RewriteDeps, type Resolver } from '../../../src/cri/rewrite.js';
import { BASE_RUNTIME_DEFAULT, CTR_APPARMOR_IN_CREATE, CTR_SECCOMP_IN_CREATE, decodeSecurityProfile, POD_SECCOMP_IN_RUN, SANDBOX_ANNOTATIONS } from '../../../src/cri/messages.js';
import { findAll, getMergedAt } from '../../../src/cri/wire.js';
import { InUseTracker } from '../../../src/cri/inuse.js';
import { CreateClaims } from '../../../src/cri/inuse-claims.js';
import { SpokeError } from '../../../src/core/errors.js';
import { sha256Hex, type Digest } from '../../../src/core/digest.js';
import { appArmorProfileName, intersectAppArmor, RENDER_TEMPLATE_VERSION } from '../../../src/profiles/apparmor/index.js';
import { spokeError, type Expected } from '../../helpers/assert.js';
import type { ProfileKind } from '../../../src/core/constants.js';
import { ProfileStore } from '../../../src/store/store.js';
import { silentLogger } from '../../../src/core/runtime.js';
import type { Upstream } from '../../../src/cri/upstream.js';
import { ingestInput } from '../store/fixtures.js';

const D1 = `sha256:${'a'.repeat(64)}`;
const D2 = `sha256:${'b'.repeat(64)}`;
const D3 = `sha256:${'c'.repeat(64)}`;
const REF_POD = `registry.example.com/profiles/pod@${D1}`;
const REF_CTR = `registry.example.com/profiles/ctr@${D2}`;
const REF_OCI = `registry.example.com/profiles/kep@${D3}`;
const SC = ANNOTATION_PREFIX.seccomp;
const AA = ANNOTATION_PREFIX.apparmor;

const pathOf = (ref: string) => `/var/lib/kubelet/seccomp/spoke/${ref.slice(-64)}.json`;

function harness(opts: { pullFails?: SpokeError; appArmorOff?: boolean } = {}) {
  const pulls: { reference: string; kind: ProfileKind; namespace?: string }[] = [];
  const resolved: string[] = [];
  const logs: { msg: string; fields: Record<string, unknown> }[] = [];
  const bases: (number | undefined)[] = [];
  const seccomp: Resolver = async (p) => {
    resolved.push(p.ociRef);
    bases.push(p.base?.type);
    return { path: pathOf(p.ociRef), digest: p.ociRef.slice(p.ociRef.indexOf('@') + 1) as Digest, reference: p.ociRef, effectiveSha: '1'.repeat(64), constrained: 0 };
  };
  const annotations: AnnotationDeps = {
    pull: async (req) => {
      pulls.push(req);
      if (opts.pullFails) throw opts.pullFails;
    },
    ready: async (kind, ctx) => {
      // As the shim's own (src/cri/server.ts).
      if (kind === 'apparmor' && opts.appArmorOff) throw new SpokeError('FailedPrecondition', `${ctx.who}: AppArmor is not enabled on this node`, {}, { reason: 'APPARMOR_UNAVAILABLE' });
    },
    log: (_level, msg, fields) => logs.push({ msg, fields }),
  };
  const deps: RewriteDeps = {
    seccomp,
    appArmor: async (p) => ({ name: `spoke-${p.ociRef.slice(-16)}`, text: 'profile x {}', parser: 'p'.repeat(64), digest: p.ociRef.slice(p.ociRef.indexOf('@') + 1) as Digest, reference: p.ociRef }),
    annotations,
  };
  return { deps, pulls, resolved, bases, logs };
}

function podConfig(o: { annotations?: Record<string, string>; seccomp?: Msg; privileged?: boolean; seccompPath?: string } = {}): Msg {
  return {
    metadata: { name: 'web', uid: 'u1', namespace: 'team-a', attempt: 0 },
    labels: { app: 'web' },
    annotations: { 'kubernetes.io/config.source': 'api', ...(o.annotations ?? {}) },
    linux: { security_context: { namespace_options: { network: 'NODE' }, ...(o.privileged ? { privileged: true } : {}), ...(o.seccomp ? { seccomp: o.seccomp } : {}), ...(o.seccompPath ? { seccomp_profile_path: o.seccompPath } : {}) } },
  };
}

function createReq(o: { name?: string; annotations?: Record<string, string>; seccomp?: Msg; apparmor?: Msg; podSeccomp?: Msg; privileged?: boolean; deprecated?: Msg } = {}): Buffer {
  const sec: Msg = { ...(o.privileged ? { privileged: true } : {}), ...(o.seccomp ? { seccomp: o.seccomp } : {}), ...(o.apparmor ? { apparmor: o.apparmor } : {}), ...(o.deprecated ?? {}) };
  return encode('CreateContainerRequest', {
    pod_sandbox_id: 'sb1',
    config: { metadata: { name: o.name ?? 'app' }, image: { image: 'busybox' }, args: ['sleep', '1'], ...(Object.keys(sec).length ? { linux: { security_context: sec } } : {}) },
    sandbox_config: podConfig({ ...(o.annotations ? { annotations: o.annotations } : {}), ...(o.podSeccomp ? { seccomp: o.podSeccomp } : {}) }),
  });
}

const ctrSeccomp = (buf: Buffer) => decodeSecurityProfile(getMergedAt(buf, CTR_SECCOMP_IN_CREATE)!);
/** Refused with `expected`, naming the annotation in its context. */
const refusedAnnotation = (key: string, expected: Expected) => (e: unknown) => spokeError(expected)(e) && (e as SpokeError).context.annotation === key;

describe('getStringMap (map<string,string> at the wire level)', () => {
  const entry = (parts: Buffer[]) => Buffer.concat([Buffer.from([(SANDBOX_ANNOTATIONS << 3) | 2]), encodeVarint(Buffer.concat(parts).length), ...parts]);
  const str = (field: number, s: string | Buffer) => {
    const b = typeof s === 'string' ? Buffer.from(s) : s;
    return Buffer.concat([Buffer.from([(field << 3) | 2]), encodeVarint(b.length), b]);
  };

  it('reads protobufjs-encoded annotations, filtered by exact key prefix', () => {
    const cfg = encode('PodSandboxConfig', podConfig({ annotations: { [`${SC}pod`]: REF_POD, [`x.${SC}pod`]: 'no', [`Seccomp.profiles.spoke.dev/pod`]: 'no', [`${AA}app`]: REF_CTR } }));
    const m = getStringMap(cfg, SANDBOX_ANNOTATIONS, [SC, AA]);
    assert.deepEqual([...m].sort(), [[`${AA}app`, REF_CTR], [`${SC}pod`, REF_POD]]);
    assert.equal(getStringMap(cfg, SANDBOX_ANNOTATIONS).size, 5);
  });

  it('later entries win, missing key or value is empty, unknown entry fields are skipped', () => {
    const cfg = Buffer.concat([
      entry([str(1, `${SC}a`), str(2, 'first')]),
      entry([str(1, `${SC}a`), str(2, 'second'), Buffer.from([0x18, 0x05])]),
      entry([str(2, 'lonely value')]),
      entry([str(1, `${SC}b`)]),
      entry([str(1, `${SC}c`), str(1, `${SC}d`), str(2, 'v')]),
    ]);
    assert.deepEqual([...getStringMap(cfg, SANDBOX_ANNOTATIONS, [SC])], [[`${SC}a`, 'second'], [`${SC}b`, ''], [`${SC}d`, 'v']]);
    assert.deepEqual([...getStringMap(cfg, SANDBOX_ANNOTATIONS)].find(([k]) => k === ''), ['', 'lonely value']);
  });

  it('rejects malformed entries and invalid UTF-8 in a selected entry', () => {
    assert.throws(() => getStringMap(Buffer.from([0x3a, 0x05, 0x0a, 0x09, 0x61]), SANDBOX_ANNOTATIONS), spokeError({ code: 'InvalidArgument', reason: 'WIRE_INVALID' }));
    assert.throws(() => getStringMap(Buffer.from([0x38, 0x01]), SANDBOX_ANNOTATIONS), spokeError({ code: 'InvalidArgument', reason: 'WIRE_INVALID' })); // varint where a map entry belongs
    assert.throws(() => getStringMap(entry([Buffer.from([0x08, 0x01])]), SANDBOX_ANNOTATIONS), spokeError({ code: 'InvalidArgument', reason: 'WIRE_INVALID' })); // key as varint
    const bad = entry([str(1, `${SC}x`), str(2, Buffer.from([0xff, 0xfe]))]);
    assert.throws(() => getStringMap(bad, SANDBOX_ANNOTATIONS, [SC]), spokeError({ code: 'InvalidArgument', reason: 'WIRE_INVALID' }));
    // Not selected: walked, never decoded.
    assert.equal(getStringMap(bad, SANDBOX_ANNOTATIONS, [AA]).size, 0);
  });

  it('property: agrees with protobufjs on arbitrary maps', () => {
    fc.assert(
      // (`__proto__` is left out: protobufjs's object maps cannot carry it.)
      fc.property(fc.dictionary(fc.string({ maxLength: 30 }).filter((k) => k !== '__proto__'), fc.string({ maxLength: 30 }), { maxKeys: 8 }), (ann) => {
        const cfg = encode('PodSandboxConfig', { annotations: ann, hostname: 'h' });
        assert.deepEqual([...getStringMap(cfg, SANDBOX_ANNOTATIONS)].sort(), Object.entries(ann).sort());
      }),
    );
  });
});

describe('ProfileAnnotations', () => {
  const read = (ann: Record<string, string>) => ProfileAnnotations.read(encode('PodSandboxConfig', podConfig({ annotations: ann })));

  it('container-specific wins over /pod; /pod applies to every container', () => {
    const a = read({ [`${SC}pod`]: REF_POD, [`${SC}app`]: REF_CTR });
    assert.equal(a.forContainer('seccomp', 'app')?.reference, REF_CTR);
    assert.equal(a.forContainer('seccomp', 'app')?.key, `${SC}app`);
    assert.equal(a.forContainer('seccomp', 'other')?.reference, REF_POD);
    assert.equal(a.forContainer('seccomp', 'other')?.podLevel, true);
    assert.equal(a.forContainer('apparmor', 'app'), undefined);
    assert.equal(a.forPod('seccomp')?.reference, REF_POD);
  });

  it('refuses a malformed or oversized value naming the annotation, only where it applies', () => {
    const a = read({ [`${SC}bad`]: 'busybox:latest', [`${SC}big`]: `r.example/p@sha256:${'a'.repeat(600)}`, [`${SC}ok`]: REF_CTR });
    assert.throws(() => a.forContainer('seccomp', 'bad'), refusedAnnotation(`${SC}bad`, { code: 'InvalidArgument', reason: 'TAG_NOT_DIGEST' }));
    assert.throws(() => a.forContainer('seccomp', 'big'), refusedAnnotation(`${SC}big`, { code: 'InvalidArgument', reason: 'REFERENCE_INVALID' }));
    assert.equal(a.forContainer('seccomp', 'ok')?.reference, REF_CTR);
    assert.equal(a.forContainer('seccomp', 'unrelated'), undefined);
  });

  it('no PodSandboxConfig, or no spoke annotations: empty', () => {
    assert.equal(ProfileAnnotations.read(undefined).size, 0);
    assert.equal(read({ 'a/b': 'c' }).size, 0);
  });
});

describe('annotation precedence: RunPodSandbox', () => {
  const run = (o: Parameters<typeof podConfig>[0]) => encode('RunPodSandboxRequest', { config: podConfig(o), runtime_handler: 'runc' });

  for (const seccomp of [undefined, { profile_type: 'RuntimeDefault' }, { profile_type: 'Unconfined' }]) {
    it(`pod annotation replaces ${seccomp ? String(seccomp.profile_type) : 'unset'} on the sandbox; only the profile bytes change`, async () => {
      const h = harness();
      const req = run({ annotations: { [`${SC}pod`]: REF_POD }, ...(seccomp ? { seccomp } : {}) });
      const r = await rewriteRunPodSandbox(req, h.deps);
      assert.ok(r.edited);
      assert.deepEqual(h.pulls, [{ reference: REF_POD, kind: 'seccomp', namespace: 'team-a' }]);
      assert.equal(r.holds?.digest, D1);
      const sc = decodeSecurityProfile(getMergedAt(r.payload, POD_SECCOMP_IN_RUN)!);
      assert.deepEqual(sc, { profileType: 2, localhostRef: pathOf(REF_POD), ociRef: '', base: undefined });
      const before = decode('RunPodSandboxRequest', req);
      const after = decode('RunPodSandboxRequest', r.payload);
      // And the deprecated string beside it, to the same profile.
      assert.equal((((after.config as Msg).linux as Msg).security_context as Msg).seccomp_profile_path, `localhost/${pathOf(REF_POD)}`);
      for (const d of [before, after]) {
        delete (((d.config as Msg).linux as Msg).security_context as Msg).seccomp;
        delete (((d.config as Msg).linux as Msg).security_context as Msg).seccomp_profile_path;
      }
      assert.deepEqual(after, before);
    });
  }

  it('a sandbox profile given only in the deprecated seccomp_profile_path counts as given', async () => {
    const h = harness();
    await assert.rejects(rewriteRunPodSandbox(run({ annotations: { [`${SC}pod`]: REF_POD }, seccompPath: 'localhost/l.json' }), h.deps), refusedAnnotation(`${SC}pod`, { code: 'InvalidArgument', reason: 'ANNOTATION_CONFLICT' }));
    const r = await rewriteRunPodSandbox(run({ annotations: { [`${SC}pod`]: REF_POD }, seccompPath: 'runtime/default' }), h.deps);
    assert.equal(r.holds?.digest, D1);
    assert.deepEqual(h.bases, [BASE_RUNTIME_DEFAULT]);
  });

  it('a KEP OCI profile wins: the annotation is ignored (no pull) and logged', async () => {
    const h = harness();
    const r = await rewriteRunPodSandbox(run({ annotations: { [`${SC}pod`]: REF_POD }, seccomp: { profile_type: 'OCI', oci_ref: REF_OCI } }), h.deps);
    assert.equal(r.holds?.digest, D3);
    assert.deepEqual(h.pulls, []);
    assert.ok(h.logs.some((l) => /ignored/.test(l.msg) && l.fields.annotation === `${SC}pod`));
  });

  it('Localhost + annotation, privileged sandbox + annotation: InvalidArgument naming the annotation', async () => {
    const h = harness();
    await assert.rejects(
      rewriteRunPodSandbox(run({ annotations: { [`${SC}pod`]: REF_POD }, seccomp: { profile_type: 'Localhost', localhost_ref: '/p.json' } }), h.deps),
      refusedAnnotation(`${SC}pod`, { code: 'InvalidArgument', reason: 'ANNOTATION_CONFLICT' }),
    );
    await assert.rejects(rewriteRunPodSandbox(run({ annotations: { [`${SC}pod`]: REF_POD }, privileged: true }), h.deps), refusedAnnotation(`${SC}pod`, { code: 'InvalidArgument', reason: 'PRIVILEGED_CONTAINER' }));
    assert.deepEqual(h.pulls, []);
  });

  it('annotation mode off: a pod annotation is refused, never ignored (the controller falls back to annotations)', async () => {
    const h = harness();
    const req = run({ annotations: { [`${SC}pod`]: REF_POD } });
    await assert.rejects(rewriteRunPodSandbox(req, { seccomp: h.deps.seccomp }), refusedAnnotation(`${SC}pod`, { code: 'FailedPrecondition', reason: 'ANNOTATIONS_OFF' }));
    // A KEP OCI profile in the request wins, in this mode too.
    const kep = run({ annotations: { [`${SC}pod`]: REF_POD }, seccomp: { profile_type: 'OCI', oci_ref: REF_OCI } });
    assert.equal((await rewriteRunPodSandbox(kep, { seccomp: h.deps.seccomp })).edited, true);
    // Container annotations are the containers' business.
    const theirs = run({ annotations: { [`${SC}app`]: REF_CTR } });
    assert.equal((await rewriteRunPodSandbox(theirs, { seccomp: h.deps.seccomp })).payload, theirs);
    assert.deepEqual(h.pulls, []);
  });

  it('only container annotations: the request is not touched', async () => {
    const h = harness();
    const ctrOnly = run({ annotations: { [`${SC}app`]: REF_CTR, [`${AA}pod`]: REF_POD } });
    const r = await rewriteRunPodSandbox(ctrOnly, h.deps);
    assert.equal(r.edited, false);
    assert.equal(r.payload, ctrOnly);
  });

  it('a pull failure fails the call naming the annotation, keeping the code', async () => {
    const h = harness({ pullFails: new SpokeError('PermissionDenied', `${REF_POD}: no rule of the node policy allows registry.example.com`, {}, { reason: 'POLICY_DENIED' }) });
    await assert.rejects(rewriteRunPodSandbox(run({ annotations: { [`${SC}pod`]: REF_POD } }), h.deps), refusedAnnotation(`${SC}pod`, { code: 'PermissionDenied', reason: 'POLICY_DENIED' }));
    assert.ok(h.logs.some((l) => l.msg === 'profile annotation refused'));
  });
});

describe('annotation precedence: CreateContainer', () => {
  for (const seccomp of [undefined, { profile_type: 'RuntimeDefault' }, { profile_type: 'Unconfined' }]) {
    it(`container annotation replaces ${seccomp ? String(seccomp.profile_type) : 'unset'}`, async () => {
      const h = harness();
      const r = await rewriteCreateContainer(createReq({ annotations: { [`${SC}app`]: REF_CTR }, ...(seccomp ? { seccomp } : {}) }), h.deps);
      assert.equal(ctrSeccomp(r.payload).localhostRef, pathOf(REF_CTR));
      assert.equal(r.holds?.digest, D2);
      assert.deepEqual(h.pulls, [{ reference: REF_CTR, kind: 'seccomp', namespace: 'team-a' }]);
    });
  }

  it('container-specific annotation wins over /pod; /pod applies to other containers', async () => {
    const h = harness();
    const ann = { [`${SC}pod`]: REF_POD, [`${SC}app`]: REF_CTR };
    assert.equal(ctrSeccomp((await rewriteCreateContainer(createReq({ annotations: ann }), h.deps)).payload).localhostRef, pathOf(REF_CTR));
    assert.equal(ctrSeccomp((await rewriteCreateContainer(createReq({ name: 'sidecar', annotations: ann }), h.deps)).payload).localhostRef, pathOf(REF_POD));
  });

  it('a KEP OCI profile wins (own, or inherited from the pod); the annotation is ignored', async () => {
    const h = harness();
    const own = await rewriteCreateContainer(createReq({ annotations: { [`${SC}app`]: REF_CTR }, seccomp: { profile_type: 'OCI', oci_ref: REF_OCI } }), h.deps);
    assert.equal(ctrSeccomp(own.payload).localhostRef, pathOf(REF_OCI));
    const inherited = await rewriteCreateContainer(createReq({ annotations: { [`${SC}app`]: REF_CTR }, podSeccomp: { profile_type: 'OCI', oci_ref: REF_OCI } }), h.deps);
    assert.equal(ctrSeccomp(inherited.payload).localhostRef, pathOf(REF_OCI));
    assert.deepEqual(h.pulls, []);
    assert.equal(h.logs.filter((l) => /ignored/.test(l.msg)).length, 2);
  });

  it('a KEP OCI profile wins even over a malformed annotation (ignored, not an error)', async () => {
    const h = harness();
    const r = await rewriteCreateContainer(createReq({ annotations: { [`${SC}app`]: 'nope' }, seccomp: { profile_type: 'OCI', oci_ref: REF_OCI } }), h.deps);
    assert.equal(ctrSeccomp(r.payload).localhostRef, pathOf(REF_OCI));
    const sb = await rewriteRunPodSandbox(
      encode('RunPodSandboxRequest', { config: podConfig({ annotations: { [`${SC}pod`]: 'nope' }, seccomp: { profile_type: 'OCI', oci_ref: REF_OCI } }) }),
      h.deps,
    );
    assert.equal(sb.holds?.digest, D3);
    assert.equal(h.logs.filter((l) => /ignored/.test(l.msg)).length, 2);
  });

  it('Localhost (own or pod-level) + annotation: InvalidArgument naming the annotation', async () => {
    const h = harness();
    await assert.rejects(
      rewriteCreateContainer(createReq({ annotations: { [`${SC}app`]: REF_CTR }, seccomp: { profile_type: 'Localhost', localhost_ref: '/l.json' } }), h.deps),
      refusedAnnotation(`${SC}app`, { code: 'InvalidArgument', reason: 'ANNOTATION_CONFLICT' }),
    );
    await assert.rejects(
      rewriteCreateContainer(createReq({ annotations: { [`${SC}pod`]: REF_POD }, podSeccomp: { profile_type: 'Localhost', localhost_ref: '/l.json' } }), h.deps),
      refusedAnnotation(`${SC}pod`, { code: 'InvalidArgument', reason: 'ANNOTATION_CONFLICT' }),
    );
    assert.deepEqual(h.pulls, []);
  });

  it('a profile given only in the deprecated string fields counts as given: the runtime reads them when the message is absent', async () => {
    // Localhost: refused as the message's Localhost is (the runtime would take the annotation's instead).
    for (const [key, deprecated] of [
      [`${SC}app`, { seccomp_profile_path: 'localhost/l.json' }],
      [`${AA}app`, { apparmor_profile: 'localhost/strict' }],
    ] as const) {
      const h = harness();
      await assert.rejects(rewriteCreateContainer(createReq({ annotations: { [key]: REF_CTR }, deprecated }), h.deps), refusedAnnotation(key, { code: 'InvalidArgument', reason: 'ANNOTATION_CONFLICT' }));
      assert.deepEqual(h.pulls, []);
    }
    // RuntimeDefault (either spelling) stays the base; Unconfined is replaced without one.
    for (const [path, base] of [
      ['runtime/default', BASE_RUNTIME_DEFAULT],
      ['docker/default', BASE_RUNTIME_DEFAULT],
      ['unconfined', undefined],
    ] as const) {
      const h = harness();
      const r = await rewriteCreateContainer(createReq({ annotations: { [`${SC}app`]: REF_CTR }, deprecated: { seccomp_profile_path: path } }), h.deps);
      assert.equal(ctrSeccomp(r.payload).localhostRef, pathOf(REF_CTR));
      assert.deepEqual(h.bases, [base], path);
    }
    // A value the runtime would refuse: the call is refused, nothing pulled.
    const h = harness();
    await assert.rejects(rewriteCreateContainer(createReq({ annotations: { [`${SC}app`]: REF_CTR }, deprecated: { seccomp_profile_path: 'strict.json' } }), h.deps), spokeError({ code: 'InvalidArgument', reason: 'ANNOTATION_CONFLICT' }));
    assert.deepEqual(h.pulls, []);
    // The message, when present, is what the runtime reads: the deprecated string beside it is not.
    const both = await rewriteCreateContainer(createReq({ annotations: { [`${SC}app`]: REF_CTR }, seccomp: { profile_type: 'RuntimeDefault' }, deprecated: { seccomp_profile_path: 'localhost/l.json' } }), h.deps);
    assert.equal(ctrSeccomp(both.payload).localhostRef, pathOf(REF_CTR));
  });

  it('the deprecated string beside a rewritten profile names the same Localhost profile (CRI-O reads apparmor_profile "runtime/default" before the message)', async () => {
    const secCtx = (buf: Buffer) => (decode('CreateContainerRequest', buf) as { config: { linux: { security_context: Record<string, unknown> } } }).config.linux.security_context;
    // As a kubelet sends an explicit RuntimeDefault: the message and the string, for both kinds.
    const h = harness();
    const r = await rewriteCreateContainer(
      createReq({ annotations: { [`${SC}app`]: REF_CTR, [`${AA}app`]: REF_CTR }, seccomp: { profile_type: 'RuntimeDefault' }, apparmor: { profile_type: 'RuntimeDefault' }, deprecated: { seccomp_profile_path: 'runtime/default', apparmor_profile: 'runtime/default' } }),
      h.deps,
    );
    const sc = secCtx(r.payload);
    assert.equal(sc.apparmor_profile, `localhost/spoke-${REF_CTR.slice(-16)}`);
    assert.equal(sc.seccomp_profile_path, `localhost/${pathOf(REF_CTR)}`);
    // Each string occurs once: a Go decoder takes the last, and so would any reader.
    const fieldCount = (buf: Buffer, field: number) => findAll(getMergedAt(buf, CTR_SECCOMP_IN_CREATE.slice(0, -1))!, field).length;
    assert.equal(fieldCount(r.payload, 9), 1);
    assert.equal(fieldCount(r.payload, 10), 1);
    // A KEP OCI profile with the string beside it: the same.
    const kep = await rewriteCreateContainer(createReq({ apparmor: { profile_type: 'OCI', oci_ref: REF_OCI }, deprecated: { apparmor_profile: 'runtime/default' } }), harness().deps);
    assert.equal(secCtx(kep.payload).apparmor_profile, `localhost/spoke-${REF_OCI.slice(-16)}`);
    // Without a string beside the message, one is added: a runtime built before the message (a
    // containerd 1.6 knows no AppArmor message) reads only the string, and with none applies no
    // AppArmor profile at all.
    const none = await rewriteCreateContainer(createReq({ annotations: { [`${AA}app`]: REF_CTR, [`${SC}app`]: REF_CTR }, apparmor: { profile_type: 'RuntimeDefault' } }), harness().deps);
    assert.equal(secCtx(none.payload).apparmor_profile, `localhost/spoke-${REF_CTR.slice(-16)}`);
    assert.equal(secCtx(none.payload).seccomp_profile_path, `localhost/${pathOf(REF_CTR)}`);
    const kepAlone = await rewriteCreateContainer(createReq({ apparmor: { profile_type: 'OCI', oci_ref: REF_OCI } }), harness().deps);
    assert.equal(secCtx(kepAlone.payload).apparmor_profile, `localhost/spoke-${REF_OCI.slice(-16)}`);
    assert.equal(fieldCount(kepAlone.payload, 9), 1);
  });

  it('privileged container + annotation (container or pod level): InvalidArgument naming the annotation', async () => {
    const h = harness();
    for (const key of [`${SC}app`, `${SC}pod`, `${AA}app`]) {
      await assert.rejects(rewriteCreateContainer(createReq({ annotations: { [key]: REF_CTR }, privileged: true, seccomp: { profile_type: 'Unconfined' } }), h.deps), (e: unknown) => {
        assert.ok(e instanceof SpokeError && e.code === 'InvalidArgument');
        assert.ok(e.message.includes(`annotation ${key} conflicts with a privileged container`), e.message);
        return true;
      });
    }
    // privileged without annotations: untouched
    const req = createReq({ privileged: true, annotations: { [`${SC}other`]: REF_CTR } });
    assert.equal((await rewriteCreateContainer(req, h.deps)).payload, req);
  });

  it('annotations for other containers only: the same buffer is forwarded, in either mode', async () => {
    const h = harness();
    const req = createReq({ annotations: { [`${SC}other`]: REF_CTR, [`${SC}bad`]: 'not a reference' } });
    const r = await rewriteCreateContainer(req, h.deps);
    assert.equal(r.edited, false);
    assert.equal(r.payload, req);
    assert.equal((await rewriteCreateContainer(req, { seccomp: h.deps.seccomp })).payload, req);
    assert.deepEqual(h.pulls, []);
  });

  it('annotation mode off: an annotation for this container (own or /pod, either kind) is refused, never ignored', async () => {
    const h = harness();
    const off = { seccomp: h.deps.seccomp };
    for (const [key, ref] of [[`${SC}app`, REF_CTR], [`${SC}pod`, REF_POD], [`${AA}app`, REF_CTR]] as const) {
      await assert.rejects(rewriteCreateContainer(createReq({ annotations: { [key]: ref } }), off), refusedAnnotation(key, { code: 'FailedPrecondition', reason: 'ANNOTATIONS_OFF' }));
    }
    // The container's own KEP OCI profile of that kind wins, as in annotation mode.
    const kep = createReq({ annotations: { [`${SC}app`]: REF_CTR }, seccomp: { profile_type: 'OCI', oci_ref: REF_OCI } });
    assert.equal((await rewriteCreateContainer(kep, off)).edited, true);
    assert.deepEqual(h.pulls, []);
  });

  it('a malformed annotation value for this container fails naming it (no pull)', async () => {
    const h = harness();
    await assert.rejects(rewriteCreateContainer(createReq({ annotations: { [`${SC}app`]: 'registry.example.com/p:latest' } }), h.deps), refusedAnnotation(`${SC}app`, { code: 'InvalidArgument', reason: 'TAG_NOT_DIGEST' }));
    assert.deepEqual(h.pulls, []);
  });

  it('AppArmor annotation → Localhost with the generated name; both kinds at once', async () => {
    const h = harness();
    const r = await rewriteCreateContainer(createReq({ annotations: { [`${AA}app`]: REF_CTR, [`${SC}pod`]: REF_POD }, apparmor: { profile_type: 'RuntimeDefault' } }), h.deps);
    const aa = decodeSecurityProfile(getMergedAt(r.payload, CTR_APPARMOR_IN_CREATE)!);
    assert.deepEqual(aa, { profileType: 2, localhostRef: `spoke-${REF_CTR.slice(-16)}`, ociRef: '', base: undefined });
    assert.equal(ctrSeccomp(r.payload).localhostRef, pathOf(REF_POD));
    assert.deepEqual(r.appArmor.map((a) => a.digest), [D2]);
    assert.deepEqual(h.pulls.map((p) => p.kind).sort(), ['apparmor', 'seccomp']);
  });

  it('AppArmor annotation or OCI field where AppArmor is off: FailedPrecondition, no pull', async () => {
    const h = harness({ appArmorOff: true });
    await assert.rejects(rewriteCreateContainer(createReq({ annotations: { [`${AA}app`]: REF_CTR } }), h.deps), refusedAnnotation(`${AA}app`, { code: 'FailedPrecondition', reason: 'APPARMOR_UNAVAILABLE' }));
    assert.deepEqual(h.pulls, []);
    // No AppArmor resolver at all (the unit-level default): the OCI field is refused, never forwarded.
    await assert.rejects(rewriteCreateContainer(createReq({ apparmor: { profile_type: 'OCI', oci_ref: REF_OCI } }), { seccomp: h.deps.seccomp }), spokeError({ code: 'FailedPrecondition', reason: 'APPARMOR_UNAVAILABLE' }));
  });

  it('property: an annotation edit changes the container seccomp profile and nothing else', async () => {
    const str = fc.string({ maxLength: 16 });
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          args: fc.array(str, { maxLength: 3 }),
          labels: fc.dictionary(fc.string({ minLength: 1, maxLength: 8 }), str, { maxKeys: 3 }),
          extra: fc.dictionary(fc.string({ minLength: 1, maxLength: 12 }), str, { maxKeys: 4 }),
          type: fc.constantFrom(undefined, 'RuntimeDefault', 'Unconfined'),
          podLevel: fc.boolean(),
        }),
        async (g) => {
          const h = harness();
          const ann = { ...g.extra, [`${SC}${g.podLevel ? 'pod' : 'app'}`]: REF_CTR };
          const req = encode('CreateContainerRequest', {
            pod_sandbox_id: 'sb',
            config: { metadata: { name: 'app' }, args: g.args, labels: g.labels, linux: { security_context: { run_as_user: { value: 7 }, ...(g.type ? { seccomp: { profile_type: g.type } } : {}) } } },
            sandbox_config: podConfig({ annotations: ann }),
          });
          const r = await rewriteCreateContainer(req, h.deps);
          const before = decode('CreateContainerRequest', req);
          const after = decode('CreateContainerRequest', r.payload);
          const scAfter = (((after.config as Msg).linux as Msg).security_context as Msg).seccomp as Msg;
          assert.equal(scAfter.profile_type, 'Localhost');
          assert.equal(scAfter.localhost_ref, pathOf(REF_CTR));
          assert.equal((((after.config as Msg).linux as Msg).security_context as Msg).seccomp_profile_path, `localhost/${pathOf(REF_CTR)}`);
          for (const d of [before, after]) {
            delete (((d.config as Msg).linux as Msg).security_context as Msg).seccomp;
            delete (((d.config as Msg).linux as Msg).security_context as Msg).seccomp_profile_path;
          }
          assert.deepEqual(after, before);
        },
      ),
      { numRuns: 60 },
    );
  });
});

/** A name spoke renders: `spoke-` and 64 hex digits (from one or two hex digits repeated). */
const aaName = (hex: string): string => `spoke-${hex.repeat(64 / hex.length)}`;

describe('AppArmor load/unload bookkeeping (fake apparmor_parser)', () => {
  const dirs: string[] = [];
  after(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  async function setup() {
    const dir = mkdtempSync(join(tmpdir(), 'spoke-aa-'));
    dirs.push(dir);
    const store = new ProfileStore({ root: dir });
    // Stored artifacts: a claim or a create holds only what the store has (InUseTracker).
    for (const [i, d] of [D1, D2, D3].entries()) await store.ingest(ingestInput(`{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_ERRNO","errnoRet":${i + 1}}]}`, { digest: d as Digest }));
    const logs: { level: string; msg: string; fields: Record<string, unknown> }[] = [];
    const unloaded: string[] = [];
    let loads = 0;
    const live = { sandboxes: [] as string[], containers: [] as string[] };
    const upstream = {
      unary: async (path: string) =>
        path.endsWith('ListPodSandbox')
          ? encode('ListPodSandboxResponse', { items: live.sandboxes.map((id) => ({ id })) })
          : path.endsWith('ListContainers')
            ? encode('ListContainersResponse', { containers: live.containers.map((id) => ({ id, pod_sandbox_id: 's' })) })
            : Buffer.alloc(0),
    } as unknown as Upstream;
    const tracker = new InUseTracker(store, { log: (level, msg, fields) => logs.push({ level, msg, fields: fields ?? {} }) }, {
      upstream,
      seccompRoot: join(dir, 'seccomp'),
      appArmor: {
        unload: async (name) => {
          unloaded.push(name);
        },
      },
    });
    const load = async () => {
      loads++;
    };
    return { store, tracker, unloaded, loads: () => loads, load, live, upstream, logs };
  }

  it('loads once, holds per container, unloads after the last container goes', async () => {
    const t = await setup();
    const a = await t.tracker.claimAppArmor(aaName('1'), D1 as Digest, t.load);
    await t.tracker.commitAppArmor([a], 'container:c1');
    const b = await t.tracker.claimAppArmor(aaName('1'), D1 as Digest, t.load);
    await t.tracker.commitAppArmor([b], 'container:c2');
    assert.equal(t.loads(), 1);
    assert.deepEqual((await t.store.inUseHolders(D1 as Digest)).sort(), [`apparmor:${aaName('1')}@container:c1`, `apparmor:${aaName('1')}@container:c2`]);
    await t.tracker.released('container:c1');
    assert.deepEqual(t.unloaded, []);
    await t.tracker.released('container:c2');
    assert.deepEqual(t.unloaded, [aaName('1')]);
    assert.deepEqual(await t.store.inUseHolders(D1 as Digest), []);
    // loaded again on the next claim
    await t.tracker.claimAppArmor(aaName('1'), D1 as Digest, t.load);
    assert.equal(t.loads(), 2);
  });

  it('an aborted create releases its claim and unloads an unused profile; a failed load records nothing', async () => {
    const t = await setup();
    const a = await t.tracker.claimAppArmor(aaName('2'), D2 as Digest, t.load);
    assert.equal((await t.store.inUseHolders(D2 as Digest)).length, 1);
    await t.tracker.abortAppArmor([a]);
    assert.deepEqual(t.unloaded, [aaName('2')]);
    assert.deepEqual(await t.store.inUseHolders(D2 as Digest), []);
    await assert.rejects(
      t.tracker.claimAppArmor(aaName('3'), D3 as Digest, async () => {
        throw new SpokeError('Internal', 'loading the AppArmor profile failed');
      }),
      /loading/,
    );
    assert.deepEqual(await t.store.inUseHolders(D3 as Digest), []);
  });

  /** Makes the store's next markInUse fail as a full disk does. */
  function fullDiskOnce(store: ProfileStore): void {
    const markInUse = store.markInUse.bind(store);
    let failed = false;
    store.markInUse = async (...args: Parameters<ProfileStore['markInUse']>) => {
      if (failed) return markInUse(...args);
      failed = true;
      throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
    };
  }

  it('a claim whose holder cannot be written is refused, leaves nothing in flight, and unloads the profile it loaded', async () => {
    const t = await setup();
    fullDiskOnce(t.store);
    await assert.rejects(t.tracker.claimAppArmor(aaName('4'), D1 as Digest, t.load), { code: 'ENOSPC' });
    assert.deepEqual(await t.store.inUseHolders(D1 as Digest), []);
    assert.deepEqual(t.unloaded, [aaName('4')], 'loaded, and held by nothing');
    // Claimed again later: loaded again, held as usual.
    await t.tracker.claimAppArmor(aaName('4'), D1 as Digest, t.load);
    assert.equal(t.loads(), 2);
    assert.equal((await t.store.inUseHolders(D1 as Digest)).length, 1);
  });

  it('a create whose seccomp holder cannot be written after its AppArmor claim: the claim goes with it', async () => {
    const t = await setup();
    const claims = new CreateClaims(t.tracker, silentLogger, 'container', undefined);
    await claims.claimAppArmor(aaName('5'), D2 as Digest, t.load);
    fullDiskOnce(t.store);
    const holds = { path: '/x', digest: D3 as Digest, reference: 'r.io/p@' + D3, effectiveSha: 'a'.repeat(64), constrained: 0 };
    await assert.rejects(claims.begin(holds), { code: 'ENOSPC' });
    assert.deepEqual(await t.store.inUseHolders(D2 as Digest), [], 'the AppArmor claim is released');
    assert.deepEqual(t.unloaded, [aaName('5')]);
  });

  it('rebuild keeps live holders, drops dead ones and unloads what nobody holds any more', async () => {
    const t = await setup();
    for (const c of ['c1', 'c2']) await t.tracker.commitAppArmor([await t.tracker.claimAppArmor(aaName(c), D1 as Digest, t.load)], `container:${c}`);
    const pending = await t.tracker.claimAppArmor(aaName('e'), D2 as Digest, t.load);
    t.live.containers = ['c1'];
    await t.tracker.rebuild();
    assert.deepEqual(t.unloaded, [aaName('c2')]);
    const holders = [...(await t.store.inUse()).values()].flat().sort();
    assert.deepEqual(holders, [`apparmor:${aaName('c1')}@container:c1`, pending.pending]);
    // after the rebuild the tracker still knows c1's AppArmor holder
    await t.tracker.released('container:c1');
    assert.deepEqual(t.unloaded, [aaName('c2'), aaName('c1')]);
  });

  it('a load whose parser says the kernel does not enforce some rules is logged as a warning naming them, and holds as usual', async () => {
    const t = await setup();
    const notEnforced = ['Warning from profile x (stdin): signal rules not enforced'];
    const claim = await t.tracker.claimAppArmor(aaName('6'), D1 as Digest, async () => ({ warnings: notEnforced }));
    await t.tracker.commitAppArmor([claim], 'container:c6');
    const line = t.logs.find((l) => l.fields.name === aaName('6'));
    assert.equal(line?.level, 'warn');
    assert.deepEqual(line?.fields.notEnforced, notEnforced);
    assert.deepEqual(await t.store.inUseHolders(D1 as Digest), [`apparmor:${aaName('6')}@container:c6`]);
  });

  it("profiles a shim before this one loaded (named for another parser, or before names covered one) go once unused, never while a container runs under them", async () => {
    const t = await setup();
    const bytes = intersectAppArmor({ capability: { allowedCapabilities: ['CHOWN'] } }, { capability: { allowedCapabilities: ['CHOWN'] } }).bytes;
    // The names an earlier spoke gave one profile: of the template and bytes only, and for another parser.
    const unnamed = `spoke-${sha256Hex(Buffer.concat([Buffer.from(`spoke apparmor template v${RENDER_TEMPLATE_VERSION}\n`), bytes]))}`;
    const otherParser = appArmorProfileName(bytes, 'e'.repeat(64));
    await t.store.markInUse(D1 as Digest, `apparmor:${unnamed}@container:old1`);
    await t.store.markInUse(D1 as Digest, `apparmor:${otherParser}@container:old2`);
    t.live.containers = ['old1', 'old2'];
    // This shim names the profile for its own parser and loads it beside them.
    const mine = appArmorProfileName(bytes, 'f'.repeat(64));
    await t.tracker.commitAppArmor([await t.tracker.claimAppArmor(mine, D1 as Digest, t.load)], 'container:new');
    t.live.containers.push('new');
    assert.equal(t.loads(), 1);
    await t.tracker.rebuild();
    assert.deepEqual(t.unloaded, [], 'each runs a container');
    t.live.containers = ['old1', 'new'];
    await t.tracker.rebuild();
    assert.deepEqual(t.unloaded, [otherParser]);
    await t.tracker.released('container:old1');
    assert.deepEqual(t.unloaded, [otherParser, unnamed]);
    assert.deepEqual(await t.store.inUseHolders(D1 as Digest), [`apparmor:${mine}@container:new`]);
  });

  it('unloads only profiles of the name spoke renders, whatever a holder in the in-use file names', async () => {
    const t = await setup();
    // Holders a tampered or foreign in-use file could carry: a distribution's profile, the runtime's.
    for (const foreign of ['docker-default', 'cri-containerd.apparmor.d', `spoke-${'a'.repeat(63)}`]) await t.store.markInUse(D3 as Digest, `apparmor:${foreign}@container:gone`);
    await t.tracker.commitAppArmor([await t.tracker.claimAppArmor(aaName('c3'), D1 as Digest, t.load)], 'container:gone2');
    await t.tracker.rebuild();
    assert.deepEqual(t.unloaded, [aaName('c3')]);
    assert.deepEqual([...(await t.store.inUse()).values()].flat(), [], 'the dead holders are dropped all the same');
  });
});
