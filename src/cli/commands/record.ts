import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { writeOutputFile } from '../output-file.js';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseRepositoryRef } from '../../core/reference.js';
import { SpokeError } from '../../core/errors.js';
import { pushProfile } from '../../publish/push.js';
import { pidFromVerboseInfo, RuntimeCriClient, startProfiledContainer, waitForExit, type Msg } from '../../recorder/cri.js';
import { buildRecordedProfile, type OciRuntime } from '../../profiles/seccomp/index.js';
import { installLoggingProfile } from '../../cri/recording.js';
import { RecordingSession } from '../../recorder/session.js';
import { BpfCounter, namespaceOf } from '../../recorder/bpf.js';
import { namesOf, type PodNamespaces } from '../../recorder/bpf-program.js';
import { chooseBackend, describeBackends, RECORDING_BACKENDS, type RecordingBackend } from '../../recorder/backend.js';
import { emit, parseCommand } from '../args.js';
import { UsageError } from '../errors.js';
import { publisherDeadline } from '../deadline.js';
import { publisherFlags, publisherRegistry } from '../wiring.js';
import { writeSafeLine } from '../../core/text.js';

const HELP = `usage: spoke record --upstream SOCK --image IMAGE [--output FILE | --push REPO[:TAG]] [options] -- CMD [ARGS...]

Records a seccomp profile on this node: runs CMD in a container of IMAGE (which the runtime
must already have) through CRI on SOCK, in a host-network pod, under a logging profile
(defaultAction SCMP_ACT_LOG, written by spoke in the run's own directory), waits for it to
exit and builds a deterministic KEP-6061 profile from the calls its processes made: default
SCMP_ACT_ERRNO, the recorded calls plus the OCI runtime's start-up set allowed, x86 family.
Needs root. Two recording backends:
  bpf    (default where it runs) counts the calls in the kernel per mount namespace with
         bpftrace: every process of the container, short-lived forked children included.
         Needs root, kernel BTF (/sys/kernel/btf/vmlinux) and bpftrace (Debian package
         bpftrace); mounts tracefs at /sys/kernel/tracing when it is not mounted.
  audit  reads the kernel's seccomp audit records (audit.log when auditd runs, else /dev/kmsg
         with the printk rate limit lifted while recording). A process that exits before its
         records are read cannot be tied to a container: when such records may be the
         workload's, the recording fails (--allow-incomplete: warn and write it anyway).
An empty recording, or one where records were lost, is an error.

Without --output or --push the profile is printed on stdout. With --push the digest-pinned
reference is printed as the last line of stdout.

options:
  --upstream SOCK         the CRI runtime socket (containerd, CRI-O)
  --image IMAGE           image to run (not pulled: it must be present)
  --output FILE           write the profile to FILE
  --push REPO[:TAG]       push the profile as a KEP-6061 artifact
  --backend bpf|audit     recording backend (default: bpf where this node can run it, else audit)
  --allow-incomplete      audit backend: warn instead of failing when records were lost or
                          could not be tied to a container
  --runtime-handler H     CRI runtime handler (default: the runtime's default)
  --oci-runtime R         runc or crun: whose start-up calls to add (default: crun when the
                          handler is named crun, else runc)
  --seccomp-root DIR      the kubelet's seccomp root, where a logging profile an earlier
                          version left is removed (default /var/lib/kubelet/seccomp)
  --timeout SECONDS       how long CMD may run (default 300)
  --plain-http, --ca-file F, --auth-file F   registry options for --push
  --json                  print {containerId, backend, exitCode, syscalls, ia32, reference?} as JSON`;

/** The usage text plus what this node supports (checked when asked). */
const helpText = (): string => `${HELP}\n\nthis node: ${describeBackends()}`;

/** `--backend` of record and recorder: bpf or audit, default by what the node supports. */
export function backendFlag(value: string | undefined): RecordingBackend {
  if (value !== undefined && !(RECORDING_BACKENDS as readonly string[]).includes(value)) throw new UsageError('--backend must be bpf or audit');
  return chooseBackend(value);
}

/** A recording counts one pod: about 1000 (ia32, number) keys per mount namespace in it. */
const RECORD_MAP_KEYS = 8192;

