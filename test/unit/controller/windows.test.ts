// Windows pods (spec.os.name: windows) and the pod webhook (docs/binding.md): the API server
// refuses seccompProfile and appArmorProfile, pod and container level, on a Windows pod, so a
// binding that selects one leaves it alone (warned, counted in status under `windows`) rather
// than make it impossible to create. Only spec.os.name decides: a pod without spec.os is a Linux
// pod to the API server, and hostProcess alone does not make it refuse the fields.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { matchOfStoredPod, reviewPod, type PodMatch } from '../../../src/controller/admission.js';
import { StatusUpdater } from '../../../src/controller/binding-status.js';
import { StaticBindingSource, StaticNamespaceSource } from '../../../src/controller/source.js';
import { NAMESPACE_OPT_IN_LABEL, NAMESPACE_OPT_IN_VALUE, type Container, type Pod, type ProfileBinding } from '../../../src/controller/types.js';

const REF_A = `registry.example.com/profiles/a@sha256:${'a'.repeat(64)}`;
const REF_B = `registry.example.com/profiles/b@sha256:${'b'.repeat(64)}`;

function binding(name: string, spec: Partial<ProfileBinding['spec']> = {}): ProfileBinding {
  return { apiVersion: 'spoke.dev/v1alpha1', kind: 'ProfileBinding', metadata: { name, namespace: 'team' }, spec: { kind: 'seccomp', reference: REF_A, image: '*', ...spec } };
}

/** An `image: "*"` binding of each kind: every container of every pod of the namespace. */
const EVERYTHING = [binding('all-seccomp'), binding('all-apparmor', { kind: 'apparmor', reference: REF_B })];

