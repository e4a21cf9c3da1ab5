// A pod's base profile, the second merge input of an OCI seccomp profile (docs/shim.md,
// KEP-6061 §2): its type, and a Localhost base read from the seccomp root.
// A base_profile of type BaseTypeUnspecified (0) with no localhost_ref means no base (KEP-6061 §2
// CRI text); with a localhost_ref it is refused (InvalidArgument, BASE_PROFILE) rather than guess
// whether a base was meant.
// A Localhost path must resolve (realpath) under the seccomp root, outside spoke's own merge
// results, and is read from an fd
// (regular file, ≤ 1 MiB), then decoded and validated at ValidateStrict level; its errors name
// the JSON path at fault but never quote the file's bytes: they reach pod events.

import { constants as fsConstants } from 'node:fs';
import { open, realpath } from 'node:fs/promises';
import { isAbsolute, join, normalize, sep } from 'node:path';
import { EFFECTIVE_SECCOMP_DIR } from '../core/constants.js';
import { sha256Hex } from '../core/digest.js';
import { SpokeError } from '../core/errors.js';
import { DEFAULT_MAX_ARTIFACT_BYTES } from '../core/limits.js';
import type { SeccompOps } from './deps.js';
import { BASE_LOCALHOST, BASE_RUNTIME_DEFAULT, BASE_UNSPECIFIED, type SecurityProfileMsg } from './messages.js';

/** A Localhost base profile (`who` names the sandbox or container in errors): decoded, validated, and the sha256 of its bytes. */
export async function readLocalhostBase<P>(localhostRef: string, who: string, seccompRoot: string, seccomp: Pick<SeccompOps<P>, 'decode' | 'validateBase'>): Promise<{ profile: P; sha: string }> {
  const refused = (code: 'InvalidArgument' | 'FailedPrecondition' | 'SecurityProfileInvalid', why: string, context: Record<string, unknown> = {}) =>
    new SpokeError(code, `${who}: base profile ${localhostRef} ${why}`, { path: localhostRef, ...context }, { reason: 'BASE_PROFILE' });
  if (!isAbsolute(localhostRef) || normalize(localhostRef) !== localhostRef) {
    throw new SpokeError('InvalidArgument', `${who}: base_profile localhost_ref must be an absolute, normalised path`, { path: localhostRef }, { reason: 'BASE_PROFILE' });
  }
  let bytes: Buffer;
  try {
    const [root, real] = await Promise.all([realpath(seccompRoot), realpath(localhostRef)]);
    // The kubelet's seccomp root is where Localhost profiles live; a path (or a symlink) leading
    // elsewhere could make any file on the node a "profile".
    if (!real.startsWith(root + sep)) throw refused('InvalidArgument', `does not resolve under the seccomp root ${seccompRoot}`);
    // A base is a profile the node's admin placed. spoke's merge results are made from artifacts
    // and removed once unused, and a product with one could cost a create the whole merge budget.
    if (real.startsWith(join(root, EFFECTIVE_SECCOMP_DIR) + sep)) throw refused('InvalidArgument', `is one of spoke's merge results (${EFFECTIVE_SECCOMP_DIR}/ under the seccomp root), not a base profile`);
    bytes = await readCapped(real, DEFAULT_MAX_ARTIFACT_BYTES, refused);
  } catch (e) {
    if (e instanceof SpokeError) throw e;
    throw refused('FailedPrecondition', `cannot be read (${(e as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  try {
    const p = seccomp.decode(bytes);
    seccomp.validateBase(p);
    return { profile: p, sha: sha256Hex(bytes) };
  } catch (e) {
    // Only the JSON path of the fault: decoder messages may quote the file (a JSON syntax error
    // shows its first bytes), and this message reaches pod events. No cause kept, for the same reason.
    const at = e instanceof SpokeError ? e.context.path : undefined;
    const where = typeof at === 'string' && JSON_PATH_RE.test(at) ? ` (at ${at})` : ' (not one strict JSON object)';
    throw refused('SecurityProfileInvalid', `is not a valid seccomp profile${where}`);
  }
}

/** A JSON path as the seccomp decoder and validators write them (member names, indexes). */
const JSON_PATH_RE = /^[A-Za-z0-9_.[\]()]{1,128}$/;

type Refusal = (code: 'FailedPrecondition' | 'SecurityProfileInvalid', why: string, context?: Record<string, unknown>) => SpokeError;

/**
 * A regular file's bytes, read from one fd (no symlink at the last step, no blocking open of a
 * FIFO), at most `cap` + 1 bytes: a file larger than `cap`, even one growing while read, is refused.
 */
async function readCapped(path: string, cap: number, refused: Refusal): Promise<Buffer> {
  const fh = await open(path, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW | fsConstants.O_NONBLOCK | fsConstants.O_NOCTTY);
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw refused('FailedPrecondition', 'is not a regular file');
    const tooBig = () => refused('SecurityProfileInvalid', `is larger than ${cap} bytes`, { limit: cap });
    if (st.size > cap) throw tooBig();
    const chunks: Buffer[] = [];
    let total = 0;
    for (;;) {
      const want = Math.min(cap + 1 - total, Math.max(st.size + 1 - total, 4096));
      const { bytesRead, buffer } = await fh.read({ buffer: Buffer.allocUnsafe(want), position: null });
      if (bytesRead === 0) break;
      chunks.push(buffer.subarray(0, bytesRead));
      total += bytesRead;
      if (total > cap) throw tooBig();
    }
    return Buffer.concat(chunks, total);
  } finally {
    await fh.close();
  }
}

/**
 * The base_profile's type, undefined when there is none: absent, or BaseTypeUnspecified with
 * nothing else set. Any other type than RuntimeDefault or Localhost is refused.
 */
export function baseTypeOf(profile: SecurityProfileMsg, who: string): number | undefined {
  const base = profile.base;
  if (base === undefined) return undefined;
  if (base.type === BASE_UNSPECIFIED) {
    if (base.localhostRef === '') return undefined;
    throw new SpokeError('InvalidArgument', `${who}: base_profile has a localhost_ref but no type`, {}, { reason: 'BASE_PROFILE' });
  }
  if (base.type !== BASE_RUNTIME_DEFAULT && base.type !== BASE_LOCALHOST) {
    throw new SpokeError('InvalidArgument', `${who}: base_profile type ${base.type} is not RuntimeDefault or Localhost`, {}, { reason: 'BASE_PROFILE' });
  }
  return base.type;
}
