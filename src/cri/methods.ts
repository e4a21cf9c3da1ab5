// CRI method paths the shim routes on, and the bounded set of method names used as a metric
// label (anything else is "other").

import { CRI_PULL_METHODS } from '../core/constants.js';

export const RUNTIME = '/runtime.v1.RuntimeService/';
export const IMAGE = '/runtime.v1.ImageService/';

export const PATH_RUN_POD_SANDBOX = `${RUNTIME}RunPodSandbox`;
export const PATH_CREATE_CONTAINER = `${RUNTIME}CreateContainer`;
export const PATH_REMOVE_CONTAINER = `${RUNTIME}RemoveContainer`;
export const PATH_REMOVE_POD_SANDBOX = `${RUNTIME}RemovePodSandbox`;
export const PATH_STATUS = `${RUNTIME}Status`;
export const PATH_POD_SANDBOX_STATUS = `${RUNTIME}PodSandboxStatus`;
// Both spellings of the pull (KEP text, implementations): names kept in core/constants.ts.
export const PATH_PULL_ARTIFACT = `${IMAGE}${CRI_PULL_METHODS[0]}`;
export const PATH_PULL_PROFILE = `${IMAGE}${CRI_PULL_METHODS[1]}`;
export const PATH_LIST_PROFILES = `${IMAGE}ListSecurityProfiles`;
export const PATH_REMOVE_PROFILE = `${IMAGE}RemoveSecurityProfile`;

/**
 * Why a call the shim handles no route for is refused instead of forwarded (docs/shim.md), or
 * undefined for a call it forwards as it came:
 * - a call of any service but the CRI's two (RuntimeService, ImageService, of any version): the
 *   runtime's socket serves its own API too (containerd's Containers/Update, Tasks/Create), through
 *   which a container the shim never inspected could be changed or started;
 * - RunPodSandbox or CreateContainer of a CRI version other than v1 (v1alpha2, which containerd
 *   1.6 and 1.7 still serve through their v1 code, or any later one): the shim reads security
 *   profiles only in v1 messages;
 * - a restore of any version (RestorePod, proposed for pod-level checkpoint/restore and served by
 *   CRI-O's main branch; RestoreContainer): its request carries configurations the shim does not
 *   read, and the restored processes get back the seccomp filters their checkpoint saved.
 */
export function unforwardedRefusal(path: string): string | undefined {
  if (!CRI_SERVICE_RE.test(path)) return 'spoke shim: the call is refused: the shim serves and forwards the CRI runtime and image services only (runtime.<version>.RuntimeService, ImageService)';
  const m = UNREAD_PROFILES_RE.exec(path);
  if (m === null || path === PATH_RUN_POD_SANDBOX || path === PATH_CREATE_CONTAINER) return undefined;
  return m[1]!.startsWith('Restore')
    ? `spoke shim: ${path} is refused: a restored pod or container runs under the profiles and filters of its checkpoint, which the shim cannot check`
    : `spoke shim: ${path} is refused: security profiles are read only in CRI v1 requests; use runtime.v1`;
}
const CRI_SERVICE_RE = /^\/runtime\.[A-Za-z0-9]{1,32}\.(?:RuntimeService|ImageService)\/[A-Za-z][A-Za-z0-9_]{0,63}$/;
const UNREAD_PROFILES_RE = /^\/runtime\.[A-Za-z0-9]{1,32}\.RuntimeService\/(RunPodSandbox|CreateContainer|RestorePod|RestoreContainer)$/;

const RUNTIME_METHODS = [
  'Version', 'RunPodSandbox', 'StopPodSandbox', 'RemovePodSandbox', 'PodSandboxStatus', 'ListPodSandbox', 'StreamPodSandboxes',
  'CreateContainer', 'StartContainer', 'StopContainer', 'RemoveContainer', 'ListContainers', 'StreamContainers', 'ContainerStatus',
  'UpdateContainerResources', 'ReopenContainerLog', 'ExecSync', 'Exec', 'Attach', 'PortForward', 'ContainerStats', 'ListContainerStats',
  'StreamContainerStats', 'PodSandboxStats', 'ListPodSandboxStats', 'StreamPodSandboxStats', 'UpdateRuntimeConfig', 'Status',
  'CheckpointContainer', 'GetContainerEvents', 'ListMetricDescriptors', 'ListPodSandboxMetrics', 'StreamPodSandboxMetrics',
  'RuntimeConfig', 'UpdatePodSandboxResources',
];
const IMAGE_METHODS = [
  'ListImages', 'StreamImages', 'ImageStatus', 'PullImage', 'RemoveImage', 'ImageFsInfo',
  ...CRI_PULL_METHODS, 'ListSecurityProfiles', 'RemoveSecurityProfile',
];

const LABELS = new Map<string, string>([
  ...RUNTIME_METHODS.map((m) => [`${RUNTIME}${m}`, m] as [string, string]),
  ...IMAGE_METHODS.map((m) => [`${IMAGE}${m}`, m] as [string, string]),
]);

/** Server-streaming methods: long-lived, cancelled (UNAVAILABLE) at shutdown instead of awaited. */
export const STREAMING = new Set([
  `${RUNTIME}GetContainerEvents`, `${RUNTIME}StreamPodSandboxes`, `${RUNTIME}StreamContainers`, `${RUNTIME}StreamContainerStats`,
  `${RUNTIME}StreamPodSandboxStats`, `${RUNTIME}StreamPodSandboxMetrics`, `${IMAGE}StreamImages`,
]);

export function methodLabel(path: string): string {
  return LABELS.get(path) ?? 'other';
}
