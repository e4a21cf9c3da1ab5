// loadKubeConfig's errors: a YAML parser's message quotes the lines around its fault, and a
// kubeconfig's lines hold bearer tokens and client keys (docs/security-model.md#bounded-everything).

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

  it('a missing file names the file', () => {
    assert.throws(() => loadKubeConfig(join(dir, 'absent.yaml')), (e: unknown) => e instanceof SpokeError && e.reason === 'OPTION_INVALID' && e.message.includes('absent.yaml'));
  });
});
