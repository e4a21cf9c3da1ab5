import { existsSync } from 'node:fs';
import { checkArtifactManifest, checkProfileIndex, declaredKind, isImageIndex, ManifestDocument, parsePlatform, refuseArchive, selectPlatform, type Platform } from '../../core/artifact.js';
import { MEDIA_TYPE_OCI_INDEX, MEDIA_TYPE_OCI_MANIFEST, type ProfileKind } from '../../core/constants.js';
import { DEFAULT_MAX_ARTIFACT_BYTES, MAX_MANIFEST_BYTES } from '../../core/limits.js';
import { parseReference, type Reference } from '../../core/reference.js';
import { compareAppArmor, formatAppArmorChange, validateAppArmorArtifactBytes } from '../../profiles/apparmor/index.js';
import { compareProfiles, decodeSeccomp, formatVerdict, GO_ARCHITECTURES, validateArtifact, type ProfileChange } from '../../profiles/seccomp/index.js';
import type { RegistryClient } from '../../registry/index.js';
import { emit, parseCommand } from '../args.js';
import { reportError, EXIT_USAGE, UsageError } from '../errors.js';
import { nodePlatform } from '../../pull/platform.js';
import { parseTimeoutFlag, publisherDeadline, timeoutFlag, type Deadline } from '../deadline.js';
import { publisherFlags, publisherRegistry } from '../wiring.js';
import { kindOf, readInput } from './profile.js';

const HELP = `usage: spoke diff OLD NEW [--kind seccomp|apparmor] [--platform OS/ARCH] [--json]

Compares two profiles by what they decide, not by their text: for seccomp, every syscall and
argument case on the architectures the profiles load; for AppArmor, every path, capability and
network permission. OLD and NEW are files or digest references (host[:port]/repo@sha256:...),
which are fetched and checked like a pull but never stored; an argument that reads as a
reference is one even where a file has that name (./NAME names the file). A reference to a multi-architecture
index (docs/multi-arch.md) is compared by the manifest it lists for --platform (default this
machine's, as a node would choose); an index without that platform is an error.

A change is "loosened" when NEW's verdict comes later in the KEP action order (KILL_PROCESS,
KILL, TRAP, ERRNO, NOTIFY, TRACE, LOG, ALLOW) or grants what OLD did not; "tightened" the other way round;
"changed" when the strictness is equal (another errno, a logging flag).

exit status (like diff(1)): 0 when NEW loosens nothing (identical, or only tighter);
1 when NEW loosens anything; 2 for a usage error, an unreadable or invalid profile.

options:
  --kind K          seccomp or apparmor (default: guessed from OLD)
  --platform P      the platform whose profile an index reference stands for (linux/amd64,
                    linux/arm64, ...; default this machine's)
  --plain-http      fetch references over HTTP instead of HTTPS
  --ca-file F       extra CA bundle (PEM) for references
  --auth-file F     credentials file (docker config.json format) for references
  --timeout D       give up fetching references after D in all (1s to 60m; default 5m)
  --json            {"loosened": [...], "tightened": [...], "changed": [...]} on stdout`;

interface Input {
  bytes: Buffer;
  /** The manifest's declared kind, for references. */
  declared?: ProfileKind;
}

/**
 * A digest reference, fetched and checked like a pull (an index by its digest, then the manifest
 * it lists for `platform`, by that digest), when the argument reads as one, even where a file of
 * that name exists: a gate runs in a checkout whose files the change under review may add, and a
 * reference pins its content. Otherwise a file (`./` names a file that reads as a reference).
 */
async function load(arg: string, kind: ProfileKind | undefined, platform: Platform, registry: () => RegistryClient): Promise<Input> {
  const ref = asReference(arg);
  if (ref === undefined) return { bytes: await readInput(arg, 'profile') };
  const repo = { registry: ref.registry, repository: ref.repository };
  let manifest = await registry().getManifest(repo, ref.digest, [MEDIA_TYPE_OCI_MANIFEST, MEDIA_TYPE_OCI_INDEX], { maxBytes: MAX_MANIFEST_BYTES });
  let digest = ref.digest;
  // Decoded once for every reading below: is it an index, the kind it declares, the artifact checks.
  let document = new ManifestDocument(manifest.bytes, `manifest ${digest}`);
  if (isImageIndex(document)) {
    const chosen = selectPlatform(checkProfileIndex(manifest.bytes, ref.digest, MAX_MANIFEST_BYTES).manifests, platform, ref.digest);
    digest = chosen.digest;
    manifest = await registry().getManifest(repo, digest, [MEDIA_TYPE_OCI_MANIFEST], { maxBytes: MAX_MANIFEST_BYTES });
    document = new ManifestDocument(manifest.bytes, `manifest ${digest}`);
  }
  const declared = kind ?? declaredKind(document) ?? 'seccomp';
  const artifact = checkArtifactManifest(document, digest, declared, DEFAULT_MAX_ARTIFACT_BYTES);
  const blob = await registry().getBlob(repo, artifact.layer.digest, { maxBytes: DEFAULT_MAX_ARTIFACT_BYTES, expectedSize: artifact.layer.size });
  refuseArchive(blob.bytes, artifact.layer.digest);
  return { bytes: blob.bytes, declared };
}

