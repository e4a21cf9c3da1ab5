import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import type { ErrorReason } from '../../../src/core/errors.js';
import { throwsWith } from '../../helpers/assert.js';
import { finishesInChild } from '../../helpers/hang.js';
import { loadAuthFile, loadCredentials, normalizeAuthKey, parseAuthFile, resolveAuthFile } from '../../../src/registry/credentials.js';

const b64 = (s: string) => Buffer.from(s).toString('base64');

function refuses(fn: () => unknown, reason: ErrorReason = 'CREDENTIALS_INVALID', secret?: string): void {
  const e = throwsWith(fn, { code: 'InvalidArgument', reason });
  if (secret) assert.ok(!(e.message + JSON.stringify(e.context)).includes(secret));
}

describe('auth files', () => {
  it('reads auth, username/password, identitytoken and registrytoken entries', () => {
    const src = parseAuthFile(
      JSON.stringify({
        auths: {
          'registry.example.com': { auth: b64('alice:pa:ss') },
          'https://index.docker.io/v1/': { auth: b64('bob:pw') },
          'Mirror.Internal:5000': { username: 'carol', password: 'x' },
          'quay.io': { identitytoken: 'refresh' },
          'ghcr.io': { registrytoken: 'bearer' },
          'empty.example.com': {},
        },
        credsStore: 'desktop',
      }),
      'auth.json',
    );
    assert.deepEqual(src.lookup('registry.example.com'), { kind: 'basic', username: 'alice', password: 'pa:ss' });
    assert.deepEqual(src.lookup('docker.io'), { kind: 'basic', username: 'bob', password: 'pw' });
    assert.deepEqual(src.lookup('mirror.internal:5000'), { kind: 'basic', username: 'carol', password: 'x' });
    assert.deepEqual(src.lookup('quay.io'), { kind: 'identityToken', token: 'refresh' });
    assert.deepEqual(src.lookup('ghcr.io'), { kind: 'registryToken', token: 'bearer' });
    assert.equal(src.lookup('empty.example.com'), undefined);
    assert.equal(src.lookup('mirror.internal'), undefined, 'port is part of the key');
    assert.equal(src.lookup('other.example.com'), undefined);
  });

  it('prefers the most specific repository-scoped entry', () => {
    const src = parseAuthFile(
      JSON.stringify({
        auths: {
          'r.example.com': { auth: b64('host:1') },
          'r.example.com/team': { auth: b64('team:2') },
          'r.example.com/team/profiles/x': { auth: b64('repo:3') },
        },
      }),
      'f',
    );
    assert.equal((src.lookup('r.example.com', 'team/profiles/x') as { username: string }).username, 'repo');
    assert.equal((src.lookup('r.example.com', 'team/profiles/y') as { username: string }).username, 'team');
    assert.equal((src.lookup('r.example.com', 'teamx/a') as { username: string }).username, 'host');
    assert.equal((src.lookup('r.example.com') as { username: string }).username, 'host');
  });

  it('refuses malformed files without echoing secrets', () => {
    refuses(() => parseAuthFile('{', 'f'));
    refuses(() => parseAuthFile('[]', 'f'));
    refuses(() => parseAuthFile('{"auths":[]}', 'f'));
    refuses(() => parseAuthFile(JSON.stringify({ auths: { h: { auth: '!!!' } } }), 'f'));
    refuses(() => parseAuthFile(JSON.stringify({ auths: { h: { auth: b64('nocolon-secret') } } }), 'f'), undefined, 'nocolon-secret');
    refuses(() => parseAuthFile(JSON.stringify({ auths: { h: { username: 'u' } } }), 'f'));
    refuses(() => parseAuthFile(JSON.stringify({ auths: { h: { password: 'p\r\nX-Evil: 1' } } }), 'f'));
    refuses(() => parseAuthFile(JSON.stringify({ auths: { h: { username: 'u', password: 'p\r\nX: 1' } } }), 'f'), undefined, 'X: 1');
    refuses(() => parseAuthFile(JSON.stringify({ auths: { h: { registrytoken: 5 } } }), 'f'));
    // A bearer token goes into the header as is: beyond printable ASCII it cannot (undici refuses it at send).
    refuses(() => parseAuthFile(JSON.stringify({ auths: { h: { registrytoken: 'tok\u0100en-secret' } } }), 'f'), undefined, 'en-secret');
    refuses(() => parseAuthFile(JSON.stringify({ auths: { h: { registrytoken: 'tok en' } } }), 'f'));
    // Not JSON: V8's message quotes the text around the fault, here a password.
    refuses(() => parseAuthFile('{"auths": {"h": {"username": "u", "password": s3cr3tP4ssw0rd}}}', 'f'), undefined, 's3cr3t');
    assert.equal(parseAuthFile('{}', 'f').lookup('h'), undefined);
  });

  it('normalizes keys', () => {
    assert.equal(normalizeAuthKey('https://Registry.Example.com/v2/'), 'registry.example.com');
    assert.equal(normalizeAuthKey('index.docker.io'), 'docker.io');
    assert.equal(normalizeAuthKey('http://h:5000/ns/repo/'), 'h:5000/ns/repo');
    // Without a scheme, /v2 is a namespace of that name (containers/image strips the API path
    // from URL-style keys only): its credentials are not the whole host's.
    assert.equal(normalizeAuthKey('reg.example/v2'), 'reg.example/v2');
    assert.equal(normalizeAuthKey('reg.example/team/v1/'), 'reg.example/team/v1');
    assert.equal(normalizeAuthKey('h//'), 'h');
    assert.equal(normalizeAuthKey('/'), '');
  });

  it('normalizes a key of a million slashes in one pass', () => {
    // A backtracking /\/+$/ takes hours on the first key; an auth file's 1 MiB allows it.
    const out = finishesInChild(new URL('../../../src/registry/credentials.js', import.meta.url), `
      const inner = 'h' + '/'.repeat(1_000_000) + 'x';
      process.stdout.write(JSON.stringify([m.normalizeAuthKey(inner) === inner, m.normalizeAuthKey('h' + '/'.repeat(1_000_000))]));`);
    assert.deepEqual(JSON.parse(out), [true, 'h']);
  });

  it('resolves --auth-file, then REGISTRY_AUTH_FILE, then docker config', () => {
    const dir = mkdtempSync(join(tmpdir(), 'spoke-auth-'));
    try {
      assert.deepEqual(resolveAuthFile({ authFile: '/x.json', env: { REGISTRY_AUTH_FILE: '/y.json' } }), { path: '/x.json', required: true });
      assert.deepEqual(resolveAuthFile({ env: { REGISTRY_AUTH_FILE: '/y.json' } }), { path: '/y.json', required: true });
      assert.deepEqual(resolveAuthFile({ env: { DOCKER_CONFIG: dir } }), { path: join(dir, 'config.json'), required: false });
      assert.deepEqual(resolveAuthFile({ env: {}, home: dir }), { path: join(dir, '.docker/config.json'), required: false });
      // A missing optional docker config is no credentials; a missing explicit file is an error.
      assert.equal(loadCredentials({ env: {}, home: dir }).lookup('h'), undefined);
      refuses(() => loadCredentials({ authFile: join(dir, 'missing.json'), env: {} }), 'FILE_UNREADABLE');
      const f = join(dir, 'auth.json');
      writeFileSync(f, JSON.stringify({ auths: { h: { auth: b64('u:p') } } }));
      assert.deepEqual(loadAuthFile(f).lookup('h'), { kind: 'basic', username: 'u', password: 'p' });
      assert.deepEqual(loadCredentials({ env: { REGISTRY_AUTH_FILE: f } }).lookup('h'), { kind: 'basic', username: 'u', password: 'p' });
      writeFileSync(f, Buffer.alloc(1024 * 1024 + 1, 32));
      refuses(() => loadAuthFile(f), 'SIZE_LIMIT');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
