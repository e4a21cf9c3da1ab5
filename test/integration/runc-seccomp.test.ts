// test-group: kernel-log (reads or changes the kernel log and its printk rate limit: runs alone, test/run.sh)
// Proof under a real kernel: effective profiles from intersect() loaded by Debian runc
// (KEP-6061 §4: the result permits a call only if every input does).
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PrintkRateLimit } from '../../src/recorder/source.js';
import { waitFor } from '../helpers/wait.js';
import { after, before, describe, test } from 'node:test';
import { decodeSeccomp, intersect, validateArtifact, type SeccompProfile } from '../../src/profiles/seccomp/index.js';
import { SpokeError } from '../../src/core/errors.js';
import { createRuncSandbox, readKernelLog, runcUnavailableReason, type RuncSandbox } from '../helpers/runc.js';
import { requireTool } from '../helpers/skip.js';

const skip = requireTool(runcUnavailableReason());
const X86: Pick<SeccompProfile, 'architectures'> = { architectures: ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32'] };
const baseline = decodeSeccomp(readFileSync(new URL('../../../policy/seccomp-baseline.json', import.meta.url)));

/** A script that reports each step instead of stopping at the first failure. */
const SCRIPT = [
  'echo start',
  'if mkdir /tmp/d; then echo MKDIR_OK; else echo MKDIR_DENIED; fi',
  'mkdir -p /tmp/e 2>/dev/null; touch /tmp/f && echo TOUCH_OK',
  'if chmod 600 /tmp/f; then echo CHMOD_OK; else echo CHMOD_DENIED; fi',
  'echo end',
].join('; ');

describe('seccomp merge under runc', { skip }, () => {
  let sandbox: RuncSandbox;
  before(() => {
    sandbox = createRuncSandbox();
  });
  after(() => sandbox?.cleanup());

  const run = (profile: SeccompProfile | Buffer, args = ['/bin/sh', '-c', SCRIPT]) =>
    sandbox.run({ args, seccompJson: Buffer.isBuffer(profile) ? profile : intersect(profile, undefined, profile).bytes });

  test('the shipped baseline runs a busybox shell workload', async () => {
    const r = await run(baseline);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /start\nMKDIR_OK\nTOUCH_OK\nCHMOD_OK\nend\n/);
  });

  test('artifact allows everything, baseline denies mkdir: mkdir fails with EPERM', async () => {
    const denyMkdir: SeccompProfile = { defaultAction: 'SCMP_ACT_ALLOW', ...X86, syscalls: [{ names: ['mkdir', 'mkdirat'], action: 'SCMP_ACT_ERRNO' }] };
    const artifact: SeccompProfile = { defaultAction: 'SCMP_ACT_ALLOW', ...X86, syscalls: [{ names: ['mkdir', 'mkdirat'], action: 'SCMP_ACT_ALLOW' }] };
    const merged = intersect(denyMkdir, undefined, artifact);
    assert.ok(merged.constrained.some((c) => c.kind === 'syscall' && c.syscall === 'mkdir' && c.by === 'baseline'));
    const r = await run(merged.bytes);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /MKDIR_DENIED/);
    assert.match(r.stderr, /mkdir: can't create directory '\/tmp\/d': Operation not permitted/);
    assert.match(r.stdout, /TOUCH_OK\nCHMOD_OK\nend/);
  });

  test('artifact denies chmod, baseline allows it: chmod fails; touch and echo still work', async () => {
    const artifact: SeccompProfile = { defaultAction: 'SCMP_ACT_ALLOW', ...X86, syscalls: [{ names: ['chmod', 'fchmod', 'fchmodat', 'fchmodat2'], action: 'SCMP_ACT_ERRNO' }] };
    const merged = intersect(baseline, undefined, artifact);
    const r = await run(merged.bytes);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /start\nMKDIR_OK\nTOUCH_OK\nCHMOD_DENIED\nend\n/);
    assert.match(r.stderr, /chmod: \/tmp\/f: Operation not permitted/);
  });

  test('a baseline denial the artifact cannot lift (unshare) holds in the merged profile', async () => {
    // A user namespace needs no capability, so the control run proves the denial is seccomp's.
    const args = ['/bin/sh', '-c', 'if /bin/busybox unshare -U true; then echo UNSHARE_OK; else echo UNSHARE_DENIED; fi'];
    const artifact: SeccompProfile = { defaultAction: 'SCMP_ACT_ALLOW' };
    const control = await run(artifact, args);
    assert.match(control.stdout, /UNSHARE_OK/, control.stderr);
    const merged = await run(intersect(baseline, undefined, artifact).bytes, args);
    assert.match(merged.stdout, /UNSHARE_DENIED/);
  });

  test('runc answers ENOSYS above the highest call a profile names: the merge names every call its inputs name, so a call both inputs refuse with EPERM is not answered ENOSYS', async () => {
    // What runc's init and a static busybox shell need here, all numbered below unshare (272 on
    // x86_64). Each input also allows one call numbered far above it (memfd_secret 447,
    // process_mrelease 448) that the other does not, so the merge refuses both: at its default.
    const needed = ['access', 'arch_prctl', 'brk', 'capget', 'capset', 'chdir', 'clone', 'close', 'dup', 'dup2', 'execve', 'exit', 'exit_group', 'fchdir', 'fcntl', 'fstat', 'fstatfs', 'futex', 'getcwd', 'getdents64', 'getegid', 'geteuid', 'getgid', 'getpid', 'getppid', 'gettid', 'getuid', 'ioctl', 'lseek', 'lstat', 'madvise', 'mmap', 'mprotect', 'munmap', 'nanosleep', 'newfstatat', 'open', 'openat', 'prctl', 'read', 'readlink', 'rt_sigaction', 'rt_sigprocmask', 'rt_sigreturn', 'sched_yield', 'set_tid_address', 'setgid', 'setgroups', 'setuid', 'sigaltstack', 'stat', 'statfs', 'tgkill', 'uname', 'vfork', 'wait4', 'write'];
    const allowing = (high: string): SeccompProfile => ({ defaultAction: 'SCMP_ACT_ERRNO', architectures: ['SCMP_ARCH_X86_64'], syscalls: [{ names: [...needed, high], action: 'SCMP_ACT_ALLOW' }] });
    const args = ['/bin/sh', '-c', '/bin/busybox unshare -U true; echo rc=$?'];
    const [a, b] = [allowing('memfd_secret'), allowing('process_mrelease')];
    for (const input of [a, b]) {
      const r = await sandbox.run({ args, seccompJson: JSON.stringify(input) });
      assert.match(r.stderr, /unshare\(0x10000000\): Operation not permitted/, 'each input alone: EPERM');
    }
    const merged = await run(intersect(b, undefined, a).bytes, args);
    assert.equal(merged.status, 0, merged.stderr);
    assert.match(merged.stderr, /unshare\(0x10000000\): Operation not permitted/);
    assert.match(merged.stdout, /rc=1/);
  });

  test('why ERRNO(0) is refused: a filter runc loads before it drops privileges makes the drop pretend, and the container keeps uid 0 and every capability', async () => {
    // Who the process is: its uid and effective capabilities, from its own status.
    const script = ['/bin/sh', '-c', 'grep -E "^(Uid|CapEff):" /proc/self/status'];
    const dropping = ['setuid', 'setgid', 'setgroups', 'setresuid', 'setresgid', 'capset', 'prctl'];
    const silent: SeccompProfile = { defaultAction: 'SCMP_ACT_ALLOW', ...X86, syscalls: [{ names: dropping, action: 'SCMP_ACT_ERRNO', errnoRet: 0 }] };
    assert.throws(() => validateArtifact(silent), (e) => e instanceof SpokeError && e.reason === 'PROFILE_INVALID' && e.context.path === 'syscalls[0].errnoRet');
    // As a pod with no allowPrivilegeEscalation setting runs: no_new_privs off, a non-root user.
    const asPod = { args: script, user: { uid: 1000, gid: 1000 }, noNewPrivileges: false, extraBinaries: [{ name: 'grep' }] };
    const confined = await sandbox.run({ ...asPod, seccompJson: intersect(baseline, undefined, baseline).bytes });
    assert.equal(confined.status, 0, confined.stderr);
    assert.match(confined.stdout, /^Uid:\s+1000\s/m);
    assert.match(confined.stdout, /^CapEff:\s+0+$/m);
    // The merge alone keeps the artifact's ERRNO(0) (stricter than the baseline's ALLOW).
    const fooled = await sandbox.run({ ...asPod, seccompJson: intersect(baseline, undefined, silent).bytes });
    assert.equal(fooled.status, 0, fooled.stderr);
    assert.match(fooled.stdout, /^Uid:\s+0\s/m, 'the privilege drop pretended');
    assert.doesNotMatch(fooled.stdout, /^CapEff:\s+0+$/m);
  });

  test('why ERRNO(EINVAL) on prctl(PR_CAPBSET_DROP) is refused: runc reads it as a capability this kernel lacks and keeps it in the bounding set', async () => {
    const script = ['/bin/sh', '-c', 'grep -E "^(Uid|CapBnd):" /proc/self/status'];
    const keep: SeccompProfile = { defaultAction: 'SCMP_ACT_ALLOW', ...X86, syscalls: [{ names: ['prctl'], action: 'SCMP_ACT_ERRNO', errnoRet: 22, args: [{ index: 0, value: 24n, op: 'SCMP_CMP_EQ' }] }] };
    assert.throws(() => validateArtifact(keep), (e) => e instanceof SpokeError && e.reason === 'PROFILE_INVALID' && e.context.path === 'syscalls[0].errnoRet');
    // A root pod with the runtime's default capabilities, no_new_privs off.
    const asPod = { args: script, user: { uid: 0, gid: 0 }, noNewPrivileges: false, extraBinaries: [{ name: 'grep' }] };
    const bounded = (out: string) => BigInt(`0x${/^CapBnd:\s+([0-9a-f]+)$/m.exec(out)?.[1] ?? '0'}`);
    const confined = await sandbox.run({ ...asPod, seccompJson: intersect(baseline, undefined, baseline).bytes });
    assert.equal(confined.status, 0, confined.stderr);
    const fooled = await sandbox.run({ ...asPod, seccompJson: intersect(baseline, undefined, keep).bytes });
    assert.equal(fooled.status, 0, fooled.stderr);
    const CAP_SYS_ADMIN = 1n << 21n;
    assert.equal(bounded(confined.stdout) & CAP_SYS_ADMIN, 0n, confined.stdout);
    assert.equal(bounded(fooled.stdout) & CAP_SYS_ADMIN, CAP_SYS_ADMIN, `the bounding set kept CAP_SYS_ADMIN: ${fooled.stdout}`);
  });

  test('SCMP_ACT_LOG lets the call through and the kernel writes an audit record (type=1326)', async () => {
    // A busybox copy under a unique name gives the audit record a comm we can find; busybox
    // runs argv[1] as the applet when its own name starts with "busybox". comm keeps 15 chars.
    const probe = `busybox${randomBytes(3).toString('hex')}`;
    const artifact: SeccompProfile = { defaultAction: 'SCMP_ACT_ALLOW', ...X86, syscalls: [{ names: ['mkdir', 'mkdirat'], action: 'SCMP_ACT_LOG' }] };
    const merged = intersect({ defaultAction: 'SCMP_ACT_ALLOW', ...X86 }, undefined, artifact);
    // kauditd prints through printk, whose rate limit (10 records per 5 s) would leave our record
    // queued behind whatever earlier tests logged: lifted for this test, as the recorder does.
    const printk = new PrintkRateLimit(join(mkdtempSync('/tmp/skr-printk-'), 'saved.json'));
    printk.lift();
    try {
      const r = await sandbox.run({ args: [`/bin/${probe}`, 'mkdir', '/tmp/logged'], seccompJson: merged.bytes, extraBinaries: [{ name: probe, copy: true }] });
      assert.equal(r.status, 0, r.stderr);
      // The tests run as root (like the recorder, which depends on these records): an unreadable
      // kernel log is a failure here, not a skip.
      assert.ok(readKernelLog() !== undefined, 'the kernel log cannot be read (dmesg failed)');
      // kauditd prints asynchronously: wait (bounded) for the record to appear.
      const pattern = new RegExp(`audit: type=1326 .*comm="${probe}".* syscall=(?:83|258) `);
      await waitFor(() => pattern.test(readKernelLog() ?? ''), { timeoutMs: 20_000, intervalMs: 50, what: `a type=1326 record of ${probe}` });
    } finally {
      printk.restore();
    }
  });
});
