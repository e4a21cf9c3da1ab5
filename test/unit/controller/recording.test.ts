import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { parseAllDocuments } from 'yaml';
import {
  bindingFor,
  bindingImage,
  childName,
  planProfiles,
  repositoryAllowed,
  resultNodeProblem,
  validateRecording,
  type CompiledRecording,
  type ProfileRecording,
  type ProfileRecordingResult,
} from '../../../src/controller/recording.js';
import { validateBinding } from '../../../src/controller/validate.js';
import type { Pod, ProfileBinding } from '../../../src/controller/types.js';
import { RecordingPublisher, Transient, type PublishRegistry } from '../../../src/controller/recording-publish.js';
import { RecordingReconciler } from '../../../src/controller/recording-reconciler.js';
import { signRecordingProof } from '../../../src/core/recording-proof.js';
import { buildRecordedProfile, decodeSeccomp, RUNTIME_STARTUP_SYSCALLS } from '../../../src/profiles/seccomp/index.js';
import { spokeError } from '../../helpers/assert.js';
import { sha256Digest } from '../../../src/core/digest.js';

function recording(spec: Partial<ProfileRecording['spec']> = {}): CompiledRecording {
  const v = validateRecording({
    metadata: { name: 'web', namespace: 'team', uid: 'u-1' },
    spec: { podSelector: { matchLabels: { app: 'web' } }, publish: { repository: 'registry.example.com/profiles/team' }, ...spec },
  });
  assert.ok(v.ok, JSON.stringify(v));
  return v.recording;
}

let n = 0;
function result(container: string, syscalls: string[], extra: Partial<ProfileRecordingResult['spec']> = {}, uid = 'u-1'): ProfileRecordingResult {
  return {
    metadata: { name: `web-${n++}`, namespace: 'team', ownerReferences: [{ apiVersion: 'spoke.dev/v1alpha1', kind: 'ProfileRecording', name: 'web', uid }] },
    spec: { recording: 'web', pod: `web-${n}`, container, runtime: 'runc', node: 'node-1', syscalls, image: 'registry.example.com/app/web:1.2', ...extra },
  };
}

const names = (bytes: Buffer) => decodeSeccomp(bytes).syscalls![0]!.names;

test('mergeStrategy None: one profile per container name, union over pods', () => {
  const rec = recording();
  const plans = planProfiles(rec, [result('app', ['read', 'write']), result('sidecar', ['recvfrom']), result('app', ['mkdir', 'read'])]);
  assert.deepEqual(
    plans.map((p) => [p.key, p.containers, p.tag]),
    [
      ['app', ['app'], 'web-app'],
      ['sidecar', ['sidecar'], 'web-sidecar'],
    ],
  );
  const app = plans[0]!;
  assert.deepEqual(app.syscalls, ['mkdir', 'read', 'write']);
  assert.equal(app.results.length, 2);
  assert.ok(app.bytes.equals(buildRecordedProfile(new Set(['mkdir', 'read', 'write']), 'runc', { ia32: true }).bytes));
  assert.ok(!names(plans[1]!.bytes).includes('mkdir'), 'None keeps containers apart');
});

