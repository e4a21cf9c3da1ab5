// The node admin policy as loaded: deeply frozen data, plus the decision type (docs/configuration.md).
// The YAML format is described by policy/node-policy.schema.json and policy/example-policy.yaml.

import type { KeyObject } from 'node:crypto';
import type { AcceptedKeyType } from '../core/key-type.js';
import type { ProfileKind } from '../core/constants.js';
import type { Digest } from '../core/digest.js';

export const POLICY_API_VERSION = 'spoke.dev/v1alpha1';
export const POLICY_KIND = 'NodeProfilePolicy';

export type RuleAction = 'allow' | 'deny';

/** What an allow rule does with what it admits: apply it (`enforce`), or log where it would deny (`audit`, seccomp only; docs/audit-mode.md). */
export type RuleMode = 'enforce' | 'audit';

/** The public key types a signer may use (src/core/key-type.ts). */
export type PublicKeyType = AcceptedKeyType;

export interface PublicKeySigner {
  readonly type: 'publicKey';
  readonly name: string;
  /** Line of the signer in the policy file. */
  readonly line: number;
  /** Absolute path of the key file (relative paths are resolved against the policy file's directory). */
  readonly file: string;
  /** The PEM text exactly as read (one `PUBLIC KEY` block, SPKI). */
  readonly publicKeyPem: string;
  readonly publicKey: KeyObject;
  readonly keyType: PublicKeyType;
}

/**
 * Where a keyless signature's signing time may come from: an RFC 3161 timestamp (`tsa`), a
 * transparency-log entry's integrated time (`tlog`, Rekor), or either (`any`). At least one
 * verified time is always required: without one the certificate chain is never checked.
 */
export type TimeSource = 'tsa' | 'tlog' | 'any';

/** Keyless: a certificate from a CA in the trusted root, with this exact issuer and subject. */
export interface KeylessSigner {
  readonly type: 'keyless';
  readonly name: string;
  readonly line: number;
  /** Absolute path of the trusted root file. */
  readonly file: string;
  /** The trusted root JSON (sigstore `TrustedRoot`), parsed and frozen; give it to `TrustedRoot.fromJSON`. */
  readonly trustedRoot: unknown;
  /** The OIDC issuer, compared exactly (never normalized: the certificate extension is compared with `!==`). */
  readonly issuer: string;
  /** Exactly one of `subject` / `subjectRegExp` is set. */
  readonly subject: string | undefined;
  /** Anchored and compiled with the `u` flag; `subjectRegExpSource` is the text from the file. */
  readonly subjectRegExp: RegExp | undefined;
  readonly subjectRegExpSource: string | undefined;
  /** Default `any`. */
  readonly timeSource: TimeSource;
}

/**
 * A signer whose key file or trusted root could not be read or used at a reload (removed,
 * unreadable, replaced by something that is not a key). It verifies nothing: a rule that needs
 * it fails closed with reason SIGNER_UNAVAILABLE rather than trusting the key as last loaded.
 */
export interface UnavailableSigner {
  readonly type: 'unavailable';
  readonly name: string;
  readonly line: number;
  /** Absolute path of the key or trusted root file. */
  readonly file: string;
  /** Why, without the file's bytes: e.g. "cannot read /etc/spoke/keys/p.pub (ENOENT)". */
  readonly why: string;
}

export type SignerSpec = PublicKeySigner | KeylessSigner | UnavailableSigner;

export interface Rule {
  /** Position in `rules:` (0-based) and the line of the list item. */
  readonly index: number;
  readonly line: number;
  /** Stable id for logs, metrics-free provenance and errors: `rules[2] (registry.example.com/security)`. */
  readonly id: string;
  /** Normalized scope: `host[:port][/path]`, host lowercased. */
  readonly scope: string;
  /** `host[:port]` exactly as `Reference.registry` spells it. */
  readonly registry: string;
  /** Path prefix ('' for a whole registry). */
  readonly path: string;
  /** Number of path components: the rule's specificity. */
  readonly depth: number;
  readonly kinds: readonly ProfileKind[];
  readonly action: RuleAction;
  /** Signer names (allow rules); empty when `unsigned`. */
  readonly signedBy: readonly string[];
  readonly unsigned: boolean;
  /** When set (allow rules only), the rule admits only these digests. */
  readonly digests: readonly Digest[] | undefined;
  /** When set (allow rules only), the rule admits only pods in these namespaces. */
  readonly namespaces: readonly string[] | undefined;
  /** `enforce` on deny rules. */
  readonly mode: RuleMode;
}

export interface PolicyLimits {
  readonly maxArtifactBytes: number;
}

export interface Policy {
  readonly apiVersion: typeof POLICY_API_VERSION;
  readonly kind: typeof POLICY_KIND;
  /** The file the policy was read from (as given to `parsePolicy`). */
  readonly file: string;
  /**
   * sha256 hex over the policy bytes and the bytes of every key and trusted root it names
   * (see `policyHash`); the signature verdict cache is keyed by it.
   */
  readonly hash: string;
  /** By name; a null-prototype object. */
  readonly signers: Readonly<Record<string, SignerSpec>>;
  readonly rules: readonly Rule[];
  /** Registry (`host[:port]`) → mirror hosts, tried in order; a null-prototype object. */
  readonly mirrors: Readonly<Record<string, readonly string[]>>;
  /** Registries (`host[:port]`) that may be reached over plain HTTP. */
  readonly insecure: readonly string[];
  readonly limits: PolicyLimits;
}

export interface RuleSummary {
  readonly index: number;
  readonly scope: string;
  readonly line: number;
  readonly action: RuleAction;
  /** `rules[2] (registry.example.com/security)` */
  readonly id: string;
}

export type Decision =
  | {
      readonly allowed: true;
      /** The rule that made the decision (the first applicable one when several rules share the scope). */
      readonly rule: RuleSummary;
      /** Every applicable allow rule at the deciding scope (their signers are ORed). */
      readonly rules: readonly RuleSummary[];
      /** Any one of these must have signed the artifact; empty exactly when `unsigned`. */
      readonly signedBy: readonly SignerSpec[];
      readonly unsigned: boolean;
      /** `audit` only when every applicable rule says so (fail closed: any enforcing rule enforces). */
      readonly mode: RuleMode;
      readonly reason: string;
    }
  | {
      readonly allowed: false;
      readonly rule?: RuleSummary;
      readonly reason: string;
    };

/** A lint finding; errors make the file unloadable, warnings do not. */
export interface PolicyIssue {
  readonly severity: 'error' | 'warning';
  readonly file: string;
  readonly line: number;
  readonly path: string;
  /** The whole line: `file:line: path: what`. */
  readonly message: string;
}

export interface LintResult {
  readonly ok: boolean;
  readonly errors: readonly PolicyIssue[];
  readonly warnings: readonly PolicyIssue[];
  readonly policy: Policy | undefined;
}
