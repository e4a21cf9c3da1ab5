// The wire reader/writer and the request/response editors: round trips, unknown fields kept,
// and the property that an edit changes the target field and nothing else.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { decode, encode, type Msg } from '../../helpers/cri-client.js';
import { FieldCursor, getMergedAt, getString, validateMessage, type WireField } from '../../../src/cri/wire.js';
import { appendToMessageAt, encodeVarint, replaceMessageAt, stringField, varintField } from '../../../src/cri/wire-write.js';
import { addOciFeature } from '../../../src/cri/server.js';
import { getStringMap } from '../../../src/cri/wire-map.js';
import { rewriteCreateContainer, rewriteRunPodSandbox, type Resolver } from '../../../src/cri/rewrite.js';
import { CTR_APPARMOR_IN_CREATE, CTR_SECCOMP_IN_CREATE, decodeSecurityProfile, encodePullResponse, POD_APPARMOR_IN_CREATE, POD_APPARMOR_IN_RUN, POD_SECCOMP_IN_CREATE, POD_SECCOMP_IN_RUN } from '../../../src/cri/messages.js';
import type { Digest } from '../../../src/core/digest.js';
import { spokeError } from '../../helpers/assert.js';
import { withFs } from '../../helpers/with-fs.js';

/** Malformed protobuf is refused as InvalidArgument, WIRE_INVALID. */
const malformed = spokeError({ code: 'InvalidArgument', reason: 'WIRE_INVALID' });

const REF = `registry.example.com/profiles/deny-mkdir@sha256:${'a'.repeat(64)}`;
const REF2 = `registry.example.com/profiles/pod@sha256:${'b'.repeat(64)}`;
/** Every field of a message, each as its own object. */
function fieldsOf(b: Buffer): WireField[] {
  const out: WireField[] = [];
  for (const c = new FieldCursor(b); c.next(); ) out.push(c.snapshot());
  return out;
}

/** Unknown fields: 900 (string) and 901 (varint), unknown to every CRI message. */
const UNKNOWN = Buffer.concat([Buffer.from([0xa2, 0x38, 0x04]), Buffer.from('spok'), Buffer.from([0xa8, 0x38, 0x07])]);

const fakeResolver: Resolver = async (p) => ({
  path: `/var/lib/kubelet/seccomp/spoke/${p.ociRef.endsWith('a'.repeat(64)) ? '1'.repeat(64) : '2'.repeat(64)}.json`,
  digest: p.ociRef.slice(p.ociRef.indexOf('@') + 1) as Digest,
  reference: p.ociRef,
  effectiveSha: '1'.repeat(64),
  constrained: 0,
});

describe('varints', () => {
  it('round-trips every 64-bit value (as a number: exact below 2^53)', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }), (v) => {
        const b = Buffer.concat([Buffer.from([0x08]), encodeVarint(v)]);
        const [f] = fieldsOf(b);
        assert.equal(f!.varint, Number(v));
        assert.equal(f!.end, b.length);
      }),
    );
  });
  it('keeps a ten-byte varint\'s low 64 bits, as Go\'s decoders do', () => {
    // 3, with bits beyond the 64th set in the tenth byte.
    assert.equal(fieldsOf(Buffer.from([0x08, 0x83, ...Array(8).fill(0x80), 0x02]))[0]!.varint, 3);
  });
  it('writes a number as the same bytes as the bigint of its value, negative ones as their 64-bit two\'s complement', () => {
    fc.assert(
      fc.property(fc.oneof(fc.integer({ min: 0, max: 0xffffffff }), fc.integer({ min: -(2 ** 31), max: -1 }), fc.maxSafeNat()), (n) => {
        assert.deepEqual(encodeVarint(n), encodeVarint(BigInt.asUintN(64, BigInt(n))));
      }),
    );
    for (const n of [0, 1, 127, 128, 16383, 16384, 2 ** 31 - 1, 2 ** 31, 0xffffffff, 2 ** 32, -1]) {
      assert.deepEqual(encodeVarint(n), encodeVarint(BigInt.asUintN(64, BigInt(n))), String(n));
    }
  });
  it('rejects truncated and overlong varints', () => {
    assert.throws(() => validateMessage(Buffer.from([0x08, 0x80])), malformed);
    assert.throws(() => validateMessage(Buffer.concat([Buffer.from([0x08]), Buffer.alloc(11, 0xff)])), malformed);
  });
});

