// The frozen evaluator (docs/configuration.md): decide(policy, ref, kind, namespace) → allow with the rule
// and the signers it requires, or deny with the reason. Pure and allocation-light: it runs on
// every CRI pull, so rules are indexed once per policy by registry, kind and scope path.
//
// Semantics, in order:
//   1. Only rules whose `kinds` include the kind take part (filter by kind first).
//   2. Among those, the rules of the most specific matching scope decide (most path components;
//      the host, port included, matches exactly, so every matching rule has the same host).
//      Rules with the same scope form one level. A less specific level is never consulted.
//   3. Any deny rule at that level: deny (equal specificity, deny wins).
//   4. Otherwise the allow rules at that level whose `digests` / `namespaces` admit the request
//      apply; their signers are ORed (`unsigned` if any of them is unsigned). If none applies,
//      deny: a restricted rule never lets a broader rule take over.
//   5. No matching scope: deny by default.
// Mirrors play no part: decisions are made on the logical reference only.

import type { ProfileKind } from '../core/constants.js';
import type { Digest } from '../core/digest.js';
import type { Reference } from '../core/reference.js';
import type { Decision, Policy, Rule, RuleSummary, SignerSpec } from './types.js';

interface Level {
  readonly scope: string;
  readonly denies: readonly Rule[];
  readonly allows: readonly Rule[];
  /** The decision when it depends on neither digest nor namespace. */
  readonly fixed: Decision | undefined;
}

interface Index {
  /** registry → kind → scope path ('' for the whole registry) → level */
  readonly levels: Map<string, Map<ProfileKind, Map<string, Level>>>;
  readonly summaries: readonly RuleSummary[];
  readonly policy: Policy;
}

const indexes = new WeakMap<Policy, Index>();

/** Builds (once) the lookup structure for `policy`; parsePolicy calls it so the first pull is fast. */
export function prepareIndex(policy: Policy): void {
  indexOf(policy);
}

function indexOf(policy: Policy): Index {
  let index = indexes.get(policy);
  if (index === undefined) {
    index = buildIndex(policy);
    indexes.set(policy, index);
  }
  return index;
}

function buildIndex(policy: Policy): Index {
  const summaries = policy.rules.map((r) => Object.freeze({ index: r.index, scope: r.scope, line: r.line, action: r.action, id: r.id }));
  const grouped = new Map<string, Map<ProfileKind, Map<string, { denies: Rule[]; allows: Rule[] }>>>();
  for (const rule of policy.rules) {
    for (const kind of rule.kinds) {
      let byKind = grouped.get(rule.registry);
      if (!byKind) grouped.set(rule.registry, (byKind = new Map()));
      let byPath = byKind.get(kind);
      if (!byPath) byKind.set(kind, (byPath = new Map()));
      let level = byPath.get(rule.path);
      if (!level) byPath.set(rule.path, (level = { denies: [], allows: [] }));
      (rule.action === 'deny' ? level.denies : level.allows).push(rule);
    }
  }
  const index: Index = { levels: new Map(), summaries, policy };
  for (const [registry, byKind] of grouped) {
    const kinds = new Map<ProfileKind, Map<string, Level>>();
    for (const [kind, byPath] of byKind) {
      const paths = new Map<string, Level>();
      for (const [path, { denies, allows }] of byPath) {
        const scope = (denies[0] ?? allows[0])!.scope;
        const restricted = allows.some((r) => r.digests !== undefined || r.namespaces !== undefined);
        const fixed = denies.length > 0 ? denyAt(index, denies, allows) : restricted ? undefined : allowWith(index, allows);
        paths.set(path, Object.freeze({ scope, denies, allows, fixed }));
      }
      kinds.set(kind, paths);
    }
    index.levels.set(registry, kinds);
  }
  return index;
}