export async function run(argv: string[]): Promise<number> {
  const { values, positionals, help } = parseCommand(
    argv,
    {
      upstream: { type: 'string' },
      image: { type: 'string' },
      output: { type: 'string' },
      push: { type: 'string' },
      'runtime-handler': { type: 'string' },
      'oci-runtime': { type: 'string' },
      'seccomp-root': { type: 'string' },
      timeout: { type: 'string' },
      json: { type: 'boolean' },
      backend: { type: 'string' },
      'allow-incomplete': { type: 'boolean' },
      ...publisherFlags,
    },
    helpText(),
    [1, 4096],
  );
  if (help) return 0;
  if (!values.upstream) throw new UsageError('--upstream is required');
  if (!values.image) throw new UsageError('--image is required');
  if (values.output && values.push) throw new UsageError('--output and --push are exclusive');
  const handler = values['runtime-handler'] ?? '';
  const ociRuntime = (values['oci-runtime'] ?? (handler === 'crun' ? 'crun' : 'runc')) as OciRuntime;
  if (ociRuntime !== 'runc' && ociRuntime !== 'crun') throw new UsageError('--oci-runtime must be runc or crun');
  const timeoutS = values.timeout === undefined ? 300 : Number(values.timeout);
  if (!Number.isInteger(timeoutS) || timeoutS < 1 || timeoutS > 86_400) throw new UsageError('--timeout must be 1..86400 seconds');
  const repo = values.push ? parseRepositoryRef(values.push) : undefined;
  const backend = backendFlag(values.backend);

  const result = await recordOnce({
    socket: values.upstream,
    image: values.image,
    command: positionals,
    handler,
    seccompRoot: values['seccomp-root'] ?? '/var/lib/kubelet/seccomp',
    timeoutMs: timeoutS * 1000,
    backend,
    allowIncomplete: values['allow-incomplete'] === true,
  });
  if (result.exitCode !== 0) process.stderr.write(`warning: the workload exited with status ${result.exitCode}; the profile covers what it did until then\n`);
  if (result.incomplete) writeSafeLine(process.stderr, `warning: recording incomplete: ${result.incomplete}`);
  const { bytes } = buildRecordedProfile(result.syscalls, ociRuntime, { ia32: result.ia32 });
  const summary = { containerId: result.containerId, backend: result.backend, exitCode: result.exitCode, syscalls: [...result.syscalls].sort(), ia32: result.ia32 };
  if (repo) {
    // --timeout is the workload's here: the push has the publishers' default deadline.
    const deadline = publisherDeadline({}, 'record --push');
    const registry = publisherRegistry(values, deadline.signal);
    try {
      const r = await pushProfile(registry, repo, repo.tag, bytes, 'seccomp');
      emit(values.json, { ...summary, reference: r.reference, digest: r.digest }, () => r.reference);
    } finally {
      deadline.clear();
      await registry.close();
    }
  } else if (values.output) {
    await writeOutputFile(values.output, bytes);
    emit(values.json, { ...summary, output: values.output }, () => `wrote ${values.output} (${result.syscalls.size} recorded syscalls)`);
  } else {
    process.stdout.write(values.json ? JSON.stringify({ ...summary, profile: JSON.parse(bytes.toString('utf8')) as unknown }, null, 2) + '\n' : bytes.toString('utf8') + '\n');
  }
  return 0;
}

export interface RecordOnceOptions {
  socket: string;
  image: string;
  command: string[];
  handler: string;
  seccompRoot: string;
  timeoutMs: number;
  /** Default: bpf where the node can run it, else audit. */
  backend?: RecordingBackend;
  /** Audit backend: write the profile although records were lost or unattributed (a warning instead of a refusal). */
  allowIncomplete?: boolean;
}

export interface RecordOnceResult {
  containerId: string;
  exitCode: number;
  syscalls: Set<string>;
  /** Whether any of them was a 32-bit (ia32) call. */
  ia32: boolean;
  backend: RecordingBackend;
  /** Audit backend: records no container could be found for, and how many processes made them. */
  unattributed: number;
  unattributedPids: number;
  /** Why the recording may be incomplete (only with allowIncomplete; otherwise it throws). */
  incomplete?: string;
}

