// The binding webhook over real HTTPS (a certificate generated here with openssl), answering
// real admission.k8s.io/v1 AdmissionReview documents; the JSON Patch is applied and checked
// with an independent applier. The informer-backed binding source and the status writer run
// on @kubernetes/client-node against test/helpers/fake-apiserver.ts (no kube-apiserver can be
// installed here), which implements list/watch with resourceVersions, bookmarks, 410 Gone and
// 409 conflicts as the real server does.

import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcessByStdio } from 'node:child_process';
import { randomUUID, X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { connect as netConnect } from 'node:net';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { SPOKE_BIN, spoke } from '../helpers/cli.js';
import { after, before, describe, it } from 'node:test';
import type { KubeConfig } from '@kubernetes/client-node';
import type { PodMatch } from '../../src/controller/admission.js';
import { mutatePod } from '../../src/controller/binding.js';
import { InformerBindingSource, InformerNamespaceSource, KubeStatusClient, PodStatusInformer } from '../../src/controller/kube.js';
import { StaticBindingSource, StaticNamespaceSource, StaticRecordingSource, type BindingSource } from '../../src/controller/source.js';
import { signRecordingProof, verifyRecordingProof } from '../../src/core/recording-proof.js';
import { StatusUpdater } from '../../src/controller/binding-status.js';
import type { Pod, ProfileBinding } from '../../src/controller/types.js';
import { FINALIZE_ANNOTATION, type ProfileRecording } from '../../src/controller/recording.js';
import { MAX_CONNECTIONS, MAX_REVIEW_BYTES, WebhookServer } from '../../src/controller/webhook.js';
import { fakeKubeConfig, FakeApiServer, PROFILE_BINDINGS, PROFILE_RECORDINGS, PROFILE_RECORDING_RESULTS, type ResourceDef } from '../helpers/fake-apiserver.js';
import { applyPatch, type Op } from '../helpers/json-patch.js';
import { startRegistry } from '../helpers/registry.js';
import { waitFor, within } from '../helpers/wait.js';

const REF_A = `registry.example.com/profiles/a@sha256:${'a'.repeat(64)}`;
const REF_B = `registry.example.com/profiles/b@sha256:${'b'.repeat(64)}`;
const NS: ResourceDef = { group: '', version: 'v1', plural: 'namespaces', kind: 'Namespace' };
const PODS: ResourceDef = { group: '', version: 'v1', plural: 'pods', kind: 'Pod' };

function namespace(name: string, labels: Record<string, string>) {
  return { metadata: { name, labels: { 'spoke.dev/binding': 'enabled', ...labels } } };
}

const dir = mkdtempSync(join(tmpdir(), 'spoke-webhook-'));
const certFile = join(dir, 'tls.crt');
const keyFile = join(dir, 'tls.key');

function makeCert(cn: string): void {
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', keyFile, '-out', certFile, '-days', '1', '-subj', `/CN=${cn}`,
    '-addext', 'subjectAltName=DNS:localhost,DNS:spoke-controller.spoke-system.svc,IP:127.0.0.1',
  ], { stdio: 'pipe' });
}
makeCert('spoke-controller.spoke-system.svc');

/** A client identity: the API server's (signed by the CA given as --admission-client-ca) or another's. */
interface ClientCert {
  cert: Buffer;
  key: Buffer;
}

const clientCaFile = join(dir, 'client-ca.crt');
function ecKey(out: string): void {
  execFileSync('openssl', ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-out', out], { stdio: 'pipe' });
}
function makeClientCerts(): { apiServer: ClientCert; stranger: ClientCert; node: ClientCert } {
  const caKey = join(dir, 'client-ca.key');
  ecKey(caKey);
  execFileSync('openssl', ['req', '-x509', '-key', caKey, '-out', clientCaFile, '-days', '1', '-subj', '/CN=apiserver-client-ca'], { stdio: 'pipe' });
  const issue = (name: string, signer: { cert: string; key: string } | undefined): ClientCert => {
    const key = join(dir, `${name}.key`);
    const csr = join(dir, `${name}.csr`);
    const crt = join(dir, `${name}.crt`);
    ecKey(key);
    execFileSync('openssl', ['req', '-new', '-key', key, '-out', csr, '-subj', `/CN=${name}`], { stdio: 'pipe' });
    const sign = signer ? ['-CA', signer.cert, '-CAkey', signer.key, '-set_serial', '1'] : ['-key', key];
    execFileSync('openssl', ['x509', '-req', '-in', csr, ...sign, '-out', crt, '-days', '1'], { stdio: 'pipe' });
    return { cert: readFileSync(crt), key: readFileSync(key) };
  };
  const ca = { cert: clientCaFile, key: caKey };
  // `node`: signed by the same CA under another name, as a cluster CA signs kubelets.
  return { apiServer: issue('kube-apiserver', ca), stranger: issue('stranger', undefined), node: issue('system-node-evil', ca) };
}
const clients = makeClientCerts();

function binding(name: string, spec: Partial<ProfileBinding['spec']>, ns = 'team'): ProfileBinding {
  return { apiVersion: 'spoke.dev/v1alpha1', kind: 'ProfileBinding', metadata: { name, namespace: ns }, spec: { kind: 'seccomp', reference: REF_A, image: '*', ...spec } };
}

function deploymentPod(containers: Pod['spec']): Pod {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      generateName: 'web-7d9f8b-',
      namespace: 'team',
      labels: { app: 'web', 'pod-template-hash': '7d9f8b' },
      ownerReferences: [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: 'web-7d9f8b', uid: '1b0c', controller: true }],
    },
    spec: containers,
  };
}

let uidCounter = 0;
/** An admission.k8s.io/v1 AdmissionReview of a `gvk` object served as `resource`; `request` holds the rest of the request (object, namespace, …). */
function admissionReview(gvk: { group: string; version: string; kind: string }, resource: string, request: Record<string, unknown>) {
  const gvr = { group: gvk.group, version: gvk.version, resource };
  return {
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: { uid: `705ab4f5-6393-11e8-b7cc-42010a80${String(++uidCounter).padStart(4, '0')}`, kind: gvk, resource: gvr, requestKind: gvk, requestResource: gvr, operation: 'CREATE', oldObject: null, dryRun: false, ...request },
  };
}

function podReview(pod: Pod, opts: { operation?: string; dryRun?: boolean; namespace?: string } = {}) {
  return admissionReview({ group: '', version: 'v1', kind: 'Pod' }, 'pods', {
    name: '',
    namespace: opts.namespace ?? 'team',
    ...(opts.operation ? { operation: opts.operation } : {}),
    userInfo: { username: 'system:serviceaccount:kube-system:replicaset-controller', uid: 'a1b2', groups: ['system:serviceaccounts', 'system:authenticated'] },
    object: pod,
    dryRun: opts.dryRun ?? false,
    options: { kind: 'CreateOptions', apiVersion: 'meta.k8s.io/v1' },
  });
}

function bindingReview(obj: ProfileBinding, operation = 'CREATE') {
  return admissionReview({ group: 'spoke.dev', version: 'v1alpha1', kind: 'ProfileBinding' }, 'profilebindings', { name: obj.metadata.name, namespace: obj.metadata.namespace, operation, userInfo: { username: 'admin' }, object: obj });
}

interface Answer {
  status: number;
  body: string;
  json: () => { apiVersion: string; kind: string; response: { uid: string; allowed: boolean; patch?: string; patchType?: string; warnings?: string[]; status?: { code: number; message: string } } };
  peerCert: X509Certificate | undefined;
}

/** `client`: the certificate the connection presents (the API server's by default; null for none). */
function post(port: number, path: string, body: unknown, headers: Record<string, string> = { 'content-type': 'application/json' }, method = 'POST', client: ClientCert | null = clients.apiServer): Promise<Answer> {
  const ca = readFileSync(certFile);
  return new Promise((resolve, reject) => {
    const data = typeof body === 'string' ? body : JSON.stringify(body);
    const req = request({ host: '127.0.0.1', port, path, method, ca, agent: false, ...(client ?? {}), headers: { ...headers, 'content-length': Buffer.byteLength(data) } }, (res) => {
      const chunks: Buffer[] = [];
      const raw = (res.socket as import('node:tls').TLSSocket).getPeerX509Certificate?.();
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        resolve({ status: res.statusCode ?? 0, body: text, json: () => JSON.parse(text), peerCert: raw });
      });
    });
    req.on('error', reject);
    req.end(method === 'GET' ? undefined : data);
  });
}

/** A pod review as the API server sends it: over a connection with its client certificate. */
function review(port: number, body: unknown): Promise<Answer> {
  return post(port, '/mutate-pods', body, undefined, 'POST', clients.apiServer);
}

function patchedPod(pod: Pod, a: Answer): Pod {
  const r = a.json().response;
  assert.equal(r.allowed, true, r.status?.message);
  if (r.patch === undefined) return pod;
  assert.equal(r.patchType, 'JSONPatch');
  return applyPatch(pod, JSON.parse(Buffer.from(r.patch, 'base64').toString('utf8')) as Op[]);
}

async function startWebhook(source: BindingSource, extra: Partial<ConstructorParameters<typeof WebhookServer>[0]> = {}) {
  const server = new WebhookServer({ certFile, keyFile, source, host: '127.0.0.1', port: 0, certCheckIntervalMs: 0, ...extra });
  const addr = await server.listen();
  return { server, port: addr.port };
}

after(() => rmSync(dir, { recursive: true, force: true }));

