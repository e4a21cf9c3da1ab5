// The runtime's view for the in-use rebuild: what the runtime runs now (ListPodSandbox,
// ListContainers) and the profiles each live object's runtime config names (verbose
// ContainerStatus / PodSandboxStatus, read once per object: it never changes).

import { decodeContainers, decodeSandboxes, decodeVerboseInfo, encodeVerboseStatusRequest } from './messages.js';
import { PATH_POD_SANDBOX_STATUS } from './methods.js';
import { containerIdentity, sandboxIdentity } from './inuse-holders.js';
import { namedProfiles, type ObjectProfiles } from './runtime-config.js';

const LIST_SANDBOXES = '/runtime.v1.RuntimeService/ListPodSandbox';
const LIST_CONTAINERS = '/runtime.v1.RuntimeService/ListContainers';
const CONTAINER_STATUS = '/runtime.v1.RuntimeService/ContainerStatus';
const SANDBOX_STATUS = PATH_POD_SANDBOX_STATUS;
const GRPC_NOT_FOUND = 5;
const STATUS_CONCURRENCY = 8;

/** The runtime calls the tracker makes (the shim's Upstream). */
export interface RuntimeCalls {
  unary(path: string, request: Uint8Array): Promise<Buffer>;
}

/** What the runtime runs now. */
export interface Scan {
  /** `container:<id>` / `sandbox:<id>` → identity. */
  live: Map<string, string>;
  byIdentity: Map<string, string>;
  profiles: Map<string, ObjectProfiles>;
  /** Live objects whose config could not be read. */
  unknown: Set<string>;
}

export class RuntimeScanner {
  /** Profiles named by each live object's config (immutable for its lifetime). */
  private readonly profileCache = new Map<string, ObjectProfiles>();

  constructor(
    private readonly upstream: RuntimeCalls,
    /** `<seccompRoot>/spoke`, where effective files live. */
    private readonly spokeDir: string,
  ) {}

  /** Lists the runtime's objects and reads the config of those not read before. */
  async scan(): Promise<Scan> {
    const [sbBytes, ctBytes] = await Promise.all([this.upstream.unary(LIST_SANDBOXES, Buffer.alloc(0)), this.upstream.unary(LIST_CONTAINERS, Buffer.alloc(0))]);
    const live = new Map<string, string>();
    for (const p of decodeSandboxes(sbBytes)) live.set(`sandbox:${p.id}`, sandboxIdentity(p));
    for (const c of decodeContainers(ctBytes)) live.set(`container:${c.id}`, containerIdentity(c));
    for (const k of this.profileCache.keys()) if (!live.has(k)) this.profileCache.delete(k);
    const unknown = new Set<string>();
    const todo = [...live.keys()].filter((h) => !this.profileCache.has(h));
    const gone = new Set<string>();
    const worker = async () => {
      for (let h = todo.shift(); h !== undefined; h = todo.shift()) {
        try {
          this.profileCache.set(h, await this.readProfiles(h));
        } catch (e) {
          if ((e as { grpcCode?: number }).grpcCode === GRPC_NOT_FOUND) gone.add(h);
          else unknown.add(h);
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(STATUS_CONCURRENCY, todo.length) }, worker));
    for (const h of gone) live.delete(h);
    const byIdentity = new Map<string, string>();
    for (const [h, id] of live) byIdentity.set(id, h);
    const profiles = new Map<string, ObjectProfiles>();
    for (const h of live.keys()) {
      const p = this.profileCache.get(h);
      if (p) profiles.set(h, p);
    }
    return { live, byIdentity, profiles, unknown };
  }

  /** The profiles a live object's runtime config (verbose status `info`) names. */
  private async readProfiles(holder: string): Promise<ObjectProfiles> {
    const container = holder.startsWith('container:');
    const id = holder.slice(holder.indexOf(':') + 1);
    const res = await this.upstream.unary(container ? CONTAINER_STATUS : SANDBOX_STATUS, encodeVerboseStatusRequest(id));
    return namedProfiles(decodeVerboseInfo(res), this.spokeDir);
  }
}
