// loadKubeConfig's errors: a YAML parser's message quotes the lines around its fault, and a
// kubeconfig's lines hold bearer tokens and client keys (docs/security-model.md#bounded-everything);
// credential steps it refuses at load (docs/binding.md#kubeconfig-and-credentials).

import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
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

  // client-go's exec authenticator steps aside for a user with a credential of its own, so its
  // plugin is never run, and one spoke could not run is no reason to refuse the kubeconfig.
  it("a user with a token or client certificate of its own: its exec plugin, never run, is not checked (interactiveMode Always, v1alpha1, no command)", async () => {
    const exec = { apiVersion: 'client.authentication.k8s.io/v1alpha1', interactiveMode: 'Always' };
    for (const [name, own] of [['token', { token: 'own' }], ['cert', { 'client-certificate-data': 'Y2VydA==', 'client-key-data': 'a2V5' }]] as const) {
      const file = join(dir, `own-${name}.yaml`);
      writeFileSync(file, JSON.stringify({ apiVersion: 'v1', kind: 'Config', clusters: [{ name: 'c', cluster: { server: 'https://127.0.0.1:6443' } }], users: [{ name: 'u', user: { ...own, exec } }], contexts: [{ name: 'c', context: { cluster: 'c', user: 'u' } }], 'current-context': 'c' }));
      let kc;
      try {
        kc = loadKubeConfig(file);
      } catch (e) {
        assert.fail(`${name}: refused: ${String(e)}`);
      }
      const opts: { headers?: Record<string, string> } = {};
      await kc.applyToHTTPSOptions(opts);
      if (name === 'token') assert.equal(opts.headers?.['Authorization'], 'Bearer own');
    }
  });

  // As client-go reads one file (its v1 conversion refuses a list naming an entry twice), where
  // client-node would take the first entry (docs/binding.md#kubeconfig-and-credentials).
  it('a file defining a cluster, user or context name twice is refused, naming the file, the kind and the name', () => {
    const clusters = [{ name: 'c', cluster: { server: 'https://127.0.0.1:6443' } }];
    const users = [{ name: 'u', user: { token: 't' } }];
    const contexts = [{ name: 'ctx', context: { cluster: 'c', user: 'u' } }];
    const cases = [
      ['cluster', 'c', { clusters: [...clusters, { name: 'c', cluster: { server: 'https://127.0.0.2:6443' } }] }],
      ['user', 'u', { users: [...users, { name: 'u', user: { token: 'other' } }] }],
      ['context', 'ctx', { contexts: [...contexts, { name: 'ctx', context: { cluster: 'c', user: 'u' } }] }],
    ] as const;
    for (const [kind, name, twice] of cases) {
      const file = join(dir, `twice-${kind}.yaml`);
      writeFileSync(file, JSON.stringify({ apiVersion: 'v1', kind: 'Config', clusters, users, contexts, 'current-context': 'ctx', ...twice }));
      assert.throws(
        () => loadKubeConfig(file),
        (e: unknown) => {
          assert.ok(e instanceof SpokeError, `${kind}: ${String(e)}`);
          assert.deepEqual([e.reason, e.context.file, e.context.kind, e.context.name], ['OPTION_INVALID', file, kind, name], kind);
          return true;
        },
      );
    }
  });

  it('a missing file names the file', () => {
    assert.throws(() => loadKubeConfig(join(dir, 'absent.yaml')), (e: unknown) => e instanceof SpokeError && e.reason === 'OPTION_INVALID' && e.message.includes('absent.yaml'));
  });
});

/** `fn` with these environment variables (undefined: unset), restored after. */
function withEnv<T>(vars: Record<string, string | undefined>, fn: () => T): T {
  const before = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]));
  const set = (v: Record<string, string | undefined>) => {
    for (const [k, x] of Object.entries(v)) {
      if (x === undefined) delete process.env[k];
      else process.env[k] = x;
    }
  };
  set(vars);
  try {
    return fn();
  } finally {
    set(before);
  }
}

