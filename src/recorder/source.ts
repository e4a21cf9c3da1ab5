// Where seccomp audit records come from, and the kernel settings recording depends on.
// - auditd running: the kernel hands records to it and they land in /var/log/audit/audit.log
//   (`type=SECCOMP msg=audit(…)`); we tail that file from its end, following rotation.
// - no auditd: the kernel prints them (`audit: type=1326 …`) through printk, which passes only
//   printk_ratelimit_burst records per printk_ratelimit seconds (10 per 5 s by default) and drops
//   the rest ("kauditd_printk_skb: N callbacks suppressed"). We read /dev/kmsg from its end and
//   lift that limit while recording (PrintkRateLimit), restoring it afterwards.

import { randomBytes } from 'node:crypto';
import { closeSync, constants, existsSync, fstatSync, mkdirSync, openSync, readdirSync, readFileSync, readSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { SpokeError } from '../core/errors.js';
import { MAX_AUDIT_LINE } from './audit.js';

export interface AuditSource {
  readonly kind: 'kmsg' | 'audit-log';
  readonly path: string;
  /** Lines available now (never blocks); [] when there is nothing new. */
  poll(): string[];
  /** Records the kernel overwrote before we read them (kmsg EPIPE) or lines over the cap. */
  readonly lost: number;
  close(): void;
}

const MAX_LINES_PER_POLL = 4096;

/** /dev/kmsg, positioned after the records that exist when it is opened. */
export class KmsgSource implements AuditSource {
  readonly kind = 'kmsg';
  lost = 0;
  private fd: number | undefined;
  private readonly buf = Buffer.alloc(16 * 1024);

  constructor(readonly path = '/dev/kmsg') {
    this.fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
    // No lseek(SEEK_END) in node: read and discard what is already there.
    for (let i = 0; i < 1_000_000 && this.readOne() !== undefined; i++);
    this.lost = 0;
  }

  private readOne(): string | undefined {
    if (this.fd === undefined) return undefined;
    for (;;) {
      try {
        const n = readSync(this.fd, this.buf, 0, this.buf.length, null);
        return n === 0 ? undefined : this.buf.toString('utf8', 0, n);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === 'EAGAIN' || code === 'EWOULDBLOCK') return undefined;
        // EPIPE: the record at our position was overwritten; the next read goes on after it.
        if (code === 'EPIPE') {
          this.lost++;
          continue;
        }
        throw e;
      }
    }
  }

  poll(): string[] {
    const out: string[] = [];
    for (let i = 0; i < MAX_LINES_PER_POLL; i++) {
      const line = this.readOne();
      if (line === undefined) break;
      out.push(line);
    }
    return out;
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }
}

/** A line-oriented log file tailed from its end; reopens from the start after rotation or truncation. */
export class AuditLogSource implements AuditSource {
  readonly kind = 'audit-log';
  lost = 0;
  private fd: number | undefined;
  private ino = 0;
  private offset = 0;
  private partial = '';
  private skipping = false;
  private readonly buf = Buffer.alloc(64 * 1024);

  constructor(readonly path = '/var/log/audit/audit.log') {
    this.open(true);
  }

  private open(atEnd: boolean): void {
    this.fd = openSync(this.path, constants.O_RDONLY);
    const st = fstatSync(this.fd);
    this.ino = st.ino;
    this.offset = atEnd ? st.size : 0;
    this.partial = '';
    this.skipping = false;
  }

  poll(): string[] {
    if (this.fd === undefined) return [];
    const out: string[] = [];
    try {
      const st = statSync(this.path);
      const cur = fstatSync(this.fd);
      if (cur.size < this.offset) this.offset = 0; // truncated
      // Rotated: finish the old file first, then switch.
      this.drain(out);
      if (st.ino !== this.ino) {
        closeSync(this.fd);
        this.open(false);
        this.drain(out);
      }
    } catch {
      /* rotated away and not recreated yet: try again on the next poll */
    }
    return out;
  }

