// Syscall number → name for the records the recorders read: the audit `arch=` field and the
// x86 ABIs' tables (src/profiles/seccomp/syscall-numbers.ts). An x32 record is reported as unknown.

import { I386_SYSCALLS, X86_64_SYSCALLS } from '../profiles/seccomp/syscall-numbers.js';

/** AUDIT_ARCH_X86_64 = EM_X86_64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE. */
export const AUDIT_ARCH_X86_64 = 0xc000003e;
/** AUDIT_ARCH_I386 = EM_386 | __AUDIT_ARCH_LE. */
export const AUDIT_ARCH_I386 = 0x40000003;
/** Bit set in the syscall number of an x32 call (arch is still AUDIT_ARCH_X86_64). */
export const X32_SYSCALL_BIT = 0x40000000;

export type AuditArch = 'x86_64' | 'i386' | 'x32';

/** The audit `arch=` field (hex, as the kernel prints it) to the ABI we can name calls of. */
export function auditArch(arch: number, syscall: number): AuditArch | undefined {
  if (arch === AUDIT_ARCH_X86_64) return syscall >= X32_SYSCALL_BIT ? 'x32' : 'x86_64';
  if (arch === AUDIT_ARCH_I386) return 'i386';
  return undefined;
}

/** Name of syscall `nr` of the ABI, or undefined (unknown arch, x32, or an unassigned number). */
export function syscallName(arch: number, nr: number): string | undefined {
  switch (auditArch(arch, nr)) {
    case 'x86_64':
      return X86_64_SYSCALLS.get(nr);
    case 'i386':
      return I386_SYSCALLS.get(nr);
    default:
      return undefined;
  }
}