// As client-go's loading rules (clientcmd loader.go), which kubectl follows
// (docs/binding.md#kubeconfig-and-credentials).
describe('loadKubeConfig merges the files $KUBECONFIG lists as client-go does', () => {
  const dir = mkdtempSync(join(tmpdir(), 'spoke-kubeconfig-list-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const KEEP_OUT = { HOME: join(dir, 'home'), KUBERNETES_SERVICE_HOST: undefined };

  /** A kubeconfig at dir/name/kubeconfig: cluster `c` at `server`, user `u`, context `ctx`, current-context `current`. */
  const write = (name: string, o: { server: string; current?: string; cluster?: Record<string, unknown>; user?: Record<string, unknown> }): string => {
    mkdirSync(join(dir, name), { recursive: true });
    const file = join(dir, name, 'kubeconfig');
    writeFileSync(
      file,
      JSON.stringify({
        apiVersion: 'v1',
        kind: 'Config',
        clusters: [{ name: 'c', cluster: { server: o.server, ...o.cluster } }, { name: `c-${name}`, cluster: { server: o.server } }],
        users: [{ name: 'u', user: { token: name, ...o.user } }],
        contexts: [{ name: 'ctx', context: { cluster: 'c', user: 'u' } }, { name: `ctx-${name}`, context: { cluster: `c-${name}`, user: 'u' } }],
        ...(o.current !== undefined ? { 'current-context': o.current } : {}),
      }),
    );
    return file;
  };
  const a = write('a', { server: 'https://a.example:6443', current: 'ctx-a' });
  const b = write('b', { server: 'https://b.example:6443', current: 'ctx-b' });
  const unset = write('unset', { server: 'https://unset.example:6443' });
  const loadList = (...files: string[]) => withEnv({ ...KEEP_OUT, KUBECONFIG: files.join(delimiter) }, () => loadKubeConfig());
  /** The list loaded, which it must be. */
  const load = (...files: string[]) => {
    try {
      return loadList(...files);
    } catch (e) {
      assert.fail(`KUBECONFIG=${files.join(delimiter)} is refused: ${String(e)}`);
    }
  };

  it('the first file that sets current-context wins', () => {
    assert.equal(load(a, b).getCurrentContext(), 'ctx-a');
    assert.equal(load(b, a).getCurrentContext(), 'ctx-b');
    assert.equal(load(unset, b).getCurrentContext(), 'ctx-b');
  });

  it('a cluster, user or context defined in two files: the first definition is used, the later one ignored', () => {
    const kc = load(a, b);
    kc.setCurrentContext('ctx');
    assert.equal(kc.getCurrentCluster()?.server, 'https://a.example:6443');
    assert.equal(kc.getCurrentUser()?.token, 'a');
    assert.deepEqual(kc.contexts.map((c) => c.name).sort(), ['ctx', 'ctx-a', 'ctx-b']);
    const ba = load(b, a);
    ba.setCurrentContext('ctx');
    assert.equal(ba.getCurrentUser()?.token, 'b');
  });

  // client-go fails the list on a file it cannot load, whichever place it has in it.
  it('a listed file defining a name twice is refused, naming it, though an earlier file defines that name', () => {
    const twice = join(dir, 'twice', 'kubeconfig');
    mkdirSync(join(dir, 'twice'), { recursive: true });
    const context = { name: 'ctx', context: { cluster: 'c', user: 'u' } };
    writeFileSync(twice, JSON.stringify({ apiVersion: 'v1', kind: 'Config', clusters: [{ name: 'c', cluster: { server: 'https://twice.example:6443' } }], users: [{ name: 'u', user: { token: 'twice' } }], contexts: [context, context] }));
    assert.throws(() => loadList(a, twice), (e: unknown) => e instanceof SpokeError && e.reason === 'OPTION_INVALID' && e.context.file === twice && e.context.kind === 'context' && e.context.name === 'ctx');
  });

  it('a file listed twice is read once, and empty names are skipped', () => {
    for (const list of [[a, a], [a, '', a], ['', a, '']]) assert.equal(load(...list).getCurrentUser()?.token, 'a', list.join(delimiter));
  });

  it('a listed file that is not there is skipped; one that cannot be read otherwise is refused, naming it', () => {
    assert.equal(load(join(dir, 'absent'), b).getCurrentContext(), 'ctx-b');
    const notAFile = join(dir, 'a');
    assert.throws(() => loadList(notAFile, b), (e: unknown) => e instanceof SpokeError && e.reason === 'OPTION_INVALID' && e.context.file === notAFile);
  });

  // client-node reads every user's token-file as it loads the file: a missing one is the file's
  // fault, never a sign that the file is not there, whose next one would then name another cluster.
  it("a listed file that is there but names a token-file that is not is refused, naming it, not skipped for the next file's cluster", () => {
    const withTokenFile = write('token-file', { server: 'https://prod.example:6443', current: 'ctx-token-file', user: { token: undefined, 'token-file': join(dir, 'token-file', 'absent-token') } });
    assert.throws(() => loadList(withTokenFile, b), (e: unknown) => e instanceof SpokeError && e.reason === 'OPTION_INVALID' && e.context.file === withTokenFile);
  });

  // Not even ~/.kube/config, as client-go reads none with $KUBECONFIG set: the in-cluster
  // service account, and outside a Pod nothing to call as.
  it('a list naming no file that is there (":", only missing files) falls back to the in-cluster service account, not to ~/.kube/config', { skip: existsSync('/var/run/secrets/kubernetes.io/serviceaccount/token') }, () => {
    mkdirSync(join(KEEP_OUT.HOME, '.kube'), { recursive: true });
    writeFileSync(join(KEEP_OUT.HOME, '.kube', 'config'), JSON.stringify({ apiVersion: 'v1', kind: 'Config', clusters: [], users: [], contexts: [] }));
    for (const list of [['', ''], ['', '', ''], [join(dir, 'absent')]]) {
      assert.throws(() => loadList(...list), (e: unknown) => e instanceof SpokeError && e.reason === 'OPTION_INVALID' && e.context.file === undefined, list.join(delimiter));
    }
    // Without $KUBECONFIG, or with it empty, ~/.kube/config.
    for (const env of [undefined, '']) assert.deepEqual(withEnv({ ...KEEP_OUT, KUBECONFIG: env }, () => loadKubeConfig().contexts), [], String(env));
  });

  it("each file's relative paths resolve against its own directory", () => {
    const rel = write('rel', { server: 'https://rel.example:6443', current: 'ctx', cluster: { 'certificate-authority': 'ca.pem' } });
    const relUser = write('rel-user', { server: 'https://x.example:6443', current: 'ctx-rel-user', user: { 'client-certificate': 'crt.pem', 'client-key': 'key.pem' } });
    const kc = load(relUser, rel);
    assert.equal(kc.getCurrentUser()?.certFile, join(dir, 'rel-user', 'crt.pem'));
    kc.setCurrentContext('ctx-rel');
    assert.equal(kc.getCurrentCluster()?.caFile, undefined, 'c-rel has no CA');
    const kc2 = load(rel, relUser);
    assert.equal(kc2.getCurrentCluster()?.caFile, join(dir, 'rel', 'ca.pem'));
  });
});