describe('webhook over HTTPS: recording markings are the webhook\'s own', () => {
  const key = Buffer.alloc(32, 5);
  const now = 1_800_000_000;
  let server: WebhookServer;
  let port: number;
  const recordings = new StaticRecordingSource([
    { apiVersion: 'spoke.dev/v1alpha1', kind: 'ProfileRecording', metadata: { name: 'rec', namespace: 'team' }, spec: { podSelector: { matchLabels: { app: 'web' } }, publish: { repository: 'registry.example.com/rec/team' } } },
  ]);
  const recordingAnnotations = (p: Pod) => Object.fromEntries(Object.entries(p.metadata?.annotations ?? {}).filter(([k]) => k.startsWith('recording.spoke.dev/')));

  before(async () => {
    ({ server, port } = await startWebhook(new StaticBindingSource([]), { recordings, recordingKey: key, now: () => now * 1000, clientCaFile }));
  });
  after(() => server.close());

  it('a selected pod is marked with a proof the node verifies for its generated name, and labelled', async () => {
    const pod = deploymentPod({ containers: [{ name: 'web', image: 'nginx:1.27' }] });
    const out = patchedPod(pod, await review(port, podReview(pod)));
    const ann = recordingAnnotations(out);
    assert.deepEqual(Object.keys(ann).sort(), ['recording.spoke.dev/containers', 'recording.spoke.dev/name', 'recording.spoke.dev/proof']);
    assert.equal(ann['recording.spoke.dev/containers'], 'web');
    assert.equal(out.metadata?.labels?.['recording.spoke.dev/name'], 'rec');
    const seen = { namespace: 'team', podName: 'web-7d9f8b-x2b4z', recording: 'rec', containers: ['web'] };
    assert.deepEqual(verifyRecordingProof(key, ann['recording.spoke.dev/proof'], seen, now), { ok: true, expiresAt: now + 3600 });
    assert.equal(verifyRecordingProof(key, ann['recording.spoke.dev/proof'], { ...seen, namespace: 'other' }, now).ok, false);
  });

  it('a review from a caller without the API server\'s client certificate is refused (403), unread: no proof, no answer', async () => {
    // A proof would let them put any pod of a namespace with a recording, opted in or not, under
    // the logging profile; an answer would tell them the namespace's bindings.
    const pod = deploymentPod({ containers: [{ name: 'web', image: 'nginx:1.27' }] });
    for (const client of [null, clients.stranger]) {
      const a = await post(port, '/mutate-pods', podReview(pod), undefined, 'POST', client);
      assert.equal(a.status, 403, a.body);
    }
  });

  it('user-set recording annotations are removed, with warnings, on pods it does not mark — also a proof copied from a marked pod', async () => {
    const marked = deploymentPod({ containers: [{ name: 'web', image: 'nginx:1.27' }] });
    const copied = recordingAnnotations(patchedPod(marked, await review(port, podReview(marked))));
    const forged = { ...copied, 'recording.spoke.dev/containers': 'app', 'recording.spoke.dev/anything': 'x' };
    for (const [what, ns, labels] of [
      ['not selected', 'team', { app: 'db' }],
      ['namespace without recordings', 'other', { app: 'web' }],
    ] as const) {
      const pod: Pod = { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'mine', namespace: ns, labels: { ...labels }, annotations: { ...forged, keep: 'me' } }, spec: { containers: [{ name: 'app', image: 'busybox:1.36' }] } };
      const a = await review(port, podReview(pod, { namespace: ns }));
      const out = patchedPod(pod, a);
      assert.deepEqual(out.metadata?.annotations, { keep: 'me' }, what);
      const removed = (a.json().response.warnings ?? []).filter((w) => /^annotation recording\.spoke\.dev\/\S+ removed: only spoke's webhook marks pods for recording/.test(w));
      assert.equal(removed.length, 4, what);
    }
  });

  it('/validate-results: a result is admitted only for the node the requester\'s token is bound to', async () => {
    const review = (node: string, extra: Record<string, string[]> | undefined, operation = 'CREATE') =>
      admissionReview({ group: 'spoke.dev', version: 'v1alpha1', kind: 'ProfileRecordingResult' }, 'profilerecordingresults', {
        namespace: 'team',
        operation,
        userInfo: { username: 'system:serviceaccount:spoke-system:spoke-recorder', ...(extra ? { extra } : {}) },
        object: { apiVersion: 'spoke.dev/v1alpha1', kind: 'ProfileRecordingResult', metadata: { name: 'rec-1', namespace: 'team' }, spec: { recording: 'rec', pod: 'p', container: 'app', runtime: 'runc', node, syscalls: ['read'] } },
      });
    const answer = async (body: unknown) => (await post(port, '/validate-results', body)).json().response;
    const bound = { 'authentication.kubernetes.io/node-name': ['node-1'] };
    assert.equal((await answer(review('node-1', bound))).allowed, true);
    const other = await answer(review('node-2', bound));
    assert.deepEqual([other.allowed, other.status?.code], [false, 403]);
    assert.match(other.status?.message ?? '', /spec\.node "node-2" is not the requester's node "node-1"/);
    const unbound = await answer(review('node-1', undefined));
    assert.equal(unbound.allowed, false);
    assert.match(unbound.status?.message ?? '', /node-bound ServiceAccount token .* has none/);
    assert.equal((await answer(review('node-1', { 'authentication.kubernetes.io/node-name': ['node-1', 'node-2'] }))).allowed, false);
    assert.equal((await answer(review('node-2', bound, 'DELETE'))).allowed, true, 'only CREATE is judged');
  });

  it('/validate-pod-updates: recording annotations are never added or changed after creation; removing them is fine', async () => {
    const marked = deploymentPod({ containers: [{ name: 'web', image: 'nginx:1.27' }] });
    const copied = recordingAnnotations(patchedPod(marked, await review(port, podReview(marked))));
    const mine = (annotations: Record<string, string>): Pod => ({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'web-7d9f8b-qqqqq', namespace: 'team', annotations }, spec: { containers: [{ name: 'web', image: 'nginx:1.27' }] } });
    const update = (before: Pod, after: Pod) => ({ ...podReview(after, { operation: 'UPDATE' }), request: { ...podReview(after, { operation: 'UPDATE' }).request, oldObject: before } });
    const answer = async (before: Pod, after: Pod) => (await post(port, '/validate-pod-updates', update(before, after))).json().response;
    const added = await answer(mine({ keep: 'me' }), mine({ keep: 'me', ...copied }));
    assert.deepEqual([added.allowed, added.status?.code], [false, 403]);
    assert.match(added.status?.message ?? '', /recording\.spoke\.dev\/containers, recording\.spoke\.dev\/name, recording\.spoke\.dev\/proof: recording annotations are set by spoke's webhook when the pod is created, never later/);
    const changed = await answer(mine(copied), mine({ ...copied, 'recording.spoke.dev/containers': 'web,debugger' }));
    assert.equal(changed.allowed, false);
    assert.equal((await answer(mine(copied), mine({ ...copied, other: 'label-change' }))).allowed, true, 'other changes pass');
    assert.equal((await answer(mine(copied), mine({}))).allowed, true, 'removing them only makes the pod stricter');
  });

  it('/validate-pod-updates: annotation-mode profile annotations are never added, changed or removed after creation', async () => {
    // The kubelet builds each CreateContainer's sandbox config from the current pod: removing
    // the annotation a binding wrote would give the next container start plain RuntimeDefault.
    const bound = { 'seccomp.profiles.spoke.dev/web': REF_A, 'apparmor.profiles.spoke.dev/web': REF_B };
    const mine = (annotations: Record<string, string>): Pod => ({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'web-1', namespace: 'team', annotations }, spec: { containers: [{ name: 'web', image: 'nginx:1.27', securityContext: { seccompProfile: { type: 'RuntimeDefault' } } }] } });
    const update = (before: Pod, after: Pod) => ({ ...podReview(after, { operation: 'UPDATE' }), request: { ...podReview(after, { operation: 'UPDATE' }).request, oldObject: before } });
    const answer = async (before: Pod, after: Pod) => (await post(port, '/validate-pod-updates', update(before, after))).json().response;
    const removed = await answer(mine(bound), mine({ 'apparmor.profiles.spoke.dev/web': REF_B }));
    assert.deepEqual([removed.allowed, removed.status?.code], [false, 403]);
    assert.match(removed.status?.message ?? '', /seccomp\.profiles\.spoke\.dev\/web: profile annotations are set when the pod is created, never changed later/);
    assert.equal((await answer(mine(bound), mine({ ...bound, 'seccomp.profiles.spoke.dev/web': REF_B }))).allowed, false, 'changed');
    assert.equal((await answer(mine({}), mine(bound))).allowed, false, 'added');
    assert.equal((await answer(mine(bound), mine({ ...bound, other: 'x' }))).allowed, true, 'other changes pass');
  });

  it('/validate-pod-updates: a pods/status update is held to the same annotation rules (it may change annotations)', async () => {
    // Kubernetes resets spec on a status update, not metadata: the annotations a status writer
    // sends are stored, and the kubelet reads them at the next container start.
    const bound = { 'seccomp.profiles.spoke.dev/web': REF_A };
    const mine = (annotations: Record<string, string>): Pod => ({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'web-2', namespace: 'team', annotations }, spec: { containers: [{ name: 'web', image: 'nginx:1.27' }] } });
    const statusUpdate = (before: Pod, after: Pod) => {
      const r = podReview(after, { operation: 'UPDATE' });
      return { ...r, request: { ...r.request, subResource: 'status', oldObject: before } };
    };
    const answer = async (before: Pod, after: Pod) => (await post(port, '/validate-pod-updates', statusUpdate(before, after))).json().response;
    assert.equal((await answer(mine(bound), mine({}))).allowed, false, 'a binding annotation removed');
    assert.equal((await answer(mine({}), mine({ 'recording.spoke.dev/name': 'rec' }))).allowed, false, 'a recording annotation added');
    assert.equal((await answer(mine(bound), mine({ ...bound, other: 'x' }))).allowed, true, 'other changes pass');
  });

  it('without a recording key nothing is marked and user-set annotations are still removed', async () => {
    const { server: plain, port: p2 } = await startWebhook(new StaticBindingSource([]), { recordings, clientCaFile });
    try {
      const pod = deploymentPod({ containers: [{ name: 'web', image: 'nginx:1.27' }] });
      pod.metadata!.annotations = { 'recording.spoke.dev/name': 'rec' };
      const a = await review(p2, podReview(pod));
      assert.deepEqual(recordingAnnotations(patchedPod(pod, a)), {});
      assert.ok(a.json().response.warnings?.some((w) => /not marked: the controller has no recording key/.test(w)));
    } finally {
      await plain.close();
    }
  });
});

