// The recording controller's Kubernetes side, on @kubernetes/client-node (loaded only by
// `spoke controller` and `spoke recorder`):
//  - Reflector<T>: a list/watch cache of one spoke.dev custom resource in all namespaces, with
//    the same behaviour as kube.ts's binding reflector (paginated list, watch from the list's
//    resourceVersion with bookmarks, resume from the last resourceVersion, 410 Gone → relist,
//    backoff on errors).
//  - KubeRecordingApi: PUT …/profilerecordings/NAME/status and POST …/profilebindings for the
//    reconciler (reads come from the caches: no `get`).
//  - startRecordingController: the caches, the reconciler and a periodic resync, wired.
//  - KubeResultReporter: the node recorder's two calls: GET a ProfileRecording (its selector
//    and uid), POST a ProfileRecordingResult owned by it.

import { CustomObjectsApi, Watch, type KubeConfig } from '@kubernetes/client-node';
import { RecordingReconciler, type RecordingApi, type RecordingCaches, type RecordingReconcilerOptions } from './recording-reconciler.js';
import { RECORDING_KIND, RECORDING_PLURAL, RESULT_PLURAL, type ProfileRecording, type ProfileRecordingResult } from './recording.js';
import { API_VERSION, BINDING_PLURAL, GROUP, VERSION, type ObjectMeta, type ProfileBinding } from './types.js';

type KubeObject = { metadata: ObjectMeta };
type ChangeType = 'ADDED' | 'MODIFIED' | 'DELETED';
type WatchEnd = { kind: 'closed' } | { kind: 'expired' } | { kind: 'error'; error: unknown };

function codeOf(e: unknown): number | undefined {
  const o = e as { code?: unknown; statusCode?: unknown } | undefined;
  if (typeof o?.code === 'number') return o.code;
  if (typeof o?.statusCode === 'number') return o.statusCode;
  return undefined;
}

export interface GenericReflectorOptions<T> {
  plural: string;
  pageSize?: number;
  watchTimeoutSeconds?: number;
  backoffInitialMs?: number;
  backoffMaxMs?: number;
  log?: (event: Record<string, unknown>) => void;
  onChange?: (type: ChangeType, obj: T) => void;
}

export class Reflector<T extends KubeObject> {
  private objects = new Map<string, Map<string, T>>();
  private rv = '';
  private hasSynced = false;
  private stopped = true;
  private abort: AbortController | undefined;
  private readonly api: CustomObjectsApi;
  private readonly watch: Watch;
  private syncWaiters: (() => void)[] = [];
  private loop: Promise<void> | undefined;
  private wake: (() => void) | undefined;
  /** Ends the current watch wait: client-node's abort does not always call the done callback. */
  private endWatch: (() => void) | undefined;
  readonly stats = { lists: 0, watches: 0, bookmarks: 0, expired: 0, errors: 0 };

  constructor(
    kc: KubeConfig,
    private readonly opts: GenericReflectorOptions<T>,
  ) {
    this.api = kc.makeApiClient(CustomObjectsApi);
    this.watch = new Watch(kc);
  }

  list(namespace: string): readonly T[] {
    return [...(this.objects.get(namespace)?.values() ?? [])];
  }

  all(): T[] {
    return [...this.objects.values()].flatMap((m) => [...m.values()]);
  }

  get(namespace: string, name: string): T | undefined {
    return this.objects.get(namespace)?.get(name);
  }

  /** Puts the answer of our own write in the cache, if the cache still holds the version the write was based on. */
  replaced(before: T, after: T): void {
    const ns = after.metadata.namespace ?? '';
    const name = after.metadata.name ?? '';
    const cur = this.get(ns, name);
    if (cur && cur.metadata.resourceVersion === before.metadata.resourceVersion) this.objects.get(ns)?.set(name, after);
  }

  synced(): boolean {
    return this.hasSynced;
  }

  resourceVersion(): string {
    return this.rv;
  }

