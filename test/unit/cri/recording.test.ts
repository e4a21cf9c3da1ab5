// Recording at the wire level: pods annotated recording.spoke.dev/name, with the controller's
// proof, run their selected containers under the logging profile, only through
// `spoke shim --recording`, and only where the container's seccomp profile is unset or
// RuntimeDefault, or (when the proof lists the container) its own OCI profile or annotation, the
// binding that applies once the proof expires. A marking without a valid proof never yields the
// logging profile.

import assert from 'node:assert/strict';
import { appendFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { throwsWith } from '../../helpers/assert.js';
import { encode, type Msg } from '../../helpers/cri-client.js';
import { rewriteCreateContainer, type RewriteDeps, type Resolver } from '../../../src/cri/rewrite.js';
import { installLoggingProfile, readRecording, readRecordingKey, RECORDING_ANNOTATION, RECORDING_CONTAINERS_ANNOTATION } from '../../../src/cri/recording.js';
import { CTR_SECCOMP_IN_CREATE, decodeSecurityProfile, POD_SECCOMP_IN_CREATE, PROFILE_LOCALHOST, PROFILE_RUNTIME_DEFAULT } from '../../../src/cri/messages.js';
import { getMergedAt } from '../../../src/cri/wire.js';
import { ANNOTATION_PREFIX } from '../../../src/core/constants.js';
import type { Digest } from '../../../src/core/digest.js';
import { SpokeError } from '../../../src/core/errors.js';
import { MAX_RECORDING_KEY_BYTES, RECORDING_PROOF_ANNOTATION, signRecordingProof } from '../../../src/core/recording-proof.js';
import { decodeSeccomp } from '../../../src/profiles/seccomp/index.js';
import { LOGGING_PROFILE, LOGGING_PROFILE_NAME } from '../../../src/profiles/seccomp/recorded.js';
import { readFileUpTo } from '../../../src/registry/credentials.js';

const LOG_PATH = '/var/lib/kubelet/seccomp/spoke/spoke-record-log.json';
const D1 = `sha256:${'a'.repeat(64)}`;
const REF = `registry.example.com/profiles/p@${D1}`;
const SC = ANNOTATION_PREFIX.seccomp;

const KEY = Buffer.alloc(32, 1);
const NOW_MS = 1_800_000_000_000;

function harness(o: { on?: boolean; annotations?: boolean; key?: Buffer | null; nowMs?: number; loggingProfile?: () => Promise<string> } = {}) {
  const logs: { level: string; msg: string; fields: Record<string, unknown> }[] = [];
  const resolved: string[] = [];
  const seccomp: Resolver = async (p) => {
    resolved.push(p.ociRef);
    return { path: `/var/lib/kubelet/seccomp/spoke/${p.ociRef.slice(-64)}.json`, digest: p.ociRef.slice(p.ociRef.indexOf('@') + 1) as Digest, reference: p.ociRef, effectiveSha: '1'.repeat(64), constrained: 0 };
  };
  const deps: RewriteDeps = {
    seccomp,
    recording: {
      loggingProfile: o.on === false ? undefined : (o.loggingProfile ?? (async () => LOG_PATH)),
      key: o.key === null ? undefined : (o.key ?? KEY),
      now: () => o.nowMs ?? NOW_MS,
      log: (level, msg, fields) => logs.push({ level, msg, fields }),
    },
    ...(o.annotations ? { annotations: { pull: async () => undefined, log: () => undefined } } : {}),
  };
  return { deps, logs, resolved };
}

function createReq(o: { name?: string; annotations?: Record<string, string>; seccomp?: Msg; podSeccomp?: Msg; privileged?: boolean; seccompPath?: string } = {}): Buffer {
  const sec: Msg = { ...(o.privileged ? { privileged: true } : {}), ...(o.seccomp ? { seccomp: o.seccomp } : {}), ...(o.seccompPath ? { seccomp_profile_path: o.seccompPath } : {}) };
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

/** The annotations the controller's webhook writes for pod team-a/web (createReq's sandbox). */
function marked(o: { containers?: string[]; key?: Buffer; expiresAt?: number; namespace?: string; pod?: string; recording?: string } = {}): Record<string, string> {
  const proof = signRecordingProof(o.key ?? KEY, { namespace: o.namespace ?? 'team-a', pod: { name: o.pod ?? 'web' }, recording: o.recording ?? 'rec-1', containers: o.containers }, o.expiresAt ?? NOW_MS / 1000 + 3600);
  return { [RECORDING_ANNOTATION]: 'rec-1', ...(o.containers ? { [RECORDING_CONTAINERS_ANNOTATION]: o.containers.join(',') } : {}), [RECORDING_PROOF_ANNOTATION]: proof };
}
const REC = marked();
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
    assert.deepEqual(readRecording(cfg({ [RECORDING_ANNOTATION]: 'rec-1' })), { name: 'rec-1', containers: undefined, namespace: 'n', pod: 'p', proof: undefined });
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

  it('the logging profile is written only for a recorded container: a store that cannot take it fails those creates, not the others', async () => {
    let asked = 0;
    const h = harness({
      loggingProfile: async () => {
        asked++;
        throw Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' });
      },
    });
    const plain = createReq({ seccomp: { profile_type: 'RuntimeDefault' } });
    assert.equal((await rewriteCreateContainer(plain, h.deps)).edited, false);
    const unproven = createReq({ annotations: { [RECORDING_ANNOTATION]: 'rec-1' } });
    assert.equal((await rewriteCreateContainer(unproven, h.deps)).edited, false);
    assert.equal(asked, 0);
    await assert.rejects(rewriteCreateContainer(createReq({ annotations: REC }), h.deps), { code: 'ENOSPC' });
    assert.equal(asked, 1);
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
      // Only in the deprecated string, which the runtime reads when the message is absent.
      { o: { seccompPath: 'localhost/x.json' }, why: /Localhost seccomp profile set on the container/ },
      { o: { seccompPath: 'unconfined' }, why: /Unconfined/ },
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

  it("with a proof that lists the container, its own OCI profile or annotation (its binding) gives way to the logging profile, and applies once the proof has expired", async () => {
    const listed = marked({ containers: ['app'], expiresAt: NOW_MS / 1000 + 10 });
    const own = { seccomp: { profile_type: 'OCI', oci_ref: REF } };
    const byAnnotation = { seccomp: { profile_type: 'RuntimeDefault' }, annotations: { ...listed, [`${SC}app`]: REF } };
    for (const [o, annotations] of [[{ ...own, annotations: listed }, false], [byAnnotation, true]] as const) {
      const h = harness({ annotations, nowMs: NOW_MS + 9_000 });
      const r = await rewriteCreateContainer(createReq(o), h.deps);
      assert.equal(ctrSeccomp(r.payload)?.localhostRef, LOG_PATH, JSON.stringify(o));
      assert.ok(h.logs.some((l) => /runs under the logging profile/.test(l.msg)));
      // Expired: the binding's profile, resolved as always.
      const later = harness({ annotations, nowMs: NOW_MS + 10_000 });
      const after = await rewriteCreateContainer(createReq(o), later.deps);
      assert.deepEqual(later.resolved, [REF]);
      assert.match(ctrSeccomp(after.payload)!.localhostRef, /spoke\/a{64}\.json$/);
      assert.ok(later.logs.some((l) => l.fields.reason === 'RECORDING_UNPROVEN' && l.fields.failure === 'expired'));
    }
  });

  it('an OCI profile inherited from the pod, or the pod-wide annotation, still wins: the webhook binds containers, never the pod', async () => {
    const listed = marked({ containers: ['app'] });
    const cases = [
      { o: { podSeccomp: { profile_type: 'OCI', oci_ref: REF }, annotations: listed }, why: /OCI seccomp profile inherited from the pod/ },
      { o: { annotations: { ...listed, [`${SC}pod`]: REF } }, why: /profile annotation seccomp\.profiles\.spoke\.dev\/pod applies/ },
    ];
    for (const c of cases) {
      const h = harness({ annotations: true });
      const r = await rewriteCreateContainer(createReq(c.o), h.deps);
      assert.deepEqual(h.resolved, [REF]);
      assert.notEqual(ctrSeccomp(r.payload)?.localhostRef, LOG_PATH);
      assert.ok(h.logs.some((l) => /recording skipped/.test(l.msg) && c.why.test(l.msg)), JSON.stringify(h.logs));
    }
  });

  it('a spoke seccomp profile annotation for the container wins over a proof without a container list (annotation mode)', async () => {
    const h = harness({ annotations: true });
    const r = await rewriteCreateContainer(createReq({ annotations: { ...REC, [`${SC}app`]: REF } }), h.deps);
    assert.deepEqual(h.resolved, [REF]);
    assert.match(ctrSeccomp(r.payload)!.localhostRef, /spoke\/a{64}\.json$/);
    assert.ok(h.logs.some((l) => /profile annotation seccomp\.profiles\.spoke\.dev\/app applies/.test(l.msg)));
  });

  it('recording.spoke.dev/containers selects containers; a malformed list records nothing', async () => {
    const ann = marked({ containers: ['app', 'sidecar'] });
    assert.equal(ctrSeccomp((await rewriteCreateContainer(createReq({ name: 'sidecar', annotations: ann }), harness().deps)).payload)?.localhostRef, LOG_PATH);
    const other = createReq({ name: 'other', annotations: ann });
    assert.equal((await rewriteCreateContainer(other, harness().deps)).payload, other);
    const h = harness();
    const bad = createReq({ annotations: { ...REC, [RECORDING_CONTAINERS_ANNOTATION]: 'app,../x' } });
    assert.equal((await rewriteCreateContainer(bad, h.deps)).payload, bad);
    assert.ok(h.logs.some((l) => l.level === 'warn' && /malformed/.test(l.msg)));
  });
});

describe('the controller proof', () => {
  const ignored = async (annotations: Record<string, string>, o: Parameters<typeof harness>[0] = {}) => {
    const h = harness(o);
    const req = createReq({ seccomp: { profile_type: 'RuntimeDefault' }, annotations });
    const r = await rewriteCreateContainer(req, h.deps);
    assert.equal(r.payload, req, 'forwarded as sent: RuntimeDefault stays');
    const line = h.logs.find((l) => /not proven by the controller/.test(l.msg));
    assert.equal(line?.level, 'warn');
    assert.equal(line?.fields.reason, 'RECORDING_UNPROVEN');
    return line!.fields.failure;
  };

  it('a made-up marking (name only, or a junk proof) never yields the logging profile', async () => {
    assert.equal(await ignored({ [RECORDING_ANNOTATION]: 'anything' }), 'missing');
    assert.equal(await ignored({ [RECORDING_ANNOTATION]: 'rec-1', [RECORDING_PROOF_ANNOTATION]: 'trust-me' }), 'malformed');
  });

  it('a proof under another key, for another pod, namespace, recording or container list is a mismatch', async () => {
    assert.equal(await ignored(marked({ key: Buffer.alloc(32, 2) })), 'mismatch');
    assert.equal(await ignored(marked({ pod: 'other' })), 'mismatch');
    assert.equal(await ignored(marked({ namespace: 'team-b' })), 'mismatch');
    assert.equal(await ignored({ ...marked({ recording: 'rec-2' }) }), 'mismatch');
    // a proof for [sidecar] with the list widened to every container
    const narrow = marked({ containers: ['sidecar'] });
    assert.equal(await ignored({ [RECORDING_ANNOTATION]: 'rec-1', [RECORDING_PROOF_ANNOTATION]: narrow[RECORDING_PROOF_ANNOTATION]! }), 'mismatch');
  });

  it('an expired proof (injected clock) is ignored; the same proof before expiry is honoured', async () => {
    const ann = marked({ expiresAt: NOW_MS / 1000 + 10 });
    assert.equal(await ignored(ann, { nowMs: NOW_MS + 10_000 }), 'expired');
    const r = await rewriteCreateContainer(createReq({ annotations: ann }), harness({ nowMs: NOW_MS + 9_000 }).deps);
    assert.equal(ctrSeccomp(r.payload)?.localhostRef, LOG_PATH);
  });

  it('no key: no marking is honoured, even a valid one', async () => {
    assert.equal(await ignored(REC, { key: null }), 'no-key');
  });
});

describe('the logging profile file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'spoke-rec-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('spoke record\'s allow-all one is written in the directory given (SCMP_ACT_LOG default, 0644), idempotently, and an earlier version\'s copy under the kubelet\'s seccomp root is removed', async () => {
    const kubelet = join(dir, 'kubelet-seccomp');
    mkdirSync(join(kubelet, 'spoke'), { recursive: true });
    writeFileSync(join(kubelet, 'spoke', LOGGING_PROFILE_NAME), '{"defaultAction":"SCMP_ACT_LOG"}');
    const p = await installLoggingProfile(join(dir, 'recording'), kubelet);
    assert.equal(p, join(dir, 'recording', LOGGING_PROFILE_NAME));
    assert.equal(existsSync(join(kubelet, 'spoke', LOGGING_PROFILE_NAME)), false);
    assert.equal((statSync(p).mode & 0o777).toString(8), '644');
    const prof = decodeSeccomp(readFileSync(p));
    assert.equal(prof.defaultAction, 'SCMP_ACT_LOG');
    assert.deepEqual(prof, decodeSeccomp(Buffer.from(JSON.stringify(LOGGING_PROFILE))));
    const bytes = readFileSync(p);
    writeFileSync(p, '{}');
    assert.equal(await installLoggingProfile(join(dir, 'recording'), kubelet), p);
    assert.deepEqual(readFileSync(p), bytes, 'a changed file is rewritten');
  });
});

describe('readRecordingKey', () => {
  const dir = mkdtempSync(join(tmpdir(), 'spoke-key-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('reads the key file once, at most one byte past the longest key: a file that grows meanwhile is refused (KEY_INVALID), not read whole', () => {
    const file = join(dir, 'growing');
    writeFileSync(file, KEY);
    const asked: (number | undefined)[] = [];
    // The file grows between any look at its size and the read, as one being written does.
    const read = (path: string, maxBytes?: number): Buffer => {
      asked.push(maxBytes);
      appendFileSync(path, Buffer.alloc(1024 * 1024));
      return readFileUpTo(path, maxBytes ?? Number.MAX_SAFE_INTEGER);
    };
    throwsWith(() => readRecordingKey(file, read), { code: 'InvalidArgument', reason: 'KEY_INVALID' });
    assert.deepEqual(asked, [MAX_RECORDING_KEY_BYTES + 1]);
  });

  it('a key of 32 to 4096 bytes is its bytes; a shorter or longer one is KEY_INVALID; a missing file FILE_UNREADABLE; a refusal of the reader its own', () => {
    const write = (name: string, bytes: Buffer) => {
      writeFileSync(join(dir, name), bytes);
      return join(dir, name);
    };
    assert.deepEqual(readRecordingKey(write('key', KEY)), KEY);
    assert.equal(readRecordingKey(write('longest', Buffer.alloc(MAX_RECORDING_KEY_BYTES, 2))).length, MAX_RECORDING_KEY_BYTES);
    for (const n of [31, MAX_RECORDING_KEY_BYTES + 1]) throwsWith(() => readRecordingKey(write(`key-${n}`, Buffer.alloc(n, 3))), { code: 'InvalidArgument', reason: 'KEY_INVALID' });
    throwsWith(() => readRecordingKey(join(dir, 'missing')), { code: 'InvalidArgument', reason: 'FILE_UNREADABLE' });
    const unsafe = new SpokeError('FailedPrecondition', 'writable by every user', {}, { reason: 'FILE_UNSAFE' });
    throwsWith(() => readRecordingKey(join(dir, 'key'), () => { throw unsafe; }), { code: 'FailedPrecondition', reason: 'FILE_UNSAFE' });
  });
});
