// spoke diff's comparison (docs/diff.md): judged by behaviour against the reference evaluator,
// never by text.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { actionRank, compareProfiles, evaluate, OTHER_SYSCALLS, UNTABLED_CALLS, type ProfileChange, type SeccompAction, type SeccompArchitecture, type SeccompArg, type SeccompProfile, type SeccompSyscall } from '../../../src/profiles/seccomp/index.js';

const NAMES = ['read', 'write', 'mkdir'];
const VALUES = [0n, 1n, 2n, 5n, (1n << 32n) - 1n, (1n << 64n) - 1n];
const ACTIONS: SeccompAction[] = ['SCMP_ACT_KILL_PROCESS', 'SCMP_ACT_TRAP', 'SCMP_ACT_ERRNO', 'SCMP_ACT_LOG', 'SCMP_ACT_ALLOW'];
const OPS: SeccompArg['op'][] = ['SCMP_CMP_NE', 'SCMP_CMP_LT', 'SCMP_CMP_EQ', 'SCMP_CMP_GE', 'SCMP_CMP_MASKED_EQ'];
const value = fc.constantFrom(...VALUES);
const entry: fc.Arbitrary<SeccompSyscall> = fc
  .record({
    names: fc.uniqueArray(fc.constantFrom(...NAMES), { minLength: 1, maxLength: 2 }),
    action: fc.constantFrom(...ACTIONS),
    args: fc.array(fc.record({ index: fc.integer({ min: 0, max: 1 }), value, op: fc.constantFrom(...OPS), valueTwo: value }), { maxLength: 2 }),
  })
  .map(({ names, action, args }) => ({ names, action, ...(args.length === 0 ? {} : { args }) }));
const profile: fc.Arbitrary<SeccompProfile> = fc.record({ defaultAction: fc.constantFrom(...ACTIONS), syscalls: fc.array(entry, { maxLength: 4 }) });
const call = fc.record({ syscall: fc.constantFrom(...NAMES, 'other'), args: fc.tuple(value, value) });

const allow = (names: string[], args?: SeccompArg[]): SeccompSyscall => ({ names, action: 'SCMP_ACT_ALLOW', ...(args ? { args } : {}) });
const base: SeccompProfile = { defaultAction: 'SCMP_ACT_ERRNO', architectures: ['SCMP_ARCH_X86_64'], syscalls: [allow(['read', 'write'])] };

test('identical behaviour in another shape is no change: key order, grouping, duplicates', () => {
  const regrouped: SeccompProfile = { syscalls: [allow(['write']), allow(['read', 'write'])], architectures: ['SCMP_ARCH_X86_64'], defaultAction: 'SCMP_ACT_ERRNO' };
  assert.deepEqual(compareProfiles(base, regrouped), { loosened: [], tightened: [], changed: [] });
});

test('a syscall newly allowed is loosened; one newly denied is tightened; an errno change is changed', () => {
  const v2: SeccompProfile = { ...base, syscalls: [allow(['read', 'ptrace']), { names: ['getpid'], action: 'SCMP_ACT_ERRNO', errnoRet: 38 }] };
  // Per syscall here; what runc's ENOSYS threshold changes besides has tests of its own below.
  const perSyscall = (list: ProfileChange[]) => list.filter((c) => c.kind !== 'enosys');
  const all = compareProfiles(base, v2);
  const r = { loosened: perSyscall(all.loosened), tightened: perSyscall(all.tightened), changed: perSyscall(all.changed) };
  assert.deepEqual(
    r.loosened.map((c) => c.kind === 'syscall' && [c.syscall, c.old.action, c.new.action]),
    [['ptrace', 'SCMP_ACT_ERRNO', 'SCMP_ACT_ALLOW']],
  );
  assert.deepEqual(r.tightened.map((c) => c.kind === 'syscall' && c.syscall), ['write']);
  assert.deepEqual(r.changed.map((c) => c.kind === 'syscall' && [c.syscall, c.old.errno, c.new.errno]), [['getpid', 1, 38]]);
  assert.deepEqual(r.loosened[0]!.kind === 'syscall' && r.loosened[0]!.architectures, ['SCMP_ARCH_X86_64']);
});

test('argument conditions: only the case that changed is reported, with its condition', () => {
  const oldP: SeccompProfile = { defaultAction: 'SCMP_ACT_ERRNO', syscalls: [allow(['personality'], [{ index: 0, value: 0n, op: 'SCMP_CMP_EQ' }])] };
  const newP: SeccompProfile = {
    defaultAction: 'SCMP_ACT_ERRNO',
    syscalls: [allow(['personality'], [{ index: 0, value: 0n, op: 'SCMP_CMP_EQ' }]), allow(['personality'], [{ index: 0, value: 8n, op: 'SCMP_CMP_EQ' }])],
  };
  const r = compareProfiles(oldP, newP);
  assert.equal(r.tightened.length, 0);
  assert.equal(r.loosened.length, 1);
  const c = r.loosened[0]!;
  assert.ok(c.kind === 'syscall' && c.syscall === 'personality' && c.args !== undefined && /arg0 == 8\b/.test(c.args), JSON.stringify(c));
});

