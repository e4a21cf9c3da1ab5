import { parseReference } from '../../core/reference.js';
import { decide, lintPolicy } from '../../policy/index.js';
import type { PolicyIssue } from '../../policy/types.js';
import { emit, parseCommand, parseKind } from '../args.js';
import { EXIT_FAILED, UsageError } from '../errors.js';
import { readNamedFile } from '../read-file.js';
import { nodeConfigOnly, readPolicyFile } from '../wiring.js';
import { writeSafeLine } from '../../core/text.js';

const HELP = `usage: spoke policy check REF [--kind K] [--namespace N] [--policy FILE] [--json]
       spoke policy lint FILE [--json]

  check   decide REF under the node policy, as a pull would, without any network request:
          prints allow/deny, the rule that decided and why. Exit 0 when allowed, 1 when denied.
  lint    validate a policy file: errors (with file:line) make it unloadable; warnings point at
          rules that can never apply or that admit unsigned profiles broadly. Exit 1 on errors.

options:
  --kind K          seccomp (default) or apparmor
  --namespace N     the pod namespace, for namespace-scoped rules
  --policy FILE     policy file (default from the node config, /etc/spoke/policy.yaml)
  --config F        node config (default /etc/spoke/config.yaml)
  --json            machine-readable output`;

/** `file:line: severity: path: what`; an issue's message starts with its `file:line: ` already. */
function formatIssue(i: PolicyIssue): string {
  const at = `${i.file}:${i.line}: `;
  return `${at}${i.severity}: ${i.message.startsWith(at) ? i.message.slice(at.length) : `${i.path ? `${i.path}: ` : ''}${i.message}`}`;
}

export async function run(argv: string[]): Promise<number> {
  const { values, positionals, help } = parseCommand(
    argv,
    { kind: { type: 'string' }, namespace: { type: 'string' }, policy: { type: 'string' }, config: { type: 'string' }, json: { type: 'boolean' } },
    HELP,
    [1, 2],
  );
  if (help) return 0;
  const [sub, arg] = positionals;
  if (sub === 'lint') {
    if (!arg) throw new UsageError(`policy lint needs a FILE\n${HELP}`);
    const r = lintPolicy(readPolicyFile(arg), arg, readNamedFile);
    emit(values.json, { ok: r.ok, errors: r.errors, warnings: r.warnings, hash: r.policy?.hash ?? null }, () =>
      [...r.errors.map(formatIssue), ...r.warnings.map(formatIssue), r.ok ? `${arg}: ok (${r.warnings.length} warning(s))` : `${arg}: ${r.errors.length} error(s)`].join('\n'),
    );
    return r.ok ? 0 : EXIT_FAILED;
  }
  if (sub !== 'check') throw new UsageError(`unknown policy subcommand ${JSON.stringify(sub)}\n${HELP}`);
  if (!arg) throw new UsageError(`policy check needs a REF\n${HELP}`);
  const kind = values.kind === undefined ? 'seccomp' : parseKind(values.kind);
  const file = values.policy ?? (await nodeConfigOnly(values)).policy;
  const r = lintPolicy(readPolicyFile(file), file, readNamedFile);
  if (!r.policy) {
    const first = r.errors[0];
    throw new UsageError(first ? formatIssue(first) : `${file}: invalid policy`);
  }
  const ref = parseReference(arg);
  const d = decide(r.policy, ref, kind, values.namespace);
  const out = {
    reference: arg,
    kind,
    namespace: values.namespace ?? null,
    decision: d.allowed ? 'allow' : 'deny',
    rule: d.rule ?? null,
    reason: d.reason,
    signedBy: d.allowed ? d.signedBy.map((s) => s.name) : [],
    unsigned: d.allowed ? d.unsigned : false,
    mode: d.allowed ? d.mode : null,
    policyHash: r.policy.hash,
  };
  emit(values.json, out, () =>
    [
      `${out.decision.toUpperCase()} ${arg} (${kind}${values.namespace ? `, namespace ${values.namespace}` : ''})`,
      `  rule:   ${d.rule ? `${d.rule.id} at ${file}:${d.rule.line}` : '(none matches)'}`,
      `  reason: ${d.reason}`,
      ...(d.allowed ? [`  needs:  ${d.unsigned ? 'no signature (unsigned: true)' : `a signature by any of ${out.signedBy.join(', ')}`}`] : []),
      ...(d.allowed && d.mode === 'audit' ? ['  mode:   audit (the artifact’s own denials are logged, not enforced: docs/audit-mode.md)'] : []),
    ].join('\n'),
  );
  if (!d.allowed) writeSafeLine(process.stderr, `PermissionDenied: ${arg}: ${d.reason}`);
  return d.allowed ? 0 : EXIT_FAILED;
}
