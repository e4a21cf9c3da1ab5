// The record format of the store: one JSON record per artifact (profiles/sha256/<hex>.json) and
// the content verdicts (invalid/), their parse, and the bounded updates a pull makes to a record.
// No I/O: records.ts reads and writes them.

import { isDigest, type Digest } from '../core/digest.js';
import type { ProfileKind } from '../core/constants.js';

export interface SignatureVerdict {
  signer: string;
  format: 'bundle' | 'cosign';
  identity?: string;
  at: string;
}

export interface ProvenanceRecord {
  schemaVersion: 1;
  digest: Digest; // the artifact (manifest) digest
  /** The manifest's exact bytes, base64 (kept for re-verifying signatures without a fetch). */
  manifest: string;
  kind: ProfileKind;
  layerDigest: Digest;
  size: number; // profile bytes
  references: string[]; // digest references it was pulled as (bounded)
  rule: string; // the policy rule that admitted the first pull
  pulledAt: string;
  servedBy: string;
  /**
   * `<policy hash> <signer>` → verdict (verdictKey): under one policy, rules for different
   * namespaces may need different signers of one digest, and each verdict is a fact of its own.
   * "unsigned" rules record nothing here. A key of the policy hash alone (older versions) still
   * serves the signer its verdict names.
   */
  verdicts: Record<string, SignatureVerdict>;
  /**
   * Fetched at least once with the node's own credentials (or none), so any pod may reuse it
   * (KEP-2535's rule for images). Absent: only fetched with a pod's credentials, or recorded
   * before this was kept; a pod then fetches it again as itself.
   */
  nodeCredentials?: true;
  /**
   * Set when `digest` names a multi-architecture index (docs/multi-arch.md): then `manifest` holds
   * the index's bytes (signatures are on the index digest) and this the manifest taken for the
   * node's platform, whose single layer is `layerDigest`.
   */
  platform?: PlatformManifest;
}

/** The platform's artifact manifest chosen from an index: its digest, exact bytes (base64) and platform. */
export interface PlatformManifest {
  digest: Digest;
  manifest: string;
  os: string;
  architecture: string;
  variant?: string;
}

export interface InvalidVerdict {
  digest: Digest;
  reason: string;
  at: string;
  /**
   * Always `content`: the verdict depends on the bytes alone. Verdict files without it were
   * written by versions that also cached request-dependent refusals (kind, size limit), and
   * are ignored.
   */
  scope: 'content';
  /**
   * The artifact rules that judged it (the spoke build, ProfileStoreOptions.contentRules): a
   * later build may admit what an earlier one refused, so its verdict is not taken for this
   * build's. Files without it were written before builds recorded it, and are ignored.
   */
  rules: string;
}

export interface StoreEntry extends ProvenanceRecord {
  inUse: string[];
}

/** What a provenance record is made of: an ingest's input without the profile's bytes. */
export interface RecordInput {
  digest: Digest;
  manifestBytes: Uint8Array;
  layerDigest: Digest;
  kind: ProfileKind;
  reference: string;
  rule: string;
  servedBy: string;
  /** Fetched with the node's credentials (no per-request AuthConfig). */
  nodeCredentials?: boolean;
  verdict?: { policyHash: string } & Omit<SignatureVerdict, 'at'>;
  /** `digest` is an index: the manifest taken from it for this node's platform. */
  platform?: { digest: Digest; manifestBytes: Uint8Array; os: string; architecture: string; variant?: string };
}

export interface IngestInput extends RecordInput {
  layerBytes: Uint8Array;
}

const MAX_REFERENCES_PER_RECORD = 32;
const MAX_VERDICTS_PER_RECORD = 16;

export function platformManifest(p: NonNullable<IngestInput['platform']>): PlatformManifest {
  const { digest, manifestBytes, os, architecture, variant } = p;
  return { digest, manifest: Buffer.from(manifestBytes).toString('base64'), os, architecture, ...(variant !== undefined ? { variant } : {}) };
}

export function addReference(record: ProvenanceRecord, reference: string): void {
  if (record.references.includes(reference)) return;
  record.references.push(reference);
  if (record.references.length > MAX_REFERENCES_PER_RECORD) record.references.shift();
}

const verdictKey = (policyHash: string, signer: string): string => `${policyHash} ${signer}`;

export function setVerdict(record: ProvenanceRecord, policyHash: string, v: SignatureVerdict): void {
  const key = verdictKey(policyHash, v.signer);
  record.verdicts[key] = v;
  // Only the current policy's verdicts matter: other policies' go first, the oldest first; the
  // current policy's (the one just set among them) never while another's is there. Not by time
  // alone: verdicts written while the clock ran ahead carry later times than the current ones.
  const current = (k: string) => k === policyHash || k.startsWith(`${policyHash} `);
  const keys = Object.keys(record.verdicts);
  if (keys.length > MAX_VERDICTS_PER_RECORD) {
    const older = keys.filter((k) => !current(k));
    const candidates = older.length > 0 ? older : keys.filter((k) => k !== key);
    candidates.sort((a, b) => record.verdicts[a]!.at.localeCompare(record.verdicts[b]!.at));
    delete record.verdicts[candidates[0]!];
  }
}

/**
 * A verdict recorded under `policyHash` by one of `signedBy` whose key is at hand (not
 * unavailable), or undefined: then the digest is verified again.
 */
export function verdictUnder(record: ProvenanceRecord, policyHash: string, signedBy: readonly { name: string; type: string }[]): SignatureVerdict | undefined {
  for (const s of signedBy) {
    if (s.type === 'unavailable') continue;
    // A key of the hash alone: a version before this one kept one verdict per policy; it says
    // as much (the hash covers the keys and the signature rules) for the signer it names.
    const v = record.verdicts[verdictKey(policyHash, s.name)] ?? record.verdicts[policyHash];
    if (v !== undefined && v.signer === s.name) return v;
  }
  return undefined;
}

export function parseRecord(bytes: Buffer, d: Digest): ProvenanceRecord | undefined {
  let r: ProvenanceRecord;
  try {
    r = JSON.parse(bytes.toString('utf8')) as ProvenanceRecord;
  } catch {
    return undefined;
  }
  const ok = typeof r === 'object' && r !== null && r.schemaVersion === 1 && r.digest === d && isDigest(r.layerDigest) && typeof r.manifest === 'string' && Array.isArray(r.references) && typeof r.verdicts === 'object' && (r.platform === undefined || (isDigest(r.platform.digest) && typeof r.platform.manifest === 'string'));
  return ok ? r : undefined;
}

/** `existing` (a copy) or a new record for `input`, with the input's reference, credentials and verdict added. */
export function updatedRecord(existing: ProvenanceRecord | undefined, input: RecordInput, size: number, now: string): ProvenanceRecord {
  const record: ProvenanceRecord = existing
    ? structuredClone(existing)
    : {
        schemaVersion: 1,
        digest: input.digest,
        manifest: Buffer.from(input.manifestBytes).toString('base64'),
        kind: input.kind,
        layerDigest: input.layerDigest,
        size,
        references: [],
        rule: input.rule,
        pulledAt: now,
        servedBy: input.servedBy,
        verdicts: {},
        ...(input.platform ? { platform: platformManifest(input.platform) } : {}),
      };
  addReference(record, input.reference);
  if (input.nodeCredentials === true) record.nodeCredentials = true;
  if (input.verdict) setVerdict(record, input.verdict.policyHash, { signer: input.verdict.signer, format: input.verdict.format, identity: input.verdict.identity, at: now });
  return record;
}
