// Annotation mode (docs/annotation-mode.md): OCI profiles named by pod annotations, for kubelets that do not speak
// KEP-6061 yet. The controller's `--annotations` mode writes them (ANNOTATION_PREFIX in
// src/core/constants.ts, shared with the controller):
//   seccomp.profiles.spoke.dev/pod          pod level: the sandbox and every container
//   seccomp.profiles.spoke.dev/<container>  one container; wins over /pod
//   apparmor.profiles.spoke.dev/…           the same for AppArmor (containers only, see rewrite.ts)
// The kubelet copies the pod's annotations into PodSandboxConfig.annotations (field 7), which
// RunPodSandbox carries as `config` and CreateContainer as `sandbox_config`.
//
// Values are untrusted: only keys with exactly these prefixes are decoded at all, a value is
// length-checked before the core reference parser sees it, and a value that is not a
// digest-pinned reference fails the call naming the annotation. A value is parsed only when the
// annotation applies to the object being created (an invalid annotation for container `a` does
// not fail container `b`; an invalid `/pod` annotation fails them all).
//
// A container named `pod` shares its key with the pod-level annotation; either reading gives it
// that profile.

import { ANNOTATION_PREFIX, POD_ANNOTATION, type ProfileKind } from '../core/constants.js';
import { SpokeError, asSpokeError } from '../core/errors.js';
import { MAX_REFERENCE_LENGTH } from '../core/limits.js';
import { formatReference, parseReference } from '../core/reference.js';
import { SANDBOX_ANNOTATIONS } from './messages.js';
import { getStringMap } from './wire-map.js';

const PREFIXES = [ANNOTATION_PREFIX.seccomp, ANNOTATION_PREFIX.apparmor] as const;

export interface ProfileAnnotation {
  kind: ProfileKind;
  /** The full annotation key, e.g. `seccomp.profiles.spoke.dev/web`. */
  key: string;
  /** The reference, canonical form (parsed by the core parser). */
  reference: string;
  podLevel: boolean;
}

/** Wraps a failure so that its message names the annotation; the error code is kept. */
export function annotationError(key: string, e: unknown): SpokeError {
  const err = asSpokeError(e);
  if (err.context.annotation === key) return err;
  return new SpokeError(err.code, `annotation ${key}: ${err.message}`, { ...err.context, annotation: key }, { cause: e, reason: err.reason });
}

export class ProfileAnnotations {
  private constructor(private readonly entries: ReadonlyMap<string, string>) {}

  static readonly NONE = new ProfileAnnotations(new Map());

  /** The spoke annotations of a PodSandboxConfig (undefined: none). Throws WireError when malformed. */
  static read(podSandboxConfig: Uint8Array | undefined): ProfileAnnotations {
    if (podSandboxConfig === undefined) return ProfileAnnotations.NONE;
    const m = getStringMap(podSandboxConfig, SANDBOX_ANNOTATIONS, PREFIXES);
    return m.size === 0 ? ProfileAnnotations.NONE : new ProfileAnnotations(m);
  }

  get size(): number {
    return this.entries.size;
  }

  /** The pod-level annotation of `kind`. */
  forPod(kind: ProfileKind): ProfileAnnotation | undefined {
    return this.get(kind, POD_ANNOTATION, true);
  }

  /** The annotation that applies to container `name`: its own, else the pod-level one. */
  forContainer(kind: ProfileKind, name: string): ProfileAnnotation | undefined {
    if (name !== '') {
      const own = this.get(kind, name, false);
      if (own) return own;
    }
    return this.forPod(kind);
  }

  private get(kind: ProfileKind, suffix: string, podLevel: boolean): ProfileAnnotation | undefined {
    const key = ANNOTATION_PREFIX[kind] + suffix;
    const value = this.entries.get(key);
    if (value === undefined) return undefined;
    if (Buffer.byteLength(value, 'utf8') > MAX_REFERENCE_LENGTH) {
      throw new SpokeError('InvalidArgument', `annotation ${key}: the value is longer than ${MAX_REFERENCE_LENGTH} bytes`, { annotation: key }, { reason: 'REFERENCE_INVALID' });
    }
    let reference: string;
    try {
      reference = formatReference(parseReference(value));
    } catch (e) {
      throw annotationError(key, e);
    }
    return { kind, key, reference, podLevel };
  }
}
