import { strict as assert } from 'node:assert';
import { mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, describe, it } from 'node:test';
import { PolicyHolder } from '../../../src/config/index.js';
import type { Logger, LogLevel } from '../../../src/core/runtime.js';
import { decide, type Policy, type PublicKeySigner } from '../../../src/policy/index.js';
import { throwsWith } from '../../helpers/assert.js';
import { HEADER, pem, ref } from '../policy/fixtures.js';

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function setup() {
  const dir = mkdtempSync(join(tmpdir(), 'spoke-policy-'));
  dirs.push(dir);
  mkdirSync(join(dir, 'keys'));
  writeFileSync(join(dir, 'keys', 'k.pub'), pem('p256'));
  const file = join(dir, 'policy.yaml');
  return { dir, file };
}

const policyWith = (scope: string) => `${HEADER}signers:\n  k: { publicKey: keys/k.pub }\nrules:\n  - { scope: ${scope}, kinds: [seccomp], signedBy: [k] }\n`;

/** Replaces a file the way editors and ConfigMap updates do: write aside, rename over. */
function replace(file: string, text: string | Buffer) {
  writeFileSync(`${file}.tmp`, text);
  renameSync(`${file}.tmp`, file);
}

function recordingLogger() {
  const lines: { level: LogLevel; msg: string; fields?: Record<string, unknown> }[] = [];
  const logger: Logger = { log: (level, msg, fields) => lines.push({ level, msg, fields }) };
  return { logger, lines };
}

function nextReload(holder: { onReloadWaiters: ((p: Policy) => void)[] }, ms = 5000): Promise<Policy> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('no reload within timeout')), ms);
    holder.onReloadWaiters.push((p) => {
      clearTimeout(t);
      resolve(p);
    });
  });
}

/** A holder watching `file` (30 ms debounce), and the waiters nextReload() hands each reload to. */
function watchedHolder(file: string, logger?: Logger) {
  const waiters = { onReloadWaiters: [] as ((p: Policy) => void)[] };
  const holder = new PolicyHolder({ file, watch: true, debounceMs: 30, ...(logger ? { logger } : {}), onReload: (p) => waiters.onReloadWaiters.shift()?.(p) });
  return { holder, waiters };
}

