// An independent RFC 6902 applier for tests (all six operations), written apart from
// src/controller/jsonpatch.ts so that the webhook's patches are checked by other code.

export type Op = { op: string; path: string; value?: unknown; from?: string };

function parsePointer(p: string): string[] {
  if (p === '') return [];
  if (!p.startsWith('/')) throw new Error(`invalid pointer ${p}`);
  return p
    .slice(1)
    .split('/')
    .map((t) => t.replace(/~1/g, '/').replace(/~0/g, '~'));
}

function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const ka = Object.keys(a as object);
  const kb = Object.keys(b as object);
  if (ka.length !== kb.length) return false;
  return ka.every((k) => deepEqual((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]));
}

function get(doc: unknown, tokens: string[]): unknown {
  let cur = doc;
  for (const t of tokens) {
    if (Array.isArray(cur)) {
      if (!/^(0|[1-9]\d*)$/.test(t) || Number(t) >= cur.length) throw new Error(`no index ${t}`);
      cur = cur[Number(t)];
    } else if (cur !== null && typeof cur === 'object' && t in (cur as object)) cur = (cur as Record<string, unknown>)[t];
    else throw new Error(`no member ${t}`);
  }
  return cur;
}

function put(doc: unknown, tokens: string[], value: unknown, mode: 'add' | 'replace'): unknown {
  if (tokens.length === 0) return value;
  const parent = get(doc, tokens.slice(0, -1));
  const last = tokens[tokens.length - 1] as string;
  if (Array.isArray(parent)) {
    const i = last === '-' ? parent.length : Number(last);
    if (!Number.isInteger(i) || i < 0 || i > parent.length || (mode === 'replace' && i >= parent.length)) throw new Error(`bad index ${last}`);
    if (mode === 'add') parent.splice(i, 0, value);
    else parent[i] = value;
  } else if (parent !== null && typeof parent === 'object') {
    if (mode === 'replace' && !(last in parent)) throw new Error(`replace: no member ${last}`);
    (parent as Record<string, unknown>)[last] = value;
  } else throw new Error('parent is not a container');
  return doc;
}

function del(doc: unknown, tokens: string[]): unknown {
  const parent = get(doc, tokens.slice(0, -1));
  const last = tokens[tokens.length - 1] as string;
  if (Array.isArray(parent)) {
    get(doc, tokens);
    parent.splice(Number(last), 1);
  } else {
    if (parent === null || typeof parent !== 'object' || !(last in parent)) throw new Error(`remove: no member ${last}`);
    delete (parent as Record<string, unknown>)[last];
  }
  return doc;
}

export function applyPatch<T>(input: T, ops: Op[]): T {
  let doc: unknown = structuredClone(input);
  for (const o of ops) {
    const tokens = parsePointer(o.path);
    switch (o.op) {
      case 'add':
        doc = put(doc, tokens, structuredClone(o.value), 'add');
        break;
      case 'replace':
        get(doc, tokens);
        doc = put(doc, tokens, structuredClone(o.value), 'replace');
        break;
      case 'remove':
        doc = del(doc, tokens);
        break;
      case 'move': {
        const v = get(doc, parsePointer(o.from as string));
        doc = del(doc, parsePointer(o.from as string));
        doc = put(doc, tokens, v, 'add');
        break;
      }
      case 'copy':
        doc = put(doc, tokens, structuredClone(get(doc, parsePointer(o.from as string))), 'add');
        break;
      case 'test':
        if (!deepEqual(get(doc, tokens), o.value)) throw new Error(`test failed at ${o.path}`);
        break;
      default:
        throw new Error(`unknown op ${o.op}`);
    }
  }
  return doc as T;
}
