// loadKubeConfig's errors: a YAML parser's message quotes the lines around its fault, and a
// kubeconfig's lines hold bearer tokens and client keys (docs/security-model.md#bounded-everything);
// credential steps it refuses at load (docs/binding.md#kubeconfig-and-credentials).

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { loadKubeConfig } from '../../../src/controller/kube.js';
import { SpokeError } from '../../../src/core/errors.js';

describe('loadKubeConfig', () => {
  const dir = mkdtempSync(join(tmpdir(), 'spoke-kubeconfig-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('a malformed file is refused by its place, without quoting it', () => {
    const file = join(dir, 'broken.yaml');
    writeFileSync(file, 'apiVersion: v1\nkind: Config\nusers:\n- name: u\n  user:\n    token: KUBETOKENSECRET\n    client-key-data: KEYDATASECRET\n  bad: [unclosed\nclusters: []\n');
    assert.throws(
      () => loadKubeConfig(file),
      (e: unknown) => {
        assert.ok(e instanceof SpokeError, String(e));
        assert.equal(e.reason, 'OPTION_INVALID');
        assert.doesNotMatch(e.message, /SECRET/);
        assert.match(e.message, new RegExp(`${file.replace(/[.]/g, '\\.')}:9:1: `));
        return true;
      },
    );
  });

  it('a reason that would quote the file (an alias, a tag) is not kept', () => {
    for (const [name, value] of [['alias', '*Hunter2Secret'], ['tag', '!S3cretPass x']]) {
      const file = join(dir, `${name}.yaml`);
      writeFileSync(file, `apiVersion: v1\nkind: Config\nusers:\n- name: u\n  user:\n    password: ${value}\nclusters: []\n`);
      assert.throws(() => loadKubeConfig(file), (e: unknown) => e instanceof SpokeError && e.reason === 'OPTION_INVALID' && !/Secret|S3cret/.test(e.message) && e.message.includes(`${name}.yaml:`), name);
    }
  });

  it("client-node's word on a missing member is kept; it quotes no value", () => {
    const file = join(dir, 'nameless.yaml');
    writeFileSync(file, 'apiVersion: v1\nkind: Config\nusers:\n- user:\n    token: KUBETOKENSECRET\nclusters: []\n');
    assert.throws(() => loadKubeConfig(file), (e: unknown) => e instanceof SpokeError && e.reason === 'OPTION_INVALID' && e.message.endsWith('users[0].name is missing') && !e.message.includes('SECRET'));
  });

  // client-node runs these auth-providers' command with execSync, which would stop the
  // controller's event loop while it runs (src/controller/kube-credentials.ts).
  it('a current user with the gcp or azure auth-provider is refused; another user with one is left alone', () => {
    for (const provider of ['gcp', 'azure']) {
      const file = join(dir, `${provider}.yaml`);
      const users = [
        { name: 'blocking', user: { 'auth-provider': { name: provider, config: { 'cmd-path': '/bin/sleep', 'cmd-args': '600' } } } },
        { name: 'token', user: { token: 't' } },
      ];
      const config = (user: string) => JSON.stringify({ apiVersion: 'v1', kind: 'Config', clusters: [{ name: 'c', cluster: { server: 'https://127.0.0.1:6443' } }], users, contexts: [{ name: 'c', context: { cluster: 'c', user } }], 'current-context': 'c' });
      writeFileSync(file, config('blocking'));
      assert.throws(() => loadKubeConfig(file), (e: unknown) => e instanceof SpokeError && e.reason === 'OPTION_INVALID' && e.message.includes(`${provider} auth-provider`), provider);
      writeFileSync(file, config('token'));
      assert.equal(loadKubeConfig(file).getCurrentUser()?.name, 'token');
    }
  });

  it("the current user's exec plugin without a command, or with args that are not strings, is refused at load", () => {
    for (const [name, exec] of [['no-command', { apiVersion: 'client.authentication.k8s.io/v1' }], ['bad-args', { command: '/bin/true', args: [1] }]] as const) {
      const file = join(dir, `${name}.yaml`);
      writeFileSync(file, JSON.stringify({ apiVersion: 'v1', kind: 'Config', clusters: [{ name: 'c', cluster: { server: 'https://127.0.0.1:6443' } }], users: [{ name: 'u', user: { exec } }], contexts: [{ name: 'c', context: { cluster: 'c', user: 'u' } }], 'current-context': 'c' }));
      assert.throws(() => loadKubeConfig(file), (e: unknown) => e instanceof SpokeError && e.reason === 'OPTION_INVALID' && e.message.includes('exec plugin'), name);
    }
  });

  // client-go reads v1 and v1beta1 only, and fails a plugin that must be interactive where there
  // is no terminal, as spoke has none.
  it("the current user's exec plugin without a client.authentication.k8s.io/v1 or v1beta1 apiVersion, or with interactiveMode Always or one unknown, is refused at load", () => {
    const v1 = 'client.authentication.k8s.io/v1';
    const cases = [
      ['no-version', { command: '/bin/true' }],
      ['v1alpha1', { apiVersion: 'client.authentication.k8s.io/v1alpha1', command: '/bin/true' }],
      ['always', { apiVersion: v1, command: '/bin/true', interactiveMode: 'Always' }],
      ['unknown-mode', { apiVersion: v1, command: '/bin/true', interactiveMode: 'Sometimes' }],
    ] as const;
    for (const [name, exec] of cases) {
      const file = join(dir, `${name}.yaml`);
      writeFileSync(file, JSON.stringify({ apiVersion: 'v1', kind: 'Config', clusters: [{ name: 'c', cluster: { server: 'https://127.0.0.1:6443' } }], users: [{ name: 'u', user: { exec } }], contexts: [{ name: 'c', context: { cluster: 'c', user: 'u' } }], 'current-context': 'c' }));
      assert.throws(() => loadKubeConfig(file), (e: unknown) => e instanceof SpokeError && e.reason === 'OPTION_INVALID', name);
    }
  });

  // As client-node loads one file: its first entry of a name is used.
  it('a file naming a cluster twice loads, its first one used', () => {
    const file = join(dir, 'twice.yaml');
    const clusters = [{ name: 'c', cluster: { server: 'https://127.0.0.1:6443' } }, { name: 'c', cluster: { server: 'https://127.0.0.2:6443' } }];
    writeFileSync(file, JSON.stringify({ apiVersion: 'v1', kind: 'Config', clusters, users: [{ name: 'u', user: { token: 't' } }], contexts: [{ name: 'c', context: { cluster: 'c', user: 'u' } }], 'current-context': 'c' }));
    assert.equal(loadKubeConfig(file).getCurrentCluster()?.server, 'https://127.0.0.1:6443');
  });

  it('a missing file names the file', () => {
    assert.throws(() => loadKubeConfig(join(dir, 'absent.yaml')), (e: unknown) => e instanceof SpokeError && e.reason === 'OPTION_INVALID' && e.message.includes('absent.yaml'));
  });
});