test("an architecture NEW drops is a loosening where OLD killed the process there: its calls then meet libseccomp's bad-architecture action, which kills the thread only", () => {
  const both: SeccompArchitecture[] = ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86'];
  const dropped = (p: SeccompProfile) => {
    const r = compareProfiles(p, { ...p, architectures: ['SCMP_ARCH_X86_64'] }, 'SCMP_ARCH_X86_64');
    const dir = (list: ProfileChange[]) => list.some((c) => c.kind === 'architecture' && c.architecture === 'SCMP_ARCH_X86');
    return dir(r.loosened) ? 'loosened' : dir(r.tightened) ? 'tightened' : 'unreported';
  };
  assert.equal(dropped({ defaultAction: 'SCMP_ACT_KILL_PROCESS', architectures: both, syscalls: [allow(['read'])] }), 'loosened');
  assert.equal(dropped({ defaultAction: 'SCMP_ACT_ERRNO', architectures: both, syscalls: [allow(['read']), { names: ['ptrace'], action: 'SCMP_ACT_KILL_PROCESS' }] }), 'loosened');
  assert.equal(dropped({ defaultAction: 'SCMP_ACT_KILL', architectures: both, syscalls: [allow(['read'])] }), 'tightened');
  assert.equal(dropped({ defaultAction: 'SCMP_ACT_ERRNO', architectures: both, syscalls: [allow(['read'])] }), 'tightened');
  // The node's own architecture: libseccomp filters it whatever the list says, so dropping it there changes nothing.
  const killing: SeccompProfile = { defaultAction: 'SCMP_ACT_KILL_PROCESS', architectures: both, syscalls: [allow(['read'])] };
  const r = compareProfiles(killing, { ...killing, architectures: ['SCMP_ARCH_X86'] }, 'SCMP_ARCH_X86_64');
  assert.ok(![...r.loosened, ...r.tightened, ...r.changed].some((c) => c.kind === 'architecture'), JSON.stringify(r));
});