describe('webhook over HTTPS with AdmissionReview v1', () => {
  const matches: PodMatch[] = [];
  let server: WebhookServer;
  let port: number;
  const source = new StaticBindingSource([
    binding('web-nginx', { image: 'nginx', podSelector: { matchLabels: { app: 'web' } } }),
    binding('all', { reference: REF_B }),
    binding('aa', { kind: 'apparmor', image: 'nginx', reference: REF_B }),
    binding('tie-1', { image: 'redis:7' }, 'other'),
    binding('tie-2', { image: 'docker.io/library/redis:7', reference: REF_B }, 'other'),
  ]);

  before(async () => {
    ({ server, port } = await startWebhook(source, { clientCaFile, onApplied: (m) => matches.push(m) }));
  });
  after(() => server.close());

  it("/validate-pod-updates: an image change that changes a container's binding is refused; one that keeps it passes", async () => {
    // Kubernetes lets a pod UPDATE change container images, and the kubelet restarts the
    // container with the new one: the binding decided for the old image would stay with it.
    const created = deploymentPod({ initContainers: [{ name: 'init', image: 'busybox:1.36' }], containers: [{ name: 'web', image: 'busybox:1.36' }] });
    const stored = patchedPod(created, await review(port, podReview(created)));
    assert.deepEqual(stored.spec?.containers?.[0]?.securityContext, { seccompProfile: { type: 'OCI', oci: { reference: REF_B } } });
    const withImage = (list: 'containers' | 'initContainers', image: string): Pod => ({ ...stored, spec: { ...stored.spec, [list]: stored.spec![list]!.map((c) => ({ ...c, image })) } });
    const update = (before: Pod, after: Pod) => ({ ...podReview(after, { operation: 'UPDATE' }), request: { ...podReview(after, { operation: 'UPDATE' }).request, oldObject: before } });
    const answer = async (after: Pod) => (await post(port, '/validate-pod-updates', update(stored, after))).json().response;
    // busybox → nginx: the app=web nginx binding (REF_A) and the AppArmor one would win now.
    const moved = await answer(withImage('containers', 'nginx:1.27'));
    assert.deepEqual([moved.allowed, moved.status?.code], [false, 403]);
    assert.match(moved.status?.message ?? '', /container "web": its ProfileBindings give the new image another profile than the one it carries/);
    const movedInit = await answer(withImage('initContainers', 'docker.io/library/nginx:1.27'));
    assert.equal(movedInit.allowed, false);
    assert.equal((await answer(withImage('containers', 'busybox:1.37'))).allowed, true, 'the same binding wins for the new image');
    assert.equal((await answer({ ...stored, metadata: { ...stored.metadata, labels: { ...stored.metadata!.labels, extra: 'x' } } })).allowed, true, 'no image change');
    // An image ID runs whatever local image it names, nginx's too: refused where a binding names
    // images, as it is at creation, though `all` would still win for it.
    const imageId = `sha256:${'e'.repeat(64)}`;
    const byId = await answer(withImage('containers', imageId));
    assert.deepEqual([byId.allowed, byId.status?.code], [false, 403]);
    assert.match(byId.status?.message ?? '', /container "web": image sha256:e+ is an image ID, .*ProfileBinding team\/web-nginx/);
    const createdById = deploymentPod({ containers: [{ name: 'web', image: imageId }] });
    assert.equal((await review(port, podReview(createdById))).json().response.allowed, false, 'as a create is');
  });

  it('patches a pod CREATE: containers and init containers, the most specific binding, uid echoed', async () => {
    const pod = deploymentPod({
      initContainers: [{ name: 'migrate', image: 'busybox:1.36' }],
      containers: [
        { name: 'web', image: 'docker.io/library/nginx:1.27', securityContext: { runAsNonRoot: true } },
        { name: 'sidecar', image: 'envoyproxy/envoy:v1.30', securityContext: { seccompProfile: { type: 'Localhost', localhostProfile: 'envoy.json' } } },
      ],
    });
    const body = podReview(pod);
    const a = await review(port, body);
    assert.equal(a.status, 200);
    const doc = a.json();
    assert.equal(doc.apiVersion, 'admission.k8s.io/v1');
    assert.equal(doc.kind, 'AdmissionReview');
    assert.equal(doc.response.uid, body.request.uid);
    const out = patchedPod(pod, a);
    const spec = out.spec!;
    assert.deepEqual(spec.initContainers?.[0]?.securityContext, { seccompProfile: { type: 'OCI', oci: { reference: REF_B } } });
    assert.deepEqual(spec.containers?.[0]?.securityContext, {
      runAsNonRoot: true,
      seccompProfile: { type: 'OCI', oci: { reference: REF_A } },
      appArmorProfile: { type: 'OCI', oci: { reference: REF_B } },
    });
    assert.deepEqual(spec.containers?.[1]?.securityContext, { seccompProfile: { type: 'Localhost', localhostProfile: 'envoy.json' } });
    assert.deepEqual(doc.response.warnings, ['container "sidecar" keeps its seccomp profile Localhost (set on the container); ProfileBinding team/all not applied']);
    assert.deepEqual(matches.at(-1)?.workload, { kind: 'ReplicaSet', name: 'web-7d9f8b' });
  });

  it('denies a tie with a 403 naming both bindings', async () => {
    const a = await post(port, '/mutate-pods', podReview({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'cache' }, spec: { containers: [{ name: 'redis', image: 'redis:7' }] } }, { namespace: 'other' }));
    const r = a.json().response;
    assert.equal(r.allowed, false);
    assert.equal(r.status?.code, 403);
    assert.match(r.status?.message ?? '', /other\/tie-1 and other\/tie-2/);
    assert.equal(r.patch, undefined);
  });

  it('admits privileged and Unconfined containers untouched, warns naming container and binding, and records the skips', async () => {
    const pod = deploymentPod({
      containers: [
        { name: 'root', image: 'alpine', securityContext: { privileged: true } },
        { name: 'loose', image: 'alpine', securityContext: { seccompProfile: { type: 'Unconfined' } } },
      ],
    });
    const a = await review(port, podReview(pod));
    const r = a.json().response;
    assert.equal(r.allowed, true);
    assert.deepEqual(patchedPod(pod, a).spec?.containers, pod.spec?.containers, 'neither container is touched');
    assert.deepEqual(r.warnings, [
      'container "root" is privileged and gets no OCI seccomp profile (KEP-6061; the runtime ignores seccomp for it); ProfileBinding team/all not applied',
      'container "loose" keeps its seccomp profile Unconfined (set on the container); ProfileBinding team/all not applied: set override: true on the binding to replace it',
    ]);
    assert.deepEqual(matches.at(-1)?.skipped, [
      { binding: 'team/all', kind: 'seccomp', container: 'root', reason: 'Privileged' },
      { binding: 'team/all', kind: 'seccomp', container: 'loose', reason: 'Unconfined' },
    ]);
  });

  it('binds the ephemeral container a pods/ephemeralcontainers update adds (kubectl debug), and only it', async () => {
    const created = deploymentPod({ containers: [{ name: 'web', image: 'nginx:1.27' }] });
    const stored = patchedPod(created, await review(port, podReview(created)));
    const debug = { name: 'debugger-x7k2p', image: 'busybox:1.36', targetContainerName: 'web' };
    const updated: Pod = { ...stored, spec: { ...stored.spec, ephemeralContainers: [debug] } };
    const body = podReview(updated, { operation: 'UPDATE' });
    const a = await review(port, { ...body, request: { ...body.request, subResource: 'ephemeralcontainers', oldObject: stored, options: { kind: 'UpdateOptions', apiVersion: 'meta.k8s.io/v1' } } });
    const out = patchedPod(updated, a);
    assert.deepEqual(out.spec?.ephemeralContainers?.[0], { ...debug, securityContext: { seccompProfile: { type: 'OCI', oci: { reference: REF_B } } } });
    assert.deepEqual(out.spec?.containers, stored.spec?.containers, 'the containers made with the pod are not touched');
  });

  it('allows UPDATE untouched, and records nothing for dry runs', async () => {
    const pod = deploymentPod({ containers: [{ name: 'web', image: 'nginx' }] });
    const upd = (await post(port, '/mutate-pods', podReview(pod, { operation: 'UPDATE' }))).json().response;
    assert.deepEqual({ allowed: upd.allowed, patch: upd.patch }, { allowed: true, patch: undefined });
    const before = matches.length;
    const dry = await review(port, podReview(pod, { dryRun: true }));
    patchedPod(pod, dry);
    assert.equal(matches.length, before, 'dry run must not be recorded (sideEffects: NoneOnDryRun)');
  });

  it('validating webhook: a tag reference is denied with the node parser reason; a good one allowed', async () => {
    const bad = (await post(port, '/validate-bindings', bindingReview(binding('tagged', { reference: 'registry.example.com/profiles/a:v1' })))).json().response;
    assert.equal(bad.allowed, false);
    assert.equal(bad.status?.code, 422);
    assert.match(bad.status?.message ?? '', /team\/tagged .*spec\.reference: invalid reference "registry\.example\.com\/profiles\/a:v1": not pinned by digest/);
    const short = (await post(port, '/validate-bindings', bindingReview(binding('short', { reference: `profiles/a@sha256:${'a'.repeat(64)}` }), 'UPDATE'))).json().response;
    assert.match(short.status?.message ?? '', /short names are not accepted/);
    const good = (await post(port, '/validate-bindings', bindingReview(binding('good', { image: 'nginx' })))).json().response;
    assert.equal(good.allowed, true);
    assert.deepEqual(good.warnings, ['image "nginx" selects every tag and digest of docker.io/library/nginx']);
  });

  it('validating webhook: a binding in a namespace without the opt-in label is admitted, with a warning that it binds nothing until the label is set', async () => {
    const namespaces = new StaticNamespaceSource({ team: { 'spoke.dev/binding': 'enabled' }, quiet: {}, off: { 'spoke.dev/binding': 'disabled' } });
    const hook = await startWebhook(source, { namespaces });
    try {
      const answer = async (ns: string) => (await post(hook.port, '/validate-bindings', bindingReview(binding('exact', { image: 'ghcr.io/acme/app:1' }, ns)))).json().response;
      for (const ns of ['quiet', 'off']) {
        const r = await answer(ns);
        assert.equal(r.allowed, true, 'the label may be set later');
        assert.deepEqual(r.warnings, [
          `namespace ${ns} is not labelled spoke.dev/binding=enabled, so the pod webhook does not see its pods: this ProfileBinding binds nothing until it is (kubectl label namespace ${ns} spoke.dev/binding=enabled)`,
        ]);
      }
      assert.equal((await answer('team')).warnings, undefined);
      assert.equal((await answer('new')).warnings, undefined, 'a namespace not in the cache (yet): no word either way');
    } finally {
      await hook.server.close();
    }
  });

  it('refuses what is not an AdmissionReview', async () => {
    assert.equal((await post(port, '/mutate-pods', 'not json')).status, 400);
    assert.equal((await post(port, '/mutate-pods', { apiVersion: 'admission.k8s.io/v1beta1', kind: 'AdmissionReview', request: { uid: 'x' } })).status, 400);
    assert.equal((await post(port, '/mutate-pods', {}, { 'content-type': 'text/plain' })).status, 415);
    assert.equal((await post(port, '/nope', {})).status, 404);
    assert.equal((await post(port, '/mutate-pods', '', {}, 'GET')).status, 405);
    assert.equal((await post(port, '/mutate-pods', 'x'.repeat(4 * 1024 * 1024 + 1))).status, 413);
    assert.equal((await post(port, '/healthz', '', {}, 'GET')).status, 200);
  });

  /** `n` callers that each send all but the end of a 4 MiB review and wait; `client`: their certificate. */
  function slowUploads(n: number, client?: ClientCert) {
    const ca = readFileSync(certFile);
    /** Status codes of the answers that came before the upload ended. */
    const answered: number[] = [];
    const reqs = Array.from({ length: n }, () => {
      const req = request({ host: '127.0.0.1', port, path: '/mutate-pods', method: 'POST', ca, agent: false, ...client, headers: { 'content-type': 'application/json', 'content-length': MAX_REVIEW_BYTES } });
      req.on('error', () => undefined);
      req.on('response', (res) => (res.resume(), answered.push(res.statusCode ?? 0)));
      req.write(Buffer.alloc(MAX_REVIEW_BYTES - 16, 0x20));
      return req;
    });
    return { reqs, answered };
  }
  const aReview = () => podReview(deploymentPod({ containers: [{ name: 'web', image: 'nginx:1.25' }] }));

  it("bodies the API server's reviews hold at once are bounded: past 16 MiB a review is answered 503 at once, and served again once they are gone", async () => {
    const almost = MAX_REVIEW_BYTES - 16;
    const slow = slowUploads(4, clients.apiServer);
    try {
      await waitFor(() => server.heldBodyBytes === 4 * almost, { timeoutMs: 20_000, what: 'the four bodies held' });
      assert.equal((await review(port, aReview())).status, 503);
    } finally {
      for (const req of slow.reqs) req.destroy();
    }
    await waitFor(() => server.heldBodyBytes === 0, { timeoutMs: 20_000, what: 'the bodies released' });
    assert.equal((await review(port, aReview())).status, 200);
  });

  it("callers without the API server's certificate are refused (403) before their bodies are read: their slow uploads hold nothing", async () => {
    const slow = slowUploads(4);
    try {
      await waitFor(() => slow.answered.length === 4, { timeoutMs: 20_000, what: 'the four uploads answered' });
      assert.deepEqual(slow.answered, [403, 403, 403, 403]);
      assert.equal(server.heldBodyBytes, 0);
      assert.equal((await review(port, aReview())).status, 200, "the API server's review is served");
    } finally {
      for (const req of slow.reqs) req.destroy();
    }
  });

  it("a review's uid, anyone's text, is logged cut", async () => {
    const logged: Record<string, unknown>[] = [];
    const { server: logging, port: p2 } = await startWebhook(new StaticBindingSource([]), { log: (e) => logged.push(e) });
    try {
      const body = aReview();
      body.request.uid = 'u'.repeat(100_000);
      const a = await post(p2, '/mutate-pods', body);
      assert.equal(a.json().response.uid.length, 100_000, 'echoed whole, as the API server expects');
      assert.deepEqual(logged.map((e) => String(e.uid).length), [64]);
    } finally {
      await logging.close();
    }
  });

  it('a connection that never starts its TLS handshake does not keep its slot: it is closed within seconds', { timeout: 30_000 }, async () => {
    const silent = netConnect({ host: '127.0.0.1', port });
    silent.on('error', () => undefined);
    await once(silent, 'close');
  });

  it(`at most ${MAX_CONNECTIONS} connections at once: the next one is closed before its handshake`, async () => {
    const ca = readFileSync(certFile);
    const open = (): Promise<TLSSocket> =>
      new Promise((resolve, reject) => {
        const s = tlsConnect({ host: '127.0.0.1', port, ca, servername: 'localhost' }, () => resolve(s));
        s.on('error', reject);
        s.on('close', () => reject(new Error('closed')));
      });
    const sockets = await Promise.all(Array.from({ length: MAX_CONNECTIONS }, open));
    try {
      // Closed by the server as it is accepted (maxConnections): the TLS client sees its socket
      // end before the handshake (ECONNRESET), not a refused connection or a certificate error.
      await assert.rejects(open(), { code: 'ECONNRESET' });
    } finally {
      for (const s of sockets) s.destroy();
    }
    await waitFor(async () => (await post(port, '/healthz', '', {}, 'GET').catch(() => undefined))?.status === 200, { timeoutMs: 20_000, what: 'the server to take connections again' });
  });

  it('re-reads a rotated serving certificate', async () => {
    const first = (await post(port, '/healthz', '', {}, 'GET')).peerCert?.fingerprint256;
    makeCert('rotated.spoke-system.svc');
    assert.equal(server.reloadCertificate(), true);
    const second = (await post(port, '/healthz', '', {}, 'GET')).peerCert;
    assert.notEqual(second?.fingerprint256, first);
    assert.match(second?.subject ?? '', /rotated/);
  });
});

