// `spoke diff` as a CI gate (docs/diff.md): files and references from a real registry, exit
// status 0 / 1 / 2, JSON and text output, seccomp with argument conditions and AppArmor.

import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { spoke } from '../helpers/cli.js';
import { startRegistry, type TestRegistry } from '../helpers/registry.js';

const v1 = {
  defaultAction: 'SCMP_ACT_ERRNO',
  architectures: ['SCMP_ARCH_X86_64'],
  syscalls: [
    { names: ['read', 'write', 'exit_group'], action: 'SCMP_ACT_ALLOW' },
    { names: ['personality'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value: 0, op: 'SCMP_CMP_EQ' }] },
  ],
};
// The same behaviour, written differently: keys reordered, entries split, whitespace.
const v1Rewritten = `{"syscalls":[{"action":"SCMP_ACT_ALLOW","names":["exit_group"]},
  {"names":["read","write"],"action":"SCMP_ACT_ALLOW"},
  {"args":[{"op":"SCMP_CMP_EQ","value":0,"index":0}],"action":"SCMP_ACT_ALLOW","names":["personality"]}],
  "architectures":["SCMP_ARCH_X86_64"],"defaultAction":"SCMP_ACT_ERRNO"}`;
// v2 allows ptrace and personality(8), no longer write.
const v2 = {
  ...v1,
  syscalls: [
    { names: ['read', 'exit_group', 'ptrace'], action: 'SCMP_ACT_ALLOW' },
    { names: ['personality'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value: 0, op: 'SCMP_CMP_EQ' }] },
    { names: ['personality'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value: 8, op: 'SCMP_CMP_EQ' }] },
  ],
};
// v3 only tightens v1.
const v3 = { ...v1, syscalls: [v1.syscalls[0], { names: ['personality'], action: 'SCMP_ACT_ERRNO' }] };

interface Entry {
  syscall?: string;
  architectures?: string[];
  args?: string;
  old: { action: string };
  new: { action: string };
}

