// `spoke denials --for DURATION` (docs/audit-mode.md): the kernel log read from now on while an
// eBPF program (bpf-program.ts, `exits` form) keeps the namespaces of every filtered process
// that exits, and the runtime is polled for its running containers' namespaces. A record whose
// process is alive is attributed through /proc when it is read; one whose process is gone (a
// shell's forked child) through its exit's namespaces at the end (recorder/denials.ts).

import { setTimeout as delay } from 'node:timers/promises';
import type { Digest } from '../../core/digest.js';
import { asSpokeError, SpokeError } from '../../core/errors.js';
import { BpfCounter, bpfSupport, namespaceOf } from '../../recorder/bpf.js';
import type { BpfDump } from '../../recorder/bpf-program.js';
import { pidFromVerboseInfo, RuntimeCriClient, type Msg } from '../../recorder/cri.js';
import { LiveDenials, type ContainerInfo, type DenialSummary, type Names, type SeenContainer } from '../../recorder/denials.js';
import { PidResolver } from '../../recorder/pids.js';
import { openAuditSource, preflight, PrintkRateLimit, type AuditSource } from '../../recorder/source.js';

/** How often the runtime is asked for its running containers (a container must run this long to be seen). */
export const POLL_MS = 500;
/** Containers remembered in one watch. */
const MAX_SEEN = 65_536;

/** Pod sandbox id → pod name and namespace. */
async function podsOf(client: RuntimeCriClient): Promise<Map<string, { name: string; namespace: string }>> {
  const pods = new Map<string, { name: string; namespace: string }>();
  for (const p of ((await client.rt('ListPodSandbox', {}, 10_000)).items as Msg[] | undefined) ?? []) {
    const m = p.metadata as { name?: string; namespace?: string } | undefined;
    pods.set(String(p.id), { name: m?.name ?? '', namespace: m?.namespace ?? '' });
  }
  return pods;
}

function infoOf(c: Msg, pods: ReadonlyMap<string, { name: string; namespace: string }>): ContainerInfo {
  const pod = pods.get(String(c.pod_sandbox_id));
  return { podNamespace: pod?.namespace ?? '', podName: pod?.name ?? '', container: (c.metadata as { name?: string } | undefined)?.name ?? '' };
}

async function listContainers(client: RuntimeCriClient, runningOnly: boolean): Promise<Msg[]> {
  const filter = runningOnly ? { filter: { state: { state: 'CONTAINER_RUNNING' } } } : {};
  return ((await client.rt('ListContainers', filter, 10_000)).containers as Msg[] | undefined) ?? [];
}

/** container id → pod and container names, from the runtime (ListContainers, ListPodSandbox). */
export async function containersOf(client: RuntimeCriClient): Promise<Map<string, ContainerInfo>> {
  const list = await listContainers(client, false);
  const pods = list.length > 0 ? await podsOf(client) : new Map<string, { name: string; namespace: string }>();
  return new Map(list.map((c) => [String(c.id), infoOf(c, pods)]));
}

/** What the watch learns from the runtime and the shim's in-use set while containers come and go. */
class RuntimeView {
  readonly seen = new Map<string, SeenContainer>();
  readonly containers = new Map<string, ContainerInfo>();
  readonly holders = new Map<string, Digest>();
  readonly references = new Map<Digest, string>();
  full = false;

  constructor(
    private readonly cri: RuntimeCriClient,
    private readonly inUse: WatchOptions['holders'],
    private readonly warn: (w: string) => void,
  ) {}

  /** Reads the namespaces of running containers not seen yet (through their pid). */
  async poll(): Promise<void> {
    const fresh = (await listContainers(this.cri, true)).filter((c) => !this.seen.has(String(c.id)));
    if (fresh.length === 0) return;
    const pods = await podsOf(this.cri);
    for (const c of fresh) {
      const id = String(c.id);
      this.containers.set(id, infoOf(c, pods));
      if (this.seen.size >= MAX_SEEN) {
        this.full = true;
        continue;
      }
      const pid = pidFromVerboseInfo(await this.cri.rt('ContainerStatus', { container_id: id, verbose: true }, 10_000));
      if (pid === undefined) continue;
      try {
        this.seen.set(id, { ipc: namespaceOf(pid, 'ipc'), mnt: namespaceOf(pid, 'mnt') });
      } catch {
        /* exited meanwhile: its namespaces are unknown, as if never seen */
      }
    }
    // Read while the containers exist: the shim drops a container from the set when it is removed.
    await this.mergeHolders();
  }

