import { strict as assert } from 'node:assert';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { defaultBaselinePath, DEFAULT_CONFIG_FILE, loadNodeConfig } from '../../../src/config/index.js';
import { OCI_ARCHITECTURES } from '../../../src/core/constants.js';
import type { SpokeError } from '../../../src/core/errors.js';
import { spokeError, throwsWith } from '../../helpers/assert.js';
import { memFs } from '../policy/fixtures.js';

const FILE = '/etc/spoke/config.yaml';

function loadText(text: string, overrides = {}) {
  return loadNodeConfig(FILE, overrides, { readFile: memFs({ [FILE]: text }).readFile, cwd: '/work' });
}

/** Loading `text` fails at `<FILE>:<line>: <path>: ...` (the documented message form). */
function assertConfigError(text: string, line: number, path: string) {
  const e = throwsWith(() => loadText(text), { code: 'InvalidArgument', reason: 'CONFIG_INVALID' });
  assert.ok(e.message.startsWith(`${FILE}:${line}: ${path}: `), e.message);
  assert.equal(e.context.line, line);
  assert.equal(e.context.path, path);
}

/** An override (a flag) refused, naming the setting. */
const overrideRefused = (key: string) => (e: unknown) => spokeError({ code: 'InvalidArgument', reason: 'CONFIG_INVALID' })(e) && (e as SpokeError).context.path === key;

