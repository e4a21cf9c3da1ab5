import { parseAllDocuments, stringify } from 'yaml';
import { SpokeError } from '../../core/errors.js';
import { enforceLevel, mutatePod, POD_SECURITY_LEVELS, type BindingMode } from '../../controller/binding.js';
import { applyJsonPatch } from '../../controller/jsonpatch.js';
import { BINDING_KIND, API_VERSION, type Pod, type ProfileBinding } from '../../controller/types.js';
import { describeProblems, validateBinding } from '../../controller/validate.js';
import { parseCommand } from '../args.js';
import { UsageError } from '../errors.js';
import { readInputFile } from '../read-file.js';
import { terminalSafeJson, writeSafeLine } from '../../core/text.js';

const HELP = `usage: spoke binding apply -f BINDINGS.yaml [-f MORE.yaml] POD.yaml [options]
       spoke binding validate -f BINDINGS.yaml [-f MORE.yaml]

apply: runs the ProfileBinding webhook's mutation offline, with the same code, on one Pod
(POD.yaml, or - for stdin), and prints exactly what the webhook would answer: the mutated pod
on stdout (YAML; JSON with --json; the RFC 6902 JSON Patch the webhook would return with
--patch) and the admission warnings on stderr, one "Warning: ..." line each, exit status 0.
A binding only binds: a container it cannot bind is admitted untouched with a warning, as
the webhook does (Unconfined without override: true; privileged: KEP-6061 gives it no OCI
profile; a Windows pod, spec.os.name windows: the API server refuses profiles on it). Bindings are those of the pod's namespace (metadata.namespace, else --namespace,
else "default"); a binding without a namespace is taken to be in the pod's namespace.
The -f files may also hold Namespace objects (kubectl get ns NAME -o yaml): the pod's
namespace label pod-security.kubernetes.io/enforce decides, as in the webhook, whether the
KEP field can be written (restricted rejects type OCI in alpha: annotations instead).
Without one the namespace is taken as unlabelled (--pod-security-default applies).

Exit status 1 only where the cluster would refuse (the admin's configuration errors):
  InvalidArgument: ...   a binding the validating webhook would reject (names it and why)
  PermissionDenied: ...  two bindings of equal specificity select a container (names both)
validate: checks the bindings only (the validating webhook's answer); exit 1 if any is invalid.

options:
  -f, --filename F   ProfileBinding (and Namespace) documents (YAML or JSON, multi-document,
                     or a List)
  --namespace N      namespace of the pod when it names none (default "default")
  --annotations      annotations mode: the shim's per-container annotations instead of the
                     KEP API field (as spoke controller --annotations)
  --pod-security-default LEVEL
                     enforce level of a namespace without the label (as spoke controller;
                     default privileged)
  --patch            print the JSON Patch instead of the mutated pod
  --json             print JSON instead of YAML`;

const FLAGS = {
  filename: { type: 'string', short: 'f', multiple: true },
  namespace: { type: 'string' },
  annotations: { type: 'boolean' },
  'pod-security-default': { type: 'string' },
  patch: { type: 'boolean' },
  json: { type: 'boolean' },
} as const;