describe('spoke binding apply answers as the webhook does', () => {
  it('same patch and warnings for Unconfined, privileged, canonical images and a restricted namespace', async () => {
    const bindings = [
      binding('hub', { image: 'registry-1.docker.io:443/library/nginx' }),
      binding('aa', { kind: 'apparmor', image: '*', reference: REF_B }),
      binding('tagged', { image: 'Registry.Example.com/team/web:v3', reference: REF_B }),
    ];
    const pod: Pod = {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'parity', namespace: 'team' },
      spec: {
        containers: [
          { name: 'web', image: 'nginx:1.27' },
          { name: 'loose', image: 'docker.io/library/nginx', securityContext: { seccompProfile: { type: 'Unconfined' } } },
          { name: 'root', image: 'index.docker.io/nginx:1', securityContext: { privileged: true } },
          { name: 'own', image: 'registry.example.com:443/team/web:v3' },
          { name: 'evil', image: 'registry.example.com/team/web-evil:v3' },
        ],
      },
    };
    const labels = { 'spoke.dev/binding': 'enabled', 'pod-security.kubernetes.io/enforce': 'restricted' };
    const { server, port } = await startWebhook(new StaticBindingSource(bindings), { namespaces: new StaticNamespaceSource({ team: labels }) });
    try {
      const web = (await post(port, '/mutate-pods', podReview(pod))).json().response;
      assert.equal(web.allowed, true);
      const bindingsFile = join(dir, 'parity-bindings.json');
      writeFileSync(bindingsFile, JSON.stringify({ apiVersion: 'v1', kind: 'List', items: [...bindings, { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'team', labels } }] }));
      const podFile = join(dir, 'parity-pod.json');
      writeFileSync(podFile, JSON.stringify(pod));
      const cli = await spoke(['binding', 'apply', '-f', bindingsFile, '--patch', podFile]);
      assert.equal(cli.code, 0, cli.stderr);
      assert.deepEqual(JSON.parse(cli.stdout), JSON.parse(Buffer.from(web.patch ?? '', 'base64').toString('utf8')));
      assert.equal(cli.stderr, (web.warnings ?? []).map((w) => `Warning: ${w}\n`).join(''));
      assert.equal((web.warnings ?? []).length, 5, (web.warnings ?? []).join('\n'));
      const out = applyPatch(pod, JSON.parse(cli.stdout) as Op[]);
      assert.deepEqual(Object.keys(out.metadata?.annotations ?? {}).sort(), [
        'apparmor.profiles.spoke.dev/evil',
        'apparmor.profiles.spoke.dev/loose',
        'apparmor.profiles.spoke.dev/own',
        'apparmor.profiles.spoke.dev/web',
        'seccomp.profiles.spoke.dev/own',
        'seccomp.profiles.spoke.dev/web',
      ]);
    } finally {
      await server.close();
    }
  });
});

