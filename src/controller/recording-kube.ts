// The recording controller's Kubernetes side, on @kubernetes/client-node (loaded only by
// `spoke controller` and `spoke recorder`):
//  - KubeRecordingApi: PUT …/profilerecordings/NAME/status and POST …/profilebindings for the
//    reconciler (reads come from the caches: no `get`).
//  - startRecordingController: the caches (recordings, results, bindings, and the pods the
//    webhook labelled recording.spoke.dev/name, for the node each runs on), the reconciler and a
//    periodic resync, wired.
//  - KubeResultReporter: the node recorder's calls: GET a ProfileRecording (its selector and
//    uid), POST a ProfileRecordingResult owned by it, and GET the result when one of its name
//    exists (409), to tell whether it is this one; each given up after 10 s unanswered.

import { CustomObjectsApi, type KubeConfig } from '@kubernetes/client-node';
import { SpokeError } from '../core/errors.js';
import { Reflector, type GenericReflectorOptions } from './reflector.js';
import { codeOf } from './api-errors.js';
import { makeApiClient } from './kube-credentials.js';
import { answeredWithin } from './kube.js';
import { RecordingReconciler, type RecordingApi, type RecordingCaches, type RecordingReconcilerOptions } from './recording-reconciler.js';
import { POD_RECORDING_ANNOTATION, RECORDING_KIND, RECORDING_LABEL, RECORDING_PLURAL, RESULT_PLURAL, type ProfileRecording, type ProfileRecordingResult } from './recording.js';
import { API_VERSION, BINDING_PLURAL, GROUP, VERSION, type Pod, type ProfileBinding } from './types.js';

export class KubeRecordingApi implements RecordingApi {
  private readonly api: CustomObjectsApi;

  constructor(
    kc: KubeConfig,
    private readonly recordings?: Reflector<ProfileRecording>,
  ) {
    this.api = makeApiClient(kc, CustomObjectsApi);
  }

  async replaceRecordingStatus(namespace: string, name: string, obj: ProfileRecording): Promise<ProfileRecording> {
    const out = (await this.api.replaceNamespacedCustomObjectStatus({ group: GROUP, version: VERSION, plural: RECORDING_PLURAL, namespace, name, body: obj, fieldManager: 'spoke-controller' })) as ProfileRecording;
    this.recordings?.replaced(obj, out);
    return out;
  }

  async createBinding(namespace: string, obj: ProfileBinding): Promise<ProfileBinding> {
    return (await this.api.createNamespacedCustomObject({ group: GROUP, version: VERSION, plural: BINDING_PLURAL, namespace, body: obj, fieldManager: 'spoke-controller' })) as ProfileBinding;
  }
}

export interface RecordingControllerOptions extends Omit<RecordingReconcilerOptions, 'caches' | 'api'> {
  /** The binding cache the webhook already keeps (InformerBindingSource), or a reflector of its own. */
  bindings?: { get(namespace: string, name: string): ProfileBinding | undefined };
  /** Every recording is reconciled again this often (default 10 min). */
  resyncMs?: number;
  reflector?: Omit<GenericReflectorOptions<never>, 'plural' | 'onChange' | 'keep'>;
}

export interface RecordingController {
  reconciler: RecordingReconciler;
  recordings: Reflector<ProfileRecording>;
  results: Reflector<ProfileRecordingResult>;
  /** Pods labelled recording.spoke.dev/name (by the webhook, when it marks them). */
  pods: Reflector<Pod & { metadata: NonNullable<Pod['metadata']> }>;
  bindings: { get(namespace: string, name: string): ProfileBinding | undefined };
  waitForSync(timeoutMs: number): Promise<void>;
  /** Reconciles (the default): every recording once the caches have synced, then as they change. */
  lead(): void;
  /**
   * Reconciles nothing while another replica does (it holds the Lease, lease.ts); the caches keep
   * running for the webhook. The publish under way is aborted; resolves once its reconcile ended.
   */
  follow(): Promise<void>;
  stop(): Promise<void>;
}

