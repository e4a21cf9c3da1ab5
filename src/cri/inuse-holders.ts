// Names of the holders the shim records in the store's in-use set: `sandbox:<id>` /
// `container:<id>` after the ids the upstream returned, `apparmor:<name>@<holder>` for a loaded
// AppArmor profile, and pending holders.
//
// Pending holders. Around a create, `pending:<ms>:<unique>[:<identity>]` covers the window between
// "profile resolved" and "id known". <identity> hashes what names the object before it has an id
// (container: sandbox id, metadata name and attempt; sandbox: metadata name, uid, namespace and
// attempt), the same key the runtime reserves the name under, so a rebuild can find the object a
// create produced even when its response was lost. A create that fails or whose response is lost
// does not release its pending holder: the runtime may have made the object anyway (containerd
// killed mid-create leaves it CONTAINER_UNKNOWN; a deadline can end the call while the runtime
// goes on). Only a rebuild drops it, once the create can no longer be running (older than
// PENDING_GRACE_MS, the kubelet's default runtime request timeout, and not in flight in this
// process) and no live object carries its identity.

import { sha256Hex } from '../core/digest.js';
import { uniqueSuffix } from '../core/unique.js';
import { decodeCreateContainerKey, decodeRunPodSandboxKey, type ContainerKey, type SandboxKey } from './messages.js';

/** How long a create the shim forwarded may still be running in the runtime (kubelet's default --runtime-request-timeout). */
export const PENDING_GRACE_MS = 2 * 60 * 1000;
export const APPARMOR_HOLDER_PREFIX = 'apparmor:';
export const PENDING_PREFIX = 'pending:';
export const RUNTIME_PREFIXES = ['container:', 'sandbox:', PENDING_PREFIX, APPARMOR_HOLDER_PREFIX] as const;

export function appArmorHolder(name: string, holder: string): string {
  return `${APPARMOR_HOLDER_PREFIX}${name}@${holder}`;
}

/** `apparmor:<name>@<holder>` → its parts; undefined for any other holder. */
export function parseAppArmorHolder(h: string): { name: string; holder: string } | undefined {
  if (!h.startsWith(APPARMOR_HOLDER_PREFIX)) return undefined;
  const at = h.indexOf('@', APPARMOR_HOLDER_PREFIX.length);
  if (at < 0) return undefined;
  return { name: h.slice(APPARMOR_HOLDER_PREFIX.length, at), holder: h.slice(at + 1) };
}
export function pendingHolder(now: number, identity: string | undefined): string {
  return `${PENDING_PREFIX}${now}:${uniqueSuffix()}${identity ? `:${identity}` : ''}`;
}
export function parsePending(h: string): { at: number; identity: string | undefined } {
  const [, at, , identity] = h.split(':');
  return { at: Number(at), identity };
}
export const containerIdentity = (k: ContainerKey): string => `c${sha256Hex(JSON.stringify([k.sandbox, k.name, k.attempt])).slice(0, 32)}`;
export const sandboxIdentity = (k: SandboxKey): string => `s${sha256Hex(JSON.stringify([k.name, k.uid, k.namespace, k.attempt])).slice(0, 32)}`;

/**
 * The identity of the object a CreateContainer or RunPodSandbox request makes (see the header);
 * undefined when the request does not carry one.
 */
export function requestIdentity(role: 'sandbox' | 'container', request: Uint8Array): string | undefined {
  try {
    if (role === 'container') {
      const key = decodeCreateContainerKey(request);
      return key && containerIdentity(key);
    }
    const key = decodeRunPodSandboxKey(request);
    return key && sandboxIdentity(key);
  } catch {
    return undefined;
  }
}