describe('informer-backed source and status on client-node against the fake API server', () => {
  let fake: FakeApiServer;
  let kc: KubeConfig;

  before(async () => {
    fake = new FakeApiServer({ resources: [PROFILE_BINDINGS, NS, PODS], token: 'test-token' });
    const server = await fake.listen();
    kc = fakeKubeConfig(server, 'test-token');
  });
  after(() => fake.close());

  const until = (what: string, cond: () => boolean, ms = 5000) => waitFor(cond, { timeoutMs: ms, what, intervalMs: 10 });

  it('lists in pages, watches with bookmarks, follows events, relists after 410 Gone', async () => {
    for (let i = 0; i < 5; i++) fake.create(PROFILE_BINDINGS, binding(`b${i}`, { image: `app${i}` }));
    fake.inject({ match: 'list', code: 500, times: 1 }); // first list fails: backoff, then retry
    const src = new InformerBindingSource(kc, { pageSize: 2, backoffInitialMs: 20, watchTimeoutSeconds: 60, log: process.env.DEBUG_REFLECTOR ? (e) => console.error(e) : undefined });
    assert.equal(src.synced(), false);
    src.start();
    try {
      await src.waitForSync(5000);
      assert.deepEqual(src.list('team').map((b) => b.metadata.name).sort(), ['b0', 'b1', 'b2', 'b3', 'b4']);
      assert.equal(src.resourceVersion(), String(fake.currentRevision));
      const lists = fake.requests.filter((r) => r.method === 'GET' && r.query.watch === undefined);
      assert.ok(lists.length >= 4, 'one failed list, then three pages');
      assert.ok(lists.some((r) => r.query.continue), 'pagination used continue');
      await until('watch', () => fake.watcherCount === 1);
      const w = fake.requests.find((r) => r.query.watch === 'true');
      assert.equal(w?.query.allowWatchBookmarks, 'true');
      assert.equal(w?.query.resourceVersion, src.resourceVersion());

      fake.create(PROFILE_BINDINGS, binding('late', {}, 'other'));
      await until('ADDED event', () => src.list('other').length === 1);
      fake.update(PROFILE_BINDINGS, { ...binding('b0', { image: 'changed' }), metadata: { name: 'b0', namespace: 'team' } });
      await until('MODIFIED event', () => src.get('team', 'b0')?.spec.image === 'changed');
      fake.remove(PROFILE_BINDINGS, 'team', 'b1');
      await until('DELETED event', () => src.get('team', 'b1') === undefined);

      // A bookmark moves the resourceVersion without an object change.
      fake.create(PROFILE_BINDINGS, binding('x', {}, 'elsewhere-not-watched-specially'));
      await until('x', () => src.get('elsewhere-not-watched-specially', 'x') !== undefined);
      const rvBefore = src.resourceVersion();
      assert.equal(fake.bookmark(), 1);
      await until('bookmark', () => src.stats.bookmarks === 1);
      assert.equal(src.resourceVersion(), String(fake.currentRevision));
      assert.equal(rvBefore, String(fake.currentRevision));

      // Server closes the watch cleanly: the reflector resumes from its resourceVersion (no relist).
      const listsBefore = src.stats.lists;
      fake.closeWatches();
      await until('re-watch', () => fake.watcherCount === 1);
      assert.equal(src.stats.lists, listsBefore);
      fake.create(PROFILE_BINDINGS, binding('after-rewatch', {}));
      await until('after-rewatch', () => src.get('team', 'after-rewatch') !== undefined);

      // Changes while disconnected, then history compacted: the stale resourceVersion gets a 410
      // ERROR event, the reflector relists and converges (the deletion is noticed).
      fake.inject({ match: 'watch', code: 503, times: 1 });
      fake.closeWatches();
      fake.remove(PROFILE_BINDINGS, 'team', 'b2');
      fake.create(PROFILE_BINDINGS, binding('during-gap', {}));
      fake.compact();
      await until('relist after 410', () => src.stats.expired >= 1 && src.stats.lists > listsBefore);
      await until('converged', () => src.get('team', 'b2') === undefined && src.get('team', 'during-gap') !== undefined);
      assert.ok(src.stats.errors >= 2, 'the injected list and watch failures were retried');

      // 410 delivered inside a live watch stream.
      await until('watching again', () => fake.watcherCount === 1);
      const expiredBefore = src.stats.expired;
      fake.expireWatches();
      await until('relist after in-stream 410', () => src.stats.expired === expiredBefore + 1);
      await until('re-watch again', () => fake.watcherCount === 1);
      assert.equal(src.resourceVersion(), String(fake.currentRevision));
    } finally {
      await src.stop();
    }
    // stop() no longer waits for client-node to report the aborted watch. This fake sends a watch's
    // response headers with its first event only (a real API server sends them at once), and
    // client-node hands out the watch's AbortController after the headers: a bookmark flushes them.
    fake.bookmark();
    await until('stop() closes the watch', () => fake.watcherCount === 0);
  });

  // The watch would run for 300 s and TCP keepalive would give a dead path up after minutes: the
  // test's timeout is what fails a reflector that waits for either.
  it('a watch that goes silent (no event, no bookmark: a dead path) is given up after watchIdleSeconds and resumed; a change made meanwhile is seen', { timeout: 30_000 }, async () => {
    fake.create(PROFILE_BINDINGS, binding('before-stall', {}, 'stalling'));
    const src = new InformerBindingSource(kc, { backoffInitialMs: 20, watchTimeoutSeconds: 300, watchIdleSeconds: 0.5 });
    src.start();
    try {
      await src.waitForSync(5000);
      await until('watch open', () => fake.watcherCount >= 1);
      const lists = src.stats.lists;
      fake.stallWatches();
      fake.create(PROFILE_BINDINGS, binding('during-stall', {}, 'stalling'));
      await until('the change, through a new watch', () => src.get('stalling', 'during-stall') !== undefined, 10_000);
      assert.equal(src.stats.lists, lists, 'resumed from its resourceVersion, no relist');
    } finally {
      await src.stop();
    }
  });

  // An API server that sends no bookmarks (its watch cache off) leaves a quiet resource's watch
  // silent: each is given up, and that is no failure to back off from.
  it('a watch given up for silence is resumed at once, without the error backoff growing (an API server that sends no bookmarks)', { timeout: 30_000 }, async () => {
    fake.create(PROFILE_BINDINGS, binding('quiet', {}, 'no-bookmarks'));
    const src = new InformerBindingSource(kc, { backoffInitialMs: 60_000, backoffMaxMs: 60_000, watchTimeoutSeconds: 300, watchIdleSeconds: 0.3 });
    src.start();
    try {
      await src.waitForSync(5000);
      await until('three watches given up in a row, none followed by a backoff', () => src.stats.idle >= 3, 10_000);
      assert.equal(src.stats.errors, 0, 'silence is not counted as a failure');
      fake.create(PROFILE_BINDINGS, binding('after-quiet', {}, 'no-bookmarks'));
      await until('the change, through the resumed watch', () => src.get('no-bookmarks', 'after-quiet') !== undefined, 10_000);
    } finally {
      await src.stop();
    }
  });

  // The watch would run for 300 s: the test's timeout is what fails a stop() that waits for it.
  it('stop() returns while a watch is open (client-node abort does not end the wait)', { timeout: 30_000 }, async () => {
    fake.create(PROFILE_BINDINGS, binding('stop-fast', {}, 'stopping'));
    const src = new InformerBindingSource(kc, { backoffInitialMs: 20, watchTimeoutSeconds: 300 });
    src.start();
    await src.waitForSync(5000);
    await until('watch open', () => fake.watcherCount >= 1);
    await src.stop();
    assert.equal(src.stats.watches, 1, 'no new watch after stop()');
    // This fake sends the response headers with the first event only, so client-node hands out the
    // watch's AbortController late: once it does, the stopped reflector aborts the connection
    // (and ignores the event that came with the headers).
    fake.create(PROFILE_BINDINGS, binding('after-stop', {}, 'stopping'));
    await until('watch closed', () => fake.watcherCount === 0);
    assert.equal(src.get('stopping', 'after-stop'), undefined, 'a stopped cache takes no more events');
  });

  it('the webhook answers from the informer cache and status is written with 409 retry', async () => {
    fake.create(PROFILE_BINDINGS, binding('status-demo', { image: 'ghcr.io/acme/api', podSelector: { matchLabels: { app: 'api' } } }, 'shop'));
    const src = new InformerBindingSource(kc, { backoffInitialMs: 20 });
    const updater = new StatusUpdater(new KubeStatusClient(kc, src), { conflictDelayMs: 50 });
    const notSynced = await startWebhook(src);
    try {
      const ready = await post(notSynced.port, '/readyz', '', {}, 'GET');
      assert.equal(ready.status, 503);
      const early = (await post(notSynced.port, '/mutate-pods', podReview(deploymentPod({ containers: [{ name: 'api', image: 'ghcr.io/acme/api:1' }] }), { namespace: 'shop' }))).json().response;
      assert.deepEqual([early.allowed, early.status?.code], [false, 503], 'no answer from an unsynced cache');
    } finally {
      await notSynced.server.close();
    }
    src.start();
    const { server, port } = await startWebhook(src, { clientCaFile, onApplied: (m) => updater.record(m) });
    try {
      await src.waitForSync(5000);
      assert.equal((await post(port, '/readyz', '', {}, 'GET')).status, 200);
      const pod: Pod = { ...deploymentPod({ containers: [{ name: 'api', image: 'ghcr.io/acme/api:1.4' }] }), metadata: { generateName: 'api-5c9-', labels: { app: 'api' }, ownerReferences: [{ kind: 'ReplicaSet', name: 'api-5c9', controller: true }] } };
      const out = patchedPod(pod, await review(port, podReview(pod, { namespace: 'shop' })));
      assert.deepEqual(out.spec?.containers?.[0]?.securityContext?.seccompProfile, { type: 'OCI', oci: { reference: REF_A } });

      // Someone else writes the object after our cache read: the status PUT gets 409 and is retried.
      const cur = fake.get(PROFILE_BINDINGS, 'shop', 'status-demo')!;
      const flushing = updater.flush();
      fake.update(PROFILE_BINDINGS, { ...cur, metadata: { ...cur.metadata, labels: { touched: 'yes' } } });
      await flushing;
      const statusPuts = fake.requests.filter((r) => r.method === 'PUT' && r.path.endsWith('/shop/profilebindings/status-demo/status'));
      const stored = fake.get(PROFILE_BINDINGS, 'shop', 'status-demo') as unknown as ProfileBinding;
      assert.ok(statusPuts.length >= 1);
      assert.deepEqual(stored.status?.matchedWorkloads?.map((w) => [w.kind, w.name, w.containers]), [['ReplicaSet', 'api-5c9', ['api']]]);
      assert.equal(stored.status?.matchedPods, 1);
      assert.deepEqual(stored.status?.conditions?.map((c) => [c.type, c.status, c.reason]), [['Valid', 'True', 'Validated']]);
      assert.equal(stored.metadata.labels?.touched, 'yes', 'the other writer’s change survived');

      // A forced conflict: a stale cache read makes the first PUT fail with 409, the retry succeeds.
      const staleClient = new KubeStatusClient(kc, src);
      const realGet = staleClient.get.bind(staleClient);
      let calls = 0;
      staleClient.get = async (ns, name) => {
        const b = await realGet(ns, name);
        if (calls++ === 0) b.metadata.resourceVersion = '1';
        return b;
      };
      const u2 = new StatusUpdater(staleClient, { conflictDelayMs: 10 });
      u2.record({ namespace: 'shop', workload: { kind: 'Pod', name: 'one-off' }, applied: [{ binding: 'shop/status-demo', kind: 'seccomp', container: 'api', reference: REF_A }], skipped: [] });
      const putsBefore = fake.requests.filter((r) => r.method === 'PUT').length;
      await u2.flush();
      assert.equal(fake.requests.filter((r) => r.method === 'PUT').length, putsBefore + 2, 'one 409, one success');
      const again = fake.get(PROFILE_BINDINGS, 'shop', 'status-demo') as unknown as ProfileBinding;
      assert.deepEqual(again.status?.matchedWorkloads?.map((w) => w.name), ['one-off', 'api-5c9']);
      assert.equal(again.status?.matchedPods, 2);
    } finally {
      await server.close();
      await updater.stop();
      await src.stop();
    }
  });

  it('status changes only for reviews from the API server when a client CA is configured', async () => {
    fake.create(PROFILE_BINDINGS, binding('guarded', { image: 'ghcr.io/acme/guarded' }, 'vault'));
    const src = new InformerBindingSource(kc, { backoffInitialMs: 20 });
    const updater = new StatusUpdater(new KubeStatusClient(kc, src));
    src.start();
    const { server, port } = await startWebhook(src, { clientCaFile, clientName: 'kube-apiserver', onApplied: (m) => updater.record(m) });
    try {
      await src.waitForSync(5000);
      const pod = deploymentPod({ containers: [{ name: 'g', image: 'ghcr.io/acme/guarded:1' }] });
      const stored = () => (fake.get(PROFILE_BINDINGS, 'vault', 'guarded') as unknown as ProfileBinding).status;
      // No client certificate, one from another CA, one from the CA under another name: refused
      // unread (an answer would tell them the namespace's bindings), not recorded.
      for (const client of [null, clients.stranger, clients.node]) {
        const a = await post(port, '/mutate-pods', podReview(pod, { namespace: 'vault' }), undefined, 'POST', client);
        assert.equal(a.status, 403, a.body);
      }
      await updater.flush();
      assert.equal(stored(), undefined, 'an unauthenticated review wrote status');
      patchedPod(pod, await review(port, podReview(pod, { namespace: 'vault' })));
      await updater.flush();
      assert.equal(stored()?.matchedPods, 1);
    } finally {
      await server.close();
      await updater.stop();
      await src.stop();
    }
  });

  it('Pod Security from the namespace cache: restricted by annotation, baseline by field, an unknown namespace by annotation', async () => {
    fake.create(NS, namespace('locked', { 'pod-security.kubernetes.io/enforce': 'restricted' }));
    fake.create(NS, namespace('middle', { 'pod-security.kubernetes.io/enforce': 'baseline' }));
    const bindings = new StaticBindingSource(['locked', 'middle', 'fresh'].map((ns) => binding('all', {}, ns)));
    const namespaces = new InformerNamespaceSource(kc, { backoffInitialMs: 20 });
    namespaces.start();
    const { server, port } = await startWebhook(bindings, { namespaces });
    try {
      await namespaces.waitForSync(5000);
      const pod = deploymentPod({ containers: [{ name: 'app', image: 'nginx:1' }] });
      const answer = async (ns: string) => {
        const a = await post(port, '/mutate-pods', podReview(pod, { namespace: ns }));
        return { out: patchedPod(pod, a), warnings: a.json().response.warnings ?? [] };
      };
      const locked = await answer('locked');
      assert.deepEqual(locked.out.spec?.containers?.[0]?.securityContext, { seccompProfile: { type: 'RuntimeDefault' } });
      assert.equal(locked.out.metadata?.annotations?.['seccomp.profiles.spoke.dev/app'], REF_A);
      assert.deepEqual(locked.warnings, ['namespace Pod Security level "restricted" rejects seccomp type OCI in alpha: bound by annotation (spoke shim) with RuntimeDefault in the field']);
      const middle = await answer('middle');
      assert.deepEqual(middle.out.spec?.containers?.[0]?.securityContext?.seccompProfile, { type: 'OCI', oci: { reference: REF_A } });
      const fresh = await answer('fresh');
      assert.deepEqual(fresh.out.spec?.containers?.[0]?.securityContext, { seccompProfile: { type: 'RuntimeDefault' } });
      assert.match(fresh.warnings.join(), /Pod Security level "unknown" is not known and is taken as restricted/);
      // The label changes: the cache follows it.
      fake.update(NS, { ...namespace('locked', { 'pod-security.kubernetes.io/enforce': 'privileged' }) });
      const end = Date.now() + 5000;
      while (namespaces.labels('locked')?.['pod-security.kubernetes.io/enforce'] !== 'privileged') {
        if (Date.now() > end) throw new Error('namespace update not seen');
        await new Promise((r) => setTimeout(r, 10));
      }
      assert.equal((await answer('locked')).out.spec?.containers?.[0]?.securityContext?.seccompProfile?.type, 'OCI');
    } finally {
      await server.close();
      await namespaces.stop();
    }
  });

  it('without a client CA, status comes from the pods the API server stores, each counted once, never from reviews', async () => {
    fake.create(NS, namespace('farm', {}));
    fake.create(NS, { metadata: { name: 'optout', labels: {} } });
    fake.create(PROFILE_BINDINGS, binding('farm-all', { image: 'ghcr.io/acme/farm' }, 'farm'));
    fake.create(PROFILE_BINDINGS, binding('optout-all', { image: 'ghcr.io/acme/farm' }, 'optout'));
    const src = new InformerBindingSource(kc, { backoffInitialMs: 20 });
    const namespaces = new InformerNamespaceSource(kc, { backoffInitialMs: 20 });
    const updater = new StatusUpdater(new KubeStatusClient(kc, src));
    const bound = { seccompProfile: { type: 'OCI', oci: { reference: REF_A } } };
    const farmPod = (name: string, containers: NonNullable<Pod['spec']>['containers']): Pod => ({ ...deploymentPod({ containers }), metadata: { name, namespace: 'farm', ownerReferences: [{ kind: 'ReplicaSet', name: 'farm-1', controller: true }] } });
    fake.create(PODS, farmPod('before-start', [{ name: 'c', image: 'ghcr.io/acme/farm:1', securityContext: bound }]));
    const pods = new PodStatusInformer(kc, { bindings: src, namespaces, mode: 'field', record: (m) => updater.record(m) });
    src.start();
    namespaces.start();
    await Promise.all([src.waitForSync(5000), namespaces.waitForSync(5000)]);
    pods.start();
    const { server, port } = await startWebhook(src, { namespaces, onApplied: (m) => updater.record(m) });
    try {
      await pods.waitForSync(5000);
      // A review, even one with the API server's certificate, records nothing: no client CA is configured.
      patchedPod(farmPod('x', [{ name: 'c', image: 'ghcr.io/acme/farm:1' }]), await review(port, podReview(farmPod('x', [{ name: 'c', image: 'ghcr.io/acme/farm:1' }]), { namespace: 'farm' })));
      fake.create(PODS, farmPod('created', [
        { name: 'c', image: 'ghcr.io/acme/farm:1', securityContext: bound },
        { name: 'root', image: 'ghcr.io/acme/farm:1', securityContext: { privileged: true } },
      ]));
      fake.create(PODS, { ...farmPod('elsewhere', [{ name: 'c', image: 'ghcr.io/acme/farm:1', securityContext: bound }]), metadata: { name: 'elsewhere', namespace: 'optout' } });
      const end = Date.now() + 5000;
      while (pods.get('farm', 'created') === undefined || pods.get('optout', 'elsewhere') === undefined) {
        if (Date.now() > end) throw new Error('pods not seen');
        await new Promise((r) => setTimeout(r, 10));
      }
      await updater.flush();
      const status = (fake.get(PROFILE_BINDINGS, 'farm', 'farm-all') as unknown as ProfileBinding).status;
      assert.equal(status?.matchedPods, 1, 'the pod listed before start and the review are not counted');
      assert.deepEqual(status?.matchedWorkloads?.map((w) => [w.kind, w.name, w.containers]), [['ReplicaSet', 'farm-1', ['c']]]);
      assert.deepEqual(status?.skippedContainers, { unconfined: 0, privileged: 1, windows: 0 });
      assert.equal((fake.get(PROFILE_BINDINGS, 'optout', 'optout-all') as unknown as ProfileBinding).status, undefined, 'a namespace that has not opted in is never counted');
    } finally {
      await server.close();
      await updater.stop();
      await pods.stop();
      await namespaces.stop();
      await src.stop();
    }
  });
  it('the pod informer keeps of each pod only what status is computed from: it holds every pod of the cluster', async () => {
    fake.create(NS, namespace('lean', {}));
    fake.create(PROFILE_BINDINGS, binding('lean-all', { image: 'ghcr.io/acme/lean' }, 'lean'));
    const bound = { seccompProfile: { type: 'OCI', oci: { reference: REF_A } } };
    const owner = { apiVersion: 'apps/v1', kind: 'ReplicaSet', name: 'lean-1', uid: '5b1c', controller: true, blockOwnerDeletion: true };
    const read = {
      labels: { app: 'lean' },
      annotations: { 'example.com/note': 'annotations are read (legacy and spoke profile annotations)' },
      ownerReferences: [owner],
    };
    const containers = [
      { name: 'c', image: 'ghcr.io/acme/lean:1', securityContext: bound },
      { name: 'root', image: 'ghcr.io/acme/lean:1', securityContext: { privileged: true } },
    ];
    const asStored = (name: string) => ({
      metadata: { name, generateName: 'lean-1-', namespace: 'lean', ...read, managedFields: [{ manager: 'kube-controller-manager', operation: 'Update', apiVersion: 'v1', fieldsType: 'FieldsV1', fieldsV1: { 'f:spec': { 'f:containers': {} } } }] },
      spec: {
        containers: containers.map((c) => ({ ...c, env: [{ name: 'MODE', value: 'production' }], resources: { requests: { cpu: '50m' } }, volumeMounts: [{ name: 'token', mountPath: '/var/run/secrets' }] })),
        initContainers: [{ name: 'init', image: 'ghcr.io/acme/lean:1', securityContext: bound, command: ['sh', '-c', 'true'] }],
        securityContext: { runAsNonRoot: true },
        volumes: [{ name: 'token', projected: { sources: [{ serviceAccountToken: { path: 'token' } }] } }],
        nodeName: 'node-1',
        tolerations: [{ key: 'node.kubernetes.io/not-ready', operator: 'Exists', effect: 'NoExecute' }],
      },
      status: { phase: 'Running', conditions: [{ type: 'Ready', status: 'True' }], containerStatuses: [{ name: 'c', ready: true, restartCount: 0 }] },
    });
    const kept = (name: string) => {
      const stored = fake.get(PODS, 'lean', name)!;
      return {
        metadata: { name, generateName: 'lean-1-', namespace: 'lean', uid: stored.metadata.uid, resourceVersion: stored.metadata.resourceVersion, ...read },
        spec: { containers, initContainers: [{ name: 'init', image: 'ghcr.io/acme/lean:1', securityContext: bound }], securityContext: { runAsNonRoot: true } },
      };
    };
    fake.create(PODS, asStored('listed'));
    await withPodInformer(kc, async (pods, matches) => {
      fake.create(PODS, asStored('watched'));
      await until('the watched pod', () => pods.get('lean', 'watched') !== undefined);
      // A pod created while the watch is down, and the history compacted: it comes with the relist.
      fake.closeWatches();
      fake.create(PODS, asStored('relisted'));
      fake.compact();
      await until('the relisted pod', () => pods.get('lean', 'relisted') !== undefined);
      for (const name of ['listed', 'watched', 'relisted']) assert.deepEqual(pods.get('lean', name), kept(name), name);
      // What is kept is what status is computed from: the same matches as from the whole pod.
      assert.deepEqual(
        matches.map((m) => [m.workload, m.applied.map((a) => a.container), m.skipped.map((k) => `${k.container} ${k.reason}`)]),
        [
          [{ kind: 'ReplicaSet', name: 'lean-1' }, ['init', 'c'], ['root Privileged']],
          [{ kind: 'ReplicaSet', name: 'lean-1' }, ['init', 'c'], ['root Privileged']],
        ],
      );
    });
  });
  it('the pod informer keeps spec.os: a Windows pod it sees is counted as skipped (windows), as its review counts it', async () => {
    fake.create(NS, namespace('mixed', {}));
    fake.create(PROFILE_BINDINGS, binding('mixed-all', { image: 'ghcr.io/acme/mixed' }, 'mixed'));
    await withPodInformer(kc, async (pods, matches) => {
      // As the API server stores it: the webhook left it untouched (binding.ts rule 10).
      const windowsPod = { metadata: { name: 'win', namespace: 'mixed' }, spec: { os: { name: 'windows' }, containers: [{ name: 'c', image: 'ghcr.io/acme/mixed:1' }] } };
      const review = mutatePod(windowsPod, [binding('mixed-all', { image: 'ghcr.io/acme/mixed' }, 'mixed')]);
      assert.ok(!('denied' in review));
      assert.deepEqual(review.skipped.map((s) => `${s.container} ${s.reason}`), ['c Windows']);
      fake.create(PODS, windowsPod);
      await until('the Windows pod', () => pods.get('mixed', 'win') !== undefined);
      assert.deepEqual(pods.get('mixed', 'win')?.spec?.os, { name: 'windows' });
      assert.deepEqual(matches.map((m) => m.skipped.map((k) => `${k.container} ${k.reason}`)), [['c Windows']]);
    });
  });
});

