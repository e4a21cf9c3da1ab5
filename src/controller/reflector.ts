// Reflector<T>: a list/watch cache of one resource in all namespaces (a spoke.dev custom
// resource, or a core one such as namespaces and pods by its `path`), on @kubernetes/client-node's
// Watch and its HTTP client. Lists are read as raw JSON, as watch events are: client-node's typed
// core models would drop fields they do not know (a pod's `seccompProfile.oci`). Paginated list (limit/continue; an
// expired continue token restarts the list), then watch from the list's resourceVersion with
// allowWatchBookmarks; a watch that ends is resumed from the last resourceVersion seen (events
// or bookmarks); 410 Gone — as an HTTP status or as an ERROR event in the stream — discards the
// resourceVersion and relists; other errors back off exponentially (capped) and retry; a watch
// silent for longer than bookmarks ever are is given up (watchIdleSeconds).
// client-node's own ListWatch neither asks for bookmarks nor retries after errors, hence this.
// On client-node 1.4 aborting a watch does not call its done callback until the server-side
// timeout, so stop() ends the wait itself.

import { createConfiguration, HttpMethod, ServerConfiguration, Watch, type Configuration, type KubeConfig } from '@kubernetes/client-node';
import { GROUP, VERSION, type ObjectMeta } from './types.js';
import { codeOf } from './api-errors.js';
import { noteApiStatus } from './kube-credentials.js';
import { Pause } from './pause.js';

export type KubeObject = { metadata: ObjectMeta };
export type ChangeType = 'ADDED' | 'MODIFIED' | 'DELETED';
type WatchEnd = { kind: 'closed' } | { kind: 'expired' } | { kind: 'idle' } | { kind: 'error'; error: unknown };


export interface GenericReflectorOptions<T> {
  plural: string;
  /** The collection's API path; default `/apis/spoke.dev/v1alpha1/<plural>`. */
  path?: string;
  /** Only objects with these labels (list and watch `labelSelector`). */
  labelSelector?: string;
  pageSize?: number;
  watchTimeoutSeconds?: number;
  /**
   * A watch that brings nothing (no event, no bookmark) for this long is given up and resumed
   * from its resourceVersion; default 180 s. The API server sends a watch that asked for
   * bookmarks one about every minute, so silence this long is a dead path (a server gone without
   * closing, a dropped NAT entry), which TCP keepalive would report only after about ten minutes
   * while the cache went on answering from before it (docs/binding.md).
   */
  watchIdleSeconds?: number;
  backoffInitialMs?: number;
  backoffMaxMs?: number;
  log?: (event: Record<string, unknown>) => void;
  /**
   * What is kept of each object as it arrives (client-go's transform), in the cache and in
   * `onChange`: a cache of every pod holds only what is read of them. It must keep
   * metadata.name, namespace and resourceVersion.
   */
  keep?: (obj: T) => T;
  onChange?: (type: ChangeType, obj: T) => void;
}

export class Reflector<T extends KubeObject> {
  private objects = new Map<string, Map<string, T>>();
  private rv = '';
  private hasSynced = false;
  private stopped = true;
  private abort: AbortController | undefined;
  private readonly api: Configuration;
  private readonly path: string;
  private readonly watch: Watch;
  private syncWaiters: (() => void)[] = [];
  private loop: Promise<void> | undefined;
  private readonly pause = new Pause();
  /** Ends the current watch wait: client-node's abort does not always call the done callback. */
  private endWatch: (() => void) | undefined;
  readonly stats = { lists: 0, watches: 0, bookmarks: 0, expired: 0, errors: 0, idle: 0 };

