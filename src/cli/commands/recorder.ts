// spoke recorder: the node side of ProfileRecording (issue 8). Watches the node's CRI runtime for
// containers of pods annotated `recording.spoke.dev/name: <recording>`, records their syscalls
// with the backend `spoke record` would use (eBPF counts in the kernel, or the audit-record
// session with the printk limit lifted while it runs), and when a container exits reports one
// ProfileRecordingResult, owned by the recording.
//
// Also here: the controller-side wiring of the recording reconciler (flags and start-up), for
// `spoke controller` to call — cli/ is the only place that may build a registry client.

import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { KubeConfig } from '@kubernetes/client-node';
import { SpokeError } from '../../core/errors.js';
import { childName, DEFAULT_PROOF_TTL_SECONDS, POD_RECORDING_ANNOTATION, type ProfileRecording, type ProfileRecordingResult } from '../../controller/recording.js';
import { readRecordingKey } from '../../cri/recording.js';
import type { RecordingController } from '../../controller/recording-kube.js';
import { selectorMatches } from '../../controller/selector.js';
import type { ProfileBinding } from '../../controller/types.js';
import type { OciRuntime } from '../../profiles/seccomp/index.js';
import { pidFromVerboseInfo, RuntimeCriClient } from '../../recorder/cri.js';
import { RecordingSession } from '../../recorder/session.js';
import { BpfCounter, callsOfContainer, DEFAULT_MAP_KEYS, namesOf, namespaceOf, type MountNamespace, type PodNamespaces } from '../../recorder/bpf.js';
import { describeBackends, type RecordingBackend } from '../../recorder/backend.js';
import { backendFlag } from './record.js';
import { parseCommand } from '../args.js';
import { UsageError } from '../errors.js';
import { publisherRegistry } from '../wiring.js';

const HELP = `usage: spoke recorder --upstream SOCK --node NAME [--kubeconfig F] [--backend bpf|audit] [--oci-runtime R] [--poll-ms N]

The node half of ProfileRecording. Containers of pods annotated
recording.spoke.dev/name=<recording> (the binding webhook sets it on pods a recording selects;
in annotation mode the shim runs them under the logging profile, SCMP_ACT_LOG) are recorded
with the backend of \`spoke record\` (see its --help): bpf counts every process's calls in the
kernel, keyed by the pod's IPC and the container's mount namespace; audit reads the kernel's
seccomp audit records (audit.log when auditd runs, else /dev/kmsg with the printk rate limit
lifted while recording and restored on exit). When such a container exits, one
ProfileRecordingResult (its syscall names, node, image, runtime) is created in the pod's
namespace, owned by the recording; lostRecords > 0 in it (records lost or not attributable, or
a container whose namespace could not be told apart) makes the controller fail the recording
as incomplete. The controller builds the profile when the recording is annotated
recording.spoke.dev/finalize=<value>. Containers created before the recorder started are not
reported (their start-up calls were missed). Needs root; one per node (DaemonSet),
ServiceAccount with ClusterRole spoke-recorder.

options:
  --upstream SOCK     the CRI runtime socket (containerd, CRI-O)
  --node NAME         this node's name (reported in results; default $NODE_NAME)
  --kubeconfig F      kubeconfig file (default: in-cluster service account, then $KUBECONFIG)
  --backend bpf|audit recording backend (default: bpf where this node can run it, else audit)
  --oci-runtime R     runc or crun for pods whose runtime handler does not name crun (default runc)
  --poll-ms N         how often CRI is asked about containers (default 1000)`;

const FLAGS = {
  upstream: { type: 'string' },
  node: { type: 'string' },
  kubeconfig: { type: 'string' },
  'oci-runtime': { type: 'string' },
  'poll-ms': { type: 'string' },
  backend: { type: 'string' },
} as const;

function log(event: Record<string, unknown>): void {
  process.stderr.write(JSON.stringify({ time: new Date().toISOString(), component: 'recorder', ...event }) + '\n');
}

interface Sandbox {
  id: string;
  metadata?: { name?: string; namespace?: string };
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  runtime_handler?: string;
}
interface Ctr {
  id: string;
  metadata?: { name?: string };
  image?: { image?: string; user_specified_image?: string };
  image_ref?: string;
  state?: string;
  created_at?: string;
}

