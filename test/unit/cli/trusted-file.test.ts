// The shim's check of the files it trusts (src/cli/trusted-file.ts): refused when any user
// could have written them, read with a warning for a weaker doubt.

import assert from 'node:assert/strict';
import fs, { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { readTrustedFile } from '../../../src/cli/trusted-file.js';
import { spokeError, throwsWith } from '../../helpers/assert.js';
import { withFs } from '../../helpers/with-fs.js';
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
    // Sticky, as /tmp: on the way it raises no doubt; holding the file, it does (any user may add a name there).
    chmodSync(open, 0o1777);
    refusedSaying(join(open, 'policy.yaml'), `the directory ${open} holding it is writable by every user`);
    mkdirSync(join(open, 'inner'));
    writeFileSync(join(open, 'inner', 'policy.yaml'), 'x');
    readQuietly(join(open, 'inner', 'policy.yaml'));
  });

  it('warns of a secret others may read', () => {
    const file = join(dir, 'key');
    writeFileSync(file, 'x');
    chmodSync(file, 0o644);
    check(file, true);
    assert.match(warnings.join('\n'), /readable by its group or others \(mode 0644\): chmod 600/);
    chmodSync(file, 0o600);
    warnings = [];
    readQuietly(file);
  });

  it("refuses a file or a directory on its path writable by root's group too: under a POSIX ACL the group's bits are the mask, which any named user's write shows in", () => {
    const file = writeKeptBy(join(dir, 'policy.yaml'), 0, 0, 0o664);
    refusedSaying(file, 'the file is writable by its group, gid 0 (mode 0664), or by a user or group an ACL names');
    chmodSync(file, 0o644);
    chmodSync(dir, 0o775);
    refusedSaying(file, `the directory ${dir} on its path is writable by its group, gid 0 (mode 0775)`);
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
    // Root's, but any user may add a name to it (a hard link to another file of root's): not for the file's own directory.
    chownSync(other, 0, 0);
    refusedSaying(file, `the directory ${other} holding it is writable by every user`);
    const inner = join(other, 'inner');
    mkdirSync(inner);
    fs.renameSync(file, join(inner, 'policy.yaml'));
    readQuietly(join(inner, 'policy.yaml'));
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
    // Sticky, on the way: a member of the group may add names, never rename or remove root's.
    const inner = join(dir, 'inner');
    mkdirSync(inner);
    fs.renameSync(file, join(inner, 'policy.yaml'));
    refusedSaying(join(inner, 'policy.yaml'), `the directory ${dir} on its path is writable by its group, gid 12345 (mode 0775)`);
    chmodSync(dir, 0o1775);
    readQuietly(join(inner, 'policy.yaml'));
  });

  it("a file and directories owned by the shim's own uid are read; writable by its own group, refused as any group's write is", () => {
    const file = writeKeptBy(join(dir, 'policy.yaml'), 12345, 12345, 0o644);
    chownSync(dir, 12345, 12345);
    const { geteuid } = process;
    process.geteuid = () => 12345;
    try {
      readQuietly(file);
      chmodSync(file, 0o664);
      refusedSaying(file, 'the file is writable by its group, gid 12345');
    } finally {
      process.geteuid = geteuid;
    }
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

  it('judges the directory holding each symbolic link it follows: whoever owns it chooses which file of root\'s is read', () => {
    const other = join(dir, 'alice');
    mkdirSync(other);
    writeFileSync(join(dir, 'strict.yaml'), 'strict');
    const link = join(other, 'policy.yaml');
    symlinkSync(join(dir, 'strict.yaml'), link);
    readQuietly(link);
    chownSync(other, 12345, 12345);
    refusedSaying(link, `the directory ${other} on its path is owned by uid 12345`);
    // A link to a directory, on the way: the directory holding it is judged, and the ones it leads through.
    chownSync(other, 0, 0);
    const kept = join(dir, 'kept');
    mkdirSync(kept);
    writeFileSync(join(kept, 'policy.yaml'), 'kept');
    symlinkSync('../kept', join(other, 'to-kept'));
    assert.equal(check(join(other, 'to-kept', 'policy.yaml')).toString(), 'kept');
    chmodSync(kept, 0o775);
    refusedSaying(join(other, 'to-kept', 'policy.yaml'), `the directory ${kept} on its path is writable by its group`);
  });

  it('a missing file is missing only where no other user could have removed it: a link into another user\'s directory is refused, not read as "no config"', () => {
    const other = join(dir, 'alice');
    mkdirSync(other);
    chownSync(other, 12345, 12345);
    const link = join(dir, 'config.yaml'); // /etc/spoke/config.yaml, root's, a link to a file alice removed
    symlinkSync(join(other, 'config.yaml'), link);
    refusedSaying(link, `the directory ${other} on its path is owned by uid 12345`);
    chownSync(other, 0, 0);
    assert.throws(() => check(link), { code: 'ENOENT' }, 'missing where only root could have removed it');
    // In a sticky directory, root's: no other user could have removed it either.
    const sticky = join(dir, 'tmp');
    mkdirSync(sticky);
    chmodSync(sticky, 0o1777);
    assert.throws(() => check(join(sticky, 'none.yaml')), { code: 'ENOENT' });
    // A lookup that fails otherwise (a real path too long for lstat) leaves who removed it untold.
    const tooLong = (lstat: (...a: unknown[]) => unknown) => (p: unknown, ...rest: unknown[]) => {
      if (p === other) throw Object.assign(new Error('ENAMETOOLONG'), { code: 'ENAMETOOLONG' });
      return lstat(p, ...rest);
    };
    withFs('lstatSync', tooLong, () => refusedSaying(link, 'cannot be looked up (ENAMETOOLONG)'));
  });

  it('a directory on the path renamed and replaced by a link after the open leads the lookup elsewhere: refused, not judged by where the link leads', () => {
    const sticky = join(dir, 'tmp');
    mkdirSync(sticky);
    chmodSync(sticky, 0o1777);
    const alice = join(sticky, 'alice');
    mkdirSync(alice);
    const file = join(alice, 'policy.yaml');
    writeFileSync(file, 'alice');
    const kept = join(dir, 'kept');
    mkdirSync(kept);
    writeFileSync(join(kept, 'policy.yaml'), 'kept');
    chownSync(alice, 12345, 12345);
    let swapped = false;
    const swapping = (lstat: (...a: unknown[]) => unknown) => (p: unknown, ...rest: unknown[]) => {
      if (!swapped && p === alice) {
        // What alice may do to her own entry of a sticky directory, between the open and the lookup.
        swapped = true;
        fs.renameSync(alice, join(sticky, 'alice2'));
        symlinkSync(kept, alice);
      }
      return lstat(p, ...rest);
    };
    withFs('lstatSync', swapping, () => assert.throws(() => check(file), unsafe));
    assert.ok(swapped);
  });

  it('a regular file another process holds a lease on (EAGAIN to the open that does not wait) cannot be read now: never opened again in a way that could wait on a FIFO put in its place', () => {
    const file = join(dir, 'policy.yaml');
    writeFileSync(file, 'leased');
    const opens: number[] = [];
    const leased = (open: (...a: unknown[]) => unknown) => (p: unknown, flags: unknown, ...rest: unknown[]) => {
      if (p !== file) return open(p, flags, ...rest);
      opens.push(flags as number);
      throw Object.assign(new Error(`EAGAIN: resource temporarily unavailable, open '${file}'`), { code: 'EAGAIN' });
    };
    withFs('openSync', leased, () => assert.throws(() => check(file), { code: 'EAGAIN' }));
    assert.deepEqual(opens.map((f) => (f & fs.constants.O_NONBLOCK) !== 0), [true]);
  });

  it("judges the owner of each symbolic link it follows: in a sticky directory (/tmp) any user may add one, choosing which file of root's is read", () => {
    const sticky = join(dir, 'tmp');
    mkdirSync(sticky);
    chmodSync(sticky, 0o1777);
    const kept = join(dir, 'kept');
    mkdirSync(kept);
    writeFileSync(join(kept, 'policy.yaml'), 'kept');
    const link = join(sticky, 'policy');
    symlinkSync(kept, link);
    assert.equal(check(join(link, 'policy.yaml')).toString(), 'kept');
    fs.lchownSync(link, 12345, 12345);
    const refusal = `the symbolic link ${link} on its path, in a sticky directory, is owned by uid 12345`;
    refusedSaying(join(link, 'policy.yaml'), refusal);
    assert.throws(() => check(join(link, 'policy.yaml')), (e: Error) => e.message.includes(`chown -h root ${link}`));
    // In a directory only root may write, its owner can neither point it elsewhere nor remove it.
    const rootsLink = join(dir, 'roots-link');
    symlinkSync(kept, rootsLink);
    fs.lchownSync(rootsLink, 12345, 12345);
    readQuietly(join(rootsLink, 'policy.yaml'));
    // Dangling, it is not taken for a missing file either.
    fs.unlinkSync(join(kept, 'policy.yaml'));
    refusedSaying(join(link, 'policy.yaml'), refusal);
  });

  it('a relative path is looked up from the directory the process is in now, not the one Node remembers (renamed since)', () => {
    const before = join(dir, 'a');
    mkdirSync(before);
    const cwd = process.cwd();
    process.chdir(before);
    try {
      assert.equal(process.cwd(), before); // remembered now
      fs.renameSync(before, join(dir, 'b'));
      writeFileSync(join(dir, 'b', 'policy.yaml'), 'in b');
      assert.equal(check('policy.yaml').toString(), 'in b');
    } finally {
      process.chdir(cwd);
    }
  });

  it("takes `..` after a link as the kernel does: the parent of where the link leads, not the link's own directory", () => {
    const spoke = join(dir, 'spoke');
    const opt = join(dir, 'opt', 'sub');
    mkdirSync(spoke);
    mkdirSync(opt, { recursive: true });
    writeFileSync(join(spoke, 'policy.yaml'), 'beside the link');
    writeFileSync(join(dir, 'opt', 'policy.yaml'), 'where the link leads');
    symlinkSync(opt, join(spoke, 'link'));
    // Written out: path.join would fold `link/..` away as text.
    const through = `${spoke}/link/../policy.yaml`;
    assert.equal(check(through).toString(), 'where the link leads');
    chownSync(join(dir, 'opt'), 12345, 12345);
    refusedSaying(through, `the directory ${join(dir, 'opt')} on its path is owned by uid 12345`);
  });

  it('a path that does not resolve is an error of its own, never a file read unchecked', () => {
    assert.throws(() => check(join(dir, 'missing.yaml')), { code: 'ENOENT' });
  });

  it('a file opened but not judged (no /proc to name its real path, a directory that cannot be read) is refused as unsafe, not taken for a missing file', () => {
    // A caller reads ENOENT as "no file" (the default node config): a judgement that fails must not look like one.
    const file = join(dir, 'config.yaml');
    writeFileSync(file, 'x');
    const noProc = (readlink: (...a: unknown[]) => unknown) => (p: unknown, ...rest: unknown[]) => {
      if (String(p).startsWith('/proc/self/fd/')) throw Object.assign(new Error(`ENOENT: no such file or directory, readlink '${String(p)}'`), { code: 'ENOENT' });
      return readlink(p, ...rest);
    };
    const e = withFs('readlinkSync', noProc, () => throwsWith(() => check(file), { code: 'FailedPrecondition', reason: 'FILE_UNSAFE' }));
    assert.match(e.message, /cannot tell who may write it/);
  });

  it('judges the file it reads: one put in place after the open is not what is read', () => {
    // The descriptor opened is the one judged and read: replacing the path meanwhile (by rename,
    // as another user with write access to the directory would) changes neither.
    const open = join(dir, 'open');
    mkdirSync(open);
    const file = join(open, 'policy.yaml');
    writeFileSync(file, 'root');
    chmodSync(open, 0o777);
    const replacedAfter = (openFile: (...a: unknown[]) => unknown) => (p: unknown, ...rest: unknown[]) => {
      const fd = openFile(p, ...rest);
      if (p === file) {
        writeFileSync(join(open, 'other'), 'attacker');
        fs.renameSync(join(open, 'other'), file);
      }
      return fd;
    };
    withFs('openSync', replacedAfter, () => {
      // Refused: the directory of the file it opened is world-writable, whichever file is there now.
      assert.throws(() => check(file), unsafe);
      // Root's directory: the file opened is no longer at its path, so what the lookup judged is not what would be read.
      chmodSync(open, 0o755);
      writeFileSync(file, 'root');
      const e = throwsWith(() => check(file), { code: 'FailedPrecondition', reason: 'FILE_UNSAFE' });
      assert.match(e.message, /changed while it was judged/);
    });
  });
});
