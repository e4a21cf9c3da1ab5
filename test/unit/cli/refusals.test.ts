// The reasons CLI inputs are refused with (src/core/errors.ts), from real files: scripts and the
// controller branch on them, never on message text.

import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { rootCertificates } from 'node:tls';
import { loadBindings } from '../../../src/cli/commands/binding.js';
import { signingKeyLoader, signingKeyWarnings } from '../../../src/cli/recording-controller.js';
import { rejectsWith } from '../../helpers/assert.js';
import { spoke } from '../../helpers/cli.js';
import { makeKey } from '../../helpers/signing.js';

const dir = mkdtempSync(join(tmpdir(), 'spoke-cli-refusals-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function file(name: string, text: string | Buffer): string {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
}

describe('binding files', () => {
  it('YAML that does not parse, another kind, bad Namespace labels: InvalidArgument, OBJECT_INVALID', async () => {
    const expected = { code: 'InvalidArgument', reason: 'OBJECT_INVALID' } as const;
    await rejectsWith(loadBindings([file('syntax.yaml', 'kind: [unclosed\n')], 'default'), expected);
    await rejectsWith(loadBindings([file('kind.yaml', 'apiVersion: v1\nkind: ConfigMap\nmetadata: { name: x }\n')], 'default'), expected);
    await rejectsWith(loadBindings([file('labels.yaml', 'apiVersion: v1\nkind: Namespace\nmetadata: { name: team, labels: [a] }\n')], 'default'), expected);
  });
});

describe('the recording controller signing keys', () => {
  const load = signingKeyLoader(dir);

  it('a name that is not a Secret key, or names a scope file: OBJECT_INVALID; a missing key: FILE_UNREADABLE; an oversized one: KEY_INVALID', async () => {
    await rejectsWith(load('../etc', 'team'), { code: 'InvalidArgument', reason: 'OBJECT_INVALID' });
    await rejectsWith(load('release.namespaces', 'team'), { code: 'InvalidArgument', reason: 'OBJECT_INVALID' });
    file('absent.namespaces', 'team\n');
    await rejectsWith(load('absent', 'team'), { code: 'NotFound', reason: 'FILE_UNREADABLE' });
    file('huge', Buffer.alloc(64 * 1024 + 1, 'a'));
    file('huge.namespaces', '*\n');
    await rejectsWith(load('huge', 'team'), { code: 'InvalidArgument', reason: 'KEY_INVALID' });
  });

  const release = makeKey('p256');
  const loadedPublic = async (name: string, namespace: string) => (await load(name, namespace)).asymmetricKeyType;

  it('a key signs only for the namespaces of its scope file, read on every use; without one, for none', async () => {
    file('release', release.privatePem);
    await rejectsWith(load('release', 'team'), { code: 'PermissionDenied', reason: 'KEY_NOT_ALLOWED' });
    file('release.namespaces', '# who may sign\nteam\n');
    assert.equal(await loadedPublic('release', 'team'), 'ec');
    const refused = await rejectsWith(load('release', 'other'), { code: 'PermissionDenied', reason: 'KEY_NOT_ALLOWED' });
    assert.equal(refused.context.namespace, 'other');
    file('release.namespaces', '*\n');
    assert.equal(await loadedPublic('release', 'other'), 'ec');
    file('release', makeKey('ed25519').privatePem);
    assert.equal(await loadedPublic('release', 'other'), 'ed25519', 'a rotated key applies to the next use');
  });

  it('a key that is not a PEM private key, or one too weak to sign with: KEY_INVALID, naming its file', async () => {
    file('garbled.namespaces', 'team\n');
    file('garbled', 'PEM of garbled');
    const garbled = await rejectsWith(load('garbled', 'team'), { code: 'InvalidArgument', reason: 'KEY_INVALID' });
    assert.equal(garbled.context.file, join(dir, 'garbled'));
    file('garbled', release.publicPem);
    await rejectsWith(load('garbled', 'team'), { code: 'InvalidArgument', reason: 'KEY_INVALID' });
    file('garbled', generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey.export({ type: 'pkcs8', format: 'pem' }) as string);
    await rejectsWith(load('garbled', 'team'), { code: 'InvalidArgument', reason: 'KEY_INVALID' });
  });

  it('at start, names each key that signs for no namespace, whose scope file does not parse, or that cannot sign', () => {
    const keys = mkdtempSync(join(tmpdir(), 'spoke-keys-'));
    try {
      const pem = release.privatePem;
      for (const [name, text] of [['open', pem], ['open.namespaces', '*\n'], ['team', pem], ['team.namespaces', 'team\n'], ['bare', pem], ['typo', pem], ['typo.namespaces', 'Team\n'], ['public', release.publicPem], ['public.namespaces', 'team\n']]) writeFileSync(join(keys, name!), text!);
      mkdirSync(join(keys, '..2026_12_06')); // a mounted Secret's own entries
      const warnings = signingKeyWarnings(keys);
      assert.equal(warnings.length, 3, warnings.join('\n'));
      assert.match(warnings[0]!, /^signing key bare has no bare\.namespaces/);
      assert.match(warnings[1]!, /^signing key public is not an unencrypted PEM private key/);
      assert.match(warnings[2]!, /^signing key typo: .*typo\.namespaces:1/);
      assert.deepEqual(signingKeyWarnings(join(keys, 'absent')), []);
    } finally {
      rmSync(keys, { recursive: true, force: true });
    }
  });

  it('a malformed or oversized scope file: OPTION_INVALID, with its line; the key is not read', async () => {
    file('typo', 'PEM of typo');
    file('typo.namespaces', 'team\nTeam B\n');
    const bad = await rejectsWith(load('typo', 'team'), { code: 'InvalidArgument', reason: 'OPTION_INVALID' });
    assert.deepEqual([bad.context.file, bad.context.line], [join(dir, 'typo.namespaces'), 2]);
    file('typo.namespaces', `${'team\n'.repeat(16 * 1024 + 1)}`);
    await rejectsWith(load('typo', 'team'), { code: 'InvalidArgument', reason: 'OPTION_INVALID' });
  });
});

describe('--ca-file', () => {
  const reference = `127.0.0.1:1/t/p@sha256:${'a'.repeat(64)}`;
  const policy = file('ca-policy.yaml', ['apiVersion: spoke.dev/v1alpha1', 'kind: NodeProfilePolicy', 'rules:', '  - scope: 127.0.0.1:1/t', '    kinds: [seccomp]', '    unsigned: true', ''].join('\n'));
  // A bundle cut short, or with a broken block before good ones: the TLS layer would trust only
  // the certificates before the break.
  const cut = file('cut.pem', `${rootCertificates[0]}\n${rootCertificates[1]!.slice(0, 200)}`);
  const brokenFirst = file('broken-first.pem', `-----BEGIN CERTIFICATE-----\nMIIB\n${rootCertificates[0]}\n`);
  const good = file('good.pem', `${rootCertificates[0]}\n${rootCertificates[1]}\n`);
  for (const [name, args] of [
    ['verify', (f: string) => ['verify', reference, '--ca-file', f, '--config', '/dev/null', '--policy', policy]],
    ['pull', (f: string) => ['pull', reference, '--kind', 'seccomp', '--ca-file', f, '--config', '/dev/null', '--policy', policy, '--store', join(dir, 'store')]],
    ['inspect', (f: string) => ['inspect', reference, '--ca-file', f]],
  ] as const) {
    it(`${name}: a bundle cut short or with a broken block before good ones is refused (OPTION_INVALID); a good one is used`, async () => {
      for (const bundle of [cut, brokenFirst]) {
        const r = await spoke(args(bundle));
        assert.equal(r.code, 1, r.stderr);
        assert.match(r.stderr, /\(reason OPTION_INVALID\)/);
      }
      // Taken: the command goes on to the registry, which nothing answers for.
      assert.match((await spoke(args(good))).stderr, /\(reason TRANSPORT\)/);
    });
  }
});
