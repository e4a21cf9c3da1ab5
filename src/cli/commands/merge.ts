import { effectiveRuntimeSteps } from '../../cri/seccomp.js';
import { defaultBaselinePath } from '../../config/node-config.js';
import { SpokeError } from '../../core/errors.js';
import { stringifyExact as stringify } from '../../core/json.js';
import { decodeSeccompWithHint } from '../../profiles/seccomp/convert.js';
import { decodeAppArmor, formatAppArmorConstraint, intersectAppArmor, validateAppArmorArtifact, validateAppArmorArtifactBytes } from '../../profiles/apparmor/index.js';
import { decodeSeccomp, formatConstraint, intersect, validate, validateArtifact, validateBaseline } from '../../profiles/seccomp/index.js';
import { parseCommand } from '../args.js';
import { UsageError } from '../errors.js';
import { defaultAppArmorBaselinePath, kindOf, readInput } from './profile.js';
import { writeSafeLine } from '../../core/text.js';

const HELP = `usage: spoke merge ARTIFACT [--kind seccomp|apparmor] [--baseline FILE] [--base FILE] [--explain] [--json]

Prints the effective profile a node would apply for ARTIFACT: the intersection of the node
baseline, the pod's base profile (seccomp only) and the artifact (KEP-6061 §4), as canonical
JSON (the digest is of those bytes, without the final newline). The artifact is validated as a
pulled artifact would be; the baseline as the node validates it at start-up.

options:
  --kind K          seccomp or apparmor (default: guessed from the document, as profile validate)
  --baseline FILE   node baseline (default: the shipped policy/seccomp-baseline.json or
                    policy/apparmor-baseline.json)
  --base FILE       seccomp: the pod's Localhost base profile (AppArmor allows RuntimeDefault only)
  --explain         on stderr, each thing the merge constrained and the input that constrained it
  --json            {"effective": <profile>, "constrained": [...], "digest": ...} on stdout`;

interface Outcome {
  bytes: Buffer;
  digest: string;
  constrained: { message: string; detail: unknown }[];
  inputs: string;
}

/** `parse(bytes)` of one input; a SpokeError it throws names the input ("<which> <file>: …"). */
function parseInput<T>(which: string, file: string, bytes: Buffer, parse: (bytes: Buffer) => T): T {
  try {
    return parse(bytes);
  } catch (e) {
    if (e instanceof SpokeError) throw new SpokeError(e.code, `${which} ${file}: ${e.message}`, { ...e.context, file }, { cause: e, reason: e.reason });
    throw e;
  }
}

const loadInput = async <T>(which: string, file: string, parse: (bytes: Buffer) => T): Promise<T> => parseInput(which, file, await readInput(file, which), parse);

/** A parser: `decode`, then `check` the decoded profile. */
const checked =
  <T>(decode: (bytes: Buffer) => T, check: (p: T) => void) =>
  (bytes: Buffer): T => {
    const p = decode(bytes);
    check(p);
    return p;
  };

function outcome<C>(r: { bytes: Buffer; digest: string; constrained: C[] }, format: (c: C) => string, inputs: string): Outcome {
  return { bytes: r.bytes, digest: r.digest, constrained: r.constrained.map((c) => ({ message: format(c), detail: c })), inputs };
}

async function mergeSeccomp(artifactFile: string, artifactBytes: Buffer, baselineFile: string, baseFile: string | undefined): Promise<Outcome> {
  const baseline = await loadInput('baseline', baselineFile, checked(decodeSeccomp, validateBaseline));
  const base = baseFile === undefined ? undefined : await loadInput('base profile', baseFile, checked(decodeSeccomp, validate));
  const artifact = parseInput('artifact', artifactFile, artifactBytes, checked(decodeSeccompWithHint, validateArtifact));
  const merged = intersect(baseline, base, artifact);
  // Refused here as the shim refuses it at a create.
  effectiveRuntimeSteps(merged);
  return outcome(merged, formatConstraint, `baseline ${baselineFile}${baseFile === undefined ? '' : `, base ${baseFile}`}`);
}

async function mergeAppArmor(artifactFile: string, artifactBytes: Buffer, baselineFile: string): Promise<Outcome> {
  const baseline = await loadInput('baseline', baselineFile, checked(decodeAppArmor, validateAppArmorArtifact));
  const artifact = parseInput('artifact', artifactFile, artifactBytes, validateAppArmorArtifactBytes);
  const r = intersectAppArmor(baseline, artifact);
  // No profile name: the one a node loads it under covers that node's apparmor_parser
  // (docs/apparmor.md#the-parser-in-the-name); `spoke profile render --json` on the node says it.
  return outcome(r, formatAppArmorConstraint, `baseline ${baselineFile}`);
}

export async function run(argv: string[]): Promise<number> {
  const { values, positionals, help } = parseCommand(
    argv,
    { kind: { type: 'string' }, baseline: { type: 'string' }, base: { type: 'string' }, explain: { type: 'boolean' }, json: { type: 'boolean' } },
    HELP,
    [1, 1],
  );
  if (help) return 0;
  const artifactFile = positionals[0]!;
  const artifactBytes = await readInput(artifactFile, 'artifact');
  const kind = kindOf(values.kind, artifactBytes);
  if (kind === 'apparmor' && values.base !== undefined) {
    throw new UsageError('--base is for seccomp: an AppArmor baseProfile can only be RuntimeDefault (KEP-6061)');
  }
  const out =
    kind === 'apparmor'
      ? await mergeAppArmor(artifactFile, artifactBytes, values.baseline ?? defaultAppArmorBaselinePath())
      : await mergeSeccomp(artifactFile, artifactBytes, values.baseline ?? defaultBaselinePath(), values.base);
  if (values.explain) {
    for (const c of out.constrained) writeSafeLine(process.stderr, `constrained: ${c.message}`);
    process.stderr.write(`merge: ${out.constrained.length} constraint(s) on ${artifactFile} (${kind}; ${out.inputs}); effective ${out.digest}\n`);
  }
  if (values.json) {
    // The effective profile is spliced in as its canonical bytes: exact, even for uint64 values.
    const rest = stringify({ constrained: out.constrained.map((c) => ({ message: c.message, ...(c.detail as object) })), kind, digest: out.digest });
    process.stdout.write(`{\n  "effective": ${out.bytes.toString('utf8')},\n${rest.slice(2)}\n`);
  } else {
    process.stdout.write(out.bytes.toString('utf8') + '\n');
  }
  return 0;
}
