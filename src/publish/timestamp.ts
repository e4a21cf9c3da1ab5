// RFC 3161 timestamp client for `spoke sign --timestamp-url`: POST a DER TimeStampReq
// (application/timestamp-query) over sha256(data), certReq=true and a random nonce; check the
// reply is granted, its message imprint is our hash and the nonce is ours. The sigstore
// timestamp authority accepts this at /api/v1/timestamp, and so does any RFC 3161 TSA.

import { createHash, randomBytes, X509Certificate } from 'node:crypto';
import { ASN1Obj, RFC3161Timestamp } from '@sigstore/core';
import { SpokeError } from '../core/errors.js';

const OID_SHA256 = '2.16.840.1.101.3.4.2.1';
const MAX_TSA_REPLY_BYTES = 64 * 1024;

function derLength(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

function der(tag: number, content: Buffer): Buffer {
  return Buffer.concat([Buffer.from([tag]), derLength(content.length), content]);
}

function derOid(oid: string): Buffer {
  const parts = oid.split('.').map(Number);
  const out: number[] = [40 * parts[0]! + parts[1]!];
  for (const p of parts.slice(2)) {
    const chunk: number[] = [p & 0x7f];
    for (let v = Math.floor(p / 128); v > 0; v = Math.floor(v / 128)) chunk.unshift(0x80 | (v & 0x7f));
    out.push(...chunk);
  }
  return der(0x06, Buffer.from(out));
}

/** Positive INTEGER from big-endian bytes (leading zero added when the high bit is set). */
function derUInt(bytes: Buffer): Buffer {
  let b = bytes;
  while (b.length > 1 && b[0] === 0 && (b[1]! & 0x80) === 0) b = b.subarray(1);
  if (b[0]! & 0x80) b = Buffer.concat([Buffer.from([0]), b]);
  return der(0x02, b);
}

/** DER TimeStampReq { v1, messageImprint(sha256, hash), nonce, certReq TRUE }. */
export function encodeTimestampRequest(hash: Buffer, nonce: Buffer): Buffer {
  const algorithm = der(0x30, Buffer.concat([derOid(OID_SHA256), Buffer.from([0x05, 0x00])]));
  const imprint = der(0x30, Buffer.concat([algorithm, der(0x04, hash)]));
  return der(0x30, Buffer.concat([derUInt(Buffer.from([1])), imprint, derUInt(nonce), Buffer.from([0x01, 0x01, 0xff])]));
}

/** The nonce of a TSTInfo: the first INTEGER after genTime (accuracy is a SEQUENCE, ordering a BOOLEAN). */
function tstNonce(ts: RFC3161Timestamp): bigint | undefined {
  const subs = ts.tstInfo.root.subs;
  for (const s of subs.slice(5)) {
    if (s.tag.number === 0x02 && s.tag.isUniversal()) return s.toInteger();
  }
  return undefined;
}

export interface TimestampOptions {
  signal?: AbortSignal;
  timeoutMs?: number;
  fetch?: typeof fetch;
}

/**
 * Obtains an RFC 3161 timestamp over `data` (the signature bytes) from `url`. Returns the DER
 * TimeStampResp, as sigstore bundles and cosign's rfc3161timestamp annotation store it.
 */
export async function requestTimestamp(url: string, data: Uint8Array, opts: TimestampOptions = {}): Promise<Buffer> {
  // A reply whose time sigstore-js cannot read (it wants GeneralizedTime with none or exactly
  // three fractional digits; some TSAs trim trailing zeros) is asked for again: the next second
  // or millisecond usually reads fine. Anything else fails at once.
  for (let attempt = 1; ; attempt++) {
    try {
      return await requestTimestampOnce(url, data, opts);
    } catch (e) {
      if (!(e instanceof UnreadableTime) || attempt >= 3) throw e instanceof UnreadableTime ? e.error : e;
    }
  }
}

class UnreadableTime extends Error {
  constructor(readonly error: SpokeError) {
    super(error.message);
  }
}

/**
 * The reply's CMS signature (over its signed attributes, whose message digest covers the TSTInfo)
 * verifies with a certificate the reply carries (certReq=true asks for it). Not trust, which is
 * the node's to judge against its trusted root, but a reply damaged or altered on its way is
 * refused here instead of published as a signature every node would refuse.
 */
function verifiedBySignerCertificate(ts: RFC3161Timestamp, data: Buffer): void {
  // TimeStampResp { status, timeStampToken ContentInfo { contentType, [0] SignedData } }
  const signedData = ts.root.subs[1]?.subs[1]?.subs[0];
  const certificates = signedData?.subs.find((s) => s.tag.isContextSpecific(0))?.subs ?? [];
  if (certificates.length === 0) throw new Error('the reply carries no certificate to check its signature with');
  for (const cert of certificates) {
    try {
      ts.verify(data, new X509Certificate(cert.toDER()).publicKey);
      return;
    } catch {
      // another certificate of the reply may be the signer's
    }
  }
  throw new Error('its signature does not verify with any certificate it carries');
}

/** Whether `token` (a TimeStampToken reply, base64 as cosign annotates it) is a timestamp over `data` that verifies with a certificate it carries. */
export function timestampCovers(token: string, data: Buffer): boolean {
  try {
    // verify() in verifiedBySignerCertificate checks the message imprint over `data` too.
    verifiedBySignerCertificate(RFC3161Timestamp.parse(Buffer.from(token, 'base64') as Buffer<ArrayBuffer>), data);
    return true;
  } catch {
    return false;
  }
}

/** The response body, refused (SIZE_LIMIT) as soon as it passes `max` bytes: nothing more is read. */
async function readCapped(res: Response, max: number): Promise<Buffer> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  if (res.body === null) return Buffer.alloc(0);
  const reader = res.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.length;
    if (size > max) {
      await reader.cancel().catch(() => undefined);
      throw new SpokeError('FailedPrecondition', `timestamp reply larger than ${max} bytes`, {}, { reason: 'SIZE_LIMIT' });
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks, size);
}

