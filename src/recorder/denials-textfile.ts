// `spoke denials --textfile F`: the report as Prometheus text exposition for a node exporter's
// textfile collector (docs/audit-mode.md). Labels stay bounded: the artifact digest (from the
// shim's in-use set) and the syscall name from spoke's tables ("unknown" otherwise); never a
// pod or container, which come and go.

import { X86_SYSCALL_NAMES } from '../profiles/seccomp/syscall-numbers.js';
import type { DenialReport } from './denials.js';

/** Series written at most; the rest (smallest counts first) are left out and said so in a comment. */
export const MAX_SERIES = 10_000;

const DIGEST_RE = /^sha256:[0-9a-f]{64}$/;

/** A label value as the exposition format wants it: backslash, quote and newline escaped. */
export function labelValue(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

export function renderTextfile(report: Pick<DenialReport, 'audit' | 'unattributed'>, maxSeries = MAX_SERIES): string {
  const sums = new Map<string, { digest: string; syscall: string; count: number }>();
  for (const e of report.audit) {
    if (e.digest === undefined || !DIGEST_RE.test(e.digest)) continue;
    const syscall = X86_SYSCALL_NAMES.has(e.syscall) ? e.syscall : 'unknown';
    const key = `${e.digest} ${syscall}`;
    const s = sums.get(key) ?? { digest: e.digest, syscall, count: 0 };
    s.count += e.count;
    sums.set(key, s);
  }
  const series = [...sums.values()].sort((a, b) => b.count - a.count || a.digest.localeCompare(b.digest) || a.syscall.localeCompare(b.syscall));
  const lines = [
    '# HELP spoke_audit_would_deny_calls Calls an audit-mode artifact logged instead of denying, per artifact digest and syscall, in the report window.',
    '# TYPE spoke_audit_would_deny_calls gauge',
    ...series.slice(0, maxSeries).map((s) => `spoke_audit_would_deny_calls{digest="${labelValue(s.digest)}",syscall="${labelValue(s.syscall)}"} ${s.count}`),
  ];
  // The cap keeps a scrape bounded whatever the node ran; the biggest counts are the ones kept.
  if (series.length > maxSeries) lines.push(`# spoke: ${series.length - maxSeries} more series left out (cap ${maxSeries})`);
  lines.push(
    '# HELP spoke_audit_unattributed_calls Logged calls that could not be tied to one container, in the report window.',
    '# TYPE spoke_audit_unattributed_calls gauge',
    `spoke_audit_unattributed_calls ${report.unattributed.reduce((n, u) => n + u.count, 0)}`,
    '',
  );
  return lines.join('\n');
}