/** A pod status informer (field mode) over fresh binding and namespace caches, synced, for `body`; all stopped after. */
async function withPodInformer(kc: KubeConfig, body: (pods: PodStatusInformer, matches: PodMatch[]) => Promise<void>): Promise<void> {
  const src = new InformerBindingSource(kc, { backoffInitialMs: 20 });
  const namespaces = new InformerNamespaceSource(kc, { backoffInitialMs: 20 });
  const matches: PodMatch[] = [];
  const pods = new PodStatusInformer(kc, { bindings: src, namespaces, mode: 'field', record: (m) => matches.push(m) });
  src.start();
  namespaces.start();
  try {
    await Promise.all([src.waitForSync(5000), namespaces.waitForSync(5000)]);
    pods.start();
    await pods.waitForSync(5000);
    await body(pods, matches);
  } finally {
    await pods.stop();
    await namespaces.stop();
    await src.stop();
  }
}

const LEASES: ResourceDef = { group: 'coordination.k8s.io', version: 'v1', plural: 'leases', kind: 'Lease' };

/** Whether a pod informer (all pods; the recording cache selects by label) has listed and watches. */
function podsWatched(fake: FakeApiServer): boolean {
  return fake.requests.some((r) => r.path === '/api/v1/pods' && r.query.watch === 'true' && r.query.labelSelector === undefined);
}

