// The shim's seccomp operations on the node's own architecture: what the merge writes must be
// what the node's filter enforces.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { seccompOpsFor } from '../../../src/cri/seccomp.js';
import { decodeSeccomp, validateArtifact, validateStrict } from '../../../src/profiles/seccomp/index.js';
import { spokeError } from '../../helpers/assert.js';

const profile = (o: object) => decodeSeccomp(Buffer.from(JSON.stringify(o)));

describe('seccompOpsFor', () => {
  // The baseline denies AF_PACKET sockets (domain 17); the artifact allows socket outright.
  const baseline = profile({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['socket'], action: 'SCMP_ACT_ERRNO', args: [{ index: 0, value: 17, op: 'SCMP_CMP_EQ' }] }] });
  const artifact = profile({ defaultAction: 'SCMP_ACT_ERRNO', syscalls: [{ names: ['socket', 'read', 'write'], action: 'SCMP_ACT_ALLOW' }] });

  it('refuses a merge that conditions a socket or IPC call on a node whose own architecture multiplexes them', () => {
    // On ppc64le and s390x libseccomp also filters socketcall(2), where it cannot see socket's
    // arguments: the merged "allow socket unless domain 17" would allow socketcall(SYS_SOCKET) for any domain.
    for (const arch of ['SCMP_ARCH_PPC64LE', 'SCMP_ARCH_S390X'] as const) {
      assert.throws(() => seccompOpsFor(arch).intersect(baseline, undefined, artifact), spokeError({ code: 'FailedPrecondition', reason: 'ARCH_UNENFORCEABLE' }));
      assert.throws(() => seccompOpsFor(arch).audit(baseline, undefined, artifact), spokeError({ code: 'FailedPrecondition', reason: 'ARCH_UNENFORCEABLE' }));
    }
  });

  it('merges it on x86_64 and arm64, where the multiplexing architectures are left out of the filter', () => {
    for (const arch of ['SCMP_ARCH_X86_64', 'SCMP_ARCH_AARCH64'] as const) {
      const r = seccompOpsFor(arch).intersect(baseline, undefined, artifact);
      assert.match(r.bytes.toString(), /"socket"/);
    }
    // An unconditional rule loses nothing through socketcall(2): merged on every architecture.
    const plain = profile({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['socket'], action: 'SCMP_ACT_ERRNO' }] });
    assert.doesNotThrow(() => seccompOpsFor('SCMP_ARCH_PPC64LE').intersect(plain, undefined, artifact));
  });

  it('refuses a merge whose inputs or output compare a value wider than 32 bits on a node whose own architecture is 32-bit', () => {
    // There libseccomp compares the low word only: the baseline's `mkdir if arg1 >= 2^32` is
    // `arg1 >= 0` (every mkdir refused), and no merge can drop the node's own architecture.
    const wideBaseline = profile({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['mkdir'], action: 'SCMP_ACT_ERRNO', args: [{ index: 1, value: 2 ** 32, op: 'SCMP_CMP_GE' }] }] });
    const narrowBaseline = profile({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['mkdir'], action: 'SCMP_ACT_ERRNO', args: [{ index: 1, value: 2 ** 32 - 1, op: 'SCMP_CMP_GE' }] }] });
    const open = profile({ defaultAction: 'SCMP_ACT_ALLOW' });
    for (const arch of ['SCMP_ARCH_ARM', 'SCMP_ARCH_X86', 'SCMP_ARCH_MIPSEL'] as const) {
      assert.throws(() => seccompOpsFor(arch).intersect(wideBaseline, undefined, open), spokeError({ code: 'FailedPrecondition', reason: 'ARCH_UNENFORCEABLE' }), arch);
      assert.throws(() => seccompOpsFor(arch).audit(wideBaseline, undefined, open), spokeError({ code: 'FailedPrecondition', reason: 'ARCH_UNENFORCEABLE' }), arch);
      assert.throws(() => seccompOpsFor(arch).intersect(open, wideBaseline, open), spokeError({ code: 'FailedPrecondition', reason: 'ARCH_UNENFORCEABLE' }), `${arch}, as a base`);
      assert.doesNotThrow(() => seccompOpsFor(arch).intersect(narrowBaseline, undefined, open), arch);
    }
    // A 64-bit node drops the 32-bit architectures instead (intersect.ts).
    assert.doesNotThrow(() => seccompOpsFor('SCMP_ARCH_X86_64').intersect(wideBaseline, undefined, open));
  });

  describe('a carrier (socketcall, ipc) looser than a call it carries', () => {
    // libseccomp writes `ERRNO socket` for socketcall(2) too (`socketcall(SYS_SOCKET, …)`), but an
    // unconditional rule on socketcall overrides it, and a carried call at the default action gets
    // no such rule: on a multiplexing architecture socketcall(SYS_SOCKET) then gets socketcall's
    // verdict. Checked on the kernel: int 0x80 socketcall(SYS_SOCKET) returned a socket.
    const archs = ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32'];
    const archsOf = (r: { bytes: Buffer }) => (JSON.parse(r.bytes.toString()) as { architectures?: string[] }).architectures ?? [];
    const allowList = profile({ defaultAction: 'SCMP_ACT_ERRNO', architectures: archs, syscalls: [{ names: ['read', 'write', 'socket', 'socketcall', 'ipc', 'shmget'], action: 'SCMP_ACT_ALLOW' }] });
    const cases: [string, object, object][] = [
      ['an artifact denying socket and connect, under a baseline allowing socketcall', allowList, { defaultAction: 'SCMP_ACT_ALLOW', architectures: archs, syscalls: [{ names: ['socket', 'connect'], action: 'SCMP_ACT_ERRNO' }] }],
      ['an artifact denying shmget, under a baseline allowing ipc', allowList, { defaultAction: 'SCMP_ACT_ALLOW', architectures: archs, syscalls: [{ names: ['shmget'], action: 'SCMP_ACT_ERRNO' }] }],
      ['an artifact killing socket', allowList, { defaultAction: 'SCMP_ACT_ALLOW', architectures: archs, syscalls: [{ names: ['socket'], action: 'SCMP_ACT_KILL_PROCESS' }] }],
      ['a baseline denying socket, under an artifact allowing socketcall', { defaultAction: 'SCMP_ACT_ALLOW', architectures: archs, syscalls: [{ names: ['socket'], action: 'SCMP_ACT_ERRNO' }] }, allowList],
      // The artifact denies ipc; the merge leaves ipc at the default (no rule), and libseccomp
      // writes the baseline's ALLOW semop as ipc(SEMOP): ia32 semop went through.
      [
        'an artifact denying ipc, under a baseline allowing ipc and semop',
        { defaultAction: 'SCMP_ACT_ERRNO', architectures: archs, syscalls: [{ names: ['ipc', 'semop', 'read'], action: 'SCMP_ACT_ALLOW' }] },
        { defaultAction: 'SCMP_ACT_ALLOW', architectures: archs, syscalls: [{ names: ['ipc'], action: 'SCMP_ACT_ERRNO' }] },
      ],
      // The kernel ignores ipc(2)'s version bits, libseccomp compares them: ipc(SHMGET | 1 << 16)
      // passed the rule written for ERRNO shmget.
      ['an artifact denying shmget, under an open baseline', { defaultAction: 'SCMP_ACT_ALLOW', architectures: archs }, { defaultAction: 'SCMP_ACT_ALLOW', architectures: archs, syscalls: [{ names: ['shmget'], action: 'SCMP_ACT_ERRNO' }] }],
    ];
    for (const [name, b, a] of cases) {
      it(`${name}: the multiplexing architectures are left out of the filter (x86_64), or the merge refused (ppc64le)`, () => {
        const bl = b === allowList ? allowList : profile(b);
        const art = a === allowList ? allowList : profile(a);
        const r = seccompOpsFor('SCMP_ARCH_X86_64').intersect(bl, undefined, art);
        assert.ok(!archsOf(r).includes('SCMP_ARCH_X86'), `x86 left in: ${JSON.stringify(archsOf(r))}`);
        assert.ok(archsOf(r).includes('SCMP_ARCH_X86_64'));
        assert.ok(!archsOf(seccompOpsFor('SCMP_ARCH_X86_64').audit(bl, undefined, art)).includes('SCMP_ARCH_X86'));
        assert.throws(() => seccompOpsFor('SCMP_ARCH_PPC64LE').intersect(bl, undefined, art), spokeError({ code: 'FailedPrecondition', reason: 'ARCH_UNENFORCEABLE' }));
      });
    }

    it('a family judged as one (the carrier and every call it carries) keeps them', () => {
      const open = profile({ defaultAction: 'SCMP_ACT_ALLOW', architectures: archs });
      const socketCalls = ['socket', 'bind', 'connect', 'listen', 'accept', 'accept4', 'getsockname', 'getpeername', 'socketpair', 'send', 'recv', 'sendto', 'recvfrom', 'shutdown', 'setsockopt', 'getsockopt', 'sendmsg', 'recvmsg', 'recvmmsg', 'sendmmsg'];
      const both = profile({ defaultAction: 'SCMP_ACT_ALLOW', architectures: archs, syscalls: [{ names: ['socketcall', ...socketCalls], action: 'SCMP_ACT_ERRNO' }] });
      const r = seccompOpsFor('SCMP_ARCH_X86_64').intersect(open, undefined, both);
      assert.ok(archsOf(r).includes('SCMP_ARCH_X86'));
      assert.doesNotThrow(() => seccompOpsFor('SCMP_ARCH_PPC64LE').intersect(open, undefined, both));
      // The allow-list above allows ipc outright but not semop: its merges leave x86 out too.
      assert.ok(!archsOf(seccompOpsFor('SCMP_ARCH_X86_64').intersect(allowList, undefined, both)).includes('SCMP_ARCH_X86'));
    });
  });

  it('refuses a merge whose effective profile would answer prctl(PR_CAPBSET_DROP) with EINVAL, though each input passes: a rule the merge cannot write exactly takes the strictest verdict of its inputs', () => {
    const shipped = decodeSeccomp(readFileSync(new URL('../../../../policy/seccomp-baseline.json', import.meta.url)));
    // A pod base that logs prctl(·, 5) and an artifact that refuses PR_SET_PDEATHSIG (1) with EINVAL:
    // neither touches PR_CAPBSET_DROP (24), but together they are written as prctl → ERRNO(EINVAL).
    const base = profile({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['prctl'], action: 'SCMP_ACT_LOG', args: [{ index: 1, value: 5, op: 'SCMP_CMP_EQ' }] }] });
    const einvalOnPdeathsig = profile({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['prctl'], action: 'SCMP_ACT_ERRNO', errnoRet: 22, args: [{ index: 0, value: 1, op: 'SCMP_CMP_EQ' }] }] });
    validateStrict(base);
    validateArtifact(einvalOnPdeathsig);
    assert.throws(() => seccompOpsFor('SCMP_ARCH_X86_64').intersect(shipped, base, einvalOnPdeathsig), spokeError({ code: 'FailedPrecondition', reason: 'MERGE_UNSAFE' }));
  });
});
