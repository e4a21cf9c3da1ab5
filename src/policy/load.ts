// Loading the node admin policy (docs/configuration.md): strict YAML → validated, deeply frozen `Policy`.
// Pure except through the injected `readFile` (keys and trusted roots named by signers).
// Every error is InvalidArgument `<file>:<line>: <field>: <what>`; unknown keys are errors
// because a typo must never silently weaken the policy.

import { createHash } from 'node:crypto';
import type { Node } from 'yaml';
import { PROFILE_KINDS, type ProfileKind } from '../core/constants.js';
import { isDigest, type Digest } from '../core/digest.js';
import { DEFAULT_MAX_ARTIFACT_BYTES } from '../core/limits.js';
import { prepareIndex } from './decide.js';
import { parseHost, parseScope } from './scope.js';
import { deepFreeze, parseSigner, SIGNER_NAME_RE, type ReadFile, type SignerFile } from './signers.js';
import { POLICY_API_VERSION, POLICY_KIND, RULE_MODES, type Policy, type Rule, type RuleAction, type RuleMode, type SignerSpec } from './types.js';
import { YamlSource } from './yaml-source.js';

export const POLICY_KEYS = ['apiVersion', 'kind', 'signers', 'rules', 'mirrors', 'insecure', 'limits'] as const;
export const RULE_KEYS = ['scope', 'kinds', 'action', 'signedBy', 'unsigned', 'digests', 'namespaces', 'mode'] as const;
export const LIMITS_KEYS = ['maxArtifactBytes'] as const;

/** Ceiling for `limits.maxArtifactBytes` (the default is 1 MiB, KEP-6061 §5). */
export const MAX_ARTIFACT_BYTES_CEILING = 16 * 1024 * 1024;
export const MAX_RULES = 4096;
export const MAX_SIGNERS = 256;

