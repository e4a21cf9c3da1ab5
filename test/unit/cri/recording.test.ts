// Recording at the wire level (issue 8): pods annotated recording.spoke.dev/name run their
// selected containers under the logging profile, only through `spoke shim --recording`, and only
// where the container's seccomp profile is unset or RuntimeDefault.

import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { encode, type Msg } from '../../helpers/cri-client.js';
import { rewriteCreateContainer, type RewriteDeps, type Resolver } from '../../../src/cri/rewrite.js';
import { installLoggingProfile, readRecording, RECORDING_ANNOTATION, RECORDING_CONTAINERS_ANNOTATION } from '../../../src/cri/recording.js';
import { CTR_SECCOMP_IN_CREATE, decodeSecurityProfile, POD_SECCOMP_IN_CREATE, PROFILE_LOCALHOST, PROFILE_RUNTIME_DEFAULT } from '../../../src/cri/messages.js';
import { getMergedAt } from '../../../src/cri/wire.js';
import { ANNOTATION_PREFIX } from '../../../src/cri/annotations.js';
import type { Digest } from '../../../src/core/digest.js';
import { decodeSeccomp } from '../../../src/profiles/seccomp/index.js';
import { LOGGING_PROFILE, LOGGING_PROFILE_NAME } from '../../../src/profiles/seccomp/recorded.js';
import { writeLoggingProfile } from '../../../src/recorder/profile.js';

const LOG_PATH = '/var/lib/kubelet/seccomp/spoke/spoke-record-log.json';
const D1 = `sha256:${'a'.repeat(64)}`;
const REF = `registry.example.com/profiles/p@${D1}`;
const SC = ANNOTATION_PREFIX.seccomp;

function harness(o: { on?: boolean; annotations?: boolean } = {}) {
  const logs: { level: string; msg: string; fields: Record<string, unknown> }[] = [];
  const resolved: string[] = [];
  const seccomp: Resolver = async (p) => {
    resolved.push(p.ociRef);
    return { path: `/var/lib/kubelet/seccomp/spoke/${p.ociRef.slice(-64)}.json`, digest: p.ociRef.slice(p.ociRef.indexOf('@') + 1) as Digest, reference: p.ociRef, effectiveSha: '1'.repeat(64), constrained: 0 };
  };
  const deps: RewriteDeps = {
    seccomp,
    recording: { loggingProfile: o.on === false ? undefined : LOG_PATH, log: (level, msg, fields) => logs.push({ level, msg, fields }) },
    ...(o.annotations ? { annotations: { pull: async () => undefined, log: () => undefined } } : {}),
  };
  return { deps, logs, resolved };
}

function createReq(o: { name?: string; annotations?: Record<string, string>; seccomp?: Msg; podSeccomp?: Msg; privileged?: boolean } = {}): Buffer {
  const sec: Msg = { ...(o.privileged ? { privileged: true } : {}), ...(o.seccomp ? { seccomp: o.seccomp } : {}) };
  return encode('CreateContainerRequest', {
    pod_sandbox_id: 'sb1',
    config: { metadata: { name: o.name ?? 'app' }, image: { image: 'busybox' }, args: ['sleep', '1'], ...(Object.keys(sec).length ? { linux: { security_context: sec } } : {}) },
    sandbox_config: {
      metadata: { name: 'web', uid: 'u1', namespace: 'team-a', attempt: 0 },
      annotations: { 'kubernetes.io/config.source': 'api', ...(o.annotations ?? {}) },
      linux: { security_context: { ...(o.podSeccomp ? { seccomp: o.podSeccomp } : {}) } },
    },
  });
}

const REC = { [RECORDING_ANNOTATION]: 'rec-1' };
const ctrSeccomp = (buf: Buffer) => {
  const m = getMergedAt(buf, CTR_SECCOMP_IN_CREATE);
  return m === undefined ? undefined : decodeSecurityProfile(m);
};