describe('field walking', () => {
  it('reads protobufjs encodings field by field', () => {
    const b = encode('VersionResponse', { version: 'v1', runtime_name: 'x', runtime_version: '1', runtime_api_version: 'v1' });
    assert.deepEqual(fieldsOf(b).map((f) => f.field), [1, 2, 3, 4]);
  });
  it('rejects fields running past their message', () => {
    assert.throws(() => validateMessage(Buffer.from([0x0a, 0x05, 0x61])), malformed);
    assert.throws(() => validateMessage(Buffer.from([0x00])), malformed); // field 0
    assert.throws(() => validateMessage(Buffer.from([0x0b])), malformed); // unterminated group
  });
  it('refuses a tag beyond 32 bits, which a runtime built on older generated decoders reads as another field', () => {
    // Field 2^32 + 15, an empty message: such a decoder keeps int32(tag >> 3) and reads it as
    // field 15, the seccomp profile of a container's security context.
    assert.throws(() => validateMessage(Buffer.from([0xfa, 0x80, 0x80, 0x80, 0x80, 0x01, 0x00])), malformed);
    // A ten-byte tag whose bits past 64 that decoder drops.
    assert.throws(() => validateMessage(Buffer.from([0xfa, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x02, 0x00])), malformed);
    // Inside a group too.
    assert.throws(() => validateMessage(Buffer.from([0x0b, 0xf8, 0x80, 0x80, 0x80, 0x80, 0x01, 0x00, 0x0c])), malformed);
    // The largest field number protobuf allows, and a tag padded with zero continuation bytes, are read.
    assert.equal(fieldsOf(Buffer.concat([encodeVarint(536870911 * 8 + 2), Buffer.from([0])]))[0]!.field, 536870911);
    assert.equal(fieldsOf(Buffer.from([0xfa, 0x80, 0x80, 0x80, 0x00, 0x00]))[0]!.field, 15);
  });
  it('skips groups and fixed-width fields', () => {
    const b = Buffer.from([0x0b, 0x10, 0x01, 0x0c, 0x11, 1, 2, 3, 4, 5, 6, 7, 8, 0x1d, 1, 2, 3, 4]);
    assert.deepEqual(fieldsOf(b).map((f) => [f.field, f.wireType]), [[1, 3], [2, 1], [3, 5]]);
  });
});

describe('the pull response', () => {
  it('is the bytes protobufjs writes for it, any reference and either cached value', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string({ unit: 'binary', maxLength: 300 }), fc.string({ minLength: 120, maxLength: 20_000 })), fc.boolean(), (ref, cached) => {
        assert.deepEqual(encodePullResponse(ref, cached), encode('PullSecurityProfileArtifactResponse', { resolved_ref: ref, cached }));
      }),
      { numRuns: 500 },
    );
  });
});

describe('strings as Go reads them', () => {
  it('a leading byte-order mark is part of the string (Go keeps it; a decoder that drops it reads another value)', () => {
    const bom = Buffer.from([0xef, 0xbb, 0xbf]);
    const value = Buffer.concat([bom, Buffer.from('runtime/default')]);
    const msg = Buffer.concat([stringField(1, 'x'), Buffer.from([(2 << 3) | 2, value.length]), value]);
    assert.equal(getString(msg, 2), '\uFEFFruntime/default');
    const entry = Buffer.concat([Buffer.from([(1 << 3) | 2, 1]), Buffer.from('k'), Buffer.from([(2 << 3) | 2, value.length]), value]);
    const map = Buffer.concat([Buffer.from([(7 << 3) | 2, entry.length]), entry]);
    assert.equal(getStringMap(map, 7).get('k'), '\uFEFFruntime/default');
  });
});

describe('replaceMessageAt / appendToMessageAt', () => {
  it('splices the new payload and fixes every enclosing length prefix', () => {
    const req = encode('RunPodSandboxRequest', {
      config: { metadata: { name: 'p', namespace: 'ns' }, linux: { security_context: { seccomp: { profile_type: 'OCI', oci_ref: REF } } } },
      runtime_handler: 'runc',
    });
    const out = replaceMessageAt(req, POD_SECCOMP_IN_RUN, encode('SecurityProfile', { profile_type: 'Localhost', localhost_ref: '/x.json' }));
    const d = decode('RunPodSandboxRequest', out);
    const sc = (((d.config as Msg).linux as Msg).security_context as Msg).seccomp as Msg;
    assert.equal(sc.profile_type, 'Localhost');
    assert.equal(sc.localhost_ref, '/x.json');
    assert.equal(sc.oci_ref, '');
    assert.equal(d.runtime_handler, 'runc');
  });
  it('creates missing messages along the path', () => {
    const out = replaceMessageAt(Buffer.alloc(0), [2, 15, 2, 15], Buffer.from([0x08, 0x02]));
    const d = decode('CreateContainerRequest', out);
    assert.equal(((((d.config as Msg).linux as Msg).security_context as Msg).seccomp as Msg).profile_type, 'Localhost');
  });
  it('keeps non-minimal tag bytes of the fields on the path', () => {
    // field 1 (LEN) with an overlong tag 0x8a 0x00, containing field 1 = "a"
    const msg = Buffer.from([0x8a, 0x00, 0x03, 0x0a, 0x01, 0x61]);
    const out = replaceMessageAt(msg, [1], Buffer.from([0x0a, 0x02, 0x62, 0x63]));
    assert.deepEqual(out, Buffer.from([0x8a, 0x00, 0x04, 0x0a, 0x02, 0x62, 0x63]));
  });
  it('refuses a repeated field on the path', () => {
    assert.throws(() => replaceMessageAt(Buffer.from([0x0a, 0x00, 0x0a, 0x00]), [1], Buffer.alloc(0)), malformed);
  });
  it('appends to the last occurrence', () => {
    const out = appendToMessageAt(Buffer.from([0x22, 0x02, 0x08, 0x01]), [4], Buffer.from([0x20, 0x01]));
    assert.deepEqual(out, Buffer.from([0x22, 0x04, 0x08, 0x01, 0x20, 0x01]));
  });
});

