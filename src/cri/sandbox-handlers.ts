// What the runtime recorded for each pod sandbox that a CreateContainer does not carry: the
// runtime handler it runs under and its annotations (those runtime-annotations.ts reads), asked
// of the runtime (PodSandboxStatus) the first time a create in that sandbox needs them and kept,
// as neither changes and a sandbox's id is never reused (docs/shim.md#runtime-handlers).

import { SpokeError } from '../core/errors.js';
import type { UnaryCaller } from './deps.js';
import { PATH_POD_SANDBOX_STATUS } from './methods.js';
import { RUNTIME_ANNOTATION_KEYS } from './runtime-annotations.js';
import { getMergedMessage, getString } from './wire.js';
import { stringField } from './wire-write.js';
import { getStringMap } from './wire-map.js';

/** PodSandboxStatusResponse.status(1); PodSandboxStatus.id(1), .annotations(8), .runtime_handler(9). */
const STATUS = 1;
const STATUS_ID = 1;
const STATUS_ANNOTATIONS = 8;
const STATUS_RUNTIME_HANDLER = 9;
/** Sandboxes remembered; past it the map starts again (a node runs far fewer). */
const MAX_SANDBOXES = 4096;
const GRPC_NOT_FOUND = 5;

export interface SandboxRecord {
  handler: string;
  annotations: ReadonlyMap<string, string>;
}

export class SandboxHandlers {
  /** Per sandbox id, its record or the one lookup under way (concurrent creates share it). */
  private readonly known = new Map<string, Promise<SandboxRecord>>();

  constructor(private readonly upstream: UnaryCaller) {}

  ofSandbox(id: string): Promise<SandboxRecord> {
    const known = this.known.get(id);
    if (known !== undefined) return known;
    if (id === '') return Promise.reject(new SpokeError('InvalidArgument', 'CreateContainer without pod_sandbox_id', {}, { reason: 'WIRE_INVALID' }));
    const lookup = this.lookup(id);
    if (this.known.size >= MAX_SANDBOXES) this.known.clear();
    this.known.set(id, lookup);
    // A failed lookup is not kept: the next create asks again. Nor is one by a prefix of the id,
    // which containerd resolves too: the same prefix may name another sandbox later.
    const forget = () => {
      if (this.known.get(id) === lookup) this.known.delete(id);
    };
    lookup.then((record) => record.id !== id && forget(), forget);
    return lookup;
  }

  private async lookup(id: string): Promise<SandboxRecord & { id: string }> {
    const named = `pod sandbox ${JSON.stringify(id.slice(0, 80))}`;
    let response: Buffer;
    try {
      response = await this.upstream.unary(PATH_POD_SANDBOX_STATUS, stringField(1, id));
    } catch (e) {
      const message = (e as Error).message;
      // A sandbox the runtime does not know: the create would have failed so too.
      if ((e as { grpcCode?: number }).grpcCode === GRPC_NOT_FOUND) throw new SpokeError('NotFound', `${named}: ${message}`, {}, { cause: e, reason: 'RUNTIME_HANDLER_UNKNOWN' });
      throw new SpokeError('Unavailable', `${named}: the runtime did not say which runtime handler it runs under: ${message}`, {}, { cause: e, reason: 'RUNTIME_HANDLER_UNKNOWN' });
    }
    const status = getMergedMessage(response, STATUS);
    if (status === undefined) throw new SpokeError('Unavailable', `${named}: the runtime's status of it has no status`, {}, { reason: 'RUNTIME_HANDLER_UNKNOWN' });
    return { id: getString(status, STATUS_ID), handler: getString(status, STATUS_RUNTIME_HANDLER), annotations: getStringMap(status, STATUS_ANNOTATIONS, RUNTIME_ANNOTATION_KEYS) };
  }
}
