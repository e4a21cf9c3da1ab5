// The RFC 3161 client of `spoke sign --timestamp-url` against the local mock TSA.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { RFC3161Timestamp } from '@sigstore/core';
import { decodeTimestampRequest, encodeTimestampRequest, requestTimestamp } from '../../../src/publish/timestamp.js';
import { rejectsWith } from '../../helpers/assert.js';
import { startTsaServer, type TestTsa } from '../../helpers/tsa-server.js';

describe('RFC 3161 client', () => {
  let tsa: TestTsa;
  before(async () => {
    tsa = await startTsaServer();
  });
  after(async () => {
    await tsa?.stop();
  });

  it('encodes a TimeStampReq that decodes back', () => {
    const hash = Buffer.alloc(32, 7);
    const r = decodeTimestampRequest(encodeTimestampRequest(hash, Buffer.from([0x81, 2, 3])));
    assert.deepEqual(r.hash, hash);
    assert.equal(r.hashAlgorithmOID, '2.16.840.1.101.3.4.2.1');
    assert.equal(r.nonce, 0x810203n);
    assert.equal(r.certReq, true);
  });

  it('gets a granted timestamp over the data', async () => {
    const data = Buffer.from('signature bytes');
    const reply = await requestTimestamp(tsa.url, data);
    const ts = RFC3161Timestamp.parse(reply as Buffer<ArrayBuffer>);
    ts.tstInfo.verify(data);
    assert.ok(Math.abs(ts.signingTime.getTime() - Date.now()) < 60_000);
  });

  it('refuses a reply whose signature does not verify with the certificate it carries: nothing a node would refuse is published', async () => {
    const data = Buffer.from('signature bytes');
    // The reply as the TSA sent it, but for the last bytes of its CMS signature value.
    const corrupting: typeof fetch = async (input, init) => {
      const res = await fetch(input, init);
      const reply = Buffer.from(await res.arrayBuffer());
      const sig = RFC3161Timestamp.parse(Buffer.from(reply) as Buffer<ArrayBuffer>).signatureValue;
      const at = reply.lastIndexOf(sig) + sig.length - 4;
      for (let i = 0; i < 4; i++) reply[at + i]! ^= 0xff;
      return new Response(reply, { status: res.status, headers: res.headers });
    };
    await rejectsWith(requestTimestamp(tsa.url, data, { fetch: corrupting }), { code: 'FailedPrecondition', reason: 'TIMESTAMP_INVALID' });
    assert.ok((await requestTimestamp(tsa.url, data)).length > 0, 'the same TSA, unaltered: accepted');
  });

  it('refuses a TSA error and a reply for other data', async () => {
    const bad = await startTsaServer({ status: 503 });
    try {
      await rejectsWith(requestTimestamp(bad.url, Buffer.from('x')), { code: 'Unavailable', reason: 'TSA_ERROR' });
    } finally {
      await bad.stop();
    }
    const other = await tsa.timestamp(Buffer.from('other data'));
    const fakeFetch = (async () => new Response(other, { status: 200 })) as typeof fetch;
    await rejectsWith(requestTimestamp(tsa.url, Buffer.from('x'), { fetch: fakeFetch }), { code: 'FailedPrecondition', reason: 'TIMESTAMP_INVALID' });
    await rejectsWith(requestTimestamp('ftp://x', Buffer.from('x')), { code: 'InvalidArgument', reason: 'OPTION_INVALID' });
  });

  it('a URL with a user name or password is refused without echoing them, before any request', async () => {
    let asked = false;
    const counting = (async () => {
      asked = true;
      return new Response('', { status: 500 });
    }) as typeof fetch;
    const err = await rejectsWith(requestTimestamp('http://tsauser:TSA-S3CRET@127.0.0.1:9/tsr', Buffer.from('x'), { fetch: counting }), { code: 'InvalidArgument', reason: 'OPTION_INVALID' });
    assert.doesNotMatch(err.message, /S3CRET|tsauser/);
    assert.equal(asked, false);
  });

  it('a reply is read only up to its cap: an endless one is cut off, not buffered', async () => {
    let sent = 0;
    const endless = new ReadableStream<Uint8Array>({
      pull(c) {
        sent += 65536;
        c.enqueue(new Uint8Array(65536));
        if (sent > 64 * 1024 * 1024) c.close();
      },
    });
    const flooding = (async () => new Response(endless, { status: 200 })) as typeof fetch;
    await rejectsWith(requestTimestamp(tsa.url, Buffer.from('x'), { fetch: flooding }), { code: 'FailedPrecondition', reason: 'SIZE_LIMIT' });
    assert.ok(sent < 1024 * 1024, `${sent} bytes pulled`);
  });
});
