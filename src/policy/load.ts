// Loading the node admin policy (docs/configuration.md): strict YAML → validated, deeply frozen `Policy`.
// Pure except through the injected `readFile` (keys and trusted roots named by signers).
// Every error is InvalidArgument `<file>:<line>: <field>: <what>`; unknown keys are errors
// because a typo must never silently weaken the policy.

import { createHash } from 'node:crypto';
import { PROFILE_KINDS, SIGNATURE_RULES_VERSION, type ProfileKind } from '../core/constants.js';
import type { Digest } from '../core/digest.js';
import { DEFAULT_MAX_ARTIFACT_BYTES } from '../core/limits.js';
import { prepareIndex } from './decide.js';
import { nodePolicy } from './schema-generated.js';
import type { Segment, SchemaValidator } from './schema.js';
import { YamlFile } from './schema-yaml.js';
import { parseHost, parseScope } from './scope.js';
import { deepFreeze, parseSigner, type ReadFile, type SignerFile, type SignerYaml } from './signers.js';
import { POLICY_API_VERSION, POLICY_KIND, type Policy, type Rule, type RuleAction, type RuleMode, type SignerSpec } from './types.js';

/** The shape policy/node-policy.schema.json admits, which the generated validator has checked. */
interface PolicyYaml {
  signers?: Record<string, SignerYaml>;
  rules: RuleYaml[];
  mirrors?: Record<string, string[]>;
  insecure?: string[];
  limits?: { maxArtifactBytes?: number };
}

interface RuleYaml {
  scope: string;
  kinds?: ProfileKind[];
  action?: RuleAction;
  signedBy?: string[];
  unsigned?: true;
  digests?: Digest[];
  namespaces?: string[];
  mode?: RuleMode;
}

const validatePolicy = nodePolicy as unknown as SchemaValidator;

/** Fields of an allow rule, refused on a deny rule. */
const ALLOW_ONLY = ['signedBy', 'unsigned', 'digests', 'namespaces', 'mode'] as const;

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

/**
 * The schema first (shape, types, enums, bounds: policy/node-policy.schema.json), then what it
 * cannot say: scopes and hosts parsed, which fields go together, signer names and key material.
 */
export function loadPolicy(text: string, file: string, readFile: ReadFile, opts: LoadOptions = {}): { policy: Policy; lines: PolicyLines } {
  const doc = YamlFile.load(text, file, 'POLICY_INVALID', validatePolicy);
  const data = doc.data as PolicyYaml;

  // Signers first: rules refer to them by name, wherever they appear in the file.
  const signers: Record<string, SignerSpec> = Object.create(null);
  const files: SignerFile[] = [];
  for (const [name, signer] of Object.entries(data.signers ?? {})) {
    const { spec, file: read } = parseSigner({ doc, readFile, policyFile: file, markUnavailable: opts.markUnavailableSigners === true }, name, signer);
    signers[name] = spec;
    files.push(read);
  }

  const rules = data.rules.map((rule, index) => parseRule(doc, rule, index, signers));

  const mirrors: Record<string, readonly string[]> = Object.create(null);
  const mirrorLines: Record<string, number> = Object.create(null);
  for (const [key, list] of Object.entries(data.mirrors ?? {})) {
    const at: Segment[] = ['mirrors', key];
    const registry = parseHost(key, (why) => doc.fail(at, why, { atKey: true }));
    if (registry in mirrors) doc.fail(at, `${registry} is listed twice`, { atKey: true });
    mirrors[registry] = unique(
      list.map((h, i) => {
        const host = parseHost(h, (why) => doc.fail([...at, i], why));
        if (host === registry) doc.fail([...at, i], 'a registry is not its own mirror');
        return host;
      }),
      (i, host) => doc.fail([...at, i], `${host} is listed twice`),
    );
    mirrorLines[registry] = doc.lineOf(at, { atKey: true });
  }

  const insecureList = data.insecure ?? [];
  const insecure = unique(
    insecureList.map((h, i) => parseHost(h, (why) => doc.fail(['insecure', i], why))),
    (i, host) => doc.fail(['insecure', i], `${host} is listed twice`),
  );
  const insecureLines = insecureList.map((_, i) => doc.lineOf(['insecure', i]));

  const policy: Policy = deepFreeze({
    apiVersion: POLICY_API_VERSION,
    kind: POLICY_KIND,
    file,
    hash: policyHash(Buffer.from(text, 'utf8'), files),
    signers,
    rules,
    mirrors,
    insecure,
    limits: { maxArtifactBytes: data.limits?.maxArtifactBytes ?? DEFAULT_MAX_ARTIFACT_BYTES },
  });
  prepareIndex(policy);
  return { policy, lines: deepFreeze({ insecure: insecureLines, mirrors: mirrorLines }) };
}