/** Binding and pod files, `-` for stdin: at most MAX_BINDING_FILE_BYTES each. */
async function readText(file: string): Promise<string> {
  if (file !== '-') return readInputFile(file, 'file', MAX_BINDING_FILE_BYTES).toString('utf8');
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const c of process.stdin) {
    total += (c as Buffer).length;
    if (total > MAX_BINDING_FILE_BYTES) throw new SpokeError('InvalidArgument', `stdin is larger than ${MAX_BINDING_FILE_BYTES} bytes`, { limit: MAX_BINDING_FILE_BYTES }, { reason: 'SIZE_LIMIT' });
    chunks.push(c as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** A ProfileBinding list or a pod, as a file: far more than the API server takes in one object. */
const MAX_BINDING_FILE_BYTES = 16 * 1024 * 1024;

/**
 * All documents of a YAML/JSON file; syntax errors point at the line. Read as YAML 1.1, as kubectl
 * reads what it sends the API server (`yes` is true, `<<` merges a mapping): the answer printed
 * must be the webhook's for the same objects.
 */
function parseDocs(text: string, file: string): unknown[] {
  const out: unknown[] = [];
  for (const doc of parseAllDocuments(text, { version: '1.1', uniqueKeys: true, prettyErrors: true })) {
    const err = doc.errors[0];
    if (err) {
      const line = err.linePos?.[0]?.line;
      throw new SpokeError('InvalidArgument', `${file}${line ? `:${line}` : ''}: ${err.message.split('\n')[0]}`, { file, line }, { reason: 'OBJECT_INVALID' });
    }
    const v = doc.toJS({ maxAliasCount: 100 }) as unknown;
    if (v !== null && v !== undefined) out.push(v);
  }
  return out;
}

interface Loaded {
  bindings: ProfileBinding[];
  /** Labels of the Namespace objects found, by name. */
  namespaces: Record<string, Record<string, string>>;
}

export async function loadBindings(files: string[], namespace: string): Promise<Loaded> {
  const out: Loaded = { bindings: [], namespaces: {} };
  for (const file of files) {
    for (const doc of parseDocs(await readText(file), file)) {
      const d = doc as { kind?: unknown; apiVersion?: unknown; items?: unknown };
      const items = d.kind === 'List' || (typeof d.kind === 'string' && d.kind.endsWith('List') && Array.isArray(d.items)) ? (d.items as unknown[]) : [doc];
      for (const item of items) {
        const ns = item as { kind?: unknown; apiVersion?: unknown; metadata?: { name?: unknown; labels?: unknown } };
        if (ns?.kind === 'Namespace' && ns.apiVersion === 'v1' && typeof ns.metadata?.name === 'string') {
          out.namespaces[ns.metadata.name] = namespaceLabels(ns.metadata.labels, file);
          continue;
        }
        const b = item as ProfileBinding;
        if (b?.kind !== BINDING_KIND || b.apiVersion !== API_VERSION) {
          throw new SpokeError('InvalidArgument', `${file}: expected apiVersion ${API_VERSION} kind ${BINDING_KIND} (or v1 Namespace), got ${JSON.stringify(b?.apiVersion)} ${JSON.stringify(b?.kind)}`, { file }, { reason: 'OBJECT_INVALID' });
        }
        if (b.metadata && typeof b.metadata === 'object' && !b.metadata.namespace) b.metadata.namespace = namespace;
        out.bindings.push(b);
      }
    }
  }
  return out;
}

function namespaceLabels(labels: unknown, file: string): Record<string, string> {
  if (labels === undefined || labels === null) return {};
  if (typeof labels !== 'object' || Array.isArray(labels) || Object.values(labels).some((v) => typeof v !== 'string')) {
    throw new SpokeError('InvalidArgument', `${file}: a Namespace's metadata.labels must map strings to strings`, { file }, { reason: 'OBJECT_INVALID' });
  }
  return labels as Record<string, string>;
}

function validateAll(bindings: ProfileBinding[]): void {
  const bad = bindings.map((b) => validateBinding(b)).filter((v) => !v.ok);
  if (bad.length > 0) throw new SpokeError('InvalidArgument', bad.map((v) => describeProblems(v as { name: string; problems: string[] })).join('; '), {}, { reason: 'OBJECT_INVALID' });
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
    const { bindings } = await loadBindings(files, values.namespace ?? 'default');
    validateAll(bindings);
    process.stdout.write(`${bindings.length} binding(s) valid\n`);
    return 0;
  }

  const podFile = positionals[0] as string;
  const podDocs = parseDocs(await readText(podFile), podFile);
  if (podDocs.length !== 1) throw new SpokeError('InvalidArgument', `${podFile}: expected exactly one Pod document, found ${podDocs.length}`, { file: podFile }, { reason: 'OBJECT_INVALID' });
  const pod = podDocs[0] as Pod;
  if (pod?.kind !== 'Pod' || (pod.apiVersion ?? 'v1') !== 'v1') throw new SpokeError('InvalidArgument', `${podFile}: expected apiVersion v1 kind Pod, got ${JSON.stringify(pod?.kind)}`, { file: podFile }, { reason: 'OBJECT_INVALID' });
  const namespace = pod.metadata?.namespace || values.namespace || 'default';
  const { bindings, namespaces } = await loadBindings(files, namespace);
  validateAll(bindings);
  const mode: BindingMode = values.annotations ? 'annotations' : 'field';
  const level = values['pod-security-default'];
  if (level !== undefined && !POD_SECURITY_LEVELS.includes(level)) throw new UsageError(`--pod-security-default must be one of ${POD_SECURITY_LEVELS.join(', ')}`);
  const podSecurity = enforceLevel(namespaces[namespace], values['pod-security-default']);
  const result = mutatePod(pod, bindings.filter((b) => b.metadata.namespace === namespace), { mode, podSecurity });
  if ('denied' in result) throw new SpokeError('PermissionDenied', result.denied, {}, { reason: result.limit ? 'LIMIT_EXCEEDED' : 'BINDING_CONFLICT' });
  for (const w of result.warnings) writeSafeLine(process.stderr, `Warning: ${w}`);
  if (values.patch) {
    process.stdout.write(terminalSafeJson(result.patch, values.json ? 2 : undefined) + '\n');
    return 0;
  }
  const mutated = applyJsonPatch(pod, result.patch);
  process.stdout.write(values.json ? terminalSafeJson(mutated, 2) + '\n' : stringify(mutated));
  return 0;
}
