import { checkProfileIndex, declaredKind, formatPlatform, isImageIndex, ManifestDocument } from '../../core/artifact.js';
import { MEDIA_TYPE_OCI_INDEX, MEDIA_TYPE_OCI_MANIFEST } from '../../core/constants.js';
import { SpokeError } from '../../core/errors.js';
import { MAX_MANIFEST_BYTES } from '../../core/limits.js';
import { parseReference } from '../../core/reference.js';
import { emit, parseCommand } from '../args.js';
import { publisherDeadline, timeoutFlag } from '../deadline.js';
import { publisherFlags, publisherRegistry } from '../wiring.js';

const HELP = `usage: spoke inspect REF [options]

Fetches the artifact manifest of REF (host[:port]/repo@sha256:...), checks its bytes against the
digest, and prints the kind, media types and sizes. The profile itself is not downloaded. For a
multi-architecture index (docs/multi-arch.md), checked like a pull checks it, it prints the
platforms and the digest of each one's manifest.

options:
  --plain-http       use HTTP instead of HTTPS
  --ca-file F        extra CA bundle (PEM)
  --auth-file F      credentials file (docker config.json format)
  --timeout D        give up after D (1s to 60m; default 5m)
  --json             print {reference, digest, kind, mediaType, artifactType, config, layers,
                     manifests} as JSON (manifests: [{platform, digest, size, artifactType}] of
                     an index, else [])`;

interface ManifestView {
  mediaType?: string;
  artifactType?: string;
  config?: { mediaType: string; digest: string; size: number };
  layers?: { mediaType: string; digest: string; size: number; annotations?: Record<string, string> }[];
}

/**
 * A value the registry chose, on the one line it belongs to: newlines and tabs shown escaped
 * (emit's terminalSafe escapes the other controls but keeps those), anything not a string as JSON.
 * The manifest is shown as sent, valid or not, so no field's shape is assumed.
 */
function oneLine(v: unknown): string {
  const text = typeof v === 'string' ? v : (JSON.stringify(v) ?? String(v));
  return text.replace(/\n/g, '\\n').replace(/\t/g, '\\t');
}

export async function run(argv: string[]): Promise<number> {
  const { values, positionals, help } = parseCommand(argv, { json: { type: 'boolean' }, ...publisherFlags, ...timeoutFlag }, HELP, [1, 1]);
  if (help) return 0;
  const ref = parseReference(positionals[0]!);
  const deadline = publisherDeadline(values, 'inspect');
  const registry = publisherRegistry(values, deadline.signal);
  try {
    const m = await registry.getManifest(ref, ref.digest, [MEDIA_TYPE_OCI_MANIFEST, MEDIA_TYPE_OCI_INDEX], { maxBytes: MAX_MANIFEST_BYTES });
    const document = new ManifestDocument(m.bytes, `manifest ${m.digest}`);
    let decoded: unknown;
    try {
      decoded = document.value();
    } catch (e) {
      // Strict, as a pull decodes it (a member twice is refused, not read as its last value).
      throw new SpokeError('SecurityProfileInvalid', `${positionals[0]}: the manifest is not strict JSON: ${(e as Error).message}`, { reference: positionals[0], digest: m.digest }, { cause: e, reason: 'JSON_INVALID' });
    }
    // Shown as sent: a manifest that is no JSON object has none of the fields.
    const view: ManifestView = typeof decoded === 'object' && decoded !== null && !Array.isArray(decoded) ? decoded : {};
    const manifests = isImageIndex(document)
      ? checkProfileIndex(m.bytes, m.digest, MAX_MANIFEST_BYTES).manifests.map((d) => ({ platform: formatPlatform(d.platform), digest: d.digest, size: d.size, artifactType: d.artifactType ?? null }))
      : [];
    const out = {
      reference: positionals[0],
      digest: m.digest,
      kind: declaredKind(document) ?? null,
      mediaType: view.mediaType ?? null,
      artifactType: view.artifactType ?? null,
      config: view.config ?? null,
      layers: view.layers ?? [],
      manifests,
      manifestSize: m.bytes.byteLength,
    };
    emit(values.json, out, () =>
      [
        `digest:        ${out.digest}`,
        `kind:          ${out.kind ?? '(not a profile artifact)'}`,
        `mediaType:     ${oneLine(out.mediaType)}`,
        `artifactType:  ${out.artifactType === null ? '(none)' : oneLine(out.artifactType)}`,
        `config:        ${out.config ? `${oneLine(out.config.mediaType)} ${oneLine(out.config.size)} B` : '(none)'}`,
        ...(Array.isArray(out.layers) ? out.layers.map((l, i) => `layer[${i}]:      ${oneLine(l?.mediaType)} ${oneLine(l?.size)} B ${oneLine(l?.digest)}`) : [`layers:        ${oneLine(out.layers)} (not a list)`]),
        ...out.manifests.map((d) => `platform:      ${d.platform.padEnd(16)} ${d.digest} ${d.size} B`),
      ].join('\n'),
    );
    return 0;
  } finally {
    deadline.clear();
    await registry.close();
  }
}
