import { readFile } from 'node:fs/promises';
import { parseRepositoryRef } from '../../core/reference.js';
import { pushProfile } from '../../publish/push.js';
import { emit, parseCommand, parseKind } from '../args.js';
import { UsageError } from '../errors.js';
import { progress } from '../progress.js';
import { publisherRegistry, publisherFlags } from '../wiring.js';

const HELP = `usage: spoke push FILE REPO[:TAG] --kind seccomp|apparmor [options]

Packages FILE as a KEP-6061 profile artifact (config {} with the kind's config media type,
artifactType the same, one application/json layer holding FILE's exact bytes, titled
profile.json) and pushes it. The same file always gives the same digest. The profile is
validated as an artifact first: nothing is pushed that nodes would refuse.
The digest-pinned reference is printed as the last line of stdout.

options:
  --kind K           seccomp or apparmor (required)
  --sign-key KEY.pem sign the pushed digest with this private key (sigstore bundle referrer,
                     as 'spoke sign --format bundle' does) before printing the reference
  --plain-http       use HTTP instead of HTTPS (local registries)
  --ca-file F        extra CA bundle (PEM) for the registry's certificate
  --auth-file F      credentials file (docker config.json format; default
                     $REGISTRY_AUTH_FILE, then ~/.docker/config.json)
  --json             print {reference, digest, size, signed} as JSON`;

export async function run(argv: string[]): Promise<number> {
  const { values, positionals, help } = parseCommand(argv, { kind: { type: 'string' }, 'sign-key': { type: 'string' }, json: { type: 'boolean' }, ...publisherFlags }, HELP, [2, 2]);
  if (help) return 0;
  const kind = parseKind(values.kind);
  const [file, target] = positionals as [string, string];
  const repo = parseRepositoryRef(target);
  const bytes = await readFile(file).catch((e: NodeJS.ErrnoException) => {
    throw new UsageError(`cannot read ${file}: ${e.code ?? e.message}`);
  });
  const signKey = values['sign-key']
    ? await readFile(values['sign-key'], 'utf8').catch((e: NodeJS.ErrnoException) => {
        throw new UsageError(`cannot read ${values['sign-key']}: ${e.code ?? e.message}`);
      })
    : undefined;
  const registry = publisherRegistry(values);
  const p = progress(`pushing ${file}`);
  try {
    const r = await pushProfile(registry, repo, repo.tag, bytes, kind, { onProgress: (s) => p.step(s) });
    if (signKey) {
      p.step('signing');
      // sigstore is loaded only when signing is asked for.
      const { signArtifact } = await import('../../publish/sign.js');
      await signArtifact({ registry, repo, digest: r.digest, manifestBytes: r.packed.manifest, key: signKey, format: 'bundle' });
    }
    p.done();
    emit(values.json, { reference: r.reference, digest: r.digest, size: r.size, signed: signKey !== undefined }, () => r.reference);
    return 0;
  } finally {
    p.done();
    await registry.close();
  }
}
