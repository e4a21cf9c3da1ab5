// `spoke ps`: which container on this node runs which profile spoke applied (docs/ps.md). The
// runtime (CRI on the upstream socket) says which containers exist and which effective file or
// generated AppArmor profile each one's config names; the store's in-use set says which artifact
// each holds, and the effective-file origins record which reference and base the pod gave. The
// constraint summary is diff(artifact, effective file on disk) attributed to today's node
// baseline and the recorded base (src/profiles/seccomp/diff.ts).

import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { isDigest, type Digest } from '../../core/digest.js';
import { SpokeError, asSpokeError, type ErrorReason } from '../../core/errors.js';
import type { ProfileKind } from '../../core/constants.js';
import { APPARMOR_HOLDER_PREFIX } from '../../cri/inuse-holders.js';
import { namedProfiles, spokeAppArmorSha, spokeEffectiveSha } from '../../cri/runtime-config.js';
import { decodeSeccomp, diff, formatConstraint, formatVerdict, validateBaseline, type Constraint, type SeccompProfile } from '../../profiles/seccomp/index.js';
import { RuntimeCriClient, type Msg } from '../../recorder/cri.js';
import { ProfileStore, type EffectiveBase } from '../../store/store.js';
import { emit, parseCommand } from '../args.js';
import { UsageError } from '../errors.js';
import { nodeConfigOnly } from '../wiring.js';
import { writeSafeLine } from '../../core/text.js';

const HELP = `usage: spoke ps [--config F] [--store DIR] [--json] [--explain CONTAINER]

Lists every container on this node that runs under a profile spoke applied: container id, pod
namespace and name, container name, kind (seccomp or apparmor), the reference as the pod wrote
it, the artifact digest, the effective profile (sha256 and path; for AppArmor the generated
profile name) and what the merge constrained. Containers come from the runtime on the
upstream CRI socket (config: upstream); a removed container is not listed.

  --explain CONTAINER  every case where the container's effective seccomp profile is stricter
                       than the artifact, and which input decided it (node baseline, pod base
                       profile, or a merge rule). CONTAINER is an id or a unique id prefix.

options:
  --config F   node config (default /etc/spoke/config.yaml): upstream, storeDir, seccompRoot,
               baseline
  --store DIR  store directory (overrides the config)
  --json       rows as a JSON array (with --explain: the row, note and constraints[])`;

const STATUS_CONCURRENCY = 8;

export interface PsRow {
  containerId: string;
  podNamespace: string;
  podName: string;
  container: string;
  kind: ProfileKind;
  /** The reference as the pod wrote it; null when the store does not know it (references lists the candidates). */
  reference: string | null;
  references?: string[];
  digest: Digest | null;
  effective: { sha256: string; path?: string; name?: string };
  base: EffectiveBase | null;
  /** seccomp: what the merge made stricter than the artifact, by input; null when it cannot be computed. */
  constrained: { total: number; baseline: number; base: number; inexpressible: number } | null;
  summary: string;
}

type Summary = Omit<Found, 'row'> & Pick<PsRow, 'constrained' | 'summary'>;

interface Found {
  row: PsRow;
  /** For --explain: every case the merge made stricter, attributed when the inputs are known. */
  constraints?: Constraint[];
  note?: string;
  /** Why there are no constraints to explain (an input of the merge is gone). */
  unexplained?: ErrorReason;
}

export async function run(argv: string[]): Promise<number> {
  const { values, help } = parseCommand(argv, { config: { type: 'string' }, store: { type: 'string' }, json: { type: 'boolean' }, explain: { type: 'string' } }, HELP, [0, 0]);
  if (help) return 0;
  if (values.explain !== undefined && !/^[0-9a-f]{4,64}$/.test(values.explain)) throw new UsageError(`--explain takes a container id or a unique id prefix (at least 4 hex characters)\n${HELP}`);
  const config = await nodeConfigOnly(values);
  // A read-only command: the store is not created here (opening it would make its directories).
  if (!existsSync(config.storeDir)) throw new SpokeError('FailedPrecondition', `no profile store at ${config.storeDir}: nothing was pulled with this node config`, { path: config.storeDir }, { reason: 'NOT_PULLED' });
  const baseline = await loadBaseline(config.baseline);
  const client = new RuntimeCriClient(config.upstream);
  let found: Found[];
  try {
    found = await scan(client, new ProfileStore({ root: config.storeDir }), join(config.seccompRoot, 'spoke'), baseline);
  } finally {
    client.close();
  }
  if (values.explain === undefined) {
    const rows = found.map((f) => f.row);
    emit(values.json, rows, () => formatRows(rows));
    return 0;
  }
  return explain(values.explain, found, values.json === true);
}

async function loadBaseline(path: string): Promise<SeccompProfile | undefined> {
  try {
    const p = decodeSeccomp(await readFile(path));
    validateBaseline(p);
    return p;
  } catch {
    // Without a usable baseline the summary cannot be attributed; the rows still list.
    return undefined;
  }
}

