import { formatPlatform } from '../../core/artifact.js';
import { isDigest, type Digest } from '../../core/digest.js';
import { ProfileStore } from '../../store/store.js';
import { emit, parseCommand } from '../args.js';
import { parseDuration } from '../../core/duration.js';
import { EXIT_FAILED, UsageError } from '../errors.js';
import { nodeConfigOnly, nodeFlags } from '../wiring.js';

const HELP = `usage: spoke store <ls|rm|gc|verify|unpin|forget> [options]

  ls                 list stored artifacts: digest, kind, size, references, rule, signer, in use by;
                     for a multi-architecture index, also the manifest taken for this node's
                     platform (JSON: platform {digest, os, architecture, variant, manifest})
  rm DIGEST          remove an artifact (refused while a container, sandbox or pin uses it)
  gc [--dry-run] [--min-age DURATION]
                     remove every artifact nothing uses (and pulled longer ago than DURATION,
                     e.g. 1h, 30m; default 0), then unreferenced blobs and stale temp files
  verify             re-hash every stored blob; exit 1 if any is corrupt
  unpin DIGEST       release a pin made by 'spoke pull --pin'
  forget DIGEST      clear the verdicts on an artifact digest: its cached "invalid" verdict and
                     its signature verdicts; the next pull fetches, judges and verifies it again

options:
  --store DIR        store directory (default from the node config, /var/lib/spoke)
  --config F         node config (default /etc/spoke/config.yaml)
  --json             machine-readable output`;

function minAgeArg(s: string): number {
  const ms = parseDuration(s);
  if (ms === undefined) throw new UsageError(`--min-age must look like 30m, 1h or 2d, got ${JSON.stringify(s)}`);
  return ms;
}

function digestArg(s: string | undefined): Digest {
  if (!s || !isDigest(s)) throw new UsageError(`expected a digest sha256:<64 hex>, got ${JSON.stringify(s ?? '')}`);
  return s;
}

export async function run(argv: string[]): Promise<number> {
  const { values, positionals, help } = parseCommand(
    argv,
    { json: { type: 'boolean' }, 'dry-run': { type: 'boolean' }, 'min-age': { type: 'string' }, config: nodeFlags.config, store: nodeFlags.store },
    HELP,
    [1, 2],
  );
  if (help) return 0;
  const config = await nodeConfigOnly(values);
  const store = new ProfileStore({ root: config.storeDir });
  const [sub, arg] = positionals;
  switch (sub) {
    case 'ls': {
      const entries = await store.list();
      emit(values.json, entries, () =>
        entries.length === 0
          ? '(store is empty)'
          : entries
              .map((e) => {
                const signer = Object.values(e.verdicts).at(-1);
                return [
                  `${e.digest}  ${e.kind}  ${e.size} B  pulled ${e.pulledAt}`,
                  ...(e.platform ? [`  index; ${formatPlatform(e.platform)} manifest: ${e.platform.digest}`] : []),
                  `  references: ${e.references.join(', ')}`,
                  `  rule: ${e.rule}${signer ? `  signer: ${signer.signer} (${signer.format}${signer.identity ? `, ${signer.identity}` : ''})` : ''}`,
                  `  in use by: ${e.inUse.length ? e.inUse.join(', ') : '-'}`,
                ].join('\n');
              })
              .join('\n'),
      );
      return 0;
    }
    case 'rm': {
      const d = digestArg(arg);
      await store.remove(d);
      emit(values.json, { removed: d }, () => `removed ${d}`);
      return 0;
    }
    case 'unpin': {
      const d = digestArg(arg);
      await store.release(`pin:${d}`);
      emit(values.json, { unpinned: d }, () => `unpinned ${d}`);
      return 0;
    }
    case 'forget': {
      const d = digestArg(arg);
      const r = await store.forget(d);
      emit(values.json, { digest: d, ...r }, () =>
        r.invalid || r.signatures > 0
          ? `forgot ${[r.invalid ? 'the invalid verdict' : '', r.signatures > 0 ? `${r.signatures} signature verdict(s)` : ''].filter(Boolean).join(' and ')} on ${d}`
          : `no verdicts on ${d}`,
      );
      return 0;
    }
    case 'gc': {
      const minAgeMs = values['min-age'] ? minAgeArg(values['min-age']) : 0;
      const r = await store.gc({ dryRun: values['dry-run'], minAgeMs });
      const incomplete = r.inUseComplete ? [] : ['the in-use set was unreadable and the shim has not rebuilt it yet: nothing removed'];
      emit(values.json, r, () => [...r.removed.map((d) => `${values['dry-run'] ? 'would remove' : 'removed'} ${d}`), ...incomplete, `kept ${r.kept.length}`].join('\n'));
      return 0;
    }
    case 'verify': {
      const r = await store.verify();
      emit(values.json, r, () => [...r.corrupt.map((c) => `CORRUPT ${c.digest}: ${c.reason}`), `${r.ok.length} ok, ${r.corrupt.length} corrupt`].join('\n'));
      return r.corrupt.length > 0 ? EXIT_FAILED : 0;
    }
    default:
      throw new UsageError(`unknown store subcommand ${JSON.stringify(sub)}\n${HELP}`);
  }
}