/** Remembers at most `max` keys, oldest forgotten first. */
class BoundedSet {
  private readonly s = new Set<string>();
  constructor(private readonly max: number) {}
  has(k: string): boolean {
    return this.s.has(k);
  }
  add(k: string): void {
    if (this.s.size >= this.max) this.s.delete(this.s.values().next().value as string);
    this.s.add(k);
  }
}

/** What one container called, as either backend sees it. */
interface Recorded {
  syscalls: Set<string>;
  unnamed: string[];
  /** Records lost or not attributable since the container was created (> 0 fails the recording). */
  lost: number;
  /** Why the calls may be incomplete, when lost > 0. */
  incomplete?: string;
}

/** The recorder's view of calls, per backend. */
interface CallSource {
  readonly source: string;
  readonly failure: Error | undefined;
  /** Called on every poll for each recorded container (running: whether it runs now). */
  seen(sandboxId: string, containerId: string, running: boolean): Promise<void>;
  /** createdNs: the container's created_at (ns since the epoch). */
  of(sandboxId: string, containerId: string, createdNs: bigint): Promise<Recorded>;
  forget(containerId: string): void;
  /** Between polls: housekeeping (the eBPF maps are emptied when nothing is being recorded). */
  maintain(): Promise<void>;
  close(): void;
}

function auditCalls(): CallSource {
  const session = RecordingSession.start({ logger: { log: (level, msg, fields) => log({ level, msg, ...fields }) } });
  // Losses so far, sampled every poll: a container's share is everything since the last sample
  // before it was created (its short-lived children may be gone before the first poll sees it).
  const history: { atNs: bigint; unattributed: number; lost: number }[] = [{ atNs: 0n, unattributed: 0, lost: 0 }];
  return {
    source: session.source.path,
    failure: undefined,
    seen: async () => undefined,
    of: async (_sb, id, createdNs) => {
      const base = history.findLast((h) => h.atNs <= createdNs) ?? history[0]!;
      const unattributed = session.recorder.stats.unattributedLogged - base.unattributed;
      const lost = session.lost() - base.lost;
      const why = [...(lost > 0 ? [`${lost} audit record(s) lost`] : []), ...(unattributed > 0 ? [`${unattributed} logged call(s) on the node could not be tied to a container`] : [])];
      return {
        syscalls: session.recorder.syscalls(id),
        unnamed: session.recorder.unnamedCalls(id),
        lost: lost + unattributed,
        ...(why.length > 0 ? { incomplete: `since it was created: ${why.join(', ')}` } : {}),
      };
    },
    forget: (id) => session.recorder.forget(id),
    maintain: async () => {
      history.push({ atNs: BigInt(Date.now()) * 1_000_000n, unattributed: session.recorder.stats.unattributedLogged, lost: session.lost() });
      // Keeps the first (daemon start) entry; older samples only serve containers created earlier.
      if (history.length > 4096) history.splice(1, history.length - 4096);
    },
    close: () => session.close(),
  };
}

/**
 * eBPF: one bpftrace counting every namespace, dumped every poll. A pod is known by its
 * sandbox's IPC namespace (read from the sandbox pid), a container by the init pid seen while
 * it ran (see callsOfContainer). The kernel maps only grow, so they are emptied (bpftrace
 * restarted) when no recorded container is running and they are more than half full.
 */
