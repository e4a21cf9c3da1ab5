import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { promisify } from 'node:util';
import { containerIdFromCgroup, cyclicDistance, passedOver, PidResolver, startTicksFromStat, type Attribution } from '../../../src/recorder/pids.js';
import { SyscallRecorder } from '../../../src/recorder/recorder.js';
import { AuditLogSource, preflight, PrintkRateLimit } from '../../../src/recorder/source.js';
import { isSpokeError } from '../../../src/core/errors.js';

const execFileP = promisify(execFile);

const ID_A = 'a'.repeat(64);
const ID_B = 'b'.repeat(64);
const ID_C = 'c'.repeat(64);
const line = (pid: number, nr: number, tsUs = 1) => `5,1,${tsUs},-;audit: type=1326 audit(1.000:1): pid=${pid} comm="x" exe="/x" sig=0 arch=c000003e syscall=${nr} compat=0 ip=0x1 code=0x7ffc0000`;
const fixed = (map: Record<number, Attribution>) => ({ attribute: (pid: number) => map[pid] ?? ({ kind: 'unattributed', reason: 'test' } as Attribution) });

describe('SyscallRecorder', () => {
  test('accumulates per container; host and unknown pids are kept apart', () => {
    const r = new SyscallRecorder(fixed({ 1: { kind: 'container', containerId: ID_A }, 2: { kind: 'container', containerId: ID_B }, 3: { kind: 'host' } }));
    for (const l of [line(1, 0), line(1, 0), line(1, 257), line(2, 83), line(3, 59), line(4, 59), 'noise', line(1, 999)]) r.addLine(l);
    assert.deepEqual([...r.syscalls(ID_A)].sort(), ['openat', 'read']);
    assert.deepEqual([...r.syscalls(ID_B)], ['mkdir']);
    assert.deepEqual(r.unnamedCalls(ID_A), ['c000003e:999']);
    assert.equal(r.stats.ignored, 1);
    assert.equal(r.stats.unattributed, 1);
    assert.deepEqual([...r.unattributedPids], [4]);
    assert.equal(r.stats.lines, 8);
  });

  test('a call the filter refused is not recorded: only what it may have let run (LOG, USER_NOTIF, TRACE, or a record without a code)', () => {
    const r = new SyscallRecorder(fixed({ 1: { kind: 'container', containerId: ID_A } }));
    // ERRNO(EPERM), KILL_PROCESS and TRAP, as the baseline inside the shim's logging profile may
    // answer unshare (272), bpf (321) and ptrace (101); mkdir (83) let through by LOG; mount (165)
    // handed to a listener and chroot (161) to a tracer, which may let them run; openat (257)
    // from a kernel without code=.
    r.addLine(line(1, 272).replace('code=0x7ffc0000', 'code=0x50001'));
    r.addLine(line(1, 321).replace('code=0x7ffc0000', 'code=0x80000000'));
    r.addLine(line(1, 101).replace('code=0x7ffc0000', 'code=0x30000'));
    r.addLine(line(1, 83));
    r.addLine(line(1, 165).replace('code=0x7ffc0000', 'code=0x7fc00000'));
    r.addLine(line(1, 161).replace('code=0x7ffc0000', 'code=0x7ff00007'));
    r.addLine(line(1, 257).replace(' code=0x7ffc0000', ''));
    assert.deepEqual([...r.syscalls(ID_A)].sort(), ['chroot', 'mkdir', 'mount', 'openat']);
    assert.equal(r.stats.refused, 3);
    assert.equal(r.stats.attributed, 7);
  });

  test('remembers which containers made a named 32-bit (ia32) call', () => {
    const r = new SyscallRecorder(fixed({ 1: { kind: 'container', containerId: ID_A }, 2: { kind: 'container', containerId: ID_B } }));
    r.addLine(line(1, 0));
    r.addLine(line(2, 0));
    r.addLine(line(2, 20).replace('arch=c000003e', 'arch=40000003').replace('compat=0', 'compat=1'));
    assert.deepEqual([r.madeIa32Calls(ID_A), r.madeIa32Calls(ID_B)], [false, true]);
    assert.ok(r.syscalls(ID_B).has('getpid'), 'named from the i386 table');
    r.forget(ID_B);
    assert.equal(r.madeIa32Calls(ID_B), false);
  });

  test('caps: containers, syscalls per container, unattributed pids', () => {
    const attr = { attribute: (pid: number): Attribution => (pid < 1000 ? { kind: 'container', containerId: String(pid).padStart(64, '0') } : { kind: 'unattributed', reason: 't' }) };
    const r = new SyscallRecorder(attr, { limits: { maxContainers: 3, maxSyscallsPerContainer: 2, maxUnattributedPids: 2 } });
    for (let pid = 1; pid <= 5; pid++) r.addLine(line(pid, 0));
    assert.equal(r.containers().length, 3);
    assert.equal(r.stats.droppedContainers, 2);
    // A dropped container is known as such: its recording is incomplete, not empty.
    assert.deepEqual([4, 5, 1].map((pid) => r.wasDropped(String(pid).padStart(64, '0'))), [true, true, false]);
    for (const nr of [1, 2, 3]) r.addLine(line(1, nr));
    assert.equal(r.syscalls(String(1).padStart(64, '0')).size, 2);
    assert.equal(r.stats.droppedSyscalls, 2);
    for (let pid = 1000; pid < 1010; pid++) r.addLine(line(pid, 0));
    assert.equal(r.unattributedPids.size, 2);
    assert.equal(r.stats.unattributed, 10);
  });

  test("the node's other containers cannot fill the table: those no poll wants are forgotten at the next prune", () => {
    const id = (pid: number) => String(pid).padStart(64, '0');
    const attr = { attribute: (pid: number): Attribution => ({ kind: 'container', containerId: id(pid) }) };
    const r = new SyscallRecorder(attr, { limits: { maxContainers: 4 } });
    // 1 is recorded; 2, 3 are other containers whose calls are logged (audit-mode rules, say).
    for (const pid of [1, 2, 3]) r.addLine(line(pid, 0));
    r.prune(new Set([id(1)]));
    // Tracked since the previous prune and still not wanted: forgotten. 5 came after it: kept,
    // as a container a poll has not seen yet may be one it wants.
    r.addLine(line(5, 0));
    r.prune(new Set([id(1)]));
    assert.deepEqual(r.containers(), [id(1), id(5)]);
    r.addLine(line(1, 257));
    for (const pid of [6, 7]) r.addLine(line(pid, 0));
    assert.deepEqual([...r.syscalls(id(1))].sort(), ['openat', 'read']);
    assert.deepEqual([6, 7].map((pid) => r.wasDropped(id(pid))), [false, false], 'room for two more');
  });

  test("containers that keep logging cannot fill the table either: once a prune forgot one as not wanted, its later records are ignored", () => {
    const id = (pid: number) => String(pid).padStart(64, '0');
    const attr = { attribute: (pid: number): Attribution => ({ kind: 'container', containerId: id(pid) }) };
    const r = new SyscallRecorder(attr, { limits: { maxContainers: 3 } });
    const noisy = [2, 3, 4];
    for (const pid of noisy) r.addLine(line(pid, 0));
    r.prune(new Set());
    r.prune(new Set());
    // They log on (a filter of their own with SCMP_ACT_LOG), every poll.
    for (const pid of noisy) r.addLine(line(pid, 1));
    r.prune(new Set());
    for (const pid of noisy) r.addLine(line(pid, 1));
    // A recorded container starting now has its calls.
    r.addLine(line(9, 0));
    assert.equal(r.wasDropped(id(9)), false);
    assert.deepEqual(r.containers(), [id(9)]);
    // One a poll wants after all, after its records were ignored: its recording is incomplete.
    r.prune(new Set([id(9), id(3)]));
    assert.equal(r.wasDropped(id(3)), true);
    r.addLine(line(3, 2));
    assert.deepEqual([...r.syscalls(id(3))], ['open']);
  });

  test('a container whose records are being ignored is reported incomplete even before a prune finds it wanted', () => {
    const id = (pid: number) => String(pid).padStart(64, '0');
    const attr = { attribute: (pid: number): Attribution => ({ kind: 'container', containerId: id(pid) }) };
    const r = new SyscallRecorder(attr);
    r.addLine(line(1, 0));
    r.prune(new Set());
    r.prune(new Set());
    r.addLine(line(1, 1)); // ignored
    assert.equal(r.wasDropped(id(1)), true);
  });

  test('a container whose records were dropped stays known as dropped, however many others were dropped since', () => {
    const id = (pid: number) => String(pid).padStart(64, '0');
    const attr = { attribute: (pid: number): Attribution => ({ kind: 'container', containerId: id(pid) }) };
    const r = new SyscallRecorder(attr, { limits: { maxContainers: 1 } });
    r.addLine(line(1, 0));
    r.addLine(line(2, 0));
    for (let pid = 3; pid < 40; pid++) r.addLine(line(pid, 0));
    assert.equal(r.wasDropped(id(2)), true, 'its recording is incomplete');
  });

  test('an audit.log record is attributed at its own time (from its audit timestamp), as a kmsg record is', () => {
    // Without it, the pid would be looked up as it is when the line is read: a reused pid would
    // give another process's call to the container that holds it by then.
    const seen: (number | undefined)[] = [];
    const attributor = { attribute: (_pid: number, us: number | undefined): Attribution => (seen.push(us), { kind: 'host' }) };
    const bootWallMs = 1_795_449_000_000;
    const r = new SyscallRecorder(attributor, { bootWallMs });
    r.addLine('type=SECCOMP msg=audit(1795449621.225:125): pid=7 comm="x" exe="/x" sig=0 arch=c000003e syscall=0 compat=0 ip=0x1 code=0x7ffc0000');
    r.addLine(line(7, 0, 42).replace('audit(1.000:1)', 'audit(1795449621.300:126)'));
    assert.deepEqual(seen, [(1_795_449_621_225 - bootWallMs) * 1000, (1_795_449_621_300 - bootWallMs) * 1000], 'a kmsg record too, by its audit timestamp');
    // Without the boot time, a kmsg record has only its printk timestamp.
    const seenAlone: (number | undefined)[] = [];
    new SyscallRecorder({ attribute: (_pid: number, us: number | undefined): Attribution => (seenAlone.push(us), { kind: 'host' }) }).addLine(line(7, 0, 42));
    assert.deepEqual(seenAlone, [42]);
  });

  test('loss notices are counted', () => {
    const r = new SyscallRecorder(fixed({}));
    r.addLine('4,2,3,-;kauditd_printk_skb: 5 callbacks suppressed');
    assert.equal(r.stats.lossNotices, 1);
  });
});

