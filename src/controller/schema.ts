// The CRD objects' shape (ProfileBinding, ProfileRecording, ProfileRecordingResult) comes from
// their openAPIV3Schema in deploy/crds/*.yaml, compiled into schema-generated.ts at build time
// (bin/gen-validators.mjs): what the API server checks before an object reaches the controller,
// checked again here for objects that do not come through it (`spoke binding apply`, a fake API
// server in tests). Kube keywords (`x-kubernetes-*`: CEL rules, list types) are checked in code.

import { formatPath, schemaProblem, type SchemaValidator } from '../policy/index.js';
import { ProfileBinding, ProfileRecording, ProfileRecordingResult } from './schema-generated.js';

export type CrdKind = 'ProfileBinding' | 'ProfileRecording' | 'ProfileRecordingResult';

const VALIDATORS: Readonly<Record<CrdKind, SchemaValidator>> = {
  ProfileBinding: ProfileBinding as unknown as SchemaValidator,
  ProfileRecording: ProfileRecording as unknown as SchemaValidator,
  ProfileRecordingResult: ProfileRecordingResult as unknown as SchemaValidator,
};

/** The first way `obj` does not match its CRD schema, as `spec.kind: must be seccomp or apparmor`; undefined when it matches. */
export function crdProblem(kind: CrdKind, obj: unknown): string | undefined {
  const p = schemaProblem(VALIDATORS[kind], obj);
  return p === undefined ? undefined : `${p.path.length === 0 ? 'object' : formatPath(p.path)}: ${p.what}`;
}
