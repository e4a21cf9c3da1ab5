import { declaredKind } from '../../core/artifact.js';
import { MEDIA_TYPE_OCI_INDEX, MEDIA_TYPE_OCI_MANIFEST, PROFILE_KINDS } from '../../core/constants.js';
import { SpokeError } from '../../core/errors.js';
import { MAX_MANIFEST_BYTES } from '../../core/limits.js';
import { formatReference, parseReference } from '../../core/reference.js';
import { DEFAULT_PULL_TIMEOUT_MS } from '../../config/node-config.js';
import { decide, lintPolicy } from '../../policy/index.js';
import { toVerifierSigner } from '../../pull.js';
import { UndiciRegistryClient } from '../../registry/client.js';
import { nodeCredentials } from '../../registry/credentials.js';
import { readCaBundle } from '../../registry/options.js';
import { verifyArtifactSignature } from '../../verify/index.js';
import { emit, parseCommand } from '../args.js';
import { commandDeadline, parseTimeoutFlag, timeoutFlag } from '../deadline.js';
import { UsageError } from '../errors.js';
import { readNamedFile } from '../read-file.js';
import { nodeConfigOnly, readCaFile, readPolicyFile } from '../wiring.js';

const HELP = `usage: spoke verify REF [--policy FILE] [options]

Verifies the signatures of REF (host[:port]/repo@sha256:...) as a pull would, offline against
the trust material of the node policy: the kind comes from the artifact's own media type, the
rule from the policy, and any one of the rule's signers must have signed the digest (sigstore
bundle referrer or cosign .sig). Nothing is stored. Prints the signer that matched, the format,
and the certificate identity for keyless signers. Exit 1 with SignatureValidationFailed when no
acceptable signature exists; PermissionDenied when the policy refuses the reference outright.

options:
  --policy FILE     node policy (default from the node config, /etc/spoke/policy.yaml)
  --config F        node config (default /etc/spoke/config.yaml)
  --namespace N     pod namespace, for namespace-scoped rules
  --auth-file F     credentials file (docker config.json format)
  --ca-file F       extra CA bundle (PEM) for the registry's certificate, added to Node's
                    built-in roots (default the node config's caFile when the config is read)
  --timeout D       give up after D in all (1s to 60m; default the node config's pullTimeout
                    when the config is read, i.e. with --config or without --policy, else 2m):
                    signature discovery may try many candidates in turn
  --json            print {digest, kind, rule, signer, format, identity, unsigned} as JSON
                    (unsigned: true when the deciding rule requires no signature; then
                    nothing is verified and signer, format and identity are null)`;

export async function run(argv: string[]): Promise<number> {
  const { values, positionals, help } = parseCommand(
    argv,
    {
      policy: { type: 'string' },
      config: { type: 'string' },
      namespace: { type: 'string' },
      'auth-file': { type: 'string' },
      'ca-file': { type: 'string' },
      ...timeoutFlag,
      json: { type: 'boolean' },
    },
    HELP,
    [1, 1],
  );
  if (help) return 0;
  const ref = parseReference(positionals[0]!);
  const reference = formatReference(ref);
  const timeoutMs = parseTimeoutFlag(values.timeout);
  // The node config only when asked for, or when it is where the policy comes from.
  const config = values.config !== undefined || values.policy === undefined ? await nodeConfigOnly(values) : undefined;
  const file = values.policy ?? config?.policy;
  if (!file) throw new UsageError('no policy: give --policy FILE or a node config naming one');
  const lint = lintPolicy(readPolicyFile(file), file, readNamedFile);
  const policy = lint.policy;
  if (!policy) {
    const first = lint.errors[0];
    // An issue's message is the whole line already: `file:line: path: what` (policy/types.ts).
    throw new SpokeError('InvalidArgument', first ? first.message : `${file}: invalid policy`, { file }, { reason: 'POLICY_INVALID' });
  }
  // The kind is read from the manifest, but nothing leaves the node for a reference that no rule
  // allows for any kind (docs/security-model.md): the policy is asked before the registry.
  const before = PROFILE_KINDS.map((k) => decide(policy, ref, k, values.namespace));
  if (!before.some((d) => d.allowed)) {
    throw new SpokeError('PermissionDenied', `${reference}: ${before[0]!.reason}`, { reference }, { reason: 'POLICY_DENIED' });
  }
  const authFile = values['auth-file'] ?? config?.authFile;
  const registry = new UndiciRegistryClient({
    insecure: policy.insecure,
    mirrors: policy.mirrors,
    credentials: nodeCredentials(authFile),
    // --ca-file wins over the node config's caFile (read only when the config is).
    ...(values['ca-file'] ? { caFile: readCaFile(values['ca-file']) } : config?.caFile !== undefined ? { caFile: readCaBundle(config.caFile) } : {}),
  });
  // One deadline for the whole verification, as a pull has: each request's own deadline alone
  // would let a registry listing many candidates that trickle hold it for hours.
  const limit = timeoutMs ?? config?.pullTimeout ?? DEFAULT_PULL_TIMEOUT_MS;
  const deadline = commandDeadline(limit, `${reference}: verification did not finish within ${limit} ms`, { reference });
  const { signal } = deadline;
  try {
    const m = await registry.getManifest(ref, ref.digest, [MEDIA_TYPE_OCI_MANIFEST, MEDIA_TYPE_OCI_INDEX], { maxBytes: MAX_MANIFEST_BYTES, useMirrors: true, signal });
    const kind = declaredKind(m.bytes);
    if (!kind) throw new SpokeError('SecurityProfileInvalid', `${reference}: not a profile artifact (no seccomp or AppArmor config media type)`, { reference }, { reason: 'KIND_MISMATCH' });
    const d = decide(policy, ref, kind, values.namespace);
    if (!d.allowed) throw new SpokeError('PermissionDenied', `${reference}: ${d.reason}`, { reference, rule: d.rule?.id }, { reason: 'POLICY_DENIED' });
    if (d.unsigned) {
      const out = { digest: ref.digest, signer: null, format: null, identity: null, kind, rule: d.rule.id, unsigned: true };
      emit(values.json, out, () => `${reference}: no signature required (${d.rule.id} says unsigned: true); nothing verified`);
      return 0;
    }
    const v = await verifyArtifactSignature({
      registry,
      repo: ref,
      digest: ref.digest,
      manifestBytes: m.bytes,
      signers: d.signedBy.map(toVerifierSigner),
      useMirrors: true,
      reference,
      signal,
    });
    const out = { digest: ref.digest, signer: v.signer, format: v.format, identity: v.identity ?? null, kind, rule: d.rule.id, unsigned: false };
    emit(values.json, out, () =>
      [`Verified ${reference}`, `  signer:   ${v.signer}`, `  format:   ${v.format}`, ...(v.identity ? [`  identity: ${v.identity}`] : []), `  rule:     ${d.rule.id}`].join('\n'),
    );
    return 0;
  } finally {
    deadline.clear();
    await registry.close();
  }
}