describe('pid → container', () => {
  const stat = (pid: number, comm: string, start: number) => `${pid} (${comm}) S 1 ${pid} ${pid} 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 ${start} 1000 100 18446744073709551615`;

  test('start time is read after the last ")" so a hostile comm cannot shift fields', () => {
    assert.equal(startTicksFromStat(stat(7, 'a) R 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 99999', 4242)), 4242);
    assert.equal(startTicksFromStat('garbage'), undefined);
  });

  test('container id is the last 64-hex name in the cgroup file', () => {
    assert.equal(containerIdFromCgroup(`12:memory:/k8s.io/${ID_A}\n11:pids:/kubepods/pod1/${ID_B}\n`), ID_B);
    assert.equal(containerIdFromCgroup('0::/user.slice\n'), undefined);
  });

  test('below the kubelet\'s pods hierarchy the container is the first 64-hex name: a child cgroup named after another container does not make its calls that container\'s', () => {
    // A container that can write its own cgroup made a child named after B and moved into it.
    assert.equal(containerIdFromCgroup(`0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice/cri-containerd-${ID_A}.scope/${ID_B}\n`), ID_A);
    assert.equal(containerIdFromCgroup(`0::/kubepods/burstable/pod1/${ID_A}/${ID_B}\n`), ID_A);
    // A node that is itself a container (kind): its own id comes before kubepods.
    assert.equal(containerIdFromCgroup(`0::/docker/${ID_B}/kubepods/besteffort/pod1/${ID_A}\n`), ID_A);
  });

  test('cyclic allocator crossing', () => {
    assert.equal(cyclicDistance(1000, 1100, 32768), 100);
    assert.equal(cyclicDistance(32000, 400, 32768), 768 + 101);
    assert.equal(passedOver(1000, 100, 1050, 32768), true);
    assert.equal(passedOver(1000, 49, 1050, 32768), false);
    assert.equal(passedOver(32000, 869, 32500, 32768), true);
    assert.equal(passedOver(32000, 869, 350, 32768), true);
    assert.equal(passedOver(32000, 869, 5000, 32768), false);
    assert.equal(passedOver(1000, 0, 1000, 32768), false);
    assert.equal(passedOver(1000, 32467, 1000, 32768), false);
    assert.equal(passedOver(1000, 32468, 1000, 32768), true); // a full cycle
    assert.equal(passedOver(100, 1, 5, 32768), true); // reserved pids: conservative
  });

  /** A fake /proc whose processes and allocator the test moves. */
  function fakeProc() {
    const procs = new Map<number, { start: number; cgroup: string; ipc: string; user: string }>();
    procs.set(1, { start: 1, cgroup: '0::/init.scope\n', ipc: 'ipc:[4026531839]', user: 'user:[4026531837]' });
    let lastPid = 1000;
    let nowUs = 50_000_000;
    const read = (p: string): string => {
      if (p === '/p/uptime') return `${nowUs / 1e6} 0`;
      if (p === '/p/loadavg') return `0.1 0.1 0.1 1/100 ${lastPid}`;
      if (p === '/p/sys/kernel/pid_max') return '32768';
      const m = /^\/p\/(\d+)\/(stat|cgroup)$/.exec(p);
      const proc = m ? procs.get(Number(m[1])) : undefined;
      if (!m || !proc) throw Object.assign(new Error('ENOENT'), { code: 'ENOENT' });
      return m[2] === 'stat' ? stat(Number(m[1]), 'x', proc.start) : proc.cgroup;
    };
    const readLink = (p: string): string => {
      const m = /^\/p\/(\d+|self)\/ns\/(ipc|user)$/.exec(p);
      const proc = m ? procs.get(m[1] === 'self' ? 1 : Number(m[1])) : undefined;
      if (!m || !proc) throw Object.assign(new Error('ENOENT'), { code: 'ENOENT' });
      return m[2] === 'ipc' ? proc.ipc : proc.user;
    };
    return {
      procs,
      resolver: new PidResolver({ procRoot: '/p', read, readLink }),
      /** A process in container `id` (its pod's IPC namespace, the host's user namespace), or on the host. */
      spawn(pid: number, id: string | undefined, startTicks: number, ns: { ipc?: string; user?: string } = {}) {
        procs.set(pid, { start: startTicks, cgroup: id ? `4:memory:/k8s.io/${id}\n` : '0::/\n', ipc: ns.ipc ?? (id ? 'ipc:[4026532500]' : 'ipc:[4026531839]'), user: ns.user ?? 'user:[4026531837]' });
        lastPid = pid;
      },
      exit: (pid: number) => procs.delete(pid),
      tick: (us: number) => (nowUs += us),
    };
  }

  test('a kmsg record is timed by its audit timestamp: the printk clock runs ahead of start times, and a process that took the pid after the call is not its caller', () => {
    // Here the printk clock ran 0.6 s ahead of the boot-time clock /proc/<pid>/stat counts in.
    const f = fakeProc();
    const bootWallMs = 1_795_449_000_000;
    const r = new SyscallRecorder(f.resolver, { bootWallMs });
    // The call at 52.0 s since boot (audit timestamp); its caller exited unseen; B took the pid at 52.3 s.
    f.spawn(2000, ID_B, 5230);
    r.addLine(`5,1,52600000,-;audit: type=1326 audit(1795449052.000:7): pid=2000 comm="x" exe="/x" sig=0 arch=c000003e syscall=110 compat=0 ip=0x1 code=0x7ffc0000`);
    assert.deepEqual([...r.syscalls(ID_B)], [], 'not credited to the container that took the pid');
    assert.equal(r.stats.unattributed, 1);
  });

  test('live process started before the record: attributed and cached', () => {
    const f = fakeProc();
    f.spawn(2000, ID_A, 4000); // started at 40 s
    assert.deepEqual(f.resolver.attribute(2000, 41_000_000), { kind: 'container', containerId: ID_A });
  });

  test('exited after being seen, pid not reallocated since: still attributed', () => {
    const f = fakeProc();
    f.spawn(2000, ID_A, 4000);
    f.resolver.attribute(2000, 41_000_000);
    f.exit(2000);
    f.tick(1000);
    assert.deepEqual(f.resolver.attribute(2000, 50_000_500), { kind: 'container', containerId: ID_A });
  });

  test('pid reused by a process in another container: the old records are not given to the new owner', () => {
    const f = fakeProc();
    f.spawn(2000, ID_A, 4000);
    f.resolver.attribute(2000, 41_000_000);
    f.exit(2000);
    f.tick(5_000_000);
    // The allocator wraps and hands 2000 to a process of container B started at 54 s.
    f.spawn(32000, undefined, 5300);
    f.resolver.sample();
    f.spawn(2000, ID_B, 5400);
    // A record written at 52 s (after A was last seen, before B existed) is not B's, and A's
    // entry cannot vouch for it: the pid changed hands.
    assert.equal(f.resolver.attribute(2000, 52_000_000).kind, 'unattributed');
    // A record written after B's start is B's.
    assert.deepEqual(f.resolver.attribute(2000, 54_500_000), { kind: 'container', containerId: ID_B });
  });

  test('exited, then the allocator went round past its pid: unattributed, never guessed', () => {
    const f = fakeProc();
    f.spawn(2000, ID_A, 4000);
    f.resolver.attribute(2000, 41_000_000);
    f.exit(2000);
    f.spawn(2500, undefined, 4100);
    assert.equal(f.resolver.attribute(2000, 60_000_000).kind, 'container'); // 2000 not passed yet
    f.spawn(32000, undefined, 4200);
    f.resolver.sample();
    f.spawn(1500, undefined, 4300);
    f.resolver.sample();
    assert.equal(f.resolver.attribute(2000, 60_000_000).kind, 'container'); // wrapped, still below 2000
    f.spawn(2100, undefined, 4400);
    assert.equal(f.resolver.attribute(2000, 60_000_000).kind, 'unattributed'); // passed 2000
  });

  test("a process whose cgroup names a container but that shares the host's IPC namespace, or has a user namespace of its own, is not that container's", () => {
    // A host user with a delegated cgroup subtree can make a directory named after any container
    // and move into it; it cannot join the pod's IPC namespace, nor make one without a user
    // namespace of its own.
    const f = fakeProc();
    const claimed = { kind: 'claimed', containerId: ID_A };
    f.spawn(2000, ID_A, 4000, { ipc: 'ipc:[4026531839]' });
    assert.deepEqual(f.resolver.attribute(2000, 41_000_000), claimed);
    f.spawn(2001, ID_A, 4000, { ipc: 'ipc:[4026539999]', user: 'user:[4026539998]' });
    assert.deepEqual(f.resolver.attribute(2001, 41_000_000), claimed);
    // Seen alive once as such, its later records stay claimed after it exits.
    f.exit(2000);
    assert.deepEqual(f.resolver.attribute(2000, 41_500_000), claimed);
    // The container's own process is.
    f.spawn(2002, ID_A, 4000);
    assert.deepEqual(f.resolver.attribute(2002, 41_000_000), { kind: 'container', containerId: ID_A });
    // Where pid 1's links cannot be read (some sandboxes refuse them even to root), the recorder's
    // own namespaces stand for the host's.
    const sealed = new PidResolver({
      procRoot: '/p',
      read: (p) => (p.endsWith('/stat') ? stat(1, 'x', 1) : p.endsWith('cgroup') ? `4:memory:/k8s.io/${ID_A}\n` : p.endsWith('uptime') ? '1 1' : '0 0 0 0 1'),
      readLink: (p) => {
        if (p.startsWith('/p/1/')) throw Object.assign(new Error('EACCES'), { code: 'EACCES' });
        return p.endsWith('/user') ? 'user:[4026531837]' : p.startsWith('/p/self/') || p.startsWith('/p/7/') ? 'ipc:[4026531839]' : 'ipc:[4026532500]';
      },
    });
    assert.equal(sealed.attribute(7, undefined).kind, 'claimed');
    assert.deepEqual(sealed.attribute(8, undefined), { kind: 'container', containerId: ID_A });
    // A recording of A gets none of its calls and is marked; one of B is not concerned, and a
    // recorder that wants no A ignores them (a hostIPC pod's logged calls spoil no other recording).
    const r = new SyscallRecorder(f.resolver, { wants: (id) => id !== ID_C });
    f.spawn(2003, ID_A, 4000, { ipc: 'ipc:[4026531839]' });
    r.addRecord({ pid: 2003, syscall: 175, arch: 0xc000003e, name: 'init_module', code: 0x7ffc0000, auditTimeMs: 0, serial: 1 });
    assert.deepEqual([...r.syscalls(ID_A)], []);
    assert.equal(r.wasClaimed(ID_A), true);
    assert.equal(r.wasClaimed(ID_B), false);
    assert.equal(r.stats.unattributedLogged, 0);
    f.spawn(2004, ID_C, 4000, { ipc: 'ipc:[4026531839]' });
    r.addRecord({ pid: 2004, syscall: 175, arch: 0xc000003e, name: 'init_module', code: 0x7ffc0000, auditTimeMs: 0, serial: 2 });
    assert.equal(r.wasClaimed(ID_C), false);
    assert.equal(r.stats.ignored, 1);
    // Past the table's size, every recording counts as claimed rather than one losing its mark.
    const small = new SyscallRecorder(f.resolver, { limits: { maxContainers: 1 } });
    f.spawn(2005, ID_B, 4000);
    small.addRecord({ pid: 2005, syscall: 0, arch: 0xc000003e, name: 'read', code: 0x7ffc0000, auditTimeMs: 0, serial: 3 });
    small.addRecord({ pid: 2004, syscall: 175, arch: 0xc000003e, name: 'init_module', code: 0x7ffc0000, auditTimeMs: 0, serial: 4 });
    f.spawn(2006, ID_B, 4000, { ipc: 'ipc:[4026531839]' });
    small.addRecord({ pid: 2006, syscall: 175, arch: 0xc000003e, name: 'init_module', code: 0x7ffc0000, auditTimeMs: 0, serial: 5 });
    assert.deepEqual([...small.syscalls(ID_B)], ['read']);
    assert.equal(small.wasClaimed(ID_B), true);
  });

  test('never-seen exited process is unattributed; host processes are "host"', () => {
    const f = fakeProc();
    assert.equal(f.resolver.attribute(3000, 1).kind, 'unattributed');
    f.spawn(3001, undefined, 1);
    assert.deepEqual(f.resolver.attribute(3001, 1_000_000), { kind: 'host' });
  });

  test('the cache is bounded', () => {
    const f = fakeProc();
    const r = new PidResolver({ procRoot: '/p', maxEntries: 5, read: (p) => (p.endsWith('/stat') ? stat(1, 'x', 1) : p.endsWith('cgroup') ? `1:x:/${ID_A}` : p.endsWith('uptime') ? '1 1' : '0 0 0 0 1'), readLink: (p) => (p.endsWith('/user') ? 'user:[1]' : p === '/p/1/ns/ipc' || p === '/p/self/ns/ipc' ? 'ipc:[1]' : 'ipc:[2]') });
    for (let pid = 1; pid <= 20; pid++) r.observe(pid);
    assert.equal(r.size, 5);
    assert.ok(f);
  });
});