describe('spoke diff', () => {
  let dir: string;
  let reg: TestRegistry;
  const file = (name: string, body: unknown) => {
    const p = join(dir, name);
    writeFileSync(p, typeof body === 'string' ? body : JSON.stringify(body, null, 2));
    return p;
  };
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'spoke-diff-'));
    reg = await startRegistry();
  });
  after(async () => {
    await reg.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('the same behaviour in another text: exit 0, no change', async () => {
    const r = await spoke(['diff', file('v1.json', v1), file('v1b.json', v1Rewritten)]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), 'no change in behaviour');
  });

  it('a loosening update: exit 1; --json names syscall, architecture, actions and the argument case', async () => {
    const r = await spoke(['diff', file('v1.json', v1), file('v2.json', v2), '--json']);
    assert.equal(r.code, 1, r.stderr);
    const out = JSON.parse(r.stdout) as { loosened: Entry[]; tightened: Entry[] };
    const loosened = out.loosened.map((e) => `${e.syscall}|${e.args ?? ''}|${e.old.action}>${e.new.action}`).sort();
    assert.equal(loosened.length, 2, r.stdout);
    assert.match(loosened[0]!, /^personality\|.*arg0 == 8.*\|SCMP_ACT_ERRNO>SCMP_ACT_ALLOW$/);
    assert.equal(loosened[1], 'ptrace||SCMP_ACT_ERRNO>SCMP_ACT_ALLOW');
    assert.deepEqual(out.loosened[0]!.architectures, ['SCMP_ARCH_X86_64']);
    assert.deepEqual(out.tightened.map((e) => e.syscall), ['write']);
  });

  it('text output: one line per change, loosened first, naming the syscall', async () => {
    const r = await spoke(['diff', file('v1.json', v1), file('v2.json', v2)]);
    assert.equal(r.code, 1);
    const lines = r.stdout.trim().split('\n');
    assert.equal(lines.length, 3, r.stdout);
    assert.match(lines[0]!, /^loosened\s+personality when .*arg0 == 8/);
    assert.match(lines[1]!, /^loosened\s+ptrace: SCMP_ACT_ERRNO\(errno 1\) → SCMP_ACT_ALLOW$/);
    assert.match(lines[2]!, /^tightened\s+write: /);
  });

  it('a tightening-only update exits 0; reversed it exits 1', async () => {
    assert.equal((await spoke(['diff', file('v1.json', v1), file('v3.json', v3)])).code, 0);
    assert.equal((await spoke(['diff', file('v3.json', v3), file('v1.json', v1)])).code, 1);
  });

  it('usage errors and invalid profiles exit 2, never 1', async () => {
    assert.equal((await spoke(['diff', file('v1.json', v1)])).code, 2);
    const bad = await spoke(['diff', file('v1.json', v1), file('bad.json', { defaultAction: 'SCMP_ACT_ALLOW', defaultErrno: 'EPERM' })]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /^SecurityProfileInvalid: /);
    assert.equal((await spoke(['diff', file('v1.json', v1), join(dir, 'missing.json')])).code, 2);
    // A profile a node would refuse as an artifact is not judged either: here one whose ptrace
    // rules the comparison's model cannot read as runc builds them.
    const odd = { defaultAction: 'SCMP_ACT_ERRNO', architectures: ['SCMP_ARCH_X86_64'], syscalls: [{ names: ['ptrace'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value: 16, op: 'SCMP_CMP_EQ' }] }, { names: ['ptrace'], action: 'SCMP_ACT_KILL_PROCESS', args: [{ index: 1, value: 1, op: 'SCMP_CMP_EQ' }] }] };
    const unreadable = await spoke(['diff', file('v1.json', v1), file('odd.json', odd)]);
    assert.equal(unreadable.code, 2, unreadable.stdout + unreadable.stderr);
    assert.match(unreadable.stderr, /^SecurityProfileInvalid: /);
  });

  it('digest references are fetched from the registry, checked, and compared', async () => {
    const push = async (name: string, body: unknown) => {
      const r = await spoke(['push', file(`${name}.json`, body), `${reg.host}/profiles/diff:${name}`, '--kind', 'seccomp', '--plain-http']);
      assert.equal(r.code, 0, r.stderr);
      return r.stdout.trim().split('\n').at(-1)!;
    };
    const ref1 = await push('v1', v1);
    const ref2 = await push('v2', v2);
    const r = await spoke(['diff', ref1, ref2, '--plain-http', '--json']);
    assert.equal(r.code, 1, r.stderr);
    assert.equal((JSON.parse(r.stdout) as { loosened: Entry[] }).loosened.length, 2);
    // A reference and a file of the same content: no change.
    assert.equal((await spoke(['diff', ref1, file('v1b.json', v1Rewritten), '--plain-http'])).code, 0);
    // A wrong digest is refused (exit 2), not compared.
    const wrong = ref1.replace(/@sha256:[0-9a-f]{8}/, '@sha256:00000000');
    assert.equal((await spoke(['diff', wrong, ref2, '--plain-http'])).code, 2);
    // A file whose path is a reference's text (a change under review can add one to the checkout
    // the gate runs in) does not stand in for the pinned artifact; `./` names the file.
    const checkout = mkdtempSync(join(dir, 'checkout-'));
    mkdirSync(join(checkout, dirname(ref2)), { recursive: true });
    writeFileSync(join(checkout, ref2), JSON.stringify(v1));
    const shadowed = await spoke(['diff', ref2, file('v1b.json', v1Rewritten), '--plain-http', '--json'], { cwd: checkout });
    assert.equal(shadowed.code, 1, shadowed.stderr);
    assert.equal((JSON.parse(shadowed.stdout) as { tightened: Entry[] }).tightened.length, 2, 'compared with the pinned v2 (ptrace, personality(8)), not the file');
    assert.deepEqual(JSON.parse((await spoke(['diff', `./${ref2}`, file('v1b.json', v1Rewritten), '--plain-http', '--json'], { cwd: checkout })).stdout), { loosened: [], tightened: [], changed: [] });
  });

  it('index references: the platform a node would take (or --platform), an index without it refused', async () => {
    const pushIndex = async (tag: string, amd64: unknown, arm64: unknown) => {
      const args = ['push', `${reg.host}/profiles/diff-multi:${tag}`, '--kind', 'seccomp', '--plain-http', '--platform', `linux/amd64=${file(`${tag}-amd64.json`, amd64)}`];
      if (arm64 !== undefined) args.push('--platform', `linux/arm64=${file(`${tag}-arm64.json`, arm64)}`);
      const r = await spoke(args);
      assert.equal(r.code, 0, r.stderr);
      return r.stdout.trim().split('\n').at(-1)!;
    };
    const arm = (p: typeof v1) => ({ ...p, architectures: ['SCMP_ARCH_AARCH64'] });
    // amd64 only tightens (v1 → v3); arm64 loosens (v1 → v2).
    const old = await pushIndex('old', v1, arm(v1));
    const next = await pushIndex('next', v3, arm(v2));
    const amd = await spoke(['diff', old, next, '--plain-http', '--platform', 'linux/amd64', '--json']);
    assert.equal(amd.code, 0, amd.stderr);
    assert.deepEqual((JSON.parse(amd.stdout) as { loosened: Entry[] }).loosened, []);
    const arm64 = await spoke(['diff', old, next, '--plain-http', '--platform', 'linux/arm64', '--json']);
    assert.equal(arm64.code, 1, arm64.stderr);
    assert.ok((JSON.parse(arm64.stdout) as { loosened: Entry[] }).loosened.some((e) => e.syscall === 'ptrace'));
    // An index and the file of its amd64 entry: no change.
    assert.equal((await spoke(['diff', old, file('v1c.json', v1), '--plain-http', '--platform', 'linux/amd64'])).code, 0);
    // No linux/arm64 in this index: an error naming the platform (exit 2), never a comparison.
    const amdOnly = await pushIndex('amd-only', v1, undefined);
    const missing = await spoke(['diff', amdOnly, next, '--plain-http', '--platform', 'linux/arm64']);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /linux\/arm64/);
    assert.equal((await spoke(['diff', old, next, '--platform', 'amd64'])).code, 2);
    // inspect lists the index's platforms.
    const inspected = JSON.parse((await spoke(['inspect', next, '--plain-http', '--json'])).stdout) as { manifests: { platform: string }[] };
    assert.deepEqual(inspected.manifests.map((m) => m.platform).sort(), ['linux/amd64', 'linux/arm64']);
  });

  it('AppArmor: by path and permission', async () => {
    const a1 = { filesystem: { readOnlyPaths: ['/etc/**'], readWritePaths: ['/tmp/**'] }, capability: { allowedCapabilities: ['CHOWN'] } };
    const a2 = { filesystem: { readOnlyPaths: ['/etc/**'], readWritePaths: ['/tmp/**', '/var/lib/app/**'] }, capability: { allowedCapabilities: [] }, network: { allowRaw: true } };
    const r = await spoke(['diff', '--kind', 'apparmor', file('a1.json', a1), file('a2.json', a2), '--json']);
    assert.equal(r.code, 1, r.stderr);
    const out = JSON.parse(r.stdout) as { loosened: { kind: string; path?: string; permission?: string; new: unknown }[]; tightened: { kind: string; capability?: string }[]; changed: unknown[] };
    assert.deepEqual(Object.keys(out), ['loosened', 'tightened', 'changed'], 'the shape --help promises, as for seccomp');
    assert.deepEqual(out.changed, [], 'an AppArmor permission is granted or not: nothing changes at equal strictness');
    assert.deepEqual(out.loosened.map((c) => c.path ?? c.permission).sort(), ['/var/lib/app/**', 'allowRaw']);
    assert.deepEqual(out.tightened.map((c) => c.capability), ['CHOWN']);
    assert.equal((await spoke(['diff', '--kind', 'apparmor', file('a2.json', a2), file('a1.json', a1)])).code, 1, 'CHOWN regained');
    assert.equal((await spoke(['diff', '--kind', 'apparmor', file('a1.json', a1), file('a1b.json', a1)])).code, 0);
  });
});
