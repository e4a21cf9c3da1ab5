// `spoke denials --textfile`: the report as Prometheus text (docs/audit-mode.md), with labels
// bounded to artifact digests and syscall names from spoke's tables.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import type { DenialEntry } from '../../../src/recorder/denials.js';
import { labelValue, renderTextfile } from '../../../src/recorder/denials-textfile.js';

const D1 = `sha256:${'1'.repeat(64)}` as const;
const D2 = `sha256:${'2'.repeat(64)}` as const;
const entry = (containerId: string, syscall: string, count: number, digest?: typeof D1): DenialEntry => ({
  containerId,
  podNamespace: 'ns',
  podName: `pod-${containerId}`,
  container: 'c',
  syscall,
  ...(digest ? { digest, reference: `r.io/p@${digest}` } : {}),
  count,
});

test('one series per digest and syscall, summed over containers; no pod or container label; HELP and TYPE lines', () => {
  const text = renderTextfile({
    audit: [entry('a', 'mkdir', 3, D1), entry('b', 'mkdir', 2, D1), entry('a', 'umask', 1, D1), entry('c', 'mkdir', 7, D2), entry('c', '#1023', 1, D2), entry('c', 'bogus"name', 1, D2)],
    unattributed: [
      { syscall: 'mkdir', count: 4, reasons: { x: 4 } },
      { syscall: 'umask', count: 1, reasons: { y: 1 } },
    ],
  });
  assert.equal(
    text,
    [
      '# HELP spoke_audit_would_deny_calls Calls an audit-mode artifact logged instead of denying, per artifact digest and syscall, in the report window.',
      '# TYPE spoke_audit_would_deny_calls gauge',
      `spoke_audit_would_deny_calls{digest="${D2}",syscall="mkdir"} 7`,
      `spoke_audit_would_deny_calls{digest="${D1}",syscall="mkdir"} 5`,
      `spoke_audit_would_deny_calls{digest="${D2}",syscall="unknown"} 2`,
      `spoke_audit_would_deny_calls{digest="${D1}",syscall="umask"} 1`,
      '# HELP spoke_audit_unattributed_calls Logged calls that could not be tied to one container, in the report window.',
      '# TYPE spoke_audit_unattributed_calls gauge',
      'spoke_audit_unattributed_calls 5',
      '',
    ].join('\n'),
  );
});

test('the series count is capped, the biggest kept, and the cut said in a comment', () => {
  const audit = Array.from({ length: 5 }, (_, i) => entry('a', ['mkdir', 'umask', 'chmod', 'open', 'read'][i]!, i + 1, D1));
  const text = renderTextfile({ audit, unattributed: [] }, 2);
  const series = text.split('\n').filter((l) => l.startsWith('spoke_audit_would_deny_calls{'));
  assert.deepEqual(series, [`spoke_audit_would_deny_calls{digest="${D1}",syscall="read"} 5`, `spoke_audit_would_deny_calls{digest="${D1}",syscall="open"} 4`]);
  assert.match(text, /^# spoke: 3 more series left out \(cap 2\)$/m);
});

test('label values escape backslash, quote and newline, and never leave the quotes', () => {
  assert.equal(labelValue('a\\b"c\nd'), 'a\\\\b\\"c\\nd');
  fc.assert(
    fc.property(fc.string(), (s) => {
      const v = labelValue(s);
      assert.ok(!v.includes('\n'));
      // Every quote is escaped: removing escaped pairs leaves no bare quote.
      assert.ok(!v.replace(/\\[\\"n]/g, '').includes('"'));
    }),
  );
});
