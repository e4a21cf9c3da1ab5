import { parsePlatform, type Platform } from '../../core/artifact.js';
import { DEFAULT_MAX_ARTIFACT_BYTES, MAX_POLICY_ARTIFACT_BYTES } from '../../core/limits.js';
import { parseRepositoryRef } from '../../core/reference.js';
import { MEDIA_TYPE_OCI_INDEX, MEDIA_TYPE_OCI_MANIFEST } from '../../core/constants.js';
import { pushProfile, pushProfileIndex, tagManifest } from '../../publish/push.js';
import { emit, parseCommand, parseKind } from '../args.js';
import { UsageError } from '../errors.js';
import { readInputFile, readPrivateKeyFile } from '../read-file.js';
import { publisherDeadline, timeoutFlag } from '../deadline.js';
import { progress } from '../progress.js';
import { publisherRegistry, publisherFlags } from '../wiring.js';

const HELP = `usage: spoke push FILE REPO[:TAG] --kind seccomp|apparmor [options]
       spoke push REPO[:TAG] --kind K --platform OS/ARCH[/VARIANT]=FILE ... [options]

Packages FILE as a KEP-6061 profile artifact (config {} with the kind's config media type,
artifactType the same, one application/json layer holding FILE's exact bytes, titled
profile.json) and pushes it. The same file always gives the same digest. The profile is
validated as an artifact first: nothing is pushed that nodes would refuse.
The digest-pinned reference is printed as the last line of stdout.

With --platform (repeatable), a multi-architecture profile: each FILE is pushed as its own
artifact (untagged), then an OCI image index naming them by platform, under TAG. Nodes take
the profile of their own platform; policy and signatures apply to the index digest, which is
printed last (docs/multi-arch.md). Every FILE is validated before anything is pushed.

options:
  --kind K           seccomp or apparmor (required)
  --platform P=FILE  a platform (linux/amd64, linux/arm64, linux/arm/v7) and its profile;
                     each platform at most once
  --sign-key KEY.pem sign the pushed digest (the index digest with --platform) with this
                     private key (sigstore bundle referrer, as 'spoke sign --format bundle'
                     does) before printing the reference; the artifact is pushed by digest
                     and TAG set only once the signature is attached
  --plain-http       use HTTP instead of HTTPS (local registries)
  --ca-file F        extra CA bundle (PEM) for the registry's certificate
  --auth-file F      credentials file (docker config.json format; default
                     $REGISTRY_AUTH_FILE, then ~/.docker/config.json)
  --timeout D        give up after D in all, signing included (1s to 60m; default 5m)
  --json             print {reference, digest, size, signed} as JSON; with --platform
                     {reference, digest, platforms: [{platform, reference, digest, size}], signed}`;

/** FILE's bytes, read at most to the largest profile any node takes (read-file.ts). */
async function readInput(file: string): Promise<Buffer> {
  const bytes = readInputFile(file, 'profile', MAX_POLICY_ARTIFACT_BYTES);
  if (bytes.length > DEFAULT_MAX_ARTIFACT_BYTES) {
    process.stderr.write(`warning: ${file} is ${bytes.length} bytes, over the default node limit of ${DEFAULT_MAX_ARTIFACT_BYTES} (limits.maxArtifactBytes): nodes with the default policy refuse it\n`);
  }
  return bytes;
}

/** `--platform os/arch[/variant]=FILE` values, files read. */
async function platformInputs(values: string[]): Promise<{ platform: Platform; bytes: Buffer }[]> {
  const out: { platform: Platform; bytes: Buffer }[] = [];
  for (const v of values) {
    const eq = v.indexOf('=');
    const platform = eq > 0 ? parsePlatform(v.slice(0, eq)) : undefined;
    if (!platform || eq === v.length - 1) throw new UsageError(`--platform must be OS/ARCH[/VARIANT]=FILE (for example linux/arm64=arm64.json), got ${JSON.stringify(v)}`);
    out.push({ platform, bytes: await readInput(v.slice(eq + 1)) });
  }
  return out;
}

export async function run(argv: string[]): Promise<number> {
  const { values, positionals, help } = parseCommand(
    argv,
    { kind: { type: 'string' }, platform: { type: 'string', multiple: true }, 'sign-key': { type: 'string' }, json: { type: 'boolean' }, ...publisherFlags, ...timeoutFlag },
    HELP,
    [1, 2],
  );
  if (help) return 0;
  const kind = parseKind(values.kind);
  const multi = values.platform !== undefined;
  if (multi && positionals.length !== 1) throw new UsageError(`with --platform give only REPO[:TAG]; the files come with each --platform\n${HELP}`);
  if (!multi && positionals.length !== 2) throw new UsageError(`expected FILE REPO[:TAG]\n${HELP}`);
  const target = positionals.at(-1)!;
  const repo = parseRepositoryRef(target);
  const inputs = multi ? await platformInputs(values.platform!) : undefined;
  const file = multi ? undefined : positionals[0]!;
  const bytes = file === undefined ? undefined : await readInput(file);
  const signKey = values['sign-key'] ? readPrivateKeyFile(values['sign-key'], 'signing key') : undefined;
  // A key that signing would refuse is refused before anything is pushed: the tag must not move
  // to an artifact left unsigned. sigstore is loaded only when signing is asked for.
  if (signKey !== undefined) (await import('../../publish/signing.js')).signingKey(signKey);
  const deadline = publisherDeadline(values, 'push');
  const registry = publisherRegistry(values, deadline.signal);
  const p = progress(`pushing ${file ?? `${inputs!.length} platforms`}`);
  try {
    const onProgress = (s: string) => p.step(s);
    // Signed, the artifact is pushed by digest and tagged once its signature is attached: a
    // signing that fails part-way leaves the tag where it was, not on an unsigned artifact.
    const tag = signKey ? undefined : repo.tag;
    const r = inputs
      ? await pushProfileIndex(registry, repo, tag, inputs, kind, { onProgress }).then((x) => ({ ...x, manifest: x.index, mediaType: MEDIA_TYPE_OCI_INDEX }))
      : await pushProfile(registry, repo, tag, bytes!, kind, { onProgress }).then((x) => ({ ...x, manifest: x.packed.manifest, mediaType: MEDIA_TYPE_OCI_MANIFEST }));
    if (signKey) {
      p.step('signing');
      const { signArtifact } = await import('../../publish/sign.js');
      await signArtifact({ registry, repo, digest: r.digest, manifestBytes: r.manifest, key: signKey, format: 'bundle', signal: deadline.signal });
      if (repo.tag !== undefined) {
        p.step('tagging');
        await tagManifest(registry, repo, repo.tag, r.manifest, r.mediaType);
      }
    }
    p.done();
    const signed = signKey !== undefined;
    const data = 'platforms' in r ? { reference: r.reference, digest: r.digest, platforms: r.platforms, signed } : { reference: r.reference, digest: r.digest, size: r.size, signed };
    emit(values.json, data, () => ('platforms' in r ? [...r.platforms.map((x) => `${x.platform}: ${x.reference}`), r.reference].join('\n') : r.reference));
    return 0;
  } finally {
    p.done();
    deadline.clear();
    await registry.close();
  }
}
