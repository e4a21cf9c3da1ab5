// ProfileBinding (spoke.dev/v1alpha1, namespaced): the CRD's TypeScript shape, the names the
// webhook, the CLI and the shim agree on, and the few Kubernetes core shapes the mutation reads.
// Schema: deploy/crds/profilebinding.yaml. See docs/binding.md.

import type { ProfileKind } from '../core/constants.js';

export const GROUP = 'spoke.dev';
export const VERSION = 'v1alpha1';
export const API_VERSION = `${GROUP}/${VERSION}`;
export const BINDING_KIND = 'ProfileBinding';
export const BINDING_PLURAL = 'profilebindings';

/** Namespaces opt in with this label; the MutatingWebhookConfiguration's namespaceSelector matches it. */
export const NAMESPACE_OPT_IN_LABEL = 'spoke.dev/binding';
export const NAMESPACE_OPT_IN_VALUE = 'enabled';

/** Whether a namespace with these labels opted in: the pod webhook sees its pods. */
export function namespaceOptedIn(labels: Readonly<Record<string, string>>): boolean {
  return labels[NAMESPACE_OPT_IN_LABEL] === NAMESPACE_OPT_IN_VALUE;
}

/** Why a binding in a namespace that has not opted in binds nothing (an admission warning and a status condition). */
export function notOptedInMessage(namespace: string): string {
  const label = `${NAMESPACE_OPT_IN_LABEL}=${NAMESPACE_OPT_IN_VALUE}`;
  return `namespace ${namespace} is not labelled ${label}, so the pod webhook does not see its pods: this ProfileBinding binds nothing until it is (kubectl label namespace ${namespace} ${label})`;
}

/** Legacy AppArmor annotation (pre-1.30); the API server requires it to agree with the field when both are set. */
export const LEGACY_APPARMOR_ANNOTATION_PREFIX = 'container.apparmor.security.beta.kubernetes.io/';
/**
 * Legacy seccomp annotations (before the field): the API server sets the field from them where
 * the field is empty (after admission), and requires a container's to agree with its field.
 */
export const LEGACY_SECCOMP_ANNOTATION_PREFIX = 'container.seccomp.security.alpha.kubernetes.io/';
export const LEGACY_SECCOMP_POD_ANNOTATION = 'seccomp.security.alpha.kubernetes.io/pod';

/** Status lists are bounded so that a busy binding never grows its object without limit. */
export const MAX_MATCHED_WORKLOADS = 32;

export interface LabelSelectorRequirement {
  key: string;
  operator: 'In' | 'NotIn' | 'Exists' | 'DoesNotExist';
  values?: string[];
}
export interface LabelSelector {
  matchLabels?: Record<string, string>;
  matchExpressions?: LabelSelectorRequirement[];
}

export type BaseProfile = { type: 'RuntimeDefault' } | { type: 'Localhost'; localhostProfile: string };

export interface ProfileBindingSpec {
  kind: ProfileKind;
  /** Digest-pinned OCI reference of the profile artifact (same parser as the node). */
  reference: string;
  baseProfile?: BaseProfile;
  /** Exact image reference (tag or digest), a repository (any tag or digest), or `*`. */
  image: string;
  podSelector?: LabelSelector;
  containers?: string[];
  /** Replace a pre-set `Unconfined` profile. Without it such a container is left alone (warned, counted in status). */
  override?: boolean;
}

export interface Condition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message: string;
  lastTransitionTime: string;
  observedGeneration?: number;
}

export interface MatchedWorkload {
  /** Controlling owner kind (ReplicaSet, StatefulSet, Job, …) or `Pod` for a bare pod. */
  kind: string;
  name: string;
  containers: string[];
  lastMatched: string;
}

export interface ProfileBindingStatus {
  /** Most recently matched first; at most MAX_MATCHED_WORKLOADS. */
  matchedWorkloads?: MatchedWorkload[];
  /** Pods admitted with this binding since the controller's status tracking began (a counter, not a list). */
  matchedPods?: number;
  /** Containers the binding selected but left alone since status tracking began, by reason (counters). */
  skippedContainers?: { unconfined?: number; privileged?: number; windows?: number };
  conditions?: Condition[];
  observedGeneration?: number;
}

export interface ObjectMeta {
  name?: string;
  generateName?: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  generation?: number;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  ownerReferences?: { apiVersion?: string; kind: string; name: string; uid?: string; controller?: boolean }[];
  [k: string]: unknown;
}

export interface ProfileBinding {
  apiVersion?: string;
  kind?: string;
  metadata: ObjectMeta;
  spec: ProfileBindingSpec;
  status?: ProfileBindingStatus;
}

// --- The parts of core/v1 Pod the mutation reads (everything else passes through untouched). ---

export interface ProfileOCI {
  reference: string;
  baseProfile?: BaseProfile;
}
export interface SeccompProfile {
  type: string; // RuntimeDefault | Localhost | Unconfined | OCI
  localhostProfile?: string;
  oci?: ProfileOCI;
}
export type AppArmorProfile = SeccompProfile;

export interface SecurityContext {
  privileged?: boolean;
  seccompProfile?: SeccompProfile;
  appArmorProfile?: AppArmorProfile;
  [k: string]: unknown;
}
export interface Container {
  name: string;
  image?: string;
  securityContext?: SecurityContext;
  [k: string]: unknown;
}
export interface PodSpec {
  containers?: Container[];
  initContainers?: Container[];
  ephemeralContainers?: Container[];
  /** The pod's operating system (`windows` or `linux`); absent: Linux, to the API server. */
  os?: { name?: string; [k: string]: unknown };
  securityContext?: { seccompProfile?: SeccompProfile; appArmorProfile?: AppArmorProfile; [k: string]: unknown };
  [k: string]: unknown;
}
export interface Pod {
  apiVersion?: string;
  kind?: string;
  metadata?: ObjectMeta;
  spec?: PodSpec;
  [k: string]: unknown;
}

export function bindingName(b: { metadata?: { name?: string; namespace?: string } }): string {
  const m = b.metadata ?? {};
  return `${m.namespace ?? ''}${m.namespace ? '/' : ''}${m.name ?? '(unnamed)'}`;
}
