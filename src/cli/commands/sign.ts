import { MEDIA_TYPE_OCI_INDEX, MEDIA_TYPE_OCI_MANIFEST } from '../../core/constants.js';
import { MAX_MANIFEST_BYTES } from '../../core/limits.js';
import { formatReference, parseReference } from '../../core/reference.js';
import { signArtifact } from '../../publish/sign.js';
import type { SignFormat } from '../../publish/signing.js';
import { emit, parseCommand } from '../args.js';
import { UsageError } from '../errors.js';
import { MAX_KEY_FILE_BYTES, readInputFile, readPrivateKeyFile } from '../read-file.js';
import { publisherDeadline, timeoutFlag } from '../deadline.js';
import { progress } from '../progress.js';
import { publisherFlags, publisherRegistry } from '../wiring.js';

const HELP = `usage: spoke sign REF --key KEY.pem [options]

Signs the artifact REF (host[:port]/repo@sha256:...) with a local private key and attaches the
signature to it in the registry. The digest-pinned reference is printed as the last line.

  bundle  (default) a sigstore bundle v0.3 holding a DSSE in-toto statement for the digest,
          predicateType https://sigstore.dev/cosign/sign/v1, as cosign v3 writes it; attached
          as an OCI 1.1 referrer (and listed in the sha256-<hex> tag index where the registry
          has no referrers API)
  cosign  cosign's scheme: a simple-signing layer appended to the sha256-<hex>.sig manifest
  both    both of the above

options:
  --key KEY.pem         private key, PEM, unencrypted (PKCS#8 or SEC1): ECDSA P-256/P-384,
                        Ed25519 or RSA 2048-8192, as a node policy trusts (required)
  --cert CERT.pem       certificate for the key (keyless-style signature; needs --timestamp-url)
  --chain CHAIN.pem     its issuing chain, certificates only (any other PEM block, a key
                        say, is refused; written to the cosign chain annotation)
  --timestamp-url URL   RFC 3161 timestamp authority (a sigstore TSA: .../api/v1/timestamp)
  --format F            bundle, cosign or both (default bundle)
  --plain-http          use HTTP instead of HTTPS (local registries)
  --ca-file F           extra CA bundle (PEM) for the registry's certificate
  --auth-file F         credentials file (docker config.json format)
  --timeout D           give up after D in all, the timestamp included (1s to 60m; default 5m)
  --json                print {reference, digest, format, bundleDigest, sigManifestDigest} as JSON`;

async function readText(file: string, what: string): Promise<string> {
  return readInputFile(file, what, MAX_KEY_FILE_BYTES).toString('utf8');
}

export async function run(argv: string[]): Promise<number> {
  const { values, positionals, help } = parseCommand(
    argv,
    {
      key: { type: 'string' },
      cert: { type: 'string' },
      chain: { type: 'string' },
      'timestamp-url': { type: 'string' },
      format: { type: 'string' },
      json: { type: 'boolean' },
      ...publisherFlags,
      ...timeoutFlag,
    },
    HELP,
    [1, 1],
  );
  if (help) return 0;
  if (!values.key) throw new UsageError(`--key is required\n${HELP}`);
  const format = (values.format ?? 'bundle') as SignFormat;
  if (!['bundle', 'cosign', 'both'].includes(format)) throw new UsageError(`--format must be bundle, cosign or both, got ${JSON.stringify(values.format)}`);
  if (values.chain && !values.cert) throw new UsageError('--chain needs --cert');
  if (values.cert && !values['timestamp-url']) throw new UsageError('--cert needs --timestamp-url: keyless verification requires an RFC 3161 timestamp');
  const ref = parseReference(positionals[0]!);
  const key = readPrivateKeyFile(values.key, 'key');
  const cert = values.cert ? await readText(values.cert, 'certificate') : undefined;
  const chain = values.chain ? await readText(values.chain, 'chain') : undefined;
  const deadline = publisherDeadline(values, 'sign');
  const registry = publisherRegistry(values, deadline.signal);
  const p = progress(`signing ${ref.digest.slice(0, 19)}`);
  try {
    p.step('fetching the manifest');
    const m = await registry.getManifest(ref, ref.digest, [MEDIA_TYPE_OCI_MANIFEST, MEDIA_TYPE_OCI_INDEX], { maxBytes: MAX_MANIFEST_BYTES });
    p.step('signing and attaching');
    const r = await signArtifact({
      registry,
      repo: ref,
      digest: ref.digest,
      manifestBytes: m.bytes,
      key,
      ...(cert ? { cert } : {}),
      ...(chain ? { chain } : {}),
      ...(values['timestamp-url'] ? { timestampUrl: values['timestamp-url'] } : {}),
      format,
      signal: deadline.signal,
    });
    p.done();
    const reference = formatReference(ref);
    emit(
      values.json,
      { reference, digest: ref.digest, format, bundleDigest: r.bundleDigest ?? null, referrers: r.referrers ?? null, sigManifestDigest: r.sigManifestDigest ?? null },
      () =>
        [
          ...(r.bundleDigest ? [`bundle: referrer ${r.bundleDigest} (${r.referrers === 'tag-schema' ? `listed in tag sha256-${ref.digest.slice(7)}` : 'referrers API'})`] : []),
          ...(r.sigManifestDigest ? [`cosign: sha256-${ref.digest.slice(7)}.sig → ${r.sigManifestDigest}`] : []),
          reference,
        ].join('\n'),
    );
    return 0;
  } finally {
    p.done();
    deadline.clear();
    await registry.close();
  }
}