/** `arg` as a digest reference; undefined for a file name. One with an `@` that is not a valid reference is refused. */
function asReference(arg: string): Reference | undefined {
  if (!arg.includes('@') || arg.startsWith('./') || arg.startsWith('/')) return undefined;
  try {
    return parseReference(arg);
  } catch (e) {
    // An existing file named so (`spoke diff old@v1.json new.json`) stays a file, as before.
    if (existsSync(arg)) return undefined;
    throw e;
  }
}

function describeSeccomp(c: ProfileChange): string {
  switch (c.kind) {
    case 'syscall': {
      const name = c.syscall === '*' ? 'every other syscall (default action)' : c.syscall;
      return `${name}${c.args === undefined ? '' : ` when ${c.args}`}: ${formatVerdict(c.old)} → ${formatVerdict(c.new)}`;
    }
    case 'enosys': {
      const shown = c.syscalls.slice(0, 6).join(', ');
      const calls = `${c.syscalls.length} call${c.syscalls.length === 1 ? '' : 's'} on ${c.architecture} (${shown}${c.syscalls.length > 6 ? ', …' : ''})`;
      return `${calls}, past runc's ENOSYS threshold in one profile only: ${formatVerdict(c.old)} → ${formatVerdict(c.new)}`;
    }
    case 'enosys-unnumbered': {
      const names = [...(c.added.length > 0 ? [`added ${c.added.join(', ')}`] : []), ...(c.removed.length > 0 ? [`removed ${c.removed.join(', ')}`] : [])].join('; ');
      return `runc's ENOSYS threshold on ${c.architecture} may move (names ${names}); spoke has no call numbers there to list the calls it moves: review by hand`;
    }
    case 'architecture':
      return `architecture ${c.architecture}: ${c.old} → ${c.new}`;
    case 'flag':
      return `flag ${c.flag}: ${c.old} → ${c.new}`;
  }
}

function compare(kind: ProfileKind, older: Buffer, newer: Buffer, platform: Platform): { json: Record<string, unknown[]>; lines: string[]; loosened: number } {
  if (kind === 'apparmor') {
    const r = compareAppArmor(validateAppArmorArtifactBytes(older), validateAppArmorArtifactBytes(newer));
    return {
      // An AppArmor permission is granted or not: nothing changes at equal strictness.
      json: { loosened: r.loosened, tightened: r.tightened, changed: [] },
      lines: [...r.loosened.map((c) => `loosened   ${formatAppArmorChange(c)}`), ...r.tightened.map((c) => `tightened  ${formatAppArmorChange(c)}`)],
      loosened: r.loosened.length,
    };
  }
  // Judged only what a node would accept as an artifact (validateArtifact): the comparison reads
  // profiles as the merge does, and a rule set outside its shapes would be misread.
  const decodeValid = (bytes: Buffer) => {
    const p = decodeSeccomp(bytes);
    validateArtifact(p);
    return p;
  };
  // A profile without an architecture list runs on the node's: the platform's, for runc's ENOSYS threshold.
  const native = Object.hasOwn(GO_ARCHITECTURES, platform.architecture) ? GO_ARCHITECTURES[platform.architecture] : undefined;
  const r = compareProfiles(decodeValid(older), decodeValid(newer), native);
  return {
    json: { loosened: r.loosened, tightened: r.tightened, changed: r.changed },
    lines: [
      ...r.loosened.map((c) => `loosened   ${describeSeccomp(c)}`),
      ...r.tightened.map((c) => `tightened  ${describeSeccomp(c)}`),
      ...r.changed.map((c) => `changed    ${describeSeccomp(c)}`),
    ],
    loosened: r.loosened.length,
  };
}

export async function run(argv: string[]): Promise<number> {
  let client: RegistryClient | undefined;
  let deadline: Deadline | undefined;
  try {
    const { values, positionals, help } = parseCommand(argv, { kind: { type: 'string' }, platform: { type: 'string' }, json: { type: 'boolean' }, ...publisherFlags, ...timeoutFlag }, HELP, [2, 2]);
    if (help) return 0;
    const platform = values.platform === undefined ? nodePlatform() : parsePlatform(values.platform);
    if (platform === undefined) throw new UsageError(`--platform must look like linux/amd64 or linux/arm/v7, got ${JSON.stringify(values.platform)}`);
    // The flag is checked now, the clock starts at the first reference fetched.
    parseTimeoutFlag(values.timeout);
    const registry = () => (client ??= publisherRegistry(values, (deadline = publisherDeadline(values, 'diff')).signal));
    const kindFlag = values.kind === undefined ? undefined : kindOf(values.kind, Buffer.alloc(0));
    const older = await load(positionals[0]!, kindFlag, platform, registry);
    const kind = kindFlag ?? older.declared ?? kindOf(undefined, older.bytes);
    const newer = await load(positionals[1]!, kind, platform, registry);
    const r = compare(kind, older.bytes, newer.bytes, platform);
    emit(values.json, r.json, () => (r.lines.length === 0 ? 'no change in behaviour' : r.lines.join('\n')));
    return r.loosened > 0 ? 1 : 0;
  } catch (e) {
    // Like diff(1): 1 is the answer "loosened", so every failure is trouble (2), never 1.
    reportError(e);
    return EXIT_USAGE;
  } finally {
    deadline?.clear();
    await client?.close();
  }
}
