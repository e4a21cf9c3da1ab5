// An in-test stand-in for kube-apiserver (none can be installed here), for namespaced custom
// resources and core resources (group "": /api/v1/…, e.g. pods, and cluster-scoped namespaces)
// served over plain HTTP on 127.0.0.1. It implements what client-node and our
// reflectors use, with the semantics a real API server has:
//  - one global resourceVersion counter (etcd's revision); every write bumps it and stamps the
//    object; lists carry the current revision in metadata.resourceVersion;
//  - list pagination with limit/continue; a continue token whose revision has been compacted
//    answers 410 Gone (reason Expired), as the real server does;
//  - watch from a resourceVersion replays later events from a bounded history; a
//    resourceVersion older than the history answers 200 with a single ERROR event carrying a
//    410 Status ("too old resource version") and closes; "" or "0" starts with synthetic
//    ADDED events for every current object; BOOKMARK events only to watches that asked with
//    allowWatchBookmarks=true; timeoutSeconds closes the stream;
//  - create (409 AlreadyExists), get (404 NotFound), update and status update with optimistic
//    concurrency (stale metadata.resourceVersion → 409 Conflict; unconditional when absent),
//    JSON merge patch, delete; the main resource ignores status and the status subresource
//    ignores everything but status; generation increments on spec changes only;
//  - errors are metav1.Status objects; bearer-token auth when a token is configured.
// Tests drive it directly too: create/update/remove objects, send bookmarks, compact history,
// close watches, inject errors, hang requests (taken and never answered, as a stuck API server
// or a dead path behind a load balancer leaves them), and read the request log.

import { KubeConfig } from '@kubernetes/client-node';
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/** A client-node KubeConfig for the fake server at `url`, with `token` as its bearer token when given (`exportConfig()` for a kubeconfig file). */
export function fakeKubeConfig(url: string, token?: string): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: 'fake', server: url, skipTLSVerify: true }],
    users: [{ name: 'test', ...(token === undefined ? {} : { token }) }],
    contexts: [{ name: 'fake', cluster: 'fake', user: 'test' }],
    currentContext: 'fake',
  });
  return kc;
}

export interface ResourceDef {
  /** "" for the core group (served under /api/v1). */
  group: string;
  version: string;
  plural: string;
  kind: string;
}

/** What the controller serves and reads, as tests give them to the fake server (the CRDs in deploy/). */
export const PROFILE_BINDINGS: ResourceDef = { group: 'spoke.dev', version: 'v1alpha1', plural: 'profilebindings', kind: 'ProfileBinding' };
export const PROFILE_RECORDINGS: ResourceDef = { group: 'spoke.dev', version: 'v1alpha1', plural: 'profilerecordings', kind: 'ProfileRecording' };
export const PROFILE_RECORDING_RESULTS: ResourceDef = { group: 'spoke.dev', version: 'v1alpha1', plural: 'profilerecordingresults', kind: 'ProfileRecordingResult' };
export const PODS: ResourceDef = { group: '', version: 'v1', plural: 'pods', kind: 'Pod' };

type Obj = { apiVersion?: string; kind?: string; metadata: Record<string, unknown> & { name?: string; namespace?: string; resourceVersion?: string }; spec?: unknown; status?: unknown; [k: string]: unknown };

interface Event {
  rv: number;
  type: 'ADDED' | 'MODIFIED' | 'DELETED';
  resource: string;
  obj: Obj;
}

interface Watcher {
  resource: string;
  namespace: string | undefined;
  bookmarks: boolean;
  query: Record<string, string>;
  res: ServerResponse;
  timer: NodeJS.Timeout | undefined;
}

export interface InjectedError {
  method?: string;
  /** Substring of the path, or `watch` / `list` for those verbs. */
  match: string;
  code: number;
  times: number;
}

/** Requests to take and never answer: read, then left open until the client gives them up or unhang(). */
export interface InjectedHang {
  method?: string;
  /** Substring of the path, or `watch` / `list` for those verbs. */
  match: string;
  times: number;
}