  async mergeHolders(): Promise<void> {
    try {
      const h = await this.inUse();
      for (const [k, v] of h.holders) this.holders.set(k, v);
      for (const [k, v] of h.references) this.references.set(k, v);
    } catch (e) {
      this.warn(`the shim's in-use set could not be read (containers under an artifact may be listed as other): ${asSpokeError(e).message}`);
    }
  }

  /** Names of containers that were never seen running (attributed through /proc). */
  async completeNames(): Promise<void> {
    for (const [id, c] of await containersOf(this.cri)) if (!this.containers.has(id)) this.containers.set(id, c);
  }
}

export interface WatchOptions {
  forMs: number;
  /** The runtime's CRI socket (the node config's upstream). */
  upstream: string;
  bootWallMs: number;
  /** The shim's in-use set now (container → artifact); merged over the watch, as containers go. */
  holders: () => Promise<Pick<Names, 'holders' | 'references'>>;
  /** Told once the probe is attached and the kernel log is being read. */
  onWatching: (what: string) => void;
  warnings: string[];
}

export async function watchDenials(o: WatchOptions): Promise<{ summary: DenialSummary; path: string }> {
  const support = bpfSupport();
  if (!support.ok) {
    throw new SpokeError('FailedPrecondition', `spoke denials --for needs eBPF, which cannot run here (${support.reason}); --since reads the kernel log instead`, {}, { reason: 'RECORDER_UNAVAILABLE' });
  }
  const choice = preflight();
  const warn = (w: string) => {
    if (!o.warnings.includes(w) && o.warnings.length < 16) o.warnings.push(w);
  };
  // Installed first: a signal while bpftrace starts must still end it (it runs in its own group).
  let stop = () => {};
  const stopped = new Promise<void>((resolve) => (stop = resolve));
  let done = false;
  void stopped.then(() => (done = true));
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  const deadline = setTimeout(stop, o.forMs);
  let counter: BpfCounter | undefined;
  let source: AuditSource | undefined;
  const printk = choice.kind === 'kmsg' ? new PrintkRateLimit() : undefined;
  const cri = new RuntimeCriClient(o.upstream);
  try {
    counter = await BpfCounter.start({ probe: 'exits', bpftrace: support.bpftrace, ownProcessGroup: true });
    // bpftrace gone (killed, a broken dump): the watch ends now and stop() says why.
    counter.nextDump().catch(stop);
    printk?.lift();
    source = openAuditSource(choice);
    const sinceMs = Date.now();
    const resolver = new PidResolver();
    const live = new LiveDenials(sinceMs, o.bootWallMs, (pid, us) => resolver.attribute(pid, us));
    const drain = () => {
      for (let lines = source!.poll(); lines.length > 0; lines = source!.poll()) for (const l of lines) live.addLine(l);
    };
    const view = new RuntimeView(cri, o.holders, warn);
    o.onWatching(`watching for ${Math.round(o.forMs / 1000)}s (kernel log ${choice.path}; exited processes named through eBPF); interrupt to stop early`);
    while (!done) {
      drain();
      try {
        await view.poll();
      } catch (e) {
        warn(`the runtime could not be polled (containers started meanwhile may be unattributed): ${asSpokeError(e).message}`);
      }
      await Promise.race([stopped, delay(POLL_MS)]);
    }
    drain();
    let exits: BpfDump['exits'] = [];
    try {
      exits = (await counter.stop()).exits;
    } catch (e) {
      // A full map may lack the exit of a pid's later process and keep an earlier one's: without
      // the whole map no exit is used, and those records stay unattributed.
      warn(`exited processes are not attributed: ${asSpokeError(e).message}`);
    }
    drain();
    try {
      await view.completeNames();
    } catch (e) {
      warn(`pod and container names unknown: ${asSpokeError(e).message}`);
    }
    await view.mergeHolders();
    if (view.full) warn(`more than ${MAX_SEEN} containers ran during the watch: the calls of later ones are unattributed`);
    let hostIpc: number | undefined;
    try {
      hostIpc = namespaceOf(1, 'ipc');
    } catch (e) {
      warn(`exited processes outside containers are counted as unattributed: the host's IPC namespace is unknown (${asSpokeError(e).message})`);
    }
    live.tally.lost += source.lost;
    return { summary: live.finish(exits, view.seen, hostIpc, view), path: choice.path };
  } finally {
    clearTimeout(deadline);
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
    counter?.close();
    source?.close();
    printk?.restore();
    cri.close();
  }
}
