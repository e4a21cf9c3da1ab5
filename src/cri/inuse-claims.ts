// The in-use bookkeeping of one edited create (RunPodSandbox / CreateContainer), in the order the
// shim performs it: AppArmor profiles are claimed while the request is rewritten; what was claimed
// is released again if the call ends before it is forwarded; the seccomp artifact gets a pending
// holder just before forwarding; once the runtime answers with the new object's id, the pending
// holder and the claims move to `sandbox:<id>` / `container:<id>` (after the client has its answer:
// the pending holder covers the time between). A failed or lost create keeps
// its claims until a rebuild settles them (inuse.ts).

import type { Logger } from '../core/runtime.js';
import type { Applied } from './apply.js';
import { parseFrames } from './frame.js';
import type { AppArmorLoad } from './apparmor-unload.js';
import type { AppArmorClaim, InUseTracker } from './inuse.js';
import { decodeId } from './messages.js';

export class CreateClaims {
  private readonly claims: AppArmorClaim[] = [];
  private pending: string | undefined;
  private holds: Applied | undefined;

  constructor(
    private readonly inUse: InUseTracker,
    private readonly logger: Logger,
    private readonly role: 'sandbox' | 'container',
    private readonly identity: string | undefined,
  ) {}

  /** Loads (unless already loaded) and claims an AppArmor profile for this create. */
  async claimAppArmor(name: AppArmorClaim['name'], digest: AppArmorClaim['digest'], load: AppArmorLoad): Promise<void> {
    this.claims.push(await this.inUse.claimAppArmor(name, digest, load, this.identity));
  }

  /** The create is not forwarded after all: the claims go (errors are dropped, as a rebuild settles them). */
  async abort(): Promise<void> {
    await this.inUse.abortAppArmor(this.claims).catch(() => undefined);
  }

  /**
   * Begun but not forwarded after all (decided again): the AppArmor claims go, and the pending
   * holder is left to a rebuild, which drops it as no object holds it (inuse-holders.ts).
   */
  async withdraw(): Promise<void> {
    this.inUse.unconfirmed(this.pending, []);
    this.pending = undefined;
    this.holds = undefined;
    await this.abort();
  }

  /** Just before forwarding: a pending holder for the seccomp artifact the object will hold. */
  async begin(holds: Applied | undefined): Promise<void> {
    if (!holds) return;
    this.holds = holds;
    const input = { reference: holds.reference, ...(holds.base ? { base: holds.base } : {}) };
    try {
      this.pending = await this.inUse.begin(holds.digest, { effectiveSha: holds.effectiveSha, input, ...(this.identity ? { identity: this.identity } : {}) });
    } catch (e) {
      // The create is not forwarded (a full disk): its AppArmor claims go too.
      await this.abort();
      throw e;
    }
  }

  /** The forwarded create completed (`status` undefined: lost): commit to the new id, or leave it to a rebuild. */
  async settle(status: string | undefined, responseBody: Buffer | undefined): Promise<void> {
    const { pending, holds, claims } = this;
    if (!pending && claims.length === 0) return;
    if (status === '0' && responseBody) {
      try {
        const id = decodeId(parseFrames(responseBody)[0]?.payload ?? Buffer.alloc(0));
        if (id !== '') {
          await this.inUse.commitCreate(`${this.role}:${id}`, pending && holds ? { pending, digest: holds.digest } : undefined, claims);
          return;
        }
      } catch (e) {
        this.logger.log('warn', 'could not record the in-use holder', { error: (e as Error).message });
      }
    }
    // Failed or lost after forwarding: the runtime may have made the object anyway.
    this.inUse.unconfirmed(pending, claims);
  }
}
