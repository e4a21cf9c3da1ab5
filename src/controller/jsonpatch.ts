// RFC 6902 JSON Patch: the operation type the webhook answers with, RFC 6901 pointer escaping,
// and a small applier (add, remove, replace, test) used by `spoke binding apply` to show the
// mutated pod exactly as the API server would store it. The applier never mutates its input.
// Hand-written, not a JSON Patch library: the webhook emits add/replace/test only, and a subset
// this small is less code to review than a dependency (move, copy and the diffing unused).

import { SpokeError } from '../core/errors.js';

export type JsonPatchOp =
  | { op: 'add' | 'replace' | 'test'; path: string; value: unknown }
  | { op: 'remove'; path: string };

export function escapePointer(token: string): string {
  return token.replace(/~/g, '~0').replace(/\//g, '~1');
}

function unescape(token: string): string {
  return token.replace(/~1/g, '/').replace(/~0/g, '~');
}

function clone<T>(v: T): T {
  return v === undefined ? v : (JSON.parse(JSON.stringify(v)) as T);
}

/** A patch that does not apply to the pod it was made for: spoke's own bug (Internal, INVARIANT). */
export class JsonPatchError extends SpokeError {
  constructor(message: string) {
    super('Internal', message, {}, { reason: 'INVARIANT' });
    this.name = 'JsonPatchError';
  }
}

/** Applies `ops` to a deep copy of `doc` and returns it; throws JsonPatchError on any failed op. */
export function applyJsonPatch(doc: unknown, ops: readonly JsonPatchOp[]): unknown {
  let root = clone(doc);
  for (const op of ops) {
    if (op.path === '') {
      if (op.op === 'remove') throw new JsonPatchError('cannot remove the root');
      if (op.op === 'test') {
        if (JSON.stringify(root) !== JSON.stringify(op.value)) throw new JsonPatchError('test failed at root');
        continue;
      }
      root = clone(op.value);
      continue;
    }
    if (!op.path.startsWith('/')) throw new JsonPatchError(`bad pointer ${op.path}`);
    const tokens = op.path.slice(1).split('/').map(unescape);
    const last = tokens.pop() as string;
    let parent: unknown = root;
    for (const t of tokens) {
      if (Array.isArray(parent) && /^(0|[1-9][0-9]*)$/.test(t) && Number(t) < parent.length) parent = parent[Number(t)];
      else if (parent !== null && typeof parent === 'object' && !Array.isArray(parent) && Object.prototype.hasOwnProperty.call(parent, t)) {
        parent = (parent as Record<string, unknown>)[t];
      } else throw new JsonPatchError(`path ${op.path}: ${JSON.stringify(t)} does not exist`);
    }
    if (Array.isArray(parent)) {
      const isIndex = /^(0|[1-9][0-9]*)$/.test(last);
      const i = last === '-' ? parent.length : isIndex ? Number(last) : -1;
      if (i < 0) throw new JsonPatchError(`path ${op.path}: bad array index`);
      if (op.op === 'add') {
        if (i > parent.length) throw new JsonPatchError(`path ${op.path}: index out of range`);
        parent.splice(i, 0, clone(op.value));
      } else {
        if (i >= parent.length) throw new JsonPatchError(`path ${op.path}: index out of range`);
        if (op.op === 'remove') parent.splice(i, 1);
        else if (op.op === 'replace') parent[i] = clone(op.value);
        else if (JSON.stringify(parent[i]) !== JSON.stringify(op.value)) throw new JsonPatchError(`test failed at ${op.path}`);
      }
    } else if (parent !== null && typeof parent === 'object') {
      const o = parent as Record<string, unknown>;
      const exists = Object.prototype.hasOwnProperty.call(o, last);
      if (op.op === 'add') o[last] = clone(op.value);
      else if (!exists) throw new JsonPatchError(`path ${op.path}: does not exist`);
      else if (op.op === 'remove') delete o[last];
      else if (op.op === 'replace') o[last] = clone(op.value);
      else if (JSON.stringify(o[last]) !== JSON.stringify(op.value)) throw new JsonPatchError(`test failed at ${op.path}`);
    } else throw new JsonPatchError(`path ${op.path}: parent is not a container`);
  }
  return root;
}