/** A request the server took and does not answer. */
export interface HungRequest {
  method: string;
  path: string;
  /** Resolves once the connection closed: the client gave the request up (or unhang() ended it). */
  closed: Promise<void>;
  isClosed: boolean;
}

export interface RequestRecord {
  method: string;
  path: string;
  query: Record<string, string>;
}

function apiVersionOf(r: ResourceDef): string {
  return r.group === '' ? r.version : `${r.group}/${r.version}`;
}

function clone<T>(v: T): T {
  return JSON.parse(JSON.stringify(v)) as T;
}

function statusObj(code: number, reason: string, message: string, details?: Record<string, unknown>) {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code, ...(details ? { details } : {}) };
}

const REASONS: Record<number, string> = { 400: 'BadRequest', 401: 'Unauthorized', 403: 'Forbidden', 404: 'NotFound', 405: 'MethodNotAllowed', 409: 'Conflict', 410: 'Expired', 415: 'UnsupportedMediaType', 422: 'Invalid', 500: 'InternalError', 503: 'ServiceUnavailable' };

/** RFC 7386 JSON merge patch. */
function mergePatch(target: unknown, patch: unknown): unknown {
  if (patch === null || typeof patch !== 'object' || Array.isArray(patch)) return clone(patch);
  const out: Record<string, unknown> = target !== null && typeof target === 'object' && !Array.isArray(target) ? { ...(target as Record<string, unknown>) } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

function labelSelectorMatches(selector: string, labels: Record<string, string>): boolean {
  for (const term of selector.split(',').map((s) => s.trim()).filter(Boolean)) {
    let m: RegExpMatchArray | null;
    if ((m = term.match(/^([^!=]+)!=(.*)$/))) {
      if (labels[m[1] as string] === m[2]) return false;
    } else if ((m = term.match(/^([^!=]+)==?(.*)$/))) {
      if (labels[m[1] as string] !== m[2]) return false;
    } else if (term.startsWith('!')) {
      if (term.slice(1) in labels) return false;
    } else if (!(term in labels)) return false;
  }
  return true;
}

export class FakeApiServer {
  private readonly server: Server;
  private readonly resources = new Map<string, ResourceDef>();
  private readonly store = new Map<string, Map<string, Obj>>(); // resource → ns/name → obj
  private history: Event[] = [];
  private revision: number;
  private watchers = new Set<Watcher>();
  private injected: InjectedError[] = [];
  private hangs: InjectedHang[] = [];
  private hungWaiters: ((h: HungRequest) => void)[] = [];
  private readonly hungResponses = new Set<ServerResponse>();
  readonly requests: RequestRecord[] = [];
  /** Every request hung so far, in arrival order. */
  readonly hung: HungRequest[] = [];
  historyLimit: number;
  token: string | undefined;

  constructor(opts: { resources: ResourceDef[]; historyLimit?: number; startRevision?: number; token?: string }) {
    for (const r of opts.resources) {
      this.resources.set(`${r.group}/${r.version}/${r.plural}`, r);
      this.store.set(`${r.group}/${r.version}/${r.plural}`, new Map());
    }
    this.historyLimit = opts.historyLimit ?? 1000;
    this.revision = opts.startRevision ?? 1000;
    this.token = opts.token;
    this.server = createServer((req, res) => void this.handle(req, res));
  }

  async listen(): Promise<string> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  async close(): Promise<void> {
    this.closeWatches();
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  get currentRevision(): number {
    return this.revision;
  }

  get watcherCount(): number {
    return this.watchers.size;
  }

  private key(r: ResourceDef): string {
    return `${r.group}/${r.version}/${r.plural}`;
  }

  // ---- direct manipulation (as another API client would) ----

  create(r: ResourceDef, input: object): Obj {
    const obj = input as Obj;
    const ns = obj.metadata.namespace ?? '';
    const name = obj.metadata.name as string;
    const m = this.store.get(this.key(r)) as Map<string, Obj>;
    if (m.has(`${ns}/${name}`)) throw Object.assign(new Error('exists'), { code: 409 });
    const stored: Obj = clone({ ...obj, apiVersion: apiVersionOf(r), kind: r.kind });
    stored.metadata = { ...stored.metadata, uid: randomUUID(), generation: 1, creationTimestamp: new Date().toISOString().replace(/\.\d+Z$/, 'Z') };
    delete stored.status;
    this.write(r, stored, 'ADDED');
    return clone(stored);
  }

  get(r: ResourceDef, ns: string, name: string): Obj | undefined {
    const o = this.store.get(this.key(r))?.get(`${ns}/${name}`);
    return o ? clone(o) : undefined;
  }

  list(r: ResourceDef): Obj[] {
    return [...(this.store.get(this.key(r)) as Map<string, Obj>).values()].map(clone);
  }

  /** Update as PUT does: `part` is 'main' (spec/metadata) or 'status'. Throws {code} like the HTTP answer. */
  update(r: ResourceDef, input: object, part: 'main' | 'status' = 'main'): Obj {
    const obj = input as Obj;
    const ns = obj.metadata.namespace ?? '';
    const name = obj.metadata.name as string;
    const cur = this.store.get(this.key(r))?.get(`${ns}/${name}`);
    if (!cur) throw Object.assign(new Error(`${r.plural} "${name}" not found`), { code: 404 });
    const rv = obj.metadata.resourceVersion;
    if (rv !== undefined && rv !== '' && rv !== cur.metadata.resourceVersion) {
      throw Object.assign(new Error(`Operation cannot be fulfilled on ${r.plural}.${r.group} "${name}": the object has been modified; please apply your changes to the latest version and try again`), { code: 409 });
    }
    const next: Obj = clone(cur);
    if (part === 'status') next.status = clone(obj.status);
    else {
      const specChanged = JSON.stringify(obj.spec) !== JSON.stringify(cur.spec);
      if (obj.spec === undefined) delete next.spec; // e.g. a Namespace's labels only
      else next.spec = clone(obj.spec);
      const keep = { uid: cur.metadata.uid, creationTimestamp: cur.metadata.creationTimestamp, generation: cur.metadata.generation, namespace: cur.metadata.namespace, name };
      next.metadata = { ...clone(obj.metadata), ...keep };
      if (specChanged) next.metadata.generation = (cur.metadata.generation as number) + 1;
    }
    if (JSON.stringify(next) === JSON.stringify(cur)) return clone(cur); // no-op writes do not bump the revision
    this.write(r, next, 'MODIFIED');
    return clone(next);
  }

  remove(r: ResourceDef, ns: string, name: string): Obj {
    const m = this.store.get(this.key(r)) as Map<string, Obj>;
    const cur = m.get(`${ns}/${name}`);
    if (!cur) throw Object.assign(new Error(`${r.plural} "${name}" not found`), { code: 404 });
    m.delete(`${ns}/${name}`);
    this.revision++;
    const gone = clone(cur);
    gone.metadata.resourceVersion = String(this.revision);
    this.record({ rv: this.revision, type: 'DELETED', resource: this.key(r), obj: gone });
    return gone;
  }

  private write(r: ResourceDef, obj: Obj, type: 'ADDED' | 'MODIFIED'): void {
    this.revision++;
    obj.metadata.resourceVersion = String(this.revision);
    (this.store.get(this.key(r)) as Map<string, Obj>).set(`${obj.metadata.namespace ?? ''}/${obj.metadata.name}`, obj);
    this.record({ rv: this.revision, type, resource: this.key(r), obj: clone(obj) });
  }

  private record(e: Event): void {
    this.history.push(e);
    if (this.history.length > this.historyLimit) this.history.splice(0, this.history.length - this.historyLimit);
    for (const w of this.watchers) this.sendEvent(w, e);
  }

  /** Drops the event history: watches and continue tokens from before now get 410 Gone. */
  compact(): void {
    this.history = [];
    this.compactedAt = this.revision;
  }
  private compactedAt = 0;

  /** Sends a BOOKMARK with the current revision to every watch that allowed bookmarks. */
  bookmark(): number {
    let n = 0;
    for (const w of this.watchers) {
      if (!w.bookmarks) continue;
      const r = this.resources.get(w.resource) as ResourceDef;
      w.res.write(JSON.stringify({ type: 'BOOKMARK', object: { kind: r.kind, apiVersion: apiVersionOf(r), metadata: { resourceVersion: String(this.revision) } } }) + '\n');
      n++;
    }
    return n;
  }

  /** Ends every open watch stream cleanly (as an API server does on restart or timeout). */
  closeWatches(): void {
    for (const w of this.watchers) this.endWatch(w);
  }

  /**
   * Stops every open watch without a word: no more events, bookmarks or timeout, the connection
   * left open, as a dead path (an API server gone without a FIN, a dropped NAT entry) leaves it.
   */
  stallWatches(): void {
    for (const w of this.watchers) {
      if (w.timer) clearTimeout(w.timer);
      this.watchers.delete(w);
      this.hungResponses.add(w.res);
      w.res.once('close', () => this.hungResponses.delete(w.res));
    }
  }

  /** Sends a 410 ERROR event to every open watch and ends it (etcd compaction while watching). */
  expireWatches(): void {
    for (const w of this.watchers) {
      w.res.write(JSON.stringify({ type: 'ERROR', object: statusObj(410, 'Expired', 'too old resource version') }) + '\n');
      this.endWatch(w);
    }
  }

  inject(e: InjectedError): void {
    this.injected.push({ ...e });
  }

  hang(h: InjectedHang): void {
    this.hangs.push({ ...h });
  }

  /** Resolves with the next request hung from now on. */
  nextHung(): Promise<HungRequest> {
    return new Promise((resolve) => this.hungWaiters.push(resolve));
  }

  /** Hangs nothing more, and ends the connections of the requests hung and still open. */
  unhang(): void {
    this.hangs = [];
    for (const res of this.hungResponses) res.destroy();
  }

  private takeAndHang(method: string, path: string, req: IncomingMessage, res: ServerResponse): void {
    req.resume();
    this.hungResponses.add(res);
    let onClose = () => {};
    const h: HungRequest = { method, path, closed: new Promise<void>((resolve) => (onClose = resolve)), isClosed: false };
    res.on('close', () => {
      this.hungResponses.delete(res);
      h.isClosed = true;
      onClose();
    });
    this.hung.push(h);
    for (const w of this.hungWaiters.splice(0)) w(h);
  }

  private endWatch(w: Watcher): void {
    if (w.timer) clearTimeout(w.timer);
    this.watchers.delete(w);
    w.res.end();
  }

  private sendEvent(w: Watcher, e: Event): void {
    if (w.resource !== e.resource || !this.selected(e.obj, w.namespace, w.query)) return;
    w.res.write(JSON.stringify({ type: e.type, object: e.obj }) + '\n');
  }

  // ---- HTTP ----

  private reply(res: ServerResponse, code: number, body: unknown): void {
    const text = JSON.stringify(body);
    res.writeHead(code, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
    res.end(text);
  }

  private fail(res: ServerResponse, code: number, message: string, details?: Record<string, unknown>): void {
    this.reply(res, code, statusObj(code, REASONS[code] ?? 'Unknown', message, details));
  }

  private async body(req: IncomingMessage): Promise<unknown> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    return JSON.parse(Buffer.concat(chunks).toString('utf8') || 'null');
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://x');
    const query = Object.fromEntries(url.searchParams);
    const method = req.method ?? 'GET';
    this.requests.push({ method, path: url.pathname, query });
    try {
      if (this.token !== undefined && req.headers.authorization !== `Bearer ${this.token}`) return this.fail(res, 401, 'Unauthorized');
      const isWatch = query.watch === 'true' || query.watch === '1';
      const verb = method === 'GET' ? (isWatch ? 'watch' : 'list') : method.toLowerCase();
      const hang = this.hangs.find((e) => (e.method === undefined || e.method === method) && (e.match === verb || url.pathname.includes(e.match)) && e.times > 0);
      if (hang) {
        hang.times--;
        return this.takeAndHang(method, url.pathname, req, res);
      }
      const inj = this.injected.find((e) => (e.method === undefined || e.method === method) && (e.match === verb || url.pathname.includes(e.match)) && e.times > 0);
      if (inj) {
        inj.times--;
        return this.fail(res, inj.code, `injected ${inj.code}`);
      }
      // /apis/G/V[/namespaces/NS]/PLURAL[/NAME[/status]], and /api/V/… for the core group
      const parts = url.pathname.split('/').filter(Boolean);
      const core = parts[0] === 'api';
      if ((!core && parts[0] !== 'apis') || parts.length < (core ? 3 : 4)) return this.fail(res, 404, 'the server could not find the requested resource');
      const [group, version] = (core ? ['', parts[1]] : [parts[1], parts[2]]) as [string, string];
      let rest = parts.slice(core ? 2 : 3);
      let namespace: string | undefined;
      if (rest[0] === 'namespaces' && rest.length >= 3) {
        namespace = rest[1];
        rest = rest.slice(2);
      }
      const r = this.resources.get(`${group}/${version}/${rest[0]}`);
      if (!r) return this.fail(res, 404, 'the server could not find the requested resource');
      const name = rest[1];
      const sub = rest[2];
      if (rest.length > 3 || (sub !== undefined && sub !== 'status')) return this.fail(res, 404, 'the server could not find the requested resource');
      if (name === undefined) {
        if (method === 'GET' && isWatch) return this.serveWatch(r, namespace, query, res);
        if (method === 'GET') return this.serveList(r, namespace, query, res);
        if (method === 'POST' && namespace !== undefined) {
          const obj = (await this.body(req)) as Obj;
          if (!obj?.metadata?.name) return this.fail(res, 422, 'metadata.name: Required value');
          if (obj.metadata.namespace && obj.metadata.namespace !== namespace) return this.fail(res, 400, 'the namespace of the provided object does not match the namespace sent on the request');
          obj.metadata.namespace = namespace;
          try {
            return this.reply(res, 201, this.create(r, obj));
          } catch {
            return this.fail(res, 409, `${r.plural}.${r.group} "${obj.metadata.name}" already exists`, { name: obj.metadata.name, group: r.group, kind: r.plural });
          }
        }
        return this.fail(res, 405, 'method not allowed');
      }
      if (namespace === undefined) return this.fail(res, 404, 'namespaced resource needs a namespace');
      const cur = this.get(r, namespace, name);
      const notFound = () => this.fail(res, 404, `${r.plural}.${r.group} "${name}" not found`, { name, group: r.group, kind: r.plural });
      if (method === 'GET') return cur ? this.reply(res, 200, cur) : notFound();
      if (method === 'DELETE') return cur ? this.reply(res, 200, this.remove(r, namespace, name)) : notFound();
      if (method === 'PUT' || method === 'PATCH') {
        if (!cur) return notFound();
        let obj = (await this.body(req)) as Obj;
        if (method === 'PATCH') {
          const ct = (req.headers['content-type'] ?? '').split(';')[0];
          if (ct !== 'application/merge-patch+json') return this.fail(res, 415, `content type ${ct} not supported by this fake (use merge patch)`);
          obj = mergePatch(cur, obj) as Obj;
        }
        if (obj?.metadata?.name !== undefined && obj.metadata.name !== name) return this.fail(res, 400, 'the name of the object does not match the name on the URL');
        obj.metadata = { ...(obj.metadata ?? {}), name, namespace };
        try {
          return this.reply(res, 200, this.update(r, obj, sub === 'status' ? 'status' : 'main'));
        } catch (e) {
          const code = (e as { code?: number }).code ?? 500;
          return this.fail(res, code, (e as Error).message, { name, group: r.group, kind: r.plural });
        }
      }
      return this.fail(res, 405, 'method not allowed');
    } catch (e) {
      if (!res.headersSent) this.fail(res, 500, (e as Error).message);
    }
  }

  private selected(o: Obj, namespace: string | undefined, query: Record<string, string>): boolean {
    if (namespace !== undefined && o.metadata.namespace !== namespace) return false;
    if (query.labelSelector && !labelSelectorMatches(query.labelSelector, (o.metadata.labels as Record<string, string>) ?? {})) return false;
    if (query.fieldSelector) {
      for (const term of query.fieldSelector.split(',')) {
        const [k, v] = term.split('=') as [string, string];
        const actual = k === 'metadata.name' ? o.metadata.name : k === 'metadata.namespace' ? o.metadata.namespace : undefined;
        if (actual !== v) return false;
      }
    }
    return true;
  }

  private serveList(r: ResourceDef, namespace: string | undefined, query: Record<string, string>, res: ServerResponse): void {
    let rv = this.revision;
    let after = '';
    if (query.continue) {
      let token: { rv: number; after: string };
      try {
        token = JSON.parse(Buffer.from(query.continue, 'base64url').toString('utf8')) as typeof token;
      } catch {
        return this.fail(res, 400, 'continue key is not valid');
      }
      if (token.rv < this.compactedAt) {
        return this.fail(res, 410, 'The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.');
      }
      rv = token.rv;
      after = token.after;
      // A consistent snapshot at an older revision: this fake keeps no MVCC, so it refuses
      // continuation across writes rather than mixing revisions.
      if (rv !== this.revision) return this.fail(res, 410, 'The provided continue parameter is too old to display a consistent list result.');
    }
    const all = [...(this.store.get(this.key(r)) as Map<string, Obj>).entries()]
      .filter(([k, o]) => k > after && this.selected(o, namespace, query))
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    const limit = query.limit ? Number(query.limit) : 0;
    const page = limit > 0 ? all.slice(0, limit) : all;
    const metadata: Record<string, unknown> = { resourceVersion: String(rv) };
    if (limit > 0 && all.length > limit) {
      const last = page[page.length - 1]?.[0] as string;
      metadata.continue = Buffer.from(JSON.stringify({ rv, after: last })).toString('base64url');
      metadata.remainingItemCount = all.length - limit;
    }
    this.reply(res, 200, { apiVersion: apiVersionOf(r), kind: `${r.kind}List`, metadata, items: page.map(([, o]) => clone(o)) });
  }

  private serveWatch(r: ResourceDef, namespace: string | undefined, query: Record<string, string>, res: ServerResponse): void {
    res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
    const w: Watcher = { resource: this.key(r), namespace, bookmarks: query.allowWatchBookmarks === 'true', query, res, timer: undefined };
    const rvText = query.resourceVersion ?? '';
    if (rvText === '' || rvText === '0') {
      for (const o of this.list(r)) if (this.selected(o, namespace, query)) res.write(JSON.stringify({ type: 'ADDED', object: o }) + '\n');
    } else {
      const from = Number(rvText);
      const oldest = this.history[0]?.rv ?? this.revision + 1;
      if (!Number.isInteger(from) || from < this.compactedAt || (from < oldest - 1 && from < this.revision)) {
        res.write(JSON.stringify({ type: 'ERROR', object: statusObj(410, 'Expired', `too old resource version: ${rvText} (${oldest - 1})`) }) + '\n');
        res.end();
        return;
      }
      for (const e of this.history) if (e.rv > from) this.sendEvent(w, e);
    }
    this.watchers.add(w);
    const timeout = Number(query.timeoutSeconds ?? 0);
    if (timeout > 0) w.timer = setTimeout(() => this.endWatch(w), timeout * 1000);
    res.on('close', () => {
      if (w.timer) clearTimeout(w.timer);
      this.watchers.delete(w);
    });
  }
}
