// Validation of a ProfileBinding: the validating webhook, `spoke binding apply` and the
// mutation all call this one function, and `reference` goes through the node's own parser
// (core/reference.ts), so a binding admitted here is one the node would accept.

import { PROFILE_KINDS, type ProfileKind } from '../core/constants.js';
import { isSpokeError } from '../core/errors.js';
import { parseReference } from '../core/reference.js';
import { ImageParseError, parseImageTarget, type ImageTarget } from './image.js';
import { selectorIsRestrictive, selectorProblems } from './selector.js';
import { bindingName, type BaseProfile, type LabelSelector, type ProfileBinding } from './types.js';

const SPEC_FIELDS = ['kind', 'reference', 'baseProfile', 'image', 'podSelector', 'containers', 'override'];
const CONTAINER_NAME_RE = /^[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?$/;
export const MAX_CONTAINERS_PER_BINDING = 64;

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

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** Local profile paths as the API server checks them: relative, no `..` element. */
function localhostProblem(p: unknown): string | undefined {
  if (typeof p !== 'string' || p.length === 0) return 'must be a non-empty relative path';
  if (p.startsWith('/')) return 'must be a relative path';
  if (p.split(/[\\/]/).includes('..')) return 'must not contain ".."';
  if (p.length > 4096) return 'too long';
  return undefined;
}

export function validateBinding(obj: unknown): Validation {
  const name = isObject(obj) && isObject(obj.metadata) ? bindingName(obj as unknown as ProfileBinding) : '(unnamed)';
  const problems: string[] = [];
  const bad = (path: string, why: string) => problems.push(`${path}: ${why}`);
  if (!isObject(obj)) return { ok: false, name, problems: ['not an object'] };
  if (!isObject(obj.metadata) || typeof obj.metadata.name !== 'string' || obj.metadata.name === '') bad('metadata.name', 'required');
  const spec = obj.spec;
  if (!isObject(spec)) return { ok: false, name, problems: [...problems, 'spec: required'] };
  for (const k of Object.keys(spec)) if (!SPEC_FIELDS.includes(k)) bad(`spec.${k}`, 'unknown field');

  const kind = spec.kind;
  if (typeof kind !== 'string' || !(PROFILE_KINDS as readonly string[]).includes(kind)) bad('spec.kind', 'must be seccomp or apparmor');

  const reference = spec.reference;
  if (typeof reference !== 'string') bad('spec.reference', 'required (a digest-pinned reference host/repository@sha256:<64 hex>)');
  else {
    try {
      parseReference(reference);
    } catch (e) {
      bad('spec.reference', isSpokeError(e) ? e.message : String(e));
    }
  }

  let baseProfile: BaseProfile | undefined;
  if (spec.baseProfile !== undefined) {
    const b = spec.baseProfile;
    if (!isObject(b)) bad('spec.baseProfile', 'must be an object');
    else {
      for (const k of Object.keys(b)) if (k !== 'type' && k !== 'localhostProfile') bad(`spec.baseProfile.${k}`, 'unknown field');
      if (b.type === 'RuntimeDefault') {
        if (b.localhostProfile !== undefined) bad('spec.baseProfile.localhostProfile', 'forbidden unless type is Localhost');
        baseProfile = { type: 'RuntimeDefault' };
      } else if (b.type === 'Localhost') {
        if (kind === 'apparmor') bad('spec.baseProfile.type', 'AppArmor base profiles can only be RuntimeDefault (KEP-6061)');
        const p = localhostProblem(b.localhostProfile);
        if (p) bad('spec.baseProfile.localhostProfile', p);
        else baseProfile = { type: 'Localhost', localhostProfile: b.localhostProfile as string };
      } else {
        bad('spec.baseProfile.type', `must be RuntimeDefault or Localhost (Unconfined and OCI bases are not allowed), got ${JSON.stringify(b.type)}`);
      }
    }
  }

  let target: ImageTarget | undefined;
  if (typeof spec.image !== 'string' || spec.image === '') bad('spec.image', 'required: an image reference, a repository, or "*"');
  else {
    try {
      target = parseImageTarget(spec.image);
    } catch (e) {
      bad('spec.image', e instanceof ImageParseError ? e.message : String(e));
    }
  }

  if (spec.podSelector !== undefined) problems.push(...selectorProblems(spec.podSelector, 'spec.podSelector'));

  let containers: Set<string> | undefined;
  if (spec.containers !== undefined) {
    if (!Array.isArray(spec.containers) || spec.containers.length === 0) bad('spec.containers', 'must be a non-empty list of container names (omit it for all containers)');
    else if (spec.containers.length > MAX_CONTAINERS_PER_BINDING) bad('spec.containers', `at most ${MAX_CONTAINERS_PER_BINDING} names`);
    else {
      containers = new Set();
      for (const c of spec.containers as unknown[]) {
        if (typeof c !== 'string' || !CONTAINER_NAME_RE.test(c)) bad('spec.containers', `${JSON.stringify(c)} is not a container name (DNS label)`);
        else if (containers.has(c)) bad('spec.containers', `duplicate name ${JSON.stringify(c)}`);
        else containers.add(c);
      }
    }
  }
  if (spec.override !== undefined && typeof spec.override !== 'boolean') bad('spec.override', 'must be true or false');

  if (problems.length > 0 || target === undefined) return { ok: false, name, problems };
  const podSelector = spec.podSelector as LabelSelector | undefined;
  return {
    ok: true,
    binding: Object.freeze({
      name,
      kind: kind as ProfileKind,
      reference: reference as string,
      baseProfile,
      target,
      podSelector,
      containers,
      override: spec.override === true,
      rank: [IMAGE_RANK[target.kind], selectorIsRestrictive(podSelector) ? 1 : 0, containers ? 1 : 0] as const,
    }),
  };
}

export function describeProblems(v: { name: string; problems: string[] }): string {
  return `ProfileBinding ${v.name} is invalid: ${v.problems.join('; ')}`;
}