test('the i386 ABI only when a result saw a 32-bit call, or predates the field', () => {
  const archs = (results: ProfileRecordingResult[]) => decodeSeccomp(planProfiles(recording(), results)[0]!.bytes).architectures;
  assert.deepEqual(archs([result('app', ['read'], { ia32: false }), result('app', ['write'], { ia32: false })]), ['SCMP_ARCH_X86_64']);
  assert.deepEqual(archs([result('app', ['read'], { ia32: false }), result('app', ['write'], { ia32: true })]), ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86']);
  assert.deepEqual(archs([result('app', ['read'], { ia32: false }), result('app', ['write'])]), ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86']);
});

test('mergeStrategy Containers: one profile for all containers', () => {
  const rec = recording({ mergeStrategy: 'Containers' });
  const plans = planProfiles(rec, [result('app', ['read', 'write']), result('sidecar', ['recvfrom'])]);
  assert.equal(plans.length, 1);
  assert.equal(plans[0]!.key, '*');
  assert.equal(plans[0]!.tag, 'web');
  assert.deepEqual(plans[0]!.containers, ['app', 'sidecar']);
  for (const s of ['read', 'write', 'recvfrom', ...RUNTIME_STARTUP_SYSCALLS.runc]) assert.ok(names(plans[0]!.bytes).includes(s), s);
});

test('deterministic: the same results in any order give the same bytes', () => {
  const rec = recording({ mergeStrategy: 'Containers' });
  const rs = [result('app', ['read', 'write']), result('b', ['openat', 'close']), result('app', ['exit_group'])];
  const a = planProfiles(rec, rs);
  const b = planProfiles(rec, [...rs].reverse());
  assert.ok(a[0]!.bytes.equals(b[0]!.bytes));
});

test('mixed runtimes: both start-up sets are allowed', () => {
  const plans = planProfiles(recording(), [result('app', ['read']), result('app', ['read'], { runtime: 'crun' })]);
  const got = names(plans[0]!.bytes);
  for (const s of [...RUNTIME_STARTUP_SYSCALLS.runc, ...RUNTIME_STARTUP_SYSCALLS.crun]) assert.ok(got.includes(s), s);
  assert.deepEqual(plans[0]!.runtimes, ['crun', 'runc']);
});

test('empty → error, never an allow-nothing profile', () => {
  assert.throws(() => planProfiles(recording(), []), spokeError({ code: 'FailedPrecondition', reason: 'RECORDING_EMPTY' }));
  // results only for containers the recording does not list
  assert.throws(() => planProfiles(recording({ containers: ['other'] }), [result('app', ['read'])]), spokeError({ code: 'FailedPrecondition', reason: 'RECORDING_EMPTY' }));
  // results of another recording object of the same name (other uid) do not count
  assert.throws(() => planProfiles(recording(), [result('app', ['read'], {}, 'u-old')]), spokeError({ code: 'FailedPrecondition', reason: 'RECORDING_EMPTY' }));
  // nor does one owned by no recording: every recorder's result is owned, and an unowned one
  // would count for every recording of that name, and outlive each of them
  const unowned = result('app', ['ptrace']);
  delete unowned.metadata.ownerReferences;
  assert.throws(() => planProfiles(recording(), [unowned]), spokeError({ code: 'FailedPrecondition', reason: 'RECORDING_EMPTY' }));
  // a result that recorded nothing is an incomplete recording
  assert.throws(() => planProfiles(recording(), [result('app', ['read']), result('app', [])]), spokeError({ code: 'FailedPrecondition', reason: 'RECORDING_INVALID' }));
});

test('incomplete or forged results are refused', () => {
  assert.throws(() => planProfiles(recording(), [result('app', ['read'], { lostRecords: 3 })]), spokeError({ code: 'FailedPrecondition', reason: 'RECORDING_INVALID' }));
  assert.throws(() => planProfiles(recording(), [result('app', ['read'], { unnamedCalls: ['c000003e:999'] })]), spokeError({ code: 'FailedPrecondition', reason: 'RECORDING_INVALID' }));
  assert.throws(() => planProfiles(recording(), [result('app', ['read', 'OCI_ARTIFACT_TEST'])]), spokeError({ code: 'InvalidArgument', reason: 'RECORDING_INVALID' }));
  assert.throws(() => planProfiles(recording(), [result('app', ['read'], { runtime: 'kata' as never })]), spokeError({ code: 'InvalidArgument', reason: 'RECORDING_INVALID' }));
  // The result CRD's bounds: a node name over 253 characters is malformed, not merely incomplete.
  assert.throws(() => planProfiles(recording(), [result('app', ['read'], { node: 'n'.repeat(300) })]), spokeError({ code: 'InvalidArgument', reason: 'RECORDING_INVALID' }));
});

test('the CRD makes the pods a recording selects immutable (the API server enforces it; none runs here): results recorded under an old selector would be bound to the new one', () => {
  const crd = parseAllDocuments(readFileSync(new URL('../../../../deploy/crds/profilerecording.yaml', import.meta.url), 'utf8')).map((d) => d.toJS() as { spec?: { names?: { kind?: string }; versions?: { schema: { openAPIV3Schema: { properties: { spec: { 'x-kubernetes-validations'?: { rule: string }[] } } } } }[] } });
  const recordingCrd = crd.find((d) => d.spec?.names?.kind === 'ProfileRecording')!;
  const rules = (recordingCrd.spec!.versions![0]!.schema.openAPIV3Schema.properties.spec['x-kubernetes-validations'] ?? []).map((r) => r.rule);
  assert.ok(rules.includes('self.podSelector == oldSelf.podSelector'), rules.join(' | '));
  assert.ok(rules.some((r) => r.includes('self.containers == oldSelf.containers') && r.includes('has(self.containers) == has(oldSelf.containers)')), rules.join(' | '));
});

test('recording spec validation', () => {
  const bad = (spec: unknown) => {
    const v = validateRecording({ metadata: { name: 'r', namespace: 'n' }, spec });
    assert.equal(v.ok, false);
    return (v as { problems: string[] }).problems.join('; ');
  };
  assert.match(bad({ publish: { repository: 'r.example.com/p' } }), /podSelector: required/);
  assert.match(bad({ podSelector: {}, publish: { repository: 'r.example.com/p:v1' } }), /without tag/);
  assert.match(bad({ podSelector: {}, publish: { repository: 'r.example.com/p@sha256:' + 'a'.repeat(64) } }), /without digest/);
  assert.match(bad({ podSelector: {}, publish: { repository: 'nohost' } }), /registry host/);
  assert.match(bad({ podSelector: {}, publish: { repository: 'r.example.com/p', signWith: '../etc/passwd' } }), /signWith/);
  assert.match(bad({ podSelector: {}, mergeStrategy: 'Pods', publish: { repository: 'r.example.com/p' } }), /None or Containers/);
  assert.match(bad({ podSelector: {}, publish: { repository: 'r.example.com/p' }, bind: 'yes' }), /bind/);
  // Bounds only the CRD schema states (deploy/crds/profilerecording.yaml).
  const exists = { key: 'a', operator: 'Exists' };
  assert.match(bad({ podSelector: { matchExpressions: Array(65).fill(exists) }, publish: { repository: 'r.example.com/p' } }), /spec\.podSelector\.matchExpressions: must have at most 64 entries/);
  assert.match(bad({ podSelector: {}, publish: { repository: 'r.example.com/p', sign: 'k' } }), /spec\.publish\.sign: unknown field/);
});

test('repository allow-list with {namespace}', () => {
  const repo = recording().repository;
  assert.equal(repositoryAllowed(repo, 'team', ['registry.example.com/profiles/{namespace}']), true);
  assert.equal(repositoryAllowed(repo, 'other', ['registry.example.com/profiles/{namespace}']), false);
  assert.equal(repositoryAllowed(repo, 'team', ['registry.example.com/profiles/']), true);
  assert.equal(repositoryAllowed(repo, 'team', ['registry.example.com/prof']), false);
  assert.equal(repositoryAllowed(repo, 'team', []), false);
});

test('binding image, names and the binding itself', () => {
  assert.equal(bindingImage(['registry.example.com/app/web:1.2']), 'registry.example.com/app/web:1.2');
  assert.equal(bindingImage(['busybox:1.36', 'docker.io/library/busybox:1.36']), 'docker.io/library/busybox:1.36');
  assert.equal(bindingImage(['busybox:1.36', 'busybox:1.37']), 'docker.io/library/busybox');
  assert.equal(bindingImage([`busybox@sha256:${'a'.repeat(64)}`]), 'docker.io/library/busybox');
  assert.equal(bindingImage(['busybox:1', 'nginx:1']), '*');
  assert.equal(bindingImage([]), '*');
  const long = childName('r'.repeat(250), 'container');
  assert.ok(long.length <= 253 && long.endsWith('-container'));
  assert.notEqual(childName('r'.repeat(250), 'container'), childName('r'.repeat(251), 'container'));
  const rec = recording();
  const b = bindingFor(rec, { key: 'app', containers: ['app'], image: 'registry.example.com/app/web:1.2' }, `registry.example.com/profiles/team@sha256:${'b'.repeat(64)}`);
  assert.equal(b.metadata.name, 'web-app');
  assert.deepEqual(b.spec.podSelector, { matchLabels: { app: 'web' } });
  assert.deepEqual(b.spec.containers, ['app']);
  assert.equal(validateBinding(b).ok, true);
});

test('resultNodeProblem: the node that runs a pod the webhook marked, for a recorded container', () => {
  const key = Buffer.alloc(32, 4);
  const rec = { namespace: 'team', name: 'web' };
  const marked = (name: string, o: { generateName?: string; containers?: string[]; node?: string; proofKey?: Buffer } = {}): Pod => ({
    metadata: {
      name,
      namespace: 'team',
      annotations: {
        'recording.spoke.dev/name': 'web',
        ...(o.containers ? { 'recording.spoke.dev/containers': o.containers.join(',') } : {}),
        'recording.spoke.dev/proof': signRecordingProof(o.proofKey ?? key, { namespace: 'team', pod: o.generateName ? { generateName: o.generateName } : { name }, recording: 'web', containers: o.containers }, 1),
      },
    },
    spec: { nodeName: o.node ?? 'node-1', containers: [{ name: 'app' }, { name: 'side' }], initContainers: [{ name: 'init' }] },
  });
  const r = (pod: string, container = 'app', node = 'node-1') => result(container, ['read'], { pod, node });
  // accepted: named and generated pods, init containers, an expired proof (the pod was admitted)
  assert.equal(resultNodeProblem(r('p'), rec, marked('p'), key), undefined);
  assert.equal(resultNodeProblem(r('web-5f7c9-x2b4z'), rec, marked('web-5f7c9-x2b4z', { generateName: 'web-5f7c9-' }), key), undefined);
  assert.equal(resultNodeProblem(r('p', 'init'), rec, marked('p'), key), undefined);
  // refused
  const cases: [ReturnType<typeof result>, Pod | undefined, Buffer | undefined, RegExp][] = [
    [r('p'), marked('p'), undefined, /no recording key/],
    [r('p'), undefined, key, /not a pod marked for recording/],
    [r('p', 'app', 'node-2'), marked('p'), key, /reported by node "node-2", but pod team\/p runs on node node-1/],
    [r('p'), { ...marked('p'), spec: { containers: [{ name: 'app' }] } }, key, /is not scheduled/],
    [r('p'), marked('p', { proofKey: Buffer.alloc(32, 5) }), key, /no valid marking/],
    [r('q'), marked('q', { generateName: 'other-' }), key, /no valid marking/],
    [r('p', 'side'), marked('p', { containers: ['app'] }), key, /does not record a container named "side"/],
    [r('p', 'ghost'), marked('p'), key, /does not record a container named "ghost"/],
    [{ ...r('p'), spec: { ...r('p').spec, recording: 'web' } }, { ...marked('p'), metadata: { ...marked('p').metadata, annotations: { ...marked('p').metadata!.annotations, 'recording.spoke.dev/name': 'other' } } }, key, /not marked for recording web/],
  ];
  for (const [res, pod, k, why] of cases) assert.match(resultNodeProblem(res, rec, pod, k) ?? 'accepted', why);
});

test('a binding of the same name is the recording\'s only when it binds what the recording would: the same reference, selector, containers and image', async () => {
  const rec = recording({ bind: true });
  const reference = `registry.example.com/profiles/team@sha256:${'a'.repeat(64)}`;
  const prof = { containers: ['app'], reference, image: 'registry.example.com/app/web:1.2', syscalls: 2, results: 1 };
  const mine = bindingFor(rec, { key: 'app', containers: ['app'], image: prof.image }, reference);
  const ensure = async (existing: ProfileBinding) => {
    let created = 0;
    const publisher = new RecordingPublisher({
      registry: {} as PublishRegistry,
      binding: (_ns, name) => (name === existing.metadata.name ? existing : undefined),
      createBinding: async (_ns, obj) => {
        created++;
        return obj;
      },
      stats: { pushes: 0, signatures: 0, bindingsCreated: 0 },
    });
    const r = await publisher.ensureBindings(rec, [prof], {}, '2026-01-01T00:00:00Z', 1, () => true);
    return { created, condition: r.condition, binding: r.profiles[0]!.binding };
  };
  const same = await ensure(structuredClone(mine));
  assert.deepEqual([same.created, same.condition.status, same.binding], [0, 'True', mine.metadata.name]);
  for (const [what, change] of [
    ['another podSelector', (b: ProfileBinding) => (b.spec.podSelector = {})],
    ['other containers', (b: ProfileBinding) => (b.spec.containers = ['app', 'sidecar'])],
    ['another image', (b: ProfileBinding) => (b.spec.image = '*')],
    ['another reference', (b: ProfileBinding) => (b.spec.reference = `registry.example.com/profiles/team@sha256:${'b'.repeat(64)}`)],
  ] as const) {
    const other = structuredClone(mine);
    change(other);
    const r = await ensure(other);
    assert.deepEqual([r.created, r.condition.status, r.condition.reason, r.binding], [0, 'False', 'BindingExists', undefined], what);
  }
});

test('no binding is created for a recording deleted or finalized again while its bindings are made: the reconcile starts over', async () => {
  const rec = recording({ bind: true });
  const reference = `registry.example.com/profiles/team@sha256:${'c'.repeat(64)}`;
  const profs = ['app', 'sidecar'].map((c) => ({ containers: [c], reference, image: 'registry.example.com/app/web:1.2', syscalls: 2, results: 1 }));
  const created: string[] = [];
  let current = true;
  const publisher = new RecordingPublisher({
    registry: {} as PublishRegistry,
    binding: () => undefined,
    createBinding: async (_ns, obj) => {
      created.push(obj.metadata.name as string);
      current = false; // deleted right after the first binding was made
      return obj;
    },
    stats: { pushes: 0, signatures: 0, bindingsCreated: 0 },
  });
  await assert.rejects(publisher.ensureBindings(rec, profs, {}, '2026-01-01T00:00:00Z', 1, () => current), (e: Error) => e instanceof Transient);
  assert.deepEqual(created, ['web-app']);
});

test('a recomputed status equal to the stored one is not written again, whatever order the API server serves its members in', async () => {
  // The API server serves a custom resource's members sorted by name, not in the order written.
  const sortedDeep = (v: unknown): unknown =>
    Array.isArray(v) ? v.map(sortedDeep) : v !== null && typeof v === 'object' ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([k, x]) => [k, sortedDeep(x)])) : v;
  let stored: ProfileRecording = {
    metadata: { name: 'web', namespace: 'team', uid: 'u-1', generation: 1, resourceVersion: '1' },
    spec: { podSelector: { matchLabels: { app: 'web' } }, publish: { repository: 'registry.example.com/profiles/team' } },
  };
  const writes: ProfileRecording[] = [];
  const reconciler = new RecordingReconciler({
    caches: { recording: () => stored, recordings: () => [stored], results: () => [], binding: () => undefined, pod: () => undefined },
    api: {
      replaceRecordingStatus: async (_ns, _name, obj) => {
        writes.push(obj);
        stored = sortedDeep({ ...obj, metadata: { ...obj.metadata, resourceVersion: String(writes.length + 1) } }) as ProfileRecording;
        return stored;
      },
      createBinding: async () => assert.fail('no binding is created'),
    },
    registry: {} as PublishRegistry,
    allowedRepositories: [],
    now: () => new Date('2026-01-01T00:00:00Z'),
  });
  await reconciler.reconcile('team', 'web');
  assert.equal(writes.length, 1);
  await reconciler.reconcile('team', 'web');
  assert.equal(writes.length, 1, 'the status stored is the one computed again');
});

