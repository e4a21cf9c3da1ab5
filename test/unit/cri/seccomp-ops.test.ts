// The shim's seccomp operations on the node's own architecture: what the merge writes must be
// what the node's filter enforces.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { seccompOpsFor } from '../../../src/cri/seccomp.js';
import { decodeSeccomp } from '../../../src/profiles/seccomp/index.js';
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
});
