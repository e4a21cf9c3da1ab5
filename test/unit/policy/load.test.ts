import { strict as assert } from 'node:assert';
import { before, describe, it } from 'node:test';
import { parsePolicy, policyHash, type KeylessSigner, type PublicKeySigner } from '../../../src/policy/index.js';
import { throwsWith } from '../../helpers/assert.js';
import { D1, HEADER, memFs, pem, policyText, privatePem, trustedRootJson } from './fixtures.js';

const FILE = '/etc/spoke/policy.yaml';

/** Asserts that loading `text` fails at `<FILE>:<line>: <path>: ...` (the documented message form). */
function assertLoadError(text: string, line: number, path: string, fs = memFs()) {
  const e = throwsWith(() => parsePolicy(text, FILE, fs.readFile), { code: 'InvalidArgument', reason: 'POLICY_INVALID' });
  assert.ok(e.message.startsWith(`${FILE}:${line}: ${path}: `), `got: ${e.message}`);
  assert.equal(e.context.file, FILE);
  assert.equal(e.context.line, line);
  assert.equal(e.context.path, path);
}

const KEYS = memFs({ '/etc/spoke/keys/p.pub': pem('p256') });

describe('parsePolicy: errors point at file, line and field', () => {
  it('unknown top-level key', () => {
    assertLoadError(`${HEADER}rules: []\nmirror: {}\n`, 4, 'mirror');
  });

  it('unknown rule key (a typo must not weaken the policy)', () => {
    const text = `${HEADER}rules:
  - scope: r.io/x
    kinds: [seccomp]
    unsigned: true
    namespace: [dev]
`;
    assertLoadError(text, 7, 'rules[0].namespace');
  });

  it('wrong apiVersion and kind', () => {
    assertLoadError('apiVersion: spoke.dev/v1\nkind: NodeProfilePolicy\nrules: []\n', 1, 'apiVersion');
    assertLoadError('apiVersion: spoke.dev/v1alpha1\nkind: Policy\nrules: []\n', 2, 'kind');
    assertLoadError('kind: NodeProfilePolicy\nrules: []\n', 1, 'apiVersion');
  });

  it('missing rules', () => {
    assertLoadError(HEADER, 1, 'rules');
  });

  it('bad scope', () => {
    const text = `${HEADER}rules:
  - kinds: [seccomp]
    unsigned: true
    scope: r.io/team/
`;
    assertLoadError(text, 6, 'rules[0].scope');
    assertLoadError(`${HEADER}rules:\n  - scope: r.io/A\n    action: deny\n`, 4, 'rules[0].scope');
  });

  it('signedBy names a signer that does not exist', () => {
    const text = `${HEADER}signers:
  p: { publicKey: /etc/spoke/keys/p.pub }
rules:
  - scope: r.io/x
    kinds: [seccomp]
    signedBy:
      - p
      - q
`;
    assertLoadError(text, 10, 'rules[0].signedBy[1]', KEYS);
  });

  it('signedBy and unsigned together', () => {
    const text = `${HEADER}signers:
  p: { publicKey: /etc/spoke/keys/p.pub }
rules:
  - scope: r.io/x
    kinds: [seccomp]
    signedBy: [p]
    unsigned: true
`;
    assertLoadError(text, 9, 'rules[0].unsigned', KEYS);
  });

  it('an allow rule with neither signedBy nor unsigned', () => {
    const text = `${HEADER}rules:
  - scope: r.io/ok
    action: deny
  - scope: r.io/x
    kinds: [seccomp]
`;
    assertLoadError(text, 6, 'rules[1]');
  });

  it('empty signedBy, unsigned: false, and kinds missing on an allow rule', () => {
    assertLoadError(`${HEADER}rules:\n  - scope: r.io/x\n    kinds: [seccomp]\n    signedBy: []\n`, 6, 'rules[0].signedBy');
    assertLoadError(`${HEADER}rules:\n  - scope: r.io/x\n    kinds: [seccomp]\n    unsigned: false\n`, 6, 'rules[0].unsigned');
    assertLoadError(`${HEADER}rules:\n  - scope: r.io/x\n    unsigned: true\n`, 4, 'rules[0].kinds');
    assertLoadError(`${HEADER}rules:\n  - scope: r.io/x\n    kinds: [seccomp, Seccomp]\n    unsigned: true\n`, 5, 'rules[0].kinds[1]');
    assertLoadError(`${HEADER}rules:\n  - scope: r.io/x\n    kinds: [seccomp, seccomp]\n    unsigned: true\n`, 5, 'rules[0].kinds[1]');
  });

  it('restrictions and signers are refused on deny rules', () => {
    assertLoadError(`${HEADER}rules:\n  - scope: r.io/x\n    action: deny\n    namespaces: [a]\n`, 6, 'rules[0].namespaces');
    assertLoadError(`${HEADER}rules:\n  - scope: r.io/x\n    action: block\n`, 5, 'rules[0].action');
  });

  it('bad digests and namespaces', () => {
    assertLoadError(
      `${HEADER}rules:\n  - scope: r.io/x\n    kinds: [seccomp]\n    unsigned: true\n    digests: [${D1}, sha256:abc]\n`,
      7,
      'rules[0].digests[1]',
    );
    assertLoadError(`${HEADER}rules:\n  - scope: r.io/x\n    kinds: [seccomp]\n    unsigned: true\n    namespaces: [Team_A]\n`, 7, 'rules[0].namespaces[0]');
  });

  it('YAML syntax errors, duplicate keys, aliases and an empty file', () => {
    assertLoadError(`${HEADER}rules: [\n`, 4, '(yaml)');
    assertLoadError(`${HEADER}rules: []\nkind: NodeProfilePolicy\n`, 4, '(yaml)');
    assertLoadError(`${HEADER}rules:\n  - &r { scope: r.io/x, action: deny }\n  - *r\n`, 4, 'rules[0]');
    assertLoadError('', 1, '(document)');
    assertLoadError('---\na: 1\n---\nb: 2\n', 3, '(yaml)');
    // Only YAML 1.2 is read: a %YAML 1.1 directive would make `on` true and 0100000 octal.
    assertLoadError(`%YAML 1.1\n---\n${HEADER}rules:\n  - scope: r.io/x\n    kinds: [seccomp]\n    unsigned: on\n`, 1, '(yaml)');
  });

  it('mirrors, insecure and limits are validated', () => {
    assertLoadError(`${HEADER}rules: []\nmirrors:\n  r.io: [r.io]\n`, 5, 'mirrors.r.io[0]');
    assertLoadError(`${HEADER}rules: []\nmirrors:\n  r.io: []\n`, 5, 'mirrors.r.io');
    assertLoadError(`${HEADER}rules: []\ninsecure:\n  - 127.0.0.1:5000\n  - 127.0.0.1:5000\n`, 6, 'insecure[1]');
    assertLoadError(`${HEADER}rules: []\ninsecure: [http://x.io]\n`, 4, 'insecure[0]');
    assertLoadError(`${HEADER}rules: []\nlimits:\n  maxArtifactBytes: 999999999\n`, 5, 'limits.maxArtifactBytes');
    assertLoadError(`${HEADER}rules: []\nlimits:\n  maxBytes: 1\n`, 5, 'limits.maxBytes');
  });
});

