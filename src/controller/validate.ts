// Validation of a ProfileBinding: the validating webhook, `spoke binding apply` and the
// mutation all call this one function, and `reference` goes through the node's own parser
// (core/reference.ts), so a binding admitted here is one the node would accept.

import type { ProfileKind } from '../core/constants.js';
import { isSpokeError } from '../core/errors.js';
import { parseReference } from '../core/reference.js';
import { memoByObject } from './memo.js';
import { ImageParseError, parseImageTarget, type ImageTarget } from './image.js';
import { crdProblem } from './schema.js';
import { selectorIsRestrictive, selectorProblems } from './selector.js';
import { bindingName, type BaseProfile, type LabelSelector, type ProfileBinding } from './types.js';

/** A validated binding with its target parsed once. */
export interface CompiledBinding {
  readonly name: string; // namespace/name
  readonly kind: ProfileKind;
  readonly reference: string;
  readonly baseProfile: BaseProfile | undefined;
  readonly target: ImageTarget;
  readonly podSelector: LabelSelector | undefined;
  readonly containers: ReadonlySet<string> | undefined;
  readonly override: boolean;
  /** See `specificity` in binding.ts. */
  readonly rank: readonly [number, number, number];
}

export type Validation = { ok: true; binding: CompiledBinding } | { ok: false; name: string; problems: string[] };

const IMAGE_RANK = { any: 0, repository: 1, tag: 2, digest: 3 } as const;

/**
 * The CRD schema first (deploy/crds/profilebinding.yaml: fields, types, enums, bounds), then
 * what it cannot say: its CEL rules, the list-type set, and `reference` and `image` through the
 * node's own parsers. Once per object (memo.ts).
 */
export const validateBinding: (obj: unknown) => Validation = memoByObject(validateUncached);

function validateUncached(obj: unknown): Validation {
  const meta = (obj as { metadata?: unknown } | null)?.metadata;
  const name = meta !== null && typeof meta === 'object' ? bindingName(obj as ProfileBinding) : '(unnamed)';
  const shape = crdProblem('ProfileBinding', obj);
  if (shape !== undefined) return { ok: false, name, problems: [shape] };
  const b = obj as ProfileBinding;
  const spec = b.spec;
  const problems: string[] = [];
  const bad = (path: string, why: string) => problems.push(`${path}: ${why}`);
  // The API server always sets it; a file given to `spoke binding apply` may not.
  if (typeof b.metadata?.name !== 'string' || b.metadata.name === '') bad('metadata.name', 'required');

  try {
    parseReference(spec.reference);
  } catch (e) {
    bad('spec.reference', isSpokeError(e) ? e.message : String(e));
  }

  // The CRD's CEL rules (x-kubernetes-validations).
  const base = spec.baseProfile;
  if (base !== undefined) {
    if (spec.kind === 'apparmor' && base.type !== 'RuntimeDefault') bad('spec.baseProfile.type', 'AppArmor base profiles can only be RuntimeDefault (KEP-6061)');
    const local = (base as { localhostProfile?: string }).localhostProfile;
    if ((base.type === 'Localhost') !== (local !== undefined)) bad('spec.baseProfile.localhostProfile', 'required for type Localhost and forbidden otherwise');
    else if (local !== undefined && local.startsWith('/')) bad('spec.baseProfile.localhostProfile', 'must be a relative path');
    else if (local !== undefined && local.split(/[\\/]/).includes('..')) bad('spec.baseProfile.localhostProfile', 'must not contain ".."');
  }

  let target: ImageTarget | undefined;
  try {
    target = parseImageTarget(spec.image);
  } catch (e) {
    bad('spec.image', e instanceof ImageParseError ? e.message : String(e));
  }

  if (spec.podSelector !== undefined) problems.push(...selectorProblems(spec.podSelector, 'spec.podSelector'));

  // x-kubernetes-list-type: set.
  const containers = spec.containers === undefined ? undefined : new Set(spec.containers);
  if (containers !== undefined && containers.size < spec.containers!.length) bad('spec.containers', 'lists a name twice');

  if (problems.length > 0 || target === undefined) return { ok: false, name, problems };
  return {
    ok: true,
    binding: Object.freeze({
      name,
      kind: spec.kind,
      reference: spec.reference,
      baseProfile: base,
      target,
      podSelector: spec.podSelector,
      containers,
      override: spec.override === true,
      rank: [IMAGE_RANK[target.kind], selectorIsRestrictive(spec.podSelector) ? 1 : 0, containers ? 1 : 0] as const,
    }),
  };
}

export function describeProblems(v: { name: string; problems: string[] }): string {
  return `ProfileBinding ${v.name} is invalid: ${v.problems.join('; ')}`;
}
