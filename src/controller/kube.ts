// The controller's Kubernetes side, on @kubernetes/client-node (loaded only by `spoke
// controller`, never by the CLI's other commands):
//  - InformerBindingSource: the ProfileBinding list/watch cache (reflector.ts).
//  - InformerNamespaceSource: namespaces, for their Pod Security labels (binding.ts rule 8).
//  - PodStatusInformer: binding status from created pods, where admission calls cannot be
//    authenticated (no --admission-client-ca): whoever posts a review cannot write status.
//  - KubeStatusClient: PUT of the status subresource for the StatusUpdater (reads: the cache).
//  - KubeLeaseClient: the coordination.k8s.io/v1 Lease the replicas elect a leader with (lease.ts).
// The credential step of all of their calls is spoke's where the kubeconfig's user has an exec
// plugin (kube-credentials.ts, docs/binding.md#kubeconfig-and-credentials).

import { existsSync, statSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { CoordinationV1Api, CustomObjectsApi, findHomeDir, KubeConfig, Observable, V1MicroTime, type ConfigurationOptions, type V1Lease, type V1LeaseSpec } from '@kubernetes/client-node';
import { SpokeError } from '../core/errors.js';
import { codeOf } from './api-errors.js';
import { makeApiClient, takeOverCredentials, withCallSignal, type KubeCredentialOptions } from './kube-credentials.js';
import { Reflector, type GenericReflectorOptions } from './reflector.js';
import { matchOfStoredPod, type PodMatch } from './admission.js';
import type { BindingMode } from './binding.js';
import type { BindingSource, NamespaceSource } from './source.js';
import type { StatusClient } from './binding-status.js';
import type { Lease, LeaseClient, LeaseSpec } from './lease.js';
import { BINDING_PLURAL, GROUP, VERSION, type Container, type ObjectMeta, type Pod, type ProfileBinding } from './types.js';

/** The kubeconfig `file` (default: $KUBECONFIG, ~/.kube/config, the in-cluster service account), its credential step spoke's. */
export function loadKubeConfig(file?: string, credentials: KubeCredentialOptions = {}): KubeConfig {
  const kc = new KubeConfig();
  const read = kubeConfigFiles(file).flatMap((f) => {
    const one = readKubeConfigFile(f, file === undefined);
    return one ? [{ file: f, one }] : [];
  });
  // Merged as client-go merges the files (clientcmd loader.go): the first file to set the current
  // context and the first to define a name win, later ones are ignored (a name defined twice in
  // one file is refused, readKubeConfigFile). Each file's relative paths are its own directory's
  // (client-node's loadFromFile), and so is an exec plugin's relative command: the file each user
  // came from is kept by the same first-wins rule (kube-credentials.ts,
  // docs/binding.md#kubeconfig-and-credentials).
  const first = <T extends { name: string }>(pick: (one: KubeConfig) => T[]) => {
    const byName = new Map<string, { item: T; file: string }>();
    for (const { file: f, one } of read) for (const item of pick(one)) if (!byName.has(item.name)) byName.set(item.name, { item, file: f });
    return byName;
  };
  const users = first((one) => one.users);
  if (read.length === 0) loadInCluster(kc);
  else {
    kc.loadFromOptions({
      clusters: [...first((one) => one.clusters).values()].map((e) => e.item),
      users: [...users.values()].map((e) => e.item),
      contexts: [...first((one) => one.contexts).values()].map((e) => e.item),
      currentContext: read.map(({ one }) => one.currentContext).find(Boolean),
    });
  }
  const user = kc.getCurrentUser();
  takeOverCredentials(kc, user ? users.get(user.name)?.file : undefined, credentials);
  return kc;
}

/**
 * The kubeconfig files `loadKubeConfig` reads, as client-go picks them (clientcmd
 * NewDefaultClientConfigLoadingRules): `file`, else the files $KUBECONFIG lists, empty names
 * skipped and each one once, in their first place; else ~/.kube/config when it is there.
 */
function kubeConfigFiles(file: string | undefined): string[] {
  if (file) return [file];
  const list = process.env['KUBECONFIG'];
  if (list) return [...new Set(list.split(delimiter).filter(Boolean))];
  const home = findHomeDir();
  const config = home === null ? undefined : join(home, '.kube', 'config');
  return config !== undefined && existsSync(config) ? [config] : [];
}

/**
 * `f` loaded on its own; undefined for a file of the $KUBECONFIG list (`listed`) that is not there,
 * which client-go skips. Only the file itself being absent counts: client-node also reads each
 * user's token-file while it loads the file, and that one missing is the file's fault, never a
 * reason to go on to the next file, whose cluster and user would then be called. A file that
 * defines a cluster, user or context name twice is refused, as client-go refuses it (its v1
 * conversion: duplicate name in list), where client-node would take the first entry.
 */
function readKubeConfigFile(f: string, listed: boolean): KubeConfig | undefined {
  const one = new KubeConfig();
  try {
    // Undefined only when nothing is at the path (ENOENT): a file that cannot be looked at is refused.
    if (listed && statSync(f, { throwIfNoEntry: false }) === undefined) return undefined;
    one.loadFromFile(f);
  } catch (e) {
    throw kubeConfigError(e, f);
  }
  for (const [kind, entries] of [['cluster', one.clusters], ['user', one.users], ['context', one.contexts]] as const) {
    const seen = new Set<string>();
    for (const { name } of entries) {
      if (seen.has(name)) throw new SpokeError('InvalidArgument', `kubeconfig ${f} defines the ${kind} ${JSON.stringify(name)} twice`, { file: f, kind, name }, { reason: 'OPTION_INVALID' });
      seen.add(name);
    }
  }
  return one;
}

/** Where the Pod's service account is mounted (client-go's rest.InClusterConfig reads its token there). */
const SERVICE_ACCOUNT_TOKEN = '/var/run/secrets/kubernetes.io/serviceaccount/token';

/**
 * With no kubeconfig file read, the in-cluster service account when run as the Deployment, as
 * client-go falls back to it; anywhere else there is nothing to call the API server as.
 */
function loadInCluster(kc: KubeConfig): void {
  if (!process.env['KUBERNETES_SERVICE_HOST'] || !existsSync(SERVICE_ACCOUNT_TOKEN)) {
    throw new SpokeError('InvalidArgument', `no kubeconfig: no file was read (--kubeconfig, $KUBECONFIG, ~/.kube/config) and not in a Pod (no service account token at ${SERVICE_ACCOUNT_TOKEN})`, {}, { reason: 'OPTION_INVALID' });
  }
  kc.loadFromCluster();
}

/** A YAML parser's reason in plain words, which quotes nothing of the file. */
const PLAIN_REASON_RE = /^[a-z][a-z ,-]{0,100}$/;

/** client-node's word on a missing member ("users[0].name is missing"), which quotes no value. */
const MISSING_MEMBER_RE = /^[A-Za-z0-9_.[\]-]{1,100} is missing$/;

/**
 * A kubeconfig that cannot be loaded, named by file and place only: the YAML parser's message
 * quotes the lines around its fault, and those hold bearer tokens and client keys.
 */
function kubeConfigError(e: unknown, file: string): SpokeError {
  return new SpokeError('InvalidArgument', `kubeconfig ${kubeConfigFault(e, file)}`, { file }, { reason: 'OPTION_INVALID' });
}

function kubeConfigFault(e: unknown, file: string): string {
  const fault = e as { code?: unknown; reason?: unknown; mark?: { line?: unknown; column?: unknown } } | undefined;
  if (typeof fault?.code === 'string') return `${file} cannot be read (${fault.code})`;
  if (typeof fault?.reason === 'string' && typeof fault.mark?.line === 'number' && typeof fault.mark.column === 'number') {
    // Some reasons quote the input (`unidentified alias "…"`, `unknown tag !<…>`): only one made
    // of plain words is kept.
    return `${file}:${fault.mark.line + 1}:${fault.mark.column + 1}: ${PLAIN_REASON_RE.test(fault.reason) ? fault.reason : 'YAML syntax error'}`;
  }
  if (e instanceof Error && MISSING_MEMBER_RE.test(e.message)) return `${file} is not usable: ${e.message}`;
  return `${file} is not a kubeconfig that can be used (${e instanceof Error ? e.name : typeof e})`;
}

export type ReflectorOptions = Omit<GenericReflectorOptions<ProfileBinding>, 'plural' | 'keep'>;

/** ProfileBindings in all namespaces, as the webhook reads them. */
export class InformerBindingSource extends Reflector<ProfileBinding> implements BindingSource {
  constructor(kc: KubeConfig, opts: ReflectorOptions = {}) {
    super(kc, { ...opts, plural: BINDING_PLURAL });
  }
}

type Namespace = { metadata: ObjectMeta };

/** Namespaces (cluster-scoped: cached under the namespace ""). */
export class InformerNamespaceSource extends Reflector<Namespace> implements NamespaceSource {
  constructor(kc: KubeConfig, opts: Omit<GenericReflectorOptions<Namespace>, 'plural' | 'path' | 'keep'> = {}) {
    super(kc, { ...opts, plural: 'namespaces', path: '/api/v1/namespaces' });
  }

  labels(namespace: string): Readonly<Record<string, string>> | undefined {
    const ns = this.get('', namespace);
    return ns ? (ns.metadata.labels ?? {}) : undefined;
  }
}

export interface PodStatusOptions {
  bindings: BindingSource;
  namespaces: NamespaceSource;
  mode: BindingMode;
  podSecurityDefault?: string;
  record: (m: PodMatch) => void;
  log?: (event: Record<string, unknown>) => void;
}

type StoredPod = Pod & { metadata: ObjectMeta };

/**
 * Pods in all namespaces. Each pod the API server adds after the first list is recorded once,
 * from what it carries (`matchOfStoredPod`); the pods of the first list are not, so a restart
 * does not count them again. Of each pod only what that reads is kept (`podAsRead`).
 */
export class PodStatusInformer extends Reflector<StoredPod> {
  constructor(kc: KubeConfig, opts: PodStatusOptions) {
    super(kc, {
      plural: 'pods',
      path: '/api/v1/pods',
      log: opts.log,
      keep: podAsRead,
      onChange: (type, pod) => {
        if (type !== 'ADDED' || !this.synced() || !opts.bindings.synced()) return;
        const m = matchOfStoredPod(pod, opts.bindings, { mode: opts.mode, namespaces: opts.namespaces, podSecurityDefault: opts.podSecurityDefault });
        if (m) opts.record(m);
      },
    });
  }
}

/**
 * The parts of a pod that `matchOfStoredPod` reads (the binding rules read these, types.ts Pod),
 * and what the cache is keyed and versioned by. The informer holds every pod of the cluster:
 * managedFields, status, volumes, env and the rest were most of its memory (docs/binding.md#status).
 */
function podAsRead(pod: StoredPod): StoredPod {
  const spec = pod.spec;
  const containers = (list: Container[] | undefined) => list?.map((c) => defined({ name: c.name, image: c.image, securityContext: c.securityContext }));
  const metadata = pod.metadata;
  return defined({
    metadata: defined({
      name: metadata.name,
      generateName: metadata.generateName,
      namespace: metadata.namespace,
      uid: metadata.uid,
      resourceVersion: metadata.resourceVersion,
      labels: metadata.labels,
      annotations: metadata.annotations,
      ownerReferences: metadata.ownerReferences,
    }),
    // spec.os: a Windows pod is left alone and counted as such (binding.ts rule 10).
    spec: spec && defined({ containers: containers(spec.containers), initContainers: containers(spec.initContainers), ephemeralContainers: containers(spec.ephemeralContainers), securityContext: spec.securityContext, os: spec.os }),
  });
}

/** `o` without its undefined members: a kept object has the keys the API server sent, no more. */
function defined<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}