/** The decision for pulling `ref` as `kind` for a pod in `namespace` (absent: no namespace known). */
export function decide(policy: Policy, ref: Pick<Reference, 'registry' | 'repository' | 'digest'>, kind: ProfileKind, namespace?: string): Decision {
  const index = indexOf(policy);
  const paths = index.levels.get(ref.registry)?.get(kind);
  if (paths !== undefined) {
    // Longest whole-component prefix first: repository, its parents, then the bare registry.
    let path = ref.repository;
    for (;;) {
      const level = paths.get(path);
      if (level !== undefined) return level.fixed ?? decideRestricted(index, level, ref.digest, namespace);
      if (path === '') break;
      const slash = path.lastIndexOf('/');
      path = slash < 0 ? '' : path.slice(0, slash);
    }
  }
  return Object.freeze({ allowed: false, reason: `no rule matches ${ref.registry}/${ref.repository} for kind ${kind} (deny by default)` });
}

function decideRestricted(index: Index, level: Level, digest: Digest, namespace: string | undefined): Decision {
  const applicable = level.allows.filter(
    (r) => (r.digests === undefined || r.digests.includes(digest)) && (r.namespaces === undefined || (namespace !== undefined && r.namespaces.includes(namespace))),
  );
  if (applicable.length > 0) return allowWith(index, applicable);
  const why = level.allows.map((r) => {
    if (r.digests !== undefined && !r.digests.includes(digest)) return `${r.id} admits only its listed digests, not ${digest}`;
    // Only the asking namespace: the reason reaches that pod's events, and which namespaces a rule
    // admits is the node admin's to read in the policy, not another tenant's.
    if (namespace === undefined) return `${r.id} admits only listed namespaces and no namespace was given`;
    return `${r.id} does not admit namespace ${JSON.stringify(namespace)}`;
  });
  return Object.freeze({
    allowed: false,
    rule: index.summaries[level.allows[0]!.index]!,
    reason: `${why.join('; ')} (the most specific scope decides; a less specific rule never applies instead)`,
  });
}

function denyAt(index: Index, denies: readonly Rule[], allows: readonly Rule[]): Decision {
  const first = denies[0]!;
  const over = allows.length > 0 ? ` (deny wins over ${allows.map((r) => r.id).join(', ')} at the same scope)` : '';
  return Object.freeze({ allowed: false, rule: index.summaries[first.index]!, reason: `denied by ${first.id}${over}` });
}

function allowWith(index: Index, rules: readonly Rule[]): Decision {
  const unsignedRule = rules.find((r) => r.unsigned);
  const decisive = unsignedRule ?? rules[0]!;
  const signedBy: SignerSpec[] = [];
  if (unsignedRule === undefined) {
    for (const r of rules) for (const name of r.signedBy) {
      const s = index.policy.signers[name]!;
      if (!signedBy.includes(s)) signedBy.push(s);
    }
  }
  const reason =
    unsignedRule !== undefined
      ? `allowed by ${decisive.id}: unsigned (no signature required)`
      : `allowed by ${decisive.id}: a signature is required from any of: ${signedBy.map((s) => s.name).join(', ')}`;
  return Object.freeze({
    allowed: true,
    rule: index.summaries[decisive.index]!,
    rules: Object.freeze(rules.map((r) => index.summaries[r.index]!)),
    signedBy: Object.freeze(signedBy),
    unsigned: unsignedRule !== undefined,
    mode: rules.every((r) => r.mode === 'audit') ? 'audit' : 'enforce',
    reason,
  });
}

/** Whether plain HTTP is allowed for `registry` (`host[:port]`, exact, port included). */
export function isInsecure(policy: Policy, registry: string): boolean {
  return policy.insecure.includes(registry.toLowerCase());
}

/** Mirror hosts for `registry`, in the order to try them; empty when none. */
export function mirrorsFor(policy: Policy, registry: string): readonly string[] {
  return policy.mirrors[registry.toLowerCase()] ?? EMPTY;
}

const EMPTY: readonly string[] = Object.freeze([]);
