// Who a pull is made as, and which credentials proved access to which digest (KEP-2535 for
// profiles: a profile fetched with a pod's credentials is reused only with the same credentials).

import { sha256Digest, type Digest } from '../core/digest.js';
import type { Credential } from '../registry/types.js';
import type { ProvenanceRecord } from '../store/store.js';

/** Digests kept in the in-memory record of which credentials proved access (oldest dropped first). */
const MAX_ACCESS_ENTRIES = 4096;
/**
 * Credential identities kept per digest (least recently proven dropped first): a public
 * repository ignores a pod's credentials, so each made-up AuthConfig would otherwise add one.
 * A dropped identity fetches again as itself, which proves its access anew.
 */
const MAX_IDENTITIES_PER_DIGEST = 16;

/**
 * Who a pull is made as: `node` (no per-request credentials, so the node's auth file or
 * anonymous, the same for every such pod on this node), or a hash of the request's AuthConfig.
 */
export function credentialIdentity(c: Credential | undefined): string {
  if (c === undefined) return 'node';
  const parts = c.kind === 'basic' ? [c.kind, c.username, c.password] : [c.kind, c.token];
  return `auth:${sha256Digest(JSON.stringify(parts))}`;
}

/**
 * digest → credential identities that fetched it in this process. Kept in memory only, so
 * nothing derived from a credential is written to disk.
 */
export class AccessMemory {
  private readonly access = new Map<Digest, Set<string>>();

  mayReuse(record: ProvenanceRecord, identity: string): boolean {
    if (record.nodeCredentials === true) return true;
    return identity !== 'node' && this.access.get(record.digest)?.has(identity) === true;
  }

  remember(d: Digest, identity: string): void {
    if (identity === 'node') return; // recorded in the store (ingest's nodeCredentials)
    let ids = this.access.get(d);
    if (!ids) {
      if (this.access.size >= MAX_ACCESS_ENTRIES) this.access.delete(this.access.keys().next().value!);
      this.access.set(d, (ids = new Set()));
    }
    ids.delete(identity);
    ids.add(identity);
    if (ids.size > MAX_IDENTITIES_PER_DIGEST) ids.delete(ids.values().next().value!);
  }
}
