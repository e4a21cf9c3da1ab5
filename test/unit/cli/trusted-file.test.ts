// The shim's check of the files it trusts (src/cli/trusted-file.ts): refused when any user
// could have written them, read with a warning for a weaker doubt.

import assert from 'node:assert/strict';
import fs, { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { readTrustedFile } from '../../../src/cli/trusted-file.js';
import { spokeError, throwsWith } from '../../helpers/assert.js';
import { PolicyHolder } from '../../../src/config/policy-holder.js';
import { generateKeyPairSync } from 'node:crypto';
import { execFileSync, spawnSync } from 'node:child_process';

describe('readTrustedFile', () => {
  let dir: string;
  let warnings: string[];
  const check = (path: string, secret = false) => readTrustedFile(path, 'node policy', { warn: (m) => warnings.push(m), maxBytes: 1024, secret });
  const unsafe = spokeError({ code: 'FailedPrecondition', reason: 'FILE_UNSAFE' });
  /** Refused as unsafe, the message saying `said` (which file or directory, and why). */
  const refusedSaying = (path: string, said: string) => {
    const e = throwsWith(() => check(path), { code: 'FailedPrecondition', reason: 'FILE_UNSAFE' });
    assert.ok(e.message.includes(said), e.message);
  };
  /** `path` written, with `mode`, kept by `uid`:`gid`. */
  const writeKeptBy = (path: string, uid: number, gid: number, mode: number): string => {
    writeFileSync(path, 'x');
    chmodSync(path, mode);
    chownSync(path, uid, gid);
    return path;
  };
  /** Read without a word. */
  const readQuietly = (path: string) => {
    check(path);
    assert.deepEqual(warnings, []);
  };
  beforeEach(() => {
    // Under /tmp (world-writable, sticky): a sticky directory on the path is no doubt.
    dir = mkdtempSync(join(tmpdir(), 'spoke-trusted-'));
    chmodSync(dir, 0o755);
    warnings = [];
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('a FIFO (or any file that is not a regular one) is refused without waiting for a writer: opening it would hold the shim\'s thread, at start or at a reload, until one came', () => {
    const fifo = join(dir, 'policy.yaml');
    execFileSync('mkfifo', ['-m', '0644', fifo]);
    // In a child, so that a read that waits for a writer fails the test at its timeout instead of hanging it.
    const module = new URL('../../../src/cli/trusted-file.js', import.meta.url).href;
    const script = `const { readTrustedFile } = await import(${JSON.stringify(module)}); try { readTrustedFile(${JSON.stringify(fifo)}, 'node policy', { warn: () => {}, maxBytes: 1024 }); console.log('read'); } catch (e) { console.log(e.reason); }`;
    const said = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 10_000 });
    assert.equal(said.signal, null, 'the read waited for a writer');
    assert.equal(said.stdout.trim(), 'FILE_UNSAFE');
  });

  it('reads a file only its owner may write, in directories only their owners may write, without a word', () => {
    const file = join(dir, 'policy.yaml');
    writeFileSync(file, 'x', { mode: 0o644 });
    chmodSync(file, 0o644);
    check(file);
    assert.deepEqual(warnings, []);
  });

  it('refuses a world-writable file, or one reached through a world-writable directory or link, unless that directory is sticky', () => {
    const file = join(dir, 'policy.yaml');
    writeFileSync(file, 'x');
    chmodSync(file, 0o666);
    assert.throws(() => check(file), unsafe);
    chmodSync(file, 0o644);
    const open = join(dir, 'open');
    mkdirSync(open);
    chmodSync(open, 0o777);
    writeFileSync(join(open, 'policy.yaml'), 'x');
    assert.throws(() => check(join(open, 'policy.yaml')), unsafe);
    // Through a link elsewhere: judged by the real path.
    symlinkSync(join(open, 'policy.yaml'), join(dir, 'link.yaml'));
    assert.throws(() => check(join(dir, 'link.yaml')), unsafe);
    chmodSync(open, 0o1777);
    check(join(open, 'policy.yaml'));
    assert.deepEqual(warnings, []);
  });

  it('warns of a group-writable file or directory, and of a secret others may read', () => {
    const file = join(dir, 'key');
    writeFileSync(file, 'x');
    chmodSync(file, 0o664);
    check(file);
    assert.equal(warnings.length, 1);
    assert.match(warnings[0]!, /writable by its group \(mode 0664\)/);
    chmodSync(file, 0o644);
    warnings = [];
    check(file, true);
    assert.match(warnings.join('\n'), /readable by its group or others \(mode 0644\): chmod 600/);
    chmodSync(file, 0o600);
    chmodSync(dir, 0o775);
    warnings = [];
    check(file, true);
    assert.equal(warnings.length, 1);
    assert.match(warnings[0]!, /the directory .* is writable by its group \(mode 0775\)/);
  });

  it('refuses a file, or a directory on its real path, owned by a user other than root and the shim\'s own: a sticky directory included, whose owner may rename what it holds', () => {
    const other = join(dir, 'other');
    mkdirSync(other);
    const file = writeKeptBy(join(other, 'policy.yaml'), 12345, 12345, 0o644);
    refusedSaying(file, 'policy.yaml: the file is owned by uid 12345');
    chownSync(file, 0, 0);
    check(file);
    chownSync(other, 12345, 12345);
    refusedSaying(file, `the directory ${other} on its path is owned by uid 12345`);
    // Through a link from a directory root keeps: judged by the real path.
    symlinkSync(file, join(dir, 'link.yaml'));
    assert.throws(() => check(join(dir, 'link.yaml')), unsafe);
    // Sticky and world-writable, as /tmp is: its owner may still rename or remove root's file in it.
    chmodSync(other, 0o1777);
    refusedSaying(file, `the directory ${other} on its path is owned by uid 12345`);
    chownSync(other, 0, 0);
    readQuietly(file);
  });

  it('refuses a file or a directory on its path writable by a group other than root\'s and the shim\'s own; a sticky directory such a group may write is no doubt', () => {
    const file = writeKeptBy(join(dir, 'policy.yaml'), 0, 12345, 0o664);
    refusedSaying(file, 'the file is writable by its group, gid 12345 (mode 0664)');
    // Its group may not write it: nothing to say.
    chmodSync(file, 0o644);
    readQuietly(file);
    chownSync(dir, 0, 12345);
    chmodSync(dir, 0o775);
    refusedSaying(file, `the directory ${dir} on its path is writable by its group, gid 12345 (mode 0775)`);
    // Sticky: a member of the group may add files, never rename or remove root's.
    chmodSync(dir, 0o1775);
    readQuietly(file);
  });

  it("a file and directories owned by the shim's own uid, writable by its own group, are read (the group's write with a warning)", () => {
    const file = writeKeptBy(join(dir, 'policy.yaml'), 12345, 12345, 0o664);
    chownSync(dir, 12345, 12345);
    const { geteuid, getegid } = process;
    process.geteuid = () => 12345;
    process.getegid = () => 12345;
    try {
      check(file);
    } finally {
      process.geteuid = geteuid;
      process.getegid = getegid;
    }
    assert.equal(warnings.length, 1);
    assert.match(warnings[0]!, /writable by its group \(mode 0664\)/);
  });

  // Two ways another user could have written a signer's key: the file's mode, and its owner.
  const spoilings: { how: string; spoil: (file: string) => void; mend: (file: string) => void; said: RegExp }[] = [
    { how: 'any user may write', spoil: (f) => chmodSync(f, 0o666), mend: (f) => chmodSync(f, 0o644), said: /k\.pub: the file is writable by every user \(mode 0666\)/ },
    { how: 'another user owns', spoil: (f) => chownSync(f, 12345, 12345), mend: (f) => chownSync(f, 0, 0), said: /k\.pub: the file is owned by uid 12345/ },
  ];
  for (const { how, spoil, mend, said } of spoilings) {
    it(`a signer's key file ${how} stops a policy load with FILE_UNSAFE and its reason, and makes the signer unavailable at a reload`, () => {
      const key = join(dir, 'k.pub');
      writeFileSync(key, generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ type: 'spki', format: 'pem' }));
      chmodSync(key, 0o644);
      spoil(key);
      const policy = join(dir, 'policy.yaml');
      writeFileSync(policy, `apiVersion: spoke.dev/v1alpha1\nkind: NodeProfilePolicy\nsigners:\n  k: { publicKey: ${key} }\nrules:\n  - { scope: reg.example/a, kinds: [seccomp], signedBy: [k] }\n`);
      const readFile = (path: string) => readTrustedFile(path, 'node policy file', { warn: () => {}, maxBytes: 1 << 20 });
      const e = throwsWith(() => new PolicyHolder({ file: policy, readFile }), { code: 'FailedPrecondition', reason: 'FILE_UNSAFE' });
      assert.match(e.message, said);
      // Loaded while the key was kept well, then spoiled: unavailable, saying why.
      mend(key);
      const holder = new PolicyHolder({ file: policy, readFile });
      try {
        spoil(key);
        holder.reload();
        const signer = holder.current().signers.k as { type: string; why?: string };
        assert.equal(signer.type, 'unavailable');
        assert.match(signer.why ?? '', said);
      } finally {
        holder.close();
      }
    });
  }

  it('a path that does not resolve is an error of its own, never a file read unchecked', () => {
    assert.throws(() => check(join(dir, 'missing.yaml')), { code: 'ENOENT' });
  });

  it('a file opened but not judged (no /proc to name its real path, a directory that cannot be read) is refused as unsafe, not taken for a missing file', () => {
    // A caller reads ENOENT as "no file" (the default node config): a judgement that fails must not look like one.
    const file = join(dir, 'config.yaml');
    writeFileSync(file, 'x');
    const { readlinkSync } = fs;
    fs.readlinkSync = ((p: string, ...rest: unknown[]) => {
      if (String(p).startsWith('/proc/self/fd/')) throw Object.assign(new Error(`ENOENT: no such file or directory, readlink '${p}'`), { code: 'ENOENT' });
      return (readlinkSync as (...a: unknown[]) => string)(p, ...rest);
    }) as typeof fs.readlinkSync;
    syncBuiltinESMExports();
    try {
      const e = throwsWith(() => check(file), { code: 'FailedPrecondition', reason: 'FILE_UNSAFE' });
      assert.match(e.message, /cannot tell who may write it/);
    } finally {
      fs.readlinkSync = readlinkSync;
      syncBuiltinESMExports();
    }
  });

  it('judges the file it reads: one put in place after the open is not what is read', () => {
    // The descriptor opened is the one judged and read: replacing the path meanwhile (by rename,
    // as another user with write access to the directory would) changes neither.
    const open = join(dir, 'open');
    mkdirSync(open);
    const file = join(open, 'policy.yaml');
    writeFileSync(file, 'root');
    chmodSync(open, 0o777);
    const { openSync } = fs;
    fs.openSync = ((p: string, ...rest: unknown[]) => {
      const fd = (openSync as (...a: unknown[]) => number)(p, ...rest);
      if (p === file) {
        writeFileSync(join(open, 'other'), 'attacker');
        fs.renameSync(join(open, 'other'), file);
      }
      return fd;
    }) as typeof fs.openSync;
    syncBuiltinESMExports();
    try {
      // Refused: the directory of the file it opened is world-writable, whichever file is there now.
      assert.throws(() => check(file), unsafe);
      chmodSync(open, 0o755);
      writeFileSync(file, 'root');
      assert.equal(check(file).toString(), 'root', 'read from the descriptor opened, not the path replaced after it');
    } finally {
      fs.openSync = openSync;
      syncBuiltinESMExports();
    }
  });
});