describe('sources and kernel settings', () => {
  test('audit.log tail: starts at the end, splits lines, follows rotation, drops over-long lines', () => {
    const dir = mkdtempSync(join(tmpdir(), 'spoke-auditlog-'));
    const path = join(dir, 'audit.log');
    try {
      writeFileSync(path, 'old line\n');
      const s = new AuditLogSource(path);
      assert.deepEqual(s.poll(), []);
      writeFileSync(path, 'old line\nnew 1\nnew', { flag: 'w' });
      assert.deepEqual(s.poll(), ['new 1']);
      writeFileSync(path, ' 2\n', { flag: 'a' });
      assert.deepEqual(s.poll(), ['new 2']);
      writeFileSync(path, `${'x'.repeat(20_000)}\nafter\n`, { flag: 'a' });
      assert.deepEqual(s.poll(), ['after']);
      assert.equal(s.lost, 1);
      rmSync(path);
      writeFileSync(path, 'rotated 1\n');
      assert.deepEqual(s.poll(), ['rotated 1']);
      s.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('preflight names the missing feature', () => {
    const dir = mkdtempSync(join(tmpdir(), 'spoke-proc-'));
    try {
      mkdirSync(join(dir, 'sys/kernel/seccomp'), { recursive: true });
      mkdirSync(join(dir, 'self'), { recursive: true });
      const expectRule = (rule: string, opts: Parameters<typeof preflight>[0]) =>
        assert.throws(() => preflight({ procRoot: dir, source: { kind: 'kmsg', path: join(dir, 'kmsg') }, ...opts }), (e) => isSpokeError(e) && e.code === 'FailedPrecondition' && e.reason === 'RECORDER_UNAVAILABLE' && e.context.rule === rule);
      expectRule('root', { uid: 1000 });
      expectRule('seccomp', { uid: 0 });
      writeFileSync(join(dir, 'sys/kernel/seccomp/actions_avail'), 'kill_process kill_thread trap errno trace allow\n');
      expectRule('seccomp-log', { uid: 0 });
      writeFileSync(join(dir, 'sys/kernel/seccomp/actions_avail'), 'kill_process kill_thread trap errno user_notif trace log allow\n');
      writeFileSync(join(dir, 'sys/kernel/seccomp/actions_logged'), 'kill_process kill_thread trap errno user_notif trace\n');
      expectRule('actions-logged', { uid: 0 });
      writeFileSync(join(dir, 'sys/kernel/seccomp/actions_logged'), 'kill_process kill_thread trap errno user_notif trace log\n');
      expectRule('audit', { uid: 0 });
      writeFileSync(join(dir, 'self/loginuid'), '0');
      writeFileSync(join(dir, 'cmdline'), 'root=/dev/vda audit=0\n');
      expectRule('audit', { uid: 0 });
      writeFileSync(join(dir, 'cmdline'), 'root=/dev/vda\n');
      expectRule('kmsg', { uid: 0 });
      writeFileSync(join(dir, 'kmsg'), '');
      assert.deepEqual(preflight({ procRoot: dir, uid: 0, source: { kind: 'kmsg', path: join(dir, 'kmsg') } }), { kind: 'kmsg', path: join(dir, 'kmsg') });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  /** A fake /proc with printk_ratelimit 5 and burst 10, and a state file path beside it. */
  const withPrintkRoot = async (fn: (p: { dir: string; rl: string; burst: string; state: string }) => void | Promise<void>) => {
    const dir = mkdtempSync(join(tmpdir(), 'spoke-printk-'));
    try {
      mkdirSync(join(dir, 'sys/kernel'), { recursive: true });
      mkdirSync(join(dir, 'state'), { recursive: true });
      const rl = join(dir, 'sys/kernel/printk_ratelimit');
      const burst = join(dir, 'sys/kernel/printk_ratelimit_burst');
      writeFileSync(rl, '5\n');
      writeFileSync(burst, '10\n');
      await fn({ dir, rl, burst, state: join(dir, 'state/printk.json') });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };
  const value = (path: string) => readFileSync(path, 'utf8').trim();

  test('printk rate limit: lifted, restored, and a crashed lift is repaired from the saved file', () =>
    withPrintkRoot(({ dir, rl, burst, state }) => {
      const a = new PrintkRateLimit(state, dir);
      a.lift();
      assert.equal(value(rl), '0');
      const b = new PrintkRateLimit(state, dir);
      b.lift(); // nested in-process: one save
      a.restore();
      assert.equal(value(rl), '0');
      b.restore();
      assert.equal(value(rl), '5');
      assert.equal(value(burst), '10');
      b.restore(); // idempotent
      // A recorder that died while lifted left the file: the next one restores the true values.
      writeFileSync(rl, '0');
      writeFileSync(state, JSON.stringify({ ratelimit: '5', burst: '10' }));
      const c = new PrintkRateLimit(state, dir);
      c.lift();
      c.restore();
      assert.equal(value(rl), '5');
    }));

  test('printk rate limit: a lift made while another process holds the limit lifted restores the saved values, even when the file is gone by then', () =>
    withPrintkRoot(({ dir, rl, state }) => {
      // Another recorder saved the originals and lifted; it still records.
      writeFileSync(state, JSON.stringify({ ratelimit: '5', burst: '10' }));
      writeFileSync(rl, '0\n');
      const late = new PrintkRateLimit(state, dir);
      late.lift();
      assert.equal(value(rl), '0');
      rmSync(state);
      late.restore();
      assert.equal(value(rl), '5');
    }));

  test('printk rate limit: recorders in several processes lifting and restoring at once never fail, and the originals come back', () =>
    withPrintkRoot(async ({ dir, rl, burst, state }) => {
      const module = new URL('../../../src/recorder/source.js', import.meta.url).href;
      const script = `import { PrintkRateLimit } from ${JSON.stringify(module)};
        for (let i = 0; i < 200; i++) { const p = new PrintkRateLimit(${JSON.stringify(state)}, ${JSON.stringify(dir)}); p.lift(); p.restore(); }`;
      const runs = Array.from({ length: 6 }, () => execFileP(process.execPath, ['--input-type=module', '-e', script]));
      const results = await Promise.allSettled(runs);
      assert.deepEqual(results.filter((r) => r.status === 'rejected').map((r) => String(((r as PromiseRejectedResult).reason as { stderr?: string }).stderr).trim().split('\n').at(-1)), []);
      assert.equal(value(rl), '5');
      assert.equal(value(burst), '10');
    }));
});
