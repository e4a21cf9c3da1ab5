// Wire-level edits of RunPodSandbox / CreateContainer requests that carry an OCI seccomp
// profile (KEP-6061 §2: RunPodSandbox carries the pod-level profile; CreateContainer carries the
// container-level or inherited pod-level one in ContainerConfig, and repeats the pod config in
// sandbox_config). Only the SecurityProfile messages change; everything else is kept byte for
// byte. Requests without type OCI are not touched at all (the caller forwards the original).
//
// Fail-closed rules: profile type OCI never reaches the upstream. An AppArmor profile of type
// OCI is refused (AppArmor is not implemented yet). A path whose messages occur more than once
// (legal protobuf, merged by the receiver, never sent by the kubelet) is refused when the merged
// profile or any occurrence is OCI, rather than guessing which bytes to edit.

import { SpokeError } from '../core/errors.js';
import type { Applied, ApplyContext } from './apply.js';
import {
  CTR_APPARMOR_IN_CREATE,
  CTR_SECCOMP_IN_CREATE,
  decodeSecurityProfile,
  encodeLocalhostProfile,
  POD_APPARMOR_IN_CREATE,
  POD_APPARMOR_IN_RUN,
  POD_SECCOMP_IN_CREATE,
  POD_SECCOMP_IN_RUN,
  PROFILE_OCI,
  type SecurityProfileMsg,
} from './messages.js';
import { fields, getMergedAt, getMergedMessage, getString, pathOccurrences, replaceMessageAt, WIRE_VARINT } from './wire.js';

export type Resolver = (profile: SecurityProfileMsg, ctx: ApplyContext) => Promise<Applied>;

export interface RewriteResult {
  /** The request to forward (the original buffer when nothing changed). */
  payload: Buffer;
  edited: boolean;
  /** The artifact the created object holds (sandbox: pod-level; container: its own or inherited). */
  holds: Applied | undefined;
}

interface Site {
  profile: SecurityProfileMsg | undefined;
  oci: boolean;
}

function anyOciType(profileBytes: Uint8Array): boolean {
  for (const f of fields(profileBytes)) if (f.field === 1 && f.wireType === WIRE_VARINT && f.varint === PROFILE_OCI) return true;
  return false;
}

function inspect(payload: Buffer, path: readonly number[], what: string): Site {
  const merged = getMergedAt(payload, path);
  if (merged === undefined) return { profile: undefined, oci: false };
  const profile = decodeSecurityProfile(merged);
  const duplicated = pathOccurrences(payload, path).some((n) => n > 1);
  if (duplicated && anyOciType(merged)) {
    throw new SpokeError('InvalidArgument', `${what}: the message path to an OCI security profile occurs more than once; refusing to guess`);
  }
  return { profile, oci: profile.profileType === PROFILE_OCI };
}

function refuseAppArmorOci(payload: Buffer, path: readonly number[], what: string): void {
  const merged = getMergedAt(payload, path);
  if (merged !== undefined && anyOciType(merged)) {
    throw new SpokeError('InvalidArgument', `${what}: AppArmor profiles of type OCI are not supported yet`);
  }
}

function podName(sandboxConfig: Buffer | undefined): string {
  if (!sandboxConfig) return 'pod';
  const meta = getMergedMessage(sandboxConfig, 1);
  if (!meta) return 'pod';
  return `${getString(meta, 3)}/${getString(meta, 1)}`;
}

/** RunPodSandboxRequest. */
export async function rewriteRunPodSandbox(payload: Buffer, resolve: Resolver): Promise<RewriteResult> {
  const who = `sandbox ${podName(getMergedMessage(payload, 1))}`;
  refuseAppArmorOci(payload, POD_APPARMOR_IN_RUN, who);
  const site = inspect(payload, POD_SECCOMP_IN_RUN, who);
  if (!site.oci) return { payload, edited: false, holds: undefined };
  const applied = await resolve(site.profile!, { who });
  return { payload: replaceMessageAt(payload, POD_SECCOMP_IN_RUN, encodeLocalhostProfile(applied.path)), edited: true, holds: applied };
}

/** CreateContainerRequest. */
export async function rewriteCreateContainer(payload: Buffer, resolve: Resolver): Promise<RewriteResult> {
  const pod = podName(getMergedMessage(payload, 3));
  const config = getMergedMessage(payload, 2);
  const meta = config ? getMergedMessage(config, 1) : undefined;
  const who = `container ${pod}/${meta ? getString(meta, 1) : '?'}`;
  refuseAppArmorOci(payload, CTR_APPARMOR_IN_CREATE, who);
  refuseAppArmorOci(payload, POD_APPARMOR_IN_CREATE, who);
  const ctr = inspect(payload, CTR_SECCOMP_IN_CREATE, who);
  const podSite = inspect(payload, POD_SECCOMP_IN_CREATE, who);
  if (!ctr.oci && !podSite.oci) return { payload, edited: false, holds: undefined };

  let out = payload;
  let holds: Applied | undefined;
  let podApplied: Applied | undefined;
  if (podSite.oci) {
    podApplied = await resolve(podSite.profile!, { who: `${who} (pod-level)` });
    out = replaceMessageAt(out, POD_SECCOMP_IN_CREATE, encodeLocalhostProfile(podApplied.path));
  }
  if (ctr.oci) {
    holds = await resolve(ctr.profile!, { who });
    out = replaceMessageAt(out, CTR_SECCOMP_IN_CREATE, encodeLocalhostProfile(holds.path));
  } else if (ctr.profile === undefined && podApplied) {
    // No container-level profile at all: the pod-level OCI profile is inherited (never Unconfined).
    holds = podApplied;
    out = replaceMessageAt(out, CTR_SECCOMP_IN_CREATE, encodeLocalhostProfile(podApplied.path));
  }
  return { payload: out, edited: true, holds };
}