/** Starts the caches and the reconciler; reconciles every recording after the first sync and on every change. */
export function startRecordingController(kc: KubeConfig, o: RecordingControllerOptions): RecordingController {
  const ready = () => recordings.synced() && results.synced() && pods.synced() && (ownBindings?.synced() ?? true);
  const recordings: Reflector<ProfileRecording> = new Reflector<ProfileRecording>(kc, {
    ...o.reflector,
    plural: RECORDING_PLURAL,
    log: o.log,
    onChange: (type, r) => {
      if (type !== 'DELETED' && ready()) reconciler.enqueue(`${r.metadata.namespace}/${r.metadata.name}`);
    },
  });
  const results: Reflector<ProfileRecordingResult> = new Reflector<ProfileRecordingResult>(kc, {
    ...o.reflector,
    plural: RESULT_PLURAL,
    log: o.log,
    onChange: (_type, r) => {
      if (ready()) reconciler.enqueueResult(r);
    },
  });
  // RBAC: pods list, watch. Only pods the webhook labelled are cached; their marking is checked per result.
  const pods = new Reflector<Pod & { metadata: NonNullable<Pod['metadata']> }>(kc, {
    ...o.reflector,
    plural: 'pods',
    path: '/api/v1/pods',
    labelSelector: RECORDING_LABEL,
    log: o.log,
    onChange: (_type, p) => {
      const rec = p.metadata.annotations?.[POD_RECORDING_ANNOTATION];
      if (ready() && rec) reconciler.enqueue(`${p.metadata.namespace}/${rec}`);
    },
  });
  const ownBindings = o.bindings ? undefined : new Reflector<ProfileBinding>(kc, { ...o.reflector, plural: BINDING_PLURAL, log: o.log });
  const bindings = o.bindings ?? (ownBindings as Reflector<ProfileBinding>);
  const caches: RecordingCaches = {
    recording: (ns, name) => recordings.get(ns, name),
    recordings: () => recordings.all(),
    results: (ns) => results.list(ns),
    binding: (ns, name) => bindings.get(ns, name),
    pod: (ns, name) => pods.get(ns, name),
  };
  const reconciler = new RecordingReconciler({ ...o, caches, api: new KubeRecordingApi(kc, recordings) });
  recordings.start();
  results.start();
  pods.start();
  ownBindings?.start();
  const synced = Promise.all([recordings.waitForSync(3_600_000), results.waitForSync(3_600_000), pods.waitForSync(3_600_000), ownBindings?.waitForSync(3_600_000)]).then(() => reconciler.enqueueAll());
  synced.catch(() => undefined);
  const resync = setInterval(() => {
    if (ready()) reconciler.enqueueAll();
  }, o.resyncMs ?? 600_000);
  resync.unref();
  return {
    reconciler,
    recordings,
    results,
    pods,
    bindings,
    waitForSync: (ms) =>
      Promise.race([
        synced,
        new Promise<never>((_, reject) => {
          const t = setTimeout(() => reject(new Error(`recording caches not synced after ${ms} ms`)), ms);
          t.unref();
          void synced.then(() => clearTimeout(t));
        }),
      ]).then(() => undefined),
    lead: () => {
      reconciler.resume();
      if (ready()) reconciler.enqueueAll();
    },
    follow: () => reconciler.pause(),
    stop: async () => {
      clearInterval(resync);
      reconciler.stop();
      await Promise.all([recordings.stop(), results.stop(), pods.stop(), ownBindings?.stop()]);
    },
  };
}

// ---- node side ----

/**
 * How long each of the node recorder's API calls waits for its answer before it fails like any
 * other (docs/recording.md, step 3). client-node sets no timeout, so an API server that takes
 * the request and never answers held the poll for good, and with it every later poll, report
 * and give-up. A constant, not --poll-ms: a create at a loaded API server may take longer than a
 * 50 ms poll, and a 60 s poll need not wait longer for one.
 */
export const RECORDER_API_TIMEOUT_MS = 10_000;

/** The calls of CustomObjectsApi the node recorder makes. */
export type ResultReporterApi = Pick<CustomObjectsApi, 'getNamespacedCustomObject' | 'createNamespacedCustomObject'>;