interface ControllerProcess {
  port: number;
  stderr(): string;
  /** Resolves once /readyz answers 200. */
  ready(): Promise<void>;
  /** SIGTERM; resolves with the exit code. */
  stop(): Promise<number | null>;
}

/** `spoke controller` as a process against the fake API server at `server` (token t), listening on a free port, just started. */
function spawnController(server: string, extra: string[] = []): ChildProcessByStdio<null, Readable, Readable> {
  const kubeconfig = join(dir, `kubeconfig-${randomUUID()}`);
  writeFileSync(
    kubeconfig,
    `apiVersion: v1\nkind: Config\nclusters: [{name: f, cluster: {server: "${server}", insecure-skip-tls-verify: true}}]\nusers: [{name: u, user: {token: t}}]\ncontexts: [{name: f, context: {cluster: f, user: u}}]\ncurrent-context: f\n`,
  );
  const args = ['--tls-cert', certFile, '--tls-key', keyFile, '--listen', '127.0.0.1:0', '--kubeconfig', kubeconfig, ...extra];
  return spawn(process.execPath, [SPOKE_BIN, 'controller', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
}

/** spawnController, once it said it listens. */
async function startController(server: string, extra: string[] = []): Promise<ControllerProcess> {
  const child = spawnController(server, extra);
  let stderr = '';
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const port = await new Promise<number>((resolve, reject) => {
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
      const m = /"msg":"listening".*?"port":(\d+)/.exec(stderr);
      if (m) resolve(Number(m[1]));
    });
    void exited.then(() => reject(new Error(`controller exited: ${stderr}`)));
  });
  return {
    port,
    stderr: () => stderr,
    ready: () => waitFor(async () => (await post(port, '/readyz', '', {}, 'GET')).status === 200, { timeoutMs: 5000, what: `readiness (${stderr})` }),
    stop: () => {
      child.kill('SIGTERM');
      return exited;
    },
  };
}