export class KubeStatusClient implements StatusClient {
  private readonly api: CustomObjectsApi;

  constructor(
    kc: KubeConfig,
    private readonly cache: InformerBindingSource,
  ) {
    this.api = makeApiClient(kc, CustomObjectsApi);
  }

  async get(namespace: string, name: string): Promise<ProfileBinding> {
    const b = this.cache.get(namespace, name);
    if (!b) throw Object.assign(new Error(`profilebinding ${namespace}/${name} not found`), { code: 404 });
    return JSON.parse(JSON.stringify(b)) as ProfileBinding;
  }

  async replaceStatus(namespace: string, name: string, obj: ProfileBinding): Promise<ProfileBinding> {
    return (await this.api.replaceNamespacedCustomObjectStatus({
      group: GROUP,
      version: VERSION,
      plural: BINDING_PLURAL,
      namespace,
      name,
      body: obj,
      fieldManager: 'spoke-controller',
    })) as ProfileBinding;
  }
}

/** The Lease `namespace/name` on coordination.k8s.io/v1. */
export class KubeLeaseClient implements LeaseClient {
  private readonly api: CoordinationV1Api;

  constructor(
    kc: KubeConfig,
    private readonly namespace: string,
    private readonly name: string,
  ) {
    this.api = makeApiClient(kc, CoordinationV1Api);
  }

