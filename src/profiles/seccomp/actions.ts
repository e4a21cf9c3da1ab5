// Actions, their restrictiveness order and errno handling (KEP-6061 §4 "Action order", "Errno").

import { SpokeError } from '../../core/errors.js';
import type { SeccompAction, Verdict } from './types.js';

/** Most restrictive first. KILL_THREAD and KILL are one action. */
const RANK: Readonly<Record<SeccompAction, number>> = {
  SCMP_ACT_KILL_PROCESS: 0,
  SCMP_ACT_KILL_THREAD: 1,
  SCMP_ACT_KILL: 1,
  SCMP_ACT_TRAP: 2,
  SCMP_ACT_ERRNO: 3,
  SCMP_ACT_NOTIFY: 4,
  SCMP_ACT_TRACE: 5,
  SCMP_ACT_LOG: 6,
  SCMP_ACT_ALLOW: 7,
};

export const EPERM = 1;
/** Runtimes keep the low 16 bits; the KEP refuses artifacts beyond the kernel's errno range. */
export const MAX_ERRNO = 4095;

export function actionRank(action: string): number {
  const rank = (RANK as Record<string, number | undefined>)[action];
  if (rank === undefined) throw new SpokeError('SecurityProfileInvalid', `unknown seccomp action ${JSON.stringify(action)}`, {}, { reason: 'PROFILE_INVALID' });
  return rank;
}

export function takesErrno(action: SeccompAction): boolean {
  return action === 'SCMP_ACT_ERRNO' || action === 'SCMP_ACT_TRACE';
}

/** The verdict an action with an optional errnoRet produces: errno only where it is read, EPERM when unset. */
export function verdictOf(action: SeccompAction, errnoRet: number | undefined): Verdict {
  const canonical = action === 'SCMP_ACT_KILL_THREAD' ? 'SCMP_ACT_KILL' : action;
  return takesErrno(action) ? { action: canonical, errno: (errnoRet ?? EPERM) & 0xffff } : { action: canonical };
}

/** Identity of a verdict: equal keys load as the same libseccomp action. */
export function verdictKey(v: Verdict): string {
  return v.errno === undefined ? v.action : `${v.action}(${v.errno})`;
}

/** Codes per action for verdictCode; KILL_THREAD keeps its own, as verdictKey does. */
const ACTION_CODE: ReadonlyMap<string, number> = new Map(Object.keys(RANK).map((action, i) => [action, i]));

/**
 * Identity of a verdict like verdictKey, but a number in the usual case (known action, errno
 * absent or within 16 bits) so maps keyed by it need no string. Equal codes ⇔ sameVerdict.
 */
export function verdictCode(v: Verdict): number | string {
  const action = ACTION_CODE.get(v.action);
  if (action === undefined) return verdictKey(v);
  const errno = v.errno;
  if (errno === undefined) return action * 0x20000;
  return (errno & 0xffff) === errno ? action * 0x20000 + errno + 1 : verdictKey(v);
}

export function sameVerdict(a: Verdict, b: Verdict): boolean {
  return a.action === b.action && a.errno === b.errno;
}

/** A verdict with the trust position of the input it came from (0 = baseline). */
export interface Sourced {
  verdict: Verdict;
  source: number;
}

/** The more restrictive of two; on equal actions the earlier input's errno wins (KEP §4). */
export function stricter(a: Sourced, b: Sourced): Sourced {
  const ra = actionRank(a.verdict.action);
  const rb = actionRank(b.verdict.action);
  if (ra !== rb) return ra < rb ? a : b;
  return a.source <= b.source ? a : b;
}

export function formatVerdict(v: Verdict): string {
  return v.errno === undefined ? v.action : `${v.action}(errno ${v.errno})`;
}