describe('Status response edit', () => {
  it('adds the feature to an absent RuntimeFeatures, keeping everything else', () => {
    const s = encode('StatusResponse', { status: { conditions: [{ type: 'RuntimeReady', status: true }] }, info: { a: 'b' } });
    const out = addOciFeature(Buffer.concat([s, UNKNOWN]));
    assert.ok(out.subarray(0, s.length + UNKNOWN.length).equals(Buffer.concat([s, UNKNOWN])));
    const d = decode('StatusResponse', out);
    assert.equal((d.features as Msg).security_profile_oci_artifact, true);
    assert.deepEqual(d.info, { a: 'b' });
  });
  it('keeps existing features and is idempotent', () => {
    const s = encode('StatusResponse', { features: { supplemental_groups_policy: true, user_namespaces_host_network: true } });
    const once = addOciFeature(s);
    const d = decode('StatusResponse', once);
    assert.deepEqual(d.features, { supplemental_groups_policy: true, user_namespaces_host_network: true, security_profile_oci_artifact: true });
    assert.deepEqual(addOciFeature(once), once);
  });
  it('turns an explicit false into true', () => {
    const s = encode('StatusResponse', { features: { security_profile_oci_artifact: false } });
    const withFalse = Buffer.concat([s, Buffer.from([0x22, 0x02, 0x20, 0x00])]);
    assert.equal((decode('StatusResponse', addOciFeature(withFalse)).features as Msg).security_profile_oci_artifact, true);
  });
});

function podConfig(seccomp?: Msg, apparmor?: Msg): Msg {
  return {
    metadata: { name: 'web', uid: 'u1', namespace: 'team-a', attempt: 1 },
    log_directory: '/var/log/pods/x',
    labels: { app: 'web' },
    annotations: { 'x/y': 'z' },
    linux: { cgroup_parent: '/k8s', security_context: { namespace_options: { network: 'NODE' }, ...(seccomp ? { seccomp } : {}), ...(apparmor ? { apparmor } : {}) } },
  };
}

