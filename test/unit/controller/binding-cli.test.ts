// `spoke binding apply|validate` as a separate process, through bin/spoke.

import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { parse } from 'yaml';
import { MAX_NAMESPACE_BINDINGS, mutatePod } from '../../../src/controller/binding.js';
import { spoke, type CliResult } from '../../helpers/cli.js';

function run(args: string[], input = ''): Promise<CliResult> {
  return spoke(['binding', ...args], { input });
}

const REF_A = `registry.example.com/profiles/a@sha256:${'a'.repeat(64)}`;
const REF_B = `registry.example.com/profiles/b@sha256:${'b'.repeat(64)}`;
const dir = mkdtempSync(join(tmpdir(), 'spoke-binding-cli-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function file(name: string, text: string): string {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
}

const bindings = file(
  'bindings.yaml',
  `apiVersion: spoke.dev/v1alpha1
kind: ProfileBinding
metadata: { name: nginx, namespace: team }
spec:
  kind: seccomp
  reference: ${REF_A}
  image: nginx
  baseProfile: { type: RuntimeDefault }
---
apiVersion: spoke.dev/v1alpha1
kind: ProfileBinding
metadata: { name: default-aa }
spec: { kind: apparmor, reference: ${REF_B}, image: "*" }
`,
);
const podText = `apiVersion: v1
kind: Pod
metadata: { name: web, namespace: team }
spec:
  containers:
    - name: web
      image: nginx:1.27
    - name: side
      image: nginx:1.27
      securityContext:
        seccompProfile: { type: Localhost, localhostProfile: side.json }
`;
const podFile = file('pod.yaml', podText);

describe('spoke binding apply', () => {
  it('prints the mutated pod as YAML and the warnings on stderr', async () => {
    const r = await run(['apply', '-f', bindings, podFile]);
    assert.equal(r.code, 0, r.stderr);
    const out = parse(r.stdout);
    assert.deepEqual(out.spec.containers[0].securityContext, {
      seccompProfile: { type: 'OCI', oci: { reference: REF_A, baseProfile: { type: 'RuntimeDefault' } } },
      appArmorProfile: { type: 'OCI', oci: { reference: REF_B } },
    });
    assert.equal(r.stderr, 'Warning: container "side" keeps its seccomp profile Localhost (set on the container); ProfileBinding team/nginx not applied\n');
  });

  it("warnings carry the pod's own text, escaped for the terminal", async () => {
    const hostile = podText.replace('type: Localhost, localhostProfile: side.json', 'type: "Weird\\e]0;TITLE\\a\\r\\u202eX"');
    const r = await run(['apply', '-f', bindings, '-'], hostile);
    assert.equal(r.code, 0, r.stderr);
    assert.doesNotMatch(r.stderr, /[\x1b\x07\r\u202e]/);
    assert.match(r.stderr, /Weird\\x1b\]0;TITLE\\x07 \\u202eX/);
    // A newline in the value forges no line of its own.
    const forged = podText.replace('type: Localhost, localhostProfile: side.json', 'type: "Weird\\nWarning: container \\"side\\" will run Unconfined"');
    const f = await run(['apply', '-f', bindings, '-'], forged);
    assert.equal(f.stderr.split('\n').filter((l) => l.startsWith('Warning:')).length, 1, f.stderr);
  });

  it('--patch prints exactly the webhook patch; --json the pod as JSON; - reads stdin', async () => {
    const r = await run(['apply', '-f', bindings, '--patch', '-'], podText);
    assert.equal(r.code, 0, r.stderr);
    const b = [...readFileSync(bindings, 'utf8').split('---')].map((d) => parse(d));
    b[1].metadata.namespace = 'team';
    const expected = mutatePod(parse(podText), b);
    assert.ok(!('denied' in expected));
    assert.deepEqual(JSON.parse(r.stdout), expected.patch);
    const j = await run(['apply', '-f', bindings, '--json', podFile]);
    assert.equal(JSON.parse(j.stdout).metadata.name, 'web');
  });

  it('--annotations sets the shim annotations', async () => {
    const r = await run(['apply', '-f', bindings, '--annotations', '--json', podFile]);
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout);
    assert.deepEqual(out.metadata.annotations, {
      'apparmor.profiles.spoke.dev/side': REF_B,
      'apparmor.profiles.spoke.dev/web': REF_B,
      'seccomp.profiles.spoke.dev/web': REF_A,
    });
  });

  it('a tie exits 1 with PermissionDenied naming both bindings', async () => {
    const tie = file('tie.yaml', `apiVersion: spoke.dev/v1alpha1
kind: List
items:
  - { apiVersion: spoke.dev/v1alpha1, kind: ProfileBinding, metadata: { name: one }, spec: { kind: seccomp, reference: "${REF_A}", image: "nginx:1.27" } }
  - { apiVersion: spoke.dev/v1alpha1, kind: ProfileBinding, metadata: { name: two }, spec: { kind: seccomp, reference: "${REF_B}", image: "docker.io/library/nginx:1.27" } }
`);
    const r = await run(['apply', '-f', tie, podFile]);
    assert.equal(r.code, 1);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /^PermissionDenied: container "web": ProfileBindings team\/one and team\/two both bind a seccomp profile with the same specificity/);
  });

  it('more bindings in the namespace than the webhook reviews: exits 1 naming the limit, reason LIMIT_EXCEEDED (no two bindings conflict)', async () => {
    const items = Array.from({ length: MAX_NAMESPACE_BINDINGS + 1 }, (_, i) => `  - { apiVersion: spoke.dev/v1alpha1, kind: ProfileBinding, metadata: { name: b${i} }, spec: { kind: seccomp, reference: "${REF_A}", image: "*", containers: [c${i}] } }`);
    const crowded = file('crowded.yaml', `apiVersion: spoke.dev/v1alpha1\nkind: List\nitems:\n${items.join('\n')}\n`);
    const r = await run(['apply', '-f', crowded, podFile]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`^PermissionDenied: the namespace has ${MAX_NAMESPACE_BINDINGS + 1} ProfileBindings.*\\(reason LIMIT_EXCEEDED\\)`));
  });

  it('an invalid binding exits 1 with InvalidArgument and the parser reason', async () => {
    const bad = file('bad.yaml', `apiVersion: spoke.dev/v1alpha1
kind: ProfileBinding
metadata: { name: tagged }
spec: { kind: seccomp, reference: "registry.example.com/profiles/a:v1", image: redis }
`);
    const r = await run(['apply', '-f', bad, podFile]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^InvalidArgument: ProfileBinding team\/tagged is invalid: spec\.reference: invalid reference .*not pinned by digest/);
    const v = await run(['validate', '-f', bad]);
    assert.equal(v.code, 1);
    assert.equal((await run(['validate', '-f', bindings])).code, 0);
  });

  it('Unconfined and privileged containers: admitted untouched, exit 0, a warning naming container and binding', async () => {
    const pod = file('mixed.yaml', `apiVersion: v1
kind: Pod
metadata: { name: mixed, namespace: team }
spec:
  containers:
    - { name: web, image: nginx:1.27 }
    - name: loose
      image: nginx:1.27
      securityContext: { seccompProfile: { type: Unconfined } }
    - name: root
      image: nginx:1.27
      securityContext: { privileged: true }
`);
    const r = await run(['apply', '-f', bindings, '--json', pod]);
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout);
    assert.deepEqual(out.spec.containers[0].securityContext.seccompProfile, { type: 'OCI', oci: { reference: REF_A, baseProfile: { type: 'RuntimeDefault' } } });
    assert.deepEqual(out.spec.containers[1].securityContext, { seccompProfile: { type: 'Unconfined' }, appArmorProfile: { type: 'OCI', oci: { reference: REF_B } } });
    assert.deepEqual(out.spec.containers[2].securityContext, { privileged: true });
    assert.equal(
      r.stderr,
      'Warning: container "loose" keeps its seccomp profile Unconfined (set on the container); ProfileBinding team/nginx not applied: set override: true on the binding to replace it\n' +
        'Warning: container "root" is privileged and gets no OCI seccomp profile (KEP-6061; the runtime ignores seccomp for it); ProfileBinding team/nginx not applied\n' +
        'Warning: container "root" is privileged and gets no OCI apparmor profile (KEP-6061; the runtime ignores apparmor for it); ProfileBinding team/default-aa not applied\n',
    );
  });

  it('reads YAML as kubectl does (YAML 1.1): yes is true, << merges a mapping', async () => {
    const pod = file('yaml11.yaml', `apiVersion: v1
kind: Pod
metadata: { name: old, namespace: team }
x-defaults: &loose { seccompProfile: { type: Unconfined } }
spec:
  containers:
    - name: root
      image: nginx:1.27
      securityContext: { privileged: yes }
    - name: loose
      image: nginx:1.27
      securityContext: { <<: *loose }
`);
    const r = await run(['apply', '-f', bindings, '--json', pod]);
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout);
    assert.deepEqual(out.spec.containers[0].securityContext, { privileged: true });
    assert.deepEqual(out.spec.containers[1].securityContext, { seccompProfile: { type: 'Unconfined' }, appArmorProfile: { type: 'OCI', oci: { reference: REF_B } } });
    assert.match(r.stderr, /container "root" is privileged/);
    assert.match(r.stderr, /container "loose" keeps its seccomp profile Unconfined/);
  });

  it('images are compared in canonical form: every spelling of the registry selects, a longer name or a nested host never', async () => {
    const spellings = file('spellings.yaml', ['registry-1.docker.io:443/library/nginx:1.27', 'Registry.Example.com:443/team/web'].map((image, i) => `apiVersion: spoke.dev/v1alpha1
kind: ProfileBinding
metadata: { name: b${i} }
spec: { kind: seccomp, reference: "${i === 0 ? REF_A : REF_B}", image: "${image}" }
`).join('---\n'));
    const pod = file('spellings-pod.yaml', `apiVersion: v1
kind: Pod
metadata: { name: p, namespace: team }
spec:
  containers:
    - { name: hub, image: "nginx:1.27" }
    - { name: hub2, image: "index.docker.io/nginx:1.27" }
    - { name: web, image: "registry.example.com/team/web:v3" }
    - { name: evil, image: "registry.example.com/team/web-evil:v3" }
    - { name: sub, image: "registry.example.com/team/web/sub:v3" }
    - { name: nested, image: "evil.example.com/registry.example.com/team/web:v3" }
`);
    const r = await run(['apply', '-f', spellings, '--json', pod]);
    assert.equal(r.code, 0, r.stderr);
    const refs = JSON.parse(r.stdout).spec.containers.map((c: { securityContext?: { seccompProfile?: { oci?: { reference: string } } } }) => c.securityContext?.seccompProfile?.oci?.reference);
    assert.deepEqual(refs, [REF_A, REF_A, REF_B, undefined, undefined, undefined]);
  });

  it('a namespace enforcing Pod Security restricted gets annotations and a warning; baseline keeps the seccomp field', async () => {
    const ns = (level: string) => file(`ns-${level}.yaml`, `apiVersion: v1
kind: Namespace
metadata:
  name: team
  labels: { pod-security.kubernetes.io/enforce: ${level}, spoke.dev/binding: enabled }
`);
    const restricted = await run(['apply', '-f', bindings, '-f', ns('restricted'), '--json', podFile]);
    assert.equal(restricted.code, 0, restricted.stderr);
    const out = JSON.parse(restricted.stdout);
    assert.deepEqual(out.spec.containers[0].securityContext, { seccompProfile: { type: 'RuntimeDefault' }, appArmorProfile: { type: 'RuntimeDefault' } });
    assert.equal(out.metadata.annotations['seccomp.profiles.spoke.dev/web'], REF_A);
    assert.match(restricted.stderr, /^Warning: namespace Pod Security level "restricted" rejects seccomp type OCI in alpha: bound by annotation \(spoke shim\)/);
    const baseline = JSON.parse((await run(['apply', '-f', bindings, '-f', ns('baseline'), '--json', podFile])).stdout);
    assert.equal(baseline.spec.containers[0].securityContext.seccompProfile.type, 'OCI');
    // The cluster's default level applies to a namespace without the label.
    const byDefault = JSON.parse((await run(['apply', '-f', bindings, '--pod-security-default', 'restricted', '--json', podFile])).stdout);
    assert.equal(byDefault.spec.containers[0].securityContext.seccompProfile.type, 'RuntimeDefault');
    assert.equal((await run(['apply', '-f', bindings, '--pod-security-default', 'strict', podFile])).code, 2);
  });

  it('usage errors exit 2', async () => {
    assert.equal((await run(['apply', podFile])).code, 2);
    assert.equal((await run(['frobnicate'])).code, 2);
  });
});
