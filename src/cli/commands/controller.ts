import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { RECORDER_SERVICE_ACCOUNT, serviceAccountUser } from '../../controller/admission.js';
import { POD_SECURITY_LEVELS, type BindingMode } from '../../controller/binding.js';
import { namespaceConditionStale, StatusUpdater } from '../../controller/binding-status.js';
import type { PodStatusInformer } from '../../controller/kube.js';
import { LeaseElector } from '../../controller/lease.js';
import type { ProfileBinding } from '../../controller/types.js';
import { WebhookServer } from '../../controller/webhook.js';
import { isDnsSubdomain, isNamespaceName } from '../../core/namespace.js';
import { parseCommand } from '../args.js';
import { UsageError } from '../errors.js';
import { RECORDING_CONTROLLER_HELP, recordingControllerFlags, recordingProofFlags, startRecordingControllerFromFlags } from '../recording-controller.js';

const HELP = `usage: spoke controller --tls-cert F --tls-key F [--listen :9443] [--annotations] [--kubeconfig F]
                        [--admission-client-ca F [--admission-client-name CN]]
                        [--pod-security-default LEVEL]

Runs the ProfileBinding admission webhooks over HTTPS with its own serving certificate:
  POST /mutate-pods        pods CREATE, and pods/ephemeralcontainers UPDATE (kubectl debug:
                           the containers it adds), in namespaces labelled
                           spoke.dev/binding=enabled (the MutatingWebhookConfiguration's
                           namespaceSelector): sets the KEP-6061 OCI profile on containers
                           and init containers (by annotation where the namespace's Pod
                           Security level rejects type OCI, or with --annotations); an
                           ephemeral container an update adds gets the field, and is denied
                           where it would need an annotation (a running pod's annotations
                           cannot change); Unconfined (without override: true) and
                           privileged containers, and Windows pods (spec.os.name
                           windows), are admitted untouched, with a warning;
                           pods a ProfileRecording selects (not finalized) are also
                           annotated recording.spoke.dev/name (and /containers), signed
                           with recording.spoke.dev/proof (--recording-key), for spoke shim
                           --recording and spoke recorder; recording annotations it did not
                           set are removed
  POST /validate-bindings  ProfileBinding CREATE/UPDATE: refuses bad or tag references; warns
                           where the namespace has not opted in (the binding binds nothing yet)
  POST /validate-results   ProfileRecordingResult CREATE: the requester must be the node
                           recorders' ServiceAccount (--recorder-service-account), and
                           spec.node the node its token is bound to
  POST /validate-pod-updates  pods and pods/status UPDATE, same namespaces: refuses adding
                           or changing recording.spoke.dev/* annotations, any change to
                           seccomp|apparmor.profiles.spoke.dev/* annotations, and an image
                           change that the bindings would give a different profile (or an
                           image ID where a binding names images; docs/binding.md)
  GET  /healthz, /readyz   readiness waits for the first complete ProfileBinding and
                           namespace lists
Bindings come from a list/watch cache of profilebindings in all namespaces (bookmarks,
410 Gone → relist, backoff on errors), namespace labels from one of namespaces. Matched
workloads, skipped containers, a Valid condition and a NamespaceOptedIn one (whether the
namespace carries spoke.dev/binding=enabled) are written to each binding's status
(bounded lists): from admission calls whose client certificate verifies against
--admission-client-ca, else from a list/watch of pods, never from an unauthenticated
review. The certificate files are re-read when they change. Logs are JSON lines on stderr.
Replicas: the one holding the coordination.k8s.io Lease spoke-controller in the namespace of
the kubeconfig context (in the cluster, the controller's own) counts pods for status (without
--admission-client-ca) and reconciles ProfileRecordings; every replica serves the webhooks.
SIGTERM/SIGINT stop it cleanly, also while it starts.

options:
  --tls-cert F      PEM serving certificate (chain) for the webhook Service's DNS name
  --tls-key F       PEM private key
  --listen ADDR     [host]:port to listen on (default :9443)
  --annotations     set the shim's per-container annotations instead of the KEP API field
  --kubeconfig F    kubeconfig file (default: $KUBECONFIG, then ~/.kube/config, then the in-cluster
                    service account, refused outside a Pod; docs/binding.md)
  --no-status       do not write ProfileBinding status
  --admission-client-ca F
                    PEM CA of the API server's client certificate for webhooks; reviews
                    without it are refused (403), and status is taken from the verified
                    ones (no pod list/watch needed)
  --admission-client-name CN
                    the subject CN the API server's client certificate must carry (needed
                    where that CA also signs other clients, e.g. the cluster CA)
  --pod-security-default LEVEL
                    the cluster's default Pod Security enforce level for namespaces without
                    the pod-security.kubernetes.io/enforce label (default privileged)
  --recorder-service-account NAMESPACE:NAME
                    the ServiceAccount the node recorders (spoke recorder) run as: the only
                    one whose ProfileRecordingResults are admitted (default
                    ${RECORDER_SERVICE_ACCOUNT}, deploy/controller/rbac.yaml)

ProfileRecordings (reconciled next to the webhooks; finalized by annotating a recording with
recording.spoke.dev/finalize): per-container results are unioned, built into a profile,
pushed (and signed), the reference written to status, and with bind: true a ProfileBinding
created.
${RECORDING_CONTROLLER_HELP}`;

