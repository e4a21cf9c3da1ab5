// `spoke policy check` shows the rule's mode (docs/audit-mode.md).
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { spoke } from '../../helpers/cli.js';

test('policy check prints mode: audit for an artifact an audit rule admits, enforce otherwise', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'spoke-mode-'));
  try {
    const policy = join(dir, 'policy.yaml');
    writeFileSync(
      policy,
      ['apiVersion: spoke.dev/v1alpha1', 'kind: NodeProfilePolicy', 'rules:', '  - scope: r.io/audit', '    kinds: [seccomp]', '    unsigned: true', '    mode: audit', '  - scope: r.io/enf', '    kinds: [seccomp]', '    unsigned: true', ''].join('\n'),
    );
    const digest = `sha256:${'a'.repeat(64)}`;
    const check = async (repo: string) => {
      const r = await spoke(['policy', 'check', `r.io/${repo}/x@${digest}`, '--policy', policy, '--json']);
      assert.equal(r.code, 0, r.stderr);
      return (JSON.parse(r.stdout) as { mode: string }).mode;
    };
    assert.equal(await check('audit'), 'audit');
    assert.equal(await check('enf'), 'enforce');
    const text = await spoke(['policy', 'check', `r.io/audit/x@${digest}`, '--policy', policy]);
    assert.match(text.stdout, /^ {2}mode: {3}audit /m);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