describe('parsePolicy: signers', () => {
  const signerPolicy = (signer: string) => `${HEADER}signers:\n  s:\n${signer}rules: []\n`;

  it('accepts P-256, P-384, Ed25519 and RSA-2048 SPKI keys and keeps the PEM and the KeyObject', () => {
    for (const [kind, keyType] of [
      ['p256', 'ecdsa-p256'],
      ['p384', 'ecdsa-p384'],
      ['ed25519', 'ed25519'],
      ['rsa2048', 'rsa'],
    ] as const) {
      const key = pem(kind);
      const p = parsePolicy(signerPolicy('    publicKey: /k.pub\n'), FILE, memFs({ '/k.pub': key }).readFile);
      const s = p.signers.s as PublicKeySigner;
      assert.equal(s.type, 'publicKey');
      assert.equal(s.keyType, keyType);
      assert.equal(s.publicKeyPem, key);
      assert.equal(s.publicKey.type, 'public');
      assert.equal(s.file, '/k.pub');
      assert.equal(s.line, 4);
    }
  });

  it('resolves a relative key path against the policy file directory', () => {
    const fs = memFs({ '/etc/spoke/keys/k.pub': pem('p256') });
    const p = parsePolicy(signerPolicy('    publicKey: keys/k.pub\n'), FILE, fs.readFile);
    assert.equal(p.signers.s!.file, '/etc/spoke/keys/k.pub');
  });

  const refused: [string, string | Buffer][] = [
    ['RSA 1024', pem('rsa1024')],
    ['P-521', pem('p521')],
    ['Ed448', pem('ed448')],
    ['a private key', privatePem()],
    ['not PEM', 'hello'],
    ['two keys', pem('p256') + pem('p256')],
    ['PKCS#1', '-----BEGIN RSA PUBLIC KEY-----\nAAAA\n-----END RSA PUBLIC KEY-----\n'],
    ['garbage PEM', '-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n'],
  ];
  for (const [what, bytes] of refused) {
    it(`refuses ${what} at the publicKey line`, () => {
      assertLoadError(signerPolicy('    publicKey: /k.pub\n'), 5, 'signers.s.publicKey', memFs({ '/k.pub': bytes }));
    });
  }

  it('an unreadable key file is an error at its line, naming the file', () => {
    assertLoadError(signerPolicy('    publicKey: /nope.pub\n'), 5, 'signers.s.publicKey');
  });

  it('a signer is exactly one of publicKey and keyless, with a sane name', () => {
    assertLoadError(signerPolicy('    {}\n'), 4, 'signers.s');
    assertLoadError(`${HEADER}signers:\n  Bad Name: { publicKey: /k.pub }\nrules: []\n`, 4, 'signers.Bad Name');
  });

  describe('keyless', () => {
    let root: Record<string, unknown>;
    before(async () => {
      root = await trustedRootJson();
    });
    const keyless = (fields: string) => signerPolicy(`    keyless:\n      trustedRoot: /root.json\n${fields}`);
    const rootFs = (r: unknown = root) => memFs({ '/root.json': typeof r === 'string' ? r : JSON.stringify(r) });

    it('loads an exact subject, or an anchored subjectRegExp, and keeps the trusted root', () => {
      const p = parsePolicy(keyless('      issuer: https://issuer.example\n      subject: https://github.com/acme/x\n'), FILE, rootFs().readFile);
      const s = p.signers.s as KeylessSigner;
      assert.equal(s.type, 'keyless');
      assert.equal(s.issuer, 'https://issuer.example');
      assert.equal(s.subject, 'https://github.com/acme/x');
      assert.deepEqual(s.trustedRoot, root);
      assert.ok(Object.isFrozen(s.trustedRoot));
      const q = parsePolicy(keyless("      issuer: https://issuer.example\n      subjectRegExp: '^https://github\\.com/acme/.+$'\n"), FILE, rootFs().readFile);
      const r = q.signers.s as KeylessSigner;
      assert.ok(r.subjectRegExp!.test('https://github.com/acme/profiles'));
      assert.ok(!r.subjectRegExp!.test('https://github.com/acmeevil/profiles'));
      assert.ok(!r.subjectRegExp!.test('xhttps://github.com/acme/p'));
    });

    it('refuses an unanchored, half-anchored or alternation-unanchored subjectRegExp', () => {
      for (const re of ['github\\.com/acme', '^https://github\\.com/acme', 'x$', '^a|b$', '^a\\$']) {
        assertLoadError(keyless(`      issuer: https://i.example\n      subjectRegExp: '${re}'\n`), 8, 'signers.s.keyless.subjectRegExp', rootFs());
      }
      assertLoadError(keyless("      issuer: https://i.example\n      subjectRegExp: '^(a$'\n"), 8, 'signers.s.keyless.subjectRegExp', rootFs());
      assertLoadError(keyless(`      issuer: https://i.example\n      subjectRegExp: '^${'a'.repeat(1100)}$'\n`), 8, 'signers.s.keyless.subjectRegExp', rootFs());
    });

    it('needs exactly one of subject and subjectRegExp, and an https issuer', () => {
      assertLoadError(keyless('      issuer: https://i.example\n'), 5, 'signers.s.keyless', rootFs());
      assertLoadError(keyless("      issuer: https://i.example\n      subject: a\n      subjectRegExp: '^a$'\n"), 5, 'signers.s.keyless', rootFs());
      assertLoadError(keyless('      issuer: http://i.example\n      subject: a\n'), 7, 'signers.s.keyless.issuer', rootFs());
      assertLoadError(signerPolicy('    keyless:\n      issuer: https://i.example\n      subject: a\n'), 5, 'signers.s.keyless.trustedRoot', rootFs());
    });

    const badRoots: [string, () => unknown][] = [
      ['not JSON', () => '{'],
      ['wrong media type', () => ({ ...root, mediaType: 'application/json' })],
      ['no timestamp authority and no log', () => ({ ...root, timestampAuthorities: [], tlogs: [] })],
      ['a log key that is not a public key', () => ({ ...root, tlogs: [{ publicKey: { rawBytes: 'AAAA' }, logId: { keyId: 'AAAA' } }] })],
      ['no certificate authority', () => ({ ...root, certificateAuthorities: undefined })],
      [
        'a certificate that is not X.509',
        () => ({ ...root, certificateAuthorities: [{ certChain: { certificates: [{ rawBytes: 'AAAA' }] } }] }),
      ],
    ];
    for (const [what, make] of badRoots) {
      it(`refuses a trusted root with ${what}`, () => {
        assertLoadError(keyless('      issuer: https://i.example\n      subject: a\n'), 6, 'signers.s.keyless.trustedRoot', rootFs(make()));
      });
    }
  });
});

