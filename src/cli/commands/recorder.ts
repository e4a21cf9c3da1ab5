// spoke recorder: the node side of ProfileRecording (docs/recording.md). Watches the node's
// CRI runtime for containers of pods annotated `recording.spoke.dev/name: <recording>`, records
// their syscalls with the backend `spoke record` would use (eBPF counts in the kernel, or the
// audit-record session with the printk limit lifted while it runs), and when a container exits
// reports one ProfileRecordingResult, owned by the recording.
//
// The daemon's polls and reports: recorder-daemon.ts; where the calls come from:
// recorder-calls.ts. The controller-side wiring of recordings lives in ../recording-controller.ts.

import type { OciRuntime } from '../../profiles/seccomp/index.js';
import { RuntimeCriClient } from '../../recorder/cri.js';
import { describeBackends } from '../../recorder/backend.js';
import { backendFlag } from './record.js';
import { startCalls } from './recorder-calls.js';
import { RecorderDaemon } from './recorder-daemon.js';
import { parseCommand } from '../args.js';
import { UsageError } from '../errors.js';

const HELP = `usage: spoke recorder --upstream SOCK --node NAME [--kubeconfig F] [--backend bpf|audit] [--oci-runtime R] [--poll-ms N]

The node half of ProfileRecording. Containers of pods annotated
recording.spoke.dev/name=<recording> (the binding webhook sets it on pods a recording selects,
with the controller's proof; a shim run with --recording runs them under the logging profile,
the node baseline with SCMP_ACT_LOG for what it lets through, once the proof verifies) are
recorded with the backend of \`spoke record\` (see its --help): bpf counts every process's
calls in the kernel, keyed by the pod's IPC and the container's mount namespace; audit reads
the kernel's seccomp audit records (audit.log when auditd runs, else /dev/kmsg with the printk
rate limit lifted while recording and restored on exit). When such a container exits, or the
runtime removes it first, one ProfileRecordingResult (its syscall names, node, image, runtime)
is created in the pod's namespace, owned by the recording, a second (for the kernel's last
records of it) after a poll first saw it exited or, if none did, after the first poll that
listed the runtime whole without it; lostRecords > 0 in it (records lost or not attributable, a
container whose namespace could not be told apart, or one first seen while too many others
awaited theirs, reported at once, or one removed before a poll saw it run or exit) makes the
controller fail the recording as incomplete. A report that fails (a refusal too: 400, 422 from
an admission policy or webhook; or an API call, the recording's read or the result's create,
unanswered after 10 s, when the poll leaves its other reports to the next one, where each
keeps its turn) is retried at the next poll, then after waits that double, at most 5 minutes,
an error line for each attempt (a container first seen while too many others awaited theirs
and kept once a place frees, while it still runs, starts afresh: its first failure then is
retried at the next poll). Each poll tries the reports due in the order they became due,
those of containers first seen while too many others awaited theirs in that one order too: a
report with n due before it is tried within n + 1 polls, whatever its kind. One of a
container a poll found removed 5 minutes before is given up with an error line naming the
recording, namespace, pod and container: the profile lacks that container's calls. The
controller builds the profile when the recording is annotated
recording.spoke.dev/finalize=<value>. Containers the runtime lists when the recorder starts are
not reported (their start-up calls were missed), whatever their creation time. Needs root; one
per node (DaemonSet), ServiceAccount with ClusterRole spoke-recorder.

options:
  --upstream SOCK     the CRI runtime socket (containerd, CRI-O)
  --node NAME         this node's name (reported in results; default $NODE_NAME)
  --kubeconfig F      kubeconfig file (default: $KUBECONFIG, then ~/.kube/config, then the in-cluster
                      service account, refused outside a Pod; docs/binding.md)
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
  // A kubeconfig exec credential plugin still running when the process exits is killed with it
  // (kube-credentials.ts, docs/binding.md#kubeconfig-and-credentials).
  const reporter = new KubeResultReporter(kube.loadKubeConfig(values.kubeconfig, { log }));
  const cri = new RuntimeCriClient(values.upstream);
  const calls = await startCalls(backend, cri, pollMs, log);
  const daemon = new RecorderDaemon({ cri, calls, reporter, node, defaultRuntime, log });
  let stopping = false;
  const stop = (signal: string) => {
    log({ msg: 'stopping', signal });
    stopping = true;
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
  process.once('exit', () => calls.close());

  try {
    await daemon.listExisting();
  } catch (e) {
    log({ level: 'error', msg: 'CRI poll failed', error: (e as Error).message });
  }
  log({ msg: 'recording', node, backend, source: calls.source });
  try {
    while (!stopping) {
      let recorded: Set<string> | undefined;
      try {
        recorded = await daemon.tick();
      } catch (e) {
        log({ level: 'error', msg: 'CRI poll failed', error: (e as Error).message });
      }
      if (calls.failure) {
        log({ level: 'error', msg: 'recording failed; exiting', error: calls.failure.message });
        return 1;
      }
      await calls.maintain(recorded);
      await new Promise((r) => setTimeout(r, pollMs));
    }
  } finally {
    calls.close();
    cri.close();
  }
  return 0;
}