/** Runs one container under the logging profile and returns what it called. */
export async function recordOnce(o: RecordOnceOptions): Promise<RecordOnceResult> {
  const backend = o.backend ?? chooseBackend(undefined);
  const cri = new RuntimeCriClient(o.socket);
  const logDir = mkdtempSync(join(tmpdir(), 'spoke-record-'));
  let session: RecordingSession | undefined;
  let counter: BpfCounter | undefined;
  let podId: string | undefined;
  const abort = new AbortController();
  const onSignal = (sig: NodeJS.Signals) => abort.abort(new SpokeError('Internal', `interrupted by ${sig}`, {}, { reason: 'CANCELLED' }));
  // The printk limit is restored (and bpftrace ended) in finally; the 'exit' hook covers a process.exit elsewhere.
  const onExit = () => {
    session?.close();
    counter?.close();
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  process.once('exit', onExit);
  try {
    const status = await cri.img('ImageStatus', { image: { image: o.image } });
    if (!status.image) throw new SpokeError('NotFound', `image ${o.image} is not present in the runtime (spoke record does not pull)`, { reference: o.image }, { reason: 'NOT_FOUND' });
    const profilePath = await installLoggingProfile(logDir, o.seccompRoot);
    if (backend === 'audit') session = RecordingSession.start();
    const name = `spoke-record-${randomBytes(4).toString('hex')}`;
    const podConfig: Msg = {
      metadata: { name, uid: name, namespace: 'spoke-record', attempt: 0 },
      log_directory: logDir,
      labels: { 'spoke.dev/record': 'true' },
      linux: { security_context: { namespace_options: { network: 'NODE', pid: 'CONTAINER', ipc: 'POD' } } },
    };
    podId = (await cri.rt('RunPodSandbox', { config: podConfig, runtime_handler: o.handler })).pod_sandbox_id as string;
    let pod: PodNamespaces | undefined;
    if (backend === 'bpf') {
      // The pod's IPC namespace (held by its sandbox process for the pod's whole life, joined by
      // the container: ipc POD) is known before the container exists, so counting starts
      // before the workload's first instruction and needs no pid of the workload.
      const pausePid = pidFromVerboseInfo(await cri.rt('PodSandboxStatus', { pod_sandbox_id: podId, verbose: true }));
      if (pausePid === undefined) throw new SpokeError('Internal', 'the runtime did not report the pod sandbox pid (verbose PodSandboxStatus info.pid)', {}, { reason: 'RECORDER_UNAVAILABLE' });
      pod = { ipc: namespaceOf(pausePid, 'ipc'), pauseMnt: namespaceOf(pausePid, 'mnt') };
      counter = await BpfCounter.start({ ipcNamespaces: [pod.ipc], mapKeys: RECORD_MAP_KEYS });
    }
    const containerId = await startProfiledContainer(cri, { id: podId, config: podConfig }, { name: 'record', image: o.image, command: o.command, profilePath });
    const exitCode = await waitForExit(cri, containerId, o.timeoutMs, abort.signal);
    let syscalls: Set<string>;
    let ia32: boolean;
    let unnamed: string[];
    let source: string;
    let records: number;
    let incomplete: string | undefined;
    if (counter && pod) {
      // Everything counted in the pod's IPC namespace but the sandbox's own mount namespace.
      const { ipc, pauseMnt } = pod;
      const calls = (await counter.stop()).counts.filter((c) => c.ipc === ipc && c.mnt !== pauseMnt);
      ({ names: syscalls, unnamed, ia32 } = namesOf(calls));
      source = 'the eBPF counter';
      records = calls.length;
    } else {
      const s = session!;
      await s.stop();
      syscalls = s.recorder.syscalls(containerId);
      ia32 = s.recorder.madeIa32Calls(containerId);
      unnamed = s.recorder.unnamedCalls(containerId);
      source = s.source.path;
      records = s.recorder.stats.records;
      const maybeOurs = s.recorder.stats.unattributedLogged;
      const why = [
        ...(s.lost() > 0 ? [`the kernel reported ${s.lost()} lost audit record(s) (run again on a quieter node)`] : []),
        ...(maybeOurs > 0 ? [`${maybeOurs} logged call(s) from ${s.recorder.unattributedPids.size} process(es) could not be tied to a container (they exited before they were seen, as a shell's forked child does)`] : []),
        ...(s.recorder.wasDropped(containerId) ? ["the container's records were not kept: the recorder's table of containers was full"] : []),
        ...(s.recorder.wasClaimed(containerId) ? ["calls under the container's cgroup came from a process outside its pod's IPC namespace or in a user namespace of its own (a host process in a cgroup named after it, or the workload in a sandbox): they are not counted"] : []),
      ];
      if (why.length > 0) {
        incomplete = `${why.join('; ')}; if they were this workload's calls, the profile lacks them. The eBPF backend (--backend bpf: root, kernel BTF, bpftrace) sees every process`;
        if (!o.allowIncomplete) throw new SpokeError('FailedPrecondition', `recording incomplete: ${incomplete}; --allow-incomplete writes the profile anyway`, { rule: 'incomplete-recording', lost: s.lost(), unattributed: maybeOurs }, { reason: 'INCOMPLETE_RECORDING' });
      }
    }
    if (unnamed.length > 0) throw new SpokeError('FailedPrecondition', `the workload made calls spoke cannot name (arch:number ${unnamed.join(', ')}); refusing to write a profile that would deny them`, {}, { reason: 'SYSCALL_UNKNOWN' });
    if (syscalls.size === 0) {
      throw new SpokeError(
        'FailedPrecondition',
        `no calls were recorded for container ${containerId.slice(0, 12)} (${records} record(s) in total from ${source}); the kernel is not logging SCMP_ACT_LOG calls, or the runtime ignored the Localhost profile — refusing to write an empty profile`,
        { rule: 'empty-recording' },
        { reason: 'RECORDING_EMPTY' },
      );
    }
    return {
      containerId,
      exitCode,
      syscalls,
      ia32,
      backend,
      unattributed: session?.recorder.stats.unattributed ?? 0,
      unattributedPids: session?.recorder.unattributedPids.size ?? 0,
      ...(incomplete === undefined ? {} : { incomplete }),
    };
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    process.off('exit', onExit);
    session?.close();
    counter?.close();
    if (podId !== undefined) {
      await cri.rt('StopPodSandbox', { pod_sandbox_id: podId }, 30_000).catch(() => undefined);
      await cri.rt('RemovePodSandbox', { pod_sandbox_id: podId }, 30_000).catch(() => undefined);
    }
    cri.close();
    rmSync(logDir, { recursive: true, force: true });
  }
}
