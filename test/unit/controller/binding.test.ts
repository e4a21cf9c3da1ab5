import assert from 'node:assert/strict';
import { isDeepStrictEqual } from 'node:util';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { MAX_NAMESPACE_BINDINGS, MAX_POD_CONTAINERS, mutatePod, type MutationResult } from '../../../src/controller/binding.js';
import { addedEphemeralSlots } from '../../../src/controller/binding-match.js';
import { imageMatches, parseImage, parseImageTarget } from '../../../src/controller/image.js';
import type { Container, Pod, ProfileBinding, SeccompProfile } from '../../../src/controller/types.js';
import { validateBinding } from '../../../src/controller/validate.js';
import { applyPatch, type Op } from '../../helpers/json-patch.js';
import { spokeError } from '../../helpers/assert.js';

const REF_A = `registry.example.com/profiles/a@sha256:${'a'.repeat(64)}`;
const REF_B = `registry.example.com/profiles/b@sha256:${'b'.repeat(64)}`;
const REF_C = `registry.example.com/profiles/c@sha256:${'c'.repeat(64)}`;
const DIGEST = `sha256:${'d'.repeat(64)}`;

function binding(name: string, spec: Partial<ProfileBinding['spec']>, ns = 'team'): ProfileBinding {
  return {
    apiVersion: 'spoke.dev/v1alpha1',
    kind: 'ProfileBinding',
    metadata: { name, namespace: ns },
    spec: { kind: 'seccomp', reference: REF_A, image: '*', ...spec },
  };
}

function ctr(name: string, image = 'nginx:1.25', sc?: Container['securityContext']): Container {
  return sc === undefined ? { name, image } : { name, image, securityContext: sc };
}

function pod(containers: Container[], extra: { init?: Container[]; eph?: Container[]; podSc?: Record<string, unknown>; labels?: Record<string, string>; annotations?: Record<string, string> } = {}): Pod {
  const p: Pod = { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p', namespace: 'team' }, spec: { containers } };
  if (extra.labels) (p.metadata as Record<string, unknown>).labels = extra.labels;
  if (extra.annotations) (p.metadata as Record<string, unknown>).annotations = extra.annotations;
  if (extra.init) (p.spec as Record<string, unknown>).initContainers = extra.init;
  if (extra.eph) (p.spec as Record<string, unknown>).ephemeralContainers = extra.eph;
  if (extra.podSc) (p.spec as Record<string, unknown>).securityContext = extra.podSc;
  return p;
}

function mutate(p: Pod, bs: ProfileBinding[], mode: 'field' | 'annotations' = 'field', podSecurity?: string): { r: MutationResult; out: Pod } {
  const r = mutatePod(p, bs, { mode, ...(podSecurity === undefined ? {} : { podSecurity }) });
  const out = 'denied' in r ? p : applyPatch(p, r.patch as Op[]);
  return { r, out };
}

function ok(r: MutationResult): Exclude<MutationResult, { denied: string }> {
  assert.ok(!('denied' in r), `unexpectedly denied: ${'denied' in r ? r.denied : ''}`);
  return r;
}

function denied(r: MutationResult): string {
  assert.ok('denied' in r, 'expected a denial');
  return r.denied;
}

const oci = (reference: string, baseProfile?: unknown): SeccompProfile => (baseProfile ? { type: 'OCI', oci: { reference, baseProfile } } : { type: 'OCI', oci: { reference } }) as SeccompProfile;
const seccompOf = (p: Pod, i = 0, list: 'containers' | 'initContainers' | 'ephemeralContainers' = 'containers') => p.spec?.[list]?.[i]?.securityContext?.seccompProfile;

describe('image references (docker normalization)', () => {
  const cases: [string, string, boolean][] = [
    ['nginx', 'nginx', true],
    ['nginx', 'docker.io/library/nginx:1.25', true],
    ['nginx', `index.docker.io/library/nginx@${DIGEST}`, true],
    ['docker.io/library/nginx', 'nginx:latest', true],
    ['nginx', 'nginx-extra', false],
    ['nginx', 'myorg/nginx', false],
    ['nginx', 'quay.io/nginx', false],
    ['nginx:1.25', 'docker.io/library/nginx:1.25', true],
    ['nginx:1.25', 'nginx:1.26', false],
    ['nginx:latest', 'nginx', true],
    ['nginx:latest', `nginx@${DIGEST}`, false],
    [`nginx@${DIGEST}`, `docker.io/library/nginx:1.25@${DIGEST}`, true],
    [`nginx@${DIGEST}`, 'nginx:1.25', false],
    ['registry.example.com:5000/team/app', 'registry.example.com:5000/team/app:v2', true],
    ['registry.example.com:5000/team/app', 'registry.example.com/team/app:v2', false],
    ['localhost/app', 'localhost/app:dev', true],
    ['*', 'whatever:1', true],
  ];
  for (const [target, image, want] of cases) {
    it(`${target} ${want ? 'selects' : 'does not select'} ${image}`, () => {
      assert.equal(imageMatches(parseImageTarget(target), parseImage(image)), want);
    });
  }
  it('normalizes', () => {
    const r = parseImage('nginx');
    assert.equal(r.repository, 'docker.io/library/nginx');
    assert.equal(parseImage('Registry.Example.com/a/b:t').domain, 'registry.example.com');
    assert.throws(() => parseImage('library/UPPER'), spokeError({ code: 'InvalidArgument', reason: 'REFERENCE_INVALID' }));
    assert.throws(() => parseImage('nginx:bad tag'), spokeError({ code: 'InvalidArgument', reason: 'REFERENCE_INVALID' }));
    assert.throws(() => parseImage(`nginx@sha256:${'z'.repeat(64)}`), spokeError({ code: 'InvalidArgument', reason: 'REFERENCE_INVALID' }));
  });
});

describe('binding validation (same parser as the node)', () => {
  it('accepts a good binding', () => assert.ok(validateBinding(binding('ok', {})).ok));
  const bad: [string, Partial<ProfileBinding['spec']>, RegExp][] = [
    ['tag reference', { reference: 'registry.example.com/profiles/a:v1' }, /not pinned by digest/],
    ['short name', { reference: `profiles/a@sha256:${'a'.repeat(64)}` }, /no registry host/],
    ['sha512', { reference: `registry.example.com/p@sha512:${'a'.repeat(128)}` }, /sha256/],
    ['AppArmor Localhost base', { kind: 'apparmor', baseProfile: { type: 'Localhost', localhostProfile: 'x' } }, /only be RuntimeDefault/],
    ['Unconfined base', { baseProfile: { type: 'Unconfined' } as never }, /RuntimeDefault or Localhost/],
    ['absolute localhost', { baseProfile: { type: 'Localhost', localhostProfile: '/etc/x.json' } }, /relative/],
    ['dotdot localhost', { baseProfile: { type: 'Localhost', localhostProfile: 'a/../../x.json' } }, /\.\./],
    ['bad image', { image: 'Bad Image' }, /spec\.image/],
    ['bad selector', { podSelector: { matchExpressions: [{ key: 'a', operator: 'In' }] } }, /non-empty/],
    ['empty containers', { containers: [] }, /spec\.containers: must not be empty/],
    ['unknown field', { imageSelector: 'x' } as never, /unknown field/],
    ['kind', { kind: 'selinux' as never }, /seccomp or apparmor/],
    // Bounds only the CRD schema states (deploy/crds/profilebinding.yaml).
    ['65 matchLabels', { podSelector: { matchLabels: Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`k${i}`, 'v'])) } }, /spec\.podSelector\.matchLabels: must have at most 64 entries/],
    ['a 5000-character localhostProfile', { baseProfile: { type: 'Localhost', localhostProfile: 'a'.repeat(5000) } }, /spec\.baseProfile\.localhostProfile: must be at most 4096 characters/],
  ];
  it('refuses a field the CRD does not define, at any level', () => {
    const v = validateBinding({ ...binding('extra', {}), extra: 1 });
    assert.ok(!v.ok);
    assert.match(v.problems.join('; '), /^extra: unknown field/);
  });
  for (const [what, spec, re] of bad) {
    it(`refuses ${what}`, () => {
      const v = validateBinding(binding('bad', spec));
      assert.ok(!v.ok);
      assert.match(v.problems.join('; '), re);
    });
  }
});