/** The Lease the replicas elect their leader with, in the controller's namespace. */
export const LEASE_NAME = 'spoke-controller';

const FLAGS = {
  'tls-cert': { type: 'string' },
  'tls-key': { type: 'string' },
  listen: { type: 'string' },
  annotations: { type: 'boolean' },
  kubeconfig: { type: 'string' },
  'no-status': { type: 'boolean' },
  'admission-client-ca': { type: 'string' },
  'admission-client-name': { type: 'string' },
  'pod-security-default': { type: 'string' },
  'recorder-service-account': { type: 'string' },
  ...recordingControllerFlags,
} as const;

export function parseListen(text: string): { host: string | undefined; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]*))?:([0-9]{1,5})$/.exec(text);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port < 0 || port > 65535) throw new UsageError(`--listen must be [host]:port, got ${JSON.stringify(text)}`);
  const host = m[1] ?? (m[2] || undefined);
  return { host, port };
}

/** The username of ServiceAccount `NAMESPACE:NAME` (--recorder-service-account). */
export function parseServiceAccount(text: string): string {
  const [namespace = '', name = '', ...rest] = text.split(':');
  if (rest.length > 0 || !isNamespaceName(namespace) || !isDnsSubdomain(name)) {
    throw new UsageError(`--recorder-service-account must be NAMESPACE:NAME of a ServiceAccount, got ${JSON.stringify(text.slice(0, 320))}`);
  }
  return serviceAccountUser(`${namespace}:${name}`);
}

function log(event: Record<string, unknown>): void {
  process.stderr.write(JSON.stringify({ time: new Date().toISOString(), component: 'controller', ...event }) + '\n');
}