const NAMESPACE_RE = /^[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?$/;

/** Source lines of things that are not rules or signers, for lint. */
export interface PolicyLines {
  readonly insecure: readonly number[];
  readonly mirrors: Readonly<Record<string, number>>;
}

export interface LoadOptions {
  /** Key material that cannot be read or used makes its signer `unavailable` (reloads; see signers.ts). */
  readonly markUnavailableSigners?: boolean;
}

/** Parses and validates a policy file; throws SpokeError('InvalidArgument') at the line at fault. */
export function parsePolicy(text: string, file: string, readFile: ReadFile, opts: LoadOptions = {}): Policy {
  return loadPolicy(text, file, readFile, opts).policy;
}

export function loadPolicy(text: string, file: string, readFile: ReadFile, opts: LoadOptions = {}): { policy: Policy; lines: PolicyLines } {
  const { source: src, root } = YamlSource.parse(text, file, 'POLICY_INVALID');
  const top = src.map(root, '', POLICY_KEYS);

  const apiVersion = top.require('apiVersion');
  if (src.string(apiVersion.value, apiVersion.path) !== POLICY_API_VERSION) src.fail(apiVersion.value, apiVersion.path, `must be ${POLICY_API_VERSION}`);
  const kind = top.require('kind');
  if (src.string(kind.value, kind.path) !== POLICY_KIND) src.fail(kind.value, kind.path, `must be ${POLICY_KIND}`);

  // Signers first: rules refer to them by name, wherever they appear in the file.
  const signers: Record<string, SignerSpec> = Object.create(null);
  const files: SignerFile[] = [];
  const signersEntry = top.get('signers');
  if (signersEntry !== undefined) {
    const m = src.map(signersEntry.value, 'signers', 'any', signersEntry.keyNode);
    if (m.entries.size > MAX_SIGNERS) src.fail(signersEntry.value, 'signers', `more than ${MAX_SIGNERS} signers`);
    for (const [name, e] of m.entries) {
      if (!SIGNER_NAME_RE.test(name)) src.fail(e.keyNode, e.path, 'signer names are lowercase letters, digits, ".", "_" and "-" (at most 63)');
      const { spec, file: read } = parseSigner({ src, readFile, policyFile: file, markUnavailable: opts.markUnavailableSigners === true }, name, e.value, e.keyNode, e.path);
      signers[name] = spec;
      files.push(read);
    }
  }

  const rulesEntry = top.require('rules', ' (an empty list denies everything)');
  const items = src.seq(rulesEntry.value, 'rules');
  if (items.length > MAX_RULES) src.fail(rulesEntry.value, 'rules', `more than ${MAX_RULES} rules`);
  const rules = items.map((item, index) => parseRule(src, item.node, item.path, index, signers));

  const mirrors: Record<string, readonly string[]> = Object.create(null);
  const mirrorLines: Record<string, number> = Object.create(null);
  const mirrorsEntry = top.get('mirrors');
  if (mirrorsEntry !== undefined) {
    for (const [key, e] of src.map(mirrorsEntry.value, 'mirrors', 'any', mirrorsEntry.keyNode).entries) {
      const registry = parseHost(key, (why) => src.fail(e.keyNode, e.path, why));
      if (registry in mirrors) src.fail(e.keyNode, e.path, `${registry} is listed twice`);
      const hosts = src.stringList(e.value, e.path, { nonEmpty: true, maxItems: 16 }).map((h) => {
        const host = parseHost(h.value, (why) => src.fail(h.node, h.path, why));
        if (host === registry) src.fail(h.node, h.path, 'a registry is not its own mirror');
        return { ...h, host };
      });
      mirrors[registry] = unique(hosts, (h) => h.host, (h) => src.fail(h.node, h.path, `${h.host} is listed twice`));
      mirrorLines[registry] = src.lineOf(e.keyNode);
    }
  }

  let insecure: string[] = [];
  let insecureLines: number[] = [];
  const insecureEntry = top.get('insecure');
  if (insecureEntry !== undefined) {
    const hosts = src.stringList(insecureEntry.value, 'insecure', { maxItems: 256 }).map((h) => ({
      ...h,
      host: parseHost(h.value, (why) => src.fail(h.node, h.path, why)),
    }));
    insecure = unique(hosts, (h) => h.host, (h) => src.fail(h.node, h.path, `${h.host} is listed twice`));
    insecureLines = hosts.map((h) => h.line);
  }

  let maxArtifactBytes = DEFAULT_MAX_ARTIFACT_BYTES;
  const limitsEntry = top.get('limits');
  if (limitsEntry !== undefined) {
    const m = src.map(limitsEntry.value, 'limits', LIMITS_KEYS, limitsEntry.keyNode);
    const e = m.get('maxArtifactBytes');
    if (e !== undefined) maxArtifactBytes = src.integer(e.value, e.path, 1, MAX_ARTIFACT_BYTES_CEILING);
  }

  const policy: Policy = deepFreeze({
    apiVersion: POLICY_API_VERSION,
    kind: POLICY_KIND,
    file,
    hash: policyHash(Buffer.from(text, 'utf8'), files),
    signers,
    rules,
    mirrors,
    insecure,
    limits: { maxArtifactBytes },
  });
  prepareIndex(policy);
  return { policy, lines: deepFreeze({ insecure: insecureLines, mirrors: mirrorLines }) };
}

function parseRule(src: YamlSource, node: Node, path: string, index: number, signers: Readonly<Record<string, SignerSpec>>): Rule {
  const m = src.map(node, path, RULE_KEYS);
  const line = src.lineOf(node);

  const scopeEntry = m.require('scope');
  const scope = parseScope(src.string(scopeEntry.value, scopeEntry.path, { maxLength: 512 }), (why) =>
    src.fail(scopeEntry.value, scopeEntry.path, why),
  );

  let action: RuleAction = 'allow';
  const actionEntry = m.get('action');
  if (actionEntry !== undefined) {
    const a = src.string(actionEntry.value, actionEntry.path);
    if (a !== 'allow' && a !== 'deny') src.fail(actionEntry.value, actionEntry.path, `must be allow or deny, got ${JSON.stringify(a)}`);
    action = a;
  }

  // kinds: required on allow rules (a new kind must never be admitted by an old rule);
  // a deny rule without kinds denies every kind.
  let kinds: ProfileKind[] = [...PROFILE_KINDS];
  const kindsEntry = action === 'allow' ? m.require('kinds', ` on an allow rule (${PROFILE_KINDS.join(', ')})`) : m.get('kinds');
  if (kindsEntry !== undefined) {
    const list = src.stringList(kindsEntry.value, kindsEntry.path, { nonEmpty: true });
    for (const k of list) {
      if (!(PROFILE_KINDS as readonly string[]).includes(k.value)) src.fail(k.node, k.path, `unknown kind ${JSON.stringify(k.value)} (${PROFILE_KINDS.join(', ')})`);
    }
    kinds = unique(list, (k) => k.value as ProfileKind, (k) => src.fail(k.node, k.path, `${k.value} is listed twice`));
  }

  const signedByEntry = m.get('signedBy');
  const unsignedEntry = m.get('unsigned');
  const digestsEntry = m.get('digests');
  const namespacesEntry = m.get('namespaces');
  const modeEntry = m.get('mode');
  if (action === 'deny') {
    for (const e of [signedByEntry, unsignedEntry, digestsEntry, namespacesEntry, modeEntry]) {
      if (e !== undefined) src.fail(e.keyNode, e.path, 'not allowed on a deny rule (a deny rule denies its whole scope for its kinds)');
    }
  } else if (signedByEntry === undefined && unsignedEntry === undefined) {
    src.fail(node, path, 'an allow rule must say how artifacts are signed: signedBy: [signer, ...] or unsigned: true (never by default)');
  } else if (signedByEntry !== undefined && unsignedEntry !== undefined) {
    src.fail(unsignedEntry.keyNode, unsignedEntry.path, 'give either signedBy or unsigned: true, not both');
  }

  let signedBy: string[] = [];
  if (signedByEntry !== undefined) {
    const names = src.stringList(signedByEntry.value, signedByEntry.path, { nonEmpty: true, maxItems: 64 });
    for (const n of names) {
      if (!(n.value in signers)) src.fail(n.node, n.path, `no signer named ${JSON.stringify(n.value)} under signers:`);
    }
    signedBy = unique(names, (n) => n.value, (n) => src.fail(n.node, n.path, `${n.value} is listed twice`));
  }
  if (unsignedEntry !== undefined && !src.boolean(unsignedEntry.value, unsignedEntry.path)) {
    src.fail(unsignedEntry.value, unsignedEntry.path, 'only "unsigned: true" is meaningful; to require signatures, use signedBy');
  }

  let digests: Digest[] | undefined;
  if (digestsEntry !== undefined) {
    const list = src.stringList(digestsEntry.value, digestsEntry.path, { nonEmpty: true, maxItems: 4096, maxLength: 71 });
    for (const d of list) if (!isDigest(d.value)) src.fail(d.node, d.path, 'must be sha256:<64 lowercase hex>');
    digests = unique(list, (d) => d.value as Digest, (d) => src.fail(d.node, d.path, 'listed twice'));
  }
  let namespaces: string[] | undefined;
  if (namespacesEntry !== undefined) {
    const list = src.stringList(namespacesEntry.value, namespacesEntry.path, { nonEmpty: true, maxItems: 4096, maxLength: 63 });
    for (const n of list) if (!NAMESPACE_RE.test(n.value)) src.fail(n.node, n.path, 'must be a Kubernetes namespace name (DNS-1123 label)');
    namespaces = unique(list, (n) => n.value, (n) => src.fail(n.node, n.path, `${n.value} is listed twice`));
  }

  // mode: audit logs the calls only the artifact would deny instead of denying them
  // (docs/audit-mode.md); seccomp only: an AppArmor profile has no such merge.
  let mode: RuleMode = 'enforce';
  if (modeEntry !== undefined) {
    const v = src.string(modeEntry.value, modeEntry.path);
    if (!(RULE_MODES as readonly string[]).includes(v)) src.fail(modeEntry.value, modeEntry.path, `must be ${RULE_MODES.join(' or ')}, got ${JSON.stringify(v)}`);
    mode = v as RuleMode;
    if (mode === 'audit' && kinds.some((k) => k !== 'seccomp')) src.fail(modeEntry.value, modeEntry.path, 'mode: audit applies to seccomp only; give this rule kinds: [seccomp]');
  }

  return {
    index,
    line,
    id: `rules[${index}] (${scope.scope})`,
    scope: scope.scope,
    registry: scope.registry,
    path: scope.path,
    depth: scope.depth,
    kinds,
    action,
    signedBy,
    unsigned: unsignedEntry !== undefined,
    digests,
    namespaces,
    mode,
  };
}

function unique<T, K>(items: readonly T[], keyOf: (t: T) => K, onDuplicate: (t: T) => never): K[] {
  const seen = new Set<K>();
  for (const item of items) {
    const k = keyOf(item);
    if (seen.has(k)) onDuplicate(item);
    seen.add(k);
  }
  return [...seen];
}

/**
 * sha256 hex over: a format tag, the policy file bytes, then for every signer in order of
 * name (code-unit order) its name and the bytes of its key or trusted root file. Each part is
 * length-prefixed (8-byte big-endian), so no two different inputs share a hash.
 */
export function policyHash(policyBytes: Uint8Array, files: readonly Pick<SignerFile, 'signer' | 'bytes'>[]): string {
  const h = createHash('sha256');
  const part = (b: Uint8Array | string) => {
    const bytes = typeof b === 'string' ? Buffer.from(b, 'utf8') : b;
    const len = Buffer.alloc(8);
    len.writeBigUInt64BE(BigInt(bytes.length));
    h.update(len).update(bytes);
  };
  part('spoke NodeProfilePolicy hash v1');
  part(policyBytes);
  for (const f of [...files].sort((a, b) => (a.signer < b.signer ? -1 : a.signer > b.signer ? 1 : 0))) {
    part(f.signer);
    part(f.bytes);
  }
  return h.digest('hex');
}
