import { readFile } from 'node:fs/promises';
import { parseAllDocuments, stringify } from 'yaml';
import { SpokeError } from '../../core/errors.js';
import { mutatePod, type BindingMode } from '../../controller/binding.js';
import { applyJsonPatch } from '../../controller/jsonpatch.js';
import { BINDING_KIND, API_VERSION, type Pod, type ProfileBinding } from '../../controller/types.js';
import { describeProblems, validateBinding } from '../../controller/validate.js';
import { parseCommand } from '../args.js';
import { UsageError } from '../errors.js';

const HELP = `usage: spoke binding apply -f BINDINGS.yaml [-f MORE.yaml] POD.yaml [options]
       spoke binding validate -f BINDINGS.yaml [-f MORE.yaml]

apply: runs the ProfileBinding webhook's mutation offline, with the same code, on one Pod
(POD.yaml, or - for stdin). Prints the mutated pod on stdout (YAML; JSON with --json; the
RFC 6902 JSON Patch the webhook would return with --patch) and the admission warnings on
stderr, one "Warning: ..." line each, exactly as the webhook would answer.
Bindings are those of the pod's namespace (metadata.namespace, else --namespace, else
"default"); a binding without a namespace is taken to be in the pod's namespace.

Exit status 1 where the cluster would refuse:
  InvalidArgument: ...   a binding the validating webhook would reject (names it and why)
  PermissionDenied: ...  a pod the mutating webhook would deny: two bindings of equal
                         specificity (names both), a privileged container selected, or a
                         pre-set Unconfined profile without override: true
validate: checks the bindings only (the validating webhook's answer); exit 1 if any is invalid.

options:
  -f, --filename F   ProfileBinding documents (YAML or JSON, multi-document, or a List)
  --namespace N      namespace of the pod when it names none (default "default")
  --annotations      annotations mode: the shim's per-container annotations instead of the
                     KEP API field (as spoke controller --annotations)
  --patch            print the JSON Patch instead of the mutated pod
  --json             print JSON instead of YAML`;

const FLAGS = {
  filename: { type: 'string', short: 'f', multiple: true },
  namespace: { type: 'string' },
  annotations: { type: 'boolean' },
  patch: { type: 'boolean' },
  json: { type: 'boolean' },
} as const;

async function readText(file: string): Promise<string> {
  if (file === '-') {
    const chunks: Buffer[] = [];
    for await (const c of process.stdin) chunks.push(c as Buffer);
    return Buffer.concat(chunks).toString('utf8');
  }
  return readFile(file, 'utf8').catch((e: NodeJS.ErrnoException) => {
    throw new UsageError(`cannot read ${file}: ${e.code ?? e.message}`);
  });
}

/** All documents of a YAML/JSON file; syntax errors point at the line. */
function parseDocs(text: string, file: string): unknown[] {
  const out: unknown[] = [];
  for (const doc of parseAllDocuments(text, { uniqueKeys: true, prettyErrors: true })) {
    const err = doc.errors[0];
    if (err) {
      const line = err.linePos?.[0]?.line;
      throw new SpokeError('InvalidArgument', `${file}${line ? `:${line}` : ''}: ${err.message.split('\n')[0]}`, { file, line });
    }
    const v = doc.toJS({ maxAliasCount: 100 }) as unknown;
    if (v !== null && v !== undefined) out.push(v);
  }
  return out;
}

export async function loadBindings(files: string[], namespace: string): Promise<ProfileBinding[]> {
  const out: ProfileBinding[] = [];
  for (const file of files) {
    for (const doc of parseDocs(await readText(file), file)) {
      const d = doc as { kind?: unknown; apiVersion?: unknown; items?: unknown };
      const items = d.kind === 'List' || (typeof d.kind === 'string' && d.kind.endsWith('List') && Array.isArray(d.items)) ? (d.items as unknown[]) : [doc];
      for (const item of items) {
        const b = item as ProfileBinding;
        if (b?.kind !== BINDING_KIND || b.apiVersion !== API_VERSION) {
          throw new SpokeError('InvalidArgument', `${file}: expected apiVersion ${API_VERSION} kind ${BINDING_KIND}, got ${JSON.stringify(b?.apiVersion)} ${JSON.stringify(b?.kind)}`);
        }
        if (b.metadata && typeof b.metadata === 'object' && !b.metadata.namespace) b.metadata.namespace = namespace;
        out.push(b);
      }
    }
  }
  return out;
}

function validateAll(bindings: ProfileBinding[]): void {
  const bad = bindings.map((b) => validateBinding(b)).filter((v) => !v.ok);
  if (bad.length > 0) throw new SpokeError('InvalidArgument', bad.map((v) => describeProblems(v as { name: string; problems: string[] })).join('; '));
}

export async function run(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === undefined || sub === '--help' || sub === '-h') {
    process.stdout.write(HELP + '\n');
    return sub === undefined ? 2 : 0;
  }
  if (sub !== 'apply' && sub !== 'validate') throw new UsageError(`unknown subcommand ${JSON.stringify(sub)}\n${HELP}`);
  const { values, positionals, help } = parseCommand(rest, FLAGS, HELP, sub === 'apply' ? [1, 1] : [0, 0]);
  if (help) return 0;
  const files = values.filename ?? [];
  if (files.length === 0) throw new UsageError(`-f BINDINGS.yaml is required\n${HELP}`);

  if (sub === 'validate') {
    const bindings = await loadBindings(files, values.namespace ?? 'default');
    validateAll(bindings);
    process.stdout.write(`${bindings.length} binding(s) valid\n`);
    return 0;
  }

  const podFile = positionals[0] as string;
  const podDocs = parseDocs(await readText(podFile), podFile);
  if (podDocs.length !== 1) throw new SpokeError('InvalidArgument', `${podFile}: expected exactly one Pod document, found ${podDocs.length}`);
  const pod = podDocs[0] as Pod;
  if (pod?.kind !== 'Pod' || (pod.apiVersion ?? 'v1') !== 'v1') throw new SpokeError('InvalidArgument', `${podFile}: expected apiVersion v1 kind Pod, got ${JSON.stringify(pod?.kind)}`);
  const namespace = pod.metadata?.namespace || values.namespace || 'default';
  const bindings = await loadBindings(files, namespace);
  validateAll(bindings);
  const mode: BindingMode = values.annotations ? 'annotations' : 'field';
  const result = mutatePod(pod, bindings.filter((b) => b.metadata.namespace === namespace), { mode });
  if ('denied' in result) throw new SpokeError('PermissionDenied', result.denied);
  for (const w of result.warnings) process.stderr.write(`Warning: ${w}\n`);
  if (values.patch) {
    process.stdout.write(JSON.stringify(result.patch, null, values.json ? 2 : undefined) + '\n');
    return 0;
  }
  const mutated = applyJsonPatch(pod, result.patch);
  process.stdout.write(values.json ? JSON.stringify(mutated, null, 2) + '\n' : stringify(mutated));
  return 0;
}
