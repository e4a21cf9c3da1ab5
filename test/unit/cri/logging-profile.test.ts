// The shim's logging profile for recorded containers (src/cri/logging-profile.ts): the node
// baseline with SCMP_ACT_LOG for what it lets through, one content-named file per baseline.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { LoggingProfiles } from '../../../src/cri/logging-profile.js';
import { seccompOps } from '../../../src/cri/seccomp.js';
import { decodeSeccomp, type SeccompProfile } from '../../../src/profiles/seccomp/index.js';
import { LOGGING_PROFILE_NAME } from '../../../src/profiles/seccomp/recorded.js';

const BASELINE = decodeSeccomp(readFileSync(new URL('../../../../policy/seccomp-baseline.json', import.meta.url)));

/** The action the profile gives a call by name with no argument rules, or its default. */
function actionOf(p: SeccompProfile, name: string): string {
  const rules = (p.syscalls ?? []).filter((s) => s.names.includes(name));
  if (rules.length === 0) return p.defaultAction;
  assert.ok(rules.every((r) => (r.args ?? []).length === 0), `${name}: argument rules`);
  assert.equal(rules.length, 1, name);
  return rules[0]!.action;
}

describe('LoggingProfiles: the logging profile of recorded containers', () => {
  const dir = mkdtempSync(join(tmpdir(), 'spoke-logprof-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('logs what the baseline lets through and keeps every denial of the baseline', async () => {
    const profiles = new LoggingProfiles(join(dir, 'a'), seccompOps);
    const p = decodeSeccomp(readFileSync(await profiles.pathFor(BASELINE)));
    for (const name of ['mkdir', 'openat', 'read', 'chmod']) {
      assert.equal(actionOf(BASELINE, name), 'SCMP_ACT_ALLOW', `${name}: the baseline allows it`);
      assert.equal(actionOf(p, name), 'SCMP_ACT_LOG', `${name}: logged`);
    }
    // What the baseline denies stays denied: not let through, as the allow-all profile would.
    for (const name of ['unshare', 'keyctl', 'bpf', 'ptrace', 'mount', 'setns', 'clone3']) {
      assert.equal(actionOf(p, name), actionOf(BASELINE, name), `${name}: the baseline's verdict`);
      assert.notEqual(actionOf(p, name), 'SCMP_ACT_LOG', name);
      assert.notEqual(actionOf(p, name), 'SCMP_ACT_ALLOW', name);
    }
    // The ABIs any merge with this baseline keeps (intersect.ts), never one the baseline lacks.
    assert.ok(p.architectures!.includes('SCMP_ARCH_X86_64'));
    assert.ok(p.architectures!.every((a) => BASELINE.architectures!.includes(a)));
  });

  it('one file per baseline, named by content, 0644; the same baseline again gives the same file', async () => {
    const profiles = new LoggingProfiles(join(dir, 'b'), seccompOps);
    const first = await profiles.pathFor(BASELINE);
    assert.match(first, /\/log-[0-9a-f]{64}\.json$/);
    assert.equal((statSync(first).mode & 0o777).toString(8), '644');
    assert.equal(await profiles.pathFor(BASELINE), first);
    assert.equal(await profiles.pathFor(structuredClone(BASELINE)), first, 'an equal baseline reloaded: the same bytes, the same file');
    // A tightened baseline (mkdir no longer allowed) gets its own file, in which mkdir is denied.
    const tighter: SeccompProfile = { ...BASELINE, syscalls: BASELINE.syscalls!.map((s) => ({ ...s, names: s.names.filter((n) => n !== 'mkdir') })) };
    const second = await profiles.pathFor(tighter);
    assert.notEqual(second, first);
    assert.equal(actionOf(decodeSeccomp(readFileSync(second)), 'mkdir'), 'SCMP_ACT_ERRNO');
  });

  it('install: writes the current baseline\'s file and removes every other logging profile, the allow-all ones of earlier versions too', async () => {
    const root = join(dir, 'c');
    const kubelet = join(root, 'kubelet-seccomp');
    const store = join(root, 'recording');
    mkdirSync(join(kubelet, 'spoke'), { recursive: true });
    mkdirSync(store, { recursive: true });
    writeFileSync(join(kubelet, 'spoke', LOGGING_PROFILE_NAME), '{"defaultAction":"SCMP_ACT_LOG"}');
    writeFileSync(join(store, LOGGING_PROFILE_NAME), '{"defaultAction":"SCMP_ACT_LOG"}');
    const stale = join(store, `log-${'0'.repeat(64)}.json`);
    writeFileSync(stale, '{}');
    writeFileSync(join(store, 'unrelated.json'), '{}');
    const path = await new LoggingProfiles(store, seccompOps).install(BASELINE, kubelet);
    assert.equal(existsSync(join(kubelet, 'spoke', LOGGING_PROFILE_NAME)), false);
    assert.deepEqual(readdirSync(store).filter((n) => !n.startsWith('.')).sort(), [path.slice(store.length + 1), 'unrelated.json'].sort());
    // A file of the right name with other bytes is rewritten.
    writeFileSync(path, '{}');
    assert.equal(await new LoggingProfiles(store, seccompOps).install(BASELINE, kubelet), path);
    assert.equal(actionOf(decodeSeccomp(readFileSync(path)), 'mkdir'), 'SCMP_ACT_LOG');
  });

  it('a file removed since (another shim\'s start, an operator) is written again', async () => {
    const profiles = new LoggingProfiles(join(dir, 'e'), seccompOps);
    const path = await profiles.pathFor(BASELINE);
    rmSync(path);
    assert.equal(await profiles.pathFor(BASELINE), path);
    assert.equal(actionOf(decodeSeccomp(readFileSync(path)), 'mkdir'), 'SCMP_ACT_LOG');
  });

  it('a file changed since it was written (even in place, its mtime set back) is checked again and rewritten: the name is trusted only while the file is the one written', async () => {
    const profiles = new LoggingProfiles(join(dir, 'f'), seccompOps);
    const path = await profiles.pathFor(BASELINE);
    const written = readFileSync(path);
    const before = statSync(path);
    const allowAll = Buffer.alloc(written.length, ' ');
    Buffer.from('{"defaultAction":"SCMP_ACT_ALLOW"}').copy(allowAll);
    writeFileSync(path, allowAll);
    utimesSync(path, before.atime, before.mtime);
    assert.equal(await profiles.pathFor(BASELINE), path);
    assert.deepEqual(readFileSync(path), written);
  });

  it('a write that fails is not remembered: the next create tries again', async () => {
    const blocked = join(dir, 'd');
    writeFileSync(blocked, 'a file where the directory should be');
    const profiles = new LoggingProfiles(join(blocked, 'recording'), seccompOps);
    await assert.rejects(profiles.pathFor(BASELINE));
    rmSync(blocked);
    assert.match(await profiles.pathFor(BASELINE), /log-[0-9a-f]{64}\.json$/);
  });
});