/** The node recorder's API calls (ClusterRole spoke-recorder: profilerecordings get, profilerecordingresults create and get). */
export class KubeResultReporter {
  constructor(
    kc: KubeConfig,
    /** Tests give a shorter one. */
    private readonly timeoutMs = RECORDER_API_TIMEOUT_MS,
    /** Unit tests give a fake: no API server runs there. */
    private readonly api: ResultReporterApi = makeApiClient(kc, CustomObjectsApi),
  ) {}

  /** The recording, or undefined when it does not exist. */
  async recording(namespace: string, name: string): Promise<ProfileRecording | undefined> {
    try {
      return (await answeredWithin(this.timeoutMs, (options) => this.api.getNamespacedCustomObject({ group: GROUP, version: VERSION, plural: RECORDING_PLURAL, namespace, name }, options))) as ProfileRecording;
    } catch (e) {
      if (codeOf(e) === 404) return undefined;
      throw e;
    }
  }

  /**
   * Creates the result, owned by the recording. One of its name that exists already (a create
   * given up at its deadline that was made, or a restarted recorder) is kept only when a read
   * of it shows it is this very result (resultDifferences finds none); any other throws
   * RESULT_CONFLICT, and a read that fails throws, the report to be retried either way.
   */
  async report(rec: ProfileRecording, result: ProfileRecordingResult): Promise<'created' | 'exists'> {
    const body: ProfileRecordingResult = {
      ...result,
      apiVersion: API_VERSION,
      kind: 'ProfileRecordingResult',
      metadata: {
        ...result.metadata,
        namespace: rec.metadata.namespace,
        ownerReferences: [{ apiVersion: API_VERSION, kind: RECORDING_KIND, name: rec.metadata.name as string, uid: rec.metadata.uid }],
      },
    };
    try {
      await answeredWithin(this.timeoutMs, (options) => this.api.createNamespacedCustomObject({ group: GROUP, version: VERSION, plural: RESULT_PLURAL, namespace: rec.metadata.namespace as string, body, fieldManager: 'spoke-recorder' }, options));
      return 'created';
    } catch (e) {
      if (codeOf(e) !== 409) throw e;
    }
    const name = body.metadata.name as string;
    const namespace = rec.metadata.namespace as string;
    const found = (await answeredWithin(this.timeoutMs, (options) => this.api.getNamespacedCustomObject({ group: GROUP, version: VERSION, plural: RESULT_PLURAL, namespace, name }, options))) as ProfileRecordingResult;
    const differ = resultDifferences(found, body, rec);
    if (differ.length > 0) {
      throw new SpokeError('FailedPrecondition', `${RESULT_PLURAL} ${namespace}/${name} exists and is not this node's result for the container: ${differ.join('; ')}`, { namespace, name }, { reason: 'RESULT_CONFLICT' });
    }
    return 'exists';
  }
}

/** The spec fields that say whose result it is: the node that recorded which container (by id) of which pod for which recording. */
const RESULT_IDENTITY = ['node', 'recording', 'pod', 'container', 'containerID'] as const;

/**
 * How `found`, stored under the name of `ours`, is another result: one line per identity field
 * that differs, and one when it is not owned by `rec` (its uid). The name alone says nothing:
 * any node's recorder may create a result of any name (the webhook checks only that spec.node
 * is the creator's node), and a recording deleted and made again keeps its name, not its uid.
 * Content (syscalls, image) is not compared: the same container's report may differ there.
 */
function resultDifferences(found: ProfileRecordingResult, ours: ProfileRecordingResult, rec: ProfileRecording): string[] {
  // What another node wrote is quoted bounded, as the controller quotes it (resultNodeProblem).
  const quote = (v: unknown) => (v === undefined ? 'absent' : JSON.stringify(String(v).slice(0, 253)));
  const out = RESULT_IDENTITY.filter((k) => found.spec?.[k] !== ours.spec[k]).map((k) => `its spec.${k} is ${quote(found.spec?.[k])}, this report's ${quote(ours.spec[k])}`);
  const uid = rec.metadata.uid;
  const owned = uid !== undefined && (found.metadata?.ownerReferences ?? []).some((o) => o.kind === RECORDING_KIND && o.name === rec.metadata.name && o.uid === uid);
  if (!owned) out.push(`it is not owned by ${RECORDING_KIND} ${rec.metadata.namespace}/${rec.metadata.name} (uid ${quote(uid)})`);
  return out;
}
