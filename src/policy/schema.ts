// Validation against the shipped schemas (docs/configuration.md): the validators are generated
// from them at build time (bin/gen-validators.mjs, ajv standalone code), so the schemas are the
// one source of truth for shape; this module turns ajv's first error into where it points and a
// message a person can act on. Pure.

/** An ajv error object, as the generated validators report it (options: verbose, one error). */
export interface SchemaError {
  readonly instancePath: string;
  readonly keyword: string;
  readonly params: Readonly<Record<string, unknown>>;
  /** Set when the error is about a property name (propertyNames), not its value. */
  readonly propertyName?: string;
  readonly parentSchema?: Readonly<Record<string, unknown>>;
  readonly data?: unknown;
  readonly message?: string;
}

/** A generated validator: true, or false with its first error in `errors`. */
export interface SchemaValidator {
  (data: unknown): boolean;
  errors?: readonly SchemaError[] | null;
}

export type Segment = string | number;

/** Where an error points and what it says. */
export interface SchemaProblem {
  /** The field at fault: `rules[2].mode`, `signers.Bad`; [] for the whole document. */
  readonly path: readonly Segment[];
  /** Whether the fault is the key named by `path` (an unknown or ill-formed name) rather than its value. */
  readonly atKey: boolean;
  /** For a missing field: point at its parent (the field has no place in the file). */
  readonly atParent: boolean;
  readonly what: string;
}

/** Runs `validate`; returns undefined when `data` conforms, else its first problem. */
export function schemaProblem(validate: SchemaValidator, data: unknown): SchemaProblem | undefined {
  if (validate(data)) return undefined;
  const e = validate.errors?.[0];
  if (e === undefined) return { path: [], atKey: false, atParent: false, what: 'does not match its schema' };
  return describeError(e, data);
}

/** `data` is what was validated: it tells list indexes from keys that look like numbers. */
function describeError(e: SchemaError, data: unknown): SchemaProblem {
  const path = pointerSegments(e.instancePath, data);
  const p = e.params;
  if (e.keyword === 'required') return { path: [...path, String(p.missingProperty)], atKey: false, atParent: true, what: 'required' };
  if (e.keyword === 'additionalProperties') {
    const allowed = Object.keys((e.parentSchema?.properties as object | undefined) ?? {});
    return { path: [...path, String(p.additionalProperty)], atKey: true, atParent: false, what: `unknown field (allowed: ${allowed.join(', ')})` };
  }
  if (e.propertyName !== undefined) return { path: [...path, e.propertyName], atKey: true, atParent: false, what: message(e) };
  if (e.keyword === 'uniqueItems') {
    const [first, again] = [Number(p.j), Number(p.i)].sort((a, b) => a - b);
    return { path: [...path, again!], atKey: false, atParent: false, what: `listed twice (also at [${first}])` };
  }
  return { path, atKey: false, atParent: false, what: message(e) };
}

const TYPE_NAMES: Readonly<Record<string, string>> = {
  string: 'a string',
  integer: 'an integer',
  number: 'a number',
  boolean: 'true or false',
  object: 'a mapping',
  array: 'a list',
  null: 'empty',
};

function message(e: SchemaError): string {
  const p = e.params;
  const s = e.parentSchema ?? {};
  const limit = Number(p.limit);
  switch (e.keyword) {
    case 'type': {
      const types = String(p.type).split(',');
      return `must be ${alternatives(types.map((t) => TYPE_NAMES[t] ?? t))}, got ${kindOf(e.data)}`;
    }
    case 'enum':
      return `must be ${alternatives((p.allowedValues as unknown[]).map(String), 'one of ')}`;
    case 'const':
      return `must be ${String(p.allowedValue)}`;
    case 'pattern':
      return typeof s.title === 'string' ? `must be ${s.title}` : `must match ${String(p.pattern)}`;
    case 'minLength':
      return limit === 1 ? 'must not be empty' : `must be at least ${limit} characters`;
    case 'maxLength':
      return `must be at most ${limit} characters`;
    case 'minItems':
    case 'minProperties':
      return limit === 1 ? 'must not be empty' : `must have at least ${limit} entries`;
    case 'maxItems':
    case 'maxProperties':
      return `must have at most ${limit} entries`;
    case 'minimum':
    case 'maximum':
      if (typeof s.minimum === 'number' && typeof s.maximum === 'number') return `must be between ${s.minimum} and ${s.maximum}`;
      return `must be at ${e.keyword === 'minimum' ? 'least' : 'most'} ${limit}`;
    default:
      return e.message ?? `fails ${e.keyword}`;
  }
}

/** `a or b`; `one of a, b, c` (with `many`) for more than two. */
function alternatives(items: readonly string[], many = ''): string {
  if (items.length <= 2) return items.join(' or ');
  return `${many}${items.join(', ')}`;
}

/** What a value is, never the value itself (it may be anyone's bytes). */
function kindOf(data: unknown): string {
  if (data === null || data === undefined) return 'nothing';
  if (Array.isArray(data)) return 'a list';
  if (typeof data === 'object') return 'a mapping';
  if (typeof data === 'boolean') return String(data);
  return TYPE_NAMES[typeof data] ?? typeof data;
}

/** JSON pointer (RFC 6901) into `data` → segments; indexes into lists as numbers. */
function pointerSegments(pointer: string, data: unknown): Segment[] {
  if (pointer === '') return [];
  const out: Segment[] = [];
  let at = data;
  for (const raw of pointer.slice(1).split('/')) {
    const key = raw.replaceAll('~1', '/').replaceAll('~0', '~');
    const seg = Array.isArray(at) ? Number(key) : key;
    out.push(seg);
    at = at !== null && typeof at === 'object' ? (at as Record<Segment, unknown>)[seg] : undefined;
  }
  return out;
}

/** Segments → `rules[2].mode` (`(document)` for none). */
export function formatPath(path: readonly Segment[]): string {
  let out = '';
  for (const s of path) out += typeof s === 'number' ? `[${s}]` : out === '' ? s : `.${s}`;
  return out === '' ? '(document)' : out;
}
