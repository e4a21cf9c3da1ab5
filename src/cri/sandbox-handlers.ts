// The runtime handler each pod sandbox runs under, which a CreateContainer does not carry: asked
// of the runtime (PodSandboxStatus) the first time a create in that sandbox needs it, and kept,
// as a sandbox's handler never changes and its id is never reused (docs/shim.md).

import { asSpokeError, SpokeError } from '../core/errors.js';
import type { UnaryCaller } from './deps.js';
import { PATH_POD_SANDBOX_STATUS } from './methods.js';
import { stringField, getMergedMessage, getString } from './wire.js';

/** PodSandboxStatusResponse.status(1); PodSandboxStatus.runtime_handler(9). */
const STATUS = 1;
const STATUS_RUNTIME_HANDLER = 9;
/** Sandboxes remembered; past it the map starts again (a node runs far fewer). */
const MAX_SANDBOXES = 4096;

export class SandboxHandlers {
  private readonly known = new Map<string, string>();

  constructor(private readonly upstream: UnaryCaller) {}

  async ofSandbox(id: string): Promise<string> {
    const known = this.known.get(id);
    if (known !== undefined) return known;
    if (id === '') throw new SpokeError('InvalidArgument', 'CreateContainer without pod_sandbox_id', {}, { reason: 'WIRE_INVALID' });
    let response: Buffer;
    try {
      response = await this.upstream.unary(PATH_POD_SANDBOX_STATUS, stringField(1, id));
    } catch (e) {
      const err = asSpokeError(e, 'Unavailable');
      throw new SpokeError('Unavailable', `pod sandbox ${JSON.stringify(id.slice(0, 80))}: the runtime did not say which runtime handler it runs under: ${err.message}`, {}, { cause: e, reason: 'RUNTIME_HANDLER_UNKNOWN' });
    }
    const status = getMergedMessage(response, STATUS);
    if (status === undefined) {
      throw new SpokeError('Unavailable', `pod sandbox ${JSON.stringify(id.slice(0, 80))}: the runtime's status of it has no status`, {}, { reason: 'RUNTIME_HANDLER_UNKNOWN' });
    }
    const handler = getString(status, STATUS_RUNTIME_HANDLER);
    if (this.known.size >= MAX_SANDBOXES) this.known.clear();
    this.known.set(id, handler);
    return handler;
  }
}