async function scan(client: RuntimeCriClient, store: ProfileStore, spokeDir: string, baseline: SeccompProfile | undefined): Promise<Found[]> {
  const [containers, sandboxes] = await Promise.all([client.rt('ListContainers', {}), client.rt('ListPodSandbox', {})]);
  const pods = new Map<string, { name: string; namespace: string }>();
  for (const p of (sandboxes.items as Msg[] | undefined) ?? []) {
    const md = (p.metadata as Msg | undefined) ?? {};
    pods.set(String(p.id), { name: String(md.name ?? ''), namespace: String(md.namespace ?? '') });
  }
  const held = new Map<string, Digest>();
  for (const [d, holders] of (await store.inUseState()).byDigest) for (const h of holders) held.set(h, d);

  const list = (containers.containers as Msg[] | undefined) ?? [];
  const out: Found[][] = new Array<Found[]>(list.length);
  let next = 0;
  const cache = new Map<string, Promise<Summary>>();
  const worker = async (): Promise<void> => {
    for (let i = next++; i < list.length; i = next++) {
      const c = list[i]!;
      const id = String(c.id);
      let status: Msg;
      try {
        status = await client.rt('ContainerStatus', { container_id: id, verbose: true });
      } catch (e) {
        // Removed between the listing and now.
        if (asSpokeError(e).code === 'NotFound') {
          out[i] = [];
          continue;
        }
        throw e;
      }
      let named;
      try {
        named = namedProfiles((status.info as Record<string, string> | undefined)?.info, spokeDir);
      } catch {
        writeSafeLine(process.stderr, `warning: container ${id}: the runtime's verbose status is not JSON; not listed`);
        out[i] = [];
        continue;
      }
      const labels = (c.labels as Record<string, string> | undefined) ?? {};
      const pod = pods.get(String(c.pod_sandbox_id));
      const who = {
        containerId: id,
        podNamespace: pod?.namespace || labels['io.kubernetes.pod.namespace'] || '',
        podName: pod?.name || labels['io.kubernetes.pod.name'] || '',
        container: String((c.metadata as Msg | undefined)?.name ?? labels['io.kubernetes.container.name'] ?? ''),
      };
      const rows: Found[] = [];
      for (const path of named.seccomp) {
        const sha = spokeEffectiveSha(spokeDir, path);
        if (sha === undefined) continue;
        const digest = held.get(`container:${id}`) ?? (await originOf(store, sha));
        const inputs = (await store.effectiveInputs(sha)).filter((x) => x.digest === digest);
        const refs = await referencesOf(store, digest, inputs.map((x) => x.reference));
        const base = inputs.find((x) => x.base !== undefined)?.base ?? null;
        const key = `${sha}|${digest ?? ''}|${JSON.stringify(base)}`;
        let summary = cache.get(key);
        if (!summary) cache.set(key, (summary = summarise(store, digest, path, base, baseline)));
        const s = await summary;
        rows.push({
          ...(s.constraints ? { constraints: s.constraints } : {}),
          ...(s.note ? { note: s.note } : {}),
          ...(s.unexplained ? { unexplained: s.unexplained } : {}),
          row: { ...who, kind: 'seccomp', ...refs, digest: digest ?? null, effective: { sha256: sha, path }, base, constrained: s.constrained, summary: s.summary },
        });
      }
      for (const name of named.appArmor) {
        const sha = spokeAppArmorSha(name);
        if (sha === undefined) continue;
        const digest = held.get(`${APPARMOR_HOLDER_PREFIX}${name}@container:${id}`) ?? (await originOf(store, sha));
        const refs = await referencesOf(store, digest, []);
        rows.push({ row: { ...who, kind: 'apparmor', ...refs, digest: digest ?? null, effective: { sha256: sha, name }, base: null, constrained: null, summary: 'node AppArmor baseline ∩ artifact' } });
      }
      out[i] = rows;
    }
  };
  await Promise.all(Array.from({ length: Math.min(STATUS_CONCURRENCY, list.length) }, worker));
  return out.flat().sort((a, b) => `${a.row.podNamespace}/${a.row.podName}/${a.row.container}/${a.row.kind}`.localeCompare(`${b.row.podNamespace}/${b.row.podName}/${b.row.container}/${b.row.kind}`));
}

/** The artifact an effective file was merged from: one still stored, else the first recorded. */
async function originOf(store: ProfileStore, sha: string): Promise<Digest | undefined> {
  const digests = await store.effectiveDigests(sha);
  for (const d of digests) if (await store.has(d)) return d;
  return digests[0];
}

/** The pod's reference: the one recorded with the merge, else the store's only reference for the digest. */
async function referencesOf(store: ProfileStore, digest: Digest | undefined, recorded: string[]): Promise<Pick<PsRow, 'reference' | 'references'>> {
  let candidates = [...new Set(recorded)];
  if (candidates.length === 0 && digest !== undefined) candidates = (await store.getRecord(digest))?.references ?? [];
  if (candidates.length === 1) return { reference: candidates[0]! };
  return { reference: null, ...(candidates.length > 1 ? { references: candidates } : {}) };
}