describe('PolicyHolder', () => {
  it('refuses to start on a missing or invalid file, naming the line', () => {
    const { file } = setup();
    throwsWith(() => new PolicyHolder({ file }), { code: 'InvalidArgument', reason: 'FILE_UNREADABLE' });
    writeFileSync(file, `${HEADER}rules:\n  - { scope: r.io/x, kinds: [seccomp] }\n`);
    const e = throwsWith(() => new PolicyHolder({ file }), { code: 'InvalidArgument', reason: 'POLICY_INVALID' });
    assert.equal(e.message.split(': ')[0], `${file}:4`);
  });

  it('keeps the last good policy after a corrupt write, and takes the next good one', () => {
    const { file } = setup();
    writeFileSync(file, policyWith('r.io/a'));
    const { logger, lines } = recordingLogger();
    const reloaded: Policy[] = [];
    const holder = new PolicyHolder({ file, logger, onReload: (p) => reloaded.push(p) });
    const good = holder.current();
    assert.equal(decide(good, ref('r.io/a/x'), 'seccomp').allowed, true);

    writeFileSync(file, `${HEADER}rules:\n  - { scope: r.io/a, kinds: [seccomp], signedBy: [k] \n`);
    const bad = holder.reload();
    assert.equal(bad.ok, false);
    assert.ok(!bad.ok && bad.error.code === 'InvalidArgument');
    assert.equal(holder.current(), good);
    assert.ok(lines.some((l) => l.level === 'error' && /keeping the last good policy/.test(l.msg) && l.fields?.hash === good.hash));

    writeFileSync(file, Buffer.from([0xff, 0xfe, 0x00]));
    assert.equal(holder.reload().ok, false);
    assert.equal(holder.current(), good);
    assert.deepEqual(reloaded, []);
    // A missing key file does not keep the old key trusted: its signer becomes unavailable.
    rmSync(join(file, '..', 'keys', 'k.pub'));
    writeFileSync(file, policyWith('r.io/b'));
    const revoked = holder.reload();
    assert.ok(revoked.ok && revoked.changed);
    assert.equal(holder.current().signers.k?.type, 'unavailable');
    assert.deepEqual(reloaded, [holder.current()]);

    writeFileSync(join(file, '..', 'keys', 'k.pub'), pem('p256'));
    const ok = holder.reload();
    assert.ok(ok.ok && ok.changed);
    assert.equal(holder.current().signers.k?.type, 'publicKey');
    assert.equal(decide(holder.current(), ref('r.io/b/x'), 'seccomp').allowed, true);
    assert.equal(decide(holder.current(), ref('r.io/a/x'), 'seccomp').allowed, false);
    assert.equal(reloaded.length, 2);
  });

  it('an unchanged file keeps the same policy object and does not call onReload', () => {
    const { file } = setup();
    writeFileSync(file, policyWith('r.io/a'));
    let calls = 0;
    const holder = new PolicyHolder({ file, onReload: () => calls++ });
    const p = holder.current();
    const r = holder.reload();
    assert.ok(r.ok && !r.changed && r.policy === p);
    assert.equal(calls, 0);
  });

  it('watches the policy directory: reloads after a rename-replace, ignores a corrupt one', async () => {
    const { file } = setup();
    writeFileSync(file, policyWith('r.io/a'));
    let refused: (fields: Record<string, unknown> | undefined) => void = () => {};
    const refusal = new Promise<Record<string, unknown> | undefined>((resolve, reject) => {
      // The watch does not hold the event loop open; this timer does, and bounds the wait.
      const timer = setTimeout(() => reject(new Error('no refusal logged within 5 s')), 5000);
      refused = (fields) => {
        clearTimeout(timer);
        resolve(fields);
      };
    });
    const logger: Logger = { log: (_level, msg, fields) => msg === 'node policy not reloaded; keeping the last good policy' && refused(fields) };
    const { holder, waiters } = watchedHolder(file, logger);
    try {
      const first = holder.current();
      const reloaded = nextReload(waiters);
      replace(file, policyWith('r.io/b'));
      const p = await reloaded;
      assert.notEqual(p.hash, first.hash);
      assert.equal(holder.current(), p);
      assert.equal(decide(p, ref('r.io/b/x'), 'seccomp').allowed, true);

      replace(file, 'not: [valid');
      // The watcher read the corrupt file (its refusal is logged) and kept the last good policy.
      assert.equal((await refusal)?.hash, p.hash);
      assert.equal(holder.current(), p, 'the last good policy stays');
    } finally {
      holder.close();
    }
  });

  it('watches key directories: a new key file changes the policy hash', async () => {
    const { file, dir } = setup();
    writeFileSync(file, policyWith('r.io/a'));
    const { holder, waiters } = watchedHolder(file);
    try {
      const first = holder.current();
      const reloaded = nextReload(waiters);
      replace(join(dir, 'keys', 'k.pub'), pem('p256'));
      const p = await reloaded;
      assert.notEqual(p.hash, first.hash);
      assert.notEqual((p.signers.k as PublicKeySigner).publicKeyPem, (first.signers.k as PublicKeySigner).publicKeyPem);
    } finally {
      holder.close();
    }
  });

  it('debounces bursts of events into one reload, and stops after close()', (t) => {
    t.mock.timers.enable({ apis: ['setTimeout'] });
    const { file } = setup();
    writeFileSync(file, policyWith('r.io/a'));
    const { holder, listeners, reads } = fakeWatchedHolder(file);
    assert.deepEqual([...listeners.keys()], [dirname(file), join(dirname(file), 'keys')], 'policy dir and keys dir');
    const before = reads.length;
    for (let i = 0; i < 10; i++) listeners.get(dirname(file))!('policy.yaml');
    t.mock.timers.tick(19);
    assert.equal(reads.length, before, 'nothing read before the debounce ends');
    t.mock.timers.tick(1);
    assert.equal(reads.length - before, 2, 'one reload: the policy file and its key');
    t.mock.timers.tick(1000);
    assert.equal(reads.length - before, 2, 'and no other');
    holder.close();
    assert.equal(listeners.size, 0);
  });

  it('a change is reloaded at most 2 s after its first event, however often events follow', (t) => {
    t.mock.timers.enable({ apis: ['setTimeout', 'setInterval'] });
    const { file } = setup();
    writeFileSync(file, policyWith('r.io/a'));
    let now = 0;
    const { holder, listeners, reads } = fakeWatchedHolder(file, () => now);
    try {
      const before = reads.length;
      // A writer that never leaves the 20 ms debounce quiet.
      while (now < 10_000) {
        listeners.get(dirname(file))!('policy.yaml');
        now += 10;
        t.mock.timers.tick(10);
      }
      const policyReads = reads.slice(before).filter((r) => r.path === file);
      assert.deepEqual(policyReads.map((r) => r.at), [2000, 4000, 6000, 8000, 10_000]);
    } finally {
      holder.close();
    }
  });

  it('an event about another entry of a watched directory reloads only when a watched file changed (a ConfigMap mount swapping ..data)', (t) => {
    t.mock.timers.enable({ apis: ['setTimeout', 'setInterval'] });
    const { dir } = setup();
    // The layout of a Kubernetes ConfigMap mount: policy.yaml -> ..data/policy.yaml, ..data -> ..v1.
    const version = (v: string) => {
      mkdirSync(join(dir, v));
      writeFileSync(join(dir, v, 'policy.yaml'), policyWith(`r.io/${v.slice(2)}`));
    };
    version('..v1');
    symlinkSync('..v1', join(dir, '..data'));
    symlinkSync(join('..data', 'policy.yaml'), join(dir, 'policy.yaml'));
    const file = join(dir, 'policy.yaml');
    const { holder, listeners, reads } = fakeWatchedHolder(file);
    try {
      assert.deepEqual([...listeners.keys()].sort(), [dir, join(dir, '..v1'), join(dir, 'keys')].sort());
      const before = reads.length;
      for (const name of ['other.log', '..v2', 'policy.yaml.swp']) listeners.get(dir)!(name);
      listeners.get(join(dir, 'keys'))!('other.pub');
      t.mock.timers.tick(5000);
      assert.equal(reads.length, before, 'no watched file changed: nothing read');

      // The kubelet's update: a new version directory, then ..data renamed over to point at it.
      version('..v2');
      symlinkSync('..v2', join(dir, '..data_tmp'));
      renameSync(join(dir, '..data_tmp'), join(dir, '..data'));
      listeners.get(dir)!('..data');
      t.mock.timers.tick(20);
      assert.equal(reads.length - before, 2, 'policy.yaml now resolves to another file: reloaded');
      assert.ok(listeners.has(join(dir, '..v2')) && !listeners.has(join(dir, '..v1')), 'the new version directory is watched instead');

      listeners.get(dir)!(null);
      t.mock.timers.tick(20);
      assert.equal(reads.length - before, 4, 'an event that names no entry is taken as a change');
    } finally {
      holder.close();
    }
  });
});