  constructor(
    private readonly kc: KubeConfig,
    private readonly opts: GenericReflectorOptions<T>,
  ) {
    const server = kc.getCurrentCluster()?.server;
    if (!server) throw new Error('kubeconfig has no current cluster');
    this.api = createConfiguration({ baseServer: new ServerConfiguration(server, {}), authMethods: { default: kc } });
    this.path = opts.path ?? `/apis/${GROUP}/${VERSION}/${opts.plural}`;
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
    this.pause.wake();
    this.endWatch?.();
    await this.loop;
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
          this.failed('list', e, backoff);
          await this.pause.for(backoff);
          backoff = Math.min(backoff * 2, max);
          continue;
        }
      }
      if (this.stopped) break;
      const end = await this.watchOnce();
      if (this.stopped) break;
      if (end.kind === 'expired') {
        this.stats.expired++;
        this.opts.log?.({ msg: `watch ${this.opts.plural} resourceVersion expired (410 Gone); relisting`, resourceVersion: this.rv });
        this.rv = '';
      } else if (end.kind === 'idle') {
        // Resumed at once: silence is no failure to back off from (an API server with its watch
        // cache off sends no bookmarks, so a quiet resource's watch is given up every time), and
        // a dead path costs the next watch watchIdleSeconds again, or fails it fast.
        this.opts.log?.({ msg: `watch ${this.opts.plural}: nothing (no event, no bookmark) for ${this.opts.watchIdleSeconds ?? 180} s; resuming`, resourceVersion: this.rv });
      } else if (end.kind === 'error') {
        this.failed('watch', end.error, backoff);
        await this.pause.for(backoff);
        backoff = Math.min(backoff * 2, max);
      } else {
        backoff = initial;
      }
    }
  }

  /** A list or watch that failed, to be retried in `retryInMs`; a 401 drops the credential it was made with (kube-credentials.ts). */
  private failed(verb: 'list' | 'watch', e: unknown, retryInMs: number): void {
    this.stats.errors++;
    noteApiStatus(this.kc, codeOf(e));
    this.opts.log?.({ msg: `${verb} ${this.opts.plural} failed`, error: (e as Error)?.message ?? String(e), code: codeOf(e), retryInMs });
  }

  private async relist(): Promise<void> {
    const limit = this.opts.pageSize ?? 500;
    for (let restart = 0; ; restart++) {
      const items: T[] = [];
      let cont: string | undefined;
      let rv = '';
      try {
        do {
          const page = await this.listPage(limit, cont);
          const received = page.items ?? [];
          items.push(...(this.opts.keep ? received.map(this.opts.keep) : received));
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

  /** One page of the list, as the API server wrote it; errors carry the HTTP status as `code`. */
  private async listPage(limit: number, cont: string | undefined): Promise<{ items?: T[]; metadata?: { resourceVersion?: string; continue?: string } }> {
    const ctx = this.api.baseServer.makeRequestContext(this.path, HttpMethod.GET);
    ctx.setHeaderParam('Accept', 'application/json');
    ctx.setQueryParam('limit', String(limit));
    if (cont !== undefined) ctx.setQueryParam('continue', cont);
    if (this.opts.labelSelector !== undefined) ctx.setQueryParam('labelSelector', this.opts.labelSelector);
    await this.api.authMethods.default?.applySecurityAuthentication(ctx);
    const res = await this.api.httpApi.send(ctx).toPromise();
    const text = await res.body.text();
    if (res.httpStatusCode !== 200) {
      let message = `list ${this.opts.plural}: HTTP ${res.httpStatusCode}`;
      try {
        message += `: ${String((JSON.parse(text) as { message?: unknown }).message).slice(0, 200)}`;
      } catch {
        // not a Status object: the code says enough
      }
      throw Object.assign(new Error(message), { code: res.httpStatusCode });
    }
    return JSON.parse(text) as { items?: T[]; metadata?: { resourceVersion?: string; continue?: string } };
  }

  private watchOnce(): Promise<WatchEnd> {
    const base = this.opts.watchTimeoutSeconds ?? 300;
    const timeoutSeconds = base + Math.floor(Math.random() * base);
    const idleMs = (this.opts.watchIdleSeconds ?? 180) * 1000;
    this.stats.watches++;
    return new Promise<WatchEnd>((resolveOnce) => {
      let settled = false;
      // This watch's own: a given-up watch's late callbacks must not touch the next one's.
      let controller: AbortController | undefined;
      const resolve = (end: WatchEnd) => {
        if (settled) return;
        settled = true;
        clearTimeout(idle);
        this.endWatch = undefined;
        if (this.abort === controller) this.abort = undefined;
        resolveOnce(end);
      };
      this.endWatch = () => resolve({ kind: 'closed' });
      const onIdle = () => {
        this.stats.idle++;
        controller?.abort();
        resolve({ kind: 'idle' });
      };
      const idle = setTimeout(onIdle, idleMs);
      let expired = false;
      let failure: unknown;
      const onEvent = (type: string, obj: T & { code?: number; message?: string }) => {
        if (settled || this.stopped) return; // a stopped cache takes no more events
        idle.refresh();
        if (type === 'ERROR') {
          if (obj?.code === 410) expired = true;
          else failure = Object.assign(new Error(obj?.message ?? 'watch ERROR event'), { code: obj?.code });
          return;
        }
        const rv = obj?.metadata?.resourceVersion;
        if (type === 'BOOKMARK') this.stats.bookmarks++;
        else if (type === 'ADDED' || type === 'MODIFIED' || type === 'DELETED') {
          const stored = this.opts.keep ? this.opts.keep(obj) : obj;
          const ns = stored.metadata?.namespace ?? '';
          const name = stored.metadata?.name ?? '';
          const m = this.objects.get(ns) ?? new Map<string, T>();
          if (type === 'DELETED') m.delete(name);
          else m.set(name, stored);
          if (m.size === 0) this.objects.delete(ns);
          else this.objects.set(ns, m);
          this.opts.onChange?.(type, stored);
        }
        if (rv) this.rv = rv;
      };
      const onDone = (err: unknown) => {
        if (expired || codeOf(err) === 410) resolve({ kind: 'expired' });
        else if (failure !== undefined) resolve({ kind: 'error', error: failure });
        else if (err && !this.stopped) resolve({ kind: 'error', error: err });
        else resolve({ kind: 'closed' });
      };
      this.watch
        .watch(this.path, { resourceVersion: this.rv, allowWatchBookmarks: true, timeoutSeconds, ...(this.opts.labelSelector ? { labelSelector: this.opts.labelSelector } : {}) }, onEvent, onDone)
        .then((c) => {
          controller = c;
          if (this.stopped || settled) c.abort();
          else this.abort = c;
        })
        .catch(onDone);
    });
  }
}