  private drain(out: string[]): void {
    for (let i = 0; i < 1024 && this.fd !== undefined; i++) {
      const n = readSync(this.fd, this.buf, 0, this.buf.length, this.offset);
      if (n === 0) return;
      this.offset += n;
      const text = this.partial + this.buf.toString('utf8', 0, n);
      const lines = text.split('\n');
      this.partial = lines.pop() ?? '';
      for (const l of lines) {
        if (this.skipping) {
          this.skipping = false; // the tail of an over-long line
          continue;
        }
        if (l.length > MAX_AUDIT_LINE) {
          this.lost++;
          continue;
        }
        out.push(l);
      }
      if (this.partial.length > MAX_AUDIT_LINE) {
        this.partial = '';
        this.skipping = true;
        this.lost++;
      }
    }
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }
}

/** The real uid (the first of `Uid:`) of /proc/<pid>/status: a setuid binary's process keeps its user's. */
function realUid(status: string): number | undefined {
  const m = /^Uid:\t(\d{1,10})\t/m.exec(status.slice(0, 8192));
  return m ? Number(m[1]) : undefined;
}

/**
 * Whether an auditd process runs on this host (then the kernel sends records to it, not printk).
 * Only one whose real uid is root counts: any user can name a process `auditd` (a setuid-root
 * binary run under that name too), and the recording would then read a log nobody writes.
 */
export function auditdRunning(procRoot = '/proc'): boolean {
  try {
    for (const name of readdirSync(procRoot)) {
      if (!/^\d+$/.test(name)) continue;
      try {
        if (readFileSync(`${procRoot}/${name}/comm`, 'utf8').trim() === 'auditd' && realUid(readFileSync(`${procRoot}/${name}/status`, 'utf8')) === 0) return true;
      } catch {
        /* exited */
      }
    }
  } catch {
    /* no /proc */
  }
  return false;
}

export interface SourceChoice {
  kind: 'kmsg' | 'audit-log';
  path: string;
}

export function chooseAuditSource(opts: { auditLog?: string; kmsg?: string; procRoot?: string } = {}): SourceChoice {
  const auditLog = opts.auditLog ?? '/var/log/audit/audit.log';
  if (auditdRunning(opts.procRoot) && existsSync(auditLog)) return { kind: 'audit-log', path: auditLog };
  return { kind: 'kmsg', path: opts.kmsg ?? '/dev/kmsg' };
}

export function openAuditSource(choice: SourceChoice): AuditSource {
  return choice.kind === 'audit-log' ? new AuditLogSource(choice.path) : new KmsgSource(choice.path);
}

// ---------------------------------------------------------------------------------------------
// Preflight: name the missing kernel feature instead of recording nothing.

export interface PreflightOptions {
  procRoot?: string;
  source?: SourceChoice;
  uid?: number;
}

/** Throws FailedPrecondition naming the first missing feature; returns the source to use. */
export function preflight(opts: PreflightOptions = {}): SourceChoice {
  const proc = opts.procRoot ?? '/proc';
  const fail = (message: string, rule: string) => new SpokeError('FailedPrecondition', message, { rule }, { reason: 'RECORDER_UNAVAILABLE' });
  const uid = opts.uid ?? process.getuid?.();
  if (uid !== 0) throw fail('recording needs root: it reads the kernel log and lifts the printk rate limit', 'root');
  let avail: string;
  try {
    avail = readFileSync(`${proc}/sys/kernel/seccomp/actions_avail`, 'utf8');
  } catch {
    throw fail(`the kernel has no seccomp filter support (${proc}/sys/kernel/seccomp/actions_avail missing)`, 'seccomp');
  }
  if (!avail.split(/\s+/).includes('log')) throw fail('the kernel has no SECCOMP_RET_LOG action (Linux >= 4.14 needed): SCMP_ACT_LOG cannot record', 'seccomp-log');
  const logged = readFileSync(`${proc}/sys/kernel/seccomp/actions_logged`, 'utf8');
  if (!logged.split(/\s+/).includes('log')) {
    throw fail(`the kernel does not log SCMP_ACT_LOG calls: ${proc}/sys/kernel/seccomp/actions_logged lacks "log" (add it: echo "${logged.trim()} log" > ${proc}/sys/kernel/seccomp/actions_logged)`, 'actions-logged');
  }
  if (!existsSync(`${proc}/self/loginuid`)) throw fail('the kernel is built without audit support (CONFIG_AUDIT): seccomp writes no records', 'audit');
  try {
    if (/(^|\s)audit=0(\s|$)/.test(readFileSync(`${proc}/cmdline`, 'utf8'))) throw fail('audit is disabled on the kernel command line (audit=0): seccomp writes no records', 'audit');
  } catch (e) {
    if (e instanceof SpokeError) throw e;
  }
  const source = opts.source ?? chooseAuditSource({ procRoot: proc });
  try {
    closeSync(openSync(source.path, constants.O_RDONLY | constants.O_NONBLOCK));
  } catch (e) {
    throw fail(`cannot read ${source.path} (${(e as NodeJS.ErrnoException).code ?? String(e)})`, source.kind);
  }
  return source;
}