async function summarise(
  store: ProfileStore,
  digest: Digest | undefined,
  path: string,
  base: EffectiveBase | null,
  baseline: SeccompProfile | undefined,
): Promise<Summary> {
  const none = (why: string, unexplained: ErrorReason) => ({ constrained: null, summary: why, note: why, unexplained });
  if (digest === undefined || !isDigest(digest)) return none('artifact unknown', 'NOT_PULLED');
  let artifact: SeccompProfile;
  let effective: SeccompProfile;
  try {
    artifact = decodeSeccomp((await store.readProfile(digest, { verify: true })).bytes);
  } catch {
    return none('artifact no longer in the store', 'NOT_PULLED');
  }
  try {
    effective = decodeSeccomp(await readFile(path));
  } catch {
    return none('effective file missing or unreadable', 'FILE_UNREADABLE');
  }
  let baseProfile: SeccompProfile | undefined;
  let note: string | undefined;
  if (base?.type === 'Localhost') {
    try {
      const bytes = await readFile(base.path);
      if (createHash('sha256').update(bytes).digest('hex') !== base.sha256) note = `base profile ${base.path} changed since the merge; its part is not attributed`;
      else baseProfile = decodeSeccomp(bytes);
    } catch {
      note = `base profile ${base.path} cannot be read; its part is not attributed`;
    }
  }
  if (baseline === undefined) note = 'node baseline unreadable; constraints are not attributed';
  const constraints = diff(artifact, effective, baseline === undefined ? undefined : { baseline, base: baseProfile });
  const count = { total: constraints.length, baseline: 0, base: 0, inexpressible: 0 };
  for (const c of constraints) if (c.by !== undefined) count[c.by]++;
  const parts = (['baseline', 'base', 'inexpressible'] as const).filter((k) => count[k] > 0).map((k) => `${count[k]} ${k === 'inexpressible' ? 'by a merge rule' : `by the ${k}`}`);
  const summary = count.total === 0 ? 'nothing constrained' : `${count.total} constrained${parts.length > 0 ? ` (${parts.join(', ')})` : ''}`;
  return { constrained: count, summary, constraints, ...(note ? { note } : {}) };
}

function formatRows(rows: PsRow[]): string {
  if (rows.length === 0) return '(no container runs under a profile spoke applied)';
  return rows
    .map((r) =>
      [
        `${r.containerId.slice(0, 13)}  ${r.podNamespace}/${r.podName}  ${r.container}  ${r.kind}`,
        `  reference: ${r.reference ?? (r.references ? r.references.join(' | ') : '-')}`,
        `  digest:    ${r.digest ?? '-'}`,
        `  effective: ${r.effective.path ?? r.effective.name} (sha256 ${r.effective.sha256})`,
        ...(r.base ? [`  base:      ${r.base.type === 'Localhost' ? `Localhost ${r.base.path}` : 'RuntimeDefault'}`] : []),
        `  merge:     ${r.summary}`,
      ].join('\n'),
    )
    .join('\n');
}

function explain(query: string, found: Found[], json: boolean): number {
  const matches = found.filter((f) => f.row.kind === 'seccomp' && f.row.containerId.startsWith(query));
  const ids = new Set(matches.map((f) => f.row.containerId));
  if (ids.size > 1) throw new UsageError(`--explain ${query} matches ${ids.size} containers; give more of the id`);
  const f = matches[0];
  if (f === undefined) throw new SpokeError('NotFound', `no container ${query} runs under a seccomp profile spoke applied`, { container: query }, { reason: 'NOT_FOUND' });
  const constraints = f.constraints;
  if (constraints === undefined) throw new SpokeError('FailedPrecondition', `container ${f.row.containerId}: ${f.note ?? 'cannot explain'}`, { container: f.row.containerId }, { reason: f.unexplained ?? 'INVARIANT' });
  emit(json, { ...f.row, note: f.note ?? null, constraints: constraints.map(toJson) }, () => formatExplain(f, constraints));
  return 0;
}

function toJson(c: Constraint): Record<string, unknown> {
  return { ...c, ...('artifact' in c ? { artifact: formatVerdict(c.artifact), effective: formatVerdict(c.effective) } : {}), text: formatConstraint(c) };
}

function formatExplain(f: Found, constraints: Constraint[]): string {
  const r = f.row;
  return [
    `container ${r.containerId} (${r.podNamespace}/${r.podName} ${r.container})`,
    `reference ${r.reference ?? (r.references ? r.references.join(' | ') : '-')}`,
    `digest    ${r.digest}`,
    `effective ${r.effective.path}`,
    `base      ${r.base ? (r.base.type === 'Localhost' ? `Localhost ${r.base.path}` : 'RuntimeDefault') : 'none'}`,
    ...(f.note ? [`note      ${f.note}`] : []),
    constraints.length === 0 ? 'the effective profile allows everything the artifact allows' : `what the artifact allows and the effective profile does not (${constraints.length}):`,
    ...constraints.map((c) => `  ${formatConstraint(c)}`),
  ].join('\n');
}
