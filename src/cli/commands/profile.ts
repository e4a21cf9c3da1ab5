import { dirname, join } from 'node:path';
import { identifyParser } from '../../apparmor/identity.js';
import { checkWithParser } from '../../apparmor/parser.js';
import { defaultBaselinePath } from '../../config/node-config.js';
import type { ProfileKind } from '../../core/constants.js';
import { sha256Digest } from '../../core/digest.js';
import { SpokeError } from '../../core/errors.js';
import { MAX_POLICY_ARTIFACT_BYTES } from '../../core/limits.js';
import {
  appArmorProfileName,
  decodeAppArmor,
  encodeAppArmorCanonical,
  explicitAppArmor,
  intersectAppArmor,
  renderAppArmor,
  validateAppArmorArtifact,
  validateAppArmorArtifactBytes,
} from '../../profiles/apparmor/index.js';
import { decodeSeccomp, validate, validateArtifact, validateStrict } from '../../profiles/seccomp/index.js';
import { convertProfile, CRI_DEFAULT_CAPABILITIES, decodeSeccompWithHint, parseProfileText } from '../../profiles/seccomp/convert.js';
import { stringifyExact } from '../../core/json.js';
import { writeOutputFile } from '../output-file.js';
import { emit, parseCommand, parseKind } from '../args.js';
import { errorLine, EXIT_FAILED, UsageError } from '../errors.js';
import { readInputFile } from '../read-file.js';
import { writeSafeLine } from '../../core/text.js';

const HELP = `usage: spoke profile validate FILE [--kind seccomp|apparmor] [--artifact | --strict] [--json]
       spoke profile render --kind apparmor FILE [--name NAME] [--baseline FILE | --raw] [--check]
       spoke profile convert FILE [--from docker|spo] [--arch ARCH] [--caps CAP,...] [--output F]

  validate  strict decode (unknown or duplicate members, trailing data, bad UTF-8 are errors),
            then the kind's rules. Seccomp levels: default = what runc loads, --artifact = what
            a node accepts from a registry (KEP-6061 ValidateArtifact), --strict = artifact
            rules plus duplicate names and unused values. AppArmor has one level, the artifact
            rules (limits, absolute paths, no variables, no rule syntax in paths, known
            capabilities). Exit 0 when valid, 1 with the JSON path at fault otherwise.
  render    print the AppArmor policy text spoke would load for FILE: FILE intersected with
            the AppArmor baseline, under the name this node's shim would load it under:
            spoke-<sha256 of the merged profile and of this node's apparmor_parser>.
  convert   turn a Docker / containers-common seccomp profile (archMap, includes/excludes) or a
            Security Profiles Operator SeccompProfile (JSON or YAML) into the runtime-spec
            profile an artifact carries, for one architecture and capability set; it passes
            validate --artifact. What the conversion decided (conflicting rules resolved to the
            most restrictive, kernel versions assumed) is said on stderr. docs/convert.md

options:
  --kind K          seccomp or apparmor (default: apparmor when the document has one of the
                    structured AppArmor sections and no defaultAction, else seccomp)
  --artifact        seccomp: validate as a pulled artifact would be
  --strict          seccomp: artifact rules plus the strict checks
  --name NAME       render: the profile name (default the shim's, which needs apparmor_parser)
  --baseline FILE   render: AppArmor baseline (default policy/apparmor-baseline.json)
  --from F          convert: docker (also containers-common) or spo (default: detected)
  --arch ARCH       convert: Go architecture name, amd64, arm64, … (default: this node's)
  --caps LIST       convert: the container's capabilities (default: the CRI default set,
                    ${CRI_DEFAULT_CAPABILITIES.join(',')})
  --output F        convert: write the profile to F (atomically) instead of stdout
  --raw             render: FILE as it is, without intersecting it with a baseline
  --check           render: also compile the text with apparmor_parser -Q (no kernel load)
  --json            machine-readable output`;

export const APPARMOR_SECTIONS = ['executable', 'filesystem', 'network', 'capability'];

/** The shipped AppArmor baseline, next to the shipped seccomp baseline. */
export function defaultAppArmorBaselinePath(): string {
  return join(dirname(defaultBaselinePath()), 'apparmor-baseline.json');
}

/** A profile, baseline or artifact file: no node takes one larger than MAX_POLICY_ARTIFACT_BYTES. */
export async function readInput(file: string, what = 'file'): Promise<Buffer> {
  return readInputFile(file, what, MAX_POLICY_ARTIFACT_BYTES);
}

/** --kind, or a guess from the document's top-level members (never from anything else). */
export function kindOf(flag: string | undefined, bytes: Uint8Array): ProfileKind {
  if (flag !== undefined) return parseKind(flag);
  try {
    const v = JSON.parse(Buffer.from(bytes).toString('utf8')) as unknown;
    if (typeof v === 'object' && v !== null && !Array.isArray(v)) {
      const keys = Object.keys(v);
      if (!keys.includes('defaultAction') && keys.some((k) => APPARMOR_SECTIONS.includes(k))) return 'apparmor';
    }
  } catch {
    // the strict decoder reports it
  }
  return 'seccomp';
}

type Level = 'runtime' | 'artifact' | 'strict';

function validateFile(kind: ProfileKind, level: Level, bytes: Uint8Array): void {
  if (kind === 'apparmor') {
    validateAppArmorArtifactBytes(bytes);
    return;
  }
  const p = decodeSeccompWithHint(bytes);
  if (level === 'strict') validateStrict(p);
  else if (level === 'artifact') validateArtifact(p);
  else validate(p);
}