  waitForSync(timeoutMs: number): Promise<void> {
    if (this.hasSynced) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`${this.opts.plural} cache not synced after ${timeoutMs} ms`)), timeoutMs);
      this.syncWaiters.push(() => {
        clearTimeout(t);
        resolve();
      });
    });
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.loop = this.run();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.abort?.abort();
    this.wake?.();
    this.endWatch?.();
    await this.loop;
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.wake = undefined;
        resolve();
      }, ms);
      this.wake = () => {
        clearTimeout(t);
        this.wake = undefined;
        resolve();
      };
    });
  }

  private async run(): Promise<void> {
    const initial = this.opts.backoffInitialMs ?? 500;
    const max = this.opts.backoffMaxMs ?? 30_000;
    let backoff = initial;
    while (!this.stopped) {
      if (this.rv === '') {
        try {
          await this.relist();
          backoff = initial;
        } catch (e) {
          this.stats.errors++;
          this.opts.log?.({ msg: `list ${this.opts.plural} failed`, error: (e as Error).message ?? String(e), code: codeOf(e), retryInMs: backoff });
          await this.sleep(backoff);
          backoff = Math.min(backoff * 2, max);
          continue;
        }
      }
      if (this.stopped) break;
      const end = await this.watchOnce();
      if (this.stopped) break;
      if (end.kind === 'expired') {
        this.stats.expired++;
        this.rv = '';
      } else if (end.kind === 'error') {
        this.stats.errors++;
        this.opts.log?.({ msg: `watch ${this.opts.plural} failed`, error: (end.error as Error)?.message ?? String(end.error), code: codeOf(end.error), retryInMs: backoff });
        await this.sleep(backoff);
        backoff = Math.min(backoff * 2, max);
      } else {
        backoff = initial;
      }
    }
  }

  private async relist(): Promise<void> {
    const limit = this.opts.pageSize ?? 500;
    for (let restart = 0; ; restart++) {
      const items: T[] = [];
      let cont: string | undefined;
      let rv = '';
      try {
        do {
          const page = (await this.api.listClusterCustomObject({ group: GROUP, version: VERSION, plural: this.opts.plural, limit, _continue: cont })) as {
            items?: T[];
            metadata?: { resourceVersion?: string; continue?: string };
          };
          items.push(...(page.items ?? []));
          cont = page.metadata?.continue || undefined;
          rv = page.metadata?.resourceVersion ?? '';
        } while (cont);
      } catch (e) {
        if (codeOf(e) === 410 && cont !== undefined && restart < 3) continue;
        throw e;
      }
      this.stats.lists++;
      const next = new Map<string, Map<string, T>>();
      for (const o of items) {
        const ns = o.metadata?.namespace ?? '';
        const m = next.get(ns) ?? new Map<string, T>();
        m.set(o.metadata.name ?? '', o);
        next.set(ns, m);
      }
      const old = this.objects;
      this.objects = next;
      this.rv = rv;
      if (this.opts.onChange) {
        for (const [ns, m] of old) for (const [n, o] of m) if (!next.get(ns)?.has(n)) this.opts.onChange('DELETED', o);
        for (const [ns, m] of next)
          for (const [n, o] of m) {
            const was = old.get(ns)?.get(n);
            if (!was) this.opts.onChange('ADDED', o);
            else if (was.metadata.resourceVersion !== o.metadata.resourceVersion) this.opts.onChange('MODIFIED', o);
          }
      }
      if (!this.hasSynced) {
        this.hasSynced = true;
        for (const w of this.syncWaiters.splice(0)) w();
      }
      return;
    }
  }

  private watchOnce(): Promise<WatchEnd> {
    const base = this.opts.watchTimeoutSeconds ?? 300;
    const timeoutSeconds = base + Math.floor(Math.random() * base);
    this.stats.watches++;
    return new Promise<WatchEnd>((resolveOnce) => {
      let settled = false;
      const resolve = (end: WatchEnd) => {
        if (settled) return;
        settled = true;
        this.endWatch = undefined;
        resolveOnce(end);
      };
      this.endWatch = () => resolve({ kind: 'closed' });
      let expired = false;
      let failure: unknown;
      const onEvent = (type: string, obj: T & { code?: number; message?: string }) => {
        if (type === 'ERROR') {
          if (obj?.code === 410) expired = true;
          else failure = Object.assign(new Error(obj?.message ?? 'watch ERROR event'), { code: obj?.code });
          return;
        }
        const rv = obj?.metadata?.resourceVersion;
        if (type === 'BOOKMARK') this.stats.bookmarks++;
        else if (type === 'ADDED' || type === 'MODIFIED' || type === 'DELETED') {
          const ns = obj.metadata?.namespace ?? '';
          const name = obj.metadata?.name ?? '';
          const m = this.objects.get(ns) ?? new Map<string, T>();
          if (type === 'DELETED') m.delete(name);
          else m.set(name, obj);
          if (m.size === 0) this.objects.delete(ns);
          else this.objects.set(ns, m);
          this.opts.onChange?.(type, obj);
        }
        if (rv) this.rv = rv;
      };
      const onDone = (err: unknown) => {
        this.abort = undefined;
        if (expired || codeOf(err) === 410) resolve({ kind: 'expired' });
        else if (failure !== undefined) resolve({ kind: 'error', error: failure });
        else if (err && !this.stopped) resolve({ kind: 'error', error: err });
        else resolve({ kind: 'closed' });
      };
      this.watch
        .watch(`/apis/${GROUP}/${VERSION}/${this.opts.plural}`, { resourceVersion: this.rv, allowWatchBookmarks: true, timeoutSeconds }, onEvent, onDone)
        .then((controller) => {
          this.abort = controller;
          if (this.stopped) controller.abort();
        })
        .catch(onDone);
    });
  }
}