describe('readRecording', () => {
  const cfg = (ann: Record<string, string>) => encode('PodSandboxConfig', { metadata: { name: 'p', namespace: 'n', uid: 'u' }, annotations: ann });
  it('absent or empty name: not marked; containers list parsed, trimmed; malformed lists flagged', () => {
    assert.equal(readRecording(cfg({})), undefined);
    assert.equal(readRecording(cfg({ [RECORDING_ANNOTATION]: '' })), undefined);
    assert.equal(readRecording(undefined), undefined);
    assert.deepEqual(readRecording(cfg(REC)), { name: 'rec-1', containers: undefined });
    assert.deepEqual([...readRecording(cfg({ ...REC, [RECORDING_CONTAINERS_ANNOTATION]: ' a, b ,,' }))!.containers!], ['a', 'b']);
    assert.match(readRecording(cfg({ ...REC, [RECORDING_CONTAINERS_ANNOTATION]: 'a,B_x' }))!.problem!, /not a container name/);
    assert.match(readRecording(cfg({ ...REC, [RECORDING_CONTAINERS_ANNOTATION]: ' , ' }))!.problem!, /1 to 64/);
    assert.match(readRecording(cfg({ [RECORDING_ANNOTATION]: 'x'.repeat(300) }))!.problem!, /longer than 253/);
  });
});

