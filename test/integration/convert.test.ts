// `spoke profile convert` on the real containers-common profile Debian ships (docs/convert.md):
// the output passes the artifact rules and, call by call, decides what the source decides for
// the given architecture and capabilities (the source read here independently, by moby's rules);
// runc loads it. SPO objects in YAML, and the hints of validate and push.

import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { decodeSeccomp, evaluate, validateArtifact, type SeccompProfile, type SeccompSyscall } from '../../src/profiles/seccomp/index.js';
import { spoke } from '../helpers/cli.js';
import { createRuncSandbox, type RuncSandbox } from '../helpers/runc.js';

const SOURCE = '/usr/share/containers/seccomp.json';
const CRI_DEFAULT = ['CHOWN', 'DAC_OVERRIDE', 'FSETID', 'FOWNER', 'MKNOD', 'NET_RAW', 'SETGID', 'SETUID', 'SETFCAP', 'SETPCAP', 'NET_BIND_SERVICE', 'SYS_CHROOT', 'KILL', 'AUDIT_WRITE'];

interface DockerEntry {
  names: string[];
  action: SeccompSyscall['action'];
  errnoRet?: number;
  args?: { index: number; value: number; valueTwo?: number; op: string }[] | null;
  includes?: { arches?: string[]; caps?: string[] };
  excludes?: { arches?: string[]; caps?: string[] };
}

/** The source as the runtime would apply it on `arch` with `caps`: moby's includes/excludes rules. */
function readSource(source: { defaultAction: SeccompSyscall['action']; defaultErrnoRet?: number; syscalls: DockerEntry[] }, arch: string, caps: string[]): SeccompProfile {
  const has = (c: string) => caps.includes(c.replace(/^CAP_/, ''));
  const applies = (e: DockerEntry) =>
    !(e.excludes?.arches ?? []).includes(arch) &&
    !(e.excludes?.caps ?? []).some(has) &&
    ((e.includes?.arches ?? []).length === 0 || e.includes!.arches!.includes(arch)) &&
    (e.includes?.caps ?? []).every(has);
  return {
    defaultAction: source.defaultAction,
    ...(source.defaultErrnoRet === undefined ? {} : { defaultErrnoRet: source.defaultErrnoRet }),
    syscalls: source.syscalls.filter(applies).map((e) => ({
      names: e.names,
      action: e.action,
      ...(e.errnoRet === undefined ? {} : { errnoRet: e.errnoRet }),
      ...(e.args ? { args: e.args.map((a) => ({ index: a.index, op: a.op as 'SCMP_CMP_EQ', value: BigInt(a.value), valueTwo: BigInt(a.valueTwo ?? 0) })) } : {}),
    })),
  };
}

