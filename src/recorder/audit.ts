// Bounded, anchored parsing of seccomp audit records (type 1326 / SECCOMP). Pure: no I/O.
//
// Accepted line forms:
//   /dev/kmsg:  `PRI,SEQ,TS_US,FLAGS[,…];audit: type=1326 audit(SEC.MS:SERIAL): k=v k=v …`
//   audit.log:  `type=SECCOMP msg=audit(SEC.MS:SERIAL): k=v k=v …`
//   dmesg text: `[  123.456789] audit: type=1326 audit(SEC.MS:SERIAL): k=v …`
// auditd's default log_format ENRICHED appends a GS byte (0x1d) and its own resolutions
// (` AUID="root" UID="root" … SYSCALL=mkdir`); everything from the first 0x1d on is cut off
// unread. The kernel hex-encodes any value holding a control character, so a 0x1d can only be
// auditd's separator, and the call is taken from the kernel's raw fields alone.
// The body after the header is tokenized left to right into `key=value` pairs separated by one
// space, where a value is either a double-quoted string without quotes inside (the kernel never
// writes one: audit_log_untrustedstring hex-encodes any value holding a quote, space or control
// character) or a run of non-space characters without quotes. The fields we use (pid, arch,
// syscall) are read only from these pairs, never from inside a quoted value, so a process named
// `x syscall=59` cannot add a call. Anything that does not tokenize cleanly, a key given twice, a
// field with the wrong shape or a line over MAX_AUDIT_LINE characters rejects the whole line:
// a dropped record can only make the recorded profile stricter, never looser.

import { syscallName } from './syscalls.js';

export const MAX_AUDIT_LINE = 8192;
/** At most this many key=value pairs after the header (a real record has about 14). */
export const MAX_AUDIT_FIELDS = 64;
/** SECCOMP_RET_LOG, the `code=` of a call let through by SCMP_ACT_LOG. */
export const SECCOMP_RET_LOG = 0x7ffc0000;

export interface AuditRecord {
  /** Host pid (the thread group id of the caller). */
  pid: number;
  /** Syscall number as the kernel saw it (x32 calls keep their 0x40000000 bit). */
  syscall: number;
  /** AUDIT_ARCH_* value of the `arch=` field. */
  arch: number;
  /** Name from the kernel table of that arch, undefined when it has none. */
  name: string | undefined;
  /** The seccomp return value (`code=`), when present. */
  code: number | undefined;
  /** `audit(SEC.MS:SERIAL)`: wall-clock milliseconds and the audit serial. */
  auditTimeMs: number;
  serial: number;
  /** /dev/kmsg only: the record's sequence number and its timestamp (µs since boot). */
  kmsgSeq?: number;
  kmsgTimeUs?: number;
}

const ENRICHMENT_SEPARATOR = '\x1d';
const KMSG_PREFIX = /^(\d{1,3}),(\d{1,20}),(\d{1,20}),[^;]{0,32};/;
const DMESG_PREFIX = /^\[ {0,12}\d{1,12}\.\d{1,9}\] /;
const KERNEL_HEADER = /^audit: type=1326 audit\((\d{1,12})\.(\d{3}):(\d{1,20})\): /;
const AUDITD_HEADER = /^type=SECCOMP msg=audit\((\d{1,12})\.(\d{3}):(\d{1,20})\): /;
const KEY = /^[a-z][a-z0-9_]{0,31}$/;
const DECIMAL = /^\d{1,10}$/;
const HEX32 = /^[0-9a-f]{1,8}$/;
const HEX_CODE = /^0x[0-9a-f]{1,8}$/;

/** Splits `k=v k="v w" …` into pairs; undefined when the text is not exactly that shape. */
export function tokenizeAuditFields(body: string): Map<string, string> | undefined {
  const fields = new Map<string, string>();
  let i = 0;
  while (i < body.length) {
    const eq = body.indexOf('=', i);
    if (eq < 0) return undefined;
    const key = body.slice(i, eq);
    if (!KEY.test(key) || fields.has(key)) return undefined;
    let value: string;
    let end: number;
    if (body[eq + 1] === '"') {
      const close = body.indexOf('"', eq + 2);
      if (close < 0) return undefined;
      value = body.slice(eq + 1, close + 1);
      end = close + 1;
    } else if (key === 'subj') {
      // The LSM label, written unescaped: AppArmor's carries its mode, `name (enforce)`. It runs
      // to the pid field the kernel writes next.
      end = body.indexOf(' pid=', eq + 1);
      if (end < 0) return undefined;
      value = body.slice(eq + 1, end);
      if (value.includes('"')) return undefined;
    } else {
      const space = body.indexOf(' ', eq + 1);
      end = space < 0 ? body.length : space;
      value = body.slice(eq + 1, end);
      if (value.includes('"')) return undefined;
    }
    fields.set(key, value);
    if (fields.size > MAX_AUDIT_FIELDS) return undefined;
    if (end === body.length) break;
    if (body[end] !== ' ' || end + 1 === body.length) return undefined;
    i = end + 1;
  }
  return fields;
}