describe('RunPodSandbox / CreateContainer rewrites', () => {
  it('leaves requests without an OCI profile untouched (same buffer)', async () => {
    const req = encode('RunPodSandboxRequest', { config: podConfig({ profile_type: 'Localhost', localhost_ref: '/p.json' }) });
    const r = await rewriteRunPodSandbox(req, fakeResolver);
    assert.equal(r.edited, false);
    assert.equal(r.payload, req);
  });

  it('pod-level OCI → Localhost, unknown fields and everything else kept', async () => {
    const req = Buffer.concat([encode('RunPodSandboxRequest', { config: podConfig({ profile_type: 'OCI', oci_ref: REF, base_profile: { type: 'RuntimeDefault' } }), runtime_handler: 'crun' }), UNKNOWN]);
    const r = await rewriteRunPodSandbox(req, fakeResolver);
    assert.ok(r.edited);
    assert.equal(r.holds?.digest, REF.slice(REF.indexOf('@') + 1));
    assert.ok(r.payload.subarray(r.payload.length - UNKNOWN.length).equals(UNKNOWN));
    const before = decode('RunPodSandboxRequest', req);
    const after = decode('RunPodSandboxRequest', r.payload);
    const sc = (((after.config as Msg).linux as Msg).security_context as Msg).seccomp as Msg;
    assert.deepEqual(sc, { profile_type: 'Localhost', localhost_ref: `/var/lib/kubelet/seccomp/spoke/${'1'.repeat(64)}.json`, oci_ref: '', base_profile: null });
    // The deprecated string beside it names the same profile (src/cri/messages.ts replaceProfileAt).
    assert.equal((((after.config as Msg).linux as Msg).security_context as Msg).seccomp_profile_path, `localhost/${String(sc.localhost_ref)}`);
    for (const d of [before, after]) {
      delete (((d.config as Msg).linux as Msg).security_context as Msg).seccomp;
      delete (((d.config as Msg).linux as Msg).security_context as Msg).seccomp_profile_path;
    }
    assert.deepEqual(after, before);
  });

  it('container-level OCI and pod-level OCI in sandbox_config are both replaced', async () => {
    const req = encode('CreateContainerRequest', {
      pod_sandbox_id: 'sb1',
      config: { metadata: { name: 'c' }, image: { image: 'busybox' }, linux: { security_context: { seccomp: { profile_type: 'OCI', oci_ref: REF } } } },
      sandbox_config: podConfig({ profile_type: 'OCI', oci_ref: REF2 }),
    });
    const r = await rewriteCreateContainer(req, fakeResolver);
    const d = decode('CreateContainerRequest', r.payload);
    const ctr = ((((d.config as Msg).linux as Msg).security_context as Msg).seccomp as Msg);
    const pod = (((((d.sandbox_config as Msg).linux as Msg).security_context as Msg).seccomp as Msg));
    assert.equal(ctr.localhost_ref, `/var/lib/kubelet/seccomp/spoke/${'1'.repeat(64)}.json`);
    assert.equal(pod.localhost_ref, `/var/lib/kubelet/seccomp/spoke/${'2'.repeat(64)}.json`);
    assert.equal(r.holds?.digest, `sha256:${'a'.repeat(64)}`);
    assert.ok(!r.payload.includes(Buffer.from(REF)) && !r.payload.includes(Buffer.from(REF2)));
  });

  it('a container without any seccomp profile inherits the pod-level OCI profile', async () => {
    const req = encode('CreateContainerRequest', {
      pod_sandbox_id: 'sb1',
      config: { metadata: { name: 'c' }, image: { image: 'busybox' } },
      sandbox_config: podConfig({ profile_type: 'OCI', oci_ref: REF2 }),
    });
    const r = await rewriteCreateContainer(req, fakeResolver);
    const d = decode('CreateContainerRequest', r.payload);
    const ctr = decodeSecurityProfile(getMergedAt(r.payload, CTR_SECCOMP_IN_CREATE)!);
    assert.equal(ctr.profileType, 2);
    assert.equal(ctr.localhostRef, `/var/lib/kubelet/seccomp/spoke/${'2'.repeat(64)}.json`);
    assert.equal(r.holds?.digest, `sha256:${'b'.repeat(64)}`);
    assert.equal(((d.config as Msg).image as Msg).image, 'busybox');
  });

  it('refuses AppArmor OCI and ambiguous duplicated paths', async () => {
    const aa = encode('RunPodSandboxRequest', { config: podConfig(undefined, { profile_type: 'OCI', oci_ref: REF }) });
    // A resolver alone (no AppArmor one): an OCI AppArmor profile cannot be honoured here.
    await assert.rejects(rewriteRunPodSandbox(aa, fakeResolver), spokeError({ code: 'FailedPrecondition', reason: 'APPARMOR_UNAVAILABLE' }));
    const one = encode('RunPodSandboxRequest', { config: podConfig({ profile_type: 'OCI', oci_ref: REF }) });
    const dup = Buffer.concat([one, encode('RunPodSandboxRequest', { config: { hostname: 'x' } })]);
    await assert.rejects(rewriteRunPodSandbox(dup, fakeResolver), malformed);
  });

  it('refuses a profile type sent length-delimited (as if packed) in either request: runtimes read it as an error or as no profile', async () => {
    const packedOci = Buffer.concat([Buffer.from([0x0a, 0x01, 0x03, 0x1a, REF.length]), Buffer.from(REF)]);
    const sandbox = encode('RunPodSandboxRequest', { config: podConfig({ profile_type: 'RuntimeDefault' }) });
    await assert.rejects(rewriteRunPodSandbox(replaceMessageAt(sandbox, POD_SECCOMP_IN_RUN, packedOci), fakeResolver), { reason: 'WIRE_INVALID' });
    const create = encode('CreateContainerRequest', {
      config: { metadata: { name: 'c' }, image: { image: 'busybox' }, linux: { security_context: { seccomp: { profile_type: 'RuntimeDefault' } } } },
      sandbox_config: podConfig(),
    });
    await assert.rejects(rewriteCreateContainer(replaceMessageAt(create, CTR_SECCOMP_IN_CREATE, packedOci), fakeResolver), { reason: 'WIRE_INVALID' });
  });

  it('refuses a profile type it does not know, at every site of either kind (runtimes read one differently: containerd refuses, CRI-O applies localhost_ref)', async () => {
    const sandbox = (seccomp?: Msg, apparmor?: Msg) => encode('RunPodSandboxRequest', { config: podConfig(seccomp, apparmor) });
    const create = (ctr: { seccomp?: Msg; apparmor?: Msg }, pod: { seccomp?: Msg; apparmor?: Msg } = {}) =>
      encode('CreateContainerRequest', {
        config: { metadata: { name: 'c' }, image: { image: 'busybox' }, linux: { security_context: ctr } },
        sandbox_config: podConfig(pod.seccomp, pod.apparmor),
      });
    const unknownType = spokeError({ code: 'InvalidArgument', reason: 'PROFILE_TYPE_UNKNOWN' });
    for (const type of [4, 7, 2 ** 31 - 1]) {
      const profile = Buffer.concat([varintField(1, type), stringField(2, '/var/lib/kubelet/seccomp/any.json')]);
      const known = { profile_type: 'RuntimeDefault' };
      const asPodSeccomp = replaceMessageAt(sandbox(known), POD_SECCOMP_IN_RUN, profile);
      await assert.rejects(rewriteRunPodSandbox(asPodSeccomp, fakeResolver), unknownType);
      const asPodAppArmor = replaceMessageAt(sandbox(known, known), POD_APPARMOR_IN_RUN, profile);
      await assert.rejects(rewriteRunPodSandbox(asPodAppArmor, fakeResolver), unknownType);
      for (const path of [CTR_SECCOMP_IN_CREATE, CTR_APPARMOR_IN_CREATE, POD_SECCOMP_IN_CREATE, POD_APPARMOR_IN_CREATE]) {
        const req = replaceMessageAt(create({ seccomp: known, apparmor: known }, { seccomp: known, apparmor: known }), path, profile);
        await assert.rejects(rewriteCreateContainer(req, fakeResolver), unknownType, `type ${type} at ${path.join('.')}`);
      }
    }
    // Field 1 given twice: the runtime reads the last value, a known one, so the request is not spoke's.
    const lastWins = Buffer.from([0x08, 0x07, 0x08, 0x00]);
    const req = replaceMessageAt(create({ seccomp: { profile_type: 'RuntimeDefault' } }), CTR_SECCOMP_IN_CREATE, lastWins);
    const r = await rewriteCreateContainer(req, fakeResolver);
    assert.equal(r.edited, false);
  });

  it('refuses a Localhost profile naming one of spoke\'s own merge results (or rendered AppArmor profiles), in the message or the deprecated string: only the shim names those, for the OCI profile it resolved', async () => {
    const root = '/var/lib/kubelet/seccomp';
    const deps = { seccomp: fakeResolver, reservedSeccompDirs: [`${root}/spoke`, '/data/kubelet/seccomp/spoke'] };
    const reserved = spokeError({ code: 'PermissionDenied', reason: 'PROFILE_RESERVED' });
    const sha = 'c'.repeat(64);
    const localhost = (ref: string) => ({ profile_type: 'Localhost', localhost_ref: ref });
    const create = (ctr: Msg, pod: { seccomp?: Msg; apparmor?: Msg } = {}) =>
      encode('CreateContainerRequest', { config: { metadata: { name: 'c' }, image: { image: 'busybox' }, linux: { security_context: ctr } }, sandbox_config: podConfig(pod.seccomp, pod.apparmor) });
    // containerd and CRI-O drop one leading `localhost/` from a Localhost ref: the same file. A
    // relative path is read from the runtime's working directory, `/` for a service.
    for (const ref of [`${root}/spoke/${sha}.json`, `${root}//spoke/./${sha}.json`, `${root}/x/../spoke/${sha}.json`, `${root}/spoke/anything`, `/data/kubelet/seccomp/spoke/${sha}.json`, `localhost/${root}/spoke/${sha}.json`, `var/lib/kubelet/seccomp/spoke/${sha}.json`, `localhost/../var/lib/kubelet/seccomp/spoke/${sha}.json`]) {
      await assert.rejects(rewriteRunPodSandbox(encode('RunPodSandboxRequest', { config: podConfig(localhost(ref)) }), deps), reserved, ref);
      await assert.rejects(rewriteCreateContainer(create({ seccomp: localhost(ref) }), deps), reserved, ref);
      await assert.rejects(rewriteCreateContainer(create({}, { seccomp: localhost(ref) }), deps), reserved, ref);
      await assert.rejects(rewriteCreateContainer(create({ seccomp_profile_path: `localhost/${ref}` }), deps), reserved, ref);
    }
    for (const aaName of [`spoke-${sha}`, `localhost/spoke-${sha}`]) {
      await assert.rejects(rewriteCreateContainer(create({ apparmor: localhost(aaName) }), deps), reserved, aaName);
      await assert.rejects(rewriteCreateContainer(create({ apparmor_profile: `localhost/${aaName}` }), deps), reserved, aaName);
      await assert.rejects(rewriteCreateContainer(create({ apparmor_profile: aaName }), deps), reserved, `${aaName} without localhost/`);
      await assert.rejects(rewriteCreateContainer(create({}, { apparmor: localhost(aaName) }), deps), reserved, aaName);
      await assert.rejects(rewriteRunPodSandbox(encode('RunPodSandboxRequest', { config: podConfig(undefined, localhost(aaName)) }), deps), reserved, aaName);
    }
    // CRI-O applies an AppArmor localhost_ref for every type but RuntimeDefault (Unconfined
    // included): the ref is checked whatever the type says.
    for (const type of ['Unconfined', 'RuntimeDefault']) {
      await assert.rejects(rewriteCreateContainer(create({ apparmor: { profile_type: type, localhost_ref: `spoke-${sha}` } }), deps), reserved, type);
      await assert.rejects(rewriteRunPodSandbox(encode('RunPodSandboxRequest', { config: podConfig(undefined, { profile_type: type, localhost_ref: `localhost/spoke-${sha}` }) }), deps), reserved, type);
      await assert.rejects(rewriteCreateContainer(create({ seccomp: { profile_type: type, localhost_ref: `${root}/spoke/${sha}.json` } }), deps), reserved, type);
    }
    // Other names and paths are the admin's: forwarded as they came.
    for (const ctr of [{ seccomp: localhost(`${root}/spoke-like.json`) }, { seccomp: localhost(`${root}/team/spoke/x.json`) }, { apparmor: localhost('spoke-record-1a2b3c4d') }, { apparmor: localhost(`spoke-${sha}x`) }, { apparmor: localhost(`localhost/localhost/spoke-${sha}`) }]) {
      const req = create(ctr);
      const r = await rewriteCreateContainer(req, deps);
      assert.equal(r.payload, req, JSON.stringify(ctr));
    }
    // The shim's own rewrite to a path under spoke/ is of an OCI profile, not refused.
    const oci = await rewriteCreateContainer(create({ seccomp: { profile_type: 'OCI', oci_ref: REF } }), { ...deps, seccomp: async (p, c) => ({ ...(await fakeResolver(p, c)), path: `${root}/spoke/${sha}.json` }) });
    assert.ok(oci.edited);
  });

  it("refuses another spelling of spoke's directory that the kernel follows to it (a link under the seccomp root, `..` after one), and any path through /proc; and checks the deprecated AppArmor string beside the message", async () => {
    const root = mkdtempSync(join(tmpdir(), 'spoke-reserved-'));
    try {
      mkdirSync(join(root, 'spoke'));
      symlinkSync('.', join(root, 'current')); // an admin's link, which a pod's localhostProfile can name
      const deps = { seccomp: fakeResolver, reservedSeccompDirs: [`${root}/spoke`] };
      const reserved = spokeError({ code: 'PermissionDenied', reason: 'PROFILE_RESERVED' });
      const sha = 'd'.repeat(64);
      writeFileSync(join(root, 'spoke', `${sha}.json`), '{}');
      const localhost = (ref: string) => ({ profile_type: 'Localhost', localhost_ref: ref });
      const create = (ctr: Msg) => encode('CreateContainerRequest', { config: { metadata: { name: 'c' }, image: { image: 'busybox' }, linux: { security_context: ctr } }, sandbox_config: podConfig() });
      mkdirSync(join(root, 'spoke', 'a'));
      symlinkSync('spoke/a', join(root, 'into-spoke'));
      // `..` after a link is the parent of where it leads (spoke/), not the link's own directory;
      // /proc is refused whatever follows (its magic links lead where no reading of them follows).
      for (const ref of [`${root}/current/spoke/${sha}.json`, `/proc/self/root${root}/spoke/${sha}.json`, `/proc/self/root/..${root}/spoke/${sha}.json`, `${root}/current/spoke/not-there-yet.json`, `${root}/into-spoke/../${sha}.json`, `/dev/fd/0/../../root${root}/team.json`]) {
        await assert.rejects(rewriteCreateContainer(create({ seccomp: localhost(ref) }), deps), reserved, ref);
        await assert.rejects(rewriteRunPodSandbox(encode('RunPodSandboxRequest', { config: podConfig(localhost(ref)) }), deps), reserved, ref);
      }
      // The admin's own files beside it, through the same link: forwarded.
      writeFileSync(join(root, 'team.json'), '{}');
      const req = create({ seccomp: localhost(`${root}/current/team.json`) });
      assert.equal((await rewriteCreateContainer(req, deps)).payload, req);
      // Past PATH_MAX no runtime opens it: refused before any lookup.
      await assert.rejects(rewriteCreateContainer(create({ seccomp: localhost(`${root}/${'x/'.repeat(2048)}a.json`) }), deps), spokeError({ code: 'InvalidArgument', reason: 'LIMIT_EXCEEDED' }));
      // A lookup that fails for a reason the runtime's open would not share (a real path too long
      // for lstat), or a link in procfs mounted anywhere: refused, never judged as written.
      const tooLong = (lstat: (...a: unknown[]) => unknown) => (p: unknown, ...rest: unknown[]) => {
        if (p === join(root, 'current')) throw Object.assign(new Error('ENAMETOOLONG'), { code: 'ENAMETOOLONG' });
        return lstat(p, ...rest);
      };
      await withFs('lstatSync', tooLong, () => assert.rejects(rewriteCreateContainer(create({ seccomp: localhost(`${root}/current/x.json`) }), deps), reserved));
      const procfsAtRoot = (statfs: (...a: unknown[]) => unknown) => (p: unknown, ...rest: unknown[]) => (p === root ? { ...(statfs(p, ...rest) as object), type: 0x9fa0 } : statfs(p, ...rest));
      await withFs('statfsSync', procfsAtRoot, () => assert.rejects(rewriteCreateContainer(create({ seccomp: localhost(`${root}/current/team.json`) }), deps), reserved));
      // A message the runtime may not read (one built before it) beside the string it reads.
      await assert.rejects(rewriteCreateContainer(create({ apparmor: { profile_type: 'RuntimeDefault' }, apparmor_profile: `localhost/spoke-${sha}` }), deps), reserved);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });

  it('refuses an OCI seccomp profile beside an annotation with which the runtime replaces or rewrites the filter (crun, CRI-O), pod or container level; forwards such annotations when the profile is not spoke\'s', async () => {
    const filterKeys = ['run.oci.seccomp_bpf_data', 'run.oci.seccomp.receiver', 'run.oci.seccomp.plugins', 'io.kubernetes.cri-o.seccompNotifierAction', 'seccomp-notifier-action.crio.io'];
    const refused = spokeError({ code: 'InvalidArgument', reason: 'FILTER_ANNOTATION' });
    const oci = { profile_type: 'OCI', oci_ref: REF };
    const withPodAnnotation = (key: string, seccomp?: Msg) => ({ ...podConfig(seccomp), annotations: { 'x/y': 'z', [key]: 'AAAA' } });
    for (const key of filterKeys) {
      await assert.rejects(rewriteRunPodSandbox(encode('RunPodSandboxRequest', { config: withPodAnnotation(key, oci) }), fakeResolver), refused, key);
      const ctr = (annotations: Record<string, string>, sandbox: Msg) =>
        encode('CreateContainerRequest', { config: { metadata: { name: 'c' }, image: { image: 'busybox' }, annotations, linux: { security_context: { seccomp: oci } } }, sandbox_config: sandbox });
      await assert.rejects(rewriteCreateContainer(ctr({}, withPodAnnotation(key)), fakeResolver), refused, key);
      await assert.rejects(rewriteCreateContainer(ctr({ [key]: 'AAAA' }, podConfig()), fakeResolver), refused, key);
      // Not spoke's profile: the runtime's business, forwarded as it came.
      const plain = encode('CreateContainerRequest', { config: { metadata: { name: 'c' }, image: { image: 'busybox' }, annotations: { [key]: 'AAAA' }, linux: { security_context: { seccomp: { profile_type: 'RuntimeDefault' } } } }, sandbox_config: withPodAnnotation(key) });
      assert.equal((await rewriteCreateContainer(plain, fakeResolver)).edited, false, key);
    }
    // Other run.oci annotations are not the filter's.
    const ok = encode('CreateContainerRequest', { config: { metadata: { name: 'c' }, image: { image: 'busybox' }, annotations: { 'run.oci.keep_original_groups': '1' }, linux: { security_context: { seccomp: oci } } }, sandbox_config: podConfig() });
    assert.ok((await rewriteCreateContainer(ok, fakeResolver)).edited);
  });

  it('refuses a profile spoke would apply to a pod of a runtime handler the node does not list as enforcing it (gVisor, Kata, containerd\'s untrusted workloads); other pods of that handler are forwarded, unread', async () => {
    const handlers: Record<string, string> = { 'sb-runc': 'runc', 'sb-default': '', 'sb-gvisor': 'runsc', 'sb-untrusted': '', 'sb-notifier': '' };
    // What the runtime recorded when the sandbox was made: the kubelet's sandbox_config of a later
    // create carries the pod's annotations as they are now, which may have been edited since.
    const recorded: Record<string, Record<string, string>> = { 'sb-untrusted': { 'io.kubernetes.cri.untrusted-workload': 'true' }, 'sb-notifier': { 'io.kubernetes.cri-o.seccompNotifierAction': 'stop' } };
    const asked: string[] = [];
    const deps = {
      seccomp: fakeResolver,
      runtimeHandler: {
        allowed: new Set(['', 'runc']),
        ofSandbox: async (id: string) => {
          asked.push(id);
          return { handler: handlers[id]!, annotations: new Map(Object.entries(recorded[id] ?? {})) };
        },
      },
    };
    const refused = spokeError({ code: 'FailedPrecondition', reason: 'RUNTIME_HANDLER' });
    const oci = { profile_type: 'OCI', oci_ref: REF };
    const run = (handler: string, seccomp?: Msg, annotations: Record<string, string> = {}) =>
      encode('RunPodSandboxRequest', { config: { ...podConfig(seccomp), annotations: { 'x/y': 'z', ...annotations } }, runtime_handler: handler });
    await assert.rejects(rewriteRunPodSandbox(run('runsc', oci), deps), refused);
    await assert.rejects(rewriteRunPodSandbox(run('', oci, { 'io.kubernetes.cri.untrusted-workload': 'true' }), deps), refused);
    for (const handler of ['', 'runc']) assert.ok((await rewriteRunPodSandbox(run(handler, oci), deps)).edited, handler);
    assert.equal((await rewriteRunPodSandbox(run('runsc', { profile_type: 'RuntimeDefault' }), deps)).edited, false);

    const create = (sandbox: string, ctr: Msg, annotations: Record<string, string> = {}) =>
      encode('CreateContainerRequest', { pod_sandbox_id: sandbox, config: { metadata: { name: 'c' }, image: { image: 'busybox' }, linux: { security_context: ctr } }, sandbox_config: { ...podConfig(), annotations } });
    await assert.rejects(rewriteCreateContainer(create('sb-gvisor', { seccomp: oci }), deps), refused);
    await assert.rejects(rewriteCreateContainer(create('sb-gvisor', { apparmor: oci }), deps), refused, 'AppArmor too');
    await assert.rejects(rewriteCreateContainer(create('sb-runc', { seccomp: oci }, { 'io.kubernetes.cri.untrusted-workload': 'true' }), deps), refused);
    await assert.rejects(rewriteCreateContainer(create('sb-untrusted', { seccomp: oci }), deps), refused, 'the annotation recorded with the sandbox, gone from the pod since');
    await assert.rejects(rewriteCreateContainer(create('sb-notifier', { seccomp: oci }), deps), spokeError({ code: 'InvalidArgument', reason: 'FILTER_ANNOTATION' }), 'recorded with the sandbox');
    // crun's own handler (krun: a microVM, whose VMM the filter confines, not the workload), at the pod's level or the container's.
    await assert.rejects(rewriteCreateContainer(create('sb-runc', { seccomp: oci }, { 'run.oci.handler': 'krun' }), deps), refused);
    const ctrAnnotated = encode('CreateContainerRequest', { pod_sandbox_id: 'sb-runc', config: { metadata: { name: 'c' }, image: { image: 'busybox' }, annotations: { 'run.oci.handler': 'krun' }, linux: { security_context: { apparmor: oci } } }, sandbox_config: podConfig() });
    await assert.rejects(rewriteCreateContainer(ctrAnnotated, deps), refused);
    // A node that lists `untrusted` (its untrusted runtime is runc) still refuses crun's handler beside it.
    const untrustedListed = { ...deps, runtimeHandler: { ...deps.runtimeHandler, allowed: new Set(['', 'runc', 'untrusted']) } };
    assert.ok((await rewriteCreateContainer(create('sb-untrusted', { seccomp: oci }), untrustedListed)).edited);
    await assert.rejects(rewriteCreateContainer(create('sb-untrusted', { seccomp: oci }, { 'run.oci.handler': 'krun' }), untrustedListed), refused);
    const untrustedCtr = encode('CreateContainerRequest', {
      pod_sandbox_id: 'sb-runc',
      config: { metadata: { name: 'c' }, image: { image: 'busybox' }, annotations: { 'run.oci.handler': 'krun' }, linux: { security_context: { seccomp: oci } } },
      sandbox_config: { ...podConfig(), annotations: { 'io.kubernetes.cri.untrusted-workload': 'true' } },
    });
    await assert.rejects(rewriteCreateContainer(untrustedCtr, untrustedListed), refused);
    for (const sandbox of ['sb-runc', 'sb-default']) assert.ok((await rewriteCreateContainer(create(sandbox, { seccomp: oci }), deps)).edited, sandbox);
    asked.length = 0;
    assert.equal((await rewriteCreateContainer(create('sb-gvisor', { seccomp: { profile_type: 'RuntimeDefault' } }), deps)).edited, false);
    assert.deepEqual(asked, [], 'a create without a profile of spoke\'s asks the runtime nothing');
  });

  it('refuses a profile type beyond int32, which Go decoders read by its low 32 bits (2^32 + 3 is OCI to the runtime)', async () => {
    const wide = (type: bigint, base?: bigint) => Buffer.concat([varintField(1, type), stringField(3, REF), ...(base === undefined ? [] : [Buffer.concat([encodeVarint(4 << 3 | 2), encodeVarint(2), varintField(1, base)])])]);
    const sandbox = encode('RunPodSandboxRequest', { config: podConfig({ profile_type: 'RuntimeDefault' }) });
    const create = encode('CreateContainerRequest', {
      config: { metadata: { name: 'c' }, image: { image: 'busybox' }, linux: { security_context: { seccomp: { profile_type: 'RuntimeDefault' } } } },
      sandbox_config: podConfig(),
    });
    for (const profile of [wide(2n ** 32n + 3n), wide(2n ** 32n + 1n), wide(2n ** 64n - 1n), wide(3n, 2n ** 32n + 1n)]) {
      await assert.rejects(rewriteRunPodSandbox(replaceMessageAt(sandbox, POD_SECCOMP_IN_RUN, profile), fakeResolver), { reason: 'WIRE_INVALID' });
      await assert.rejects(rewriteCreateContainer(replaceMessageAt(create, CTR_SECCOMP_IN_CREATE, profile), fakeResolver), { reason: 'WIRE_INVALID' });
    }
  });

  it('property: the edit changes the seccomp profile and nothing else', async () => {
    const str = fc.string({ maxLength: 20 });
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          name: str,
          args: fc.array(str, { maxLength: 4 }),
          labels: fc.dictionary(fc.string({ minLength: 1, maxLength: 8 }), str, { maxKeys: 3 }),
          logPath: str,
          caps: fc.array(fc.constantFrom('CAP_NET_ADMIN', 'CAP_SYS_ADMIN', 'CAP_CHOWN'), { maxLength: 3 }),
          runAsUser: fc.integer({ min: 0, max: 2 ** 31 }),
          unknownTop: fc.boolean(),
          unknownInner: fc.boolean(),
          base: fc.constantFrom(undefined, 'RuntimeDefault', 'Localhost'),
        }),
        async (g) => {
          const sec: Msg = {
            capabilities: { add_capabilities: g.caps },
            run_as_user: { value: g.runAsUser },
            seccomp: { profile_type: 'OCI', oci_ref: REF, ...(g.base ? { base_profile: { type: g.base, localhost_ref: g.base === 'Localhost' ? '/b.json' : '' } } : {}) },
          };
          let scBytes = encode('LinuxContainerSecurityContext', sec);
          if (g.unknownInner) scBytes = Buffer.concat([scBytes, UNKNOWN]);
          const linux = Buffer.concat([Buffer.from([0x12]), encodeVarint(scBytes.length), scBytes]);
          const cfg = Buffer.concat([
            encode('ContainerConfig', { metadata: { name: g.name }, args: g.args, labels: g.labels, log_path: g.logPath }),
            Buffer.from([0x7a]),
            encodeVarint(linux.length),
            linux,
          ]);
          let req = Buffer.concat([encode('CreateContainerRequest', { pod_sandbox_id: 'sb' }), Buffer.from([0x12]), encodeVarint(cfg.length), cfg]);
          if (g.unknownTop) req = Buffer.concat([req, UNKNOWN]);
          const r = await rewriteCreateContainer(req, fakeResolver);
          assert.ok(r.edited);
          const before = decode('CreateContainerRequest', req);
          const after = decode('CreateContainerRequest', r.payload);
          const sc = (x: Msg) => ((x.config as Msg).linux as Msg).security_context as Msg;
          assert.equal((sc(after).seccomp as Msg).profile_type, 'Localhost');
          assert.equal(sc(after).seccomp_profile_path, `localhost/${String((sc(after).seccomp as Msg).localhost_ref)}`);
          for (const d of [before, after]) {
            delete sc(d).seccomp;
            delete sc(d).seccomp_profile_path;
          }
          assert.deepEqual(after, before);
          // unknown bytes survive at their level
          const count = (b: Buffer) => {
            let n = 0;
            for (let i = b.indexOf(UNKNOWN); i >= 0; i = b.indexOf(UNKNOWN, i + 1)) n++;
            return n;
          };
          assert.equal(count(r.payload), count(req));
        },
      ),
      { numRuns: 200 },
    );
  });
});