// ---------------------------------------------------------------------------------------------
// printk rate limit: lifted while recording from /dev/kmsg, restored after, even after a crash.

export interface PrintkSettings {
  ratelimit: string;
  burst: string;
}

/**
 * Lifts printk rate limiting (printk_ratelimit = 0 disables it) and restores the values found.
 * The values are saved to `stateFile` before anything is changed, so a recorder that died
 * without restoring is corrected by the next one, which restores from the file, not from the
 * lifted values. Nested lifts in one process share one save.
 *
 * Recorders in several processes: a lift that finds the limit in force (not 0) takes those
 * values as the originals and saves them (written aside, renamed over the file); one that finds
 * it lifted (another recorder's lift, or one that crashed) takes the saved ones. Each process
 * restores what it took, and the file stays (in /run, gone at boot), so no lift can mistake
 * another's 0 for the original. A restore while another process still records rate-limits
 * that recorder's records again; it sees the kernel's notices and refuses its recording as
 * incomplete, never silently short.
 */
export class PrintkRateLimit {
  private static holders = 0;
  /** The values this process restores, taken at its first lift. */
  private static original: PrintkSettings | undefined;
  private lifted = false;
  private readonly ratelimitPath: string;
  private readonly burstPath: string;

  constructor(
    private readonly stateFile = '/run/spoke/printk-ratelimit.json',
    procRoot = '/proc',
  ) {
    this.ratelimitPath = `${procRoot}/sys/kernel/printk_ratelimit`;
    this.burstPath = `${procRoot}/sys/kernel/printk_ratelimit_burst`;
  }

  current(): PrintkSettings {
    return { ratelimit: readFileSync(this.ratelimitPath, 'utf8').trim(), burst: readFileSync(this.burstPath, 'utf8').trim() };
  }

  /** Saved original values (from an earlier crash or this lift), if any. */
  saved(): PrintkSettings | undefined {
    try {
      const v = JSON.parse(readFileSync(this.stateFile, 'utf8')) as PrintkSettings;
      if (/^\d{1,10}$/.test(v.ratelimit) && /^\d{1,10}$/.test(v.burst)) return v;
    } catch {
      /* none */
    }
    return undefined;
  }

  lift(): void {
    if (this.lifted) return;
    if (PrintkRateLimit.holders === 0) {
      const now = this.current();
      if (now.ratelimit !== '0') this.save(now);
      PrintkRateLimit.original = now.ratelimit !== '0' ? now : (this.saved() ?? now);
      writeSysctl(this.ratelimitPath, '0');
    }
    PrintkRateLimit.holders++;
    this.lifted = true;
  }

  private save(values: PrintkSettings): void {
    mkdirSync(dirname(this.stateFile), { recursive: true });
    const aside = `${this.stateFile}.${process.pid}.${randomBytes(6).toString('hex')}`;
    writeFileSync(aside, JSON.stringify(values), { flag: 'wx' });
    renameSync(aside, this.stateFile);
  }

  /** Idempotent; the last holder in the process writes back the values it took. */
  restore(): void {
    if (!this.lifted) return;
    this.lifted = false;
    PrintkRateLimit.holders--;
    if (PrintkRateLimit.holders > 0) return;
    const original = PrintkRateLimit.original;
    PrintkRateLimit.original = undefined;
    if (original) {
      writeSysctl(this.ratelimitPath, original.ratelimit);
      writeSysctl(this.burstPath, original.burst);
    }
  }
}

/** A sysctl write: in place (a sysctl takes the whole value in one write; nothing to truncate). */
function writeSysctl(path: string, value: string): void {
  writeFileSync(path, value, { flag: 'r+' });
}
