import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { isAuditLossNotice, MAX_AUDIT_LINE, parseAuditRecord, tokenizeAuditFields } from '../../../src/recorder/audit.js';
import { finishesInChild } from '../../helpers/hang.js';

const BODY = 'auid=4294967295 uid=0 gid=0 ses=4294967295 subj=unconfined pid=6317 comm="cat" exe="/bin/busybox" sig=0 arch=c000003e syscall=40 compat=0 ip=0x47cf2a code=0x7ffc0000';
const KMSG = `5,1234,3051664856,-;audit: type=1326 audit(1795449621.225:125): ${BODY}`;
const AUDITD = `type=SECCOMP msg=audit(1795449621.225:125): ${BODY}`;
const DMESG = `[ 3051.664856] audit: type=1326 audit(1795449621.225:125): ${BODY}`;

describe('parseAuditRecord', () => {
  test('kmsg record: pid, syscall, arch, name, code, timestamps', () => {
    const r = parseAuditRecord(KMSG);
    assert.deepEqual(r, { pid: 6317, syscall: 40, arch: 0xc000003e, name: 'sendfile', code: 0x7ffc0000, auditTimeMs: 1795449621225, serial: 125, kmsgSeq: 1234, kmsgTimeUs: 3051664856 });
  });

  test('a kmsg line a process wrote (facility LOG_USER, priority 8 and up) is not a kernel record', () => {
    // Any process that may open /dev/kmsg for writing can print this: the kernel tags it LOG_USER.
    for (const prio of [8, 13, 14, 191]) assert.equal(parseAuditRecord(KMSG.replace(/^5,/, `${prio},`)), undefined, String(prio));
    assert.equal(parseAuditRecord(KMSG.replace(/^5,/, '4,'))?.pid, 6317);
  });

  test('an AppArmor subject label, written by the kernel unescaped with its mode in parentheses, is read to the pid field', () => {
    // containerd's default profile (`cri-containerd.apparmor.d (enforce)`), GKE's docker-default.
    for (const subj of ['cri-containerd.apparmor.d (enforce)', 'docker-default (enforce)', 'spoke-abc (complain)']) {
      for (const line of [KMSG, AUDITD]) {
        const r = parseAuditRecord(line.replace('subj=unconfined', `subj=${subj}`));
        assert.equal(r?.pid, 6317, `${subj} in ${line.slice(0, 12)}`);
        assert.equal(r?.name, 'sendfile');
      }
    }
    // Only up to the first ` pid=`: a label cannot hide a second pid field.
    assert.equal(parseAuditRecord(KMSG.replace('subj=unconfined pid=6317', 'subj=x (enforce) pid=1 pid=6317')), undefined);
  });

  test('audit.log and dmesg forms give the same call', () => {
    for (const line of [AUDITD, DMESG]) {
      const r = parseAuditRecord(line);
      assert.equal(r?.pid, 6317);
      assert.equal(r?.name, 'sendfile');
      assert.equal(r?.kmsgSeq, undefined);
    }
  });

  // auditd's default log_format ENRICHED appends GS (0x1d) and its own resolutions of the ids.
  const ENRICHED = `${AUDITD}\x1dAUID="unset" UID="root" GID="root" ARCH=x86_64 SYSCALL=sendfile`;

  test('auditd ENRICHED lines parse like the raw record', () => {
    const r = parseAuditRecord(ENRICHED);
    assert.deepEqual(r, { pid: 6317, syscall: 40, arch: 0xc000003e, name: 'sendfile', code: 0x7ffc0000, auditTimeMs: 1795449621225, serial: 125 });
  });

  test('the enriched part is never read: its fields cannot change the call', () => {
    for (const tail of ['\x1dARCH=i386 SYSCALL=mkdir syscall=83 pid=1', '\x1d syscall=83', '\x1d\x1dSYSCALL="a b"', '\x1d']) {
      const r = parseAuditRecord(`${AUDITD}${tail}`);
      assert.equal(r?.syscall, 40, tail);
      assert.equal(r?.pid, 6317, tail);
      assert.equal(r?.arch, 0xc000003e, tail);
    }
  });

  test('kmsg continuation lines are ignored', () => {
    assert.equal(parseAuditRecord(`${KMSG}\n SUBSYSTEM=audit\n DEVICE=+x`)?.syscall, 40);
  });

  test('i386 records use the 32-bit table', () => {
    const r = parseAuditRecord(KMSG.replace('arch=c000003e syscall=40', 'arch=40000003 syscall=11'));
    assert.equal(r?.name, 'execve');
  });

  test('x32 and unknown numbers parse but have no name', () => {
    assert.equal(parseAuditRecord(KMSG.replace('syscall=40', `syscall=${0x40000000 + 59}`))?.name, undefined);
    assert.equal(parseAuditRecord(KMSG.replace('syscall=40', 'syscall=999'))?.name, undefined);
    assert.equal(parseAuditRecord(KMSG.replace('arch=c000003e', 'arch=c00000b7'))?.name, undefined);
  });

  const injections: [string, string][] = [
    ['comm with a fake syscall field', KMSG.replace('comm="cat"', 'comm="x syscall=59"')],
    ['exe with a fake syscall and pid', KMSG.replace('exe="/bin/busybox"', 'exe="/tmp/a pid=1 syscall=59 arch=40000003"')],
  ];
  for (const [what, line] of injections) {
    test(`injection inside a quoted value is inert: ${what}`, () => {
      const r = parseAuditRecord(line);
      assert.equal(r?.syscall, 40);
      assert.equal(r?.pid, 6317);
      assert.equal(r?.arch, 0xc000003e);
    });
  }

  const rejected: [string, string][] = [
    ['escaped quote breaking out of exe', KMSG.replace('exe="/bin/busybox"', 'exe="a\\" syscall=1"')],
    ['fake field before the real one (duplicate key)', KMSG.replace('sig=0', 'syscall=59 sig=0')],
    ['unterminated quote', KMSG.replace('comm="cat"', 'comm="cat')],
    ['quote inside an unquoted value', KMSG.replace('sig=0', 'sig=0"')],
    ['no pid', KMSG.replace(' pid=6317', '')],
    ['non-numeric syscall', KMSG.replace('syscall=40', 'syscall=40a')],
    ['huge syscall number', KMSG.replace('syscall=40', 'syscall=99999999999')],
    ['negative pid', KMSG.replace('pid=6317', 'pid=-1')],
    ['bad arch', KMSG.replace('arch=c000003e', 'arch=zz')],
    ['bad code', KMSG.replace('code=0x7ffc0000', 'code=7ffc0000')],
    ['other audit type', KMSG.replace('type=1326', 'type=1400')],
    ['AVC in audit.log', AUDITD.replace('type=SECCOMP', 'type=AVC')],
    ['header not at the start', `garbage ${AUDITD}`],
    ['a userspace message quoting a record', `6,1,1,-;myapp: audit: type=1326 audit(1.000:1): ${BODY}`],
    ['double space', KMSG.replace(' sig=0', '  sig=0')],
    ['trailing space', `${KMSG} `],
    ['empty', ''],
    ['binary garbage', '\u0000\u0001\u00ff'.repeat(50)],
    ['over-long line', `${KMSG} x=${'a'.repeat(MAX_AUDIT_LINE)}`],
    ['too many fields', `${KMSG}${' k=v'.repeat(100).replace(/k=/g, () => `k${Math.random().toString(36).slice(2, 8)}=`)}`],
  ];
  for (const [what, line] of rejected) {
    test(`rejected: ${what}`, () => assert.equal(parseAuditRecord(line), undefined));
  }

  test('a kernel-style hex-encoded comm is just an unquoted value', () => {
    const r = parseAuditRecord(KMSG.replace('comm="cat"', 'comm=782073797363616C6C3D3539'));
    assert.equal(r?.syscall, 40);
  });

  test('a line of unterminated quotes is rejected without a backtracking blow-up', () => {
    const out = finishesInChild(new URL('../../../src/recorder/audit.js', import.meta.url), `
      const line = '5,1,1,-;audit: type=1326 audit(1.000:1): ' + 'a="'.repeat(2000);
      let parsed = 0;
      for (let i = 0; i < 100; i++) if (m.parseAuditRecord(line) !== undefined) parsed++;
      process.stdout.write(String(parsed));`);
    assert.equal(out, '0');
  });
});

