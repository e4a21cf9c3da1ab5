// Keyless bundles signed the common way: a Fulcio-style certificate (the mock CA of
// keylessFixture) and a Rekor transparency-log entry (the mock log of @sigstore/mock) carrying
// the integrated time, with its inclusion promise (SET) and an inclusion proof with a signed
// checkpoint; no RFC 3161 timestamp. The bundle is stored as a v0.3 referrer in the tag-schema
// fallback, as a referrers-unaware pusher must. Entirely offline.

import { createHash, generateKeyPairSync, sign as cryptoSign, type KeyObject } from 'node:crypto';
import { initializeTLog } from '@sigstore/mock';
import { BUNDLE_V03, COSIGN_PREDICATE, pae, pushBundleReferrer } from './signing.js';

const REKOR_URL = 'https://rekor.example.test';
const IN_TOTO = 'application/vnd.in-toto+json';

export interface RekorLog {
  /** The `tlogs[]` entry of a trusted root that trusts this log. */
  trustedRootEntry: Record<string, unknown>;
  /** Logs a DSSE entry and returns the bundle's tlogEntries[] element. */
  entry(envelope: { payload: Buffer; sig: Buffer }, certPem: string): Promise<Record<string, unknown>>;
}

export async function mockRekor(): Promise<RekorLog> {
  const keyPair = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const log = await initializeTLog(REKOR_URL, keyPair);
  const spki = keyPair.publicKey.export({ type: 'spki', format: 'der' });
  return {
    trustedRootEntry: {
      baseUrl: REKOR_URL,
      hashAlgorithm: 'SHA2_256',
      publicKey: { rawBytes: spki.toString('base64'), keyDetails: 'PKIX_ECDSA_P256_SHA_256', validFor: { start: '2020-01-01T00:00:00Z' } },
      logId: { keyId: createHash('sha256').update(spki).digest('base64') },
    },
    async entry({ payload, sig }, certPem) {
      // Rekor's dsse v0.0.1 proposed entry: the envelope's signature and verifier, and the payload hash.
      const proposed = {
        apiVersion: '0.0.1',
        kind: 'dsse',
        spec: {
          payloadHash: { algorithm: 'sha256', value: createHash('sha256').update(payload).digest('hex') },
          signatures: [{ signature: sig.toString('base64'), verifier: Buffer.from(certPem).toString('base64') }],
        },
      };
      const logged = Object.values(await log.log(proposed))[0] as {
        body: string;
        integratedTime: number;
        logID: string;
        logIndex: number;
        verification: { signedEntryTimestamp: string; inclusionProof: { logIndex: number; treeSize: number; rootHash: string; hashes: string[]; checkpoint: string } };
      };
      const proof = logged.verification.inclusionProof;
      return {
        logIndex: String(logged.logIndex),
        logId: { keyId: Buffer.from(logged.logID, 'hex').toString('base64') },
        kindVersion: { kind: 'dsse', version: '0.0.1' },
        integratedTime: String(logged.integratedTime),
        inclusionPromise: { signedEntryTimestamp: logged.verification.signedEntryTimestamp },
        inclusionProof: {
          logIndex: String(proof.logIndex),
          rootHash: Buffer.from(proof.rootHash, 'hex').toString('base64'),
          treeSize: String(proof.treeSize),
          hashes: proof.hashes,
          checkpoint: { envelope: proof.checkpoint },
        },
        canonicalizedBody: logged.body,
      };
    },
  };
}

/**
 * A DSSE bundle signing `subject` with a certificate and a Rekor entry, pushed as a referrer.
 * `tamper` edits the bundle JSON before it is stored (the registry serves exactly that).
 */
export async function rekorSignedReferrer(
  url: string,
  repository: string,
  subject: { digest: string; size: number },
  signer: { key: KeyObject; certPem: string },
  rekor: RekorLog,
  tamper: (bundle: Record<string, unknown>) => void = () => {},
): Promise<void> {
  const payload = Buffer.from(
    JSON.stringify({ _type: 'https://in-toto.io/Statement/v1', subject: [{ name: repository, digest: { sha256: subject.digest.slice(7) } }], predicateType: COSIGN_PREDICATE, predicate: {} }),
  );
  const sig = cryptoSign('sha256', pae(IN_TOTO, payload), signer.key);
  const der = Buffer.from(signer.certPem.replace(/-----[^-]+-----|\s/g, ''), 'base64');
  const bundle: Record<string, unknown> = {
    mediaType: BUNDLE_V03,
    verificationMaterial: { certificate: { rawBytes: der.toString('base64') }, tlogEntries: [await rekor.entry({ payload, sig }, signer.certPem)], timestampVerificationData: { rfc3161Timestamps: [] } },
    dsseEnvelope: { payload: payload.toString('base64'), payloadType: IN_TOTO, signatures: [{ sig: sig.toString('base64'), keyid: '' }] },
  };
  tamper(bundle);
  await pushBundleReferrer(url, repository, subject, Buffer.from(JSON.stringify(bundle)));
}
