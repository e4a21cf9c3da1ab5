import { execFileSync, spawnSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { rootCertificates } from 'node:tls';
import { after, before, describe, it } from 'node:test';
import type { ErrorReason } from '../../../src/core/errors.js';
import { rejectsWith, spokeError } from '../../helpers/assert.js';
import { UndiciRegistryClient } from '../../../src/registry/client.js';
import { MAX_CA_FILE_BYTES, readCaBundle, resolveOptions } from '../../../src/registry/options.js';
import { throwsWith } from '../../helpers/assert.js';
import { makeTestCa } from '../../helpers/tls.js';

function refuses(opts: unknown): void {
  assert.throws(() => new UndiciRegistryClient(opts as never), spokeError({ code: 'InvalidArgument', reason: 'OPTION_INVALID' }));
}

describe('UndiciRegistryClient options', () => {
  it('applies defaults and normalises hosts', () => {
    const o = resolveOptions({ insecure: ['LocalHost:5000', '127.0.0.1'], mirrors: { 'Registry.Example.com': ['mirror.internal:5000'] } });
    assert.deepEqual([...o.insecure], ['localhost:5000', '127.0.0.1']);
    assert.deepEqual([...o.mirrors], [['registry.example.com', ['mirror.internal:5000']]]);
    assert.equal(o.timeoutMs, 10_000);
    assert.equal(o.connectTimeoutMs, 5_000);
    assert.equal(o.retries, 2);
    assert.equal(o.plainHttp, false);
    assert.equal(o.ca, undefined);
  });

  it('refuses bad options up front', () => {
    refuses({ insecure: 'host' });
    refuses({ insecure: ['http://host'] });
    refuses({ timeoutMs: 0 });
    refuses({ retries: 1.5 });
    refuses({ mirrors: { 'r.example.com': ['r.example.com'] } });
    refuses({ mirrors: { 'r.example.com': 'm' } });
    refuses({ mirrors: { 'r.example.com': Array.from({ length: 17 }, (_, i) => `m${i}.example.com`) } });
  });

  it('takes as many mirrors per registry as the node policy schema allows (16): a policy that loads never fails every pull', () => {
    const schema = JSON.parse(readFileSync(new URL('../../../../policy/node-policy.schema.json', import.meta.url), 'utf8')) as { properties: { mirrors: { additionalProperties: { maxItems: number } } } };
    const max = schema.properties.mirrors.additionalProperties.maxItems;
    const o = resolveOptions({ mirrors: { 'r.example.com': Array.from({ length: max }, (_, i) => `m${i}.example.com`) } });
    assert.equal(o.mirrors.get('r.example.com')?.length, max);
    refuses({ caFile: Buffer.from('not pem') });
    refuses({ userAgent: 'a\r\nb' });
    refuses({ timeout: 5 });
    refuses({ credentials: {} });
  });

  it('refuses malformed repositories, tags and digests before any I/O', async () => {
    const c = new UndiciRegistryClient({ dispatcherFactory: () => assert.fail('no I/O expected') });
    const opts = { maxBytes: 1024 };
    const bad = async (p: Promise<unknown>, reason: ErrorReason) => rejectsWith(p, { code: 'InvalidArgument', reason });
    await bad(c.getManifest({ registry: 'r.example.com', repository: '../x' }, 'v1', [], opts), 'REFERENCE_INVALID');
    await bad(c.getManifest({ registry: 'R.example.com', repository: 'x' }, 'v1', [], opts), 'REFERENCE_INVALID');
    await bad(c.getManifest({ registry: 'r.example.com', repository: 'x' }, 'a/../b', [], opts), 'REFERENCE_INVALID');
    await bad(c.getManifest({ registry: 'r.example.com', repository: 'x' }, 'sha256:abc', [], opts), 'DIGEST_INVALID');
    await bad(c.putManifest({ registry: 'r.example.com', repository: 'x' }, 'v1', Buffer.from('{}'), 'text/plain\r\nx: y'), 'OPTION_INVALID');
    await c.close();
  });
});

describe('readCaBundle (the node config caFile)', () => {
  it('returns a bundle of PEM certificates; refuses, naming the key and the file, one unreadable, too large or not PEM', () => {
    const dir = mkdtempSync(join(tmpdir(), 'spoke-ca-unit-'));
    try {
      const write = (name: string, text: string | Buffer) => {
        writeFileSync(join(dir, name), text);
        return join(dir, name);
      };
      const good = write('good.pem', `# two roots\n${rootCertificates[0]}\n${rootCertificates[1]}\n`);
      // The certificates alone, re-encoded: what the TLS layer is given is what was checked.
      assert.equal(readCaBundle(good).toString(), [rootCertificates[0]!, rootCertificates[1]!].map((c) => new X509Certificate(c).toString()).join(''));
      // A bundle cut short, or with a broken block before good ones: the TLS layer would trust
      // only the certificates before the break.
      const cut = throwsWith(() => readCaBundle(write('cut.pem', `${rootCertificates[0]}\n${rootCertificates[1]!.slice(0, 200)}`)), { code: 'InvalidArgument', reason: 'OPTION_INVALID' });
      assert.match(cut.message, /1 of its 2 certificates are not whole/);
      throwsWith(() => readCaBundle(write('broken-first.pem', `-----BEGIN CERTIFICATE-----\nMIIB\n${rootCertificates[0]}\n`)), { code: 'InvalidArgument', reason: 'OPTION_INVALID' });
      // A FIFO would hold the shim at its start, or every call during a SIGHUP reload, until a writer came.
      const fifo = join(dir, 'fifo.pem');
      assert.equal(spawnSync('mkfifo', [fifo]).status, 0);
      const notFile = throwsWith(() => readCaBundle(fifo), { code: 'InvalidArgument', reason: 'FILE_UNREADABLE' });
      assert.equal(notFile.message, `caFile ${fifo}: not a regular file`);

      const missing = join(dir, 'missing.pem');
      const e = throwsWith(() => readCaBundle(missing), { code: 'InvalidArgument', reason: 'FILE_UNREADABLE' });
      assert.equal(e.message, `caFile ${missing}: cannot be read (ENOENT)`);
      assert.equal(e.context.file, missing);
      assert.equal(e.context.path, 'caFile');

      throwsWith(() => readCaBundle(write('text.pem', 'not a certificate\n')), { code: 'InvalidArgument', reason: 'OPTION_INVALID' });
      // A PEM block of another kind, alone, is refused as the block it is (its label and line).
      const key = throwsWith(() => readCaBundle(write('key.pem', '-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n')), { code: 'InvalidArgument', reason: 'OPTION_INVALID' });
      assert.deepEqual([key.context.file, key.context.actual, key.context.line], [join(dir, 'key.pem'), 'PRIVATE KEY', 1]);
      const broken = rootCertificates[0]!.replace(/\n[A-Za-z0-9+/]{20}/, '\n!!!!');
      const bad = throwsWith(() => readCaBundle(write('broken.pem', `${rootCertificates[0]}\n${broken}\n`), '--ca-file'), { code: 'InvalidArgument', reason: 'OPTION_INVALID' });
      assert.match(bad.message, /^--ca-file .*broken\.pem: certificate 2 of 2 does not parse$/);
      throwsWith(() => readCaBundle(write('huge.pem', Buffer.alloc(MAX_CA_FILE_BYTES + 1, 0x41))), { code: 'InvalidArgument', reason: 'SIZE_LIMIT' });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('a CA bundle holds CERTIFICATE blocks only (docs/configuration.md, registries with a private CA)', () => {
  // OpenSSL, and so Node's TLS `ca`, also reads TRUSTED CERTIFICATE and X509 CERTIFICATE blocks:
  // a check that saw only CERTIFICATE blocks dropped those silently, passed, and the pull failed
  // later at the TLS handshake with the registry.
  let dir: string;
  let ca: string;
  let trusted: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'spoke-ca-labels-'));
    const made = makeTestCa(dir);
    ca = readFileSync(made.caFile, 'utf8');
    // OpenSSL's form with trust settings: what `openssl x509 -addtrust` writes.
    trusted = execFileSync('openssl', ['x509', '-in', made.caFile, '-addtrust', 'serverAuth'], { encoding: 'utf8' });
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('a TRUSTED CERTIFICATE or X509 CERTIFICATE block among certificates is refused, naming its label and line, not dropped', () => {
    assert.match(trusted, /^-----BEGIN TRUSTED CERTIFICATE-----\n/);
    const x509 = ca.replaceAll('-----BEGIN CERTIFICATE-----', '-----BEGIN X509 CERTIFICATE-----').replaceAll('-----END CERTIFICATE-----', '-----END X509 CERTIFICATE-----');
    const head = `# the roots\n${rootCertificates[0]}\n`;
    const line = head.split('\n').length;
    for (const [label, block] of [['TRUSTED CERTIFICATE', trusted], ['X509 CERTIFICATE', x509]] as const) {
      const file = join(dir, 'mixed.pem');
      writeFileSync(file, `${head}${block}${rootCertificates[1]}\n`);
      const e = throwsWith(() => readCaBundle(file), { code: 'InvalidArgument', reason: 'OPTION_INVALID' });
      assert.deepEqual([e.context.file, e.context.actual, e.context.expected, e.context.line], [file, label, 'CERTIFICATE', line]);
      // The registry client's own option and a --ca-file are checked alike.
      refuses({ caFile: readFileSync(file) });
    }
  });

  it('CRLF line ends, text between blocks and after the last are taken', () => {
    const crlf = `# the test CA\r\n${ca.replaceAll('\n', '\r\n')}a note between blocks\r\n${rootCertificates[0]!.replaceAll('\n', '\r\n')}\r\ntrailing text\r\n`;
    const checked = [ca, rootCertificates[0]!].map((c) => new X509Certificate(c).toString()).join('');
    assert.deepEqual(resolveOptions({ caFile: Buffer.from(crlf) }).ca, [...rootCertificates, checked]);
  });
});

describe('the registry client caFile option (--ca-file of verify and the publisher commands)', () => {
  const good = `# two roots\n${rootCertificates[0]}\n${rootCertificates[1]}\n`;
  // A bundle cut short, and one with a broken block before good ones: the TLS layer would trust
  // only the certificates before the break.
  const cut = `${rootCertificates[0]}\n${rootCertificates[1]!.slice(0, 200)}`;
  const brokenFirst = `-----BEGIN CERTIFICATE-----\nMIIB\n${rootCertificates[0]}\n`;

  it('refuses, as readCaBundle does, bytes or a file that are not wholly PEM certificates that parse', () => {
    for (const text of [cut, brokenFirst]) refuses({ caFile: Buffer.from(text) });
    // A path is read as the node's caFile is.
    throwsWith(() => resolveOptions({ caFile: '/nonexistent/ca.pem' }), { code: 'InvalidArgument', reason: 'FILE_UNREADABLE' });
    const dir = mkdtempSync(join(tmpdir(), 'spoke-ca-option-'));
    try {
      writeFileSync(join(dir, 'cut.pem'), cut);
      refuses({ caFile: join(dir, 'cut.pem') });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('hands TLS the checked certificates, re-encoded, after the built-in roots', () => {
    const checked = [rootCertificates[0]!, rootCertificates[1]!].map((c) => new X509Certificate(c).toString()).join('');
    assert.deepEqual(resolveOptions({ caFile: Buffer.from(good) }).ca, [...rootCertificates, checked]);
  });
});