describe('rewriteCreateContainer with recording', () => {
  it('unset and RuntimeDefault (own or inherited) become Localhost = the logging profile; nothing else changes', async () => {
    for (const o of [{}, { seccomp: { profile_type: 'RuntimeDefault' } }, { podSeccomp: { profile_type: 'RuntimeDefault' } }] as const) {
      const h = harness();
      const req = createReq({ ...o, annotations: REC });
      const r = await rewriteCreateContainer(req, h.deps);
      assert.equal(r.edited, true, JSON.stringify(o));
      assert.deepEqual(ctrSeccomp(r.payload), { profileType: PROFILE_LOCALHOST, localhostRef: LOG_PATH, ociRef: '', base: undefined });
      assert.equal(r.holds, undefined, 'the logging profile is not a stored artifact');
      // the pod-level profile in sandbox_config is left as sent
      const pod = getMergedAt(r.payload, POD_SECCOMP_IN_CREATE);
      assert.deepEqual(pod === undefined ? undefined : decodeSecurityProfile(pod), o.podSeccomp ? { profileType: PROFILE_RUNTIME_DEFAULT, localhostRef: '', ociRef: '', base: undefined } : undefined);
      assert.ok(h.logs.some((l) => /runs under the logging profile/.test(l.msg) && l.fields.recording === 'rec-1'));
    }
  });

  it('without --recording the annotation is ignored (logged) and the request forwarded as is', async () => {
    const h = harness({ on: false });
    const req = createReq({ annotations: REC });
    const r = await rewriteCreateContainer(req, h.deps);
    assert.equal(r.edited, false);
    assert.equal(r.payload, req);
    assert.ok(h.logs.some((l) => /ignored: the shim runs without --recording/.test(l.msg)));
  });

  it('no recording deps: the annotation is not even read', async () => {
    const req = createReq({ annotations: REC });
    const r = await rewriteCreateContainer(req, { seccomp: harness().deps.seccomp });
    assert.equal(r.payload, req);
  });

  it('explicit profiles win: Localhost, Unconfined, OCI (own or pod-level), privileged — kept and logged', async () => {
    const cases: { o: Parameters<typeof createReq>[0]; why: RegExp }[] = [
      { o: { seccomp: { profile_type: 'Localhost', localhost_ref: '/x.json' } }, why: /Localhost seccomp profile set on the container/ },
      { o: { seccomp: { profile_type: 'Unconfined' } }, why: /Unconfined/ },
      { o: { podSeccomp: { profile_type: 'Localhost', localhost_ref: '/x.json' } }, why: /inherited from the pod/ },
      { o: { privileged: true }, why: /privileged/ },
    ];
    for (const c of cases) {
      const h = harness();
      const req = createReq({ ...c.o, annotations: REC });
      const r = await rewriteCreateContainer(req, h.deps);
      assert.equal(r.edited, false, JSON.stringify(c.o));
      assert.ok(h.logs.some((l) => /recording skipped/.test(l.msg) && c.why.test(l.msg)), JSON.stringify(h.logs));
    }
    // OCI: resolved as always, never replaced by the logging profile
    for (const o of [{ seccomp: { profile_type: 'OCI', oci_ref: REF } }, { podSeccomp: { profile_type: 'OCI', oci_ref: REF } }]) {
      const h = harness();
      const r = await rewriteCreateContainer(createReq({ ...o, annotations: REC }), h.deps);
      assert.deepEqual(h.resolved, [REF]);
      assert.notEqual(ctrSeccomp(r.payload)?.localhostRef, LOG_PATH);
      assert.match(ctrSeccomp(r.payload)!.localhostRef, /spoke\/a{64}\.json$/);
      assert.ok(h.logs.some((l) => /recording skipped: OCI/.test(l.msg)));
    }
  });

  it('container RuntimeDefault under a pod-level OCI profile: the pod-level one is resolved, the container is recorded', async () => {
    const h = harness();
    const r = await rewriteCreateContainer(createReq({ seccomp: { profile_type: 'RuntimeDefault' }, podSeccomp: { profile_type: 'OCI', oci_ref: REF }, annotations: REC }), h.deps);
    assert.equal(ctrSeccomp(r.payload)?.localhostRef, LOG_PATH);
    assert.equal(decodeSecurityProfile(getMergedAt(r.payload, POD_SECCOMP_IN_CREATE)!).profileType, PROFILE_LOCALHOST, 'OCI never reaches the runtime');
  });

  it('a spoke seccomp profile annotation for the container wins over recording (annotation mode)', async () => {
    const h = harness({ annotations: true });
    const r = await rewriteCreateContainer(createReq({ annotations: { ...REC, [`${SC}app`]: REF } }), h.deps);
    assert.deepEqual(h.resolved, [REF]);
    assert.match(ctrSeccomp(r.payload)!.localhostRef, /spoke\/a{64}\.json$/);
    assert.ok(h.logs.some((l) => /profile annotation seccomp\.profiles\.spoke\.dev\/app applies/.test(l.msg)));
  });

  it('recording.spoke.dev/containers selects containers; a malformed list records nothing', async () => {
    const ann = { ...REC, [RECORDING_CONTAINERS_ANNOTATION]: 'app,sidecar' };
    assert.equal(ctrSeccomp((await rewriteCreateContainer(createReq({ name: 'sidecar', annotations: ann }), harness().deps)).payload)?.localhostRef, LOG_PATH);
    const other = createReq({ name: 'other', annotations: ann });
    assert.equal((await rewriteCreateContainer(other, harness().deps)).payload, other);
    const h = harness();
    const bad = createReq({ annotations: { ...REC, [RECORDING_CONTAINERS_ANNOTATION]: 'app,../x' } });
    assert.equal((await rewriteCreateContainer(bad, h.deps)).payload, bad);
    assert.ok(h.logs.some((l) => l.level === 'warn' && /malformed/.test(l.msg)));
  });
});

describe('the logging profile file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'spoke-rec-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('the shim and the recorder write the same bytes at the same path (SCMP_ACT_LOG default), idempotently', async () => {
    const p = await installLoggingProfile(dir);
    assert.equal(p, join(dir, 'spoke', LOGGING_PROFILE_NAME));
    assert.equal((statSync(p).mode & 0o777).toString(8), '644');
    const prof = decodeSeccomp(readFileSync(p));
    assert.equal(prof.defaultAction, 'SCMP_ACT_LOG');
    assert.deepEqual(prof, decodeSeccomp(Buffer.from(JSON.stringify(LOGGING_PROFILE))));
    const bytes = readFileSync(p);
    assert.equal(writeLoggingProfile(dir), p);
    assert.deepEqual(readFileSync(p), bytes);
    writeFileSync(p, '{}');
    assert.equal(await installLoggingProfile(dir), p);
    assert.deepEqual(readFileSync(p), bytes, 'a changed file is rewritten');
  });
});