export class KubeRecordingApi implements RecordingApi {
  private readonly api: CustomObjectsApi;

  constructor(
    kc: KubeConfig,
    private readonly recordings?: Reflector<ProfileRecording>,
  ) {
    this.api = kc.makeApiClient(CustomObjectsApi);
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
  reflector?: Omit<GenericReflectorOptions<never>, 'plural' | 'onChange'>;
}

export interface RecordingController {
  reconciler: RecordingReconciler;
  recordings: Reflector<ProfileRecording>;
  results: Reflector<ProfileRecordingResult>;
  bindings: { get(namespace: string, name: string): ProfileBinding | undefined };
  waitForSync(timeoutMs: number): Promise<void>;
  stop(): Promise<void>;
}

/** Starts the caches and the reconciler; reconciles every recording after the first sync and on every change. */
export function startRecordingController(kc: KubeConfig, o: RecordingControllerOptions): RecordingController {
  const ready = () => recordings.synced() && results.synced() && (ownBindings?.synced() ?? true);
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
  const ownBindings = o.bindings ? undefined : new Reflector<ProfileBinding>(kc, { ...o.reflector, plural: BINDING_PLURAL, log: o.log });
  const bindings = o.bindings ?? (ownBindings as Reflector<ProfileBinding>);
  const caches: RecordingCaches = {
    recording: (ns, name) => recordings.get(ns, name),
    recordings: () => recordings.all(),
    results: (ns) => results.list(ns),
    binding: (ns, name) => bindings.get(ns, name),
  };
  const reconciler = new RecordingReconciler({ ...o, caches, api: new KubeRecordingApi(kc, recordings) });
  recordings.start();
  results.start();
  ownBindings?.start();
  const synced = Promise.all([recordings.waitForSync(3_600_000), results.waitForSync(3_600_000), ownBindings?.waitForSync(3_600_000)]).then(() => reconciler.enqueueAll());
  synced.catch(() => undefined);
  const resync = setInterval(() => {
    if (ready()) reconciler.enqueueAll();
  }, o.resyncMs ?? 600_000);
  resync.unref();
  return {
    reconciler,
    recordings,
    results,
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
    stop: async () => {
      clearInterval(resync);
      reconciler.stop();
      await Promise.all([recordings.stop(), results.stop(), ownBindings?.stop()]);
    },
  };
}

// ---- node side ----

/** The node recorder's API calls (ClusterRole spoke-recorder: profilerecordings get, profilerecordingresults create). */
export class KubeResultReporter {
  private readonly api: CustomObjectsApi;

  constructor(kc: KubeConfig) {
    this.api = kc.makeApiClient(CustomObjectsApi);
  }

  /** The recording, or undefined when it does not exist. */
  async recording(namespace: string, name: string): Promise<ProfileRecording | undefined> {
    try {
      return (await this.api.getNamespacedCustomObject({ group: GROUP, version: VERSION, plural: RECORDING_PLURAL, namespace, name })) as ProfileRecording;
    } catch (e) {
      if (codeOf(e) === 404) return undefined;
      throw e;
    }
  }

  /** Creates the result, owned by the recording; an existing result of the same name (a restarted recorder) is kept. */
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
      await this.api.createNamespacedCustomObject({ group: GROUP, version: VERSION, plural: RESULT_PLURAL, namespace: rec.metadata.namespace as string, body, fieldManager: 'spoke-recorder' });
      return 'created';
    } catch (e) {
      if (codeOf(e) === 409) return 'exists';
      throw e;
    }
  }
}