async function runValidate(file: string, values: { kind?: string; artifact?: boolean; strict?: boolean; json?: boolean }): Promise<number> {
  if (values.artifact && values.strict) throw new UsageError(`--artifact and --strict exclude each other\n${HELP}`);
  const bytes = await readInput(file);
  const kind = kindOf(values.kind, bytes);
  const level: Level = kind === 'apparmor' ? 'artifact' : values.strict ? 'strict' : values.artifact ? 'artifact' : 'runtime';
  const digest = sha256Digest(bytes);
  try {
    validateFile(kind, level, bytes);
  } catch (e) {
    if (!(e instanceof SpokeError) || e.code !== 'SecurityProfileInvalid' || !values.json) throw e;
    emit(true, { file, kind, level, valid: false, digest, error: { code: e.code, message: e.message, path: e.context.path ?? null } }, () => '');
    process.stderr.write(errorLine(e) + '\n');
    return EXIT_FAILED;
  }
  emit(values.json, { file, kind, level, valid: true, digest }, () => `${file}: valid ${kind} profile (${level} rules), ${digest}`);
  return 0;
}

async function runRender(file: string, values: { kind?: string; name?: string; baseline?: string; raw?: boolean; check?: boolean; json?: boolean }): Promise<number> {
  if (values.kind === undefined) throw new UsageError(`render needs --kind apparmor\n${HELP}`);
  if (parseKind(values.kind) !== 'apparmor') throw new UsageError('render is for AppArmor profiles (--kind apparmor); seccomp profiles are loaded as JSON, see spoke merge');
  if (values.raw && values.baseline !== undefined) throw new UsageError(`--raw and --baseline exclude each other\n${HELP}`);
  const artifact = validateAppArmorArtifactBytes(await readInput(file));
  let effective;
  let bytes: Buffer;
  if (values.raw) {
    effective = explicitAppArmor(artifact);
    bytes = encodeAppArmorCanonical(effective);
  } else {
    const baselineFile = values.baseline ?? defaultAppArmorBaselinePath();
    const baseline = decodeAppArmor(await readInput(baselineFile, 'baseline'));
    validateAppArmorArtifact(baseline);
    const merged = intersectAppArmor(baseline, artifact);
    effective = merged.profile;
    bytes = merged.bytes;
  }
  // The shim's name covers the parser that compiles it (docs/apparmor.md#the-parser-in-the-name).
  const name = values.name ?? appArmorProfileName(bytes, (await identifyParser()).id);
  const text = renderAppArmor(effective, name);
  let warnings: string[] = [];
  if (values.check) warnings = (await checkWithParser(text)).warnings;
  for (const w of warnings) writeSafeLine(process.stderr, `apparmor_parser: ${w}`);
  if (values.json) emit(true, { name, digest: sha256Digest(bytes), text, ...(values.check ? { checked: true, warnings } : {}) }, () => '');
  else process.stdout.write(text);
  return 0;
}

/** The node's architecture as a Go name (what `includes.arches` compares with). */
function nodeArch(): string {
  const byNode: Record<string, string> = { x64: 'amd64', ia32: '386', arm64: 'arm64', arm: 'arm', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64', loong64: 'loong64' };
  return byNode[process.arch] ?? process.arch;
}

async function runConvert(file: string, values: { from?: string; arch?: string; caps?: string; output?: string; json?: boolean }): Promise<number> {
  if (values.from !== undefined && values.from !== 'docker' && values.from !== 'spo') throw new UsageError(`--from must be docker or spo, got ${JSON.stringify(values.from)}`);
  const caps = values.caps === undefined ? [...CRI_DEFAULT_CAPABILITIES] : values.caps.split(',').map((c) => c.trim()).filter((c) => c !== '');
  const { profile, notes, format } = convertProfile(parseProfileText((await readInput(file)).toString('utf8')), {
    arch: values.arch ?? nodeArch(),
    caps,
    ...(values.from === undefined ? {} : { from: values.from }),
  });
  const text = stringifyExact(profile) + '\n';
  // What it prints must be what a node accepts: checked with the artifact rules before anything is written.
  validateArtifact(decodeSeccomp(Buffer.from(text)));
  for (const n of notes) writeSafeLine(process.stderr, `note: ${n}`);
  if (values.output !== undefined) {
    await writeOutputFile(values.output, text);
    process.stderr.write(`${file} (${format}) → ${values.output}, ${sha256Digest(Buffer.from(text))}\n`);
  } else process.stdout.write(text);
  return 0;
}

export async function run(argv: string[]): Promise<number> {
  const { values, positionals, help } = parseCommand(
    argv,
    {
      kind: { type: 'string' },
      artifact: { type: 'boolean' },
      strict: { type: 'boolean' },
      name: { type: 'string' },
      baseline: { type: 'string' },
      raw: { type: 'boolean' },
      check: { type: 'boolean' },
      from: { type: 'string' },
      arch: { type: 'string' },
      caps: { type: 'string' },
      output: { type: 'string', short: 'o' },
      json: { type: 'boolean' },
    },
    HELP,
    [2, 2],
  );
  if (help) return 0;
  const [sub, file] = positionals as [string, string];
  if (sub === 'validate') {
    if (values.name !== undefined || values.baseline !== undefined || values.raw || values.check) throw new UsageError(`--name, --baseline, --raw and --check are render options\n${HELP}`);
    return runValidate(file, values);
  }
  if (sub === 'render') {
    if (values.artifact || values.strict) throw new UsageError(`--artifact and --strict are validate options\n${HELP}`);
    return runRender(file, values);
  }
  if (sub === 'convert') return runConvert(file, values);
  throw new UsageError(`unknown profile subcommand ${JSON.stringify(sub)}\n${HELP}`);
}
