import { asSpokeError } from '../../core/errors.js';
import type { PullResult } from '../../pull.js';
import { emit, parseCommand, parseKind } from '../args.js';
import { errorLine, EXIT_FAILED, UsageError } from '../errors.js';
import { readInputFile } from '../read-file.js';
import { progress } from '../progress.js';
import { nodeFlags, openNode } from '../wiring.js';

/** `-f FILE`: one reference a line; far more than a node pulls at once. */
const MAX_REFERENCE_LIST_BYTES = 1024 * 1024;

const HELP = `usage: spoke pull REF... --kind seccomp|apparmor [options]

Pulls profile artifacts into the node's store through the same pipeline the CRI shim uses:
digest-pinned reference → node policy (deny by default, decided before any network request) →
store (a cached artifact makes no registry request) → manifest and blob (hashed, size-capped,
mirrors first) → signature (when the matching rule says signedBy) → profile validation →
atomic store write. Plain HTTP is used only for registries in the policy's insecure list.

options:
  --kind K           seccomp or apparmor (required)
  -f, --file F       read references from F, one per line (# comments), in addition to REFs
  --pin              keep the pulled artifacts in the store until unpinned (gc never removes them)
  --namespace N      namespace to decide namespace-scoped policy rules for
  --config F         node config (default /etc/spoke/config.yaml; flags below override it)
  --policy F         node policy file (default from config, /etc/spoke/policy.yaml)
  --store DIR        store directory (default from config, /var/lib/spoke)
  --auth-file F      registry credentials (docker config.json format)
  --ca-file F        CA bundle (PEM) trusted for registries and mirrors in addition to Node's
                     built-in roots (default from config: caFile)
  --json             print the results as a JSON array of
                     {reference, digest, resolvedRef, cached, path, rule, signer?} (failures as
                     {reference, error, code, reason})`;

export async function run(argv: string[]): Promise<number> {
  const { values, positionals, help } = parseCommand(
    argv,
    { kind: { type: 'string' }, file: { type: 'string', short: 'f' }, pin: { type: 'boolean' }, namespace: { type: 'string' }, json: { type: 'boolean' }, ...nodeFlags },
    HELP,
    [0, 1000],
  );
  if (help) return 0;
  const kind = parseKind(values.kind);
  const refs = [...positionals];
  if (values.file) {
    const text = readInputFile(values.file, 'reference list', MAX_REFERENCE_LIST_BYTES).toString('utf8');
    for (const line of text.split('\n')) {
      const t = line.replace(/#.*$/, '').trim();
      if (t) refs.push(t);
    }
  }
  if (refs.length === 0) throw new UsageError(`no reference given\n${HELP}`);
  const node = await openNode(values);
  const results: (PullResult | { reference: string; error: string; code: string; reason: string })[] = [];
  let failed = 0;
  try {
    for (const reference of refs) {
      const p = progress(`pulling ${reference}`);
      try {
        const r = await node.pipeline.pull({ reference, kind, namespace: values.namespace });
        if (values.pin) await node.store.markInUse(r.digest, `pin:${r.digest}`);
        results.push(r);
      } catch (e) {
        failed++;
        const err = asSpokeError(e);
        results.push({ reference, error: err.toLine(), code: err.code, reason: err.reason });
        // One line per failure on stderr, starting with its class.
        process.stderr.write(errorLine(err) + '\n');
      } finally {
        p.done();
      }
    }
  } finally {
    await node.close();
  }
  const ok = results.filter((r): r is PullResult => 'digest' in r);
  if (values.json) emit(true, results, () => '');
  else if (ok.length > 0) emit(false, null, () => ok.map((r) => `${r.cached ? 'cached' : 'pulled'} ${r.resolvedRef} → ${r.path} (rule ${r.rule}${r.signer ? `, signed by ${r.signer.signer}` : ''})`).join('\n'));
  return failed > 0 ? EXIT_FAILED : 0;
}
