// Golden cases: a few merges written out in full (inputs → effective profile bytes and the
// constraint log), so that a change in output fails with a readable diff. The randomised checks
// of the same code live in seccomp-properties.test.ts.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { evaluate, formatConstraint, intersect, type SeccompProfile } from '../../../src/profiles/seccomp/index.js';

/** A small node baseline: ERRNO(EPERM) unless listed. */
const BASELINE: SeccompProfile = {
  defaultAction: 'SCMP_ACT_ERRNO',
  defaultErrnoRet: 1,
  architectures: ['SCMP_ARCH_X86_64'],
  syscalls: [{ names: ['read', 'write', 'mkdir', 'personality'], action: 'SCMP_ACT_ALLOW' }],
};

const cases: { name: string; artifact: SeccompProfile; effective: string; log: string[] }[] = [
  {
    name: 'a deny-list artifact keeps its denial and gains the baseline default',
    artifact: { defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['mkdir'], action: 'SCMP_ACT_ERRNO', errnoRet: 38 }] },
    effective:
      '{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_ERRNO","errnoRet":38},{"names":["personality","read","write"],"action":"SCMP_ACT_ALLOW"}]}',
    log: ['default action: artifact SCMP_ACT_ALLOW, effective SCMP_ACT_ERRNO(errno 1) (by the node baseline)'],
  },
  {
    name: 'an allow-list artifact loses what the baseline does not allow',
    artifact: { defaultAction: 'SCMP_ACT_KILL_PROCESS', syscalls: [{ names: ['read', 'socket'], action: 'SCMP_ACT_ALLOW' }] },
    // mkdir, personality and write: named by the baseline, at the default here (runc's ENOSYS threshold).
    effective:
      '{"defaultAction":"SCMP_ACT_KILL_PROCESS","syscalls":[{"names":["mkdir","personality","write"],"action":"SCMP_ACT_KILL_PROCESS"},{"names":["socket"],"action":"SCMP_ACT_ERRNO"},{"names":["read"],"action":"SCMP_ACT_ALLOW"}]}',
    log: ['socket: artifact SCMP_ACT_ALLOW, effective SCMP_ACT_ERRNO(errno 1) (by the node baseline)'],
  },
  {
    name: 'an argument condition is kept as the allowing complement',
    artifact: {
      defaultAction: 'SCMP_ACT_ALLOW',
      syscalls: [{ names: ['personality'], action: 'SCMP_ACT_ERRNO', errnoRet: 1, args: [{ index: 0, value: 8n, op: 'SCMP_CMP_NE' }] }],
    },
    effective:
      '{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["mkdir","read","write"],"action":"SCMP_ACT_ALLOW"},{"names":["personality"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":8,"op":"SCMP_CMP_EQ"}]}]}',
    log: ['default action: artifact SCMP_ACT_ALLOW, effective SCMP_ACT_ERRNO(errno 1) (by the node baseline)'],
  },
];

for (const c of cases) {
  test(`golden: ${c.name}`, () => {
    const r = intersect(BASELINE, undefined, c.artifact);
    assert.equal(r.bytes.toString('utf8'), c.effective);
    assert.deepEqual(r.constrained.map(formatConstraint), c.log);
  });
}

test('golden: what the merged argument condition answers', () => {
  const { profile } = intersect(BASELINE, undefined, cases[2]!.artifact);
  assert.deepEqual(evaluate(profile, { syscall: 'personality', args: [8n, 0n, 0n] }), { action: 'SCMP_ACT_ALLOW' });
  assert.deepEqual(evaluate(profile, { syscall: 'personality', args: [9n, 0n, 0n] }), { action: 'SCMP_ACT_ERRNO', errno: 1 });
  assert.deepEqual(evaluate(profile, { syscall: 'socket', args: [0n, 0n, 0n] }), { action: 'SCMP_ACT_ERRNO', errno: 1 });
});