  async get(signal: AbortSignal): Promise<Lease | undefined> {
    try {
      return leaseOf(await abortable(signal, (options) => this.api.readNamespacedLease({ namespace: this.namespace, name: this.name }, options)));
    } catch (e) {
      if (codeOf(e) === 404) return undefined;
      throw e;
    }
  }

  async create(spec: LeaseSpec, signal: AbortSignal): Promise<Lease> {
    return leaseOf(await abortable(signal, (options) => this.api.createNamespacedLease({ namespace: this.namespace, body: { metadata: { name: this.name, namespace: this.namespace }, spec: leaseSpecBody(spec) }, fieldManager: 'spoke-controller' }, options)));
  }

  async replace(lease: Lease, signal: AbortSignal): Promise<Lease> {
    const body: V1Lease = { metadata: { name: this.name, namespace: this.namespace, resourceVersion: lease.metadata.resourceVersion }, spec: leaseSpecBody(lease.spec ?? {}) };
    return leaseOf(await abortable(signal, (options) => this.api.replaceNamespacedLease({ namespace: this.namespace, name: this.name, body, fieldManager: 'spoke-controller' }, options)));
  }
}

/**
 * A client-node call that `signal` ends in both of its steps. Its credential step waits for the
 * kubeconfig's exec plugin no longer than the signal allows (kube-credentials.ts). Its options
 * hand the signal to client-node's fetch: aborted, the request is given up and its connection
 * closed (client-node sets no timeout of its own, so an API server that never answers would hold
 * the call and its connection for good).
 */