describe('spoke controller (process)', () => {
  it('refuses --recording-key without --admission-client-ca: it would mark pods for no one', async () => {
    const keyPath = join(dir, 'recording.key');
    writeFileSync(keyPath, Buffer.alloc(32, 9));
    const r = await spoke(['controller', '--tls-cert', certFile, '--tls-key', keyFile, '--recording-key', keyPath]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--recording-key needs --admission-client-ca/);
  });

  // Its handlers are installed before it logs anything: a signal during its start-up, before it
  // says it listens, stops it as one after does, instead of ending it with no stop at all.
  it('a SIGTERM sent at its first log line, during its start-up, stops it cleanly: a "stopping" line, exit status 0', async () => {
    const fake = new FakeApiServer({ resources: [PROFILE_BINDINGS, NS, PODS, LEASES], token: 't' });
    const child = spawnController(await fake.listen());
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => {
      const before = stderr;
      stderr += d.toString();
      if (!before.includes('\n') && stderr.includes('\n')) child.kill('SIGTERM');
    });
    try {
      const [code, signal] = (await within(once(child, 'exit'), 20_000, 'the controller to exit')) as [number | null, string | null];
      assert.deepEqual({ code, signal }, { code: 0, signal: null }, stderr);
      assert.match(stderr, /"msg":"stopping","signal":"SIGTERM"/);
    } finally {
      child.kill('SIGKILL');
      await fake.close();
    }
  });

  it('serves the webhook from the API server cache and stops on SIGTERM', async () => {
    const fake = new FakeApiServer({ resources: [PROFILE_BINDINGS, NS, PODS, LEASES], token: 't' });
    fake.create(PROFILE_BINDINGS, binding('proc', { image: 'nginx' }));
    fake.create(NS, namespace('team', {}));
    const controller = await startController(await fake.listen());
    try {
      await controller.ready();
      const pod: Pod = { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'solo' }, spec: { containers: [{ name: 'web', image: 'nginx:1' }] } };
      const out = patchedPod(pod, await post(controller.port, '/mutate-pods', podReview(pod)));
      assert.equal(out.spec?.containers?.[0]?.securityContext?.seccompProfile?.type, 'OCI');
      // Without --admission-client-ca, status follows the pods the API server stores.
      await waitFor(() => podsWatched(fake), { timeoutMs: 5000, what: 'the pod informer' });
      fake.create(PODS, { ...out, metadata: { name: 'solo', namespace: 'team' } });
      await waitFor(() => (fake.get(PROFILE_BINDINGS, 'team', 'proc') as unknown as ProfileBinding).status?.matchedPods !== undefined, { timeoutMs: 5000, what: `status (${controller.stderr()})` });
    } finally {
      const code = await controller.stop();
      await fake.close();
      assert.equal(code, 0, controller.stderr());
    }
  });

  it("a binding in a namespace without the opt-in label says so in its status (Valid stays True), until the label is set", async () => {
    const fake = new FakeApiServer({ resources: [PROFILE_BINDINGS, NS, PODS, LEASES], token: 't' });
    fake.create(NS, { metadata: { name: 'quiet', labels: {} } });
    fake.create(PROFILE_BINDINGS, binding('idle', { image: 'nginx' }, 'quiet'));
    const controller = await startController(await fake.listen());
    const conditions = () => ((fake.get(PROFILE_BINDINGS, 'quiet', 'idle') as unknown as ProfileBinding).status?.conditions ?? []).map((c) => [c.type, c.status, c.reason, c.message]);
    try {
      await waitFor(() => conditions().length === 2, { timeoutMs: 5000, what: `a second condition (${controller.stderr()})` });
      assert.deepEqual(conditions(), [
        ['NamespaceOptedIn', 'False', 'NotLabelled', 'namespace quiet is not labelled spoke.dev/binding=enabled, so the pod webhook does not see its pods: this ProfileBinding binds nothing until it is (kubectl label namespace quiet spoke.dev/binding=enabled)'],
        ['Valid', 'True', 'Validated', 'reference, image and selectors are valid'],
      ]);
      fake.update(NS, { metadata: { name: 'quiet', labels: { 'spoke.dev/binding': 'enabled' } } });
      await waitFor(() => conditions()[0]?.[1] === 'True', { timeoutMs: 5000, what: 'the label to be seen' });
      assert.deepEqual(conditions()[0], ['NamespaceOptedIn', 'True', 'Labelled', 'namespace quiet is labelled spoke.dev/binding=enabled: the pod webhook binds its pods']);
    } finally {
      const code = await controller.stop();
      await fake.close();
      assert.equal(code, 0, controller.stderr());
    }
  });

  it('two replicas count each pod once in binding status: only the one holding the Lease watches pods', async () => {
    const fake = new FakeApiServer({ resources: [PROFILE_BINDINGS, NS, PODS, LEASES], token: 't' });
    fake.create(PROFILE_BINDINGS, binding('twice', { image: 'nginx' }));
    fake.create(NS, namespace('team', {}));
    const url = await fake.listen();
    const replicas = [await startController(url), await startController(url)];
    const bound = { seccompProfile: { type: 'OCI', oci: { reference: REF_A } } };
    // The kubeconfig names no namespace: the Lease is in "default".
    const leaseHolder = () => (fake.get(LEASES, 'default', 'spoke-controller')?.spec as { holderIdentity?: string } | undefined)?.holderIdentity;
    let holder: string | undefined;
    try {
      await Promise.all(replicas.map((r) => r.ready()));
      await waitFor(() => podsWatched(fake), { timeoutMs: 5000, what: 'the pod informer' });
      fake.create(PODS, { metadata: { name: 'one', namespace: 'team' }, spec: { containers: [{ name: 'web', image: 'nginx:1', securityContext: bound }] } });
      await waitFor(() => (fake.get(PROFILE_BINDINGS, 'team', 'twice') as unknown as ProfileBinding).status?.matchedPods !== undefined, { timeoutMs: 5000, what: 'status' });
      holder = leaseHolder();
    } finally {
      // Stopping flushes what each replica recorded.
      const codes = await Promise.all(replicas.map((r) => r.stop()));
      await fake.close();
      assert.deepEqual(codes, [0, 0], replicas.map((r) => r.stderr()).join('\n'));
    }
    assert.equal((fake.get(PROFILE_BINDINGS, 'team', 'twice') as unknown as ProfileBinding).status?.matchedPods, 1);
    assert.match(String(holder), /^.+_[0-9a-f-]{36}$/, 'a replica held the Lease');
    assert.equal(leaseHolder(), '', 'released on SIGTERM');
  });

  it('two replicas push a finalized recording once: only the one holding the Lease reconciles', async () => {
    const reg = await startRegistry();
    const fake = new FakeApiServer({ resources: [PROFILE_BINDINGS, NS, PODS, LEASES, PROFILE_RECORDINGS, PROFILE_RECORDING_RESULTS], token: 't' });
    const recordingKey = Buffer.alloc(32, 7);
    const keyPath = join(dir, 'replicas-recording.key');
    writeFileSync(keyPath, recordingKey);
    const recording = fake.create(PROFILE_RECORDINGS, { metadata: { name: 'web', namespace: 'team' }, spec: { podSelector: { matchLabels: { app: 'web' } }, publish: { repository: `${reg.host}/rec/team` } } });
    const proof = signRecordingProof(recordingKey, { namespace: 'team', pod: { name: 'web-1' }, recording: 'web', containers: undefined }, 2_000_000_000);
    fake.create(PODS, {
      metadata: { name: 'web-1', namespace: 'team', labels: { app: 'web', 'recording.spoke.dev/name': 'web' }, annotations: { 'recording.spoke.dev/name': 'web', 'recording.spoke.dev/proof': proof } },
      spec: { nodeName: 'node-1', containers: [{ name: 'app', image: 'registry.example.com/app:1' }] },
    });
    fake.create(PROFILE_RECORDING_RESULTS, {
      metadata: { name: 'web-1-app', namespace: 'team', ownerReferences: [{ apiVersion: 'spoke.dev/v1alpha1', kind: 'ProfileRecording', name: 'web', uid: recording.metadata.uid }] },
      spec: { recording: 'web', pod: 'web-1', container: 'app', runtime: 'runc', node: 'node-1', syscalls: ['read', 'write'], image: 'registry.example.com/app:1' },
    });
    const url = await fake.listen();
    const args = ['--admission-client-ca', clientCaFile, '--recording-key', keyPath, '--recording-repositories', `${reg.host}/rec/{namespace}`, '--plain-http', '--signing-keys', join(dir, 'no-keys')];
    const replicas = [await startController(url, args), await startController(url, args)];
    const stored = () => (fake.get(PROFILE_RECORDINGS, 'team', 'web') as unknown as ProfileRecording).status;
    try {
      await Promise.all(replicas.map((r) => r.ready()));
      await waitFor(() => stored()?.results === 1, { timeoutMs: 10_000, what: 'the result counted' });
      const cur = fake.get(PROFILE_RECORDINGS, 'team', 'web')!;
      fake.update(PROFILE_RECORDINGS, { ...cur, metadata: { ...cur.metadata, annotations: { [FINALIZE_ANNOTATION]: 'now' } } });
      await waitFor(() => stored()?.phase === 'Completed', { timeoutMs: 10_000, what: 'the recording finalized' });
    } finally {
      const codes = await Promise.all(replicas.map((r) => r.stop()));
      await fake.close();
      await reg.settle();
      await reg.stop();
      assert.deepEqual(codes, [0, 0], replicas.map((r) => r.stderr()).join('\n'));
    }
    assert.equal(reg.requests().filter((r) => r.method === 'PUT' && r.path.includes('/manifests/')).length, 1, 'the profile was pushed once');
  });
});
