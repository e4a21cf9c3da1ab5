// A local RFC 3161 timestamp authority for tests: @sigstore/mock's TSA behind node:http on
// 127.0.0.1. Accepts DER TimeStampReq (application/timestamp-query, as `spoke sign
// --timestamp-url` sends) and sigstore's JSON request form.

import { generateKeyPairSync } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { initializeTSA } from '@sigstore/mock';
import { decodeTimestampRequest } from '../../src/publish/timestamp.js';

type TSA = Awaited<ReturnType<typeof initializeTSA>>;

const OID_SHA256 = '2.16.840.1.101.3.4.2.1';
const OID_TSA_POLICY = '1.3.6.1.4.1.57264.2';

export interface TestTsa {
  readonly url: string;
  readonly tsa: TSA;
  /** DER of the TSA's signing (intermediate) and root certificates, for trusted_root.json. */
  readonly intCertificate: Buffer;
  readonly rootCertificate: Buffer;
  /** Timestamp over `data` directly (no HTTP), as the server would answer. */
  timestamp(data: Buffer): Promise<Buffer>;
  requests(): number;
  stop(): Promise<void>;
}

export async function startTsaServer(opts: { clock?: Date; status?: number } = {}): Promise<TestTsa> {
  const tsa = await initializeTSA(generateKeyPairSync('ec', { namedCurve: 'P-256' }), opts.clock);
  let count = 0;
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      count++;
      void (async () => {
        try {
          if (opts.status !== undefined) {
            res.writeHead(opts.status).end('configured failure');
            return;
          }
          const body = Buffer.concat(chunks);
          let request;
          if ((req.headers['content-type'] ?? '').startsWith('application/timestamp-query')) {
            const r = decodeTimestampRequest(body);
            request = { artifactHash: r.hash, hashAlgorithmOID: r.hashAlgorithmOID, nonce: Number(r.nonce ?? 1n), policyOID: r.policyOID ?? OID_TSA_POLICY, certReq: r.certReq };
          } else {
            const j = JSON.parse(body.toString('utf8')) as { artifactHash: string; nonce?: number; certificates?: boolean };
            request = { artifactHash: Buffer.from(j.artifactHash, 'base64'), hashAlgorithmOID: OID_SHA256, nonce: j.nonce ?? 1234, policyOID: OID_TSA_POLICY, certReq: j.certificates ?? false };
          }
          // The mock writes genTime fractions with trailing zeros trimmed (".5Z"), which
          // sigstore-js cannot parse; answer in a millisecond that prints as three digits.
          while (Date.now() % 10 === 0) await new Promise((r) => setTimeout(r, 1));
          const reply = await tsa.timestamp(request);
          res.writeHead(200, { 'content-type': 'application/timestamp-reply' }).end(reply);
        } catch (e) {
          res.writeHead(400).end(String(e));
        }
      })();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  const { createHash } = await import('node:crypto');
  return {
    url: `http://127.0.0.1:${port}/api/v1/timestamp`,
    tsa,
    intCertificate: tsa.intCertificate,
    rootCertificate: tsa.rootCertificate,
    timestamp: async (data) => {
      while (Date.now() % 10 === 0) await new Promise((r) => setTimeout(r, 1));
      return tsa.timestamp({ artifactHash: createHash('sha256').update(data).digest(), hashAlgorithmOID: OID_SHA256, nonce: 42, policyOID: OID_TSA_POLICY, certReq: true });
    },
    requests: () => count,
    stop: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