async function bpfCalls(cri: RuntimeCriClient, pollMs: number): Promise<CallSource> {
  let startedNs = 0n;
  const start = async () => {
    startedNs = BigInt(Date.now()) * 1_000_000n;
    return BpfCounter.start({ dumpEveryMs: pollMs, mapKeys: DEFAULT_MAP_KEYS });
  };
  let counter = await start();
  const pods = new Map<string, PodNamespaces>();
  const pids = new Map<string, number>();
  const assigned = new Map<string, MountNamespace[]>();
  const active = new Set<string>();
  let failure: Error | undefined;
  const pidOf = async (req: 'PodSandboxStatus' | 'ContainerStatus', field: string, id: string) => pidFromVerboseInfo(await cri.rt(req, { [field]: id, verbose: true }));
  const source: CallSource = {
    source: 'bpftrace',
    get failure() {
      return failure;
    },
    seen: async (sb, id, running) => {
      active.add(id);
      if (!pods.has(sb)) {
        const pause = await pidOf('PodSandboxStatus', 'pod_sandbox_id', sb);
        if (pause !== undefined) pods.set(sb, { ipc: namespaceOf(pause, 'ipc'), pauseMnt: namespaceOf(pause, 'mnt') });
      }
      if (running && !pids.has(id)) {
        const pid = await pidOf('ContainerStatus', 'container_id', id);
        if (pid !== undefined) pids.set(id, pid);
      }
    },
    of: async (sb, id, createdNs) => {
      // Its first calls may predate a restart of the counter.
      if (createdNs < startedNs) return { syscalls: new Set(), unnamed: [], lost: 1, incomplete: 'created before the eBPF counter last started' };
      const pod = pods.get(sb);
      if (!pod) return { syscalls: new Set(), unnamed: [], lost: 1, incomplete: 'the pod sandbox pid (its IPC namespace) was never seen' };
      let dump;
      try {
        dump = await counter.nextDump();
      } catch (e) {
        failure = e as Error;
        throw e;
      }
      const found = callsOfContainer(dump, pod, pids.get(id), assigned.get(sb) ?? []);
      if (!found.ok) return { syscalls: new Set(), unnamed: [], lost: 1, incomplete: `the container's mount namespace: ${found.why}` };
      assigned.set(sb, [...(assigned.get(sb) ?? []).slice(-63), found.key]);
      const { names, unnamed } = namesOf(found.counts);
      return { syscalls: names, unnamed, lost: 0 };
    },
    forget: (id) => {
      pids.delete(id);
      active.delete(id);
    },
    maintain: async () => {
      if (pods.size > 1024) pods.clear();
      if (assigned.size > 1024) assigned.clear();
      if (active.size > 0 || counter.latest.counts.length < counter.mapKeys / 2) return;
      try {
        await counter.stop();
        counter = await start();
        assigned.clear();
        log({ msg: 'eBPF maps emptied (bpftrace restarted) while nothing was being recorded' });
      } catch (e) {
        failure = e as Error;
      }
    },
    close: () => counter.close(),
  };
  return source;
}

function startCalls(backend: RecordingBackend, cri: RuntimeCriClient, pollMs: number): Promise<CallSource> {
  return backend === 'bpf' ? bpfCalls(cri, pollMs) : Promise.resolve(auditCalls());
}