describe('mutation rules', () => {
  it('no bindings: empty patch', () => {
    const r = ok(mutatePod(pod([ctr('app')]), []));
    assert.deepEqual(r.patch, []);
  });

  it('unset profile → OCI on the container, with baseProfile', () => {
    const { r, out } = mutate(pod([ctr('app')]), [binding('b', { baseProfile: { type: 'Localhost', localhostProfile: 'base/strict.json' } })]);
    ok(r);
    assert.deepEqual(seccompOf(out), oci(REF_A, { type: 'Localhost', localhostProfile: 'base/strict.json' }));
  });

  it("a container carrying the winner's profile is bound whatever order its baseProfile's members come in", () => {
    // The API server serves a custom resource's members sorted by name, and a pod's in its Go
    // struct's order: the binding's base and the pod's patched-in copy differ in order only.
    const b = binding('b', { baseProfile: { localhostProfile: 'base/strict.json', type: 'Localhost' } as never });
    const p = pod([ctr('app', 'nginx', { seccompProfile: oci(REF_A, { type: 'Localhost', localhostProfile: 'base/strict.json' }) })]);
    const r = ok(mutatePod(p, [b]));
    assert.deepEqual(r.patch, []);
    assert.deepEqual(r.warnings, []);
    assert.deepEqual(r.bound.map((x) => x.binding), ['team/b']);
  });

  it('RuntimeDefault → replaced; other securityContext fields kept', () => {
    const { r, out } = mutate(pod([ctr('app', 'nginx', { runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' } })]), [binding('b', {})]);
    assert.deepEqual(ok(r).warnings, []);
    assert.deepEqual(out.spec?.containers?.[0]?.securityContext, { runAsNonRoot: true, seccompProfile: oci(REF_A) });
  });

  it('Localhost on the container is kept, with a warning naming it', () => {
    const p = pod([ctr('app', 'nginx', { seccompProfile: { type: 'Localhost', localhostProfile: 'mine.json' } }), ctr('side')]);
    const { r, out } = mutate(p, [binding('b', {})]);
    const { warnings } = ok(r);
    assert.deepEqual(seccompOf(out, 0), { type: 'Localhost', localhostProfile: 'mine.json' });
    assert.deepEqual(seccompOf(out, 1), oci(REF_A));
    assert.equal(warnings.length, 1);
    assert.match(warnings[0] as string, /container "app" keeps its seccomp profile Localhost \(set on the container\); ProfileBinding team\/b not applied/);
  });

  it('an OCI profile already set by the pod author is kept, with a warning', () => {
    const { r, out } = mutate(pod([ctr('app', 'nginx', { seccompProfile: oci(REF_C) })]), [binding('b', {})]);
    assert.match(ok(r).warnings.join(), /"app" keeps its seccomp profile OCI/);
    assert.deepEqual(seccompOf(out), oci(REF_C));
  });

  it('Unconfined without override → admitted untouched, warned and counted, naming container and binding', () => {
    const p = pod([ctr('app', 'nginx', { seccompProfile: { type: 'Unconfined' } }), ctr('side')]);
    const { r, out } = mutate(p, [binding('b', {})]);
    const res = ok(r);
    assert.deepEqual(seccompOf(out, 0), { type: 'Unconfined' });
    assert.deepEqual(seccompOf(out, 1), oci(REF_A), 'the other container is still bound');
    assert.deepEqual(res.warnings, ['container "app" keeps its seccomp profile Unconfined (set on the container); ProfileBinding team/b not applied: set override: true on the binding to replace it']);
    assert.deepEqual(res.skipped, [{ binding: 'team/b', kind: 'seccomp', container: 'app', reason: 'Unconfined' }]);
    assert.deepEqual(res.applied.map((a) => a.container), ['side']);
  });

  it('Unconfined with override: true → replaced, with a warning', () => {
    const { r, out } = mutate(pod([ctr('app', 'nginx', { seccompProfile: { type: 'Unconfined' } })]), [binding('b', { override: true })]);
    assert.match(ok(r).warnings.join(), /Unconfined .* replaced by ProfileBinding team\/b \(override: true\)/);
    assert.deepEqual(seccompOf(out), oci(REF_A));
  });

  it('pod-level Unconfined is inherited: kept without override, per-container OCI with it', () => {
    const p = pod([ctr('app')], { podSc: { seccompProfile: { type: 'Unconfined' } } });
    const kept = mutate(p, [binding('b', {})]);
    assert.deepEqual(ok(kept.r).patch, []);
    assert.match(ok(kept.r).warnings.join(), /Unconfined \(inherited from the pod\)/);
    const { r, out } = mutate(p, [binding('b', { override: true })]);
    ok(r);
    assert.deepEqual(seccompOf(out), oci(REF_A));
    assert.deepEqual(out.spec?.securityContext, { seccompProfile: { type: 'Unconfined' } }, 'pod level untouched');
  });

  it('pod-level Localhost is inherited and kept; pod-level RuntimeDefault is overridden per container', () => {
    const keep = mutate(pod([ctr('app')], { podSc: { seccompProfile: { type: 'Localhost', localhostProfile: 'p.json' } } }), [binding('b', {})]);
    assert.deepEqual(ok(keep.r).patch, []);
    assert.match(ok(keep.r).warnings.join(), /Localhost \(inherited from the pod\)/);
    const set = mutate(pod([ctr('app')], { podSc: { seccompProfile: { type: 'RuntimeDefault' }, runAsUser: 1000 } }), [binding('b', {})]);
    ok(set.r);
    assert.deepEqual(seccompOf(set.out), oci(REF_A));
    assert.deepEqual(set.out.spec?.securityContext, { seccompProfile: { type: 'RuntimeDefault' }, runAsUser: 1000 });
  });

  it('init containers are covered, ephemeral containers are left alone', () => {
    const p = pod([ctr('app')], { init: [ctr('init')], eph: [ctr('debug')] });
    const { r, out } = mutate(p, [binding('b', {})]);
    ok(r);
    assert.deepEqual(seccompOf(out, 0, 'initContainers'), oci(REF_A));
    assert.deepEqual(seccompOf(out, 0), oci(REF_A));
    assert.deepEqual(out.spec?.ephemeralContainers, [ctr('debug')]);
  });

  it('privileged containers are admitted without an OCI profile, warned and counted', () => {
    for (const mode of ['field', 'annotations'] as const) {
      const p = pod([ctr('ok'), ctr('root', 'nginx', { privileged: true })]);
      const { r, out } = mutate(p, [binding('b', {}), binding('aa', { kind: 'apparmor', reference: REF_B, override: true })], mode);
      const res = ok(r);
      assert.deepEqual(out.spec?.containers?.[1], ctr('root', 'nginx', { privileged: true }), 'untouched');
      assert.deepEqual(out.metadata?.annotations?.['seccomp.profiles.spoke.dev/root'], undefined);
      assert.ok(res.warnings.includes('container "root" is privileged and gets no OCI seccomp profile (KEP-6061; the runtime ignores seccomp for it); ProfileBinding team/b not applied'), res.warnings.join('\n'));
      assert.deepEqual(res.skipped, [
        { binding: 'team/b', kind: 'seccomp', container: 'root', reason: 'Privileged' },
        { binding: 'team/aa', kind: 'apparmor', container: 'root', reason: 'Privileged' },
      ]);
      assert.deepEqual(res.applied.map((a) => a.container), ['ok', 'ok']);
    }
  });

  it('a pod with more containers than MAX_POD_CONTAINERS (init ones counted) is denied, not bound in part; one at the limit is bound', () => {
    const many = (n: number) => Array.from({ length: n }, (_, i) => ctr(`c${i}`));
    assert.match(denied(mutatePod(pod(many(MAX_POD_CONTAINERS - 1), { init: many(2) }), [binding('one', {})])), new RegExp(`${MAX_POD_CONTAINERS + 1} containers`));
    const r = ok(mutatePod(pod(many(MAX_POD_CONTAINERS - 1), { init: many(1) }), [binding('one', {})]));
    assert.equal(r.applied.length, MAX_POD_CONTAINERS);
  });

  it('ephemeral containers count too: an update adding them past MAX_POD_CONTAINERS is denied before any binding is matched', () => {
    const many = (n: number, prefix: string) => Array.from({ length: n }, (_, i) => ctr(`${prefix}${i}`));
    const before = pod([ctr('app')], { eph: many(10, 'old') });
    const after = pod([ctr('app')], { eph: [...many(10, 'old'), ...many(MAX_POD_CONTAINERS - 10, 'dbg')] });
    const added = addedEphemeralSlots(after, before);
    assert.match(denied(mutatePod(after, [binding('one', {})], { ephemeral: added })), new RegExp(`${MAX_POD_CONTAINERS + 1} containers`));
    const fits = pod([ctr('app')], { eph: [...many(10, 'old'), ...many(MAX_POD_CONTAINERS - 11, 'dbg')] });
    ok(mutatePod(fits, [binding('one', {})], { ephemeral: addedEphemeralSlots(fits, before) }));
  });

  it('a namespace with more than MAX_NAMESPACE_BINDINGS ProfileBindings gets its pods denied, naming the limit: its bindings are matched at every review', () => {
    const bs = Array.from({ length: MAX_NAMESPACE_BINDINGS + 1 }, (_, i) => binding(`b${i}`, { containers: [`c${i}`] }));
    assert.match(denied(mutatePod(pod([ctr('app')]), bs)), new RegExp(`${MAX_NAMESPACE_BINDINGS + 1} ProfileBindings`));
    ok(mutatePod(pod([ctr('app')]), bs.slice(1)));
  });

  it('each binding object is validated once, not at every review (the reflector keeps an object until it changes)', () => {
    let reads = 0;
    const counted = (b: ProfileBinding): ProfileBinding => {
      const reference = b.spec.reference;
      Object.defineProperty(b.spec, 'reference', { enumerable: true, get: () => (reads++, reference) });
      return b;
    };
    const bs = [counted(binding('one', {})), counted(binding('two', { image: 'nginx', reference: REF_B }))];
    ok(mutatePod(pod([ctr('app')]), bs));
    const first = reads;
    assert.ok(first > 0);
    for (let i = 0; i < 3; i++) ok(mutatePod(pod([ctr('app')]), bs));
    assert.equal(reads, first);
    // A changed spec is validated again.
    bs[1] = { ...bs[1]!, spec: { ...bs[1]!.spec, reference: 'not a reference' } };
    assert.match(denied(mutatePod(pod([ctr('app')]), bs)), /two/);
  });

  it('a tie is denied naming both bindings', () => {
    const msg = denied(mutatePod(pod([ctr('app')]), [binding('one', {}), binding('two', { reference: REF_B })]));
    assert.match(msg, /container "app": ProfileBindings team\/one and team\/two both bind a seccomp profile with the same specificity/);
  });

  it('specificity: digest > tag > repository > *, then podSelector, then containers', () => {
    const image = `registry.example.com/app:v1@${DIGEST}`;
    const p = pod([ctr('app', image)], { labels: { tier: 'web' } });
    const win = (bs: ProfileBinding[]) => {
      const { r, out } = mutate(p, bs);
      ok(r);
      return seccompOf(out)?.oci?.reference;
    };
    assert.equal(win([binding('star', { reference: REF_A }), binding('repo', { image: 'registry.example.com/app', reference: REF_B })]), REF_B);
    assert.equal(win([binding('repo', { image: 'registry.example.com/app', reference: REF_A }), binding('tag', { image: 'registry.example.com/app:v1', reference: REF_B })]), REF_B);
    assert.equal(win([binding('tag', { image: 'registry.example.com/app:v1', reference: REF_A }), binding('dig', { image: `registry.example.com/app@${DIGEST}`, reference: REF_B })]), REF_B);
    // Image first: a repository binding beats `*` with selector and containers.
    assert.equal(
      win([binding('star', { reference: REF_A, podSelector: { matchLabels: { tier: 'web' } }, containers: ['app'] }), binding('repo', { image: 'registry.example.com/app', reference: REF_B })]),
      REF_B,
    );
    assert.equal(win([binding('a', { reference: REF_A, containers: ['app'] }), binding('b', { reference: REF_B, podSelector: { matchLabels: { tier: 'web' } } })]), REF_B);
    assert.equal(win([binding('a', { reference: REF_A }), binding('b', { reference: REF_B, containers: ['app'] })]), REF_B);
    // An empty podSelector is not more specific than none: tie.
    assert.match(denied(mutatePod(p, [binding('a', {}), binding('b', { reference: REF_B, podSelector: {} })])), /same specificity/);
  });

  it('podSelector and containers restrict what is selected', () => {
    const p = pod([ctr('app'), ctr('side')], { labels: { app: 'web', env: 'prod' } });
    const miss = mutate(p, [binding('b', { podSelector: { matchLabels: { app: 'db' } } })]);
    assert.deepEqual(ok(miss.r).patch, []);
    const hit = mutate(p, [binding('b', { podSelector: { matchExpressions: [{ key: 'env', operator: 'In', values: ['prod'] }, { key: 'canary', operator: 'DoesNotExist' }] }, containers: ['side'] })]);
    ok(hit.r);
    assert.equal(seccompOf(hit.out, 0), undefined);
    assert.deepEqual(seccompOf(hit.out, 1), oci(REF_A));
  });

  it('image matching: repository binding with docker.io normalization', () => {
    const p = pod([ctr('a', 'nginx'), ctr('b', 'docker.io/library/nginx:1.27'), ctr('c', 'myorg/nginx:1'), ctr('d', 'redis')]);
    const { r, out } = mutate(p, [binding('b', { image: 'docker.io/library/nginx' })]);
    ok(r);
    assert.deepEqual([0, 1, 2, 3].map((i) => seccompOf(out, i)?.type), ['OCI', 'OCI', undefined, undefined]);
  });

  it('AppArmor: appArmorProfile type OCI; legacy annotation removed so field and annotation cannot disagree', () => {
    const p = pod([ctr('app')], { annotations: { 'container.apparmor.security.beta.kubernetes.io/app': 'runtime/default', keep: 'me' } });
    const { r, out } = mutate(p, [binding('aa', { kind: 'apparmor', reference: REF_B, baseProfile: { type: 'RuntimeDefault' } }), binding('sc', {})]);
    ok(r);
    assert.deepEqual(out.spec?.containers?.[0]?.securityContext, { seccompProfile: oci(REF_A), appArmorProfile: oci(REF_B, { type: 'RuntimeDefault' }) });
    assert.deepEqual(out.metadata?.annotations, { keep: 'me' });
    // Legacy unconfined annotation counts as Unconfined.
    const u = pod([ctr('app')], { annotations: { 'container.apparmor.security.beta.kubernetes.io/app': 'unconfined' } });
    const kept = ok(mutatePod(u, [binding('aa', { kind: 'apparmor' })]));
    assert.deepEqual(kept.patch, []);
    assert.match(kept.warnings.join(), /apparmor profile Unconfined \(by annotation/);
  });

  it("annotations mode: the pod's own annotation equal to the winner's is not counted as bound unless the field is the RuntimeDefault our patch sets", () => {
    const p = pod([ctr('app', 'nginx:1.25', { seccompProfile: { type: 'Unconfined' } })], { annotations: { 'seccomp.profiles.spoke.dev/app': REF_A } });
    const r = ok(mutatePod(p, [binding('b', { override: true })], { mode: 'annotations' }));
    assert.deepEqual(r.bound, [], 'a node without the shim runs this container Unconfined');
    assert.match(r.warnings.join(), /keeps its seccomp profile OCI \(by annotation seccomp\.profiles\.spoke\.dev\/app\)/);
    // our own patch, seen again: bound, nothing to do
    const { out } = mutate(pod([ctr('app')]), [binding('b', {})], 'annotations');
    const again = ok(mutatePod(out, [binding('b', {})], { mode: 'annotations' }));
    assert.deepEqual(again.patch, []);
    assert.equal(again.bound.length, 1);
  });

  it('an image ID is denied only where a binding that names images could select that container', () => {
    const p = pod([ctr('web'), ctr('debug', DIGEST)]);
    const { r, out } = mutate(p, [binding('web-only', { image: 'nginx', containers: ['web'] })]);
    ok(r);
    assert.deepEqual(seccompOf(out, 0), oci(REF_A));
    assert.equal(seccompOf(out, 1), undefined);
  });

  it('an image ID (which the runtime resolves to a local image) is denied where a binding names images; only `*` bindings bind it', () => {
    for (const id of [DIGEST, 'd'.repeat(64), `sha512:${'e'.repeat(128)}`]) {
      const p = pod([ctr('app', id)]);
      assert.match(denied(mutatePod(p, [binding('b', { image: 'nginx' })])), new RegExp(`container "app": image ${id.slice(0, 16)}.* is an image ID.*ProfileBinding team/b binds by image nginx`), id);
      const { r, out } = mutate(p, [binding('all', { image: '*' })]);
      ok(r);
      assert.deepEqual(seccompOf(out), oci(REF_A), id);
    }
  });

  it("a pod's own pod-wide spoke annotation is the profile of every container without its own: kept, in either mode", () => {
    for (const mode of ['field', 'annotations'] as const) {
      for (const kind of ['seccomp', 'apparmor'] as const) {
        const key = `${kind}.profiles.spoke.dev/pod`;
        const p = pod([ctr('app')], { annotations: { [key]: REF_C } });
        const r = ok(mutatePod(p, [binding('b', { kind, reference: REF_B })], { mode }));
        assert.deepEqual(r.patch, [], `${mode} ${kind}`);
        assert.match(r.warnings.join(), new RegExp(`keeps its ${kind} profile OCI \\(by annotation ${key.replace(/[./]/g, '\\$&')}`), `${mode} ${kind}`);
      }
    }
  });

  it("legacy seccomp annotations count as the profile the API server will set from them", () => {
    const CTR = 'container.seccomp.security.alpha.kubernetes.io/app';
    const POD = 'seccomp.security.alpha.kubernetes.io/pod';
    // Localhost (container's or pod's), and Unconfined without override: kept.
    for (const annotations of [{ [CTR]: 'localhost/tight.json' }, { [POD]: 'localhost/tight.json' }, { [CTR]: 'unconfined' }] as Record<string, string>[]) {
      const r = ok(mutatePod(pod([ctr('app')], { annotations }), [binding('b', {})]));
      assert.deepEqual(r.patch, [], JSON.stringify(annotations));
      assert.match(r.warnings.join(), /keeps its seccomp profile (Localhost|Unconfined) \(by annotation/, JSON.stringify(annotations));
    }
    // `localhost/` with no name sets no field (the API server copies nothing from it): the next source counts.
    for (const annotations of [{ [CTR]: 'localhost/' }, { [POD]: 'localhost/' }] as Record<string, string>[]) {
      const { r, out } = mutate(pod([ctr('app')], { annotations, podSc: annotations[POD] ? undefined : { seccompProfile: { type: 'RuntimeDefault' } } }), [binding('b', {})]);
      ok(r);
      assert.deepEqual(seccompOf(out), oci(REF_A), JSON.stringify(annotations));
    }
    // The container's field wins over its annotation, its annotation over the pod's field.
    const fieldWins = ok(mutatePod(pod([ctr('app', 'nginx:1.25', { seccompProfile: { type: 'Localhost', localhostProfile: 'x.json' } })], { annotations: { [CTR]: 'runtime/default' } }), [binding('b', {})]));
    assert.deepEqual(fieldWins.patch, []);
    const annotationWins = ok(mutatePod(pod([ctr('app')], { annotations: { [CTR]: 'localhost/tight.json' }, podSc: { seccompProfile: { type: 'RuntimeDefault' } } }), [binding('b', {})]));
    assert.deepEqual(annotationWins.patch, []);
    // RuntimeDefault (either spelling) is replaced, and the container's legacy annotation removed: the API server requires it to agree with the field.
    for (const value of ['runtime/default', 'docker/default']) {
      const { r, out } = mutate(pod([ctr('app')], { annotations: { [CTR]: value, [POD]: value, keep: 'me' } }), [binding('b', {})]);
      ok(r);
      assert.deepEqual(seccompOf(out), oci(REF_A));
      assert.deepEqual(out.metadata?.annotations, { [POD]: value, keep: 'me' });
    }
  });

  it('annotations mode: shim annotations, field RuntimeDefault, a Localhost base dropped with a warning', () => {
    const p = pod([ctr('app'), ctr('side', 'nginx', { seccompProfile: { type: 'RuntimeDefault' } })]);
    const { r, out } = mutate(p, [binding('b', { baseProfile: { type: 'Localhost', localhostProfile: 'base.json' } }), binding('aa', { kind: 'apparmor', reference: REF_B, containers: ['app'] })], 'annotations');
    const res = ok(r);
    assert.match(res.warnings.join('\n'), /Localhost baseProfile cannot be carried by annotations/);
    assert.deepEqual(out.metadata?.annotations, {
      'seccomp.profiles.spoke.dev/app': REF_A,
      'seccomp.profiles.spoke.dev/side': REF_A,
      'apparmor.profiles.spoke.dev/app': REF_B,
    });
    assert.deepEqual(seccompOf(out, 0), { type: 'RuntimeDefault' });
    assert.deepEqual(out.spec?.containers?.[0]?.securityContext?.appArmorProfile, { type: 'RuntimeDefault' });
    assert.deepEqual(seccompOf(out, 1), { type: 'RuntimeDefault' });
    // Escaped JSON pointer for the `/` in the key when annotations already exist.
    const q = pod([ctr('app')], { annotations: { a: 'b' } });
    const r2 = ok(mutatePod(q, [binding('b', {})], { mode: 'annotations' }));
    assert.ok((r2.patch as Op[]).some((o) => o.path === '/metadata/annotations/seccomp.profiles.spoke.dev~1app'));
  });

  it('annotations mode: a container named "pod" cannot be bound by annotation (its key is the pod-wide one): the pod is denied', () => {
    // The shim reads seccomp.profiles.spoke.dev/pod as every container's profile: written for one
    // container it would bind its siblings too (and fail next to a Localhost or privileged one).
    const msg = denied(mutatePod(pod([ctr('pod'), ctr('agent', 'nginx', { seccompProfile: { type: 'Localhost', localhostProfile: 'agent.json' } })]), [binding('b', { containers: ['pod'] })], { mode: 'annotations' }));
    assert.match(msg, /container "pod"/);
    assert.match(msg, /pod-wide/);
    // In field mode the container is bound like any other.
    ok(mutatePod(pod([ctr('pod')]), [binding('b', {})]));
  });

  it('an existing spoke annotation with another reference is kept, with a warning', () => {
    const p = pod([ctr('app')], { annotations: { 'seccomp.profiles.spoke.dev/app': REF_C } });
    const r = ok(mutatePod(p, [binding('b', {})], { mode: 'annotations' }));
    assert.deepEqual(r.patch, []);
    assert.match(r.warnings.join(), /keeps its seccomp profile OCI \(by annotation/);
  });

  it('invalid bindings that may select the pod deny it, with the parser reason', () => {
    const msg = denied(mutatePod(pod([ctr('app')]), [binding('bad', { reference: 'registry.example.com/p:v1' })]));
    assert.match(msg, /ProfileBinding team\/bad is invalid and may select container "app": spec\.reference: .*not pinned by digest/);
    // One that cannot select it (another image) does not.
    ok(mutatePod(pod([ctr('app', 'redis')]), [binding('bad', { image: 'nginx', reference: 'registry.example.com/p:v1' })]));
  });

  it('an invalid binding that names images denies a pod with an image ID, which it may select as a valid one would', () => {
    for (const id of [DIGEST, 'd'.repeat(64)]) {
      const msg = denied(mutatePod(pod([ctr('app', id)]), [binding('bad', { image: 'nginx', reference: 'registry.example.com/p:v1' })]));
      assert.match(msg, /ProfileBinding team\/bad is invalid and may select container "app"/, id);
    }
  });

  it('is idempotent (reinvocation): a second pass changes nothing and warns nothing', () => {
    for (const mode of ['field', 'annotations'] as const) {
      const bs = [binding('b', {}), binding('aa', { kind: 'apparmor', reference: REF_B })];
      const first = mutate(pod([ctr('app')], { init: [ctr('i')] }), bs, mode);
      ok(first.r);
      const second = ok(mutatePod(first.out, bs, { mode }));
      assert.deepEqual(second.patch, []);
      assert.deepEqual(second.warnings, []);
    }
  });

  it('reinvocation after a later webhook pinned the image: the binding most specific for the image as it is now replaces the earlier one', () => {
    const image = 'registry.example.com/shop/web:1.0';
    const pinned = `registry.example.com/shop/web:1.0@${DIGEST}`;
    for (const mode of ['field', 'annotations'] as const) {
      const bs = [binding('repo', { image: 'registry.example.com/shop/web' }), binding('exact', { image: `registry.example.com/shop/web@${DIGEST}`, reference: REF_B })];
      const first = mutate(pod([ctr('web', image, { runAsNonRoot: true })]), bs, mode);
      assert.deepEqual(ok(first.r).applied.map((a) => a.binding), ['team/repo']);
      // A webhook after spoke's pins the image to its digest; the API server reinvokes spoke.
      first.out.spec!.containers![0]!.image = pinned;
      const second = mutate(first.out, bs, mode);
      const res = ok(second.r);
      assert.deepEqual(res.applied.map((a) => a.binding), ['team/exact']);
      assert.deepEqual(res.warnings, ['container "web": seccomp profile of ProfileBinding team/repo replaced by ProfileBinding team/exact, the most specific for the container as it is now']);
      if (mode === 'field') assert.deepEqual(second.out.spec?.containers?.[0]?.securityContext, { runAsNonRoot: true, seccompProfile: oci(REF_B) });
      else {
        assert.deepEqual(second.out.spec?.containers?.[0]?.securityContext, { runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' } });
        assert.equal(second.out.metadata?.annotations?.['seccomp.profiles.spoke.dev/web'], REF_B);
      }
      // The pod as the API server would have it from the start gets the same.
      const fresh = mutate(pod([ctr('web', pinned, { runAsNonRoot: true })]), bs, mode);
      assert.deepEqual(fresh.out, second.out);
      // And a third pass changes nothing.
      assert.deepEqual(ok(mutatePod(second.out, bs, { mode })).patch, []);
    }
  });

  it('a profile equal to no binding that selects the pod stays the author\'s: kept, with a warning', () => {
    const bs = [binding('repo', { image: 'registry.example.com/shop/web' }), binding('other', { image: 'registry.example.com/shop/api', reference: REF_C })];
    // REF_C is a binding's, but one that does not select this container: still the author's.
    for (const ref of [REF_B, REF_C]) {
      const r = ok(mutatePod(pod([ctr('web', 'registry.example.com/shop/web:1', { seccompProfile: oci(ref) })]), bs));
      assert.deepEqual(r.patch, []);
      assert.match(r.warnings[0]!, /keeps its seccomp profile OCI/);
    }
  });

  it("an author's own annotation is kept, but the Unconfined field under it is set to RuntimeDefault where an override binding wins: a node without the shim runs it confined", () => {
    const bs = [binding('strict', { override: true })];
    for (const mode of ['field', 'annotations'] as const) {
      const p = pod([ctr('app', 'nginx:1.25', { seccompProfile: { type: 'Unconfined' } })], { annotations: { 'seccomp.profiles.spoke.dev/app': REF_C } });
      const { r, out } = mutate(p, bs, mode);
      const res = ok(r);
      assert.deepEqual(seccompOf(out), { type: 'RuntimeDefault' });
      assert.equal(out.metadata?.annotations?.['seccomp.profiles.spoke.dev/app'], REF_C);
      assert.ok(res.warnings.some((w) => /field Unconfined .* set to RuntimeDefault by ProfileBinding team\/strict \(override: true\)/.test(w)), res.warnings.join('\n'));
      // Without override: left alone, as before.
      assert.deepEqual(ok(mutatePod(p, [binding('strict', {})], { mode })).patch, []);
      // Reinvoked: nothing more to do.
      assert.deepEqual(ok(mutatePod(out, bs, { mode })).patch, []);
    }
  });

  it('one add op for a container without securityContext covering both kinds', () => {
    const r = ok(mutatePod(pod([ctr('app')]), [binding('b', {}), binding('aa', { kind: 'apparmor', reference: REF_B })]));
    assert.deepEqual(r.patch, [{ op: 'add', path: '/spec/containers/0/securityContext', value: { seccompProfile: oci(REF_A), appArmorProfile: oci(REF_B) } }]);
  });
});

describe('Pod Security: field mode only where the namespace level admits type OCI', () => {
  const bs = [binding('b', {}), binding('aa', { kind: 'apparmor', reference: REF_B })];
  const run = (podSecurity: string | undefined) => mutate(pod([ctr('app')]), bs, 'field', podSecurity);

  it('restricted: both kinds by annotation, RuntimeDefault in the fields, one warning per kind', () => {
    const { r, out } = run('restricted');
    const res = ok(r);
    assert.deepEqual(out.spec?.containers?.[0]?.securityContext, { seccompProfile: { type: 'RuntimeDefault' }, appArmorProfile: { type: 'RuntimeDefault' } });
    assert.deepEqual(out.metadata?.annotations, { 'seccomp.profiles.spoke.dev/app': REF_A, 'apparmor.profiles.spoke.dev/app': REF_B });
    assert.deepEqual(res.warnings, [
      'namespace Pod Security level "restricted" rejects seccomp type OCI in alpha: bound by annotation (spoke shim) with RuntimeDefault in the field',
      'namespace Pod Security level "restricted" rejects apparmor type OCI in alpha: bound by annotation (spoke shim) with RuntimeDefault in the field',
    ]);
    assert.equal(res.applied.length, 2, 'still counted as applied');
    // Re-invocation sees its own annotations: nothing more to do.
    assert.deepEqual(ok(mutatePod(out, bs, { podSecurity: 'restricted' })).patch, []);
  });

  it('baseline admits seccomp OCI but not AppArmor OCI; privileged and no label admit both', () => {
    const base = run('baseline');
    ok(base.r);
    assert.deepEqual(seccompOf(base.out), oci(REF_A));
    assert.deepEqual(base.out.spec?.containers?.[0]?.securityContext?.appArmorProfile, { type: 'RuntimeDefault' });
    assert.deepEqual(base.out.metadata?.annotations, { 'apparmor.profiles.spoke.dev/app': REF_B });
    for (const level of ['privileged', undefined]) {
      const { r, out } = run(level);
      assert.deepEqual(ok(r).warnings, []);
      assert.deepEqual(out.spec?.containers?.[0]?.securityContext, { seccompProfile: oci(REF_A), appArmorProfile: oci(REF_B) });
    }
  });

  it('a level it does not know is taken as restricted (a pod must never fail to create)', () => {
    const { r, out } = run('Restricted-ish');
    ok(r);
    assert.deepEqual(seccompOf(out), { type: 'RuntimeDefault' });
  });
});

// ---- property: never loosens ----

// OCI: the author's own reference; OCI-binding: one the bindings below also give (rule 6).
const PROFILE_TYPES = [undefined, 'RuntimeDefault', 'Localhost', 'Unconfined', 'OCI', 'OCI-binding'] as const;
const IMAGES = ['nginx', 'nginx:1.25', 'docker.io/library/nginx:1.26', 'redis', `registry.example.com/app@${DIGEST}`];

function profileOf(t: (typeof PROFILE_TYPES)[number]): SeccompProfile | undefined {
  if (t === undefined) return undefined;
  if (t === 'Localhost') return { type: 'Localhost', localhostProfile: 'x.json' };
  if (t === 'OCI') return oci(REF_C);
  if (t === 'OCI-binding') return oci(REF_B);
  return { type: t };
}

const arbContainer = (name: string) =>
  fc.record({
    image: fc.constantFrom(...IMAGES),
    seccomp: fc.constantFrom(...PROFILE_TYPES),
    apparmor: fc.constantFrom(...PROFILE_TYPES),
    privileged: fc.boolean(),
  }).map(({ image, seccomp, apparmor, privileged }) => {
    const sc: Record<string, unknown> = {};
    if (seccomp) sc.seccompProfile = profileOf(seccomp);
    if (apparmor) sc.appArmorProfile = profileOf(apparmor);
    if (privileged) sc.privileged = true;
    return { name, image, ...(Object.keys(sc).length ? { securityContext: sc } : {}) } as Container;
  });

const arbPod = fc
  .record({
    containers: fc.tuple(arbContainer('c0'), arbContainer('c1')),
    init: fc.option(arbContainer('i0'), { nil: undefined }),
    eph: fc.option(arbContainer('e0'), { nil: undefined }),
    podSeccomp: fc.constantFrom(...PROFILE_TYPES),
    label: fc.constantFrom('web', 'db'),
  })
  .map(({ containers, init, eph, podSeccomp, label }) =>
    pod([...containers], { init: init ? [init] : undefined, eph: eph ? [eph] : undefined, labels: { app: label }, podSc: podSeccomp ? { seccompProfile: profileOf(podSeccomp) } : undefined }),
  );

const arbBinding = fc
  .record({
    i: fc.nat(1000),
    kind: fc.constantFrom('seccomp' as const, 'apparmor' as const),
    image: fc.constantFrom('*', 'nginx', 'nginx:1.25', 'redis', `registry.example.com/app@${DIGEST}`),
    selector: fc.boolean(),
    containers: fc.option(fc.subarray(['c0', 'c1', 'i0', 'e0'], { minLength: 1 }), { nil: undefined }),
    override: fc.boolean(),
    ref: fc.constantFrom(REF_A, REF_B),
  })
  .map(({ i, kind, image, selector, containers, override, ref }) =>
    binding(`b${i}`, { kind, image, reference: ref, override, ...(selector ? { podSelector: { matchLabels: { app: 'web' } } } : {}), ...(containers ? { containers } : {}) }),
  );

function strictness(p: SeccompProfile | undefined): number {
  if (p === undefined || p.type === 'RuntimeDefault') return 1;
  if (p.type === 'Unconfined') return 0;
  return 2;
}

function effective(p: Pod, c: Container, field: 'seccompProfile' | 'appArmorProfile'): SeccompProfile | undefined {
  return c.securityContext?.[field] ?? p.spec?.securityContext?.[field];
}

describe('property: the mutation never loosens', () => {
  it("for every container the result is at least as strict; Localhost never changes, OCI only from a selecting binding's profile to the winner's; ephemeral and pod level untouched", () => {
    fc.assert(
      fc.property(arbPod, fc.uniqueArray(arbBinding, { maxLength: 4, selector: (b) => b.metadata.name }), fc.constantFrom('field' as const, 'annotations' as const), (p, bs, mode) => {
        const r = mutatePod(p, bs, { mode });
        // Valid bindings deny only when two of them tie (an admin's configuration error).
        if ('denied' in r) return void assert.match(r.denied, /same specificity/);
        const out = applyPatch(p, r.patch as Op[]);
        assert.deepEqual(out.spec?.ephemeralContainers, p.spec?.ephemeralContainers);
        assert.deepEqual(out.spec?.securityContext, p.spec?.securityContext);
        for (const list of ['containers', 'initContainers'] as const) {
          (p.spec?.[list] ?? []).forEach((before, i) => {
            const after = out.spec?.[list]?.[i] as Container;
            assert.equal(after.securityContext?.privileged, before.securityContext?.privileged);
            for (const field of ['seccompProfile', 'appArmorProfile'] as const) {
              const b = effective(p, before, field);
              const a = effective(out, after, field);
              assert.ok(strictness(a) >= strictness(b), `${list}[${i}].${field} loosened`);
              if (b?.type === 'Localhost') assert.deepEqual(a, b, `${list}[${i}].${field} changed`);
              if (b?.type === 'OCI' && !isDeepStrictEqual(a, b)) {
                // Rule 6: only a profile a binding of this kind gives, replaced by another binding's.
                const kind = field === 'seccompProfile' ? 'seccomp' : 'apparmor';
                const given = new Set(bs.filter((x) => (x.spec.kind ?? 'seccomp') === kind).map((x) => x.spec.reference));
                assert.ok(given.has(b.oci!.reference) && a?.type === 'OCI' && given.has(a.oci!.reference), `${list}[${i}].${field} changed from the author's OCI profile`);
              }
              if (b?.type === 'Unconfined' && a?.type !== 'Unconfined') {
                // only by a binding with override: true
                assert.ok(bs.some((x) => x.spec.override === true));
              }
            }
          });
        }
        return true;
      }),
      { numRuns: 2000 },
    );
  });
});
