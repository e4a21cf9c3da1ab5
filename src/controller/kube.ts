// The controller's Kubernetes side, on @kubernetes/client-node (loaded only by `spoke
// controller`, never by the CLI's other commands):
//  - InformerBindingSource: a reflector for ProfileBindings in all namespaces. Paginated list
//    (limit/continue; an expired continue token restarts the list), then watch from the list's
//    resourceVersion with allowWatchBookmarks; a watch that ends is resumed from the last
//    resourceVersion seen (events or bookmarks); 410 Gone — as an HTTP status or as an ERROR
//    event in the stream — discards the resourceVersion and relists; other errors back off
//    exponentially (capped) and retry. client-node's own ListWatch neither asks for bookmarks
//    nor retries after errors, hence this small reflector over its Watch and CustomObjectsApi.
//  - KubeStatusClient: PUT of the status subresource for the StatusUpdater (reads: the cache).

import { CustomObjectsApi, KubeConfig, Watch } from '@kubernetes/client-node';
import type { BindingSource } from './source.js';
import type { StatusClient } from './status.js';
import { BINDING_PLURAL, GROUP, VERSION, type ProfileBinding } from './types.js';

export function loadKubeConfig(file?: string): KubeConfig {
  const kc = new KubeConfig();
  if (file) kc.loadFromFile(file);
  else kc.loadFromDefault(); // in-cluster service account when run as the Deployment
  return kc;
}

export interface ReflectorOptions {
  pageSize?: number;
  /** Server-side watch timeout, randomized in [t, 2t) like client-go, so watches restart spread out. */
  watchTimeoutSeconds?: number;
  backoffInitialMs?: number;
  backoffMaxMs?: number;
  log?: (event: Record<string, unknown>) => void;
  /** Called after each add/update/delete (e.g. to refresh status conditions). */
  onChange?: (type: 'ADDED' | 'MODIFIED' | 'DELETED', b: ProfileBinding) => void;
}

type WatchEnd = { kind: 'closed' } | { kind: 'expired' } | { kind: 'error'; error: unknown };

function codeOf(e: unknown): number | undefined {
  const o = e as { code?: unknown; statusCode?: unknown } | undefined;
  if (typeof o?.code === 'number') return o.code;
  if (typeof o?.statusCode === 'number') return o.statusCode;
  return undefined;
}

export class InformerBindingSource implements BindingSource {
  private objects = new Map<string, Map<string, ProfileBinding>>();
  private rv = '';
  private hasSynced = false;
  private stopped = true;
  private abort: AbortController | undefined;
  private readonly api: CustomObjectsApi;
  private readonly watch: Watch;
  private syncWaiters: (() => void)[] = [];
  private loop: Promise<void> | undefined;
  private wake: (() => void) | undefined;
  /**
   * Ends the current watch wait. On this client-node version aborting the watch's controller
   * does not call the done callback, so stop() would wait for the server-side timeout (minutes):
   * stop() resolves the wait itself, as recording-kube.ts's Reflector does.
   */
  private endWatch: (() => void) | undefined;
  /** Counters for tests and logs. */
  readonly stats = { lists: 0, watches: 0, bookmarks: 0, expired: 0, errors: 0 };

  constructor(
    kc: KubeConfig,
    private readonly opts: ReflectorOptions = {},
  ) {
    this.api = kc.makeApiClient(CustomObjectsApi);
    this.watch = new Watch(kc);
  }

  list(namespace: string): readonly ProfileBinding[] {
    return [...(this.objects.get(namespace)?.values() ?? [])];
  }

  get(namespace: string, name: string): ProfileBinding | undefined {
    return this.objects.get(namespace)?.get(name);
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
      const t = setTimeout(() => reject(new Error(`ProfileBinding cache not synced after ${timeoutMs} ms`)), timeoutMs);
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
          this.opts.log?.({ msg: 'list profilebindings failed', error: (e as Error).message ?? String(e), code: codeOf(e), retryInMs: backoff });
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
        this.opts.log?.({ msg: 'watch resourceVersion expired (410 Gone); relisting', resourceVersion: this.rv });
        this.rv = '';
      } else if (end.kind === 'error') {
        this.stats.errors++;
        this.opts.log?.({ msg: 'watch profilebindings failed', error: (end.error as Error)?.message ?? String(end.error), code: codeOf(end.error), retryInMs: backoff });
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
      const items: ProfileBinding[] = [];
      let cont: string | undefined;
      let rv = '';
      try {
        do {
          const page = (await this.api.listClusterCustomObject({ group: GROUP, version: VERSION, plural: BINDING_PLURAL, limit, _continue: cont })) as {
            items?: ProfileBinding[];
            metadata?: { resourceVersion?: string; continue?: string };
          };
          items.push(...(page.items ?? []));
          cont = page.metadata?.continue || undefined;
          rv = page.metadata?.resourceVersion ?? '';
        } while (cont);
      } catch (e) {
        if (codeOf(e) === 410 && cont !== undefined && restart < 3) continue; // continue token expired: list again from the start
        throw e;
      }
      this.stats.lists++;
      const next = new Map<string, Map<string, ProfileBinding>>();
      for (const b of items) {
        const ns = b.metadata?.namespace ?? '';
        const m = next.get(ns) ?? new Map<string, ProfileBinding>();
        m.set(b.metadata.name ?? '', b);
        next.set(ns, m);
      }
      const old = this.objects;
      this.objects = next;
      this.rv = rv;
      if (this.opts.onChange) {
        for (const [ns, m] of old) for (const [n, b] of m) if (!next.get(ns)?.has(n)) this.opts.onChange('DELETED', b);
        for (const [ns, m] of next) for (const [n, b] of m) {
          const was = old.get(ns)?.get(n);
          if (!was) this.opts.onChange('ADDED', b);
          else if (was.metadata.resourceVersion !== b.metadata.resourceVersion) this.opts.onChange('MODIFIED', b);
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
      const path = `/apis/${GROUP}/${VERSION}/${BINDING_PLURAL}`;
      const onEvent = (type: string, obj: ProfileBinding & { code?: number; message?: string }) => {
        if (settled || this.stopped) return; // a stopped cache takes no more events
        if (type === 'ERROR') {
          if (obj?.code === 410) expired = true;
          else failure = Object.assign(new Error(obj?.message ?? 'watch ERROR event'), { code: obj?.code });
          return;
        }
        const rv = obj?.metadata?.resourceVersion;
        if (type === 'BOOKMARK') {
          this.stats.bookmarks++;
        } else if (type === 'ADDED' || type === 'MODIFIED' || type === 'DELETED') {
          const ns = obj.metadata?.namespace ?? '';
          const name = obj.metadata?.name ?? '';
          const m = this.objects.get(ns) ?? new Map<string, ProfileBinding>();
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
        .watch(path, { resourceVersion: this.rv, allowWatchBookmarks: true, timeoutSeconds }, onEvent, onDone)
        .then((controller) => {
          this.abort = controller;
          if (this.stopped) controller.abort();
        })
        .catch(onDone);
    });
  }
}

/**
 * Status writes for the StatusUpdater. Reads come from the informer cache, so the controller's
 * RBAC needs no `get`: list/watch profilebindings and update profilebindings/status only.
 */
export class KubeStatusClient implements StatusClient {
  private readonly api: CustomObjectsApi;

  constructor(
    kc: KubeConfig,
    private readonly cache: InformerBindingSource,
  ) {
    this.api = kc.makeApiClient(CustomObjectsApi);
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
