// `spoke denials --for DURATION` (docs/audit-mode.md): the kernel log read from now on while an
// eBPF program (bpf-program.ts, `exits` form) keeps the namespaces of every filtered process
// that exits, and the runtime is polled for its running containers' namespaces. A record whose
// process is alive is attributed through /proc when it is read; one whose process is gone (a
// shell's forked child) through its exit's namespaces at the end (recorder/denials.ts).

import { setTimeout as delay } from 'node:timers/promises';
import type { Digest } from '../../core/digest.js';
import { asSpokeError, SpokeError } from '../../core/errors.js';
import { BpfCounter, bpfSupport, namespaceOf } from '../../recorder/bpf.js';
import { pidFromVerboseInfo, RuntimeCriClient, type Msg } from '../../recorder/cri.js';
import { LiveDenials, type ContainerInfo, type DenialSummary, type Names, type SeenContainer } from '../../recorder/denials.js';
import { PidResolver } from '../../recorder/pids.js';
import { openAuditSource, preflight, PrintkRateLimit } from '../../recorder/source.js';

/** How often the runtime is asked for its running containers (a container must run this long to be seen). */
export const POLL_MS = 500;
/** Containers remembered in one watch. */
const MAX_SEEN = 65_536;

/** container id → pod and container names, from the runtime (ListContainers, ListPodSandbox). */
export async function containersOf(client: RuntimeCriClient, runningOnly = false): Promise<Map<string, ContainerInfo>> {
  const filter = runningOnly ? { filter: { state: { state: 'CONTAINER_RUNNING' } } } : {};
  const list = ((await client.rt('ListContainers', filter, 10_000)).containers as Msg[] | undefined) ?? [];
  const out = new Map<string, ContainerInfo>();
  if (list.length === 0) return out;
  const pods = new Map<string, { name: string; namespace: string }>();
  for (const p of ((await client.rt('ListPodSandbox', {}, 10_000)).items as Msg[] | undefined) ?? []) {
    const m = p.metadata as { name?: string; namespace?: string } | undefined;
    pods.set(String(p.id), { name: m?.name ?? '', namespace: m?.namespace ?? '' });
  }
  for (const c of list) {
    const pod = pods.get(String(c.pod_sandbox_id));
    out.set(String(c.id), { podNamespace: pod?.namespace ?? '', podName: pod?.name ?? '', container: (c.metadata as { name?: string } | undefined)?.name ?? '' });
  }
  return out;
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
  const counter = await BpfCounter.start({ probe: 'exits', bpftrace: support.bpftrace, ownProcessGroup: true });
  const printk = choice.kind === 'kmsg' ? new PrintkRateLimit() : undefined;
  const cri = new RuntimeCriClient(o.upstream);
  let stop = () => {};
  const stopped = new Promise<void>((resolve) => (stop = resolve));
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  const deadline = setTimeout(stop, o.forMs);
  try {
    printk?.lift();
    const source = openAuditSource(choice);
    try {
      const sinceMs = Date.now();
      const resolver = new PidResolver();
      const live = new LiveDenials(sinceMs, o.bootWallMs, (pid, us) => resolver.attribute(pid, us));
      const drain = () => {
        for (let lines = source.poll(); lines.length > 0; lines = source.poll()) for (const l of lines) live.addLine(l);
      };
      const seen = new Map<string, SeenContainer>();
      const containers = new Map<string, ContainerInfo>();
      const holders = new Map<string, Digest>();
      const references = new Map<Digest, string>();
      const warn = (w: string) => {
        if (!o.warnings.includes(w) && o.warnings.length < 16) o.warnings.push(w);
      };
      const mergeHolders = async () => {
        const h = await o.holders();
        for (const [k, v] of h.holders) holders.set(k, v);
        for (const [k, v] of h.references) references.set(k, v);
      };
      const poll = async () => {
        const running = await containersOf(cri, true);
        let fresh = false;
        for (const [id, c] of running) {
          containers.set(id, c);
          if (seen.has(id) || seen.size >= MAX_SEEN) continue;
          const pid = pidFromVerboseInfo(await cri.rt('ContainerStatus', { container_id: id, verbose: true }, 10_000));
          if (pid === undefined) continue;
          try {
            seen.set(id, { ipc: namespaceOf(pid, 'ipc'), mnt: namespaceOf(pid, 'mnt') });
            fresh = true;
          } catch {
            /* exited meanwhile: its namespaces are unknown, as if never seen */
          }
        }
        if (fresh) await mergeHolders();
      };
      o.onWatching(`watching for ${Math.round(o.forMs / 1000)}s (kernel log ${choice.path}; exited processes named through eBPF); interrupt to stop early`);
      let done = false;
      void stopped.then(() => (done = true));
      while (!done) {
        drain();
        try {
          await poll();
        } catch (e) {
          warn(`the runtime could not be polled (containers started meanwhile are not attributed): ${asSpokeError(e).message}`);
        }
        await Promise.race([stopped, delay(POLL_MS)]);
      }
      drain();
      const dump = await counter.stop();
      drain();
      try {
        for (const [id, c] of await containersOf(cri)) if (!containers.has(id)) containers.set(id, c);
      } catch (e) {
        warn(`pod and container names unknown: ${asSpokeError(e).message}`);
      }
      await mergeHolders();
      o.warnings.push(...(source.lost > 0 ? [`${source.lost} kernel log record(s) were overwritten before they were read; counts are lower bounds`] : []));
      let hostIpc: number | undefined;
      try {
        hostIpc = namespaceOf(1, 'ipc');
      } catch (e) {
        warn(`exited processes outside containers are counted as unattributed: the host's IPC namespace is unknown (${asSpokeError(e).message})`);
      }
      const summary = live.finish(dump.exits, seen, hostIpc, { holders, references, containers });
      return { summary, path: choice.path };
    } finally {
      source.close();
    }
  } finally {
    clearTimeout(deadline);
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
    counter.close();
    printk?.restore();
    cri.close();
  }
}