function pod(containers: Container[], spec: Record<string, unknown> = {}, metadata: Record<string, unknown> = {}): Pod {
  return { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p', namespace: 'team', labels: { app: 'web' }, ...metadata }, spec: { containers, ...spec } };
}

const windowsPod = (containers: Container[], spec: Record<string, unknown> = {}, metadata: Record<string, unknown> = {}) => pod(containers, { os: { name: 'windows' }, ...spec }, metadata);

function createReview(object: Pod) {
  return {
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: { uid: 'u1', kind: { group: '', version: 'v1', kind: 'Pod' }, resource: { group: '', version: 'v1', resource: 'pods' }, namespace: 'team', operation: 'CREATE', object },
  };
}

interface Answer {
  allowed: boolean;
  ops: { op: string; path: string; value?: unknown }[];
  warnings: string[];
  message: string | undefined;
  matches: PodMatch[];
}

function answer(body: unknown, bindings: readonly ProfileBinding[], mode: 'field' | 'annotations' = 'field'): Answer {
  const matches: PodMatch[] = [];
  const r = reviewPod(body, new StaticBindingSource([...bindings]), { mode, onApplied: (m) => matches.push(m) }).response;
  const ops = r.patch === undefined ? [] : (JSON.parse(Buffer.from(r.patch, 'base64').toString()) as Answer['ops']);
  return { allowed: r.allowed, ops, warnings: r.warnings ?? [], message: r.status?.message, matches };
}

/** The ops that would set a profile: a securityContext field, or spoke's annotation-mode annotation. */
function profileOps(ops: Answer['ops']): Answer['ops'] {
  return ops.filter((o) => /securityContext|seccompProfile|appArmorProfile|profiles\.spoke\.dev/.test(o.path + JSON.stringify(o.value ?? null)));
}

describe('pod webhook: Windows pods (spec.os.name windows)', () => {
  it('a CREATE selected by image "*" seccomp and AppArmor bindings is allowed untouched, warned, and skipped as Windows, in field and annotation mode', () => {
    for (const mode of ['field', 'annotations'] as const) {
      const p = windowsPod([{ name: 'app', image: 'mcr.microsoft.com/windows/servercore:ltsc2022' }], { initContainers: [{ name: 'setup', image: 'mcr.microsoft.com/windows/nanoserver:ltsc2022' }] });
      const a = answer(createReview(p), EVERYTHING, mode);
      assert.equal(a.allowed, true, `${mode}: ${a.message}`);
      assert.deepEqual(profileOps(a.ops), [], `${mode}: no profile patch`);
      assert.deepEqual(a.ops, [], `${mode}: no patch at all`);
      assert.ok(a.warnings.some((w) => /Windows pod \(spec\.os\.name: windows\)/.test(w) && w.endsWith('ProfileBindings team/all-apparmor, team/all-seccomp not applied')), `${mode}: ${a.warnings.join('\n')}`);
      assert.deepEqual(
        a.matches.flatMap((m) => m.skipped).map((s) => [s.binding, s.kind, s.container, s.reason]),
        [
          ['team/all-seccomp', 'seccomp', 'setup', 'Windows'],
          ['team/all-apparmor', 'apparmor', 'setup', 'Windows'],
          ['team/all-seccomp', 'seccomp', 'app', 'Windows'],
          ['team/all-apparmor', 'apparmor', 'app', 'Windows'],
        ],
        mode,
      );
      assert.deepEqual(a.matches.flatMap((m) => m.applied), [], `${mode}: nothing applied`);
    }
  });

  it('under override bindings, over a spoke annotation with Unconfined beneath, a Windows pod still gets no RuntimeDefault field', () => {
    // On a Linux pod an override binding sets RuntimeDefault under the annotation (binding.ts rule 3).
    const annotations = { 'seccomp.profiles.spoke.dev/app': REF_B, 'container.seccomp.security.alpha.kubernetes.io/app': 'unconfined' };
    const p = windowsPod([{ name: 'app', image: 'mcr.microsoft.com/windows/servercore:ltsc2022' }], {}, { annotations });
    const override = [binding('all-seccomp', { override: true }), binding('all-apparmor', { kind: 'apparmor', reference: REF_B, override: true })];
    for (const mode of ['field', 'annotations'] as const) {
      const a = answer(createReview(p), override, mode);
      assert.equal(a.allowed, true, `${mode}: ${a.message}`);
      assert.deepEqual(profileOps(a.ops), [], mode);
    }
  });

  it('an ephemeral container added to a running Windows pod is allowed untouched, in annotation mode too (where a Linux pod is denied)', () => {
    const app: Container = { name: 'app', image: 'mcr.microsoft.com/windows/servercore:ltsc2022' };
    const debug: Container = { name: 'debugger-abcde', image: 'mcr.microsoft.com/windows/nanoserver:ltsc2022' };
    const body = (os: Record<string, unknown>) => ({
      apiVersion: 'admission.k8s.io/v1',
      kind: 'AdmissionReview',
      request: {
        uid: 'u1',
        kind: { group: '', version: 'v1', kind: 'Pod' },
        resource: { group: '', version: 'v1', resource: 'pods' },
        subResource: 'ephemeralcontainers',
        namespace: 'team',
        operation: 'UPDATE',
        object: pod([app], { ...os, ephemeralContainers: [debug] }),
        oldObject: pod([app], os),
      },
    });
    for (const mode of ['field', 'annotations'] as const) {
      const a = answer(body({ os: { name: 'windows' } }), EVERYTHING, mode);
      assert.equal(a.allowed, true, `${mode}: ${a.message}`);
      assert.deepEqual(a.ops, [], mode);
      assert.deepEqual(a.matches.flatMap((m) => m.skipped).map((s) => [s.container, s.reason]), [['debugger-abcde', 'Windows'], ['debugger-abcde', 'Windows']], mode);
    }
    assert.equal(answer(body({}), EVERYTHING, 'annotations').allowed, false, 'a Linux pod in annotation mode: denied, as before');
  });

  it("no binding's configuration denies a Windows pod: a tie, an invalid binding, an image ID where a binding names images", () => {
    const tie = [binding('one'), binding('two')];
    const invalid = [{ ...binding('broken'), spec: { ...binding('broken').spec, reference: 'not a reference' } }];
    const naming = [binding('named', { image: 'mcr.microsoft.com/windows/servercore' })];
    const byId = [{ name: 'app', image: `sha256:${'e'.repeat(64)}` }];
    for (const [bindings, containers] of [[tie, [{ name: 'app', image: 'mcr.microsoft.com/windows/servercore:ltsc2022' }]], [invalid, [{ name: 'app', image: 'x:1' }]], [naming, byId]] as const) {
      assert.equal(answer(createReview(pod([...containers])), bindings).allowed, false, 'a Linux pod: denied, as before');
      const a = answer(createReview(windowsPod([...containers])), bindings);
      assert.equal(a.allowed, true, a.message);
      assert.deepEqual(a.ops, []);
    }
  });

  it('only spec.os.name windows decides: a pod without spec.os, with os linux, or with hostProcess alone is bound as before', () => {
    const hostProcess = { securityContext: { windowsOptions: { hostProcess: true } }, hostNetwork: true };
    for (const spec of [{}, { os: { name: 'linux' } }, hostProcess]) {
      const a = answer(createReview(pod([{ name: 'app', image: 'nginx:1' }], spec)), EVERYTHING);
      assert.equal(a.allowed, true);
      assert.deepEqual(
        a.ops.filter((o) => o.path.startsWith('/spec/containers/0/securityContext')).map((o) => o.value),
        [{ seccompProfile: { type: 'OCI', oci: { reference: REF_A } }, appArmorProfile: { type: 'OCI', oci: { reference: REF_B } } }],
        JSON.stringify(spec),
      );
      assert.ok(!a.warnings.some((w) => /Windows/.test(w)), JSON.stringify(spec));
    }
  });
});

describe('binding status: Windows pods are counted as skipped', () => {
  it('skippedContainers.windows counts the containers of Windows pods a binding selected, from reviews and from stored pods, beside the other reasons', async () => {
    const stored = windowsPod([{ name: 'app', image: 'mcr.microsoft.com/windows/servercore:ltsc2022' }, { name: 'side', image: 'mcr.microsoft.com/windows/nanoserver:ltsc2022' }]);
    const namespaces = new StaticNamespaceSource({ team: { [NAMESPACE_OPT_IN_LABEL]: NAMESPACE_OPT_IN_VALUE } });
    const fromStore = matchOfStoredPod(stored, new StaticBindingSource([binding('all-seccomp')]), { namespaces });
    assert.deepEqual(fromStore?.skipped.map((s) => [s.container, s.reason]), [['app', 'Windows'], ['side', 'Windows']]);

    const objects = new Map<string, ProfileBinding>([['all-seccomp', { ...binding('all-seccomp'), status: { skippedContainers: { unconfined: 2, privileged: 1 } } }]]);
    const client = {
      get: async (_namespace: string, name: string) => objects.get(name) as ProfileBinding,
      replaceStatus: async (_namespace: string, name: string, obj: ProfileBinding) => {
        objects.set(name, obj);
        return obj;
      },
    };
    const updater = new StatusUpdater(client);
    updater.record(fromStore as PodMatch);
    updater.record({ namespace: 'team', workload: { kind: 'Pod', name: 'q' }, applied: [], skipped: [{ binding: 'team/all-seccomp', kind: 'seccomp', container: 'root', reason: 'Privileged' }] });
    await updater.flush();
    assert.deepEqual(objects.get('all-seccomp')?.status?.skippedContainers, { unconfined: 2, privileged: 2, windows: 2 });
  });
});
