// ProfileRecording (spoke.dev/v1alpha1, namespaced) and ProfileRecordingResult: the CRDs'
// TypeScript shapes and the pure half of the recording controller (docs/recording.md), in
// three files: recording-crd.ts (shapes, limits, annotations), recording-validate.ts (specs and
// results), recording-plan.ts (union, build, publish targets, bindings).
// Schemas: deploy/crds/profilerecording.yaml.
//
//  - Node recorders (`spoke recorder`) report one ProfileRecordingResult per container that ran
//    in a pod carrying the annotation `recording.spoke.dev/name: <recording>`, owned by the
//    recording (garbage-collected with it).
//  - The user finalizes a recording by annotating it `recording.spoke.dev/finalize: <token>`
//    (any non-empty value). The reconciler then unions the results per `mergeStrategy` — None:
//    one profile per container name; Containers: one profile for every container — builds each
//    profile with `buildRecordedProfile` (deterministic bytes, validated as an artifact),
//    pushes, signs, writes the references to status and, with `bind: true`, creates bindings.
//    A finalized recording is a snapshot: later results are counted but change nothing until
//    the annotation is given a new value.
//
// Everything here is pure: the reconciler (recording-reconciler.ts) does the I/O.

export * from './recording-crd.js';
export * from './recording-validate.js';
export * from './recording-plan.js';
export { sameStatus } from './conditions.js';
