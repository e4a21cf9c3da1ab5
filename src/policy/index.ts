// The node admin policy (docs/configuration.md): load, lint, decide. Named exports only.

export { parsePolicy, loadPolicy, policyHash } from './load.js';
export type { PolicyLines } from './load.js';
export { decide, isInsecure, mirrorsFor } from './decide.js';
export { lintPolicy } from './lint.js';
export { parseScope, parseHost, scopeMatches } from './scope.js';
export type { Scope } from './scope.js';
export { parsePublicKey, parseTrustedRoot, compileAnchored } from './signers.js';
export type { ReadFile } from './signers.js';
export { YamlFile, decodeText } from './schema-yaml.js';
export { formatPath, schemaProblem } from './schema.js';
export type { SchemaProblem, SchemaValidator, Segment } from './schema.js';
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