describe('spoke profile convert', () => {
  let dir: string;
  let runc: RuncSandbox;
  const source = JSON.parse(readFileSync(SOURCE, 'utf8')) as { defaultAction: SeccompSyscall['action']; defaultErrnoRet?: number; syscalls: DockerEntry[] };
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'spoke-convert-'));
    runc = createRuncSandbox();
  });
  after(() => {
    runc?.cleanup();
    rmSync(dir, { recursive: true, force: true });
  });

  const convert = async (args: string[]) => {
    const r = await spoke(['profile', 'convert', ...args]);
    assert.equal(r.code, 0, r.stderr);
    return { profile: decodeSeccomp(Buffer.from(r.stdout)), stderr: r.stderr, text: r.stdout };
  };

  for (const [arch, caps] of [
    ['amd64', CRI_DEFAULT],
    ['amd64', [...CRI_DEFAULT, 'SYS_ADMIN', 'SYS_PTRACE']],
    ['arm64', CRI_DEFAULT],
  ] as const) {
    it(`${arch} with ${caps.length} capabilities: every call decided as the source decides it`, async () => {
      const { profile } = await convert([SOURCE, '--arch', arch, '--caps', caps.join(',')]);
      validateArtifact(profile);
      const expected = readSource(source, arch, [...caps]);
      const names = new Set(source.syscalls.flatMap((e) => e.names));
      names.add('not_a_syscall');
      const values = [0n, 1n, 8n, 9n, 16n, 131072n, 0xffffffffn];
      let calls = 0;
      for (const syscall of names) {
        for (const a0 of values) {
          for (const a2 of [0n, 9n]) {
            const call = { syscall, args: [a0, 0n, a2] };
            assert.deepEqual(evaluate(profile, call), evaluate(expected, call), `${syscall}(${a0}, 0, ${a2})`);
            calls++;
          }
        }
      }
      assert.ok(calls > 4000, `${calls} calls compared`);
    });
  }

  it('spot checks: architecture, capabilities, the setns conflict said on stderr, architectures from archMap', async () => {
    const { profile, stderr } = await convert([SOURCE]);
    const verdict = (syscall: string, args: bigint[] = []) => evaluate(profile, { syscall, args });
    assert.equal(verdict('arch_prctl').action, 'SCMP_ACT_ALLOW');
    assert.deepEqual(verdict('sync_file_range2'), { action: 'SCMP_ACT_ERRNO', errno: 38 }, 'ppc64le only: the default, ENOSYS');
    assert.equal(verdict('chroot').action, 'SCMP_ACT_ALLOW', 'SYS_CHROOT is a default capability');
    assert.deepEqual(verdict('bpf'), { action: 'SCMP_ACT_ERRNO', errno: 1 }, 'no SYS_ADMIN');
    assert.deepEqual(verdict('setns'), { action: 'SCMP_ACT_ERRNO', errno: 1 }, 'general allow vs deny without SYS_ADMIN: the most restrictive');
    assert.match(stderr, /^note: setns: .*conflicting unconditional rules.*SCMP_ACT_ERRNO/m);
    assert.equal(verdict('personality', [8n]).action, 'SCMP_ACT_ALLOW');
    assert.equal(verdict('personality', [9n]).action, 'SCMP_ACT_ERRNO');
    assert.deepEqual(profile.architectures, ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32']);
    const arm = await convert([SOURCE, '--arch', 'arm64']);
    assert.deepEqual(arm.profile.architectures, ['SCMP_ARCH_AARCH64', 'SCMP_ARCH_ARM']);
    assert.equal(evaluate(arm.profile, { syscall: 'arm_fadvise64_64', args: [] }).action, 'SCMP_ACT_ALLOW');
    assert.equal(evaluate(arm.profile, { syscall: 'arch_prctl', args: [] }).action, 'SCMP_ACT_ERRNO');
  });

  it('runc loads the converted profile and a shell workload runs under it', async () => {
    const { text } = await convert([SOURCE]);
    const r = await runc.run({ args: ['/bin/sh', '-c', 'mkdir /tmp/x && chmod 700 /tmp/x && echo made'], seccompJson: text });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, 'made\n');
  });

  it('--output writes the file; validate and push of the source name the convert command', async () => {
    const out = join(dir, 'cc.json');
    const r = await spoke(['profile', 'convert', SOURCE, '--output', out]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, '');
    assert.equal((await spoke(['profile', 'validate', '--artifact', out])).code, 0);
    const v = await spoke(['profile', 'validate', SOURCE]);
    assert.equal(v.code, 1);
    assert.match(v.stderr, /^SecurityProfileInvalid: .*spoke profile convert FILE/);
    const p = await spoke(['push', SOURCE, '127.0.0.1:1/never/contacted:v1', '--kind', 'seccomp', '--plain-http']);
    assert.equal(p.code, 1);
    assert.match(p.stderr, /spoke profile convert FILE/);
  });

  it('a Security Profiles Operator SeccompProfile in YAML: spec becomes the profile; baseProfileName is refused by name', async () => {
    const crd = join(dir, 'spo.yaml');
    writeFileSync(
      crd,
      [
        'apiVersion: security-profiles-operator.x-k8s.io/v1beta1',
        'kind: SeccompProfile',
        'metadata: {name: web, namespace: team-a}',
        'spec:',
        '  defaultAction: SCMP_ACT_ERRNO',
        '  architectures: [SCMP_ARCH_X86_64]',
        '  syscalls:',
        '  - action: SCMP_ACT_ALLOW',
        '    names: [read, write, exit_group]',
        '  - action: SCMP_ACT_ALLOW',
        '    names: [personality]',
        '    args: [{index: 0, value: 18446744073709551615, op: SCMP_CMP_EQ}]',
        '',
      ].join('\n'),
    );
    const { profile } = await convert([crd]);
    assert.equal(evaluate(profile, { syscall: 'write', args: [] }).action, 'SCMP_ACT_ALLOW');
    assert.equal(evaluate(profile, { syscall: 'personality', args: [(1n << 64n) - 1n] }).action, 'SCMP_ACT_ALLOW', 'uint64 exact');
    assert.equal(evaluate(profile, { syscall: 'personality', args: [(1n << 64n) - 2n] }).action, 'SCMP_ACT_ERRNO');
    writeFileSync(crd, readFileSync(crd, 'utf8').replace('spec:\n', 'spec:\n  baseProfileName: runc-v1.1.0\n'));
    const bad = await spoke(['profile', 'convert', crd]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /^SecurityProfileInvalid: spec\.baseProfileName: .*runc-v1\.1\.0.*cannot be resolved offline/);
  });

  it('a runtime-spec profile needs no conversion: a usage-level refusal, nothing written', async () => {
    const plain = join(dir, 'plain.json');
    writeFileSync(plain, JSON.stringify({ defaultAction: 'SCMP_ACT_ALLOW' }));
    const out = join(dir, 'never.json');
    const r = await spoke(['profile', 'convert', plain, '--output', out]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^InvalidArgument: /);
    assert.equal(existsSync(out), false);
  });
});