export async function run(argv: string[]): Promise<number> {
  const { values, help } = parseCommand(argv, FLAGS, `${HELP}\n\nthis node: ${describeBackends()}`, [0, 0]);
  if (help) return 0;
  if (!values.upstream) throw new UsageError('--upstream is required');
  const node = values.node ?? process.env.NODE_NAME;
  if (!node) throw new UsageError('--node (or $NODE_NAME) is required');
  const defaultRuntime = (values['oci-runtime'] ?? 'runc') as OciRuntime;
  if (defaultRuntime !== 'runc' && defaultRuntime !== 'crun') throw new UsageError('--oci-runtime must be runc or crun');
  const pollMs = values['poll-ms'] === undefined ? 1000 : Number(values['poll-ms']);
  if (!Number.isInteger(pollMs) || pollMs < 50 || pollMs > 60_000) throw new UsageError('--poll-ms must be 50..60000');
  const backend = backendFlag(values.backend);

  const kube = await import('../../controller/kube.js');
  const { KubeResultReporter } = await import('../../controller/recording-kube.js');
  const reporter = new KubeResultReporter(kube.loadKubeConfig(values.kubeconfig));
  const cri = new RuntimeCriClient(values.upstream);
  const calls = await startCalls(backend, cri, pollMs);
  const startedNs = BigInt(Date.now()) * 1_000_000n;
  const exitedAt = new Map<string, number>();
  const done = new BoundedSet(16_384);
  const recordings = new Map<string, { at: number; rec: ProfileRecording | undefined }>();
  let stopping = false;
  const stop = (signal: string) => {
    log({ msg: 'stopping', signal });
    stopping = true;
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
  process.once('exit', () => calls.close());

  const recordingOf = async (ns: string, name: string): Promise<ProfileRecording | undefined> => {
    const k = `${ns}/${name}`;
    const hit = recordings.get(k);
    if (hit && Date.now() - hit.at < 30_000) return hit.rec;
    const rec = await reporter.recording(ns, name);
    if (recordings.size > 1024) recordings.clear();
    recordings.set(k, { at: Date.now(), rec });
    return rec;
  };

  const report = async (sb: Sandbox, c: Ctr, recName: string): Promise<void> => {
    const ns = sb.metadata?.namespace ?? '';
    const container = c.metadata?.name ?? '';
    const rec = await recordingOf(ns, recName);
    const forget = () => {
      calls.forget(c.id);
      exitedAt.delete(c.id);
      done.add(c.id);
    };
    if (!rec) {
      log({ level: 'warning', msg: 'pod names a recording that does not exist', pod: `${ns}/${sb.metadata?.name}`, recording: recName });
      return forget();
    }
    if (!selectorMatches(rec.spec?.podSelector, sb.labels) || (rec.spec?.containers && !rec.spec.containers.includes(container))) return forget();
    let image = c.image?.user_specified_image || '';
    if (!image || image.startsWith('sha256:')) {
      const st = (await cri.rt('ContainerStatus', { container_id: c.id })).status as { image?: { image?: string }; image_ref?: string } | undefined;
      image = [c.image?.user_specified_image, st?.image?.image, st?.image_ref, c.image?.image].find((i) => i && !i.startsWith('sha256:')) ?? '';
    }
    const recorded = await calls.of(sb.id, c.id, BigInt(c.created_at ?? '0'));
    const result: ProfileRecordingResult = {
      metadata: { name: childName(recName, c.id.slice(0, 16)), labels: { 'recording.spoke.dev/name': recName.length <= 63 ? recName : recName.slice(0, 63).replace(/[-.]+$/, '') } },
      spec: {
        recording: recName,
        pod: sb.metadata?.name ?? '',
        container,
        containerID: c.id,
        ...(image ? { image } : {}),
        runtime: (sb.runtime_handler ?? '').includes('crun') ? 'crun' : defaultRuntime,
        node,
        syscalls: [...recorded.syscalls].sort(),
        lostRecords: recorded.lost,
        unnamedCalls: recorded.unnamed.slice(0, 64),
      },
    };
    const outcome = await reporter.report(rec, result);
    log({ msg: 'reported', outcome, result: `${ns}/${result.metadata.name}`, container, syscalls: result.spec.syscalls.length, lostRecords: result.spec.lostRecords, ...(recorded.incomplete ? { incomplete: recorded.incomplete } : {}) });
    forget();
  };

  const tick = async (): Promise<void> => {
    const sandboxes = ((await cri.rt('ListPodSandbox', {})).items ?? []) as Sandbox[];
    for (const sb of sandboxes) {
      const recName = sb.annotations?.[POD_RECORDING_ANNOTATION];
      if (!recName) continue;
      const ctrs = ((await cri.rt('ListContainers', { filter: { pod_sandbox_id: sb.id } })).containers ?? []) as Ctr[];
      for (const c of ctrs) {
        if (done.has(c.id)) continue;
        if (BigInt(c.created_at ?? '0') < startedNs) {
          log({ level: 'warning', msg: 'container started before the recorder; not reported', container: c.id.slice(0, 12), pod: `${sb.metadata?.namespace}/${sb.metadata?.name}` });
          done.add(c.id);
          continue;
        }
        await calls.seen(sb.id, c.id, c.state === 'CONTAINER_RUNNING');
        if (c.state !== 'CONTAINER_EXITED') continue;
        // Let the kernel's last records of the container arrive before reporting.
        const since = exitedAt.get(c.id) ?? Date.now();
        exitedAt.set(c.id, since);
        if (Date.now() - since < 1000) continue;
        try {
          await report(sb, c, recName);
        } catch (e) {
          log({ level: 'error', msg: 'report failed; will retry', container: c.id.slice(0, 12), error: (e as Error).message });
        }
      }
    }
  };

  log({ msg: 'recording', node, backend, source: calls.source });
  try {
    while (!stopping) {
      try {
        await tick();
      } catch (e) {
        log({ level: 'error', msg: 'CRI poll failed', error: (e as Error).message });
      }
      if (calls.failure) {
        log({ level: 'error', msg: 'recording failed; exiting', error: calls.failure.message });
        return 1;
      }
      await calls.maintain();
      await new Promise((r) => setTimeout(r, pollMs));
    }
  } finally {
    calls.close();
    cri.close();
  }
  return 0;
}

// ---- the controller side, for `spoke controller` ----

/** Flags `spoke controller` adds for recordings. */
export const recordingControllerFlags = {
  'recording-repositories': { type: 'string' },
  'signing-keys': { type: 'string' },
  'plain-http': { type: 'boolean' },
  'ca-file': { type: 'string' },
  'auth-file': { type: 'string' },
  'recording-key': { type: 'string' },
  'recording-proof-ttl': { type: 'string' },
} as const;

export const RECORDING_CONTROLLER_HELP = `  --recording-key F   the cluster's recording key (32 to 4096 bytes, a mounted Secret; every
                    node's shim holds the same bytes as recordingKey). The pod webhook signs
                    each recording marking with it (HMAC-SHA256 over namespace, pod, recording,
                    containers, expiry) and results are accepted only from pods it marked.
                    Without it no pod is marked for recording
  --recording-proof-ttl S  seconds a marking lets nodes start the pod's containers under the
                    logging profile (default 3600); later restarts run under the pod's own profile
  --recording-repositories LIST  comma-separated repositories ProfileRecordings may publish to;
                    {namespace} is the recording's namespace; a trailing / allows everything
                    below (e.g. registry.example.com/profiles/{namespace}/). Empty: recordings fail
  --signing-keys DIR  directory of PEM private keys (a mounted Secret); spec.publish.signWith
                    names a file in it (default /etc/spoke/signing-keys)
  --auth-file F     registry credentials for pushing recorded profiles (docker config.json)
  --plain-http, --ca-file F   registry transport options for pushing`;

export interface RecordingControllerFlagValues {
  'recording-key'?: string;
  'recording-proof-ttl'?: string;
  'recording-repositories'?: string;
  'signing-keys'?: string;
  'plain-http'?: boolean;
  'ca-file'?: string;
  'auth-file'?: string;
}

/** Reads `dir/name` (a key of the mounted Secret) on every use, so a rotated Secret is picked up. */
export function signingKeyLoader(dir: string): (name: string) => Promise<string> {
  return async (name) => {
    if (!/^[A-Za-z0-9][-._A-Za-z0-9]{0,252}$/.test(name) || name === '..') throw new SpokeError('InvalidArgument', `bad signing key name ${JSON.stringify(name)}`);
    const path = join(dir, name);
    let size: number;
    try {
      size = statSync(path).size;
    } catch {
      throw new SpokeError('NotFound', `no signing key ${name} in ${dir}`);
    }
    if (size > 64 * 1024) throw new SpokeError('InvalidArgument', `signing key ${name} is larger than 64 KiB`);
    return readFileSync(path, 'utf8');
  };
}

/** --recording-key and --recording-proof-ttl, checked before anything starts. */
export function recordingProofFlags(values: RecordingControllerFlagValues): { recordingKey: Buffer | undefined; proofTtlSeconds: number } {
  const ttlText = values['recording-proof-ttl'] ?? String(DEFAULT_PROOF_TTL_SECONDS);
  const proofTtlSeconds = /^[0-9]{1,9}$/.test(ttlText) ? Number(ttlText) : NaN;
  if (!(proofTtlSeconds >= 60 && proofTtlSeconds <= 7 * 86400)) throw new UsageError('--recording-proof-ttl must be 60..604800 seconds');
  return { recordingKey: values['recording-key'] === undefined ? undefined : readRecordingKey(values['recording-key']), proofTtlSeconds };
}

/** Starts the recording reconciler next to the binding webhook (shares its binding cache). */
export async function startRecordingControllerFromFlags(
  values: RecordingControllerFlagValues,
  kc: KubeConfig,
  bindings: { get(namespace: string, name: string): ProfileBinding | undefined },
  logFn: (event: Record<string, unknown>) => void,
  recordingKey: Buffer | undefined,
): Promise<{ controller: RecordingController; close(): Promise<void> }> {
  if (!recordingKey) logFn({ msg: 'no --recording-key: no pod is marked for recording and no recording result counts', level: 'warning' });
  const { startRecordingController } = await import('../../controller/recording-kube.js');
  const registry = publisherRegistry(values);
  const allowedRepositories = (values['recording-repositories'] ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  const controller = startRecordingController(kc, {
    registry,
    allowedRepositories,
    signingKey: signingKeyLoader(values['signing-keys'] ?? '/etc/spoke/signing-keys'),
    bindings,
    log: logFn,
    ...(recordingKey ? { recordingKey } : {}),
  });
  return {
    controller,
    close: async () => {
      await controller.stop();
      await registry.close();
    },
  };
}