/**
 * Parses one line; undefined for anything that is not a well-formed seccomp record (other
 * kernel messages, other audit types, garbage, over-long lines).
 */
export function parseAuditRecord(line: string): AuditRecord | undefined {
  if (line.length > MAX_AUDIT_LINE) return undefined;
  // A kmsg record may carry continuation lines (` KEY=VALUE` dictionary); only the first counts.
  const nl = line.indexOf('\n');
  let text = nl < 0 ? line : line.slice(0, nl);
  if (text.endsWith('\r')) text = text.slice(0, -1);
  const gs = text.indexOf(ENRICHMENT_SEPARATOR);
  if (gs >= 0) text = text.slice(0, gs);
  let kmsgSeq: number | undefined;
  let kmsgTimeUs: number | undefined;
  const kmsg = KMSG_PREFIX.exec(text);
  // The kernel's own lines carry facility 0 (priority 0-7). What a process writes to /dev/kmsg
  // is tagged LOG_USER (8 and up): anyone allowed to open it could otherwise print a record of
  // another pid's call.
  if (kmsg && Number(kmsg[1]) >= 8) return undefined;
  if (kmsg) {
    kmsgSeq = Number(kmsg[2]);
    kmsgTimeUs = Number(kmsg[3]);
    text = text.slice(kmsg[0].length);
  } else {
    const dmesg = DMESG_PREFIX.exec(text);
    if (dmesg) text = text.slice(dmesg[0].length);
  }
  const header = KERNEL_HEADER.exec(text) ?? AUDITD_HEADER.exec(text);
  if (!header) return undefined;
  const fields = tokenizeAuditFields(text.slice(header[0].length));
  if (!fields) return undefined;
  const pid = fields.get('pid');
  const syscall = fields.get('syscall');
  const arch = fields.get('arch');
  const code = fields.get('code');
  if (pid === undefined || !DECIMAL.test(pid) || syscall === undefined || !DECIMAL.test(syscall) || arch === undefined || !HEX32.test(arch)) return undefined;
  if (code !== undefined && !HEX_CODE.test(code)) return undefined;
  const archValue = parseInt(arch, 16);
  const nr = Number(syscall);
  if (nr > 0xffffffff) return undefined;
  return {
    pid: Number(pid),
    syscall: nr,
    arch: archValue,
    name: syscallName(archValue, nr),
    code: code === undefined ? undefined : parseInt(code.slice(2), 16),
    auditTimeMs: Number(header[1]) * 1000 + Number(header[2]),
    serial: Number(header[3]),
    ...(kmsgSeq === undefined ? {} : { kmsgSeq, kmsgTimeUs }),
  };
}

/**
 * Kernel lines that say audit records were dropped: printk rate limiting of kauditd
 * ("kauditd_printk_skb: N callbacks suppressed") and audit's own loss report ("audit_lost=").
 */
export function isAuditLossNotice(line: string): boolean {
  if (line.length > MAX_AUDIT_LINE) return false;
  const kmsg = KMSG_PREFIX.exec(line);
  // The kernel's own lines only (facility 0, the notice at the start of the message): a user
  // audit message carries text a process chose inside msg='…', and what a process writes to
  // /dev/kmsg is tagged LOG_USER.
  if (kmsg && Number(kmsg[1]) >= 8) return false;
  return LOSS_NOTICE.test(kmsg ? line.slice(kmsg[0].length) : line);
}

const LOSS_NOTICE = /^(?:kauditd_printk_skb: \d{1,10} callbacks suppressed|audit: audit_lost=\d{1,10} )/;


/**
 * When the call was made, in µs since boot: the audit timestamp (wall clock) less the boot time,
 * for a kmsg record too. Its printk timestamp is on another clock than the process start times
 * it is compared with (/proc/<pid>/stat counts boot time): here it ran 0.6 s ahead after 22 h,
 * and a process that took a dead caller's pid that long after the call passed for the caller
 * (src/recorder/pids.ts). Without the boot time, the kmsg timestamp is all there is.
 */
export function recordTimeUs(rec: AuditRecord, bootWallMs: number | undefined): number | undefined {
  if (bootWallMs === undefined) return rec.kmsgTimeUs;
  return Math.max(0, (rec.auditTimeMs - bootWallMs) * 1000);
}
