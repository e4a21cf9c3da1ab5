// Which recording backend a node uses. eBPF (bpf.ts) where it can run: it counts every call of
// every process of the container in the kernel. Else the kernel's seccomp audit records
// (source.ts, session.ts), which cannot attribute a process that exits before it is resolved
// and so must report such records instead of staying silent.

import { SpokeError } from '../core/errors.js';
import { bpfSupport, type BpfSupport } from './bpf.js';

export const RECORDING_BACKENDS = ['bpf', 'audit'] as const;
export type RecordingBackend = (typeof RECORDING_BACKENDS)[number];

/** One line for `spoke status` and --help: what this node supports and what is the default. */
export function describeBackends(support: BpfSupport = bpfSupport()): string {
  return support.ok ? 'bpf (default: root, kernel BTF, bpftrace found) and audit' : `audit only (bpf unavailable: ${support.reason})`;
}

/** The backend asked for (a usage error when unknown), or the default for this node. */
export function chooseBackend(requested: string | undefined, support: BpfSupport = bpfSupport()): RecordingBackend {
  if (requested === undefined) return support.ok ? 'bpf' : 'audit';
  if (!(RECORDING_BACKENDS as readonly string[]).includes(requested)) throw new SpokeError('InvalidArgument', `--backend must be bpf or audit`, {}, { reason: 'OPTION_INVALID' });
  if (requested === 'bpf' && !support.ok) throw new SpokeError('FailedPrecondition', `the eBPF recording backend cannot run on this node: ${support.reason}`, {}, { reason: 'RECORDER_UNAVAILABLE' });
  return requested as RecordingBackend;
}
