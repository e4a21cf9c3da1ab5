// Annotations with which a runtime runs a container otherwise than its CRI request's profiles
// say, where the runtime passes pod or container annotations through (containerd's
// `pod_annotations` / `container_annotations`, CRI-O's `allowed_annotations`; off by default),
// and the checks of a create spoke applies a profile to against them (docs/shim.md). The
// sandbox's annotations are read both from the create and from what the runtime recorded when
// the sandbox was made (sandbox-handlers.ts): the kubelet rebuilds sandbox_config from the pod as
// it is now, and a pod's annotations can be edited after its sandbox started.

import { SpokeError } from '../core/errors.js';

/**
 * crun's `run.oci.seccomp_bpf_data` (a filter of its own instead of the profile),
 * `run.oci.seccomp.receiver` and `run.oci.seccomp.plugins` (who answers notified calls), and
 * CRI-O's seccomp notifier, which turns every ERRNO and KILL rule into a notification answered
 * ENOSYS. Beside a seccomp profile spoke applied, the merge would not be what runs.
 */
const FILTER_ANNOTATIONS = ['run.oci.seccomp_bpf_data', 'run.oci.seccomp.receiver', 'run.oci.seccomp.plugins', 'io.kubernetes.cri-o.seccompNotifierAction', 'seccomp-notifier-action.crio.io'];
/** containerd runs a pod annotated so under its `untrusted` runtime, whatever handler the pod names. */
const UNTRUSTED_WORKLOAD = 'io.kubernetes.cri.untrusted-workload';
/** crun runs a container annotated so under a handler of its own (krun: a microVM, whose VMM the filter confines, not the workload). */
const CRUN_HANDLER = 'run.oci.handler';

/** Every key the checks below read: the only ones decoded from a message's annotations. */
export const RUNTIME_ANNOTATION_KEYS: readonly string[] = [...FILTER_ANNOTATIONS, UNTRUSTED_WORKLOAD, CRUN_HANDLER];

export type AnnotationSets = readonly ReadonlyMap<string, string>[];

/** Refuses a create whose seccomp profile spoke applies when any of `sets` carries one of FILTER_ANNOTATIONS. */
export function refuseFilterAnnotations(who: string, sets: AnnotationSets): void {
  for (const set of sets) {
    const key = FILTER_ANNOTATIONS.find((k) => set.has(k));
    if (key !== undefined) {
      throw new SpokeError('InvalidArgument', `${who}: annotation ${key} would replace or rewrite the seccomp filter of its OCI profile; remove it`, { annotation: key }, { reason: 'FILTER_ANNOTATION' });
    }
  }
}

/**
 * Refuses a create whose profile spoke would apply when its pod runs under a runtime handler the
 * node does not list as one that enforces it (runtimeHandlers in the node config), `requested` or
 * the one an annotation of `sets` chooses: the profile would be logged as applied while nothing
 * enforces it, as on a privileged container.
 */
export function refuseHandler(allowed: ReadonlySet<string>, requested: string, sets: AnnotationSets, who: string): void {
  // Every handler the pod may run under, each of which must be listed: the annotation replaces
  // the requested one in containerd; crun's comes on top, from any set.
  const untrusted = sets.some((set) => set.get(UNTRUSTED_WORKLOAD) === 'true');
  const candidates: (readonly [string, string])[] = [untrusted ? ['untrusted', ` (annotation ${UNTRUSTED_WORKLOAD})`] : [requested, '']];
  for (const set of sets) {
    const crun = set.get(CRUN_HANDLER);
    // Never listed: runtimeHandlers' entries cannot hold `=`.
    if (crun !== undefined && crun !== '') candidates.push([`${CRUN_HANDLER}=${crun.slice(0, 100)}`, ` (annotation ${CRUN_HANDLER})`]);
  }
  const refused = candidates.find(([handler]) => !allowed.has(handler));
  if (refused === undefined) return;
  const [handler, why] = refused;
  throw new SpokeError(
    'FailedPrecondition',
    `${who}: the pod runs under runtime handler ${JSON.stringify(handler.slice(0, 200))}${why}, which this node does not list in runtimeHandlers as one that enforces seccomp and AppArmor profiles; refusing the profile spoke would apply`,
    { runtimeHandler: handler.slice(0, 200) },
    { reason: 'RUNTIME_HANDLER' },
  );
}
