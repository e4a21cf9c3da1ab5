// The node admin policy (docs/configuration.md): load, lint, decide. Named exports only.

export { parsePolicy, loadPolicy, policyHash, POLICY_KEYS, RULE_KEYS, LIMITS_KEYS, MAX_ARTIFACT_BYTES_CEILING } from './load.js';
export type { PolicyLines } from './load.js';
export { decide, isInsecure, mirrorsFor } from './decide.js';
export { lintPolicy } from './lint.js';
export { parseScope, parseHost, scopeMatches } from './scope.js';
export type { Scope } from './scope.js';
export { SIGNER_KEYS, KEYLESS_KEYS, parsePublicKey, parseTrustedRoot, compileAnchored } from './signers.js';
export type { ReadFile } from './signers.js';
export { YamlSource, MapView, decodeText } from './yaml-source.js';
export type { Entry } from './yaml-source.js';
export { POLICY_API_VERSION, POLICY_KIND } from './types.js';
export type {
  Decision,
  KeylessSigner,
  LintResult,
  Policy,
  PolicyIssue,
  PolicyLimits,
  PublicKeySigner,
  PublicKeyType,
  Rule,
  RuleAction,
  RuleSummary,
  SignerSpec,
} from './types.js';
