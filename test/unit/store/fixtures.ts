// What the store's tests ingest: a seccomp profile packed as the KEP artifact.

import { packProfile } from '../../../src/publish/pack.js';
import type { IngestInput } from '../../../src/store/store.js';

export function ingestInput(body: string, extra: Partial<IngestInput> = {}): IngestInput {
  const p = packProfile(Buffer.from(body), 'seccomp');
  return {
    digest: p.manifestDigest,
    manifestBytes: p.manifest,
    layerDigest: p.layerDigest,
    layerBytes: p.layer,
    kind: 'seccomp',
    reference: `r.io/p@${p.manifestDigest}`,
    rule: 'rules[0] (r.io)',
    servedBy: 'r.io',
    ...extra,
  };
}