function abortable<T>(signal: AbortSignal, call: (options: ConfigurationOptions) => Promise<T>): Promise<T> {
  return withCallSignal(signal, () =>
    call({
      middleware: [
        {
          pre: (ctx) => {
            ctx.setSignal(signal);
            return new Observable(Promise.resolve(ctx));
          },
          post: (res) => new Observable(Promise.resolve(res)),
        },
      ],
      middlewareMergeStrategy: 'append',
    }),
  );
}

/**
 * `call` as `abortable` runs it, given up once `ms` pass unanswered: it rejects then with a
 * DEADLINE error saying so (not the fetch's "The user aborted a request."), which the caller
 * handles as any other failed call.
 */
export async function answeredWithin<T>(ms: number, call: (options: ConfigurationOptions) => Promise<T>): Promise<T> {
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(new SpokeError('Unavailable', `API request unanswered after ${ms} ms: given up`, {}, { reason: 'DEADLINE' })), ms);
  try {
    return await abortable(abort.signal, call);
  } catch (e) {
    throw abort.signal.aborted ? abort.signal.reason : e;
  } finally {
    clearTimeout(timer);
  }
}

/** client-node's V1MicroTime writes the six fractional digits MicroTime needs (it reads them back as strings). */
function leaseSpecBody(spec: LeaseSpec): V1LeaseSpec {
  const time = (t: string | undefined) => (t === undefined ? undefined : new V1MicroTime(t));
  return { holderIdentity: spec.holderIdentity, leaseDurationSeconds: spec.leaseDurationSeconds, acquireTime: time(spec.acquireTime), renewTime: time(spec.renewTime), leaseTransitions: spec.leaseTransitions };
}

function leaseOf(l: V1Lease): Lease {
  const s = l.spec ?? {};
  const time = (t: unknown) => (t === undefined || t === null ? undefined : t instanceof Date ? t.toISOString() : String(t));
  return {
    metadata: { name: l.metadata?.name, namespace: l.metadata?.namespace, resourceVersion: l.metadata?.resourceVersion },
    spec: { holderIdentity: s.holderIdentity, leaseDurationSeconds: s.leaseDurationSeconds, acquireTime: time(s.acquireTime), renewTime: time(s.renewTime), leaseTransitions: s.leaseTransitions },
  };
}
