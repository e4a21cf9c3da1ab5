// The node policy a started shim holds before its first pull: the one it checked at start is its
// last good policy from then on, as after any reload (a corrupt file keeps it).

import assert from 'node:assert/strict';
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { after, before, describe, it } from 'node:test';
import { H2CriClient } from '../helpers/cri-client.js';
import { denySyscalls, pushRawArtifact } from '../helpers/artifacts.js';
import { unsignedPolicy } from '../helpers/node.js';
import { startRegistry, type TestRegistry } from '../helpers/registry.js';
import { startShim, stopShim, type ShimProc } from '../helpers/shim.js';
import { spoke } from '../helpers/cli.js';

describe('spoke shim: the policy checked at start is the last good one before any pull', { timeout: 120_000 }, () => {
  let reg: TestRegistry;
  let work: string;
  let shim: ShimProc | undefined;
  before(async () => {
    reg = await startRegistry();
    work = mkdtempSync(join(tmpdir(), 'spoke-polstart-'));
  });
  after(async () => {
    if (shim) await stopShim(shim);
    await reg.stop();
    rmSync(work, { recursive: true, force: true });
  });

  /**
   * `spoil`ed, then changed to allow only another repository, `policy` is not reloaded by `s`: a
   * pull of a new artifact in `repo` is decided by the last good policy. The log line, returned.
   */
  const keptAtReload = async (s: ShimProc, sock: string, policy: string, repo: string, spoil: () => void): Promise<Record<string, unknown>> => {
    const { reference } = await pushRawArtifact(reg.host, repo, { layers: [{ bytes: denySyscalls(['acct']) }] });
    spoil();
    writeFileSync(policy, unsignedPolicy([`${reg.host}/elsewhere`]));
    const kept = s.nextLog((l) => /node policy (not )?reloaded/.test(String(l.msg)));
    s.child.kill('SIGHUP');
    const line = await kept;
    assert.equal(line.msg, 'node policy not reloaded; keeping the last good policy');
    const cri = new H2CriClient(sock);
    try {
      const r = await cri.img('PullSecurityProfileArtifact', { image: { image: reference }, profile_kind: 'Seccomp', sandbox_config: { metadata: { name: 'p', namespace: 'default' } } });
      assert.equal(r.resolved_ref, reference, 'allowed by the last good policy');
    } finally {
      cri.close();
    }
    return line;
  };

  it('a policy made corrupt before the first pull is not read: the pull is decided by the one checked at start', async () => {
    const { reference } = await pushRawArtifact(reg.host, 'open/first', { layers: [{ bytes: denySyscalls(['acct']) }] });
    const policy = join(work, 'policy.yaml');
    writeFileSync(policy, unsignedPolicy([`${reg.host}/open`]));
    // No runtime behind it: a pull is the shim's own call.
    shim = await startShim(['--listen', join(work, 'shim.sock'), '--upstream', join(work, 'none.sock'), '--store', join(work, 'store'), '--seccomp-root', join(work, 'seccomp'), '--policy', policy]);
    writeFileSync(policy, 'rules: [\n');
    const refused = shim.nextLog((l) => /node policy (not reloaded|invalid)/.test(String(l.msg)));
    shim.child.kill('SIGHUP');
    await refused;
    const cri = new H2CriClient(join(work, 'shim.sock'));
    try {
      const r = await cri.img('PullSecurityProfileArtifact', { image: { image: reference }, profile_kind: 'Seccomp', sandbox_config: { metadata: { name: 'p', namespace: 'default' } } });
      assert.deepEqual([r.resolved_ref, r.cached], [reference, false]);
    } finally {
      cri.close();
    }
  });

  it('a policy any user could have written is refused: at start (no shim), and at a reload (the last good one kept)', async () => {
    const policy = join(work, 'trusted-policy.yaml');
    writeFileSync(policy, unsignedPolicy([`${reg.host}/open`]));
    chmodSync(policy, 0o666);
    const args = ['--listen', join(work, 'trusted.sock'), '--upstream', join(work, 'none.sock'), '--store', join(work, 'store-trusted'), '--seccomp-root', join(work, 'seccomp'), '--policy', policy];
    const refused = await spoke(['shim', ...args], { timeoutMs: 20_000 });
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /trusted-policy\.yaml: the file is writable by every user \(mode 0666\)/);
    chmodSync(policy, 0o644);
    const s = await startShim(args);
    try {
      // Made world-writable and changed: the change is not read.
      const kept = await keptAtReload(s, join(work, 'trusted.sock'), policy, 'open/trusted', () => chmodSync(policy, 0o666));
      assert.match(String(kept.error), /writable by every user/);
    } finally {
      await stopShim(s);
    }
  });

  it('a policy another user owns is refused at start (no shim); one a group other than root\'s may write is not reloaded, the last good one kept', async () => {
    const policy = join(work, 'owned-policy.yaml');
    writeFileSync(policy, unsignedPolicy([`${reg.host}/owned`]));
    chmodSync(policy, 0o644);
    chownSync(policy, 12345, 12345);
    const args = ['--listen', join(work, 'owned.sock'), '--upstream', join(work, 'none.sock'), '--store', join(work, 'store-owned'), '--seccomp-root', join(work, 'seccomp'), '--policy', policy];
    const refused = await spoke(['shim', ...args], { timeoutMs: 20_000 });
    assert.match(refused.stderr, /\(reason FILE_UNSAFE\)$/m);
    assert.equal(refused.code, 1);
    chownSync(policy, 0, 0);
    const s = await startShim(args);
    try {
      // Given to another group to write, and changed: the change is not read.
      await keptAtReload(s, join(work, 'owned.sock'), policy, 'owned/kept', () => {
        chownSync(policy, 0, 12345);
        chmodSync(policy, 0o664);
      });
    } finally {
      await stopShim(s);
    }
  });

  it("a socket directory another user could write is refused at start: whoever may put a socket there while the shim is down gets every pod's spec, secrets in env included, from the kubelet", async () => {
    const policy = join(work, 'socket-policy.yaml');
    writeFileSync(policy, unsignedPolicy([`${reg.host}/socket`]));
    chmodSync(policy, 0o644);
    for (const [what, make] of [
      ['writable by every user', (dir: string) => chmodSync(dir, 0o777)],
      ['sticky and writable by every user', (dir: string) => chmodSync(dir, 0o1777)],
      ["another user's", (dir: string) => chownSync(dir, 12345, 12345)],
    ] as const) {
      const dir = join(work, `socket-dir-${what.replaceAll(' ', '-').replaceAll("'", '')}`);
      mkdirSync(dir, { mode: 0o755 });
      make(dir);
      const args = ['--listen', join(dir, 'spoke.sock'), '--upstream', join(work, 'none.sock'), '--store', join(work, 'store-socket'), '--seccomp-root', join(work, 'seccomp'), '--policy', policy];
      const refused = await spoke(['shim', ...args], { timeoutMs: 20_000 });
      assert.match(refused.stderr, /\(reason FILE_UNSAFE\)$/m, what);
      assert.equal(refused.code, 1, what);
      assert.equal(existsSync(join(dir, 'spoke.sock')), false, `${what}: no socket bound`);
    }
    // Directories still to make, under a link another user's directory holds: nothing is made
    // where that user's link leads.
    const theirs = join(work, 'socket-theirs');
    const target = join(work, 'socket-target');
    mkdirSync(theirs, { mode: 0o755 });
    mkdirSync(target, { mode: 0o755 });
    symlinkSync(target, join(theirs, 'x'));
    chownSync(theirs, 12345, 12345);
    const args = ['--listen', join(theirs, 'x', 'made', 'spoke.sock'), '--upstream', join(work, 'none.sock'), '--store', join(work, 'store-socket'), '--seccomp-root', join(work, 'seccomp'), '--policy', policy];
    const refused = await spoke(['shim', ...args], { timeoutMs: 20_000 });
    assert.match(refused.stderr, /\(reason FILE_UNSAFE\)$/m);
    assert.equal(existsSync(join(target, 'made')), false, 'no directory made through the link');
  });

  it('an auth file any user could have written is not reloaded: the last good credentials are kept', async () => {
    const policy = join(work, 'policy.yaml');
    writeFileSync(policy, unsignedPolicy([`${reg.host}/open`]));
    const auth = join(work, 'watched-auth.json');
    writeFileSync(auth, '{"auths": {}}');
    chmodSync(auth, 0o600);
    const s = await startShim(['--listen', join(work, 'watched-auth.sock'), '--upstream', join(work, 'none.sock'), '--store', join(work, 'store-watched-auth'), '--seccomp-root', join(work, 'seccomp'), '--policy', policy, '--auth-file', auth]);
    try {
      chmodSync(auth, 0o666);
      const kept = s.nextLog((l) => /registry credentials (not )?reloaded/.test(String(l.msg)));
      writeFileSync(auth, `{"auths": {"${reg.host}": {"auth": "${Buffer.from('someone:else').toString('base64')}"}}}`);
      const line = await kept;
      assert.equal(line.msg, 'registry credentials not reloaded; keeping the last good ones');
      assert.match(String(line.error), /writable by every user/);
    } finally {
      await stopShim(s);
    }
  });

  it('an auth file that cannot be read stops the shim at start, as a bad policy does', async () => {
    const policy = join(work, 'policy.yaml');
    writeFileSync(policy, unsignedPolicy([`${reg.host}/open`]));
    const r = await spoke(['shim', '--listen', join(work, 'auth.sock'), '--upstream', join(work, 'none.sock'), '--store', join(work, 'store-auth'), '--seccomp-root', join(work, 'seccomp'), '--policy', policy, '--auth-file', join(work, 'missing-auth.json')]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /missing-auth\.json.*cannot be read \(ENOENT\)/);
  });
});
