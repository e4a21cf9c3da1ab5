// Recording (recording.ts; `spoke shim --recording`): a CreateContainer whose sandbox_config
// carries `recording.spoke.dev/name` with a valid controller proof (`recording.spoke.dev/proof`)
// and whose container is selected gets the logging profile as Localhost, only when it is not
// privileged and its effective seccomp profile (own, else the pod's) is unset or RuntimeDefault
// with no spoke seccomp annotation applying to it, or, when the proof lists the containers, is
// the container's own OCI profile or own annotation: the binding the webhook wrote beside the
// marking (docs/recording.md), which applies again once the proof has expired. Anything else
// explicit wins over recording (logged), so recording never replaces a request the webhook did
// not make. Without --recording, or without a valid proof, the annotation is ignored (logged).

import type { LogLevel } from '../core/runtime.js';
import type { ProfileAnnotations } from './annotations.js';
import { CTR_SECCOMP_IN_CREATE, POD_SECCOMP_IN_CREATE, profileAt, PROFILE_OCI, PROFILE_RUNTIME_DEFAULT } from './messages.js';
import { recordingSelects, verifyPodRecording, type PodRecording, type RecordingDeps } from './recording.js';
import { TYPE_NAMES } from './rewrite-annotations.js';
import { pathOccurrences } from './wire.js';

/**
 * Whether the container is to be recorded (recording.ts, and above); every case that keeps the
 * container's profile is logged.
 */
export function recordsContainer(
  payload: Buffer,
  rec: PodRecording,
  r: RecordingDeps,
  annotationsOn: boolean,
  ctx: { annotations: ProfileAnnotations; container: string; privileged: boolean },
  who: string,
): boolean {
  const log = (level: LogLevel, msg: string, extra: Record<string, unknown> = {}) => r.log?.(level, msg, { who, recording: rec.name, ...extra });
  if (!recordingSelects(rec, ctx.container)) return false;
  if (r.loggingProfile === undefined) {
    log('info', 'recording annotation ignored: the shim runs without --recording');
    return false;
  }
  if (rec.problem !== undefined) {
    log('warn', 'recording annotation malformed; the container is not recorded', { error: rec.problem });
    return false;
  }
  // Only a marking the controller signed for this pod counts: anything else keeps the container's own profile.
  const proof = r.key === undefined ? undefined : verifyPodRecording(rec, r.key, (r.now ?? Date.now)());
  if (proof === undefined || !proof.ok) {
    const why = proof === undefined ? { failure: 'no-key', detail: 'the shim has no recording key' } : { failure: proof.failure, detail: proof.detail };
    log('warn', 'recording annotation not proven by the controller; the container keeps its profile', { reason: 'RECORDING_UNPROVEN', ...why });
    return false;
  }
  const keep = (why: string) => {
    log('info', `recording skipped: ${why}; the container keeps its profile`);
    return false;
  };
  if (ctx.privileged) return keep('privileged container');
  if (pathOccurrences(payload, CTR_SECCOMP_IN_CREATE).some((n) => n > 1)) return keep('the container seccomp profile occurs more than once');
  // The webhook lists the containers it records and binds each of them (its own OCI profile or
  // annotation), never the pod; their profiles cannot change after admission. So with a list,
  // the container's own binding gives way while the proof holds and applies once it has expired.
  const bindingGivesWay = rec.containers !== undefined;
  // As the runtime reads them: a deprecated string counts where its message is absent.
  const own = profileAt(payload, CTR_SECCOMP_IN_CREATE);
  const effective = own ?? profileAt(payload, POD_SECCOMP_IN_CREATE);
  const ownBinding = bindingGivesWay && own?.profileType === PROFILE_OCI;
  if (effective !== undefined && effective.profileType !== PROFILE_RUNTIME_DEFAULT && !ownBinding) {
    return keep(`${TYPE_NAMES[effective.profileType] ?? `profile_type ${effective.profileType}`} seccomp profile ${own !== undefined ? 'set on the container' : 'inherited from the pod'}`);
  }
  if (annotationsOn && ctx.annotations.size > 0) {
    const ann = ctx.annotations.forContainer('seccomp', ctx.container);
    if (ann !== undefined && (ann.podLevel || !bindingGivesWay)) return keep(`profile annotation ${ann.key} applies`);
  }
  log('info', 'container runs under the logging profile for recording');
  return true;
}
