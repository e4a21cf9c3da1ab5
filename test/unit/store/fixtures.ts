// What the store's tests ingest: a seccomp profile packed as the KEP artifact; and a count of
// the file-system requests a step sends to libuv's thread pool.

import { createHook } from 'node:async_hooks';
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

/** Runs `step` and counts the fs requests it sent to libuv's thread pool (callback and promise APIs). */
export async function poolRequests(step: () => Promise<unknown>): Promise<number> {
  let n = 0;
  const hook = createHook({
    init: (_id, type) => {
      if (type === 'FSREQCALLBACK' || type === 'FSREQPROMISE') n++;
    },
  }).enable();
  try {
    await step();
  } finally {
    hook.disable();
  }
  return n;
}