export async function run(argv: string[]): Promise<number> {
  const { values, help } = parseCommand(argv, FLAGS, HELP, [0, 0]);
  if (help) return 0;
  const cert = values['tls-cert'];
  const key = values['tls-key'];
  if (!cert || !key) throw new UsageError(`--tls-cert and --tls-key are required\n${HELP}`);
  const { host, port } = parseListen(values.listen ?? ':9443');
  const mode: BindingMode = values.annotations ? 'annotations' : 'field';
  const podSecurityDefault = values['pod-security-default'] ?? 'privileged';
  if (!POD_SECURITY_LEVELS.includes(podSecurityDefault)) throw new UsageError(`--pod-security-default must be one of ${POD_SECURITY_LEVELS.join(', ')}`);
  const recorderUser = parseServiceAccount(values['recorder-service-account'] ?? RECORDER_SERVICE_ACCOUNT);
  const clientCaFile = values['admission-client-ca'];
  const clientName = values['admission-client-name'];
  if (clientName !== undefined && clientCaFile === undefined) throw new UsageError('--admission-client-name needs --admission-client-ca');
  const { recordingKey, proofTtlSeconds } = recordingProofFlags(values);
  // Proofs are signed only for reviews from the API server (webhook.ts): without its client CA none would be.
  if (recordingKey !== undefined && clientCaFile === undefined) throw new UsageError('--recording-key needs --admission-client-ca: pods are marked for recording only in reviews from the API server');

  // Installed before anything starts or is logged: a SIGTERM or SIGINT from here on stops the
  // controller as one after "listening" does (the "stopping" line, the Lease released), not the
  // process outright. One during the start-up ends it there: what has not started is not
  // started. The stop closes the kubeconfig credentials: no exec credential plugin run starts,
  // the one under way has 2 s to answer (a refresh of a token that expired, for the Lease
  // release), not its 30 s, then is killed: the caches' lists waiting for it have no deadline,
  // and would hold the stop until then (then run it again); the Lease release and the last
  // status writes go with the credential kept or the one that run gives. A run still going when
  // the process exits is killed then (docs/binding.md#kubeconfig-and-credentials).
  const stop = new AbortController();
  const stopped = new Promise<void>((resolve) => stop.signal.addEventListener('abort', () => resolve(), { once: true }));
  const onSignal = (signal: NodeJS.Signals) => {
    if (stop.signal.aborted) return;
    log({ msg: 'stopping', signal });
    stop.abort();
  };
  process.once('SIGTERM', onSignal);
  process.once('SIGINT', onSignal);
  try {
    // Loaded here only: the Kubernetes client costs start-up time the other commands must not pay.
    const kube = await import('../../controller/kube.js');
    if (stop.signal.aborted) return 0;
    const kc = kube.loadKubeConfig(values.kubeconfig, { signal: stop.signal, log });
    let updater: StatusUpdater | undefined;
    // Status is refreshed where it says otherwise than the spec (Valid) or the namespace's opt-in
    // label (NamespaceOptedIn): whichever of the two caches syncs last finds the stale ones.
    const touchIfStale = (b: ProfileBinding) => {
      const stale = b.metadata.generation !== b.status?.observedGeneration || namespaceConditionStale(b, namespaces.labels(b.metadata.namespace ?? ''));
      if (stale) updater?.touch(`${b.metadata.namespace}/${b.metadata.name}`);
    };
    const source = new kube.InformerBindingSource(kc, {
      log,
      onChange: (type, b) => {
        if (type !== 'DELETED') touchIfStale(b);
      },
    });
    const namespaces = new kube.InformerNamespaceSource(kc, {
      log,
      onChange: (type, ns) => {
        if (type !== 'DELETED' && source.synced()) for (const b of source.list(ns.metadata.name ?? '')) touchIfStale(b);
      },
    });
    if (!values['no-status']) updater = new StatusUpdater(new kube.KubeStatusClient(kc, source), { namespaces, log });

    source.start();
    namespaces.start();
    updater?.start();
    const recordings = await startRecordingControllerFromFlags(values, kc, source, log, recordingKey);
    // What must happen once in the cluster, not once per replica, is done by the replica that holds
    // the Lease (docs/binding.md#replicas): pushing and signing recorded profiles, and counting pods
    // where status comes from them. The others follow.
    void recordings.controller.follow();
    let pods: PodStatusInformer | undefined;
    const elector = new LeaseElector({
      client: new kube.KubeLeaseClient(kc, kc.getContextObject(kc.getCurrentContext())?.namespace || 'default', LEASE_NAME),
      identity: `${hostname()}_${randomUUID()}`,
      log,
      onStartedLeading: () => {
        // Without a client CA a review cannot be told from the API server's: status comes from pods.
        // A new informer each time: the pods of its first list are not counted (the previous leader did).
        if (updater && clientCaFile === undefined) {
          pods = new kube.PodStatusInformer(kc, { bindings: source, namespaces, mode, podSecurityDefault, record: (m) => updater?.record(m), log });
          pods.start();
        }
        recordings.controller.lead();
      },
      onStoppedLeading: async () => {
        // Awaited before the Lease is released (or tried for again): the publish under way must have
        // ended, else the next leader would push and sign beside it.
        await recordings.controller.follow();
        await pods?.stop();
        pods = undefined;
      },
    });
    // Pods a ProfileRecording selects are marked for recording from the recording controller's cache.
    const recordingCache = recordings.controller.recordings;
    const server = new WebhookServer({
      certFile: cert,
      keyFile: key,
      host,
      port,
      mode,
      source,
      namespaces,
      podSecurityDefault,
      recorderUser,
      recordings: { list: (ns) => recordingCache.list(ns), synced: () => recordingCache.synced() },
      ...(recordingKey ? { recordingKey } : {}),
      proofTtlSeconds,
      log,
      ...(clientCaFile === undefined ? {} : { clientCaFile }),
      ...(clientName === undefined ? {} : { clientName }),
      onApplied: updater && clientCaFile !== undefined ? (m) => updater?.record(m) : undefined,
    });
    // Stopped while the recording controller started: neither the Lease nor the webhooks are.
    if (!stop.signal.aborted) {
      elector.start();
      const addr = await server.listen();
      if (!stop.signal.aborted) {
        log({ msg: 'listening', address: addr.address, port: addr.port, mode });
        source.waitForSync(60_000).then(
          () => log({ msg: 'profilebinding cache synced', resourceVersion: source.resourceVersion() }),
          (e: Error) => log({ msg: e.message, level: 'warning' }),
        );
      }
      await stopped;
      await server.close();
      await elector.stop();
    }
    await recordings.close();
    await updater?.stop();
    await namespaces.stop();
    await source.stop();
    return 0;
  } finally {
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
  }
}