describe('parsePolicy: result', () => {
  it('defaults: action allow, maxArtifactBytes 1 MiB, no mirrors, no insecure', () => {
    const p = parsePolicy(policyText([{ scope: 'R.io/x', kinds: ['seccomp'], unsigned: true }]), FILE, memFs().readFile);
    assert.equal(p.rules[0]!.action, 'allow');
    assert.equal(p.rules[0]!.scope, 'r.io/x');
    assert.equal(p.rules[0]!.id, 'rules[0] (r.io/x)');
    assert.equal(p.rules[0]!.line, 4);
    assert.equal(p.limits.maxArtifactBytes, 1024 * 1024);
    assert.deepEqual(Object.keys(p.mirrors), []);
    assert.deepEqual(p.insecure, []);
    assert.match(p.hash, /^[0-9a-f]{64}$/);
  });

  it('the hash covers the policy bytes and every key and trusted root, and nothing else', () => {
    const text = `${HEADER}signers:\n  p: { publicKey: /k.pub }\nrules: []\n`;
    const fs = memFs({ '/k.pub': pem('p256') });
    const h1 = parsePolicy(text, FILE, fs.readFile).hash;
    assert.equal(parsePolicy(text, '/elsewhere/policy.yaml', fs.readFile).hash, h1, 'the file name is not hashed');
    assert.equal(parsePolicy(text, FILE, fs.readFile).hash, h1, 'same bytes, same hash');
    fs.set('/k.pub', pem('p256'));
    const h2 = parsePolicy(text, FILE, fs.readFile).hash;
    assert.notEqual(h2, h1, 'a new key changes the hash');
    assert.notEqual(parsePolicy(`${text}# comment\n`, FILE, fs.readFile).hash, h2, 'policy bytes are hashed');
  });

  it("the hash covers the version of spoke's signature rules: verdicts a version with laxer rules recorded are not honoured", () => {
    // Signature verdicts are kept by policy hash. This is the hash spoke gave this policy before
    // it refused a bundle with both a DSSE envelope and a message signature: a verdict made then
    // must be made again.
    const bytes = Buffer.from('apiVersion: spoke.dev/v1alpha1\nkind: NodeProfilePolicy\nrules: []\n');
    assert.notEqual(policyHash(bytes, []), '152617f4ad86891fd5280e4f2b16d896ef2c09bc713510f7072930a4b2625f4c');
    // ... and the hash of the version before it refused a bundle of more than four log entries
    // or timestamps, and documents that start with a byte-order mark.
    assert.notEqual(policyHash(bytes, []), 'a6b68499dc25d27f87e552d49ab6617aee07d8cfb56c8df67358a95b1fc9f8d5');
  });
});