async function requestTimestampOnce(url: string, data: Uint8Array, opts: TimestampOptions): Promise<Buffer> {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new SpokeError('InvalidArgument', 'the timestamp URL is not a URL', {}, { reason: 'OPTION_INVALID' });
  }
  if (u.protocol !== 'https:' && u.protocol !== 'http:') throw new SpokeError('InvalidArgument', `timestamp URL must be http(s), got ${u.protocol}`, {}, { reason: 'OPTION_INVALID' });
  // Errors name the origin and fetch's messages quote the URL: credentials in it would be printed.
  if (u.username !== '' || u.password !== '') throw new SpokeError('InvalidArgument', `timestamp URL for ${u.host} carries a user name or password; RFC 3161 requests here are anonymous`, {}, { reason: 'OPTION_INVALID' });
  const hash = createHash('sha256').update(data).digest();
  const nonceBytes = randomBytes(6); // 48 bits: enough against replay, fits every TSA's integer handling
  nonceBytes[0]! &= 0x7f;
  const body = encodeTimestampRequest(hash, nonceBytes);
  const signals = [AbortSignal.timeout(opts.timeoutMs ?? 30_000), ...(opts.signal ? [opts.signal] : [])];
  let res: Response;
  try {
    res = await (opts.fetch ?? fetch)(u, {
      method: 'POST',
      headers: { 'content-type': 'application/timestamp-query', accept: 'application/timestamp-reply' },
      body,
      signal: AbortSignal.any(signals),
    });
  } catch (e) {
    throw new SpokeError('Unavailable', `timestamp authority ${u.origin}: ${(e as Error).message}`, {}, { cause: e, reason: 'TRANSPORT' });
  }
  const reply = await readCapped(res, MAX_TSA_REPLY_BYTES);
  if (res.status >= 500) throw new SpokeError('Unavailable', `timestamp authority ${u.origin} answered ${res.status}`, {}, { reason: 'TSA_ERROR' });
  if (res.status !== 200 && res.status !== 201) {
    throw new SpokeError('FailedPrecondition', `timestamp authority ${u.origin} answered ${res.status}: ${reply.toString('utf8').slice(0, 200)}`, {}, { reason: 'TSA_ERROR' });
  }
  let ts: RFC3161Timestamp;
  try {
    ts = RFC3161Timestamp.parse(reply as Buffer<ArrayBuffer>);
    if (ts.status !== 0n && ts.status !== 1n) throw new Error(`status ${ts.status} (not granted)`);
    ts.tstInfo.verify(Buffer.from(data));
    if (ts.tstInfo.messageImprintHashAlgorithm !== 'sha256') throw new Error('message imprint is not sha256');
    verifiedBySignerCertificate(ts, Buffer.from(data));
  } catch (e) {
    throw new SpokeError('FailedPrecondition', `timestamp authority ${u.origin}: unusable reply: ${(e as Error).message}`, {}, { cause: e, reason: 'TIMESTAMP_INVALID' });
  }
  try {
    void ts.signingTime;
  } catch (e) {
    throw new UnreadableTime(new SpokeError('FailedPrecondition', `timestamp authority ${u.origin}: reply time is unreadable by sigstore verifiers: ${(e as Error).message}`, {}, { reason: 'TIMESTAMP_INVALID' }));
  }
  const nonce = tstNonce(ts);
  const sent = BigInt(`0x${nonceBytes.toString('hex')}`);
  if (nonce !== sent) throw new SpokeError('FailedPrecondition', `timestamp authority ${u.origin}: reply nonce does not match the request`, {}, { reason: 'TIMESTAMP_INVALID' });
  return reply;
}

/** Parses a DER TimeStampReq (used by tests' local TSA). */
export function decodeTimestampRequest(der: Buffer): { hash: Buffer; hashAlgorithmOID: string; nonce: bigint | undefined; certReq: boolean; policyOID: string | undefined } {
  const root = ASN1Obj.parseBuffer(der as Buffer<ArrayBuffer>);
  const [, imprint, ...rest] = root.subs;
  if (!imprint) throw new Error('TimeStampReq without messageImprint');
  const hashAlgorithmOID = imprint.subs[0]!.subs[0]!.toOID();
  const hash = Buffer.from(imprint.subs[1]!.value);
  let nonce: bigint | undefined;
  let certReq = false;
  let policyOID: string | undefined;
  for (const s of rest) {
    if (s.tag.number === 0x06) policyOID = s.toOID();
    else if (s.tag.number === 0x02) nonce = s.toInteger();
    else if (s.tag.number === 0x01) certReq = s.toBoolean();
  }
  return { hash, hashAlgorithmOID, nonce, certReq, policyOID };
}
