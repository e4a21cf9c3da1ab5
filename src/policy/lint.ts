// `spoke policy lint`: the load errors (at most one: loading stops at the first fault) plus
// warnings about a policy that loads but probably does not say what its author meant.

import { isSpokeError } from '../core/errors.js';
import { loadPolicy, type PolicyLines } from './load.js';
import { scopeMatches } from './scope.js';
import type { ReadFile } from './signers.js';
import type { LintResult, Policy, PolicyIssue, Rule } from './types.js';

export function lintPolicy(text: string, file: string, readFile: ReadFile): LintResult {
  let loaded: { policy: Policy; lines: PolicyLines };
  try {
    loaded = loadPolicy(text, file, readFile);
  } catch (e) {
    if (!isSpokeError(e) || e.code !== 'InvalidArgument') throw e;
    const issue: PolicyIssue = {
      severity: 'error',
      file,
      line: typeof e.context.line === 'number' ? e.context.line : 1,
      path: typeof e.context.path === 'string' ? e.context.path : '(document)',
      message: e.message,
    };
    return { ok: false, errors: [issue], warnings: [], policy: undefined };
  }
  const warnings = policyWarnings(loaded.policy, loaded.lines);
  return { ok: true, errors: [], warnings, policy: loaded.policy };
}

function policyWarnings(policy: Policy, lines: PolicyLines): PolicyIssue[] {
  const out: PolicyIssue[] = [];
  const warn = (line: number, path: string, what: string) =>
    out.push({ severity: 'warning', file: policy.file, line, path, message: `${policy.file}:${line}: ${path}: ${what}` });
  const { rules } = policy;

  if (rules.length === 0) warn(1, 'rules', 'no rules: every pull is denied');

  for (const r of rules) {
    const at = `rules[${r.index}]`;
    const sameScope = rules.filter((o) => o !== r && o.scope === r.scope && overlap(o.kinds, r.kinds).length > 0);
    const earlierTwin = sameScope.find((o) => o.index < r.index && sameRule(o, r));
    if (earlierTwin) {
      warn(r.line, at, `duplicate of ${earlierTwin.id}`);
      continue;
    }
    if (r.action === 'allow') {
      // Shadowed: a deny at the same scope wins for every kind they share.
      const denied = new Set(sameScope.filter((o) => o.action === 'deny').flatMap((o) => overlap(o.kinds, r.kinds)));
      if (denied.size === r.kinds.length) warn(r.line, at, `never allows anything: a deny rule with the same scope covers all its kinds (deny wins at equal specificity)`);
      else if (denied.size > 0) warn(r.line, at, `never allows ${[...denied].join(', ')}: a deny rule with the same scope wins for that kind`);
      else {
        const ored = sameScope.filter((o) => o.action === 'allow' && o.index > r.index && signing(o) !== signing(r));
        for (const o of ored) {
          warn(o.line, `rules[${o.index}]`, `shares scope ${r.scope} with ${r.id}: where both apply their signers are ORed (unsigned if either is unsigned)`);
        }
      }
      if (r.unsigned && r.depth <= 1 && r.digests === undefined) {
        warn(r.line, at, `allows unsigned artifacts from a broad scope (${r.scope}): anything pushed there is admitted without a signature`);
      }
      if (r.digests !== undefined || r.namespaces !== undefined) restrictedFallbackWarning(rules, r, warn);
    }
  }

  const used = new Set(rules.flatMap((r) => r.signedBy));
  for (const s of Object.values(policy.signers)) {
    if (!used.has(s.name)) warn(s.line, `signers.${s.name}`, 'not used by any rule');
    if (s.type === 'keyless' && s.subjectRegExpSource !== undefined && hasUnescapedDot(s.subjectRegExpSource)) {
      warn(s.line, `signers.${s.name}.keyless.subjectRegExp`, 'an unescaped "." matches any character (write \\. for a literal dot)');
    }
  }

  policy.insecure.forEach((host, i) => {
    if (!isLoopback(host)) warn(lines.insecure[i] ?? 1, `insecure[${i}]`, `${host} is not a loopback address: pulls from it travel over plain HTTP`);
  });
  const ruleRegistries = new Set(rules.filter((r) => r.action === 'allow').map((r) => r.registry));
  for (const registry of Object.keys(policy.mirrors)) {
    if (!ruleRegistries.has(registry)) warn(lines.mirrors[registry] ?? 1, `mirrors.${registry}`, 'no allow rule names this registry, so its mirrors are never used');
  }
  return out.sort((a, b) => a.line - b.line);
}

/** A restricted rule's level denies what it does not admit, even where a broader allow rule would. */
function restrictedFallbackWarning(rules: readonly Rule[], r: Rule, warn: (line: number, path: string, what: string) => void): void {
  for (const kind of r.kinds) {
    const level = rules.filter((o) => o.scope === r.scope && o.kinds.includes(kind));
    if (level.some((o) => o.action === 'deny' || (o.digests === undefined && o.namespaces === undefined))) continue;
    const broader = rules
      .filter((o) => o.action === 'allow' && o.kinds.includes(kind) && o.depth < r.depth && scopeMatches(o, { registry: r.registry, repository: r.path }))
      .sort((a, b) => b.depth - a.depth)[0];
    if (broader === undefined) continue;
    const what = [r.digests ? 'digests' : '', r.namespaces ? 'namespaces' : ''].filter(Boolean).join(' and ');
    warn(r.line, `rules[${r.index}]`, `${kind} pulls under ${r.scope} outside its ${what} are denied; they do not fall back to ${broader.id}`);
    return;
  }
}

function overlap<T>(a: readonly T[], b: readonly T[]): T[] {
  return a.filter((x) => b.includes(x));
}

function signing(r: Rule): string {
  return r.unsigned ? 'unsigned' : [...r.signedBy].sort().join(',');
}

function sameRule(a: Rule, b: Rule): boolean {
  const set = (x: readonly string[] | undefined) => (x === undefined ? '-' : [...x].sort().join(','));
  return (
    a.action === b.action &&
    a.mode === b.mode &&
    set(a.kinds) === set(b.kinds) &&
    signing(a) === signing(b) &&
    set(a.digests) === set(b.digests) &&
    set(a.namespaces) === set(b.namespaces)
  );
}

function isLoopback(registry: string): boolean {
  const host = registry.startsWith('[') ? registry.slice(0, registry.indexOf(']') + 1) : registry.replace(/:\d+$/, '');
  return host === 'localhost' || host === '[::1]' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/** A bare `.` between name characters (`github.com`) is almost always meant literally; `.*` is not flagged. */
function hasUnescapedDot(source: string): boolean {
  let inClass = false;
  for (let i = 0; i < source.length; i++) {
    const c = source[i];
    if (c === '\\') i++;
    else if (inClass) inClass = c !== ']';
    else if (c === '[') inClass = true;
    else if (c === '.' && /[A-Za-z0-9]/.test(source[i - 1] ?? '') && /[A-Za-z0-9]/.test(source[i + 1] ?? '')) return true;
  }
  return false;
}