test('default action, architectures and the SPEC_ALLOW flag', () => {
  const r = compareProfiles(base, { ...base, defaultAction: 'SCMP_ACT_LOG', architectures: ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86'], flags: ['SECCOMP_FILTER_FLAG_SPEC_ALLOW'] });
  const kinds = r.loosened.map((c) => (c.kind === 'syscall' ? c.syscall : c.kind === 'architecture' ? c.architecture : c.kind === 'flag' ? c.flag : c.kind)).sort();
  // Under runc OLD answered ENOSYS past read and write, which the LOG default lets through: the
  // same loosening as `*`'s, not listed again.
  assert.deepEqual(kinds, [OTHER_SYSCALLS, 'SCMP_ARCH_X86', 'SECCOMP_FILTER_FLAG_SPEC_ALLOW']);
});

test('no flags member is read as the runtimes read it: crun and runc 1.2 set SPEC_ALLOW then, older runc does not', () => {
  const spec = (r: ReturnType<typeof compareProfiles>, d: 'loosened' | 'tightened') => r[d].some((c) => c.kind === 'flag' && c.flag === 'SECCOMP_FILTER_FLAG_SPEC_ALLOW');
  const flagless: SeccompProfile = { defaultAction: base.defaultAction, architectures: base.architectures, syscalls: base.syscalls };
  // Dropping an explicit flags list turns Spectre mitigations off under crun: a loosening.
  assert.ok(spec(compareProfiles({ ...base, flags: ['SECCOMP_FILTER_FLAG_LOG'] }, flagless), 'loosened'));
  assert.ok(spec(compareProfiles({ ...base, flags: [] }, flagless), 'loosened'));
  // And the other way round it tightens there; under older runc, naming SPEC_ALLOW loosens.
  assert.ok(spec(compareProfiles(flagless, { ...base, flags: [] }), 'tightened'));
  assert.ok(spec(compareProfiles(flagless, { ...base, flags: ['SECCOMP_FILTER_FLAG_SPEC_ALLOW'] }), 'loosened'));
  assert.deepEqual(compareProfiles(flagless, flagless), { loosened: [], tightened: [], changed: [] });
});

test('property: the same profile compares equal to itself and to its entries reversed', () => {
  fc.assert(
    fc.property(profile, (p) => {
      const reversed = { ...p, syscalls: [...(p.syscalls ?? [])].reverse() };
      for (const other of [p, reversed]) {
        const r = compareProfiles(p, other);
        assert.equal(r.loosened.length + r.tightened.length + r.changed.length === 0, true);
      }
    }),
    { numRuns: 200, examples: [] },
  );
});

test('property: every call NEW treats more loosely than OLD is reported loosened for its syscall, and only then', () => {
  fc.assert(
    fc.property(profile, profile, fc.array(call, { minLength: 1, maxLength: 20 }), (oldP, newP, calls) => {
      const r = compareProfiles(oldP, newP);
      const loosenedNames = new Set(r.loosened.flatMap((c) => (c.kind === 'syscall' ? [c.syscall] : [])));
      for (const c of calls) {
        if (actionRank(evaluate(newP, c).action) > actionRank(evaluate(oldP, c).action)) {
          const named = [oldP, newP].some((p) => (p.syscalls ?? []).some((e) => e.names.includes(c.syscall)));
          assert.ok(loosenedNames.has(named ? c.syscall : OTHER_SYSCALLS), `${c.syscall} loosened but not reported`);
        }
      }
      if (r.loosened.length === 0) {
        for (const c of calls) assert.ok(actionRank(evaluate(newP, c).action) <= actionRank(evaluate(oldP, c).action));
      }
    }),
    { numRuns: 300 },
  );
});

test('too many argument cases to compare one by one: any difference counts as loosened, so a loosening is never hidden', () => {
  const allow = (index: number, value: number): SeccompSyscall => ({ names: ['personality'], action: 'SCMP_ACT_ALLOW', args: [{ index, value: BigInt(value), op: 'SCMP_CMP_EQ' }] });
  const older: SeccompProfile = { defaultAction: 'SCMP_ACT_ERRNO', architectures: ['SCMP_ARCH_X86_64'], syscalls: Array.from({ length: 64 }, (_, i) => allow(0, i)) };
  // NEW also allows personality(x, y) for y < 63: personality(100, 0) was ERRNO, is ALLOW.
  const newer: SeccompProfile = { ...older, syscalls: [...older.syscalls!, ...Array.from({ length: 63 }, (_, i) => allow(1, i))] };
  assert.equal(evaluate(older, { syscall: 'personality', args: [100n, 0n] }).action, 'SCMP_ACT_ERRNO');
  assert.equal(evaluate(newer, { syscall: 'personality', args: [100n, 0n] }).action, 'SCMP_ACT_ALLOW');
  assert.ok(compareProfiles(older, newer).loosened.some((c) => c.kind === 'syscall' && c.syscall === 'personality'));
  assert.deepEqual(compareProfiles(newer, newer), { loosened: [], tightened: [], changed: [] });
});

test("runc's ENOSYS threshold: calls past the highest one NEW names get ERRNO(ENOSYS) under runc, a loosening where OLD killed them", () => {
  const killing = (names: string[]): SeccompProfile => ({
    defaultAction: 'SCMP_ACT_KILL_PROCESS',
    architectures: ['SCMP_ARCH_X86_64'],
    syscalls: [allow(['read', 'write', 'exit_group', 'rt_sigreturn']), ...(names.length > 0 ? [{ names, action: 'SCMP_ACT_KILL_PROCESS' as const }] : [])],
  });
  // OLD names futex_waitv (449) at the default action, which runc counts: its threshold is 449;
  // NEW names nothing past exit_group (231), so openat (257), unshare (272), bpf (321) … get ENOSYS.
  const r = compareProfiles(killing(['futex_waitv']), killing([]));
  const enosys = r.loosened.filter((c) => c.kind === 'enosys');
  assert.equal(enosys.length, 1, JSON.stringify(r.loosened));
  const c = enosys[0]!;
  assert.ok(c.kind === 'enosys');
  assert.equal(c.architecture, 'SCMP_ARCH_X86_64');
  assert.deepEqual([c.old, c.new], [{ action: 'SCMP_ACT_KILL_PROCESS' }, { action: 'SCMP_ACT_ERRNO', errno: 38 }]);
  for (const name of ['openat', 'unshare', 'bpf', 'io_uring_setup', 'futex_waitv']) assert.ok(c.syscalls.includes(name), name);
  for (const name of ['exit_group', 'read', 'kill', 'set_mempolicy_home_node']) assert.ok(!c.syscalls.includes(name), name);
  // The other way, the same calls go from ENOSYS to a kill: tightened.
  const back = compareProfiles(killing([]), killing(['futex_waitv']));
  assert.equal(back.loosened.length, 0, JSON.stringify(back.loosened));
  assert.ok(back.tightened.some((t) => t.kind === 'enosys' && t.syscalls.includes('openat')));
});

test("runc adds no ENOSYS stub where the default lets calls through, or where the highest call named is numbered 0 or none is named", () => {
  const named = (defaultAction: SeccompAction, names: string[], extra: Partial<SeccompProfile> = {}): SeccompProfile => ({ defaultAction, architectures: ['SCMP_ARCH_X86_64'], syscalls: names.length > 0 ? [allow(names)] : [], ...extra });
  const enosysOf = (r: ReturnType<typeof compareProfiles>) => [...r.loosened, ...r.tightened, ...r.changed].filter((c) => c.kind === 'enosys');
  for (const d of ['SCMP_ACT_ALLOW', 'SCMP_ACT_LOG'] as const) assert.deepEqual(enosysOf(compareProfiles(named(d, ['write', 'futex_waitv']), named(d, ['write']))), [], d);
  // An EPERM default: EPERM and ENOSYS are the same action, another errno: changed, never loosened.
  const eperm = compareProfiles(named('SCMP_ACT_ERRNO', ['write', 'futex_waitv']), named('SCMP_ACT_ERRNO', ['write']));
  assert.equal(eperm.loosened.length, 0);
  assert.ok(eperm.changed.some((c) => c.kind === 'enosys' && c.syscalls.includes('open')));
  // An ENOSYS default: the stub answers what the default does.
  assert.deepEqual(enosysOf(compareProfiles(named('SCMP_ACT_ERRNO', ['write', 'futex_waitv'], { defaultErrnoRet: 38 }), named('SCMP_ACT_ERRNO', ['write'], { defaultErrnoRet: 38 }))), []);
  // Naming only read (0) gives no stub, as naming nothing does: from there to write (1), calls past write get ENOSYS.
  for (const before of [[], ['read']]) {
    const r = compareProfiles(named('SCMP_ACT_KILL_PROCESS', before), named('SCMP_ACT_KILL_PROCESS', ['write']));
    assert.ok(r.loosened.some((c) => c.kind === 'enosys' && c.syscalls.includes('open')), JSON.stringify(before));
    assert.ok(!r.loosened.some((c) => c.kind === 'enosys' && c.syscalls.includes('read')), JSON.stringify(before));
  }
});

test("a name the node's libseccomp may not know is skipped by runc: the threshold it set falls to the highest name known", () => {
  // OLD's highest name is futex_waitv (449), NEW's mseal (462), unknown to libseccomp 2.5.4: there
  // NEW's threshold is write's, and calls 2–449 go from a kill to ENOSYS.
  const p = (last: string): SeccompProfile => ({ defaultAction: 'SCMP_ACT_KILL_PROCESS', architectures: ['SCMP_ARCH_X86_64'], syscalls: [allow(['write']), { names: [last], action: 'SCMP_ACT_KILL_PROCESS' }] });
  const r = compareProfiles(p('futex_waitv'), p('mseal'));
  assert.ok(r.loosened.some((c) => c.kind === 'enosys' && c.syscalls.includes('landlock_create_ruleset') && c.new.errno === 38), JSON.stringify(r.loosened));
});

test('x32 has a table of its own: its calls past its threshold are compared too', () => {
  const p = (names: string[]): SeccompProfile => ({ defaultAction: 'SCMP_ACT_KILL_PROCESS', architectures: ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X32'], syscalls: [allow(['read', 'write', 'mseal', ...names])] });
  // execve is 59 on x86_64 but 520 on x32: dropping it lowers x32's threshold only.
  const r = compareProfiles(p(['execve']), p([]));
  const x32 = r.loosened.filter((c) => c.kind === 'enosys' && c.architecture === 'SCMP_ARCH_X32');
  assert.equal(x32.length, 1, JSON.stringify(r.loosened));
  assert.ok(x32[0]!.kind === 'enosys' && x32[0]!.syscalls.includes('rt_sigaction') && !x32[0]!.syscalls.includes('read'));
});

test("profiles without an architecture list are read for the node's architecture when the caller names it", () => {
  const p = (names: string[]): SeccompProfile => ({ defaultAction: 'SCMP_ACT_KILL_PROCESS', syscalls: [allow(['write']), ...(names.length > 0 ? [{ names, action: 'SCMP_ACT_KILL_PROCESS' as const }] : [])] });
  assert.ok(!compareProfiles(p(['futex_waitv']), p([])).loosened.some((c) => c.kind === 'enosys'), 'no architecture known: nothing said');
  assert.ok(compareProfiles(p(['futex_waitv']), p([]), 'SCMP_ARCH_X86_64').loosened.some((c) => c.kind === 'enosys' && c.architecture === 'SCMP_ARCH_X86_64'));
});

test('x32 numbers carry __X32_SYSCALL_BIT: naming only read (0) there still sets a stub, as runc compares the numbers libseccomp gives', () => {
  const p = (names: string[]): SeccompProfile => ({ defaultAction: 'SCMP_ACT_KILL_PROCESS', architectures: ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X32'], syscalls: [allow(['read']), ...(names.length > 0 ? [{ names, action: 'SCMP_ACT_KILL_PROCESS' as const }] : [])] });
  const r = compareProfiles(p(['rseq']), p([]));
  assert.ok(r.loosened.some((c) => c.kind === 'enosys' && c.architecture === 'SCMP_ARCH_X32' && c.syscalls.includes('write')), JSON.stringify(r.loosened));
});

test("32-bit x86's socket and IPC names, which libseccomp 2.5 gives pseudo-numbers, set no threshold there, and their direct calls above it get ENOSYS", () => {
  const p = (names: string[]): SeccompProfile => ({ defaultAction: 'SCMP_ACT_KILL_PROCESS', architectures: ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86'], syscalls: [allow(['write']), { names, action: 'SCMP_ACT_KILL_PROCESS' }] });
  // i386: arch_prctl is 384; getrandom 355 and msgctl 402 (a pseudo-number from 2.5): the threshold falls to 355.
  const r = compareProfiles(p(['arch_prctl']), p(['getrandom', 'msgctl']));
  assert.ok(r.loosened.some((c) => c.kind === 'enosys' && c.architecture === 'SCMP_ARCH_X86' && c.syscalls.includes('memfd_create')), JSON.stringify(r.loosened));
});

test('a call newer than these tables, which a newer libseccomp knows, is numbered past them all', () => {
  // uretprobe (335) is in the table; a name none has (a call newer than it) may raise OLD's threshold past every call here.
  const p = (last: string): SeccompProfile => ({ defaultAction: 'SCMP_ACT_KILL_PROCESS', architectures: ['SCMP_ARCH_X86_64'], syscalls: [allow(['write']), { names: [last], action: 'SCMP_ACT_KILL_PROCESS' }] });
  assert.ok(compareProfiles(p('uretprobe'), p('rseq')).loosened.some((c) => c.kind === 'enosys' && c.syscalls.includes('uretprobe')));
  assert.ok(compareProfiles(p('listns'), p('rseq')).loosened.some((c) => c.kind === 'enosys' && c.syscalls.includes('mseal')));
});

// Review cases of runc's ENOSYS stub (docs/diff.md): each an update some runtime enforces more loosely.
const enosysLoosened = (r: ReturnType<typeof compareProfiles>, architecture: string, name: string) =>
  r.loosened.some((c) => c.kind === 'enosys' && c.architecture === architecture && c.syscalls.includes(name));

test("32-bit x86 socket names keep their rule on the direct call when libseccomp 2.5 pseudo-numbers them: a higher threshold lets that rule decide again", () => {
  const p = (extra: SeccompSyscall[]): SeccompProfile => ({ defaultAction: 'SCMP_ACT_KILL', architectures: ['SCMP_ARCH_X86'], syscalls: [allow(['write', 'socket']), ...extra] });
  // 2.5: OLD's threshold is write (4), socket (359) gets ENOSYS; NEW's is userfaultfd (374): socket's ALLOW decides.
  const r = compareProfiles(p([]), p([{ names: ['userfaultfd'], action: 'SCMP_ACT_KILL_PROCESS' }]), 'SCMP_ARCH_X86');
  assert.ok(r.loosened.some((c) => c.kind === 'enosys' && c.syscalls.includes('socket') && c.old.errno === 38 && c.new.action === 'SCMP_ACT_ALLOW'), JSON.stringify(r));
});

test('uretprobe (335) is unknown to libseccomp before 2.5.6: a threshold it sets may fall to the highest call known', () => {
  const r = compareProfiles(
    { defaultAction: 'SCMP_ACT_KILL', architectures: ['SCMP_ARCH_X86_64'], syscalls: [allow(['write', 'rseq'])] },
    { defaultAction: 'SCMP_ACT_KILL', architectures: ['SCMP_ARCH_X86_64'], syscalls: [allow(['write']), { names: ['uretprobe'], action: 'SCMP_ACT_KILL_PROCESS' }] },
  );
  assert.ok(enosysLoosened(r, 'SCMP_ARCH_X86_64', 'openat'), JSON.stringify(r.loosened));
});

test('map_shadow_stack is 453 on 32-bit x86 in libseccomp 2.5.5 and later, though the kernel has no such call there: runc counts it', () => {
  const p = (extra: SeccompSyscall[]): SeccompProfile => ({ defaultAction: 'SCMP_ACT_KILL_PROCESS', architectures: ['SCMP_ARCH_X86'], syscalls: [allow(['write']), ...extra] });
  const r = compareProfiles(p([{ names: ['map_shadow_stack'], action: 'SCMP_ACT_ERRNO' }]), p([]), 'SCMP_ARCH_X86');
  assert.ok(enosysLoosened(r, 'SCMP_ARCH_X86', 'open'), JSON.stringify(r.loosened));
});

test('a call past the highest one both profiles name is compared itself: listns (470), and one newer than these tables', () => {
  for (const last of ['listns', 'not_yet_a_syscall']) {
    const p = (extra: SeccompSyscall[]): SeccompProfile => ({ defaultAction: 'SCMP_ACT_KILL_PROCESS', architectures: ['SCMP_ARCH_X86_64'], syscalls: [allow(['write', 'file_setattr']), ...extra] });
    const r = compareProfiles(p([{ names: [last], action: 'SCMP_ACT_KILL' }]), p([]));
    assert.ok(enosysLoosened(r, 'SCMP_ARCH_X86_64', last), `${last}: ${JSON.stringify(r.loosened)}`);
  }
});

test('libseccomp 2.3 and 2.4.0/2.4.1 on 32-bit x86 number the socket calls but pseudo-number the IPC calls: the two families are read independently', () => {
  const p = (names: string[]): SeccompProfile => ({ defaultAction: 'SCMP_ACT_KILL', architectures: ['SCMP_ARCH_X86'], syscalls: [allow(['write', ...names])] });
  // socket (359) sets OLD's threshold there, shmget (395) none: NEW's falls to write (4).
  const r = compareProfiles(p(['socket', 'shmget']), p(['shmget']), 'SCMP_ARCH_X86');
  assert.ok(enosysLoosened(r, 'SCMP_ARCH_X86', 'getrandom'), JSON.stringify(r.loosened));
});

test("libseccomp 2.3 lacks x32's preadv2 and pwritev2 (546, 547): a threshold they set may fall", () => {
  const p = (names: string[]): SeccompProfile => ({ defaultAction: 'SCMP_ACT_KILL', architectures: ['SCMP_ARCH_X32'], syscalls: [{ names: ['preadv2'], action: 'SCMP_ACT_TRACE' }, { names: ['write', 'personality'], action: 'SCMP_ACT_KILL' }, { names: ['open_tree', ...names], action: 'SCMP_ACT_ALLOW' }] });
  // Without preadv2 and open_tree (428), OLD's threshold is rt_sigaction (512), NEW's personality (135).
  const r = compareProfiles(p(['rt_sigaction']), p([]));
  assert.ok(enosysLoosened(r, 'SCMP_ARCH_X32', 'openat'), JSON.stringify(r.loosened));
});

test("a profile compared with itself, or with itself reordered, is no change: names only other architectures have (libseccomp numbers none on x86) and calls newer than the tables are one library's order for both", () => {
  const docker: SeccompProfile = {
    defaultAction: 'SCMP_ACT_ERRNO',
    architectures: ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32'],
    syscalls: [allow(['read', 'write', 'exit_group', 'arm_fadvise64_64', 'riscv_flush_icache', 'set_tls', 'not_yet_a_call', 'nor_this_one'])],
  };
  const killing: SeccompProfile = { ...docker, defaultAction: 'SCMP_ACT_KILL_PROCESS', syscalls: [allow(['read', 'arm_fadvise64_64', 'not_yet_a_call']), { names: ['nor_this_one'], action: 'SCMP_ACT_KILL' }] };
  for (const p of [docker, killing]) {
    assert.deepEqual(compareProfiles(p, p, 'SCMP_ARCH_X86_64'), { loosened: [], tightened: [], changed: [] });
    const reordered: SeccompProfile = { ...p, syscalls: [...(p.syscalls ?? [])].reverse().map((e) => ({ ...e, names: [...e.names].reverse() })) };
    assert.deepEqual(compareProfiles(p, reordered, 'SCMP_ARCH_X86_64'), { loosened: [], tightened: [], changed: [] });
  }
});

test('made-up names cost the comparison a bounded amount: three of a kind stand in for all of them', () => {
  const names = Array.from({ length: 3000 }, (_, i) => `zz_not_a_call_${i}`);
  const older: SeccompProfile = { defaultAction: 'SCMP_ACT_KILL_PROCESS', architectures: ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32'], syscalls: [allow(['read', ...names])] };
  const newer: SeccompProfile = { ...older, syscalls: [allow(['read', ...names.slice(1)])] };
  const r = compareProfiles(older, newer, 'SCMP_ARCH_X86_64');
  // The dropped name was allowed: denied now, whatever its place.
  assert.ok(r.tightened.some((c) => c.kind === 'syscall' && c.syscall === 'zz_not_a_call_0'));
  // A library that knows it and the names NEW still has, but not the call between them, numbered
  // so: NEW's threshold falls below that call, which OLD's default killed and NEW's stub answers
  // ENOSYS. Every name of the class gets that reading, the last as the first.
  const loosenedByStub = r.loosened.filter((c) => c.kind === 'enosys').flatMap((c) => (c.kind === 'enosys' ? c.syscalls : []));
  for (const name of ['zz_not_a_call_1', 'zz_not_a_call_2999']) assert.ok(loosenedByStub.includes(name), name);
});

/** A model of one architecture's names for the brute force below: numbers, the certain names, 32-bit x86's families. */
interface Universe {
  numbers: Readonly<Record<string, number>>;
  certain: readonly string[];
  socket: readonly string[];
  ipc: readonly string[];
}

/**
 * Brute force over libraries, written apart from the diff's own model: each uncertain name known
 * or not, each 32-bit x86 family numbered or not (the IPC one also without its direct rule); every
 * call runc treats more loosely under NEW must be reported loosened.
 */
function assertLooseningsReported(a: SeccompArchitecture, u: Universe, older: SeccompProfile, newer: SeccompProfile): void {
  const r = compareProfiles(older, newer, a);
  const names = Object.keys(u.numbers);
  const uncertain = names.filter((n) => !u.certain.includes(n) && !u.socket.includes(n) && !u.ipc.includes(n));
  const families = a === 'SCMP_ARCH_X86' ? [[true, true], [false, true]].flatMap((s) => [[false, false], [true, true], [false, true]].map((i) => [s, i])) : [[[true, true], [true, true]]];
  const tabled = (n: string) => u.numbers[n]! < 10_000;
  for (let known = 0; known < 1 << uncertain.length; known++) {
    for (const [[sockCounts, sockRuled], [ipcCounts, ipcRuled]] of families) {
      const counts = (n: string) => (u.socket.includes(n) ? sockCounts : u.ipc.includes(n) ? ipcCounts : !uncertain.includes(n) || (known & (1 << uncertain.indexOf(n))) !== 0);
      const ruled = (n: string) => (u.socket.includes(n) ? sockRuled : u.ipc.includes(n) ? ipcRuled : counts(n));
      const verdict = (p: SeccompProfile, call: string): SeccompAction => {
        const nrs = (p.syscalls ?? []).flatMap((e) => e.names).filter(counts).map((n) => u.numbers[n]!);
        const threshold = !['SCMP_ACT_ALLOW', 'SCMP_ACT_LOG', 'SCMP_ACT_TRACE'].includes(p.defaultAction) && nrs.length > 0 && Math.max(...nrs) > 0 ? Math.max(...nrs) : undefined;
        if (threshold !== undefined && u.numbers[call]! > threshold) return 'SCMP_ACT_ERRNO';
        return ruled(call) ? evaluate(p, { syscall: call, args: [] }).action : p.defaultAction;
      };
      for (const call of names) {
        if (actionRank(verdict(newer, call)) <= actionRank(verdict(older, call))) continue;
        const named = [older, newer].some((p) => (p.syscalls ?? []).some((e) => e.names.includes(call)));
        // A call newer than the tables that neither profile names is reported as all such calls.
        const listedAs = !tabled(call) && !named ? UNTABLED_CALLS : call;
        const reported = r.loosened.some((c) => (c.kind === 'syscall' && c.syscall === (named ? call : OTHER_SYSCALLS)) || (c.kind === 'enosys' && c.syscalls.includes(listedAs)));
        assert.ok(reported, `${a} ${call} known=${known} families=${sockCounts},${ipcCounts}/${ipcRuled}: ${JSON.stringify([older, newer])} → ${JSON.stringify(r.loosened)}`);
      }
    }
  }
}

const STUB_ACTIONS: SeccompAction[] = ['SCMP_ACT_KILL_PROCESS', 'SCMP_ACT_ERRNO', 'SCMP_ACT_NOTIFY', 'SCMP_ACT_ALLOW'];
/** Two profiles of `names` from generated rows: a row goes to OLD, NEW or both. */
const stubPair = (a: SeccompArchitecture, names: readonly string[], [d0, d1]: number[], rows: [number, number, number][]): [SeccompProfile, SeccompProfile] => {
  const mk = (d: number, side: number): SeccompProfile => ({
    defaultAction: (['SCMP_ACT_KILL_PROCESS', 'SCMP_ACT_TRAP', 'SCMP_ACT_ERRNO', 'SCMP_ACT_ALLOW'] as const)[d % 4]!,
    architectures: [a],
    syscalls: rows.filter(([, , s]) => s % 3 === side || s % 3 === 2).map(([n, k]) => ({ names: [names[n % names.length]!], action: STUB_ACTIONS[k % STUB_ACTIONS.length]! })),
  });
  return [mk(d0!, 0), mk(d1!, 1)];
};

test('property: whatever names the node libseccomp knows, a call runc treats more loosely under NEW is reported loosened', () => {
  const universes: Partial<Record<SeccompArchitecture, Universe>> = {
    SCMP_ARCH_X86_64: { numbers: { write: 1, openat: 257, preadv2: 327, rseq: 334, uretprobe: 335, uprobe: 336, futex_waitv: 449, listns: 470, not_yet_a_syscall: 10_000 }, certain: ['write', 'openat'], socket: [], ipc: [] },
    SCMP_ARCH_X86: { numbers: { write: 4, socket: 359, userfaultfd: 374, arch_prctl: 384, shmget: 395, clock_gettime64: 403, map_shadow_stack: 453, not_yet_a_syscall: 10_000 }, certain: ['write', 'userfaultfd'], socket: ['socket'], ipc: ['shmget'] },
  };
  const arch = fc.constantFrom(...(Object.keys(universes) as SeccompArchitecture[]));
  fc.assert(
    fc.property(arch, fc.array(fc.nat(), { minLength: 2, maxLength: 2 }), fc.array(fc.tuple(fc.nat(), fc.nat(), fc.nat()), { maxLength: 8 }), (a, defaults, rows) => {
      const u = universes[a]!;
      const [older, newer] = stubPair(a, Object.keys(u.numbers), defaults, rows);
      assertLooseningsReported(a, u, older, newer);
    }),
    { numRuns: 300 },
  );
});

test('property: calls newer than the tables, however a library numbers and orders them, and however many of a kind, are read soundly', () => {
  // Five made-up names numbered past the tables in a generated order: four of a kind and more
  // reach the names that stand in for the rest.
  const made = ['new_a', 'new_b', 'new_c', 'new_d', 'new_e'];
  fc.assert(
    fc.property(fc.shuffledSubarray([0, 1, 2, 3, 4], { minLength: 5, maxLength: 5 }), fc.array(fc.nat(), { minLength: 2, maxLength: 2 }), fc.array(fc.tuple(fc.nat(), fc.nat(), fc.nat()), { maxLength: 10 }), (order, defaults, rows) => {
      const u: Universe = { numbers: { write: 1, uretprobe: 335, ...Object.fromEntries(made.map((n, i) => [n, 10_000 + order[i]!])) }, certain: ['write'], socket: [], ipc: [] };
      const [older, newer] = stubPair('SCMP_ARCH_X86_64', Object.keys(u.numbers), defaults, rows);
      assertLooseningsReported('SCMP_ARCH_X86_64', u, older, newer);
    }),
    { numRuns: 400 },
  );
});

test("where spoke has no call numbers (aarch64), a change in the names that set runc's threshold is reported loosened, never silently", () => {
  const p = (names: string[], architectures: SeccompArchitecture[] = ['SCMP_ARCH_AARCH64']): SeccompProfile => ({ defaultAction: 'SCMP_ACT_KILL', architectures, syscalls: [allow(['write']), ...(names.length > 0 ? [{ names, action: 'SCMP_ACT_KILL' as const }] : [])] });
  // Dropping the highest-numbered name lowers the threshold: the calls between go from a kill to ENOSYS.
  const r = compareProfiles(p(['futex_waitv']), p([]));
  assert.deepEqual(r.loosened, [{ kind: 'enosys-unnumbered', architecture: 'SCMP_ARCH_AARCH64', added: [], removed: ['futex_waitv'] }]);
  // The node's architecture, for profiles without a list.
  assert.ok(compareProfiles(p(['futex_waitv'], []), p([], []), 'SCMP_ARCH_AARCH64').loosened.some((c) => c.kind === 'enosys-unnumbered'));
  // The same names set the same threshold under any library; no stub where the default allows.
  assert.deepEqual(compareProfiles(p(['futex_waitv']), { ...p(['futex_waitv']), syscalls: [allow(['write', 'futex_waitv'])] }).loosened.filter((c) => c.kind === 'enosys-unnumbered'), []);
  assert.deepEqual(compareProfiles({ ...p(['futex_waitv']), defaultAction: 'SCMP_ACT_ALLOW' }, { ...p([]), defaultAction: 'SCMP_ACT_ALLOW' }).loosened.filter((c) => c.kind === 'enosys-unnumbered'), []);
});
