// Deterministic seccomp inputs shared by the golden tests and the /tmp benchmarks: a realistic
// ~350-syscall profile (what SPO records for a typical service) and the node baseline.

import { readFileSync } from 'node:fs';
import { defaultBaselinePath } from '../../../src/config/node-config.js';
import type { SeccompProfile, SeccompSyscall } from '../../../src/profiles/seccomp/index.js';

export function baselineBytes(): Buffer {
  return readFileSync(defaultBaselinePath());
}

/** ~350 syscalls: ERRNO by default, one allow list, a few conditional families like real recordings. */
export function realisticProfile(): SeccompProfile {
  const baseline = JSON.parse(baselineBytes().toString('utf8')) as { syscalls: { names: string[]; args?: unknown[] }[] };
  const allowed = baseline.syscalls.find((s) => s.args === undefined && s.names.length > 100)!.names;
  const conditional = new Set(['socket', 'personality', 'clone', 'ioctl', 'prctl', 'fcntl', 'setsockopt', 'kill']);
  const plain = allowed.filter((n) => !conditional.has(n)).slice(0, 340);
  const syscalls: SeccompSyscall[] = [{ names: plain, action: 'SCMP_ACT_ALLOW' }];
  for (const v of [1n, 2n, 10n, 16n]) syscalls.push({ names: ['socket'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value: v, op: 'SCMP_CMP_EQ' }] });
  for (const v of [0n, 8n, 0x20000n, 0x20008n, 0xffffffffn]) syscalls.push({ names: ['personality'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value: v, op: 'SCMP_CMP_EQ' }] });
  syscalls.push({ names: ['clone'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value: 2114060288n, valueTwo: 0n, op: 'SCMP_CMP_MASKED_EQ' }] });
  for (const v of [0x5401n, 0x5413n, 0x541bn, 0x8912n, 0x8933n]) syscalls.push({ names: ['ioctl'], action: 'SCMP_ACT_ALLOW', args: [{ index: 1, value: v, op: 'SCMP_CMP_EQ' }] });
  syscalls.push({ names: ['prctl'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value: 22n, op: 'SCMP_CMP_NE' }] });
  syscalls.push({ names: ['fcntl'], action: 'SCMP_ACT_ALLOW', args: [{ index: 1, value: 1024n, op: 'SCMP_CMP_LT' }] });
  syscalls.push({ names: ['setsockopt'], action: 'SCMP_ACT_ALLOW', args: [{ index: 1, value: 1n, op: 'SCMP_CMP_EQ' }, { index: 2, value: 2n, op: 'SCMP_CMP_EQ' }] });
  syscalls.push({ names: ['kill'], action: 'SCMP_ACT_ERRNO', errnoRet: 13, args: [{ index: 1, value: 9n, op: 'SCMP_CMP_EQ' }] });
  syscalls.push({ names: ['kill'], action: 'SCMP_ACT_ALLOW', args: [{ index: 1, value: 9n, op: 'SCMP_CMP_NE' }] });
  syscalls.push({ names: ['mkdir', 'mkdirat', 'unshare'], action: 'SCMP_ACT_ERRNO', errnoRet: 1 });
  return { defaultAction: 'SCMP_ACT_ERRNO', architectures: ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32'], syscalls };
}

/** JSON with bigints as decimal strings, for hashing outcomes. */
export function stable(v: unknown): string {
  return JSON.stringify(v, (_, x: unknown) => (typeof x === 'bigint' ? `${x}n` : x));
}
