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
// Both spellings of the pull (KEP text, implementations): names kept in core/constants.ts.
export const PATH_PULL_ARTIFACT = `${IMAGE}${CRI_PULL_METHODS[0]}`;
export const PATH_PULL_PROFILE = `${IMAGE}${CRI_PULL_METHODS[1]}`;
export const PATH_LIST_PROFILES = `${IMAGE}ListSecurityProfiles`;
export const PATH_REMOVE_PROFILE = `${IMAGE}RemoveSecurityProfile`;

/**
 * RunPodSandbox or CreateContainer of a CRI version other than v1 (v1alpha2, which containerd 1.6
 * and 1.7 still serve through their v1 code, or any later one). The shim reads security profiles
 * only in v1 messages, so such a call would take its profiles to the runtime unread: it is
 * refused instead of forwarded (docs/shim.md).
 */
export function isOtherVersionCreate(path: string): boolean {
  return OTHER_VERSION_CREATE_RE.test(path) && path !== PATH_RUN_POD_SANDBOX && path !== PATH_CREATE_CONTAINER;
}
const OTHER_VERSION_CREATE_RE = /^\/runtime\.[A-Za-z0-9]{1,32}\.RuntimeService\/(?:RunPodSandbox|CreateContainer)$/;

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
