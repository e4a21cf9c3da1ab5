// The files a shim starting now refuses to start on, read by one set of functions: `spoke shim`
// uses them at its start, and `spoke status` runs the same ones, changing nothing, so a clean
// status before a restart or an upgrade means the shim will start (docs/shim.md#restarts-and-upgrades).
// The others both call where they live: the auth file (nodeCredentials), the recording key
// (shimRecordingKey), the effective directory (src/cri/effective-dir.ts), the socket path
// (src/cri/socket.ts); the policy is read by PolicyHolder at start and by lintPolicy in status,
// over one parser.

import { readFileSync } from 'node:fs';
import { SpokeError, asSpokeError } from '../core/errors.js';
import { decodePinned } from '../cri/runtime-default.js';
import { decodeRuntimeDefault } from '../cri/seccomp.js';
import { decodeSeccomp, validateBaseline, type SeccompProfile } from '../profiles/seccomp/index.js';

/** The node baseline at `path`, decoded and validated; InvalidArgument naming the file otherwise. */
export function loadBaseline(path: string, read: (path: string) => Buffer = readFileSync): SeccompProfile {
  const bytes = readStartFile('baseline', path, read);
  try {
    const p = decodeSeccomp(bytes);
    validateBaseline(p);
    return p;
  } catch (e) {
    const err = asSpokeError(e, 'InvalidArgument');
    throw new SpokeError('InvalidArgument', `baseline ${path}: ${err.message}`, { file: path }, { cause: e, reason: err.reason });
  }
}

/** The bytes of the pinned runtime default (config key runtimeDefault); RuntimeDefaultSource decodes them (decodePinned). */
export function readPinnedRuntimeDefault(path: string, read?: (path: string) => Buffer): Buffer {
  return readStartFile('runtimeDefault', path, read);
}

/** The bytes of the file the config key `what` names; InvalidArgument (FILE_UNREADABLE) naming both otherwise. */
function readStartFile(what: string, path: string, read: (path: string) => Buffer = readFileSync): Buffer {
  try {
    return read(path);
  } catch (e) {
    if (e instanceof SpokeError) throw e;
    throw new SpokeError('InvalidArgument', `${what} ${path}: cannot read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, { file: path }, { reason: 'FILE_UNREADABLE' });
  }
}

/** The pinned runtime default read and decoded as the shim's RuntimeDefaultSource does at start. */
export function checkPinnedRuntimeDefault(path: string, read?: (path: string) => Buffer): void {
  decodePinned(decodeRuntimeDefault, path, readPinnedRuntimeDefault(path, read));
}