describe('loadNodeConfig', () => {
  it('a missing default file means defaults', () => {
    const fs = memFs();
    const c = loadNodeConfig(undefined, {}, { readFile: fs.readFile });
    assert.deepEqual(fs.reads, [DEFAULT_CONFIG_FILE]);
    assert.deepEqual(c, {
      listen: '/run/spoke/spoke.sock',
      upstream: '/run/containerd/containerd.sock',
      storeDir: '/var/lib/spoke',
      seccompRoot: '/var/lib/kubelet/seccomp',
      baseline: defaultBaselinePath(),
      baselines: undefined,
      policy: '/etc/spoke/policy.yaml',
      metrics: '',
      logLevel: 'info',
      annotations: false,
      runtimeHandlers: ['', 'runc', 'crun'],
      authFile: undefined,
      caFile: undefined,
      runtimeDefault: undefined,
      recordingKey: undefined,
      pullTimeout: 120_000,
      gc: { intervalMs: 600_000, minAgeMs: 3_600_000, maxStoreBytes: undefined },
    });
    assert.ok(Object.isFrozen(c));
  });

  it('the default baseline is policy/seccomp-baseline.json of this package', () => {
    const root = fileURLToPath(new URL('../../../../', import.meta.url));
    assert.equal(defaultBaselinePath(), `${root}policy/seccomp-baseline.json`);
    assert.ok(existsSync(`${root}package.json`));
  });

  it('a named file that is missing is an error', () => {
    const e = throwsWith(() => loadNodeConfig('/nope.yaml', {}, { readFile: memFs().readFile }), { code: 'InvalidArgument', reason: 'FILE_UNREADABLE' });
    assert.equal(e.context.file, '/nope.yaml');
  });

  it('reads every key; relative paths resolve against the file, override paths against cwd', () => {
    const c = loadText(
      [
        'listen: /run/s.sock',
        'upstream: /run/crio/crio.sock',
        'storeDir: store',
        'seccompRoot: /var/lib/kubelet/seccomp',
        'baseline: ./baseline.json',
        'policy: /etc/spoke/p.yaml',
        'metrics: 127.0.0.1:9090',
        'logLevel: debug',
        'annotations: true',
        'runtimeHandlers: ["", runc, nvidia]',
        'authFile: /etc/spoke/auth.json',
        'caFile: certs/corp-ca.pem',
        'runtimeDefault: runtime-default.json',
        'recordingKey: keys/recording',
        '',
      ].join('\n'),
      { storeDir: 'here', logLevel: 'warn', metrics: undefined },
    );
    assert.equal(c.listen, '/run/s.sock');
    assert.equal(c.upstream, '/run/crio/crio.sock');
    assert.equal(c.storeDir, '/work/here');
    assert.equal(c.baseline, '/etc/spoke/baseline.json');
    assert.equal(c.policy, '/etc/spoke/p.yaml');
    assert.equal(c.metrics, '127.0.0.1:9090');
    assert.equal(c.logLevel, 'warn');
    assert.equal(c.annotations, true);
    assert.deepEqual(c.runtimeHandlers, ['', 'runc', 'nvidia']);
    assert.equal(c.authFile, '/etc/spoke/auth.json');
    assert.equal(c.caFile, '/etc/spoke/certs/corp-ca.pem');
    assert.equal(c.runtimeDefault, '/etc/spoke/runtime-default.json');
    assert.equal(c.recordingKey, '/etc/spoke/keys/recording');
  });

  it('an empty file, and an empty metrics value, are fine', () => {
    assert.equal(loadText('').listen, '/run/spoke/spoke.sock');
    assert.equal(loadText('# nothing\n').listen, '/run/spoke/spoke.sock');
    assert.equal(loadText('metrics:\n').metrics, '');
    assert.equal(loadText("metrics: ''\n").metrics, '');
    assert.equal(loadText("metrics: '[::]:9090'\n").metrics, '[::]:9090');
  });

  it('pullTimeout is a duration between 1s and 60m, kept in milliseconds', () => {
    assert.equal(loadText('pullTimeout: 90s\n').pullTimeout, 90_000);
    assert.equal(loadText('pullTimeout: 2m\n').pullTimeout, 120_000);
    assert.equal(loadText('pullTimeout: 1500ms\n').pullTimeout, 1_500);
    assert.equal(loadText('', { pullTimeout: 5_000 }).pullTimeout, 5_000);
    assertConfigError('pullTimeout: 0s\n', 1, 'pullTimeout');
    assertConfigError('pullTimeout: 61m\n', 1, 'pullTimeout');
    assertConfigError('pullTimeout: 2 minutes\n', 1, 'pullTimeout');
    assert.throws(() => loadText('', { pullTimeout: 10 }), overrideRefused('pullTimeout'));
  });

  it('caFile is a path like authFile: an override resolves against cwd; a value that is not a path names the file, line and key', () => {
    assert.equal(loadText('caFile: /etc/ssl/corp.pem\n').caFile, '/etc/ssl/corp.pem');
    assert.equal(loadText('', { caFile: 'corp.pem' }).caFile, '/work/corp.pem');
    assertConfigError("caFile: ''\n", 1, 'caFile');
    assertConfigError('listen: /a\ncaFile: [corp.pem]\n', 2, 'caFile');
    assertConfigError('caFile: 3\n', 1, 'caFile');
    assertConfigError('cafile: /etc/ssl/corp.pem\n', 1, 'cafile');
    assert.throws(() => loadText('', { caFile: '' }), overrideRefused('caFile'));
  });

  it('errors name the line and the key', () => {
    assertConfigError('listen: /a\nstoreDri: /b\n', 2, 'storeDri');
    assertConfigError('logLevel: verbose\n', 1, 'logLevel');
    assertConfigError('\n\nannotations: yes\n', 3, 'annotations');
    assertConfigError('metrics: 9090\n', 1, 'metrics');
    assertConfigError('metrics: localhost\n', 1, 'metrics');
    assertConfigError('listen: [a]\n', 1, 'listen');
    assertConfigError('listen: /a\nlisten: /b\n', 2, '(yaml)');
    assertConfigError('- listen\n', 1, '(document)');
  });

  it('a runtime handler listed twice: the second one, "__proto__" too (ajv\'s own check keys a plain object by the entry, and misses it)', () => {
    assertConfigError('runtimeHandlers:\n  - runc\n  - crun\n  - runc\n', 4, 'runtimeHandlers[2]');
    assertConfigError('runtimeHandlers:\n  - "__proto__"\n  - "__proto__"\n', 3, 'runtimeHandlers[1]');
  });

  it('a store inside the seccomp root (or the root itself) is refused, from the file or a flag: pods could name its raw blobs as Localhost profiles', () => {
    for (const storeDir of ['/var/lib/kubelet/seccomp', '/var/lib/kubelet/seccomp/spoke-store', '/var/lib/kubelet/seccomp/a/b']) {
      const e = throwsWith(() => loadText(`storeDir: ${storeDir}\n`), { code: 'InvalidArgument', reason: 'CONFIG_INVALID' });
      assert.equal(e.context.path, 'storeDir', e.message);
      assert.throws(() => loadText('', { storeDir }), overrideRefused('storeDir'));
    }
    assert.throws(() => loadText('storeDir: /srv/seccomp/store\n', { seccompRoot: '/srv/seccomp' }), (e: unknown) => spokeError({ code: 'InvalidArgument', reason: 'CONFIG_INVALID' })(e));
    // Through a symlink into it (the store itself, or a directory above it): refused as well.
    const dir = mkdtempSync(join(tmpdir(), 'spoke-config-'));
    try {
      mkdirSync(join(dir, 'seccomp', 'inner'), { recursive: true });
      symlinkSync(join(dir, 'seccomp', 'inner'), join(dir, 'store'));
      symlinkSync(join(dir, 'seccomp'), join(dir, 'up'));
      for (const storeDir of [join(dir, 'store'), join(dir, 'up', 'new-store'), join(dir, 'store', 'not', 'made', 'yet')]) {
        assert.throws(() => loadText('', { storeDir, seccompRoot: join(dir, 'seccomp') }), overrideRefused('storeDir'), storeDir);
      }
      assert.equal(loadText('', { storeDir: join(dir, 'store-beside'), seccompRoot: join(dir, 'up') }).storeDir, join(dir, 'store-beside'));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    // Beside it, or above it: fine.
    assert.equal(loadText('storeDir: /var/lib/kubelet/seccomp-store\n').storeDir, '/var/lib/kubelet/seccomp-store');
    assert.equal(loadText('storeDir: /var/lib\n').storeDir, '/var/lib');
  });

  it('a store inside the seccomp root, from the file, is refused at the line of the setting at fault', () => {
    assertConfigError('listen: /a.sock\nstoreDir: /var/lib/kubelet/seccomp/store\n', 2, 'storeDir');
    // The default store under a seccomp root the file moved above it: the root is the setting at fault.
    assertConfigError('logLevel: info\nseccompRoot: /var/lib\n', 2, 'seccompRoot');
  });

  it('a store inside the seccomp root because of a flag is refused naming the flag at fault: --seccomp-root moved over the store, or --store-dir put it there', () => {
    assert.throws(() => loadText('storeDir: /var/lib/spoke\n', { seccompRoot: '/var/lib' }), overrideRefused('seccompRoot'));
    assert.throws(() => loadText('', { seccompRoot: '/var/lib' }), overrideRefused('seccompRoot'));
    assert.throws(() => loadText('seccompRoot: /var/lib\n', { storeDir: '/var/lib/x' }), overrideRefused('storeDir'));
    assert.throws(() => loadText('', { storeDir: '/var/lib/x', seccompRoot: '/var/lib' }), overrideRefused('storeDir'));
  });

  it('bad overrides are refused', () => {
    assert.throws(() => loadText('', { logLevel: 'loud' as never }), overrideRefused('logLevel'));
    assert.throws(() => loadText('', { bogus: 1 } as never), overrideRefused('bogus'));
    assert.throws(() => loadText('', { listen: '' }), overrideRefused('listen'));
  });

  it('the schema decides for the file and for flags alike: NUL, a byte cap past 2^53, a path over 4096 characters', () => {
    assertConfigError('listen: "/run/a\\0b"\n', 1, 'listen');
    assertConfigError('gc:\n  maxStoreBytes: 9007199254740992\n', 2, 'gc.maxStoreBytes');
    assertConfigError(`logLevel: info\nstoreDir: /${'a'.repeat(5000)}\n`, 2, 'storeDir');
    // Bounded before its pattern runs (the pattern backtracks on long input).
    assertConfigError(`metrics: ${'a'.repeat(100_000)}\n`, 1, 'metrics');
    assert.throws(() => loadText('', { storeDir: `/${'a'.repeat(5000)}` }), overrideRefused('storeDir'));
  });

  it('baselines: architecture keys are the OCI architectures spoke knows, and must be strings', () => {
    const root = fileURLToPath(new URL('../../../../', import.meta.url));
    const schema = JSON.parse(readFileSync(`${root}policy/node-config.schema.json`, 'utf8'));
    assert.deepEqual([...schema.properties.baselines.propertyNames.enum].sort(), [...new Set(Object.values(OCI_ARCHITECTURES))].sort());
    assertConfigError('baselines:\n  amd64: /a.json\n  sparc: /b.json\n', 3, 'baselines.sparc');
  });

  it('gc: durations in s, m, h; keys left out keep the defaults (10m, 1h, no byte cap)', () => {
    assert.deepEqual(loadText('gc:\n  interval: 30s\n  minAge: 0s\n  maxStoreBytes: 1048576\n').gc, { intervalMs: 30_000, minAgeMs: 0, maxStoreBytes: 1_048_576 });
    assert.deepEqual(loadText('gc:\n  minAge: 2h\n').gc, { intervalMs: 600_000, minAgeMs: 7_200_000, maxStoreBytes: undefined });
    assert.deepEqual(loadText('gc: {interval: 1m}\n').gc, { intervalMs: 60_000, minAgeMs: 3_600_000, maxStoreBytes: undefined });
  });

  it('gc: bad values name the line and the key', () => {
    assertConfigError('logLevel: info\ngc:\n  interval: 10 minutes\n', 3, 'gc.interval');
    assertConfigError('gc:\n  interval: 0s\n', 2, 'gc.interval');
    // Longer than a timer can wait (2^31 - 1 ms): it would fire at once, and then gc would run every millisecond.
    assertConfigError('gc:\n  interval: 600h\n', 2, 'gc.interval');
    assertConfigError('gc:\n  minAge: -1h\n', 2, 'gc.minAge');
    assertConfigError('gc:\n  maxStoreBytes: 0\n', 2, 'gc.maxStoreBytes');
    assertConfigError('gc:\n  maxStoreBytes: 1GB\n', 2, 'gc.maxStoreBytes');
    assertConfigError('gc:\n  every: 1h\n', 2, 'gc.every');
    assertConfigError('gc: 1h\n', 1, 'gc');
  });
});