function parseRule(doc: YamlFile, r: RuleYaml, index: number, signers: Readonly<Record<string, SignerSpec>>): Rule {
  const at: Segment[] = ['rules', index];
  const scope = parseScope(r.scope, (why) => doc.fail([...at, 'scope'], why));
  const action = r.action ?? 'allow';

  if (action === 'deny') {
    const extra = ALLOW_ONLY.find((k) => r[k] !== undefined);
    if (extra !== undefined) doc.fail([...at, extra], 'not allowed on a deny rule (a deny rule denies its whole scope for its kinds)', { atKey: true });
  } else {
    // kinds: required on allow rules (a new kind must never be admitted by an old rule);
    // a deny rule without kinds denies every kind.
    if (r.kinds === undefined) doc.fail([...at, 'kinds'], `required on an allow rule (${PROFILE_KINDS.join(', ')})`, { atParent: true });
    if (r.signedBy === undefined && r.unsigned === undefined) {
      doc.fail(at, 'an allow rule must say how artifacts are signed: signedBy: [signer, ...] or unsigned: true (never by default)');
    }
    if (r.signedBy !== undefined && r.unsigned !== undefined) doc.fail([...at, 'unsigned'], 'give either signedBy or unsigned: true, not both', { atKey: true });
  }
  const kinds = r.kinds ?? [...PROFILE_KINDS];
  (r.signedBy ?? []).forEach((name, i) => {
    if (!(name in signers)) doc.fail([...at, 'signedBy', i], `no signer named ${JSON.stringify(name)} under signers:`);
  });

  // mode: audit logs the calls only the artifact would deny instead of denying them
  // (docs/audit-mode.md); seccomp only: an AppArmor profile has no such merge.
  const mode = r.mode ?? 'enforce';
  if (mode === 'audit' && kinds.some((k) => k !== 'seccomp')) doc.fail([...at, 'mode'], 'mode: audit applies to seccomp only; give this rule kinds: [seccomp]');

  return {
    index,
    line: doc.lineOf(at),
    id: `rules[${index}] (${scope.scope})`,
    scope: scope.scope,
    registry: scope.registry,
    path: scope.path,
    depth: scope.depth,
    kinds,
    action,
    signedBy: r.signedBy ?? [],
    unsigned: r.unsigned === true,
    digests: r.digests,
    namespaces: r.namespaces,
    mode,
  };
}

/** Hosts after normalization (lowercased); the schema has already refused identical entries. */
function unique(hosts: readonly string[], onDuplicate: (index: number, host: string) => never): string[] {
  const seen = new Set<string>();
  hosts.forEach((h, i) => {
    if (seen.has(h)) onDuplicate(i, h);
    seen.add(h);
  });
  return [...seen];
}

/**
 * sha256 hex over: a format tag with the version of spoke's signature rules, the policy file bytes, then for every signer in order of
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
  part(`spoke NodeProfilePolicy hash v1; signature rules ${SIGNATURE_RULES_VERSION}`);
  part(policyBytes);
  for (const f of [...files].sort((a, b) => (a.signer < b.signer ? -1 : a.signer > b.signer ? 1 : 0))) {
    part(f.signer);
    part(f.bytes);
  }
  return h.digest('hex');
}
