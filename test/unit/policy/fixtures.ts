// Shared helpers for policy and config tests: keys generated with node:crypto, a trusted root
// from @sigstore/mock's CA and TSA, an in-memory readFile, and policy text builders.

import { generateKeyPairSync } from 'node:crypto';
import { initializeCA, initializeTSA } from '@sigstore/mock';
import { parseReference, type Reference } from '../../../src/core/reference.js';

export const D1 = `sha256:${'1'.repeat(64)}` as const;
export const D2 = `sha256:${'2'.repeat(64)}` as const;

export function pem(kind: 'p256' | 'p384' | 'p521' | 'ed25519' | 'ed448' | 'rsa2048' | 'rsa1024'): string {
  const pair =
    kind === 'p256'
      ? generateKeyPairSync('ec', { namedCurve: 'P-256' })
      : kind === 'p384'
        ? generateKeyPairSync('ec', { namedCurve: 'P-384' })
        : kind === 'p521'
          ? generateKeyPairSync('ec', { namedCurve: 'P-521' })
          : kind === 'ed25519'
            ? generateKeyPairSync('ed25519')
            : kind === 'ed448'
              ? generateKeyPairSync('ed448')
              : generateKeyPairSync('rsa', { modulusLength: kind === 'rsa2048' ? 2048 : 1024 });
  return pair.publicKey.export({ type: 'spki', format: 'pem' }).toString();
}

export function privatePem(): string {
  return generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
}

/** A trusted_root.json with the mock CA and TSA (what keyless signers need). */
export async function trustedRootJson(opts: { tsa?: boolean } = {}): Promise<Record<string, unknown>> {
  const ca = await initializeCA(generateKeyPairSync('ec', { namedCurve: 'P-256' }));
  const tsa = await initializeTSA(generateKeyPairSync('ec', { namedCurve: 'P-256' }));
  return {
    mediaType: 'application/vnd.dev.sigstore.trustedroot+json;version=0.1',
    tlogs: [],
    ctlogs: [],
    certificateAuthorities: [
      { subject: { organization: 'mock', commonName: 'mock' }, uri: 'https://fulcio.example', certChain: { certificates: [{ rawBytes: ca.rootCertificate.toString('base64') }] }, validFor: { start: '2020-01-01T00:00:00Z' } },
    ],
    timestampAuthorities:
      opts.tsa === false
        ? []
        : [
            {
              subject: { organization: 'mock', commonName: 'tsa' },
              certChain: { certificates: [{ rawBytes: tsa.intCertificate.toString('base64') }, { rawBytes: tsa.rootCertificate.toString('base64') }] },
              validFor: { start: '2020-01-01T00:00:00Z' },
            },
          ],
  };
}

/** An in-memory file system for the injected readFile; missing files throw ENOENT like node:fs. */
export function memFs(files: Record<string, string | Buffer> = {}) {
  const map = new Map<string, Buffer>(Object.entries(files).map(([k, v]) => [k, Buffer.from(v)]));
  const reads: string[] = [];
  const readFile = (p: string): Buffer => {
    reads.push(p);
    const b = map.get(p);
    if (b === undefined) throw Object.assign(new Error(`ENOENT: no such file or directory, open '${p}'`), { code: 'ENOENT' });
    return b;
  };
  return { readFile, reads, set: (p: string, v: string | Buffer) => map.set(p, Buffer.from(v)), delete: (p: string) => map.delete(p) };
}

export const HEADER = 'apiVersion: spoke.dev/v1alpha1\nkind: NodeProfilePolicy\n';

/** YAML text for a policy whose rules are given as JSON-able objects (JSON is YAML). */
export function policyText(rules: readonly object[], extra: Record<string, unknown> = {}): string {
  return `${HEADER}${Object.entries(extra)
    .map(([k, v]) => `${k}: ${JSON.stringify(v)}\n`)
    .join('')}rules:${rules.length === 0 ? ' []\n' : '\n'}${rules.map((r) => `  - ${JSON.stringify(r)}\n`).join('')}`;
}

export function ref(name: string, digest: string = D1): Reference {
  return parseReference(`${name}@${digest}`);
}