/**
 * A holder watching `file` (20 ms debounce) through fake directory watches: `listeners` by
 * directory, each to be called with the entry name an event is about. `reads` lists every file
 * read, with `clock()` at the time.
 */
function fakeWatchedHolder(file: string, clock: () => number = () => 0) {
  const listeners = new Map<string, (name: string | null) => void>();
  const reads: { path: string; at: number }[] = [];
  const holder = new PolicyHolder({
    file,
    watch: true,
    debounceMs: 20,
    readFile: (p) => {
      reads.push({ path: p, at: clock() });
      return Buffer.from(p.endsWith('k.pub') ? KEY : policyWith('r.io/a'));
    },
    watchDir: (dir, onChange) => {
      listeners.set(dir, onChange);
      return { close: () => listeners.delete(dir) };
    },
  });
  return { holder, listeners, reads };
}

const KEY = pem('p256');

describe('PolicyHolder: revoked keys are never trusted as last loaded', () => {
  it('a key file removed under an unchanged policy: the reload (a watch event) makes its signer unavailable', async () => {
    const { dir, file } = setup();
    writeFileSync(file, policyWith('r.io/a'));
    const { logger, lines } = recordingLogger();
    const { holder, waiters } = watchedHolder(file, logger);
    try {
      const good = holder.current();
      const reloaded = nextReload(waiters);
      rmSync(join(dir, 'keys', 'k.pub'));
      const p = await reloaded;
      assert.notEqual(p.hash, good.hash, 'verdicts cached under the old hash never match again');
      const d = decide(p, ref('r.io/a/x'), 'seccomp');
      assert.ok(d.allowed && d.signedBy.length === 1 && d.signedBy[0]!.type === 'unavailable');
      assert.deepEqual(holder.unavailableSigners().map((s) => [s.name, s.file]), [['k', join(dir, 'keys', 'k.pub')]]);
      assert.ok(lines.some((l) => l.level === 'error' && /signer unavailable/.test(l.msg) && l.fields?.signer === 'k'));
      // the key comes back: trusted again
      const back = nextReload(waiters);
      writeFileSync(join(dir, 'keys', 'k.pub'), pem('p256'));
      assert.equal((await back).signers.k?.type, 'publicKey');
      assert.deepEqual(holder.unavailableSigners(), []);
    } finally {
      holder.close();
    }
  });

  it('a key file behind a symlink: removing the file it points to (in another directory) makes its signer unavailable', async () => {
    const { dir, file } = setup();
    mkdirSync(join(dir, 'real'));
    renameSync(join(dir, 'keys', 'k.pub'), join(dir, 'real', 'k.pub'));
    symlinkSync(join(dir, 'real', 'k.pub'), join(dir, 'keys', 'k.pub'));
    writeFileSync(file, policyWith('r.io/a'));
    const { holder, waiters } = watchedHolder(file, recordingLogger().logger);
    try {
      assert.equal(holder.current().signers.k?.type, 'publicKey');
      const reloaded = nextReload(waiters);
      rmSync(join(dir, 'real', 'k.pub'));
      assert.equal((await reloaded).signers.k?.type, 'unavailable');
    } finally {
      holder.close();
    }
  });

  it('a key directory swapped by rename: a key removed from the new directory later still makes its signer unavailable', async () => {
    const { dir, file } = setup();
    writeFileSync(file, policyWith('r.io/a'));
    const { holder, waiters } = watchedHolder(file, recordingLogger().logger);
    try {
      mkdirSync(join(dir, 'keys.new'));
      writeFileSync(join(dir, 'keys.new', 'k.pub'), pem('p384'));
      const swapped = nextReload(waiters);
      renameSync(join(dir, 'keys'), join(dir, 'keys.old'));
      renameSync(join(dir, 'keys.new'), join(dir, 'keys'));
      assert.equal((await swapped).signers.k?.type, 'publicKey');
      const revoked = nextReload(waiters);
      rmSync(join(dir, 'keys', 'k.pub'));
      assert.equal((await revoked).signers.k?.type, 'unavailable');
    } finally {
      holder.close();
    }
  });

  it('a policy directory behind a symlink retargeted (ln -sfn): the new target is loaded', async () => {
    const { dir } = setup();
    for (const [v, scope] of [['v1', 'r.io/a'], ['v2', 'r.io/b']] as const) {
      mkdirSync(join(dir, v, 'keys'), { recursive: true });
      writeFileSync(join(dir, v, 'keys', 'k.pub'), pem('p256'));
      writeFileSync(join(dir, v, 'policy.yaml'), policyWith(scope));
    }
    symlinkSync('v1', join(dir, 'current'));
    const { holder, waiters } = watchedHolder(join(dir, 'current', 'policy.yaml'), recordingLogger().logger);
    try {
      assert.ok(decide(holder.current(), ref('r.io/a/x'), 'seccomp').allowed);
      const retargeted = nextReload(waiters);
      symlinkSync('v2', join(dir, 'current.tmp'));
      renameSync(join(dir, 'current.tmp'), join(dir, 'current'));
      const p = await retargeted;
      assert.equal(decide(p, ref('r.io/a/x'), 'seccomp').allowed, false);
      assert.ok(decide(p, ref('r.io/b/x'), 'seccomp').allowed);
    } finally {
      holder.close();
    }
  });

  it('an invalid policy file does not shield a removed or replaced key: the last good text is checked against the keys as they are now', () => {
    const { dir, file } = setup();
    writeFileSync(file, policyWith('r.io/a'));
    const holder = new PolicyHolder({ file });
    const good = holder.current();
    writeFileSync(file, 'rules: [');
    assert.equal(holder.reload().ok, false);
    assert.equal(holder.current(), good, 'keys unchanged: the last good policy as it was');

    writeFileSync(join(dir, 'keys', 'k.pub'), pem('ed25519'));
    assert.equal(holder.reload().ok, false);
    assert.equal(holder.current().signers.k?.type, 'unavailable', 'a replaced key is not the key the last good policy trusted');
    assert.match((holder.current().signers.k as { why: string }).why, /changed since the policy was loaded/);
    assert.equal(decide(holder.current(), ref('r.io/a/x'), 'seccomp').allowed, true, 'the rest of the last good policy stays');

    rmSync(join(dir, 'keys', 'k.pub'));
    assert.equal(holder.reload().ok, false);
    assert.equal(holder.current().signers.k?.type, 'unavailable');
    assert.match((holder.current().signers.k as { why: string }).why, /ENOENT/);
  });

  it('a key file absent when the last good policy loaded stays unavailable while the policy file is invalid, whatever key appears there', () => {
    const { dir, file } = setup();
    writeFileSync(file, policyWith('r.io/a'));
    const revoked = readFileSync(join(dir, 'keys', 'k.pub'));
    const holder = new PolicyHolder({ file });
    const trustedHash = holder.current().hash;
    // The key is revoked by removing its file; the policy reloads valid, the signer unavailable.
    rmSync(join(dir, 'keys', 'k.pub'));
    assert.equal(holder.reload().ok, true);
    assert.equal(holder.current().signers.k?.type, 'unavailable');
    writeFileSync(file, 'rules: [');
    assert.equal(holder.reload().ok, false);
    for (const key of [pem('ed25519'), revoked]) {
      writeFileSync(join(dir, 'keys', 'k.pub'), key);
      assert.equal(holder.reload().ok, false);
      assert.equal(holder.current().signers.k?.type, 'unavailable', 'a key file that was absent is not trusted on the last good text');
      assert.match((holder.current().signers.k as { why: string }).why, /changed since the policy was loaded/);
      assert.notEqual(holder.current().hash, trustedHash, 'verdicts made before the revocation do not serve again');
    }
  });

  it('start-up stays strict: a missing key file refuses the policy', () => {
    const { dir, file } = setup();
    writeFileSync(file, policyWith('r.io/a'));
    rmSync(join(dir, 'keys', 'k.pub'));
    throwsWith(() => new PolicyHolder({ file }), { code: 'InvalidArgument' });
  });
});