test("a recording finalized again with a profile it published before moves the profile's tag back to it (the pushes it remembers do not stand for the tag)", async () => {
  const rec = recording();
  const manifests: { ref: string; digest: string }[] = [];
  const registry = {
    putBlob: async (_repo: unknown, bytes: Uint8Array) => sha256Digest(bytes),
    putManifest: async (_repo: unknown, ref: string, bytes: Uint8Array) => {
      const digest = sha256Digest(bytes);
      manifests.push({ ref, digest });
      return { digest, subjectHeader: undefined };
    },
  } as unknown as PublishRegistry;
  const publisher = new RecordingPublisher({ registry, binding: () => undefined, createBinding: async (_ns, obj) => obj, stats: { pushes: 0, signatures: 0, bindingsCreated: 0 } });
  const [a, b] = [['read', 'write'], ['read', 'mkdir']].map((calls) => planProfiles(rec, [result('app', calls)])[0]!);
  assert.equal(a!.tag, b!.tag);
  const tagged = () => manifests.filter((m) => m.ref === a!.tag).at(-1)?.digest;
  const first = await publisher.publish(rec, a!, undefined);
  assert.equal(tagged(), first.reference.split('@')[1]);
  const second = await publisher.publish(rec, b!, undefined);
  assert.equal(tagged(), second.reference.split('@')[1]);
  const again = await publisher.publish(rec, a!, undefined);
  assert.equal(again.reference, first.reference);
  assert.equal(tagged(), first.reference.split('@')[1], 'the tag names the profile published last');
  // Published again as it is: nothing more is put.
  const puts = manifests.length;
  await publisher.publish(rec, a!, undefined);
  assert.equal(manifests.length, puts);
});