describe('tokenizeAuditFields', () => {
  test('quoted values keep their quotes and spaces', () => {
    assert.deepEqual([...tokenizeAuditFields('a=1 comm="x y=2" b=3')!], [
      ['a', '1'],
      ['comm', '"x y=2"'],
      ['b', '3'],
    ]);
  });
});

describe('isAuditLossNotice', () => {
  test('printk suppression and audit_lost are loss notices', () => {
    assert.ok(isAuditLossNotice('4,99,1,-;kauditd_printk_skb: 17 callbacks suppressed'));
    assert.ok(isAuditLossNotice('4,99,1,-;audit: audit_lost=3 audit_rate_limit=0 audit_backlog_limit=64'));
    assert.ok(!isAuditLossNotice(KMSG));
  });

  test('only the kernel says so: a notice inside a user audit message, or written to /dev/kmsg by a process, is not one', () => {
    // Any process with CAP_AUDIT_WRITE (containerd's default set) can send a user message whose
    // text the kernel copies into msg='…'; counted, it failed every recording on the node.
    assert.ok(!isAuditLossNotice("5,123,456,-;audit: type=1107 audit(1795449621.225:9): pid=7 uid=65534 auid=4294967295 ses=4294967295 msg='kauditd_printk_skb: 1 callbacks suppressed'"));
    assert.ok(!isAuditLossNotice("type=USER msg=audit(1795449621.225:9): pid=7 uid=65534 auid=4294967295 ses=4294967295 msg='kauditd_printk_skb: 1 callbacks suppressed'"));
    assert.ok(!isAuditLossNotice('12,5,6,-;audit: audit_lost=3 audit_rate_limit=0 audit_backlog_limit=64'));
    assert.ok(!isAuditLossNotice('12,5,6,-;kauditd_printk_skb: 17 callbacks suppressed'));
  });
});
